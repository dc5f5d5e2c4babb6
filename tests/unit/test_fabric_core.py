"""NlbCore on a fabric of two switches (issue 9): the flows each holds, what changes where, moves between
switches, uplinks by name, loops.

Switch 1 (hv1): members A (port 1) and B (port 2), a client (4), the uplink `up1` (port 6). Switch 2 (hv2):
member C (port 1), the uplink port 4.
"""

from __future__ import annotations

from dataclasses import replace

from flows.addresses import PROBE_MAC, ZERO_IP
from flows.arp import ARP_REPLY, ArpFrame, FrameOut, Verdict, probe_frame
from flows.cookies import Purpose, decode_cookie
from flows.core import NlbCore
from flows.flowspec import Output, cluster_delivery_flow, member_transit_flow
from flows.locations import Level
from flows.model import Config, Fabric, LocationSettings, Registry, Settings, SwitchConfig
from tests.unit.example_cluster import CM, DM, request, web_cluster

A, B, C = "10.0.0.11", "10.0.0.12", "10.0.0.13"
FABRIC = Fabric(
    switches=(SwitchConfig(dpid=1, name="hv1", uplinks=("up1",)), SwitchConfig(dpid=2, name="hv2", uplinks=(4,)))
)
PORTS = {1: {1: True, 2: True, 3: True, 4: True, 6: True}, 2: {1: True, 2: True, 3: True, 4: True}}
NAMES = {1: {1: "a", 2: "b", 3: "x", 4: "client", 6: "up1"}, 2: {1: "c", 2: "y", 3: "z", 4: "uplink"}}


def probe_answer(ip: str) -> ArpFrame:
    return ArpFrame(CM, PROBE_MAC, ARP_REPLY, CM, ip, PROBE_MAC, ZERO_IP)


def fabric_core(fabric: Fabric = FABRIC) -> NlbCore:
    settings = Settings(locations=LocationSettings(confirm_seconds=1.0))
    core = NlbCore(Config(registry=Registry(clusters=(web_cluster(),)), settings=settings, fabric=fabric))
    for dpid in (1, 2):
        core.switch_connected(dpid, PORTS[dpid], NAMES[dpid])
        core.flows_read_back(dpid, [], 0.0)
    for dpid, port, ip in ((1, 1, A), (1, 2, B), (2, 1, C)):
        core.packet_in(dpid, port, probe_answer(ip), 0.5)
    return core


def flows_of(core: NlbCore, dpid: int, purpose: Purpose) -> set:
    return {flow for flow in core.expected_flows(dpid) if decode_cookie(flow.cookie).purpose == purpose}


def test_each_switch_sends_frames_for_a_member_elsewhere_up_its_uplinks_and_cluster_frames_everywhere():
    core = fabric_core()
    assert flows_of(core, 1, Purpose.MEMBER_TRANSIT) == {member_transit_flow("web", C, DM[C], (6,))}
    assert flows_of(core, 2, Purpose.MEMBER_TRANSIT) == {
        member_transit_flow("web", A, DM[A], (4,)),
        member_transit_flow("web", B, DM[B], (4,)),
    }
    assert flows_of(core, 1, Purpose.CLUSTER_DELIVERY) == {cluster_delivery_flow("web", CM, (1, 2, 6))}
    assert flows_of(core, 2, Purpose.CLUSTER_DELIVERY) == {cluster_delivery_flow("web", CM, (1, 4))}
    assert {view["name"]: view["uplinks"] for view in core.switch_views()} == {
        "hv1": [{"uplink": "up1", "port": 6}],
        "hv2": [{"uplink": 4, "port": 4}],
    }


def test_a_member_found_on_one_switch_changes_the_transit_flows_of_the_other_in_the_same_work():
    core = NlbCore(Config(registry=Registry(clusters=(web_cluster(),)), fabric=FABRIC))
    for dpid in (1, 2):
        core.switch_connected(dpid, PORTS[dpid], NAMES[dpid])
        core.flows_read_back(dpid, [], 0.0)
    _, work = core.packet_in(2, 1, probe_answer(C), 0.5)
    assert dict(work.other_switches)[1].to_add == (member_transit_flow("web", C, DM[C], (6,)),)


def test_an_uplink_going_down_and_up_changes_no_flow_anywhere():
    core = fabric_core()
    for up in (False, True):
        work = core.port_changed(1, 6, True, up, 1.0, "up1")
        assert (work.diff.to_add, work.diff.to_delete, work.other_switches) == ((), (), ())


def test_an_uplink_named_in_the_config_follows_its_port_when_renumbered_and_a_missing_name_is_unresolved():
    core = fabric_core()
    core.port_changed(1, 6, False, False, 1.0)
    assert core.switch_view(1)["uplinks"] == [{"uplink": "up1", "port": None}]
    assert flows_of(core, 1, Purpose.MEMBER_TRANSIT) == set()
    core.port_changed(1, 9, True, True, 1.0, "up1")
    assert core.switch_view(1)["uplinks"] == [{"uplink": "up1", "port": 9}]
    assert flows_of(core, 1, Purpose.MEMBER_TRANSIT) == {member_transit_flow("web", C, DM[C], (9,))}
    assert flows_of(core, 1, Purpose.CLUSTER_DELIVERY) == {cluster_delivery_flow("web", CM, (1, 2, 9))}


def test_probes_for_unlocated_members_never_leave_by_an_uplink():
    core = NlbCore(Config(registry=Registry(clusters=(web_cluster(),)), fabric=FABRIC))
    core.switch_connected(1, PORTS[1], NAMES[1])
    work = core.flows_read_back(1, [], 0.0)
    assert {out.port for out in work.frames} == {1, 2, 3, 4}


def test_a_member_heard_on_another_switch_is_moved_only_once_its_old_port_stayed_silent():
    core = fabric_core()
    heard = request(A, "10.0.0.1")
    decision, work = core.packet_in(2, 2, heard, 2.0)
    assert decision.verdict == Verdict.UNCONFIRMED
    assert work.frames == (FrameOut(1, probe_frame(A), dpid=1),), "its old port is probed, on its own switch"
    assert core.located_ports(1)[("web", A)] == 1 and ("web", A) not in core.located_ports(2)
    work = core.tick(2, 3.1)
    assert core.located_ports(2)[("web", A)] == 2 and ("web", A) not in core.located_ports(1)
    moved = [note.text for note in work.notes if "moved" in note.text]
    assert moved == [
        f"member {A} of cluster web moved from dpid 1 port 1 to dpid 2 port 2 (dpid 1 port 1 silent for 1 s)"
    ]
    others = dict(work.other_switches)
    assert member_transit_flow("web", A, DM[A], (6,)) in others[1].to_add, "switch 1 now sends A's frames up"
    assert member_transit_flow("web", A, DM[A], (4,)) in work.diff.to_delete or any(
        flow.match == (("eth_dst", DM[A]),) for flow in work.diff.to_add
    ), "switch 2 now delivers A's frames on port 2"


def test_a_claim_from_another_switch_that_the_old_port_disproves_is_a_spoof():
    core = fabric_core()
    core.packet_in(2, 2, request(A, "10.0.0.1"), 2.0)
    decision, work = core.packet_in(1, 1, probe_answer(A), 2.2)  # A answers on its own port
    assert decision.verdict == Verdict.LOCATED
    assert [note.level for note in work.notes if "spoof" in note.text] == [Level.WARNING]
    core.tick(2, 4.0)
    assert core.located_ports(1)[("web", A)] == 1 and ("web", A) not in core.located_ports(2)
    again, _ = core.packet_in(2, 2, request(A, "10.0.0.1"), 2.5)
    assert again.verdict == Verdict.DROPPED_SPOOFED, "right after the disproof another claim is refused"


def test_a_member_whose_old_switch_is_gone_moves_at_once():
    core = fabric_core()
    core.switch_disconnected(1)
    decision, _ = core.packet_in(2, 2, request(A, "10.0.0.1"), 2.0)
    assert decision.verdict == Verdict.FORWARDED
    assert core.located_ports(2)[("web", A)] == 2 and ("web", A) not in core.located_ports(1)


def test_a_frame_of_ours_that_comes_back_on_an_uplink_is_a_loop_reported_once_and_dropped():
    core = fabric_core()
    announce = request(A, A, eth_src=DM[A])
    _, work = core.packet_in(1, 1, announce, 2.0)
    went_up = [out.frame for out in work.frames if out.port == 6]
    assert went_up == [announce]
    for at in (2.1, 2.2):
        decision, work = core.packet_in(1, 6, went_up[0], at)
        assert (decision.verdict, decision.outputs) == (Verdict.LOOPED, ())
    assert core.switch_view(1)["loops"] == 2
    assert core.status(2.3)["counters"]["looped"] == 2
    _, first = core.packet_in(1, 1, announce, 70.0)
    assert [n.level for n in core.packet_in(1, 6, announce, 70.1)[1].notes] == [Level.WARNING]
    assert first.frames, "the member's own frames still go out"


def test_a_port_that_becomes_an_uplink_loses_the_member_found_there_and_conflicts_are_named():
    core = fabric_core()
    wrong = Fabric(switches=(replace(FABRIC.switches[0], uplinks=("up1", 2)), FABRIC.switches[1]))
    assert core.uplink_conflicts(wrong) == [
        "dpid 0000000000000001 port 2 (uplink 2) holds member 10.0.0.12 of cluster 'web':"
        " an uplink never holds a member"
    ]
    assert core.uplink_conflicts(FABRIC) == []
    works = core.set_fabric(wrong, 3.0)
    assert ("web", B) not in core.located_ports(1)
    assert Output(2) in next(iter(flows_of(core, 1, Purpose.CLUSTER_DELIVERY))).actions
    assert {out.port for out in works[1].frames if out.frame == probe_frame(B)} == {1, 3, 4}
