"""Bulk and declarative registration live on real OVS, under both runtimes (docs/rest-api.md).

One PUT /nlb/registry adds a cluster, changes another (a member added, one removed, one's MAC changed)
and removes a third; once it is answered, the switch holds exactly the flows the app's own pure core
computes for the new registry (dump-flows against flowspec.expected_flows, as appkit compares). A dry run
and refused PUTs leave the switch and GET /nlb/registry as they were; `nlbflow export` then
`nlbflow apply --dry-run` shows no change. Every member is pinned, so the expected table does not depend
on when the app locates anyone.
"""

from __future__ import annotations

import json

import pytest

from tests.lab.appkit import RUNTIMES, api, api_ok, app_table, expected_table, nlbflow_cli, wait_for_api, write_config
from tests.lab.appkit import wait_for_table as settled_table
from tests.netlab import Host, Lab

DPID = "0000000000000001"

BEFORE = f"""\
clusters:
  - name: web
    cluster_ip: 10.0.0.100
    members:
      - {{ip: 10.0.0.11, dpid: "{DPID}", port: 1}}
      - {{ip: 10.0.0.12, dpid: "{DPID}", port: 2}}
  - name: api
    cluster_ip: 10.0.1.100
    members:
      - {{ip: 10.0.1.11, dpid: "{DPID}", port: 5}}
  - name: old
    cluster_ip: 10.0.3.100
    arp: relay
    members:
      - {{ip: 10.0.3.11, dpid: "{DPID}", port: 6}}
"""

WANTED = {  # web: 10.0.0.11 removed, 10.0.0.12's MAC changed, 10.0.0.13 added; api as it was; new added; old gone
    "clusters": [
        {
            "name": "web",
            "cluster_ip": "10.0.0.100",
            "members": [
                {"ip": "10.0.0.12", "mac": "02:de:00:00:00:99", "dpid": DPID, "port": 2},
                {"ip": "10.0.0.13", "dpid": DPID, "port": 3},
            ],
        },
        {"name": "api", "cluster_ip": "10.0.1.100", "members": [{"ip": "10.0.1.11", "dpid": DPID, "port": 5}]},
        {"name": "new", "cluster_ip": "10.0.2.100", "members": [{"ip": "10.0.2.11", "dpid": DPID, "port": 7}]},
    ]
}


def hosts(lab: Lab) -> list[Host]:
    """m1..m3 of the web cluster on ports 1..3 (c1 on 4), members of api (two), old and new."""
    members, _ = lab.add_typical_cluster()
    others = [
        lab.add_member("a1", "10.0.1.11/24", ofport=5, vip="10.0.1.100/32", cluster_mac="02:bf:0a:00:01:64"),
        lab.add_member("o1", "10.0.3.11/24", ofport=6, vip="10.0.3.100/32", cluster_mac="02:bf:0a:00:03:64"),
        lab.add_member("n1", "10.0.2.11/24", ofport=7, vip="10.0.2.100/32", cluster_mac="02:bf:0a:00:02:64"),
        lab.add_member("a2", "10.0.1.12/24", ofport=8, vip="10.0.1.100/32", cluster_mac="02:bf:0a:00:01:64"),
    ]
    return members + others


def sorted_table(lab: Lab) -> list:
    return sorted(app_table(lab))


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_one_put_registry_adds_changes_and_removes_clusters_and_the_switch_holds_exactly_that(lab, runtime):
    everyone = hosts(lab)
    config_path = write_config(lab, BEFORE)
    lab.start_controller(runtime, config_path)
    lab.wait_connected()
    wait_for_api(lab)
    before = sorted(expected_table(config_path, everyone))
    assert sorted(settled_table(lab, set(before))) == before, f"never synced:\n{lab.controller_log()}"
    registry_before = api_ok(lab, "GET", "/nlb/registry")
    assert [c["name"] for c in registry_before["clusters"]] == ["web", "api", "old"]

    # Refused, for every reason a bulk request has: nothing changes, in the registry or in the switch.
    conflict = {
        "clusters": [*WANTED["clusters"], {"name": "x", "cluster_ip": "10.0.9.1", "members": [{"ip": "10.0.0.12"}]}]
    }
    bad_field = {"clusters": [WANTED["clusters"][0], {"name": "api", "cluster_ip": "10.0.1.300"}]}
    too_large = json.dumps(WANTED) + " " * 65536
    refusals = [
        (api(lab, "PUT", "/nlb/registry", conflict), 409, "clusters[3].members[0].ip: 10.0.0.12 is already"),
        (api(lab, "PUT", "/nlb/registry", bad_field), 400, "clusters[1].cluster_ip: '10.0.1.300' is not"),
        (api(lab, "PUT", "/nlb/registry", raw=too_large), 413, "body: "),
        (api(lab, "PUT", "/nlb/clusters/web", {**WANTED["clusters"][1], "name": "api"}), 400, "name: 'api' is not"),
    ]
    for (status, answer), want_status, message in refusals:
        assert (status, answer["error"][: len(message)]) == (want_status, message), answer
    assert sorted_table(lab) == before, "a refused PUT changed the switch"
    assert api_ok(lab, "GET", "/nlb/registry") == registry_before

    # The dry run answers what the real PUT answers, and changes nothing.
    dry = api_ok(lab, "PUT", "/nlb/registry?dry_run=1", WANTED)
    assert ([c["name"] for c in dry["added"]], [c["name"] for c in dry["removed"]]) == (["new"], ["old"])
    (web,) = dry["changed"]
    assert (web["name"], web["fields"], dry["unchanged"]) == ("web", [], 1)
    assert [m["ip"] for m in web["members"]["added"]] == ["10.0.0.13"]
    assert [m["ip"] for m in web["members"]["removed"]] == ["10.0.0.11"]
    assert web["members"]["changed"] == [
        {"ip": "10.0.0.12", "fields": [{"field": "mac", "from": "02:de:0a:00:00:0c", "to": "02:de:00:00:00:99"}]}
    ]
    assert sorted_table(lab) == before, "a dry run changed the switch"
    assert api_ok(lab, "GET", "/nlb/registry") == registry_before

    applied = api_ok(lab, "PUT", "/nlb/registry", WANTED)

    assert {**applied, "dry_run": True} == dry and applied["pending_switches"] == []
    wanted_path = write_config(lab, "clusters: " + json.dumps(WANTED["clusters"]) + "\n", "wanted.yaml")
    after = sorted(expected_table(wanted_path, everyone))
    assert sorted_table(lab) == after, f"the switch does not hold the new registry's flows:\n{lab.controller_log()}"
    assert after != before
    assert [c["name"] for c in api_ok(lab, "GET", "/nlb/registry")["clusters"]] == ["web", "api", "new"]

    # The same registry again: nothing to do. Export, then apply the export: no change either.
    again = api_ok(lab, "PUT", "/nlb/registry", WANTED)
    assert (again["added"], again["removed"], again["changed"], again["unchanged"]) == ([], [], [], 3)
    exported = nlbflow_cli(lab, "export")
    assert exported.returncode == 0, exported.stderr
    export_path = write_config(lab, exported.stdout, "exported.yaml")
    shown = nlbflow_cli(lab, "apply", str(export_path), "--dry-run")
    assert (shown.returncode, shown.stdout) == (0, "dry run: no change: 3 clusters as registered\n"), shown.stderr
    assert sorted_table(lab) == after

    # One cluster put whole: api gets a second member.
    api_cluster = {
        "cluster_ip": "10.0.1.100",
        "members": [*WANTED["clusters"][1]["members"], {"ip": "10.0.1.12", "dpid": DPID, "port": 8}],
    }
    status, answer = api(lab, "PUT", "/nlb/clusters/api", api_cluster)
    assert (status, [m["ip"] for m in answer["diff"]["changed"][0]["members"]["added"]]) == (200, ["10.0.1.12"])
    final = {"clusters": [WANTED["clusters"][0], {"name": "api", **api_cluster}, WANTED["clusters"][2]]}
    final_path = write_config(lab, "clusters: " + json.dumps(final["clusters"]) + "\n", "final.yaml")
    table, expected = sorted_table(lab), sorted(expected_table(final_path, everyone))
    assert table == expected, (set(table) - set(expected), set(expected) - set(table))
