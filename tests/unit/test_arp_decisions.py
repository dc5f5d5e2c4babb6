"""decide_arp() for every kind of ARP that method.md lists, field by field."""

from __future__ import annotations

import pytest

from flows.addresses import PROBE_MAC
from flows.arp import ARP_REPLY, ArpFrame, FrameOut, Verdict, decide_arp, probe_frame
from flows.model import ArpMode, Registry
from tests.unit.example_cluster import (
    BROADCAST,
    CLIENT_IP,
    CLIENT_MAC,
    CLIENT_PORT,
    CLUSTER_IP,
    CM,
    DM,
    MEMBER_PORT,
    OTHER_PORT,
    SWITCH_PORTS,
    ZERO_MAC,
    reply,
    request,
    web_cluster,
)

A, B, C = "10.0.0.11", "10.0.0.12", "10.0.0.13"
NON_MEMBER_PORTS = (CLIENT_PORT, OTHER_PORT)


def decide(frame: ArpFrame, in_port: int, ports, arp: ArpMode = ArpMode.PROXY, pinned: bool = False):
    registry = Registry(clusters=(web_cluster(arp, pinned),))
    return decide_arp(registry, ports, SWITCH_PORTS, in_port, frame)


def by_port(outputs: tuple[FrameOut, ...]) -> dict[int, ArpFrame]:
    ports = [out.port for out in outputs]
    assert len(ports) == len(set(ports)), "a frame leaves a port twice"
    return {out.port: out.frame for out in outputs}


def test_proxy_answers_a_peer_with_its_dedicated_mac_addressed_to_the_cluster_mac(all_located):
    decision = decide(request(A, B), MEMBER_PORT[A], all_located)
    assert decision.verdict == Verdict.ANSWERED
    assert by_port(decision.outputs) == {
        MEMBER_PORT[A]: ArpFrame(eth_src=DM[B], eth_dst=CM, op=ARP_REPLY, sha=DM[B], spa=B, tha=CM, tpa=A)
    }


def test_proxy_answers_a_linux_unicast_probe_sent_to_the_cached_dedicated_mac(all_located):
    decision = decide(request(A, B, eth_dst=DM[B]), MEMBER_PORT[A], all_located)
    assert decision.verdict == Verdict.ANSWERED
    assert by_port(decision.outputs)[MEMBER_PORT[A]].sha == DM[B]


def test_proxy_answer_goes_to_the_vip_when_linux_used_the_vip_as_sender_ip(all_located):
    decision = decide(request(CLUSTER_IP, B), MEMBER_PORT[A], all_located)
    assert decision.verdict == Verdict.ANSWERED
    answer = by_port(decision.outputs)[MEMBER_PORT[A]]
    assert (answer.sha, answer.tpa, answer.eth_dst) == (DM[B], CLUSTER_IP, CM)


def test_relay_passes_the_request_to_the_target_only_with_the_requesters_dedicated_mac(all_located):
    decision = decide(request(A, B), MEMBER_PORT[A], all_located, arp=ArpMode.RELAY)
    assert decision.verdict == Verdict.RELAYED
    assert by_port(decision.outputs) == {MEMBER_PORT[B]: request(A, B, sha=DM[A], eth_src=DM[A])}


def test_relay_falls_back_to_answering_when_the_sender_ip_is_the_vip(all_located):
    """The target holds the VIP itself and would drop a request from it; the proxy answer still works."""
    decision = decide(request(CLUSTER_IP, B), MEMBER_PORT[A], all_located, arp=ArpMode.RELAY)
    assert decision.verdict == Verdict.ANSWERED
    assert by_port(decision.outputs)[MEMBER_PORT[A]].tpa == CLUSTER_IP


def test_relay_readdresses_a_unicast_probe_to_the_cluster_mac(all_located):
    decision = decide(request(A, B, eth_dst=DM[B]), MEMBER_PORT[A], all_located, arp=ArpMode.RELAY)
    relayed = by_port(decision.outputs)[MEMBER_PORT[B]]
    assert (relayed.eth_dst, relayed.sha) == (CM, DM[A])


def test_relay_revises_the_targets_reply_and_delivers_it_to_the_requester_only(all_located):
    target_reply = reply(B, A, tha=DM[A], eth_dst=DM[A])
    decision = decide(target_reply, MEMBER_PORT[B], all_located, arp=ArpMode.RELAY)
    assert decision.verdict == Verdict.REVISED
    assert by_port(decision.outputs) == {
        MEMBER_PORT[A]: ArpFrame(eth_src=DM[B], eth_dst=CM, op=ARP_REPLY, sha=DM[B], spa=B, tha=CM, tpa=A)
    }


@pytest.mark.parametrize(
    "frame",
    [
        pytest.param(request(A, A), id="gratuitous-request"),
        pytest.param(reply(A, A, tha=BROADCAST, eth_dst=BROADCAST), id="gratuitous-reply"),
        pytest.param(request(A, CLIENT_IP), id="request-for-outsider"),
        pytest.param(request(A, "10.0.0.99"), id="request-for-unknown-address"),
        pytest.param(request(A, CLUSTER_IP), id="request-for-vip"),
    ],
)
def test_broadcast_arp_not_for_a_peer_reaches_outsiders_unchanged_and_peers_with_the_dedicated_mac(frame, all_located):
    decision = decide(frame, MEMBER_PORT[A], all_located)
    assert decision.verdict == Verdict.FORWARDED
    outputs = by_port(decision.outputs)
    assert set(outputs) == {MEMBER_PORT[B], MEMBER_PORT[C], *NON_MEMBER_PORTS}
    for port in NON_MEMBER_PORTS:
        assert outputs[port] == frame
    for peer in (B, C):
        seen = outputs[MEMBER_PORT[peer]]
        assert (seen.sha, seen.eth_src, seen.spa, seen.tpa, seen.op) == (DM[A], DM[A], frame.spa, frame.tpa, frame.op)


def test_a_reply_to_an_outsider_goes_to_outsiders_only_and_unchanged(all_located):
    frame = reply(A, CLIENT_IP, tha=CLIENT_MAC, eth_dst=CLIENT_MAC)
    decision = decide(frame, MEMBER_PORT[A], all_located)
    assert by_port(decision.outputs) == {CLIENT_PORT: frame, OTHER_PORT: frame}


def test_a_linux_probe_of_an_outsider_is_not_shown_to_peers(all_located):
    frame = request(A, CLIENT_IP, eth_dst=CLIENT_MAC)
    assert set(by_port(decide(frame, MEMBER_PORT[A], all_located).outputs)) == set(NON_MEMBER_PORTS)


def test_duplicate_address_probe_for_own_ip_is_never_answered(all_located):
    probe = ArpFrame(eth_src=CM, eth_dst=BROADCAST, op=1, sha=CM, spa="0.0.0.0", tha=ZERO_MAC, tpa=A)
    decision = decide(probe, MEMBER_PORT[A], all_located)
    assert decision.verdict == Verdict.FORWARDED
    assert all(out.port != MEMBER_PORT[A] for out in decision.outputs)
    assert all(out.frame.op == 1 for out in decision.outputs)


def test_an_unlocated_target_is_probed_not_answered():
    decision = decide(request(A, B), MEMBER_PORT[A], {})
    assert decision.verdict == Verdict.TARGET_UNLOCATED
    assert by_port(decision.outputs) == {port: probe_frame(B) for port in SWITCH_PORTS}
    assert decision.learned == (("web", A), MEMBER_PORT[A])


def test_the_answer_to_the_apps_probe_locates_the_member_and_goes_nowhere():
    answer = reply(B, "0.0.0.0", tha=PROBE_MAC, eth_dst=PROBE_MAC)
    decision = decide(answer, 7, {})
    assert decision.verdict == Verdict.LOCATED
    assert decision.outputs == ()
    assert decision.learned == (("web", B), 7)


def test_a_pinned_member_is_not_relearned_from_its_arp(all_located):
    assert decide(request(A, B), MEMBER_PORT[A], all_located, pinned=True).learned is None


def test_a_punted_arp_whose_sender_mac_is_no_cluster_mac_is_dropped(all_located):
    """Only a cluster just removed leaves such a frame in flight; the app answers for no unknown address."""
    frame = request(CLIENT_IP, A, sha=CLIENT_MAC, eth_src=CLIENT_MAC)
    decision = decide(frame, CLIENT_PORT, all_located)
    assert (decision.verdict, decision.outputs, decision.learned) == (Verdict.NOT_A_CLUSTER, (), None)


@pytest.mark.parametrize("arp", list(ArpMode))
@pytest.mark.parametrize(
    "frame",
    [
        request(A, B),
        request(A, B, eth_dst=DM[B]),
        request(A, A),
        request(A, CLIENT_IP),
        request(CLUSTER_IP, B),
        reply(A, A, tha=BROADCAST, eth_dst=BROADCAST),
        reply(A, B, tha=DM[B], eth_dst=DM[B]),
        reply(A, CLIENT_IP, tha=CLIENT_MAC, eth_dst=CLIENT_MAC),
    ],
)
def test_no_member_ever_receives_the_cluster_mac_as_sender_mac(frame, arp, all_located):
    """Invariant 1, over every kind of member ARP and both modes."""
    decision = decide(frame, MEMBER_PORT[A], all_located, arp=arp)
    for out in decision.outputs:
        if out.port in MEMBER_PORT.values():
            assert out.frame.sha != CM
        else:
            assert out.frame == frame


def test_arp_claiming_a_pinned_members_dip_from_another_port_is_dropped(all_located):
    decision = decide(request(A, B), OTHER_PORT, all_located, pinned=True)
    assert decision.verdict == Verdict.DROPPED_SPOOFED
    assert (decision.outputs, decision.learned) == ((), None)


def test_a_learned_member_may_move_to_another_port(all_located):
    decision = decide(request(A, B), OTHER_PORT, all_located)
    assert decision.verdict == Verdict.ANSWERED
    assert decision.learned == (("web", A), OTHER_PORT)
