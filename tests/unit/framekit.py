"""Frames for the parser and fuzz tests, built with scapy: member ARP of the example cluster, and the
hostile frames that looped or raised in the frameworks' generic packet parsers (issue 7, 1b).

Also a hang detector: a per-frame alarm, generous, so a parser that loops fails the test instead of
stalling it. It bounds a hang, it does not measure speed.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager

from scapy.contrib.bgp import BGPHeader, BGPKeepAlive
from scapy.contrib.geneve import GENEVE
from scapy.contrib.igmp import IGMP
from scapy.contrib.lldp import LLDPDUChassisID, LLDPDUEndOfLLDPDU, LLDPDUPortID, LLDPDUTimeToLive
from scapy.contrib.openflow3 import OFPTHello
from scapy.layers.inet import GRE, IP, TCP, UDP
from scapy.layers.inet6 import ICMPv6EchoRequest, ICMPv6ND_NS, IPv6, IPv6ExtHdrHopByHop
from scapy.layers.l2 import ARP, LLC, SNAP, STP, Dot1AD, Dot1Q, Dot3, Ether
from scapy.layers.sctp import SCTP, SCTPChunkInit
from scapy.layers.vxlan import VXLAN
from scapy.packet import Packet, Raw

from tests.unit.example_cluster import BROADCAST, CLIENT_IP, CLIENT_MAC, CM, DM, ZERO_MAC

A, B = "10.0.0.11", "10.0.0.12"
HANG_SECONDS = 1.0
CFM_ETH_TYPE = 0x8902  # 802.1ag connectivity fault management; scapy has no layer for it


def member_arp(
    op: int = 1, spa: str = A, tpa: str = B, sha: str = CM, eth_src: str = DM[A], eth_dst: str = BROADCAST
) -> Packet:
    """A's ARP as the switch punts it (its Ethernet source already masked to its dedicated MAC)."""
    tha = ZERO_MAC if op == 1 else CM
    return Ether(src=eth_src, dst=eth_dst) / ARP(op=op, hwsrc=sha, psrc=spa, hwdst=tha, pdst=tpa)


def to_member(payload: Packet) -> Packet:
    """A client's IPv4 packet to member A."""
    return Ether(src=CLIENT_MAC, dst=CM) / IP(src=CLIENT_IP, dst=A) / payload


def openflow_lookalike() -> Packet:
    """The frame that hung both frameworks: TCP to 6653 whose payload is an OpenFlow header of length 0."""
    return to_member(TCP(sport=40000, dport=6653) / OFPTHello(len=0))


def cfm_ccm() -> Packet:
    """An 802.1ag continuity check message: MD level 0, version 0, opcode 1 (CCM), flags, TLV offset 70."""
    return Ether(src=CLIENT_MAC, dst="01:80:c2:00:00:30", type=CFM_ETH_TYPE) / Raw(bytes([0, 1, 4, 70]) + bytes(70))


def vxlan_with_arp() -> Packet:
    return to_member(UDP(dport=4789) / VXLAN(vni=42) / member_arp())


def geneve_with_arp() -> Packet:
    return to_member(UDP(dport=6081) / GENEVE(proto=0x6558) / member_arp())


def gre_with_arp() -> Packet:
    """ARP carried straight in GRE (protocol type 0x0806): a member's ARP inside, never a member's ARP."""
    return to_member(GRE(proto=0x0806) / member_arp()[ARP])


def gre_with_ethernet_arp() -> Packet:
    """Transparent Ethernet bridging over GRE (0x6558), a whole member ARP frame inside."""
    return to_member(GRE(proto=0x6558) / member_arp())


def bpdu() -> Packet:
    return Dot3(src=CLIENT_MAC, dst="01:80:c2:00:00:00") / LLC(dsap=0x42, ssap=0x42, ctrl=3) / STP()


def snap_with_arp() -> Packet:
    """ARP behind an 802.3 length and LLC/SNAP: reached through no ARP EtherType."""
    return Dot3(src=DM[A], dst=BROADCAST) / LLC(dsap=0xAA, ssap=0xAA, ctrl=3) / SNAP(code=0x0806) / member_arp()[ARP]


def igmp_report() -> Packet:
    return Ether(src=CLIENT_MAC, dst="01:00:5e:7f:00:64") / IP(src=CLIENT_IP, dst="239.255.0.100") / IGMP(type=0x16)


def ipv6_echo_request() -> Packet:
    """IPv6 that is no Neighbor Discovery (the parser reads ND, flows/frames.py)."""
    return Ether(src=CLIENT_MAC, dst=CM) / IPv6(src="fd00:10::50", dst="fd00:10::11") / ICMPv6EchoRequest()


def ipv6_nd_behind_a_hop_by_hop_header() -> Packet:
    """A solicitation behind an extension header: not a bare ND message, never dissected."""
    return (
        Ether(src=CLIENT_MAC, dst="33:33:ff:00:00:0b")
        / IPv6(src="fe80::1", dst="ff02::1:ff00:b", hlim=255)
        / IPv6ExtHdrHopByHop()
        / ICMPv6ND_NS(tgt="fd00:10::11")
    )


def bgp_keepalive() -> Packet:
    return (
        Ether(src=CLIENT_MAC, dst=CM) / IP(src=CLIENT_IP, dst=A) / TCP(dport=179) / BGPHeader(type=4) / BGPKeepAlive()
    )


def sctp_init() -> Packet:
    return to_member(SCTP(dport=9) / SCTPChunkInit())


def lldp() -> Packet:
    return (
        Ether(src=CLIENT_MAC, dst="01:80:c2:00:00:0e", type=0x88CC)
        / LLDPDUChassisID(subtype=4, id=CLIENT_MAC)
        / LLDPDUPortID(subtype=3, id=CLIENT_MAC)
        / LLDPDUTimeToLive(ttl=120)
        / LLDPDUEndOfLLDPDU()
    )


def tagged(frame: Packet, *vids: int, outer_tpid: int = 0x8100) -> Packet:
    """The frame with VLAN tags pushed, outermost first (802.1ad outside when outer_tpid is 0x88a8)."""
    tags: Packet | None = None
    for index, vid in enumerate(vids):
        tag = Dot1AD(vlan=vid) if index == 0 and outer_tpid == 0x88A8 else Dot1Q(vlan=vid)
        tags = tag if tags is None else tags / tag
    return Ether(src=frame.src, dst=frame.dst) / tags / frame.payload


HOSTILE = {
    "openflow_lookalike_to_6653": openflow_lookalike,
    "cfm_ccm": cfm_ccm,
    "vxlan_with_arp": vxlan_with_arp,
    "geneve_with_arp": geneve_with_arp,
    "gre_with_arp": gre_with_arp,
    "gre_with_ethernet_arp": gre_with_ethernet_arp,
    "bpdu": bpdu,
    "snap_with_arp": snap_with_arp,
    "igmp_report": igmp_report,
    "ipv6_echo_request": ipv6_echo_request,
    "ipv6_nd_behind_a_hop_by_hop_header": ipv6_nd_behind_a_hop_by_hop_header,
    "bgp_keepalive": bgp_keepalive,
    "sctp_init": sctp_init,
    "lldp": lldp,
}
"""Frames that are not ARP at all, or carry ARP through something other than the ARP EtherType."""


class FrameHung(BaseException):
    """Raised by the alarm inside a frame's handling; a BaseException so no `except Exception` eats it."""


def _alarm(signum, frame) -> None:
    raise FrameHung


@contextmanager
def hang_detector() -> Iterator[None]:
    """Install the alarm handler for a block in which each frame is handled inside `one_frame()`."""
    previous = signal.signal(signal.SIGALRM, _alarm)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@contextmanager
def one_frame(seconds: float = HANG_SECONDS) -> Iterator[None]:
    """The alarm fires after `seconds`, then again every 50 ms: the frameworks' OpenFlow dissector
    swallows any exception with a bare except, so one alarm alone can be lost inside a loop."""
    signal.setitimer(signal.ITIMER_REAL, seconds, 0.05)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
