"""decide_arp() for every kind of ARP that method.md lists, field by field."""

from __future__ import annotations

from dataclasses import replace

import pytest

from flows.addresses import PROBE_MAC
from flows.arp import ARP_REPLY, ArpFrame, FrameOut, Verdict, decide_arp, probe_frame
from flows.model import ArpMode, Cluster, ClusterMode, Member, Registry
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
    assert decision.claimed == (("web", A), MEMBER_PORT[A])


def test_the_answer_to_the_apps_probe_locates_the_member_and_goes_nowhere():
    answer = reply(B, "0.0.0.0", tha=PROBE_MAC, eth_dst=PROBE_MAC)
    decision = decide(answer, 7, {})
    assert decision.verdict == Verdict.LOCATED
    assert decision.outputs == ()
    assert decision.claimed == (("web", B), 7)


def test_a_pinned_members_arp_from_its_own_port_claims_that_port_and_is_answered(all_located):
    """The claim only tells the core when the pinned member was last heard; the port stays the pinned one."""
    decision = decide(request(A, B), MEMBER_PORT[A], all_located, pinned=True)
    assert (decision.verdict, decision.claimed) == (Verdict.ANSWERED, (("web", A), MEMBER_PORT[A]))


def test_a_punted_arp_whose_sender_mac_is_no_cluster_mac_is_dropped(all_located):
    """Only a cluster just removed leaves such a frame in flight; the app answers for no unknown address."""
    frame = request(CLIENT_IP, A, sha=CLIENT_MAC, eth_src=CLIENT_MAC)
    decision = decide(frame, CLIENT_PORT, all_located)
    assert (decision.verdict, decision.outputs, decision.claimed) == (Verdict.NOT_A_CLUSTER, (), None)


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


def test_arp_claiming_a_pinned_members_dip_from_another_port_is_dropped_and_names_the_member(all_located):
    decision = decide(request(A, B), OTHER_PORT, all_located, pinned=True)
    assert decision.verdict == Verdict.DROPPED_SPOOFED
    assert (decision.outputs, decision.claimed) == ((), (("web", A), OTHER_PORT))


def test_an_unpinned_members_arp_from_another_port_claims_that_port_for_the_core_to_judge(all_located):
    """decide_arp() only says what the frame claims; flows/locations.py decides whether to believe it."""
    decision = decide(request(A, B), OTHER_PORT, all_located)
    assert decision.claimed == (("web", A), OTHER_PORT)


OTHER_CM = "02:bf:0a:00:01:64"


def two_clusters():
    other = Cluster(name="app", cluster_ip="10.0.1.100", cluster_mac=OTHER_CM, members=(Member("10.0.1.11", DM_APP),))
    return Registry(clusters=(web_cluster(), other))


DM_APP = "02:de:0a:00:01:0b"


@pytest.mark.parametrize(
    "frame",
    [
        pytest.param(request(A, B, sha=OTHER_CM, eth_src=OTHER_CM), id="request-for-a-peer"),
        pytest.param(request(A, A, sha=OTHER_CM, eth_src=OTHER_CM), id="gratuitous"),
        pytest.param(reply(A, CLIENT_IP, tha=CLIENT_MAC, eth_dst=CLIENT_MAC, sha=OTHER_CM), id="reply-to-outsider"),
    ],
)
def test_a_members_dip_with_another_clusters_mac_is_a_spoof_and_reaches_no_one(frame, all_located):
    """Forwarded, the frame would make the member's peers cache its DIP at the other cluster's MAC."""
    decision = decide_arp(two_clusters(), all_located, SWITCH_PORTS, OTHER_PORT, frame)
    assert (decision.verdict, decision.outputs) == (Verdict.DROPPED_SPOOFED, ())
    assert decision.claimed == (("web", A), OTHER_PORT)


@pytest.mark.parametrize("arp", list(ArpMode))
@pytest.mark.parametrize("sender_ip", [CLUSTER_IP, "10.0.0.99"], ids=["vip", "unknown-ip"])
@pytest.mark.parametrize("eth_dst", [BROADCAST, CM, DM[B]], ids=["broadcast", "cluster-mac", "dedicated-mac"])
def test_a_request_from_no_member_is_never_answered_with_a_dedicated_mac(sender_ip, eth_dst, arp, all_located):
    """The VIP or an unknown IP as sender, from a port where no member sits: no dedicated MAC leaves there."""
    frame = request(sender_ip, B, eth_dst=eth_dst)
    decision = decide(frame, OTHER_PORT, all_located, arp=arp)
    assert decision.verdict == Verdict.FORWARDED
    assert decision.claimed is None
    dedicated = set(DM.values())
    assert all(out.frame.sha not in dedicated and out.frame.eth_src not in dedicated for out in decision.outputs)
    assert all(out.port not in MEMBER_PORT.values() for out in decision.outputs), "peers get nothing from it"
    control = decide(frame, MEMBER_PORT[A], all_located, arp=arp)  # the same frame from a member's port
    assert control.verdict in (Verdict.ANSWERED, Verdict.RELAYED, Verdict.FORWARDED)
    if eth_dst != DM[B] or sender_ip == CLUSTER_IP:
        assert any(out.frame.sha in dedicated for out in control.outputs)


def multicast_cluster(own_mac: str | None):
    cluster = web_cluster()
    members = tuple(replace(m, own_mac=own_mac if m.ip == B else None) for m in cluster.members)
    return Registry(clusters=(replace(cluster, mode=ClusterMode.MULTICAST, cluster_mac=MULTICAST_CM, members=members),))


MULTICAST_CM = "03:bf:0a:00:00:64"
NIC_B = "52:54:00:00:00:0b"


def test_a_probe_answer_with_another_sender_mac_than_the_cluster_mac_is_a_spoof_in_unicast_mode():
    answer = reply(B, "0.0.0.0", tha=PROBE_MAC, eth_dst=PROBE_MAC, sha=CLIENT_MAC, eth_src=CLIENT_MAC)
    decision = decide(answer, OTHER_PORT, {})
    assert (decision.verdict, decision.outputs, decision.claimed) == (Verdict.DROPPED_SPOOFED, (), (("web", B), 5))


def test_a_multicast_members_probe_answer_must_carry_its_registered_nic_mac():
    registry = multicast_cluster(NIC_B)
    right = reply(B, "0.0.0.0", tha=PROBE_MAC, eth_dst=PROBE_MAC, sha=NIC_B, eth_src=NIC_B)
    wrong = reply(B, "0.0.0.0", tha=PROBE_MAC, eth_dst=PROBE_MAC, sha=CLIENT_MAC, eth_src=CLIENT_MAC)
    assert decide_arp(registry, {}, SWITCH_PORTS, 2, right).verdict == Verdict.LOCATED
    assert decide_arp(registry, {}, SWITCH_PORTS, 5, wrong).verdict == Verdict.DROPPED_SPOOFED


def test_a_multicast_member_without_a_registered_mac_is_located_by_any_unicast_sender_mac():
    registry = multicast_cluster(None)
    answer = reply(B, "0.0.0.0", tha=PROBE_MAC, eth_dst=PROBE_MAC, sha=CLIENT_MAC, eth_src=CLIENT_MAC)
    assert decide_arp(registry, {}, SWITCH_PORTS, 2, answer).claimed == (("web", B), 2)


def test_a_peers_other_ipv4_address_is_answered_with_its_one_dedicated_mac_and_names_that_address(all_located):
    base = web_cluster()
    members = tuple(replace(m, ips=("10.0.1.12",)) if m.ip == B else m for m in base.members)
    registry = Registry(clusters=(replace(base, members=members),))
    decision = decide_arp(registry, all_located, SWITCH_PORTS, MEMBER_PORT[A], request(A, "10.0.1.12"))
    assert decision.verdict == Verdict.ANSWERED
    answer = by_port(decision.outputs)[MEMBER_PORT[A]]
    assert (answer.sha, answer.spa, answer.tpa) == (DM[B], "10.0.1.12", A)
    from_other_address = decide_arp(registry, all_located, SWITCH_PORTS, MEMBER_PORT[B], request("10.0.1.12", A))
    assert from_other_address.claimed == (("web", B), MEMBER_PORT[B])
