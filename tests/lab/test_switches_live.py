"""The switches of the fabric through the REST API and the CLI of a running controller (issue 9), live.

One OVS bridge (br0) with the typical cluster, a client, an outsider and one more port (`<prefix>up`, ofport
6) that the tests name as an uplink, by its OVS name: the switch's flows follow (the cluster's frames go up
it too, its punt meter gets the total's rate), a refusal changes nothing, the description survives a
restart without a flow touched, and removing it gives the single-switch flows back.
"""

from __future__ import annotations

import time

import pytest

from flows.config import load_config
from flows.flowspec import expected_flows
from flows.meters import port_meter_id
from tests.lab.appkit import (
    RUNTIMES,
    api,
    api_ok,
    app_table,
    nlbflow_cli,
    ovs_text,
    start_cluster,
    switch_ports,
    wait_for_api,
    wait_for_table,
)

DPID = "0000000000000001"
UPLINK_PORT = 6


def wait_until(condition, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        time.sleep(0.2)


def table_with_uplinks(lab, config_path, members, uplinks: frozenset[int]) -> set:
    """The app's flows with the members on their ports and these uplinks (no member elsewhere)."""
    config = load_config(str(config_path))
    ports = {(cluster.name, member.ip): member.ofport for cluster in config.registry.clusters for member in members}
    flows = expected_flows(config.registry, config.settings, ports, switch_ports=switch_ports(lab), uplinks=uplinks)
    return {ovs_text(flow) for flow in flows}


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_an_uplink_named_through_the_api_reshapes_the_flows_refusals_change_nothing_and_it_survives_a_restart(
    lab, lab_available, runtime
):
    running = start_cluster(lab, runtime, "proxy")
    uplink = lab.add_host("up", "02:00:0a:00:00:77", ["10.0.0.77/24"], ofport=UPLINK_PORT)
    members, config_path = running.members, running.config_path
    alone = table_with_uplinks(lab, config_path, members, frozenset())
    assert sorted(wait_for_table(lab, alone)) == sorted(alone), "the new port gets its punt flow"
    wait_for_api(lab)

    views = api_ok(lab, "GET", "/nlb/switches")["switches"]
    assert [(view["dpid"], view["connected"], view["uplinks"]) for view in views] == [(1, True, [])]
    assert sorted(m["ip"] for m in views[0]["members"]) == sorted(m.ip for m in members)

    # name the uplink by its OVS port name: the switch's port description resolves it to ofport 6
    answer = api_ok(lab, "PUT", f"/nlb/switches/{DPID}", {"name": "hv1", "uplinks": [uplink.switch_iface]})
    assert answer["name"] == "hv1"
    assert answer["uplinks"] == [{"uplink": uplink.switch_iface, "port": UPLINK_PORT}]
    up = table_with_uplinks(lab, config_path, members, frozenset({UPLINK_PORT}))
    assert sorted(app_table(lab)) == sorted(up), "the change is in the switch when the API answers"
    delivery = [row for row in app_table(lab) if "dl_dst=02:bf:0a:00:00:64" in row[3]]
    assert [row[4] for row in delivery] == ["output:1,output:2,output:3,output:6"]
    meters = lab.ofctl("dump-meters")
    assert f"meter={port_meter_id(UPLINK_PORT)} pktps burst stats bands=\ntype=drop rate=1000 burst_size=1000" in meters
    listed = nlbflow_cli(lab, "switch", "list")
    assert listed.returncode == 0, listed.stderr
    assert "hv1" in listed.stdout and uplink.switch_iface in listed.stdout, listed.stdout

    # refusals: a member's port as uplink (409), a malformed dpid (400); nothing changes, in API or switch
    before = sorted(app_table(lab))
    status, refused = api(lab, "PUT", f"/nlb/switches/{DPID}", {"name": "hv1", "uplinks": [members[0].ofport]})
    assert status == 409 and "10.0.0.11" in refused["error"], refused
    status, refused = api(lab, "PUT", "/nlb/switches/xyz", {"name": "hv1"})
    assert status == 400, refused
    by_cli = nlbflow_cli(lab, "switch", "set", DPID, "--uplink", str(members[1].ofport))
    assert by_cli.returncode != 0 and "10.0.0.12" in by_cli.stderr + by_cli.stdout
    assert api_ok(lab, "GET", f"/nlb/switches/{DPID}")["uplinks"] == answer["uplinks"]
    assert sorted(app_table(lab)) == before

    # kept in the store: a restart reads it back and touches no flow (durations go on)
    lab.restart_controller()
    lab.wait_connected()
    wait_for_api(lab)
    assert sorted(wait_for_table(lab, up)) == sorted(up)
    wait_until(lambda: "synchronised: 0 added, 0 deleted" in lab.controller_log(), "the restart's sync")
    assert api_ok(lab, "GET", f"/nlb/switches/{DPID}")["uplinks"] == answer["uplinks"]

    # removed: the single-switch flows again
    removed = api_ok(lab, "DELETE", f"/nlb/switches/{DPID}")
    assert removed["uplinks"] == [uplink.switch_iface]
    assert sorted(app_table(lab)) == sorted(alone)
    assert api_ok(lab, "GET", f"/nlb/switches/{DPID}")["uplinks"] == []
