"""decide_arp() on a fabric of several switches (issue 9; method.md, Fabrics), field by field.

The switch decided on holds members A (port 1) and B (port 2), a client (4), another host (5) and an
uplink (6); member C sits on switch 2, port 1.
"""

from __future__ import annotations

from dataclasses import replace

from flows.addresses import PROBE_MAC
from flows.arp import ARP_REPLY, ArpFrame, FrameOut, Verdict, decide_arp, probe_frame
from flows.flowspec import NORMAL_PORT
from flows.model import ArpMode, Registry
from tests.unit.example_cluster import (
    BROADCAST,
    CLIENT_MAC,
    CLIENT_PORT,
    CM,
    DM,
    OTHER_PORT,
    reply,
    request,
    web_cluster,
)

A, B, C = "10.0.0.11", "10.0.0.12", "10.0.0.13"
UPLINK = 6
SWITCH_PORTS = (1, 2, CLIENT_PORT, OTHER_PORT, UPLINK)
HERE = {("web", A): 1, ("web", B): 2}
ELSEWHERE = {("web", C): (2, 1)}


def decide(frame: ArpFrame, in_port: int, arp: ArpMode = ArpMode.PROXY, pinned: bool = False, normal=False):
    registry = Registry(clusters=(web_cluster(arp, pinned),))
    here = HERE
    if pinned:  # pinned members are on switch 1 at their ports 1, 2, 3: C is then on this switch's port 3
        here = {**HERE, ("web", C): 3}
    return decide_arp(registry, here, SWITCH_PORTS, in_port, frame, normal, (UPLINK,), ELSEWHERE)


def by_port(outputs: tuple[FrameOut, ...]) -> dict[tuple[int | None, int], ArpFrame]:
    keys = [(out.dpid, out.port) for out in outputs]
    assert len(keys) == len(set(keys)), "a frame leaves a port twice"
    return {(out.dpid, out.port): out.frame for out in outputs}


def test_a_peer_on_another_switch_is_answered_for_at_once_with_its_dedicated_mac():
    decision = decide(request(A, C), 1)
    assert decision.verdict == Verdict.ANSWERED
    assert by_port(decision.outputs) == {
        (None, 1): ArpFrame(eth_src=DM[C], eth_dst=CM, op=ARP_REPLY, sha=DM[C], spa=C, tha=CM, tpa=A)
    }


def test_relay_sends_the_revised_request_to_the_peer_on_its_own_switch_and_the_reply_back():
    decision = decide(request(A, C), 1, ArpMode.RELAY)
    assert decision.verdict == Verdict.RELAYED
    assert by_port(decision.outputs) == {(2, 1): replace(request(A, C), eth_src=DM[A], eth_dst=BROADCAST, sha=DM[A])}
    # C's own reply, punted on switch 2 (there A is elsewhere: on switch 1, port 1)
    registry = Registry(clusters=(web_cluster(ArpMode.RELAY),))
    answer = reply(C, A, tha=DM[A], eth_dst=DM[A], eth_src=DM[C])
    revised = decide_arp(registry, {("web", C): 1}, (1, 2, 3), 1, answer, False, (3,), {("web", A): (1, 1)})
    assert revised.verdict == Verdict.REVISED
    assert by_port(revised.outputs) == {
        (1, 1): ArpFrame(eth_src=DM[C], eth_dst=CM, op=ARP_REPLY, sha=DM[C], spa=C, tha=CM, tpa=A)
    }


def test_a_members_broadcast_leaves_by_the_uplink_unchanged_but_for_its_masked_source():
    """Peers here get DM as arp_sha; hosts here and the uplink get arp_sha = CM (the outside world keeps
    resolving the member to CM), and what goes up carries DM as Ethernet source, so no switch beyond
    learns the cluster MAC."""
    announce = request(A, A)  # gratuitous, eth_src = CM: the member's first frame, not masked yet
    decision = decide(announce, 1)
    assert decision.verdict == Verdict.FORWARDED
    assert by_port(decision.outputs) == {
        (None, 2): replace(announce, eth_src=DM[A], eth_dst=BROADCAST, sha=DM[A]),
        (None, CLIENT_PORT): announce,
        (None, OTHER_PORT): announce,
        (None, UPLINK): replace(announce, eth_src=DM[A]),
    }


def test_a_frame_for_a_peer_on_another_switch_goes_up_unchanged_and_nowhere_else():
    """Linux's unicast reachability probe to the cached DM of a peer behind the uplink."""
    probe = request(A, C, eth_dst=DM[C], eth_src=DM[A])
    decision = decide(replace(probe, tpa="10.0.0.1"), 1)  # not for C's DIP: no answer, a spread
    assert decision.verdict == Verdict.FORWARDED
    assert by_port(decision.outputs) == {(None, UPLINK): replace(probe, tpa="10.0.0.1")}


def test_a_frame_for_an_outsider_goes_to_normal_which_knows_whether_it_is_up_the_uplink():
    answer = reply(A, "10.0.0.50", tha=CLIENT_MAC, eth_dst=CLIENT_MAC)
    decision = decide(answer, 1, normal=True)
    assert by_port(decision.outputs) == {(None, NORMAL_PORT): replace(answer, eth_src=DM[A])}


def test_an_arp_from_the_uplink_is_spread_here_and_never_answered_or_taken_as_a_location():
    """C's gratuitous ARP, spread by switch 2: A and B get DM(C), the hosts get it unchanged, nothing goes
    back up, nobody is located on the uplink, and a request for a peer is not answered a second time."""
    announce = request(C, C, eth_src=DM[C])
    decision = decide(announce, UPLINK)
    assert (decision.verdict, decision.claimed) == (Verdict.FORWARDED, None)
    assert by_port(decision.outputs) == {
        (None, 1): replace(announce, sha=DM[C], eth_dst=BROADCAST),
        (None, 2): replace(announce, sha=DM[C], eth_dst=BROADCAST),
        (None, CLIENT_PORT): announce,
        (None, OTHER_PORT): announce,
    }
    for_a = decide(request(C, A, eth_src=DM[C]), UPLINK)
    assert for_a.verdict == Verdict.FORWARDED
    assert all(out.frame.op != ARP_REPLY for out in for_a.outputs)


def test_from_the_uplink_a_duplicate_address_probe_reaches_the_peers_here_with_its_masked_sources_dm():
    """C's probe from 0.0.0.0 names no member by arp_spa: its Ethernet source, DM(C) since C's switch masked
    it, names C, so A and B get it with DM(C) as arp_sha (one of them may hold the address and must answer)
    and the hosts here get it unchanged. Nothing is located, nothing is answered."""
    probe = request("0.0.0.0", "10.0.0.77", eth_src=DM[C])
    decision = decide(probe, UPLINK)
    assert (decision.verdict, decision.claimed) == (Verdict.FORWARDED, None)
    assert by_port(decision.outputs) == {
        (None, 1): replace(probe, sha=DM[C]),
        (None, 2): replace(probe, sha=DM[C]),
        (None, CLIENT_PORT): probe,
        (None, OTHER_PORT): probe,
    }
    unmasked = request("0.0.0.0", "10.0.0.77", eth_src="52:54:00:00:00:99")  # names no member: hosts only
    assert by_port(decide(unmasked, UPLINK).outputs) == {(None, CLIENT_PORT): unmasked, (None, OTHER_PORT): unmasked}
    forged = request("0.0.0.0", "10.0.0.77", eth_src=DM[A])  # A is here, on port 1: never by the uplink
    assert decide(forged, UPLINK).verdict == Verdict.DROPPED_SPOOFED
    gateway = request("10.0.0.1", "10.0.0.77", eth_src=DM[C])  # an address a peer would cache: at DM(C)?
    assert by_port(decide(gateway, UPLINK).outputs) == {(None, CLIENT_PORT): gateway, (None, OTHER_PORT): gateway}


def test_from_the_uplink_a_frame_for_a_peer_here_reaches_that_peer_only():
    probe = request(C, "10.0.0.1", eth_dst=DM[A], eth_src=DM[C])
    decision = decide(probe, UPLINK)
    assert by_port(decision.outputs) == {(None, 1): replace(probe, sha=DM[C], eth_dst=CM)}


def test_from_the_uplink_a_frame_for_an_outsider_goes_to_normal_as_if_it_came_in_there_so_never_back_up():
    answer = reply(C, "10.0.0.50", tha=CLIENT_MAC, eth_dst=CLIENT_MAC, eth_src=DM[C])
    assert decide(answer, UPLINK, normal=True).outputs == (FrameOut(NORMAL_PORT, answer, in_port=UPLINK),)
    without_normal = decide(answer, UPLINK)  # NORMAL knows nobody: every edge non-member port, no uplink
    assert by_port(without_normal.outputs) == {(None, CLIENT_PORT): answer, (None, OTHER_PORT): answer}


def test_a_probe_answer_or_a_foreign_cluster_mac_from_the_uplink_is_dropped():
    answer = ArpFrame(CM, PROBE_MAC, ARP_REPLY, CM, C, PROBE_MAC, "0.0.0.0")
    assert decide(answer, UPLINK).verdict == Verdict.PROBE_UNSOLICITED
    other = web_cluster()
    registry = Registry(
        clusters=(
            other,
            replace(other, name="app", cluster_ip="10.0.9.100", cluster_mac="02:bf:0a:00:09:64", members=()),
        )
    )
    forged = request(C, A, sha="02:bf:0a:00:09:64")
    decision = decide_arp(registry, HERE, SWITCH_PORTS, UPLINK, forged, False, (UPLINK,), ELSEWHERE)
    assert (decision.verdict, decision.outputs) == (Verdict.DROPPED_SPOOFED, ())


def test_a_pinned_members_arp_from_the_uplink_is_no_spoof_but_from_another_edge_port_it_is():
    registry = Registry(clusters=(web_cluster(pinned=True),))  # pinned on dpid 1, ports 1-3
    announce = request(A, A, eth_src=DM[A])
    on_switch_2 = decide_arp(registry, {}, (1, 2, 3), 3, announce, False, (3,), {})
    assert (on_switch_2.verdict, on_switch_2.claimed) == (Verdict.FORWARDED, None)
    from_edge = decide_arp(registry, {}, (1, 2, 3), 2, announce, False, (3,), {})
    assert from_edge.verdict == Verdict.DROPPED_SPOOFED


def test_a_member_located_nowhere_is_probed_for_on_edge_ports_only():
    registry = Registry(clusters=(web_cluster(),))
    decision = decide_arp(registry, HERE, SWITCH_PORTS, 1, request(A, C), False, (UPLINK,), {})
    assert decision.verdict == Verdict.TARGET_UNLOCATED
    assert {out.port for out in decision.outputs} == set(SWITCH_PORTS) - {UPLINK}
    assert {out.frame for out in decision.outputs} == {probe_frame(C)}
