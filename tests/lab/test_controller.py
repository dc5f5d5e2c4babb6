"""The controller process under both runtimes: where its config comes from, how a bad one stops it, how
it finds silent members, and what a restart does (nothing, to traffic or to the flow table)."""

from __future__ import annotations

import pytest

from tests.lab.appkit import (
    APP_COOKIES,
    RUNTIMES,
    app_table,
    cluster_yaml,
    expected_table,
    start_cluster,
    wait_for_table,
    write_config,
)

FOREIGN_FLOW = "cookie=0x1234,priority=50,dl_dst=02:00:00:00:00:99,actions=drop"
STALE_APP_FLOW = "cookie=0x4e4c4e1b00630300,priority=200,dl_dst=02:de:0a:00:00:63,actions=output:5"


@pytest.mark.parametrize("kill9", [False, True], ids=["sigterm", "sigkill"])
@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_restart_keeps_member_traffic_flowing_and_leaves_exactly_the_expected_flows(lab, runtime, kill9):
    net = start_cluster(lab, runtime, "proxy")
    m1, m2 = net.members[0], net.members[1]
    expected = expected_table(net.config_path, net.members)
    with lab.tcp_session(m1, m2, m2.ip, 7500, source_ip=m1.ip) as session:
        assert session.echo("before")
        lab.stop_controller(kill9=kill9)
        lab.wait_disconnected()
        assert session.echo("while the controller is away"), "flows must stay in the switch"
        lab.add_flow(FOREIGN_FLOW)
        lab.add_flow(STALE_APP_FLOW)
        lab.restart_controller()
        lab.wait_connected()
        table = wait_for_table(lab, expected)
        assert session.echo("after")
    assert sorted(table) == sorted(expected)
    assert len(table) == len(set(table)), "duplicate flows"
    foreign = [f for f in lab.dump_flows() if f.cookie == 0x1234]
    assert [(f.priority, f.match, f.actions) for f in foreign] == [(50, "dl_dst=02:00:00:00:00:99", "drop")]
    assert " located on port" not in lab.controller_log(), "a restarted controller takes locations from the switch"
    assert "dpid 1: synchronised: 0 added, 1 deleted" in lab.controller_log(), "it touches only the stale flow"


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_peers_very_first_packet_reaches_a_member_that_never_spoke(lab, runtime):
    members, _ = lab.add_typical_cluster()
    lab.start_controller(runtime, write_config(lab, cluster_yaml()))
    lab.wait_connected()
    assert lab.ping_replies(members[0], members[1].ip, count=1, timeout=5) == 1
    assert "ARP reply 10.0.0.12 (02:bf:0a:00:00:64) -> 0.0.0.0: located" in lab.controller_log()


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_the_config_path_can_come_from_an_oslo_config_file(lab, runtime):
    members, _ = lab.add_typical_cluster()
    yaml_path = write_config(lab, cluster_yaml())
    conf = write_config(lab, f"[nlbflow]\nconfig = {yaml_path}\n", "nlbflow.conf")
    lab.start_controller(runtime, extra_args=["--config-file", str(conf)])
    lab.wait_connected()
    expected = expected_table(yaml_path, members)
    assert sorted(wait_for_table(lab, expected)) == sorted(expected)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_bad_config_stops_the_start_naming_file_key_and_problem(lab, runtime):
    bad = write_config(lab, cluster_yaml(member_dips=("10.0.0.11/24", "10.0.0.300/24")))
    process = lab.start_controller(runtime, bad)
    assert process.wait(timeout=60) != 0
    assert f"{bad}: clusters[0].members[1].ip: '10.0.0.300' is not an IPv4 address" in lab.controller_log()
    assert app_table(lab) == []


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_pinned_members_get_their_flows_without_being_located(lab, runtime):
    members, _ = lab.add_typical_cluster()
    pinned = "".join(f"      - {{ip: {m.ip}, dpid: '0000000000000001', port: {m.ofport}}}\n" for m in members)
    config = write_config(lab, cluster_yaml().split("    members:\n")[0] + "    members:\n" + pinned)
    lab.start_controller(runtime, config)
    lab.wait_connected()
    expected = expected_table(config, members)
    assert sorted(wait_for_table(lab, expected)) == sorted(expected)
    assert lab.ping(members[2], members[0].ip)
    assert "located" not in lab.controller_log()
    assert {f.cookie for f in lab.dump_flows(APP_COOKIES)} == {row[1] for row in expected}
