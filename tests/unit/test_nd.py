"""Neighbor Discovery: the frames the app reads and builds, checked by an independent parser (scapy), and
decide_nd() for every kind of ND a member emits, field by field (docs/ipv6.md)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from ipaddress import IPv4Address

import pytest
from scapy.layers.inet6 import (
    ICMPv6ND_NA,
    ICMPv6ND_NS,
    ICMPv6ND_RA,
    ICMPv6ND_RS,
    ICMPv6NDOptDstLLAddr,
    ICMPv6NDOptPrefixInfo,
    ICMPv6NDOptSrcLLAddr,
    IPv6,
)
from scapy.layers.l2 import Dot1Q, Ether
from scapy.packet import Packet

from flows.addresses import dedicated_mac
from flows.arp import FrameOut, Verdict
from flows.frames import Refusal, nd_frame_bytes, punted_arp
from flows.model import ArpMode, Member, Registry
from flows.nd import NA_OVERRIDE, NA_SOLICITED, OPTION_TLLA, NdFrame, decide_nd, proxy_advertisement
from tests.unit.example_cluster import CLIENT_MAC, CLIENT_PORT, CM, DM, MEMBER_PORT, SWITCH_PORTS, web_cluster

A, B, C = "10.0.0.11", "10.0.0.12", "10.0.0.13"
V6 = {A: "fd00:10::11", B: "fd00:10::12", C: "fd00:10::13"}
VIP6 = "fd00:10::100"
LINK_LOCAL = {A: "fe80::a", B: "fe80::b"}
CLIENT6 = "fd00:10::50"
LOCATED = {("web", ip): port for ip, port in MEMBER_PORT.items()}


def cluster(arp: ArpMode = ArpMode.PROXY, pinned: bool = False):
    base = web_cluster(arp, pinned)
    members = tuple(replace(member, ips=(V6[member.ip],)) for member in base.members)
    return replace(base, members=members, cluster_ips=(VIP6,))


def decide(frame: NdFrame, in_port: int, arp: ArpMode = ArpMode.PROXY, ports=None, pinned=False, **kwargs):
    registry = Registry(clusters=(cluster(arp, pinned),))
    return decide_nd(registry, LOCATED if ports is None else ports, SWITCH_PORTS, in_port, frame, **kwargs)


def solicited_node(address: str) -> tuple[str, str]:
    """The solicited-node group of an address, as IPv6 and as Ethernet multicast."""
    last = bytes.fromhex(address.split(":")[-1].rjust(6, "0"))[-3:]
    return f"ff02::1:ff{last[0]:02x}:{last[1:].hex()}", "33:33:ff:" + last.hex(":")


def ns(src: str, target: str, lla: str | None = CM, eth_src: str = CM, unicast_to: str | None = None) -> Packet:
    ip_dst, eth_dst = solicited_node(target) if unicast_to is None else (target, unicast_to)
    packet = Ether(src=eth_src, dst=eth_dst) / IPv6(src=src, dst=ip_dst, hlim=255) / ICMPv6ND_NS(tgt=target)
    return packet / ICMPv6NDOptSrcLLAddr(lladdr=lla) if lla else packet


def na(
    src: str, dst: str, eth_dst: str, lla: str = CM, solicited=True, override=True, target=None, eth_src=CM
) -> Packet:
    message = ICMPv6ND_NA(tgt=target or src, R=0, S=int(solicited), O=int(override))
    ether = Ether(src=eth_src, dst=eth_dst)
    return ether / IPv6(src=src, dst=dst, hlim=255) / message / ICMPv6NDOptDstLLAddr(lladdr=lla)


def read(packet: Packet) -> NdFrame:
    frame = punted_arp(bytes(packet))
    assert isinstance(frame, NdFrame), frame
    return frame


def checked(frame: NdFrame) -> Packet:
    """The app's bytes read by scapy, with the checksum scapy computes itself for the same message."""
    packet = Ether(nd_frame_bytes(frame))
    icmp = packet[IPv6].payload
    sent = icmp.cksum
    del icmp.cksum
    assert Ether(bytes(packet))[IPv6].payload.cksum == sent, "the ICMPv6 checksum is wrong"
    assert packet[IPv6].hlim == 255
    return Ether(nd_frame_bytes(frame))


def by_port(outputs: tuple[FrameOut, ...]) -> dict[int, NdFrame]:
    ports = [out.port for out in outputs]
    assert len(ports) == len(set(ports)), "a frame leaves a port twice"
    return {out.port: out.frame for out in outputs}


# --- the frames ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "packet",
    [
        pytest.param(ns(V6[A], V6[B]), id="ns"),
        pytest.param(ns("::", V6[A], lla=None), id="dad"),
        pytest.param(ns(LINK_LOCAL[A], V6[B], unicast_to=DM[B]), id="unicast-nud-probe"),
        pytest.param(na(V6[B], V6[A], DM[A]), id="solicited-na"),
        pytest.param(na(V6[B], "ff02::1", "33:33:00:00:00:01", solicited=False), id="unsolicited-na"),
        pytest.param(
            Ether(src=CM, dst="33:33:00:00:00:02")
            / IPv6(src=LINK_LOCAL[A], dst="ff02::2", hlim=255)
            / ICMPv6ND_RS()
            / ICMPv6NDOptSrcLLAddr(lladdr=CM),
            id="rs",
        ),
        pytest.param(
            Ether(src=CM, dst="33:33:00:00:00:01")
            / IPv6(src=LINK_LOCAL[A], dst="ff02::1", hlim=255)
            / ICMPv6ND_RA(routerlifetime=0)
            / ICMPv6NDOptSrcLLAddr(lladdr=CM)
            / ICMPv6NDOptPrefixInfo(prefix="fd00:10::"),
            id="ra-with-a-prefix",
        ),
    ],
)
def test_nd_messages_are_read_and_written_back_byte_for_byte(packet):
    frame = read(packet)
    assert nd_frame_bytes(frame)[: len(packet)] == bytes(packet)
    assert (frame.eth_src, frame.ip_src, frame.ip_dst) == (packet.src, packet[IPv6].src, packet[IPv6].dst)


def test_the_lla_is_the_source_option_of_a_solicitation_and_the_target_option_of_an_advertisement():
    assert read(ns(V6[A], V6[B])).lla == CM
    assert read(ns("::", V6[A], lla=None)).lla is None
    advert = read(na(V6[B], V6[A], DM[A]))
    assert (advert.lla, advert.target, advert.flags) == (CM, V6[B], NA_SOLICITED | NA_OVERRIDE)


def test_a_rewritten_option_keeps_every_other_byte_and_a_right_checksum():
    frame = read(ns(V6[A], V6[B]))
    packet = checked(frame.with_lla(DM[A]))
    assert packet[ICMPv6NDOptSrcLLAddr].lladdr == DM[A]
    assert (packet[ICMPv6ND_NS].tgt, packet[IPv6].src, packet[IPv6].dst) == (V6[B], V6[A], "ff02::1:ff00:12")


def test_the_proxy_advertisement_is_a_solicited_override_na_from_the_peer_with_its_dedicated_mac():
    peer = cluster().member_for_address(V6[B])
    packet = checked(proxy_advertisement(cluster(), peer, read(ns(V6[A], V6[B]))))
    assert (packet.src, packet.dst) == (DM[B], CM)
    assert (packet[IPv6].src, packet[IPv6].dst, packet[IPv6].nh) == (V6[B], V6[A], 58)
    advert = packet[ICMPv6ND_NA]
    assert (advert.type, advert.code, advert.R, advert.S, advert.O, advert.tgt) == (136, 0, 0, 1, 1, V6[B])
    assert packet[ICMPv6NDOptDstLLAddr].lladdr == DM[B]
    assert len(bytes(packet)) == 14 + 40 + 32


def corrupt(packet: Packet, offset: int, value: int) -> bytes:
    octets = bytearray(bytes(packet))
    octets[offset] = value
    return bytes(octets)


NS_BYTES = ns(V6[A], V6[B])


@pytest.mark.parametrize(
    ("data", "refusal"),
    [
        pytest.param(corrupt(NS_BYTES, 21, 254), Refusal.MALFORMED, id="hop-limit-254"),
        pytest.param(corrupt(NS_BYTES, 55, 1), Refusal.MALFORMED, id="code-1"),
        pytest.param(corrupt(NS_BYTES, 56, 0), Refusal.MALFORMED, id="checksum"),
        pytest.param(corrupt(NS_BYTES, 79, 0), Refusal.MALFORMED, id="option-of-length-0"),
        pytest.param(corrupt(NS_BYTES, 79, 2), Refusal.MALFORMED, id="option-past-the-end"),
        pytest.param(bytes(ns("::", V6[A])), Refusal.MALFORMED, id="dad-with-a-source-option"),
        pytest.param(bytes(ns(V6[A], "ff02::1")), Refusal.MALFORMED, id="multicast-target"),
        pytest.param(bytes(ns(V6[A], V6[B], lla="01:00:5e:00:00:01")), Refusal.MALFORMED, id="multicast-lla"),
        pytest.param(bytes(NS_BYTES)[:70], Refusal.TRUNCATED, id="truncated"),
        pytest.param(bytes(Ether(dst=CM) / IPv6() / b"x"), Refusal.NOT_ARP, id="not-icmpv6"),
        pytest.param(bytes(Ether(src=CM) / Dot1Q(vlan=10) / NS_BYTES[IPv6]), Refusal.TAGGED, id="tagged"),
    ],
)
def test_nd_that_a_receiver_must_drop_is_refused_with_its_reason(data, refusal):
    assert punted_arp(data) == refusal


# --- the decisions ------------------------------------------------------------------------------------


@pytest.mark.parametrize("arp", [ArpMode.PROXY, ArpMode.SWITCH])
def test_a_members_solicitation_for_a_peer_is_answered_with_the_peers_dedicated_mac_to_the_cluster_mac(arp):
    decision = decide(read(ns(V6[A], V6[B])), MEMBER_PORT[A], arp)
    assert decision.verdict == Verdict.ANSWERED
    assert decision.claimed == (("web", A), MEMBER_PORT[A])
    (answer,) = by_port(decision.outputs).values()
    assert list(by_port(decision.outputs)) == [MEMBER_PORT[A]]
    assert (answer.eth_src, answer.eth_dst, answer.ip_src, answer.ip_dst) == (DM[B], CM, V6[B], V6[A])
    assert (answer.target, answer.lla, answer.options[0][0]) == (V6[B], DM[B], OPTION_TLLA)


def test_a_unicast_reachability_probe_from_a_link_local_source_is_answered_for_the_member_on_the_port():
    decision = decide(read(ns(LINK_LOCAL[A], V6[B], unicast_to=DM[B])), MEMBER_PORT[A])
    assert decision.verdict == Verdict.ANSWERED
    answer = by_port(decision.outputs)[MEMBER_PORT[A]]
    assert (answer.ip_dst, answer.lla, answer.eth_dst) == (LINK_LOCAL[A], DM[B], CM)
    assert decision.claimed is None  # an unregistered source says nothing about where a member is


def test_relay_passes_the_solicitation_to_the_peer_only_with_the_requesters_dedicated_mac():
    decision = decide(read(ns(V6[A], V6[B])), MEMBER_PORT[A], ArpMode.RELAY)
    assert decision.verdict == Verdict.RELAYED
    relayed = by_port(decision.outputs)
    assert list(relayed) == [MEMBER_PORT[B]]
    frame = relayed[MEMBER_PORT[B]]
    assert (frame.eth_src, frame.eth_dst, frame.lla) == (DM[A], "33:33:ff:00:00:12", DM[A])
    packet = checked(frame)
    assert packet[ICMPv6ND_NS].tgt == V6[B]


@pytest.mark.parametrize("arp", list(ArpMode))
def test_the_peers_advertisement_reaches_the_requester_only_with_the_peers_dedicated_mac(arp):
    decision = decide(read(na(V6[B], V6[A], DM[A])), MEMBER_PORT[B], arp)
    outputs = by_port(decision.outputs)
    assert list(outputs) == [MEMBER_PORT[A]]
    frame = outputs[MEMBER_PORT[A]]
    assert (frame.eth_src, frame.eth_dst, frame.lla, frame.target) == (DM[B], CM, DM[B], V6[B])
    assert decision.claimed == (("web", B), MEMBER_PORT[B])


@pytest.mark.parametrize("arp", list(ArpMode))
def test_duplicate_address_detection_is_never_answered_and_reaches_everyone_as_it_came(arp):
    dad = read(ns("::", V6[B], lla=None))
    decision = decide(dad, MEMBER_PORT[A], arp, normal_delivery=False)
    assert decision.verdict == Verdict.FORWARDED
    outputs = by_port(decision.outputs)
    assert not any(frame.type == 136 for frame in outputs.values())
    assert outputs[CLIENT_PORT] == dad  # outsiders: unchanged
    assert outputs[MEMBER_PORT[B]].eth_src == DM[A]  # peers: from the member's dedicated MAC


@pytest.mark.parametrize("arp", list(ArpMode))
def test_a_member_is_never_answered_about_its_own_address(arp):
    decision = decide(read(ns(V6[A], V6[A])), MEMBER_PORT[A], arp)
    assert decision.verdict == Verdict.FORWARDED
    assert all(frame.type == 135 for frame in by_port(decision.outputs).values())


def test_an_unsolicited_advertisement_reaches_peers_with_the_dedicated_mac_and_outsiders_unchanged():
    advert = read(na(V6[A], "ff02::1", "33:33:00:00:00:01", solicited=False))
    decision = decide(advert, MEMBER_PORT[A])
    outputs = by_port(decision.outputs)
    assert outputs[CLIENT_PORT] == advert and outputs[5] == advert
    for peer in (B, C):
        assert (outputs[MEMBER_PORT[peer]].lla, outputs[MEMBER_PORT[peer]].eth_src) == (DM[A], DM[A])
    assert MEMBER_PORT[A] not in outputs


def test_an_advertisement_to_a_client_goes_to_normal_unchanged_but_for_the_masked_source():
    advert = read(na(V6[A], CLIENT6, CLIENT_MAC))
    (out,) = decide(advert, MEMBER_PORT[A], normal_delivery=True).outputs
    assert out.frame == replace(advert, eth_src=DM[A])  # the client resolves the member to the cluster MAC
    assert out.frame.lla == CM


@pytest.mark.parametrize("icmp", [ICMPv6ND_RS(), ICMPv6ND_RA(routerlifetime=0)], ids=["rs", "ra"])
def test_router_discovery_reaches_peers_with_the_dedicated_mac_and_outsiders_unchanged(icmp):
    dst = "ff02::2" if isinstance(icmp, ICMPv6ND_RS) else "ff02::1"
    packet = Ether(src=CM, dst="33:33:00:00:00:01") / IPv6(src=LINK_LOCAL[A], dst=dst, hlim=255) / icmp
    frame = read(packet / ICMPv6NDOptSrcLLAddr(lladdr=CM))
    outputs = by_port(decide(frame, MEMBER_PORT[A]).outputs)
    assert outputs[CLIENT_PORT] == frame
    assert outputs[MEMBER_PORT[B]].lla == DM[A]
    checked(outputs[MEMBER_PORT[B]])


def test_a_solicitation_for_a_peer_not_located_yet_probes_for_it():
    ports = {("web", A): MEMBER_PORT[A]}
    decision = decide(read(ns(V6[A], V6[B])), MEMBER_PORT[A], ports=ports)
    assert decision.verdict == Verdict.TARGET_UNLOCATED
    assert {out.frame.tpa for out in decision.outputs} == {B}  # an ARP probe for its primary DIP


def test_another_clusters_mac_with_a_members_address_is_a_spoof():
    other = replace(cluster(), name="api", cluster_ip="10.0.1.100", cluster_mac="02:bf:0a:00:01:64", members=())
    other = replace(other, cluster_ips=())
    registry = Registry(clusters=(cluster(), other))
    frame = read(ns(V6[A], V6[B], lla="02:bf:0a:00:01:64", eth_src="02:bf:0a:00:01:64"))
    decision = decide_nd(registry, LOCATED, SWITCH_PORTS, CLIENT_PORT, frame)
    assert (decision.verdict, decision.claimed, decision.outputs) == (
        Verdict.DROPPED_SPOOFED,
        (("web", A), CLIENT_PORT),
        (),
    )


def test_a_pinned_member_speaking_from_another_port_is_a_spoof():
    decision = decide(read(ns(V6[A], V6[B])), CLIENT_PORT, pinned=True)
    assert decision.verdict == Verdict.DROPPED_SPOOFED


def test_from_an_uplink_a_solicitation_is_spread_never_answered_and_never_locates():
    ports = {("web", B): MEMBER_PORT[B]}
    decision = decide(read(ns(V6[A], V6[B])), 9, ports=ports, uplinks=(9,))
    assert decision.verdict == Verdict.FORWARDED
    assert decision.claimed is None
    assert by_port(decision.outputs)[MEMBER_PORT[B]].lla == DM[A]


UPLINK = 9


@pytest.mark.parametrize("eth_src", [DM[A], CLIENT_MAC], ids=["a-members-dm", "another-mac"])
def test_from_an_uplink_link_local_nd_reaches_outsiders_only_whatever_its_ethernet_source(eth_src):
    """Beyond an uplink the port names nobody, and anyone there can write a member's DM as Ethernet source:
    a peer given that DM for a link-local address (a router's, say) would send its traffic to that member."""
    ports = {("web", B): MEMBER_PORT[B]}
    for frame in (
        read(ns(LINK_LOCAL[A], LINK_LOCAL[B], eth_src=eth_src)),
        read(na("fe80::1", "ff02::1", "33:33:00:00:00:01", eth_src=eth_src)),
    ):
        decision = decide(frame, UPLINK, ports=ports, uplinks=(UPLINK,))
        assert (decision.verdict, decision.claimed) == (Verdict.FORWARDED, None), "spread, never a location"
        out = by_port(decision.outputs)
        assert MEMBER_PORT[B] not in out, "no peer gets a dedicated MAC nobody vouches for"
        assert out[CLIENT_PORT].lla == CM, "outsiders get it unchanged (positive control)"


@pytest.mark.parametrize("in_port", [MEMBER_PORT[A], CLIENT_PORT, UPLINK], ids=["member", "outsider", "uplink"])
def test_an_advertisement_for_another_members_address_is_a_spoof_wherever_it_comes_from(in_port):
    """An NA speaks for its target: A, or anyone claiming A's address, cannot advertise B's address."""
    for src in (V6[A], LINK_LOCAL[A]):
        forged = read(na(src, "ff02::1", "33:33:00:00:00:01", target=V6[B]))
        decision = decide(forged, in_port, uplinks=(UPLINK,))
        assert (decision.verdict, decision.outputs) == (Verdict.DROPPED_SPOOFED, ()), src
    own = decide(read(na(V6[A], "ff02::1", "33:33:00:00:00:01")), MEMBER_PORT[A], uplinks=(UPLINK,))
    assert own.verdict == Verdict.FORWARDED, "positive control: A advertising its own address is spread"


def test_an_advertisement_for_an_address_its_sender_does_not_hold_reaches_outsiders_only():
    """A's NA for a router's link-local address: peers would cache the router at DM(A)."""
    forged = read(na(V6[A], "ff02::1", "33:33:00:00:00:01", target="fe80::1"))
    out = by_port(decide(forged, MEMBER_PORT[A]).outputs)
    assert MEMBER_PORT[B] not in out and MEMBER_PORT[C] not in out
    assert out[CLIENT_PORT].lla == CM


def test_a_solicitation_whose_mac_is_no_cluster_is_not_handled():
    frame = read(ns(CLIENT6, V6[A], lla=CLIENT_MAC, eth_src=CLIENT_MAC))
    assert decide(frame, CLIENT_PORT).verdict == Verdict.NOT_A_CLUSTER


class CountingPorts(Mapping):
    """Member locations that count how often they are read, with the core's index by port (on_port)."""

    def __init__(self, located: dict[tuple[str, str], int]) -> None:
        self._located = located
        self._by_port: dict[int, set[tuple[str, str]]] = {}
        for key, port in located.items():
            self._by_port.setdefault(port, set()).add(key)
        self.reads = 0

    def __getitem__(self, key):
        self.reads += 1
        return self._located[key]

    def __iter__(self):
        self.reads += len(self._located)
        return iter(self._located)

    def __len__(self) -> int:
        return len(self._located)

    def on_port(self, port: int):
        self.reads += 1
        return self._by_port.get(port, ())


@pytest.mark.parametrize("arp", [ArpMode.PROXY, ArpMode.RELAY], ids=["proxy", "relay"])
@pytest.mark.parametrize("source", ["dip", "link-local"])
def test_a_solicitation_for_a_peer_costs_a_few_lookups_whatever_the_clusters_size(arp, source):
    """Every event-loop step stays short at 10,000 members: neither the answer (or relay) nor knowing the
    sender by its port when its source is link-local visits the other members."""
    ips = [str(IPv4Address("10.1.0.0") + n) for n in range(10_000)]
    members = tuple(
        Member(ip=ip, dedicated_mac=dedicated_mac(ip), ips=(f"fd00:10::1:{n:x}",)) for n, ip in enumerate(ips)
    )
    big = replace(web_cluster(arp), members=members)
    ports = CountingPorts({("web", ip): n + 1 for n, ip in enumerate(ips)})
    asker, peer = members[0], members[9_999]
    src = asker.ips[0] if source == "dip" else "fe80::a"
    frame = read(ns(src, peer.ips[0]))
    decision = decide_nd(Registry(clusters=(big,)), ports, range(1, 10_001), 1, frame)
    wanted = Verdict.RELAYED if arp == ArpMode.RELAY and source == "dip" else Verdict.ANSWERED
    assert decision.verdict == wanted
    assert [out.port for out in decision.outputs] == [10_000 if wanted == Verdict.RELAYED else 1]
    assert ports.reads < 10, f"{ports.reads} location reads for one solicitation"
