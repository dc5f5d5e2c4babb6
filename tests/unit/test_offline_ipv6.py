"""IPv6 on an offline switch, in every ARP mode: Neighbor Discovery through the controller, then IPv6 frames
delivered by the same per-member flows as IPv4 (docs/ipv6.md)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from scapy.layers.inet6 import ICMPv6ND_NA, ICMPv6ND_NS, ICMPv6NDOptDstLLAddr, ICMPv6NDOptSrcLLAddr, IPv6
from scapy.layers.l2 import Ether

from flows.addresses import PROBE_MAC
from flows.core import NlbCore
from flows.flowspec import NORMAL_PORT
from flows.frames import punted_arp
from flows.model import ArpMode, Config, LocationSettings, Registry
from flows.oftable import CONTROLLER, NORMAL, FakeFabric, Frame
from tests.unit.example_cluster import (
    CLIENT_MAC,
    CLIENT_PORT,
    CM,
    DM,
    MEMBER_PORT,
    OTHER_PORT,
    SWITCH_PORTS,
    web_cluster,
)
from tests.unit.example_cluster import reply as arp_reply
from tests.unit.example_cluster import request as arp_request

A, B, C = "10.0.0.11", "10.0.0.12", "10.0.0.13"
V6 = {A: "fd00:10::11", B: "fd00:10::12", C: "fd00:10::13"}
ETH_TYPE_IPV6 = 0x86DD


def dual_stack(mode: ArpMode, announced: tuple[str, ...] = (A, B, C)) -> FakeFabric:
    """The example cluster with IPv6 DIPs and VIP; the `announced` members sent a gratuitous ARP, as Linux
    does when its link comes up, and are located."""
    base = web_cluster(mode)
    members = tuple(replace(member, ips=(V6[member.ip],)) for member in base.members)
    registry = Registry(clusters=(replace(base, members=members, cluster_ips=("fd00:10::100",)),))
    fabric = FakeFabric(NlbCore(Config(registry=registry)), dpid=1, ports=list(SWITCH_PORTS))
    for ip in announced:
        fabric.send(MEMBER_PORT[ip], Frame.from_arp(arp_request(ip, ip)))
    return fabric


@pytest.fixture(params=list(ArpMode), ids=[mode.value for mode in ArpMode])
def net(request) -> FakeFabric:
    return dual_stack(request.param)


def nd(packet) -> Frame:
    return Frame.of(punted_arp(bytes(packet)))


def solicitation(src: str, target: str) -> Frame:
    group = "33:33:ff:00:00:" + target.split(":")[-1].rjust(2, "0")
    return nd(
        Ether(src=CM, dst=group)
        / IPv6(src=src, dst="ff02::1:ff00:" + target.split(":")[-1], hlim=255)
        / ICMPv6ND_NS(tgt=target)
        / ICMPv6NDOptSrcLLAddr(lladdr=CM)
    )


def advertisement(src: str, dst: str, eth_dst: str) -> Frame:
    return nd(
        Ether(src=CM, dst=eth_dst)
        / IPv6(src=src, dst=dst, hlim=255)
        / ICMPv6ND_NA(tgt=src, S=1, O=1)
        / ICMPv6NDOptDstLLAddr(lladdr=CM)
    )


def resolve(net: FakeFabric, asker: str, peer: str) -> list:
    """What reaches the asker's port when it solicits the peer's IPv6 DIP; in relay mode the peer's stack
    answers the relayed solicitation as Linux does (unicast to the requester's dedicated MAC)."""
    out = net.send(MEMBER_PORT[asker], solicitation(V6[asker], V6[peer]))
    if net.core.registry.clusters[0].arp == ArpMode.RELAY:
        assert [(d.port, d.frame.nd.lla, d.frame.eth_src) for d in out] == [(MEMBER_PORT[peer], DM[asker], DM[asker])]
        out = net.send(MEMBER_PORT[peer], advertisement(V6[peer], V6[asker], DM[asker]))
    return [d for d in out if d.port == MEMBER_PORT[asker]]


@pytest.mark.parametrize(("asker", "peer"), [(x, y) for x in (A, B, C) for y in (A, B, C) if x != y])
def test_every_member_resolves_every_peers_ipv6_dip_to_its_dedicated_mac_and_reaches_it(net, asker, peer):
    (answer,) = resolve(net, asker, peer)
    advert = answer.frame.nd
    assert (advert.type, advert.target, advert.lla, answer.frame.eth_dst) == (136, V6[peer], DM[peer], CM)
    data = Frame(eth_src=CM, eth_dst=DM[peer], eth_type=ETH_TYPE_IPV6, payload="ping6")
    delivered = net.send(MEMBER_PORT[asker], data)
    assert [(d.port, d.frame.eth_dst, d.frame.eth_src) for d in delivered] == [(MEMBER_PORT[peer], CM, DM[asker])]


def test_ipv6_and_ipv4_between_the_same_members_use_one_dedicated_mac(net):
    (answer,) = resolve(net, A, B)
    ipv4 = net.send(MEMBER_PORT[A], Frame.from_arp(arp_request(A, B)))
    if net.core.registry.clusters[0].arp == ArpMode.RELAY:
        return  # the relayed IPv4 request is test_offline_fabric's
    assert {d.frame.arp_sha for d in ipv4 if d.port == MEMBER_PORT[A]} == {answer.frame.nd.lla} == {DM[B]}


def test_duplicate_address_detection_is_switched_as_before_and_answered_by_nobody(net):
    dad = nd(
        Ether(src=CM, dst="33:33:ff:00:00:12")
        / IPv6(src="::", dst="ff02::1:ff00:12", hlim=255)
        / ICMPv6ND_NS(tgt="fd00:10::99")
    )
    packet_ins = net.packet_ins
    out = net.send(MEMBER_PORT[A], dad)
    assert net.packet_ins == packet_ins, "a DAD probe carries no source option: no punt flow matches it"
    assert [d.port for d in out] == [NORMAL]
    assert out[0].frame.eth_src == DM[A]  # source masking, as for every frame of a located member


def test_a_members_solicitation_for_an_outsider_reaches_it_unchanged_and_peers_with_the_dedicated_mac(net):
    out = net.send(MEMBER_PORT[A], solicitation(V6[A], "fd00:10::50"))
    by_port = {d.port: d.frame for d in out}
    assert by_port[CLIENT_PORT].nd.lla == CM  # an outsider resolves the member to the cluster MAC
    assert by_port[MEMBER_PORT[B]].nd.lla == DM[A]
    assert CONTROLLER not in by_port


def test_a_members_advertisement_to_a_client_keeps_the_cluster_mac(net):
    out = net.send(MEMBER_PORT[A], advertisement(V6[A], "fd00:10::50", CLIENT_MAC))
    assert [(d.port, d.frame.nd.lla, d.frame.eth_src) for d in out] == [(NORMAL_PORT, CM, DM[A])]  # packet-out


def to_b(net: FakeFabric) -> set[int]:
    """Where a frame from A for B's dedicated MAC goes: B's location as the delivery flows have it."""
    return {d.port for d in net.send(MEMBER_PORT[A], Frame(eth_src=CM, eth_dst=DM[B], eth_type=ETH_TYPE_IPV6))}


@pytest.mark.parametrize("mode", list(ArpMode), ids=[mode.value for mode in ArpMode])
def test_a_member_heard_first_by_its_neighbor_discovery_is_located_where_it_spoke(mode):
    net = dual_stack(mode, announced=(A, C))
    assert to_b(net) == {NORMAL}, "positive control: B is located nowhere yet, so no delivery flow takes it"
    net.send(MEMBER_PORT[B], solicitation(V6[B], V6[C]))
    assert to_b(net) == {MEMBER_PORT[B]}


def test_a_member_that_moves_is_followed_by_its_neighbor_discovery_once_its_old_port_stayed_silent(net):
    held = net.send(OTHER_PORT, solicitation(V6[B], V6[A]))
    assert [(d.port, d.frame.arp_sha, d.frame.arp_tpa) for d in held] == [(MEMBER_PORT[B], PROBE_MAC, B)]
    assert to_b(net) == {MEMBER_PORT[B]}, "not yet: B's old port is probed first"
    net.tick(LocationSettings().confirm_seconds)
    assert to_b(net) == {OTHER_PORT}
    assert net.core.status(net.now)["counters"]["moves"] == 1


def test_a_forged_neighbor_discovery_from_another_port_is_dropped_while_the_member_answers_on_its_own(net):
    for forged in (solicitation(V6[B], V6[A]), advertisement(V6[B], "ff02::1", "33:33:00:00:00:01")):
        net.send(OTHER_PORT, forged)
        probe_answer = arp_reply(B, "0.0.0.0", tha=PROBE_MAC, eth_dst=PROBE_MAC)
        assert net.send(MEMBER_PORT[B], Frame.from_arp(probe_answer)) == []
        net.tick(LocationSettings().confirm_seconds)
        assert to_b(net) == {MEMBER_PORT[B]}
    counters = net.core.status(net.now)["counters"]
    assert counters["moves"] == 0 and counters["dropped_spoofed"] >= 2


def test_a_members_multicast_listener_report_is_switched_as_before_with_its_source_masked(net):
    """MLD is no Neighbor Discovery: no punt flow matches it, so it reaches the controller never and NORMAL
    as any multicast does, from the member's dedicated MAC, so that no switch learns the cluster MAC."""
    # an MLDv2 report to ff02::16 behind a hop-by-hop header, as OVS reads it: ICMPv6 type 143
    report = Frame(eth_src=CM, eth_dst="33:33:00:00:00:16", eth_type=ETH_TYPE_IPV6, ip_proto=58, icmpv6_type=143)
    packet_ins = net.packet_ins
    out = net.send(MEMBER_PORT[A], report)
    assert net.packet_ins == packet_ins
    assert [(d.port, d.frame.eth_src, d.frame.eth_dst) for d in out] == [(NORMAL, DM[A], "33:33:00:00:00:16")]
