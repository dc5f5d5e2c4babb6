"""NlbCore in switch mode (issue 10): which switch-mode flows a switch holds as members are found, what a
port appearing changes, and members kept located by flow counters instead of packet-ins.

One switch: members A, B, C of web on ports 1-3, a client on port 4.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from flows.addresses import PROBE_MAC, ZERO_IP
from flows.arp import ARP_REPLY, ArpFrame
from flows.config import DEFAULT_CLUSTER_MAC
from flows.cookies import Purpose, decode_cookie
from flows.core import NlbCore
from flows.flowspec import SetField, expected_flows
from flows.model import ArpMode, ClusterMode, Config, LocationSettings, Registry, Settings
from flows.responder import ANSWER_TABLE, EGRESS_TABLE, FLOOD_TABLE, SPREAD_TABLE, answer_flow
from tests.unit.example_cluster import CLUSTER_IP, CM, web_cluster

A, B, C = "10.0.0.11", "10.0.0.12", "10.0.0.13"
PORTS = {1: True, 2: True, 3: True, 4: True}
IDLE = 30.0


def probe_answer(ip: str) -> ArpFrame:
    return ArpFrame(CM, PROBE_MAC, ARP_REPLY, CM, ip, PROBE_MAC, ZERO_IP)


def switch_core(*located: tuple[int, str]) -> NlbCore:
    settings = Settings(locations=LocationSettings(idle_seconds=IDLE))
    core = NlbCore(Config(registry=Registry(clusters=(web_cluster(ArpMode.SWITCH),)), settings=settings))
    core.switch_connected(1, PORTS)
    core.flows_read_back(1, [], 0.0)
    for port, ip in located:
        core.packet_in(1, port, probe_answer(ip), 0.5)
    return core


def of_purpose(core: NlbCore, purpose: Purpose) -> list:
    return [flow for flow in core.expected_flows(1) if decode_cookie(flow.cookie).purpose == purpose]


def test_the_incremental_flows_always_equal_the_full_computation():
    core = switch_core((1, A), (2, B))
    state = core.switches[1]
    placement = core.placements[1]
    full = expected_flows(core.registry, core.settings, placement.located, state.down_ports, switch_ports=state.ports)
    assert set(core.expected_flows(1)) == set(full)
    core.port_changed(1, 7, True, True, 1.0)
    placement = core.placements[1]
    full = expected_flows(core.registry, core.settings, placement.located, state.down_ports, switch_ports=state.ports)
    assert set(core.expected_flows(1)) == set(full)


def test_a_switch_answers_only_for_located_peers_and_asks_the_controller_for_the_others():
    core = switch_core((1, A), (2, B))
    answered = {flow for flow in of_purpose(core, Purpose.ARP_ANSWER)}
    cluster = core.registry.cluster_named("web")
    assert answered == {answer_flow(cluster, cluster.member_for_ip(ip)) for ip in (A, B)}
    asking = [dict(flow.match).get("arp_tpa") for flow in of_purpose(core, Purpose.ARP_PUNT)]
    assert sorted(asking, key=str) == [C, None]  # the request for C, and the cluster's punt of the rest
    core.packet_in(1, 3, probe_answer(C), 1.0)
    assert {dict(f.match)["arp_tpa"] for f in of_purpose(core, Purpose.ARP_ANSWER)} == {A, B, C}


def test_a_switch_with_no_member_of_the_cluster_holds_no_switch_mode_flow():
    core = switch_core()
    assert of_purpose(core, Purpose.ARP_SENDER) == []
    assert of_purpose(core, Purpose.ARP_SPREAD) == []
    assert of_purpose(core, Purpose.ARP_ANSWER) == []


def test_a_port_that_appears_or_vanishes_changes_the_switchs_flood_and_no_cluster_flow():
    core = switch_core((1, A), (2, B))

    def flooded() -> list[int]:
        [flood] = [f for f in of_purpose(core, Purpose.ARP_FLOOD) if f.table_id == FLOOD_TABLE]
        return [action.value for action in flood.actions if isinstance(action, SetField)]

    assert flooded() == [1, 2, 3, 4]
    work = core.port_changed(1, 7, True, True, 1.0)
    assert flooded() == [1, 2, 3, 4, 7]
    purposes = {decode_cookie(flow.cookie).purpose for flow in work.diff.to_add}
    assert purposes == {Purpose.ARP_FLOOD, Purpose.PUNT_PORT}
    core.port_changed(1, 7, False, False, 2.0)
    assert flooded() == [1, 2, 3, 4]


def test_the_flood_leaves_out_the_ports_of_the_senders_own_cluster_in_the_egress_table():
    core = switch_core((1, A), (2, B))
    drops = [f for f in of_purpose(core, Purpose.ARP_SPREAD) if f.table_id == EGRESS_TABLE]
    assert sorted(dict(f.match)["reg0"] for f in drops) == [1, 2]
    assert all(f.actions == () for f in drops)


def test_a_registry_without_switch_mode_holds_no_flood():
    core = NlbCore(Config(registry=Registry(clusters=(web_cluster(ArpMode.PROXY),))))
    core.switch_connected(1, PORTS)
    core.flows_read_back(1, [], 0.0)
    assert of_purpose(core, Purpose.ARP_FLOOD) == []


@pytest.mark.parametrize("mode", [ClusterMode.MULTICAST, ClusterMode.IGMP])
def test_a_multicast_cluster_in_switch_mode_the_default_holds_no_switch_mode_flow(mode):
    """Members of a multicast cluster keep their own MACs: no ARP to answer or rewrite, so `arp: switch`
    (the default) adds no flow to what proxy mode holds."""
    cluster = replace(web_cluster(ArpMode.SWITCH), mode=mode, cluster_mac=DEFAULT_CLUSTER_MAC[mode](CLUSTER_IP))
    switch_mode = NlbCore(Config(registry=Registry(clusters=(cluster,))))
    proxy = NlbCore(Config(registry=Registry(clusters=(replace(cluster, arp=ArpMode.PROXY),))))
    for core in (switch_mode, proxy):
        core.switch_connected(1, PORTS)
        core.flows_read_back(1, [], 0.0)
    assert set(switch_mode.expected_flows(1)) == set(proxy.expected_flows(1))
    assert {decode_cookie(flow.cookie).purpose for flow in switch_mode.expected_flows(1)}.isdisjoint(
        {Purpose.ARP_SENDER, Purpose.ARP_ANSWER, Purpose.ARP_SPREAD, Purpose.ARP_FLOOD}
    )


def test_a_port_going_down_and_up_changes_no_spread_flow():
    core = switch_core((1, A), (2, B))
    before = set(of_purpose(core, Purpose.ARP_SPREAD))
    core.port_changed(1, 4, True, False, 1.0)
    core.port_changed(1, 4, True, True, 2.0)
    assert set(of_purpose(core, Purpose.ARP_SPREAD)) == before


def sender_flows(core: NlbCore, ip: str) -> list:
    return [
        f
        for f in of_purpose(core, Purpose.ARP_SENDER)
        if f.table_id == 1 and f.cookie & 0xFFFF0000 == int(ip.split(".")[-1]) << 16
    ]


def test_a_member_whose_flows_count_its_frames_is_not_probed_as_a_quiet_one():
    core = switch_core((1, A), (2, B), (3, C))
    counts = dict.fromkeys([flow for ip in (A, B, C) for flow in sender_flows(core, ip)], 0)
    now = 0.5
    for _ in range(4):  # well past idle_seconds, with every member's counts growing in between
        now += IDLE / 3
        counts = {flow: packets + 1 for flow, packets in counts.items()}
        core.counters_read(1, counts.items(), now)
        assert core.tick(1, now).frames == ()


def test_a_member_whose_counts_stay_still_is_probed_on_its_port_once_idle():
    core = switch_core((1, A), (2, B), (3, C))
    for packets, now in ((5, 10.0), (6, 20.0)):
        still = [(flow, 5) for flow in sender_flows(core, A)]
        growing = [(flow, packets) for ip in (B, C) for flow in sender_flows(core, ip)]
        core.counters_read(1, still + growing, now)
    probes = core.tick(1, 10.0 + IDLE + 1).frames  # A was last heard at 10 s: its first count was news
    assert [(out.port, out.frame.tpa) for out in probes] == [(1, A)]


def test_counts_of_flows_that_are_not_a_members_own_keep_no_member():
    core = switch_core((1, A), (2, B), (3, C))
    foreign = [f for f in core.expected_flows(1) if f.table_id in (ANSWER_TABLE, SPREAD_TABLE)]
    core.counters_read(1, [(flow, 1) for flow in foreign], 10.0)
    core.counters_read(1, [(flow, 2) for flow in foreign], 29.0)
    assert sorted(out.port for out in core.tick(1, 0.5 + IDLE + 1).frames) == [1, 2, 3]
