"""Edge cases of the fabric that an independent review of the first version found (each failed on it):
masking, loops, moves during a controller blip, stale flows at reconnect, claims over an uplink. Same
fabric as tests/unit/test_fabric_core.py: switch 1 has members A (1), B (2) and the uplink up1 (6);
switch 2 has member C (1) and the uplink 4."""

from __future__ import annotations

from dataclasses import replace

from flows.arp import Verdict
from flows.cookies import Purpose
from flows.core import NlbCore
from flows.model import Config, Fabric, LocationSettings, Registry, Settings, SwitchConfig
from tests.unit.example_cluster import CLUSTER_IP, DM, request, web_cluster
from tests.unit.test_fabric_core import FABRIC, NAMES, PORTS, A, C, fabric_core, flows_of, probe_answer


def test_a_vip_announcement_from_a_member_not_yet_found_never_leaves_an_uplink_with_the_cluster_mac_as_source():
    """NLB members announce the VIP (arp_spa = arp_tpa = VIP, sha = eth_src = CM), typically when the
    cluster converges. From a port where no member is located yet (no source-masking flow there) it cannot
    be masked: it stays off the uplinks, or the learning switch beyond would learn the cluster MAC on
    switch 1's uplink (and send every later client frame for CM to switch 1 only). Once the member is
    found there, the announcement goes up, masked."""

    core = NlbCore(Config(registry=Registry(clusters=(web_cluster(),)), fabric=FABRIC))
    for dpid in (1, 2):
        core.switch_connected(dpid, PORTS[dpid], NAMES[dpid])
        core.flows_read_back(dpid, [], 0.0)
    _, work = core.packet_in(1, 1, request(CLUSTER_IP, CLUSTER_IP), 0.2)
    assert [out.port for out in work.frames] == [2, 3, 4], "to the hosts of switch 1 only"
    core.packet_in(1, 1, probe_answer(A), 0.5)  # A found on port 1
    _, work = core.packet_in(1, 1, request(CLUSTER_IP, CLUSTER_IP), 2.0)
    up = [out.frame for out in work.frames if out.port == 6 and out.dpid is None]
    assert [frame.eth_src for frame in up] == [DM[A]], "masked as port 1's masking flow would"


def test_the_same_vip_announcement_from_members_on_two_switches_is_no_loop():
    """Without source masking (settings.source_masking false; or members not found yet, see above) every
    member's VIP announcement is the same frame byte for byte. Switch 1 sends A's up its uplink; C's,
    sent up by switch 2 a moment later, arrives on switch 1's uplink equal to what switch 1 emitted. It
    names no member (arp_spa is the VIP), so it says nothing of a loop: spread, not counted (two switches,
    one link)."""

    settings = Settings(locations=LocationSettings(confirm_seconds=1.0), source_masking=False)
    core = NlbCore(Config(registry=Registry(clusters=(web_cluster(),)), settings=settings, fabric=FABRIC))
    for dpid in (1, 2):
        core.switch_connected(dpid, PORTS[dpid], NAMES[dpid])
        core.flows_read_back(dpid, [], 0.0)
    for dpid, port, ip in ((1, 1, A), (2, 1, C)):
        core.packet_in(dpid, port, probe_answer(ip), 0.5)
    garp = request(CLUSTER_IP, CLUSTER_IP)
    core.packet_in(1, 1, garp, 1.0)  # A's announcement, up to switch 2
    _, work2 = core.packet_in(2, 1, garp, 1.1)  # C's, the same frame, up to switch 1
    from_c = next(out.frame for out in work2.frames if out.port == 4)
    decision, _ = core.packet_in(1, 6, from_c, 1.15)
    assert decision.verdict != Verdict.LOOPED
    assert core.loops[1] == 0


def test_a_claim_from_a_port_that_vanished_before_it_was_confirmed_moves_nobody():
    """A (switch 1 port 1) is heard on switch 2 port 2: a crossing, held. Port 2 is then deleted (the
    claimer's VM went away): the claim goes with it, and A stays on switch 1."""
    core = fabric_core()
    core.packet_in(2, 2, request(A, "10.0.0.1"), 2.0)
    core.port_changed(2, 2, False, False, 2.5)
    core.tick(1, 3.1)
    assert core.located_ports(1).get(("web", A)) == 1, "A still sits on switch 1"
    assert ("web", A) not in core.located_ports(2)


def test_a_reconnecting_switch_does_not_adopt_a_stale_delivery_flow_for_a_member_that_moved_to_another_switch():
    """Switch 1 disconnects and stays away; A is heard on switch 2 and, its old switch away for
    idle_seconds, moved there. Switch 1 reconnects still holding its old delivery flow for A on port 1: it
    is not adopted (A sits on switch 2 now), so switch 1 sends DM(A) up its uplink again."""
    core = fabric_core()
    installed = core.expected_flows(1)
    core.switch_disconnected(1)
    decision, _ = core.packet_in(2, 2, request(A, "10.0.0.1"), 2.0)
    assert decision.verdict == Verdict.UNCONFIRMED, "held while its old switch cannot be asked"
    core.tick(2, 2.0 + core.settings.locations.idle_seconds)
    assert core.located_ports(2).get(("web", A)) == 2
    core.switch_connected(1, PORTS[1], NAMES[1])
    core.flows_read_back(1, installed, 40.0)
    assert ("web", A) not in core.located_ports(1), "A adopted on switch 1 though it now sits on switch 2"
    assert any(dict(f.match)["eth_dst"] == DM[A] for f in flows_of(core, 1, Purpose.MEMBER_TRANSIT))


def test_a_pinned_members_dip_arriving_over_an_uplink_on_its_own_switch_is_refused_as_a_spoof():
    """A is pinned to switch 1 port 1. A frame claiming A (sha = CM, spa = A) that arrives on switch 1's
    uplink cannot be A's (A's frames enter on port 1): refused and counted as a spoof, as from an edge
    port, and spread nowhere."""

    settings = Settings(locations=LocationSettings(confirm_seconds=1.0))
    core = NlbCore(Config(registry=Registry(clusters=(web_cluster(pinned=True),)), settings=settings, fabric=FABRIC))
    for dpid in (1, 2):
        core.switch_connected(dpid, PORTS[dpid], NAMES[dpid])
        core.flows_read_back(dpid, [], 0.0)
    forged = replace(request(A, "10.0.0.1"), eth_src=DM[A])
    decision, work = core.packet_in(1, 6, forged, 1.0)
    assert decision.verdict == Verdict.DROPPED_SPOOFED, (decision.verdict, [(o.port, o.frame.sha) for o in work.frames])


def test_transit_flows_follow_a_member_that_moves():
    """Control: after A moves to switch 2, switch 1 sends DM(A) up and switch 2 no longer does."""
    core = fabric_core()
    core.packet_in(2, 2, request(A, "10.0.0.1"), 2.0)
    core.tick(2, 3.1)
    assert any(f.cookie for f in flows_of(core, 1, Purpose.MEMBER_TRANSIT) if dict(f.match)["eth_dst"] == DM[A])
    assert not any(dict(f.match)["eth_dst"] == DM[A] for f in flows_of(core, 2, Purpose.MEMBER_TRANSIT))


def test_a_loop_among_switches_that_pass_a_frame_on_but_did_not_send_it_first_is_seen_when_it_enters_the_other_way():
    """Switch 2 has two uplinks (4, 3) that meet again beyond it (a loop that does not contain switch 1).
    A's ARP from switch 1 enters switch 2 on 4 and leaves by 3. The same frame entering again by 4 is what
    a member repeating itself looks like (keepalived's back-to-back gratuitous ARPs): passed on. Entering
    by 3, the other way round the loop, it is the loop, which is reported although switch 2 never sent the
    frame first. Over a tree a frame enters a switch by one way only."""

    fabric = Fabric(switches=(SwitchConfig(dpid=1, uplinks=(6,)), SwitchConfig(dpid=2, uplinks=(4, 3))))
    settings = Settings(locations=LocationSettings(confirm_seconds=1.0))
    core = NlbCore(Config(registry=Registry(clusters=(web_cluster(),)), settings=settings, fabric=fabric))
    for dpid in (1, 2):
        core.switch_connected(dpid, PORTS[dpid], NAMES[dpid])
        core.flows_read_back(dpid, [], 0.0)
    for dpid, port, ip in ((1, 1, A), (2, 1, C)):
        core.packet_in(dpid, port, probe_answer(ip), 0.5)
    _, work = core.packet_in(1, 1, request(A, "10.0.0.1"), 1.0)
    up = next(out.frame for out in work.frames if out.port == 6)
    verdicts = []
    for lap in range(4):
        decision, work = core.packet_in(2, 4, up, 1.001 + lap * 0.005)
        verdicts.append(decision.verdict)
    assert verdicts == [Verdict.FORWARDED] * 4, "the same frame by the same way: a member repeating itself"
    decision, _ = core.packet_in(2, 3, up, 1.03)  # round the loop, the other way: by the other uplink
    assert decision.verdict == Verdict.LOOPED and core.loops[2] == 1


def test_a_controller_connection_flap_does_not_let_a_forged_claim_on_another_switch_take_a_member():
    """A sits on switch 1 port 1 and keeps working there; switch 1's controller connection drops for a
    moment (the datapath still forwards). A host on switch 2 port 2 claims A: held, since switch 1 cannot be
    asked. When switch 1 is back, A's own ARP from port 1 disproves the claim, and the forger's answer to a
    probe nobody sent on its port counts for nothing: A stays on switch 1."""

    core = fabric_core()
    core.switch_disconnected(1)
    decision, _ = core.packet_in(2, 2, request(A, "10.0.0.1"), 2.0)  # forged
    core.switch_connected(1, PORTS[1], NAMES[1])
    core.flows_read_back(1, [], 2.1)
    core.packet_in(1, 1, request(A, "10.0.0.1"), 2.2)  # A itself
    core.packet_in(2, 2, probe_answer(A), 2.3)  # the forger answers the probe of "its old port"
    core.tick(1, 3.5)
    core.tick(2, 3.5)
    assert core.located_ports(1).get(("web", A)) == 1, (decision.verdict, core.located_ports(2))
