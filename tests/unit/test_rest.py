"""Every REST route and every refusal, against the WSGI app with a stand-in for the running controller.

The stand-in keeps the real core and state file, so a test can check that a refused request changed
neither the registry nor what is saved.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from webob import Request

from flows.config import parse_config
from flows.core import NlbCore
from flows.state import load_state, save_state
from ryu_apps.rest import ROUTES, RestApi

CONFIG = """
clusters:
  - name: web
    cluster_ip: 10.0.0.100
    members:
      - {ip: 10.0.0.11}
      - {ip: 10.0.0.12, dpid: "0000000000000001", port: 2}
"""

PINNED_AT_2 = {  # where the pinned member is, as the API shows it: never heard from, no spoof seen
    "dpid": 1,
    "port": 2,
    "how": "pinned",
    "port_up": True,
    "spoof_attempts": 0,
    "last_spoof_port": None,
}


class StandInController:
    """The service the API calls: the real core and state file, no switch."""

    def __init__(self, state_file: str) -> None:
        self.core = NlbCore(parse_config(CONFIG))
        self.core.switch_connected(1, dict.fromkeys([1, 2, 3], True))
        self.state_file = state_file
        save_state(state_file, self.core.registry)

    @property
    def registry(self):
        return self.core.registry

    def change(self, mutate):
        registry, touched = mutate(self.core.registry)
        save_state(self.state_file, registry)
        self.core.set_registry(registry, now=0.0)
        return touched

    def locations(self, cluster_name, member):
        return self.core.locations(cluster_name, member)

    def audit(self):
        return {"switches": {}}

    def reconcile(self):
        return {"switches": {}, "reconciled": True}

    def status(self):
        return {"runtime": "stand-in", **self.core.status(now=0.0)}


@pytest.fixture
def controller(tmp_path) -> StandInController:
    return StandInController(str(tmp_path / "state.yaml"))


def call(controller, method: str, path: str, body=None, raw: bytes | None = None, token=None, api_token=None):
    request = Request.blank(path, method=method)
    if raw is not None or body is not None:
        request.body = raw if raw is not None else json.dumps(body).encode()
        request.content_type = "application/json"
    if token is not None:
        request.headers["Authorization"] = f"Bearer {token}"
    response = request.get_response(RestApi(controller, api_token))
    assert response.content_type == "application/json"
    return response.status_code, json.loads(response.text)


def test_list_and_show_clusters(controller):
    status, body = call(controller, "GET", "/nlb/clusters")
    assert status == 200
    assert [c["name"] for c in body["clusters"]] == ["web"]
    status, body = call(controller, "GET", "/nlb/clusters/web")
    assert status == 200
    assert (body["cluster_mac"], body["arp"], body["mode"]) == ("02:bf:0a:00:00:64", "proxy", "unicast")
    assert body["members"][1] == {
        "ip": "10.0.0.12",
        "mac": "02:de:0a:00:00:0c",
        "dpid": 1,
        "port": 2,
        "located": [PINNED_AT_2],
    }


def test_post_cluster_returns_201_with_derived_fields_and_saves_it(controller):
    status, body = call(controller, "POST", "/nlb/clusters", {"name": "api", "cluster_ip": "10.0.1.100"})
    assert status == 201
    assert body == {
        "name": "api",
        "cluster_ip": "10.0.1.100",
        "cluster_mac": "02:bf:0a:00:01:64",
        "mode": "unicast",
        "arp": "proxy",
        "members": [],
    }
    assert load_state(controller.state_file).cluster_named("api") is not None


def test_post_member_returns_201_with_its_dedicated_mac(controller):
    status, body = call(controller, "POST", "/nlb/clusters/web/members", {"ip": "10.0.0.13"})
    assert (status, body["mac"], body["dpid"], body["port"]) == (201, "02:de:0a:00:00:0d", None, None)
    status, body = call(
        controller, "POST", "/nlb/clusters/web/members", {"ip": "10.0.0.14", "dpid": "0000000000000001", "port": 4}
    )
    assert (status, body["dpid"], body["port"]) == (201, 1, 4)
    assert [m["ip"] for m in call(controller, "GET", "/nlb/clusters/web/members")[1]["members"]] == [
        "10.0.0.11",
        "10.0.0.12",
        "10.0.0.13",
        "10.0.0.14",
    ]


def test_patch_moves_unpins_and_changes_the_mac(controller):
    status, body = call(controller, "PATCH", "/nlb/clusters/web/members/10.0.0.11", {"dpid": 1, "port": 3})
    assert (status, body["dpid"], body["port"]) == (200, 1, 3)
    status, body = call(controller, "PATCH", "/nlb/clusters/web/members/10.0.0.11", {"dpid": None, "port": None})
    assert (status, body["dpid"], body["port"]) == (200, None, None)
    status, body = call(controller, "PATCH", "/nlb/clusters/web/members/10.0.0.12", {"mac": "02:de:00:00:00:99"})
    assert (status, body["mac"], body["port"]) == (200, "02:de:00:00:00:99", 2)
    assert load_state(controller.state_file).cluster_named("web").member_for_ip("10.0.0.12").dedicated_mac == (
        "02:de:00:00:00:99"
    )


def test_delete_member_and_cluster_return_what_was_removed(controller):
    status, body = call(controller, "DELETE", "/nlb/clusters/web/members/10.0.0.11")
    assert (status, body["ip"]) == (200, "10.0.0.11")
    assert call(controller, "GET", "/nlb/clusters/web/members/10.0.0.11")[0] == 404
    status, body = call(controller, "DELETE", "/nlb/clusters/web")
    assert (status, body["name"], [m["ip"] for m in body["members"]]) == (200, "web", ["10.0.0.12"])
    assert call(controller, "GET", "/nlb/clusters")[1] == {"clusters": []}
    assert load_state(controller.state_file).clusters == ()


def test_flows_reconcile_and_status_come_from_the_controller(controller):
    assert call(controller, "GET", "/nlb/flows") == (200, {"switches": {}})
    assert call(controller, "POST", "/nlb/flows/reconcile") == (200, {"switches": {}, "reconciled": True})
    status, body = call(controller, "GET", "/nlb/status")
    assert status == 200
    assert body["switches"] == [{"dpid": 1, "ports": [1, 2, 3], "ports_down": [], "shared_ports": []}]
    status_view = {**PINNED_AT_2, "confirmed_ago": None, "checking": False}  # the status adds when it was heard
    assert body["clusters"][0]["members"][1] == {"ip": "10.0.0.12", "located": [status_view]}
    assert body["counters"]["dropped_spoofed"] == 0 and body["counters"]["packet_in_not_arp"] == 0
    controller.core.not_arp()
    assert call(controller, "GET", "/nlb/status")[1]["counters"]["packet_in_not_arp"] == 1


def test_an_unexpected_failure_is_still_a_json_error(controller):
    controller.status = lambda: 1 / 0
    assert call(controller, "GET", "/nlb/status") == (
        500,
        {"error": "internal error: ZeroDivisionError: division by zero"},
    )


REFUSALS = [
    pytest.param("POST", "/nlb/clusters", None, b"{bad", 400, "body: malformed JSON", id="malformed-json"),
    pytest.param("POST", "/nlb/clusters", [1], None, 400, "the body must be a JSON object", id="not-an-object"),
    pytest.param("POST", "/nlb/clusters", {"name": "x"}, None, 400, "cluster_ip: required key", id="missing-field"),
    pytest.param(
        "POST",
        "/nlb/clusters",
        {"name": "x", "cluster_ip": "1.2.3.4", "vip": 1},
        None,
        400,
        "vip: unknown field",
        id="unknown-field",
    ),
    pytest.param(
        "POST",
        "/nlb/clusters",
        {"name": "x", "cluster_ip": "10.0.0.300"},
        None,
        400,
        "cluster_ip: '10.0.0.300' is not an IPv4 address",
        id="bad-ip",
    ),
    pytest.param(
        "POST",
        "/nlb/clusters",
        {"name": "x", "cluster_ip": "10.0.9.1", "cluster_mac": "01:00:5e:00:00:01"},
        None,
        400,
        "cluster_mac: 01:00:5e:00:00:01 is a multicast MAC",
        id="multicast-mac",
    ),
    pytest.param(
        "POST",
        "/nlb/clusters",
        {"name": "x", "cluster_ip": "10.0.9.1", "arp": "magic"},
        None,
        400,
        "arp: 'magic'",
        id="bad-arp-mode",
    ),
    pytest.param(
        "POST",
        "/nlb/clusters",
        {"name": "web", "cluster_ip": "10.0.9.1"},
        None,
        409,
        "name: a cluster named 'web'",
        id="duplicate-name",
    ),
    pytest.param(
        "POST",
        "/nlb/clusters",
        {"name": "x", "cluster_ip": "10.0.9.1", "cluster_mac": "02:bf:0a:00:00:64"},
        None,
        409,
        "cluster_mac: 02:bf:0a:00:00:64 is already the cluster MAC of cluster 'web'",
        id="cluster-mac-collision",
    ),
    pytest.param(
        "POST",
        "/nlb/clusters",
        {"name": "x", "cluster_ip": "10.0.0.11"},
        None,
        409,
        "cluster_ip: 10.0.0.11 is already",
        id="cluster-ip-is-a-member-ip",
    ),
    pytest.param("GET", "/nlb/clusters/nope", None, None, 404, "name: no cluster named 'nope'", id="unknown-cluster"),
    pytest.param("DELETE", "/nlb/clusters/nope", None, None, 404, "name: no cluster named", id="delete-unknown"),
    pytest.param(
        "POST", "/nlb/clusters/nope/members", {"ip": "10.0.0.20"}, None, 404, "name: no cluster", id="member-of-unknown"
    ),
    pytest.param(
        "POST",
        "/nlb/clusters/web/members",
        {"ip": "10.0.0.11"},
        None,
        409,
        "ip: 10.0.0.11 is already a member of cluster 'web'",
        id="duplicate-member-ip",
    ),
    pytest.param(
        "POST",
        "/nlb/clusters/web/members",
        {"ip": "10.0.0.100"},
        None,
        409,
        "ip: 10.0.0.100 is already",
        id="member-ip-is-the-vip",
    ),
    pytest.param(
        "POST",
        "/nlb/clusters/web/members",
        {"ip": "10.0.0.20", "mac": "02:de:0a:00:00:0b"},
        None,
        409,
        "mac: 02:de:0a:00:00:0b is already the dedicated MAC",
        id="mac-in-use",
    ),
    pytest.param(
        "POST",
        "/nlb/clusters/web/members",
        {"ip": "10.0.0.20", "dpid": 1, "port": 2},
        None,
        409,
        "port: dpid 0x1 port 2 is already",
        id="port-already-pinned",
    ),
    pytest.param(
        "POST",
        "/nlb/clusters/web/members",
        {"ip": "10.0.0.20", "dpid": 1},
        None,
        400,
        "dpid: given without port",
        id="dpid-without-port",
    ),
    pytest.param(
        "POST",
        "/nlb/clusters/web/members",
        {"ip": "10.0.0.20", "dpid": "xyz", "port": 1},
        None,
        400,
        "dpid: 'xyz' is not a datapath id",
        id="bad-dpid",
    ),
    pytest.param(
        "GET",
        "/nlb/clusters/web/members/10.0.0.99",
        None,
        None,
        404,
        "ip: cluster 'web' has no member 10.0.0.99",
        id="unknown-member",
    ),
    pytest.param(
        "PATCH",
        "/nlb/clusters/web/members/10.0.0.11",
        {"ip": "10.0.0.30"},
        None,
        400,
        "ip: unknown field",
        id="patch-cannot-change-the-ip",
    ),
    pytest.param(
        "PATCH",
        "/nlb/clusters/web/members/10.0.0.11",
        {"dpid": 1, "port": 2},
        None,
        409,
        "port: dpid 0x1 port 2",
        id="patch-onto-a-pinned-port",
    ),
    pytest.param(
        "PATCH",
        "/nlb/clusters/web/members/10.0.0.11",
        {"port": 0, "dpid": 1},
        None,
        400,
        "port: 0 is not a switch",
        id="patch-bad-port",
    ),
    pytest.param(
        "DELETE",
        "/nlb/clusters/web/members/10.0.0.99",
        None,
        None,
        404,
        "ip: cluster 'web' has no member",
        id="delete-unknown-member",
    ),
    pytest.param("PUT", "/nlb/clusters", None, None, 405, "PUT is not allowed on /nlb/clusters", id="bad-method"),
    pytest.param("GET", "/nlb/nothing", None, None, 404, "path: no such resource", id="unknown-path"),
]


@pytest.mark.parametrize(("method", "path", "body", "raw", "status", "error"), REFUSALS)
def test_a_refused_request_names_the_field_and_changes_nothing(controller, method, path, body, raw, status, error):
    before = (controller.registry, Path(controller.state_file).read_text())
    got_status, got_body = call(controller, method, path, body, raw)
    assert (got_status, list(got_body)) == (status, ["error"])
    assert got_body["error"].startswith(error), got_body["error"]
    assert (controller.registry, Path(controller.state_file).read_text()) == before


def test_every_route_needs_the_token_when_one_is_configured(controller):
    before = controller.registry
    for method, template in ROUTES:
        path = template.replace("{name}", "web").replace("{ip}", "10.0.0.11")
        for token in (None, "wrong"):
            status, body = call(controller, method, path, {}, token=token, api_token="s3cret")
            assert (status, list(body)) == (401, ["error"]), (method, path, token)
    assert controller.registry == before
    assert call(controller, "GET", "/nlb/clusters", token="s3cret", api_token="s3cret")[0] == 200
    status, _ = call(
        controller, "POST", "/nlb/clusters", {"name": "a", "cluster_ip": "10.9.0.1"}, token="s3cret", api_token="s3cret"
    )
    assert status == 201


def test_a_cluster_mac_equal_to_a_dedicated_mac_is_a_conflict_on_that_field(controller):
    body = {"name": "x", "cluster_ip": "10.0.9.1", "cluster_mac": "02:de:0a:00:00:0b"}
    assert call(controller, "POST", "/nlb/clusters", body) == (
        409,
        {"error": "cluster_mac: 02:de:0a:00:00:0b is already the dedicated MAC of member 10.0.0.11"},
    )
