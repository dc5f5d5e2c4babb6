"""Bulk and declarative registration: PUT /nlb/clusters/{name}, GET and PUT /nlb/registry (and its dry run).

Against the WSGI app with the stand-in controller of test_rest.py, counting its change() calls and the
flow changes each one pushes, so a test can check one change per request, no flow change for an equal
registry, and that every refusal leaves the registry, the state file and the switches as they were.
"""

from __future__ import annotations

import json

import pytest

from flows.config import parse_config
from flows.model import ControllerSettings
from flows.state import cluster_data
from tests.unit.test_rest import StandInController, call, load_state, unchanged

WEB = {  # the registry test_rest.py's controller starts with, as GET /nlb/registry shows it
    "name": "web",
    "cluster_ip": "10.0.0.100",
    "cluster_mac": "02:bf:0a:00:00:64",
    "mode": "unicast",
    "arp": "proxy",
    "members": [
        {"ip": "10.0.0.11", "mac": "02:de:0a:00:00:0b"},
        {"ip": "10.0.0.12", "mac": "02:de:0a:00:00:0c", "dpid": 1, "port": 2},
    ],
}


class CountingController(StandInController):
    """The stand-in, recording each change() and how many flows it added and deleted on the switch."""

    def __init__(self, state_file: str) -> None:
        super().__init__(state_file)
        self.core.flows_read_back(1, self.core.expected_flows(1), now=0.0)  # the switch holds what it should
        self.changes: list[tuple[int, int]] = []

    def change(self, mutate):
        registry, touched = mutate(self.core.registry)
        self.store.save(registry)
        work = self.core.set_registry(registry, now=0.0)
        self.changes.append(
            (sum(len(w.diff.to_add) for w in work.values()), sum(len(w.diff.to_delete) for w in work.values()))
        )
        return touched, []


@pytest.fixture
def controller(tmp_path) -> CountingController:
    return CountingController(str(tmp_path / "state.db"))


def three_clusters(controller) -> None:
    """web (as the stand-in has it), plus api and old: the registry the bulk tests start from."""
    body = {
        "clusters": [
            WEB,
            {"name": "api", "cluster_ip": "10.0.1.100", "members": [{"ip": "10.0.1.11"}, {"ip": "10.0.1.12"}]},
            {"name": "old", "cluster_ip": "10.0.3.100", "arp": "relay", "members": [{"ip": "10.0.3.11"}]},
        ]
    }
    assert call(controller, "PUT", "/nlb/registry", body)[0] == 200
    controller.changes.clear()


# The change the tests apply: new is added, old removed, web changed (a member added, one removed, one's
# MAC changed, its ARP mode changed); api is the same.
WANTED = {
    "clusters": [
        {
            "name": "web",
            "cluster_ip": "10.0.0.100",
            "arp": "relay",
            "members": [
                {"ip": "10.0.0.12", "mac": "02:de:00:00:00:99", "dpid": "0000000000000001", "port": 2},
                {"ip": "10.0.0.13"},
            ],
        },
        {"name": "api", "cluster_ip": "10.0.1.100", "members": [{"ip": "10.0.1.11"}, {"ip": "10.0.1.12"}]},
        {"name": "new", "cluster_ip": "10.0.2.100", "mode": "multicast", "members": [{"ip": "10.0.2.11"}]},
    ]
}
WANTED_DIFF = {
    "added": [
        {
            "name": "new",
            "cluster_ip": "10.0.2.100",
            "cluster_mac": "03:bf:0a:00:02:64",
            "mode": "multicast",
            "arp": "switch",
            "members": [{"ip": "10.0.2.11"}],
        }
    ],
    "removed": [
        {
            "name": "old",
            "cluster_ip": "10.0.3.100",
            "cluster_mac": "02:bf:0a:00:03:64",
            "mode": "unicast",
            "arp": "relay",
            "members": [{"ip": "10.0.3.11", "mac": "02:de:0a:00:03:0b"}],
        }
    ],
    "changed": [
        {
            "name": "web",
            "fields": [{"field": "arp", "from": "proxy", "to": "relay"}],
            "members": {
                "added": [{"ip": "10.0.0.13", "mac": "02:de:0a:00:00:0d"}],
                "removed": [{"ip": "10.0.0.11", "mac": "02:de:0a:00:00:0b"}],
                "changed": [
                    {
                        "ip": "10.0.0.12",
                        "fields": [{"field": "mac", "from": "02:de:0a:00:00:0c", "to": "02:de:00:00:00:99"}],
                    }
                ],
            },
        }
    ],
    "unchanged": 1,
}


def test_get_registry_is_the_config_clusters_list(controller):
    assert call(controller, "GET", "/nlb/registry") == (200, {"clusters": [WEB]})
    text = "clusters:\n" + "".join(f"  - {json.dumps(entry)}\n" for entry in [WEB])
    assert parse_config(text).registry == controller.registry, "what GET gives, the config reads back as it is"


def test_put_registry_of_what_get_gave_changes_nothing(controller):
    three_clusters(controller)
    before = controller.registry
    registry = call(controller, "GET", "/nlb/registry")[1]
    status, body = call(controller, "PUT", "/nlb/registry", registry)
    assert (status, body) == (
        200,
        {"dry_run": False, "added": [], "removed": [], "changed": [], "unchanged": 3, "pending_switches": []},
    )
    assert controller.registry is before, "an equal registry is not replaced"
    assert controller.changes == [(0, 0)], "one change, and no flow added or deleted"


def test_dry_run_answers_the_diff_and_changes_nothing(controller):
    three_clusters(controller)
    before = unchanged(controller)
    for flag in ("1", "true"):
        status, body = call(controller, "PUT", f"/nlb/registry?dry_run={flag}", WANTED)
        assert (status, body) == (200, {"dry_run": True, **WANTED_DIFF, "pending_switches": []})
    assert unchanged(controller) == before
    assert controller.changes == [], "a dry run never reaches the controller's change()"


def test_put_registry_applies_everything_in_one_change_and_answers_the_same_diff(controller):
    three_clusters(controller)
    status, body = call(controller, "PUT", "/nlb/registry?dry_run=0", WANTED)
    assert (status, body) == (200, {"dry_run": False, **WANTED_DIFF, "pending_switches": []})
    assert len(controller.changes) == 1
    added, deleted = controller.changes[0]
    assert added and deleted
    expected = parse_config("clusters: " + json.dumps(WANTED["clusters"])).registry
    assert controller.registry == expected
    assert load_state(controller.state_file) == expected
    assert [c["name"] for c in call(controller, "GET", "/nlb/registry")[1]["clusters"]] == ["web", "api", "new"]


def test_put_registry_with_no_clusters_removes_every_cluster(controller):
    status, body = call(controller, "PUT", "/nlb/registry", {"clusters": []})
    assert (status, [c["name"] for c in body["removed"]]) == (200, ["web"])
    assert controller.registry.clusters == ()


BULK_REFUSALS = [
    pytest.param(
        {"clusters": [WEB, {"name": "x"}]}, 400, "clusters[1].cluster_ip: required key is missing", id="field"
    ),
    pytest.param(
        {"clusters": [WEB, {"name": "x", "cluster_ip": "10.0.9.1", "members": [{"ip": "10.0.0.300"}]}]},
        400,
        "clusters[1].members[0].ip: '10.0.0.300' is not an IPv4 address",
        id="member-field",
    ),
    pytest.param(
        {"clusters": [WEB, {"name": "x", "cluster_ip": "10.0.9.1", "vip": 1}]},
        400,
        "clusters[1].vip: unknown key",
        id="unknown-key",
    ),
    pytest.param(
        {"clusters": [WEB, {"name": "x", "cluster_ip": "10.0.9.1", "members": [{"ip": "10.0.0.11"}]}]},
        409,
        "clusters[1].members[0].ip: 10.0.0.11 is already the IP of a member of cluster 'web'",
        id="ip-twice",
    ),
    pytest.param(
        {"clusters": [WEB, {**WEB, "cluster_ip": "10.0.9.1", "members": []}]},
        409,
        "clusters[1].name: 'web' is already the name of clusters[0]",
        id="name-twice",
    ),
    pytest.param({}, 400, "clusters: required key is missing", id="no-clusters-key"),
    pytest.param({"clusters": [], "fabric": {}}, 400, "fabric: unknown field", id="other-key"),
    pytest.param({"clusters": {"web": WEB}}, 400, "clusters: expected a list", id="not-a-list"),
    pytest.param([WEB], 400, "the body must be a JSON object", id="not-an-object"),
]


@pytest.mark.parametrize(("body", "status", "error"), BULK_REFUSALS)
def test_a_refused_put_registry_changes_nothing_at_all(controller, body, status, error):
    three_clusters(controller)
    before = unchanged(controller)
    for path in ("/nlb/registry", "/nlb/registry?dry_run=1"):
        got_status, got_body = call(controller, "PUT", path, body)
        assert (got_status, list(got_body)) == (status, ["error"])
        assert got_body["error"].startswith(error), got_body["error"]
    assert unchanged(controller) == before
    assert controller.changes == [], "refused before the controller's change() is called"


@pytest.mark.parametrize(
    ("path", "raw", "status", "error"),
    [
        pytest.param("/nlb/registry?dry_run=yes", None, 400, "dry_run: 'yes' is not 1, 0, true or false", id="flag"),
        pytest.param("/nlb/registry?dry_run=1&dry_run=0", None, 400, "dry_run: given 2 times", id="flag-twice"),
        pytest.param("/nlb/registry", b'{"clusters": [], "clusters": []}', 400, "body: key 'clusters'", id="dup-key"),
        pytest.param("/nlb/registry", b'{"clusters": [', 400, "body: malformed JSON", id="malformed"),
    ],
)
def test_a_malformed_put_registry_changes_nothing(controller, path, raw, status, error):
    before = unchanged(controller)
    got_status, got_body = call(controller, "PUT", path, {"clusters": []} if raw is None else None, raw)
    assert (got_status, got_body["error"][: len(error)]) == (status, error)
    assert unchanged(controller) == before
    assert controller.changes == []


def big_registry(clusters: int, members: int) -> dict:
    """As GET /nlb/registry (and `nlbflow export`) gives it: every field written out, members pinned."""
    text = "clusters:\n" + "".join(
        f"  - {{name: c{c}, cluster_ip: 10.{c}.0.100, members: ["
        + ", ".join(f"{{ip: 10.{c}.1.{m + 1}, dpid: 1, port: {c * members + m + 1}}}" for m in range(members))
        + "]}\n"
        for c in range(clusters)
    )
    return {"clusters": [cluster_data(cluster) for cluster in parse_config(text).registry.clusters]}


def test_a_1000_member_registry_needs_a_raised_body_limit(controller):
    """The default limit (64 KiB) bounds what any client makes the controller buffer; a registry of 1,000
    members is larger, and is taken once controller.rest.max_body_bytes is raised (docs/rest-api.md)."""
    body = big_registry(100, 10)
    size = len(json.dumps(body).encode())
    assert ControllerSettings().rest_max_body_bytes < size < 1024 * 1024
    before = unchanged(controller)
    status, answer = call(controller, "PUT", "/nlb/registry", body)
    assert status == 413
    assert answer["error"] == f"body: {size} bytes is more than controller.rest.max_body_bytes (65536)"
    assert unchanged(controller) == before and controller.changes == []
    raised = ControllerSettings(rest_max_body_bytes=1024 * 1024)
    status, answer = call(controller, "PUT", "/nlb/registry", body, settings=raised)
    assert (status, len(answer["added"]), [c["name"] for c in answer["removed"]]) == (200, 100, ["web"])
    assert sum(len(c.members) for c in controller.registry.clusters) == 1000
    assert len(controller.changes) == 1


# --- PUT /nlb/clusters/{name} -------------------------------------------------------------------------


def test_put_cluster_creates_it_with_its_members_in_one_change(controller):
    body = {"cluster_ip": "10.0.1.100", "arp": "relay", "members": [{"ip": "10.0.1.11", "dpid": 1, "port": 3}]}
    status, answer = call(controller, "PUT", "/nlb/clusters/api", body)
    assert status == 201
    assert (answer["name"], answer["arp"], answer["pending_switches"]) == ("api", "relay", [])
    assert [(m["ip"], m["port"], m["located"][0]["how"]) for m in answer["members"]] == [("10.0.1.11", 3, "pinned")]
    assert [c["name"] for c in answer["diff"]["added"]] == ["api"]
    assert len(controller.changes) == 1 and controller.changes[0][0] > 0
    assert load_state(controller.state_file).cluster_named("api").members[0].port == 3


def test_put_cluster_replaces_it_whole_in_place(controller):
    three_clusters(controller)
    body = {
        "name": "web",
        "cluster_ip": "10.0.0.100",
        "members": [{"ip": "10.0.0.12", "mac": "02:de:00:00:00:99", "dpid": 1, "port": 2}, {"ip": "10.0.0.13"}],
    }
    status, answer = call(controller, "PUT", "/nlb/clusters/web", body)
    assert status == 200
    assert [m["ip"] for m in answer["members"]] == ["10.0.0.12", "10.0.0.13"]
    changed = answer["diff"]["changed"][0]
    assert [m["ip"] for m in changed["members"]["added"]] == ["10.0.0.13"]
    assert [m["ip"] for m in changed["members"]["removed"]] == ["10.0.0.11"]
    assert changed["members"]["changed"] == [
        {"ip": "10.0.0.12", "fields": [{"field": "mac", "from": "02:de:0a:00:00:0c", "to": "02:de:00:00:00:99"}]}
    ]
    assert [c.name for c in controller.registry.clusters] == ["web", "api", "old"], "replaced where it was"
    assert len(controller.changes) == 1


def test_put_cluster_with_an_equal_cluster_changes_no_flow(controller):
    before = controller.registry
    status, answer = call(controller, "PUT", "/nlb/clusters/web", WEB)
    assert (status, answer["diff"]) == (200, {"added": [], "removed": [], "changed": [], "unchanged": 1})
    assert controller.registry is before
    assert controller.changes == [(0, 0)]


PUT_CLUSTER_REFUSALS = [
    pytest.param({**WEB, "name": "api"}, 400, "name: 'api' is not the cluster the path names ('web')", id="name"),
    pytest.param({**WEB, "members": [{"ip": "10.0.0.11", "vip": 1}]}, 400, "members[0].vip: unknown field", id="key"),
    pytest.param({**WEB, "members": ["10.0.0.11"]}, 400, "members[0]: expected a JSON object", id="not-an-object"),
    pytest.param({**WEB, "members": [{"ip": "10.0.0.999"}]}, 400, "members[0].ip: '10.0.0.999' is not", id="bad-ip"),
    pytest.param({"cluster_ip": "10.0.0.100", "members": "x"}, 400, "members: expected a list", id="not-a-list"),
    pytest.param(
        {**WEB, "members": [{"ip": "10.0.0.11"}, {"ip": "10.0.0.11"}]},
        409,
        "members[1].ip: 10.0.0.11 is already the IP of a member of cluster 'web'",
        id="member-twice",
    ),
    pytest.param(
        {**WEB, "members": [{"ip": "10.0.0.13", "dpid": 1, "port": 2}, {"ip": "10.0.0.14", "dpid": 1, "port": 2}]},
        409,
        "members[1].port: dpid 0x1 port 2 is already where member 10.0.0.13 of cluster 'web' is attached",
        id="port-twice",
    ),
    pytest.param(
        {**WEB, "members": [{"ip": "10.0.1.11"}]},
        409,
        "members[0].ip: 10.0.1.11 is already the IP of a member of cluster 'api'",
        id="ip-of-another-cluster",
    ),
    pytest.param(
        {**WEB, "cluster_ip": "10.0.1.100"},
        409,
        "cluster_ip: 10.0.1.100 is already the cluster IP of cluster 'api'",
        id="cluster-ip-of-another",
    ),
]


@pytest.mark.parametrize(("body", "status", "error"), PUT_CLUSTER_REFUSALS)
def test_a_refused_put_cluster_changes_nothing(controller, body, status, error):
    three_clusters(controller)
    before = unchanged(controller)
    got_status, got_body = call(controller, "PUT", "/nlb/clusters/web", body)
    assert (got_status, list(got_body)) == (status, ["error"])
    assert got_body["error"].startswith(error), got_body["error"]
    assert unchanged(controller) == before
    assert controller.changes == []


def test_a_cluster_put_whole_may_take_back_what_it_held(controller):
    """Replacing a cluster releases everything it held: its members may swap MACs and ports in one PUT."""
    three_clusters(controller)
    swapped = {
        **WEB,
        "members": [
            {"ip": "10.0.0.11", "mac": "02:de:0a:00:00:0c", "dpid": 1, "port": 2},
            {"ip": "10.0.0.12", "mac": "02:de:0a:00:00:0b"},
        ],
    }
    assert call(controller, "PUT", "/nlb/clusters/web", swapped)[0] == 200
    assert cluster_data(controller.registry.cluster_named("web"))["members"] == swapped["members"]
    assert cluster_data(load_state(controller.state_file).cluster_named("web"))["members"] == swapped["members"]
