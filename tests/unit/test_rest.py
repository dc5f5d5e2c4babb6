"""Every REST route and every refusal, against the WSGI app with a stand-in for the running controller.

The stand-in keeps the real core and store, so a test can check that a refused request changed
neither the registry nor what is saved.
"""

from __future__ import annotations

import json

import pytest
from webob import Request

from flows.config import parse_config
from flows.cookies import Purpose, decode_cookie
from flows.core import NlbCore
from flows.fabric_ops import check_pins
from flows.frames import Refusal
from flows.model import ArpMode, ControllerSettings
from flows.registry_ops import RegistryError
from flows.store import RegistryStore
from ryu_apps.rest import ROUTES, RestApi

CONFIG = """
fabric:
  switches:
    - {dpid: "0000000000000001", name: hv1, uplinks: [5, patch-core]}
clusters:
  - name: web
    cluster_ip: 10.0.0.100
    arp: proxy
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


PORT_NAMES = {1: {1: "vm1", 2: "vm2", 3: "vm3", 4: "patch-core", 5: "trunk", 6: "vm6"}}  # dpid -> port -> name


class StandInController:
    """The service the API calls: the real core and store, no switch.

    Switch 1 is connected (ports 1-6, named as in PORT_NAMES); member 10.0.0.11 is learned on its port 3
    (`learned`), 10.0.0.12 pinned on port 2. The switch views are built here from the fabric, the ports'
    names and where members are, as the core's status entries are."""

    def __init__(self, state_file: str) -> None:
        config = parse_config(CONFIG)
        self.core = NlbCore(config)
        self.core.switch_connected(1, dict.fromkeys(PORT_NAMES[1], True))
        self.learned = {1: {("web", "10.0.0.11"): 3}}
        self.state_file = state_file
        self.store = RegistryStore.create(state_file, self.core.registry, config.fabric)

    @property
    def registry(self):
        return self.core.registry

    @property
    def fabric(self):
        return self.store.fabric

    def change(self, mutate):
        registry, touched = mutate(self.core.registry)
        check_pins(self.fabric, registry)  # as the controller does after every registry change
        self.store.save(registry)
        self.core.set_registry(registry, now=0.0)
        return touched, []

    def change_fabric(self, mutate):
        fabric, touched = mutate(self.fabric)
        for switch in fabric.switches:
            located = self._located(switch.dpid)
            for uplink in switch.uplinks:
                port = self._resolved(switch.dpid, uplink)
                for (cluster, ip), where in located.items():
                    if where == port:
                        raise RegistryError(
                            409,
                            f"uplinks: port {port} of switch {switch.dpid:016x} is where member {ip} of cluster"
                            f" {cluster!r} is located now",
                        )
        self.store.save_fabric(fabric)
        return touched, []

    def _located(self, dpid):
        return {**self.core.located_ports(dpid), **self.learned.get(dpid, {})}

    def _resolved(self, dpid, uplink):
        if isinstance(uplink, int):
            return uplink
        return next((port for port, name in PORT_NAMES.get(dpid, {}).items() if name == uplink), None)

    def switch_views(self):
        dpids = [switch.dpid for switch in self.fabric.switches]
        dpids += sorted(dpid for dpid in PORT_NAMES if dpid not in dpids)
        return [self.switch_view(dpid) for dpid in dpids]

    def switch_view(self, dpid):
        switch = self.fabric.switch(dpid)
        if switch is None and dpid not in PORT_NAMES:
            return None
        uplinks = switch.uplinks if switch else ()
        located = sorted(self._located(dpid).items(), key=lambda item: item[1])
        return {
            "dpid": dpid,
            "name": switch.name if switch else None,
            "connected": dpid in PORT_NAMES,
            "uplinks": [{"uplink": uplink, "port": self._resolved(dpid, uplink)} for uplink in uplinks],
            "members": [{"cluster": cluster, "ip": ip, "port": port} for (cluster, ip), port in located],
            "loops": 0,
        }

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


def call(
    controller,
    method: str,
    path: str,
    body=None,
    raw: bytes | None = None,
    token=None,
    api_token=None,
    headers: dict | None = None,
    settings: ControllerSettings | None = None,
):
    """One request to the API as a client on the listen address sends it (Host: 127.0.0.1:8080); `headers`
    add, override or (with None) remove headers."""
    request = Request.blank(path, method=method)
    request.headers["Host"] = "127.0.0.1:8080"
    if raw is not None or body is not None:
        request.body = raw if raw is not None else json.dumps(body).encode()
        request.content_type = "application/json"
    if token is not None:
        request.headers["Authorization"] = f"Bearer {token}"
    for name, value in (headers or {}).items():
        if value is None:
            del request.headers[name]
        else:
            request.headers[name] = value
    response = request.get_response(RestApi(controller, api_token, settings))
    assert response.content_type == "application/json"
    return response.status_code, json.loads(response.text)


def load_state(path: str):
    """The registry the store at path holds, read through a connection of its own."""
    store = RegistryStore.open(path)
    store.close()
    return store.registry


def load_fabric(path: str):
    store = RegistryStore.open(path)
    store.close()
    return store.fabric


def unchanged(controller) -> tuple:
    """What a refused request must leave as it was: the registry, the fabric, the store and the switch views."""
    return (
        controller.registry,
        load_state(controller.state_file),
        controller.fabric,
        load_fabric(controller.state_file),
        call(controller, "GET", "/nlb/switches"),
    )


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
        "arp": "switch",
        "members": [],
        "pending_switches": [],
    }
    assert load_state(controller.state_file).cluster_named("api") is not None


def switch_mode_purposes(controller) -> set[Purpose]:
    """The switch-mode purposes among the flows switch 1 is to hold."""
    purposes = {decode_cookie(flow.cookie).purpose for flow in controller.core.expected_flows(1)}
    return purposes & {Purpose.ARP_SENDER, Purpose.ARP_ANSWER, Purpose.ARP_SPREAD}


def test_a_switch_mode_cluster_is_created_read_back_and_saved(controller):
    body = {"name": "api", "cluster_ip": "10.0.1.100", "arp": "switch"}
    status, answer = call(controller, "POST", "/nlb/clusters", body)
    assert (status, answer["arp"], answer["mode"]) == (201, "switch", "unicast")
    member = {"ip": "10.0.1.11", "dpid": 1, "port": 4}
    assert call(controller, "POST", "/nlb/clusters/api/members", member)[0] == 201
    status, shown = call(controller, "GET", "/nlb/clusters/api")
    assert (status, shown["arp"], [m["ip"] for m in shown["members"]]) == (200, "switch", ["10.0.1.11"])
    assert [c["arp"] for c in call(controller, "GET", "/nlb/clusters")[1]["clusters"]] == ["proxy", "switch"]
    assert [c["arp"] for c in call(controller, "GET", "/nlb/registry")[1]["clusters"]] == ["proxy", "switch"]
    assert load_state(controller.state_file).cluster_named("api").arp == ArpMode.SWITCH
    assert switch_mode_purposes(controller) == {Purpose.ARP_SENDER, Purpose.ARP_ANSWER, Purpose.ARP_SPREAD}


def test_changing_a_clusters_arp_mode_to_switch_and_back_shows_in_the_diff_and_the_flows(controller):
    assert switch_mode_purposes(controller) == set()
    web = call(controller, "GET", "/nlb/registry")[1]["clusters"][0]
    status, answer = call(controller, "PUT", "/nlb/clusters/web", {**web, "arp": "switch"})
    assert (status, answer["arp"]) == (200, "switch")
    (changed,) = answer["diff"]["changed"]
    assert changed["fields"] == [{"field": "arp", "from": "proxy", "to": "switch"}]
    assert changed["members"] == {"added": [], "removed": [], "changed": []}
    assert load_state(controller.state_file).cluster_named("web").arp == ArpMode.SWITCH
    assert switch_mode_purposes(controller) == {Purpose.ARP_SENDER, Purpose.ARP_ANSWER, Purpose.ARP_SPREAD}

    status, diff = call(controller, "PUT", "/nlb/registry?dry_run=1", {"clusters": [{**web, "arp": "relay"}]})
    assert (status, diff["changed"][0]["fields"]) == (200, [{"field": "arp", "from": "switch", "to": "relay"}])
    assert controller.registry.cluster_named("web").arp == ArpMode.SWITCH, "a dry run changes nothing"
    status, diff = call(controller, "PUT", "/nlb/registry", {"clusters": [{**web, "arp": "proxy"}]})
    assert (status, diff["changed"][0]["fields"]) == (200, [{"field": "arp", "from": "switch", "to": "proxy"}])
    assert switch_mode_purposes(controller) == set()


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


def with_more_addresses(controller) -> None:
    """Cluster api (10.0.1.100 and fd00:10::100) with member 10.0.1.11 (and fd00:10::11), through the API."""
    body = {"name": "api", "cluster_ip": "10.0.1.100", "cluster_ips": ["FD00:10:0::100"]}
    assert call(controller, "POST", "/nlb/clusters", body)[0] == 201
    assert call(controller, "POST", "/nlb/clusters/api/members", {"ip": "10.0.1.11", "ips": ["fd00:10::11"]})[0] == 201


def test_more_addresses_are_created_shown_changed_and_saved(controller):
    body = {"name": "api", "cluster_ip": "10.0.1.100", "cluster_ips": ["FD00:10:0::100", "10.0.1.101"]}
    status, answer = call(controller, "POST", "/nlb/clusters", body)
    assert (status, answer["cluster_ip"], answer["cluster_ips"]) == (201, "10.0.1.100", ["fd00:10::100", "10.0.1.101"])
    status, answer = call(controller, "POST", "/nlb/clusters/api/members", {"ip": "10.0.1.11", "ips": ["fd00:10::11"]})
    assert (status, answer["ips"], answer["mac"]) == (201, ["fd00:10::11"], "02:de:0a:00:01:0b"), "one dedicated MAC"

    status, shown = call(controller, "GET", "/nlb/clusters/api")
    assert (status, shown["cluster_ips"], shown["members"][0]["ips"]) == (
        200,
        ["fd00:10::100", "10.0.1.101"],
        ["fd00:10::11"],
    )
    assert call(controller, "GET", "/nlb/clusters/api/members/10.0.1.11")[1]["ips"] == ["fd00:10::11"]
    web = call(controller, "GET", "/nlb/clusters/web")[1]
    assert "cluster_ips" not in web and all("ips" not in member for member in web["members"]), "absent when none"
    entry = call(controller, "GET", "/nlb/registry")[1]["clusters"][1]
    assert (entry["cluster_ips"], entry["members"]) == (
        ["fd00:10::100", "10.0.1.101"],
        [{"ip": "10.0.1.11", "ips": ["fd00:10::11"], "mac": "02:de:0a:00:01:0b"}],
    )

    path = "/nlb/clusters/api/members/10.0.1.11"
    status, answer = call(controller, "PATCH", path, {"ips": ["fd00:10:0::12", "10.0.1.12"]})
    assert (status, answer["ips"], answer["mac"]) == (200, ["fd00:10::12", "10.0.1.12"], "02:de:0a:00:01:0b")
    saved = load_state(controller.state_file).cluster_named("api")
    assert (saved.vips, saved.members[0].addresses) == (
        ("10.0.1.100", "fd00:10::100", "10.0.1.101"),
        ("10.0.1.11", "fd00:10::12", "10.0.1.12"),
    )
    assert call(controller, "POST", "/nlb/clusters/web/members", {"ip": "10.0.0.20", "ips": ["fd00:10::11"]})[0] == 201
    status, answer = call(controller, "PATCH", path, {"ips": []})
    assert (status, "ips" in answer) == (200, False)
    assert load_state(controller.state_file).cluster_named("api").members[0].ips == ()


def test_an_ipv6_primary_cluster_ip_is_taken_with_its_cluster_mac(controller):
    body = {"name": "v6", "cluster_ip": "fd00:20::100"}
    status, answer = call(controller, "POST", "/nlb/clusters", body)
    assert (status, answer["error"]) == (
        400,
        "cluster_mac: required with an IPv6 cluster_ip (fd00:20::100): NLB derives the cluster MAC from an IPv4"
        " address",
    )
    status, answer = call(controller, "POST", "/nlb/clusters", {**body, "cluster_mac": "02:bf:00:00:20:00"})
    assert (status, answer["cluster_ip"], answer["cluster_mac"]) == (201, "fd00:20::100", "02:bf:00:00:20:00")
    assert load_state(controller.state_file).cluster_named("v6").cluster_ip == "fd00:20::100"


MEMBERS = "/nlb/clusters/web/members"
MORE_ADDRESS_REFUSALS = [
    pytest.param(
        "POST",
        MEMBERS,
        {"ip": "10.0.0.20", "ips": ["fd00:10::11"]},
        409,
        "ips[0]: fd00:10::11 is already an address of member 10.0.1.11 of cluster 'api'",
        id="another-members-address",
    ),
    pytest.param(
        "POST",
        MEMBERS,
        {"ip": "10.0.0.20", "ips": ["fd00:10::100"]},
        409,
        "ips[0]: fd00:10::100 is already a cluster IP of cluster 'api'",
        id="a-vip",
    ),
    pytest.param(
        "POST",
        MEMBERS,
        {"ip": "10.0.0.20", "ips": ["10.0.0.100"]},
        409,
        "ips[0]: 10.0.0.100 is already the cluster IP of cluster 'web'",
        id="its-clusters-primary-vip",
    ),
    pytest.param(
        "POST",
        MEMBERS,
        {"ip": "10.0.0.20", "ips": ["fd00::20", "fd00:0::20"]},
        409,
        "ips[1]: fd00::20 is already an address of member 10.0.0.20 of cluster 'web'",
        id="twice-in-one-member",
    ),
    pytest.param(
        "PATCH",
        f"{MEMBERS}/10.0.0.11",
        {"ips": ["10.0.0.12"]},
        409,
        "ips[0]: 10.0.0.12 is already the IP of a member of cluster 'web'",
        id="patch-onto-a-members-ip",
    ),
    pytest.param(
        "POST",
        "/nlb/clusters",
        {"name": "x", "cluster_ip": "10.0.9.1", "cluster_ips": ["fd00:10::11"]},
        409,
        "cluster_ips[0]: fd00:10::11 is already an address of member 10.0.1.11 of cluster 'api'",
        id="vip-is-a-members-address",
    ),
    pytest.param(
        "POST",
        "/nlb/clusters",
        {"name": "x", "cluster_ip": "10.0.9.1", "cluster_ips": ["fd00:10::100"]},
        409,
        "cluster_ips[0]: fd00:10::100 is already a cluster IP of cluster 'api'",
        id="vip-of-another-cluster",
    ),
    pytest.param(
        "PUT",
        "/nlb/clusters/web",
        {"cluster_ip": "10.0.0.100", "members": [{"ip": "10.0.0.11", "ips": ["fd00:10::11"]}]},
        409,
        "members[0].ips[0]: fd00:10::11 is already an address of member 10.0.1.11 of cluster 'api'",
        id="put-cluster",
    ),
    pytest.param(
        "POST",
        MEMBERS,
        {"ip": "10.0.0.20", "ips": ["fe80::20"]},
        400,
        "ips[0]: fe80::20 cannot be registered: it is a link-local address",
        id="link-local",
    ),
    pytest.param(
        "POST",
        MEMBERS,
        {"ip": "10.0.0.20", "ips": ["::ffff:10.0.0.21"]},
        400,
        "ips[0]: ::ffff:a00:15 cannot be registered: it is an IPv4-mapped address: write 10.0.0.21 itself",
        id="ipv4-mapped",
    ),
    pytest.param(
        "POST",
        MEMBERS,
        {"ip": "fd00::20"},
        400,
        "ip: 'fd00::20': a member's primary ip is IPv4",
        id="ipv6-primary-member-ip",
    ),
    pytest.param("POST", MEMBERS, {"ip": "10.0.0.20", "ips": "fd00::20"}, 400, "ips: expected a list", id="not-a-list"),
    pytest.param(
        "POST",
        "/nlb/clusters",
        {"name": "x", "cluster_ip": "10.0.9.1", "cluster_ips": ["ff02::1"]},
        400,
        "cluster_ips[0]: ff02::1 cannot be registered: it is a multicast address",
        id="multicast-vip",
    ),
    pytest.param(
        "POST",
        "/nlb/clusters",
        {"name": "x", "cluster_ip": "10.0.9.1", "cluster_ips": ["fd00::1::2"]},
        400,
        "cluster_ips[0]: 'fd00::1::2' is not an IPv6 address",
        id="malformed-vip",
    ),
    pytest.param("PATCH", f"{MEMBERS}/10.0.0.11", {"ips": None}, 400, "ips: null is not allowed", id="patch-ips-null"),
]


@pytest.mark.parametrize(("method", "path", "body", "status", "error"), MORE_ADDRESS_REFUSALS)
def test_a_refused_address_names_its_field_and_changes_nothing(controller, method, path, body, status, error):
    with_more_addresses(controller)
    before = unchanged(controller)
    got_status, got_body = call(controller, method, path, body)
    assert (got_status, list(got_body)) == (status, ["error"])
    assert got_body["error"].startswith(error), got_body["error"]
    assert unchanged(controller) == before


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
    switch = {"dpid": 1, "ports": [1, 2, 3, 4, 5, 6], "ports_down": [], "shared_ports": [], "connected": True}
    assert [{key: each[key] for key in switch} for each in body["switches"]] == [switch]
    status_view = {**PINNED_AT_2, "confirmed_ago": None, "checking": False}  # the status adds when it was heard
    assert body["clusters"][0]["members"][1] == {"ip": "10.0.0.12", "located": [status_view]}
    assert body["counters"]["dropped_spoofed"] == 0 and body["counters"]["malformed"] == 0
    controller.core.refused(Refusal.MALFORMED)
    assert call(controller, "GET", "/nlb/status")[1]["counters"]["malformed"] == 1


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
        "cluster_ip: '10.0.0.300' is not an IPv4 or IPv6 address",
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
    pytest.param("GET", "/nlb/clusters/%ff", None, None, 404, "path: no such resource", id="path-not-utf8"),
    pytest.param(
        "DELETE", "/nlb/clusters/web/members/%c3%28", None, None, 404, "path: no such resource", id="path-bad-utf8"
    ),
    pytest.param(
        "POST",
        "/nlb/clusters",
        None,
        b'{"name": "x", "cluster_ip": "10.0.9.1", "name": "y"}',
        400,
        "body: key 'name' is given twice",
        id="duplicate-key",
    ),
    pytest.param(
        "POST",
        "/nlb/clusters/web/members",
        None,
        b'{"ip": "10.0.0.20", "port": {"a": {"b": 1}, "a": 2}, "dpid": 1}',
        400,
        "body: key 'a' is given twice",
        id="duplicate-nested-key",
    ),
    pytest.param(
        "POST", "/nlb/clusters", None, b"[" * 5000 + b"]" * 5000, 400, "body: JSON nested more than", id="nested-5000"
    ),
    pytest.param(
        "POST",
        "/nlb/clusters",
        {
            "name": "x",
            "cluster_ip": "10.0.9.1",
            "arp": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["proxy"]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]],
        },
        None,
        400,
        "body: JSON nested more than 32 deep",
        id="nested-34",
    ),
    pytest.param(
        "POST", "/nlb/clusters/web/members", None, b'{"ip": "10.0.0.20", "port": NaN}', 400, "body: NaN", id="nan"
    ),
    pytest.param("POST", "/nlb/clusters", None, b"\xff\xfe{}", 400, "body: malformed JSON", id="not-utf8"),
    pytest.param(
        "PATCH",
        "/nlb/clusters/web/members/10.0.0.12",
        {"mac": None},
        None,
        400,
        "mac: null is not allowed",
        id="patch-mac-null",
    ),
    pytest.param(
        "PATCH",
        "/nlb/clusters/web/members/10.0.0.12",
        {"mac": None, "dpid": None, "port": None},
        None,
        400,
        "mac: null is not allowed",
        id="patch-mac-null-with-unpin",
    ),
    pytest.param(
        "POST",
        "/nlb/clusters/web/members",
        {"ip": "0.0.0.1"},
        None,
        400,
        "ip: 0.0.0.1 cannot be a host address (0.0.0.0/8",
        id="member-ip-this-network",
    ),
    pytest.param(
        "POST",
        "/nlb/clusters",
        {"name": "x", "cluster_ip": "0.255.0.1"},
        None,
        400,
        "cluster_ip: 0.255.0.1 cannot be a host address",
        id="cluster-ip-this-network",
    ),
    pytest.param(
        "POST",
        "/nlb/clusters",
        {"name": "x", "cluster_ip": "10.0.9.1", "cluster_mac": "00:15:5d:01:02:03"},
        None,
        400,
        "cluster_mac: 00:15:5d:01:02:03 is a globally administered (vendor) MAC",
        id="vendor-cluster-mac",
    ),
    pytest.param(
        "POST",
        "/nlb/clusters",
        {"name": "x", "cluster_ip": "10.0.9.1", "cluster_mac": "02:bf:0a-00:09:01"},
        None,
        400,
        "cluster_mac: '02:bf:0a-00:09:01' is not a MAC address",
        id="mixed-separators",
    ),
    pytest.param(
        "POST",
        "/nlb/clusters/web/members",
        {"ip": "10.0.0.20", "mac": " 02:de:0a:00:00:14"},
        None,
        400,
        "mac: ' 02:de:0a:00:00:14' is not a MAC address",
        id="mac-with-space",
    ),
]


@pytest.mark.parametrize(("method", "path", "body", "raw", "status", "error"), REFUSALS)
def test_a_refused_request_names_the_field_and_changes_nothing(controller, method, path, body, raw, status, error):
    before = unchanged(controller)
    got_status, got_body = call(controller, method, path, body, raw)
    assert (got_status, list(got_body)) == (status, ["error"])
    assert got_body["error"].startswith(error), got_body["error"]
    assert unchanged(controller) == before


def test_every_route_needs_the_token_when_one_is_configured(controller):
    before = controller.registry
    for method, template in ROUTES:
        path = template.replace("{name}", "web").replace("{ip}", "10.0.0.11").replace("{dpid}", "1")
        for token in (None, "wrong"):
            status, body = call(controller, method, path, {}, token=token, api_token="s3cret")
            assert (status, list(body)) == (401, ["error"]), (method, path, token)
    assert controller.registry == before and controller.fabric == parse_config(CONFIG).fabric
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


def test_a_vendor_mac_is_refused_as_a_unicast_cluster_mac_saying_why(controller):
    before = unchanged(controller)
    status, body = call(
        controller, "POST", "/nlb/clusters", {"name": "x", "cluster_ip": "10.0.9.1", "cluster_mac": "00:15:5D:01:02:03"}
    )
    assert status == 400
    assert "locally administered" in body["error"] and "outranks NORMAL" in body["error"]
    assert unchanged(controller) == before
    status, body = call(
        controller, "POST", "/nlb/clusters", {"name": "x", "cluster_ip": "10.0.9.1", "cluster_mac": "02-BF-0A-00-09-01"}
    )
    assert (status, body["cluster_mac"]) == (201, "02:bf:0a:00:09:01"), "a locally administered one is taken"


LIMITED = ControllerSettings(rest_hosts=("nlb.example.com",), rest_max_body_bytes=1024)
CLUSTER = {"name": "x", "cluster_ip": "10.0.9.1"}
CLUSTER_JSON = json.dumps(CLUSTER).encode()

FORGEABLE = [
    pytest.param({"Content-Type": "text/plain"}, CLUSTER_JSON, 415, "Content-Type: 'text/plain'", id="text-plain"),
    pytest.param(
        {"Content-Type": "application/x-www-form-urlencoded"}, b"name=x", 415, "Content-Type: ", id="form-post"
    ),
    pytest.param({"Content-Type": "multipart/form-data; boundary=b"}, b"--b--", 415, "Content-Type: ", id="multipart"),
    pytest.param({"Content-Type": None}, CLUSTER_JSON, 415, "Content-Type: ''", id="no-content-type"),
    pytest.param(
        {"Content-Type": "application/json; charset=latin-1"}, CLUSTER_JSON, 415, "Content-Type: ", id="latin-1"
    ),
    pytest.param({"Host": "evil.example:8080"}, CLUSTER_JSON, 421, "Host: 'evil.example:8080' is not", id="rebound"),
    pytest.param({"Host": "127.0.0.2:8080"}, CLUSTER_JSON, 421, "Host: ", id="other-address"),
    pytest.param({"Host": "127.0.0.1@evil.example"}, CLUSTER_JSON, 421, "Host: ", id="malformed-host"),
    pytest.param({"Host": None}, CLUSTER_JSON, 400, "Host: the header is required", id="no-host"),
    pytest.param({"Origin": "http://evil.example"}, CLUSTER_JSON, 403, "Origin: 'http://evil.example'", id="origin"),
    pytest.param({"Origin": "null"}, CLUSTER_JSON, 403, "Origin: 'null'", id="origin-null"),
    pytest.param({"Origin": "http://127.0.0.1:3000"}, CLUSTER_JSON, 403, "Origin: ", id="origin-other-port"),
    pytest.param({"Origin": "https://127.0.0.1:8080"}, CLUSTER_JSON, 403, "Origin: ", id="origin-other-scheme"),
    pytest.param({"Sec-Fetch-Site": "cross-site"}, CLUSTER_JSON, 403, "Sec-Fetch-Site: 'cross-site'", id="fetch-site"),
    pytest.param({"Sec-Fetch-Site": "same-site"}, CLUSTER_JSON, 403, "Sec-Fetch-Site: ", id="same-site"),
    pytest.param({}, b" " * 1025, 413, "body: 1025 bytes is more than controller.rest.max_body_bytes (1024)", id="big"),
    pytest.param({"Transfer-Encoding": "chunked"}, CLUSTER_JSON, 411, "Content-Length: required", id="chunked"),
]


@pytest.mark.parametrize(("headers", "raw", "status", "error"), FORGEABLE)
def test_what_a_web_page_could_send_is_refused_before_it_is_read_and_changes_nothing(
    controller, headers, raw, status, error
):
    before = unchanged(controller)
    got_status, got_body = call(controller, "POST", "/nlb/clusters", raw=raw, headers=headers, settings=LIMITED)
    assert (got_status, list(got_body)) == (status, ["error"])
    assert got_body["error"].startswith(error), got_body["error"]
    assert unchanged(controller) == before


def test_an_empty_form_post_is_refused_too_and_reaches_no_switch(controller):
    """A cross-site <form method=post> with no fields has no body, but a Content-Type no JSON client sends."""
    reconciled = []
    controller.reconcile = lambda: reconciled.append(True) or {"switches": {}}
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    before = unchanged(controller)
    status, body = call(controller, "POST", "/nlb/flows/reconcile", headers=form)
    assert (status, list(body), reconciled) == (415, ["error"], [])
    assert unchanged(controller) == before
    assert call(controller, "POST", "/nlb/flows/reconcile") == (200, {"switches": {}})
    assert reconciled == [True], "the same request without the form's Content-Type is served"


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="as-the-cli-sends-it"),
        pytest.param({"Host": "localhost:8080"}, id="localhost"),
        pytest.param({"Host": "NLB.example.com"}, id="configured-name"),
        pytest.param({"Host": "nlb.example.com.:8080"}, id="configured-name-fqdn"),
        pytest.param({"Origin": "http://127.0.0.1:8080"}, id="own-origin"),
        pytest.param({"Origin": "http://localhost:8080"}, id="own-origin-by-name"),
        pytest.param({"Sec-Fetch-Site": "same-origin"}, id="same-origin"),
        pytest.param({"Sec-Fetch-Site": "none"}, id="typed-by-the-user"),
        pytest.param({"Content-Type": "application/json; charset=UTF-8"}, id="utf-8"),
        pytest.param({"Content-Type": "Application/JSON"}, id="media-type-case"),
    ],
)
def test_what_the_api_takes_from_its_own_clients(controller, headers):
    status, body = call(controller, "POST", "/nlb/clusters", CLUSTER, headers=headers, settings=LIMITED)
    assert (status, body["name"]) == (201, "x"), body
    assert load_state(controller.state_file).cluster_named("x") is not None


def test_a_body_of_exactly_the_limit_is_read(controller):
    padded = CLUSTER_JSON[:-1] + b" " * (1024 - len(CLUSTER_JSON)) + b"}"
    assert len(padded) == 1024
    status, body = call(controller, "POST", "/nlb/clusters", raw=padded, settings=LIMITED)
    assert (status, body["name"]) == (201, "x")


def test_a_wildcard_listener_takes_any_of_its_ip_literals_but_no_other_name(controller):
    everywhere = ControllerSettings(rest_host="0.0.0.0", token_file="token")
    assert call(controller, "GET", "/nlb/clusters", headers={"Host": "192.0.2.7:8080"}, settings=everywhere)[0] == 200
    assert call(controller, "GET", "/nlb/clusters", headers={"Host": "[::1]:8080"}, settings=everywhere)[0] == 421
    assert call(controller, "GET", "/nlb/clusters", headers={"Host": "evil.example"}, settings=everywhere)[0] == 421


def test_patch_may_still_unpin_with_dpid_and_port_null(controller):
    status, body = call(controller, "PATCH", "/nlb/clusters/web/members/10.0.0.12", {"dpid": None, "port": None})
    assert (status, body["dpid"], body["port"], body["mac"]) == (200, None, None, "02:de:0a:00:00:0c")


# --- the switches ----------------------------------------------------------------------------------------

HV1 = {
    "dpid": 1,
    "name": "hv1",
    "connected": True,
    "uplinks": [{"uplink": 5, "port": 5}, {"uplink": "patch-core", "port": 4}],
    "members": [{"cluster": "web", "ip": "10.0.0.12", "port": 2}, {"cluster": "web", "ip": "10.0.0.11", "port": 3}],
    "loops": 0,
}


def test_list_and_show_switches(controller):
    assert call(controller, "GET", "/nlb/switches") == (200, {"switches": [HV1]})
    for form in ("0000000000000001", "0x1", "1"):
        assert call(controller, "GET", f"/nlb/switches/{form}") == (200, HV1)


def test_put_creates_and_replaces_a_switch_and_saves_it(controller):
    status, body = call(controller, "PUT", "/nlb/switches/0x2", {"name": "hv2", "uplinks": [1, "eth9"]})
    assert (status, body["name"], body["connected"]) == (200, "hv2", False)
    assert body["uplinks"] == [{"uplink": 1, "port": 1}, {"uplink": "eth9", "port": None}]
    assert body["pending_switches"] == []
    status, body = call(controller, "PUT", "/nlb/switches/0000000000000001", {"uplinks": ["trunk"]})
    assert (status, body["name"], body["uplinks"]) == (200, None, [{"uplink": "trunk", "port": 5}])
    assert [s.dpid for s in load_fabric(controller.state_file).switches] == [1, 2], "replaced in place"
    assert load_fabric(controller.state_file) == controller.fabric
    assert [s["dpid"] for s in call(controller, "GET", "/nlb/switches")[1]["switches"]] == [1, 2]


def test_delete_removes_the_configuration_and_the_connected_switch_stays(controller):
    status, body = call(controller, "DELETE", "/nlb/switches/1")
    assert (status, body) == (
        200,
        {"dpid": 1, "name": "hv1", "uplinks": [5, "patch-core"], "pending_switches": []},
    )
    assert load_fabric(controller.state_file).switches == ()
    status, body = call(controller, "GET", "/nlb/switches/1")
    assert (status, body["name"], body["uplinks"], body["connected"]) == (200, None, [], True)
    assert call(controller, "DELETE", "/nlb/switches/1")[0] == 404


SWITCH_REFUSALS = [
    pytest.param("GET", "/nlb/switches/0x", None, 400, "dpid: '0x' is not a datapath id", id="get-bad-dpid"),
    pytest.param("GET", "/nlb/switches/7", None, 404, "dpid: no switch 0000000000000007", id="get-unknown"),
    pytest.param("PUT", "/nlb/switches/g1", {}, 400, "dpid: 'g1' is not a datapath id", id="put-bad-dpid"),
    pytest.param(
        "PUT", "/nlb/switches/00000000000000001", {}, 400, "dpid: '00000000000000001'", id="put-17-hex-digits"
    ),
    pytest.param("DELETE", "/nlb/switches/x", None, 400, "dpid: 'x' is not a datapath id", id="delete-bad-dpid"),
    pytest.param("DELETE", "/nlb/switches/2", None, 404, "dpid: no switch 0000000000000002", id="delete-unknown"),
    pytest.param("PUT", "/nlb/switches/1", {"dpid": 1}, 400, "dpid: unknown field", id="dpid-in-body"),
    pytest.param("PUT", "/nlb/switches/1", {"uplink": [5]}, 400, "uplink: unknown field", id="unknown-field"),
    pytest.param("PUT", "/nlb/switches/1", [5], 400, "the body must be a JSON object", id="not-an-object"),
    pytest.param("PUT", "/nlb/switches/1", {"name": "h v"}, 400, "name: 'h v' is not a valid name", id="bad-name"),
    pytest.param("PUT", "/nlb/switches/1", {"uplinks": [0]}, 400, "uplinks[0]: 0 is not a switch port", id="port-0"),
    pytest.param("PUT", "/nlb/switches/1", {"uplinks": ["a\tb"]}, 400, "uplinks[0]: 'a\\tb'", id="name-with-tab"),
    pytest.param(
        "PUT", "/nlb/switches/1", {"uplinks": [5, 5]}, 400, "uplinks[1]: the uplink 5 is already", id="number-twice"
    ),
    pytest.param(
        "PUT", "/nlb/switches/1", {"uplinks": ["t", "t"]}, 400, "uplinks[1]: the uplink 't' is", id="name-twice"
    ),
    pytest.param(
        "PUT",
        "/nlb/switches/1",
        {"uplinks": [2]},
        409,
        "uplinks[0]: port 2 of dpid 0000000000000001 is where member 10.0.0.12 of cluster 'web' is pinned",
        id="pinned-member-port",
    ),
    pytest.param(
        "PUT",
        "/nlb/switches/1",
        {"uplinks": [3]},
        409,
        "uplinks: port 3 of switch 0000000000000001 is where member 10.0.0.11 of cluster 'web' is located now",
        id="learned-member-port",
    ),
    pytest.param(
        "PUT",
        "/nlb/switches/1",
        {"uplinks": ["vm3"]},
        409,
        "uplinks: port 3 of switch 0000000000000001 is where member 10.0.0.11",
        id="learned-member-port-by-name",
    ),
    pytest.param(
        "PUT",
        "/nlb/switches/2",
        {"name": "hv1"},
        409,
        "name: 'hv1' is already the name of switch 0000000000000001",
        id="switch-name-twice",
    ),
    pytest.param(
        "PATCH",
        "/nlb/clusters/web/members/10.0.0.11",
        {"dpid": 1, "port": 5},
        409,
        "port 5 of dpid 0000000000000001 is where member 10.0.0.11 of cluster 'web' is pinned",
        id="member-pinned-to-an-uplink",
    ),
    pytest.param(
        "POST",
        "/nlb/clusters/web/members",
        {"ip": "10.0.0.20", "dpid": "0000000000000001", "port": 5},
        409,
        "port 5 of dpid 0000000000000001 is where member 10.0.0.20",
        id="new-member-pinned-to-an-uplink",
    ),
    pytest.param(
        "PUT",
        "/nlb/clusters/web",
        {"cluster_ip": "10.0.0.100", "members": [{"ip": "10.0.0.11", "dpid": 1, "port": 5}]},
        409,
        "port 5 of dpid 0000000000000001 is where member 10.0.0.11",
        id="put-cluster-pinned-to-an-uplink",
    ),
    pytest.param(
        "PUT",
        "/nlb/registry",
        {
            "clusters": [
                {"name": "web", "cluster_ip": "10.0.0.100", "members": [{"ip": "10.0.0.11", "dpid": 1, "port": 5}]}
            ]
        },
        409,
        "port 5 of dpid 0000000000000001 is where member 10.0.0.11",
        id="put-registry-pinned-to-an-uplink",
    ),
    pytest.param(
        "PUT", "/nlb/switches/1", {"uplinks": ["05"]}, 400, "uplinks[0]: '05' is ambiguous", id="uplink-leading-zero"
    ),
    pytest.param("POST", "/nlb/switches", {}, 405, "POST is not allowed on /nlb/switches", id="post-switches"),
]


@pytest.mark.parametrize(("method", "path", "body", "status", "error"), SWITCH_REFUSALS)
def test_a_refused_switch_request_names_the_field_and_changes_nothing(controller, method, path, body, status, error):
    before = unchanged(controller)
    got_status, got_body = call(controller, method, path, body)
    assert (got_status, list(got_body)) == (status, ["error"])
    assert got_body["error"].startswith(error), got_body["error"]
    assert unchanged(controller) == before
