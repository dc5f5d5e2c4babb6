"""Strict parsing of punted frames (Ethernet, at most two VLAN tags, ARP for IPv4, nothing else), and the
bytes of the ARP frames the app sends.

A packet-in is read by its EtherType only and never handed to a generic dissector: the frameworks'
packet libraries loop forever on some frames (a TCP segment to port 6653 whose payload looks like an
OpenFlow header of length 0) and raise on many others (CFM, VXLAN, BPDU, IGMP, IPv6, ...). What the
app does not handle is refused with a reason, which the app counts; docs/parsing.md lists them.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import Enum
from functools import lru_cache

from flows.addresses import ZERO_MAC, is_multicast_mac
from flows.arp import ARP_REPLY, ARP_REQUEST, ArpFrame

ETH_TYPE_ARP = 0x0806
VLAN_TPIDS = (0x8100, 0x88A8)  # 802.1Q customer tag, 802.1ad service tag
MAX_VLAN_TAGS = 2
ETH_HEADER = struct.Struct("!6s6sH")  # destination, source, EtherType (or a tag's TPID)
VLAN_TAG = struct.Struct("!HH")  # TCI, then the next EtherType
ARP_FIXED = struct.Struct("!HHBBH")  # htype, ptype, hlen, plen, op
ARP_ADDRESSES = struct.Struct("!6s4s6s4s")  # sha, spa, tha, tpa: their sizes once hlen = 6 and plen = 4
ARP_HTYPE_ETHERNET = 1
ARP_PTYPE_IPV4 = 0x0800
ETH_MIN_FRAME = 60  # without the FCS: a shorter frame is padded with zeros, as the packet libraries do
ARP_FRAME = struct.Struct("!6s6sHHHBBH6s4s6s4s")  # an untagged Ethernet/ARP frame: 42 bytes, then padding
ARP_PADDING = bytes(ETH_MIN_FRAME - ARP_FRAME.size)
ETH_TYPE_ARP_OCTETS = ETH_TYPE_ARP.to_bytes(2, "big")


class Refusal(str, Enum):
    """Why a punted frame was dropped unhandled; each is a counter in `nlbflow status`."""

    TRUNCATED = "truncated"  # shorter than the headers it announces
    NOT_ARP = "not_arp"  # another EtherType, or more than two VLAN tags: never dissected
    MALFORMED = "malformed"  # ARP that is not Ethernet/IPv4, opcode not 1 or 2, or a sender MAC no NIC has
    TAGGED = "tagged"  # a valid ARP inside VLAN tags: the app serves untagged member ports only


@dataclass(frozen=True)
class VlanTag:
    tpid: int  # 0x8100 (802.1Q) or 0x88a8 (802.1ad)
    vid: int


@dataclass(frozen=True)
class ParsedArp:
    """A well-formed Ethernet/ARP frame and the VLAN tags it came inside, outermost first."""

    frame: ArpFrame
    vlan_tags: tuple[VlanTag, ...] = ()


def parse_arp(data: bytes) -> ParsedArp | Refusal:
    """Read one frame as Ethernet, up to two VLAN tags, then ARP; refuse anything else.

    Bytes after the 28-byte ARP body are Ethernet padding (a switch pads frames to 60 bytes) and
    are ignored.
    """
    if len(data) < ETH_HEADER.size:
        return Refusal.TRUNCATED
    eth_dst, eth_src, eth_type = ETH_HEADER.unpack_from(data)
    offset = ETH_HEADER.size
    tags: list[VlanTag] = []
    while eth_type in VLAN_TPIDS and len(tags) < MAX_VLAN_TAGS:
        if len(data) < offset + VLAN_TAG.size:
            return Refusal.TRUNCATED
        tci, next_type = VLAN_TAG.unpack_from(data, offset)
        tags.append(VlanTag(tpid=eth_type, vid=tci & 0x0FFF))
        eth_type, offset = next_type, offset + VLAN_TAG.size
    if eth_type != ETH_TYPE_ARP:
        return Refusal.NOT_ARP
    if len(data) < offset + ARP_FIXED.size:
        return Refusal.TRUNCATED
    htype, ptype, hlen, plen, op = ARP_FIXED.unpack_from(data, offset)
    if (htype, ptype, hlen, plen) != (ARP_HTYPE_ETHERNET, ARP_PTYPE_IPV4, 6, 4) or op not in (ARP_REQUEST, ARP_REPLY):
        return Refusal.MALFORMED
    offset += ARP_FIXED.size
    if len(data) < offset + ARP_ADDRESSES.size:
        return Refusal.TRUNCATED
    sha, spa, tha, tpa = ARP_ADDRESSES.unpack_from(data, offset)
    frame = _arp_frame(eth_dst, eth_src, op, sha, spa, tha, tpa)
    if isinstance(frame, Refusal):
        return frame
    return ParsedArp(frame=frame, vlan_tags=tuple(tags))


def punted_arp(data: bytes) -> ArpFrame | Refusal:
    """The ARP the app handles: well formed and untagged.

    The app serves untagged member ports and its answers are untagged. OVS applies a port's VLAN
    settings only in the NORMAL action, so a tagged frame reaches the app's flows with its tag, and
    answering it untagged would put the answer on the wrong VLAN: it is refused, counted and dropped.
    """
    if len(data) >= ARP_FRAME.size and data[12:14] == ETH_TYPE_ARP_OCTETS:
        return _untagged_arp(data)  # the common frame, read with one unpack
    parsed = parse_arp(data)
    if isinstance(parsed, Refusal):
        return parsed
    return Refusal.TAGGED if parsed.vlan_tags else parsed.frame


def _untagged_arp(data: bytes) -> ArpFrame | Refusal:
    """parse_arp() of an untagged ARP frame of at least 42 bytes, whose headers cannot be truncated: the
    same checks, in the same order, with one unpack (tests/unit/test_frames.py compares the two)."""
    eth_dst, eth_src, _, htype, ptype, hlen, plen, op, sha, spa, tha, tpa = ARP_FRAME.unpack_from(data)
    if (htype, ptype, hlen, plen) != (ARP_HTYPE_ETHERNET, ARP_PTYPE_IPV4, 6, 4) or op not in (ARP_REQUEST, ARP_REPLY):
        return Refusal.MALFORMED
    return _arp_frame(eth_dst, eth_src, op, sha, spa, tha, tpa)


def _arp_frame(
    eth_dst: bytes, eth_src: bytes, op: int, sha: bytes, spa: bytes, tha: bytes, tpa: bytes
) -> ArpFrame | Refusal:
    """The frame's fields as text; a sender that is no NIC's MAC (multicast or zero) is malformed."""
    frame = ArpFrame(
        eth_src=_mac(eth_src),
        eth_dst=_mac(eth_dst),
        op=op,
        sha=_mac(sha),
        spa=_ipv4(spa),
        tha=_mac(tha),
        tpa=_ipv4(tpa),
    )
    if not (is_nic_mac(frame.eth_src) and is_nic_mac(frame.sha)):
        return Refusal.MALFORMED
    return frame


def arp_frame_bytes(frame: ArpFrame) -> bytes:
    """The frame on the wire: untagged Ethernet II, ARP for Ethernet/IPv4, zero padding to 60 bytes.

    One struct template instead of a generic packet library: the app sends one of these per answer, and
    the packet libraries spend most of an answer's time converting addresses (tests/unit/test_frames.py
    shows these bytes equal the frameworks' own and read back field by field in scapy).
    """
    header = ARP_FRAME.pack(
        *(_mac_octets(frame.eth_dst), _mac_octets(frame.eth_src), ETH_TYPE_ARP),
        *(ARP_HTYPE_ETHERNET, ARP_PTYPE_IPV4, 6, 4, frame.op),
        *(_mac_octets(frame.sha), _ipv4_octets(frame.spa), _mac_octets(frame.tha), _ipv4_octets(frame.tpa)),
    )
    return header + ARP_PADDING


def is_nic_mac(mac: str) -> bool:
    """A MAC one NIC can send from: unicast and not all zeros."""
    return mac != ZERO_MAC and not is_multicast_mac(mac)


def _mac(octets: bytes) -> str:
    return octets.hex(":")


def _ipv4(octets: bytes) -> str:
    first, second, third, fourth = octets
    return f"{first}.{second}.{third}.{fourth}"


@lru_cache(maxsize=65536)  # the few addresses a registry's answers use, converted once
def _mac_octets(mac: str) -> bytes:
    """Six octets from the canonical form (lower-case hex, colons); anything else is a bug: ValueError."""
    try:
        octets = bytes.fromhex(mac.replace(":", ""))
    except ValueError:
        octets = b""
    if len(octets) != 6 or _mac(octets) != mac:
        raise ValueError(f"not a MAC in canonical form: {mac!r}")
    return octets


@lru_cache(maxsize=65536)
def _ipv4_octets(ip: str) -> bytes:
    """Four octets from a dotted quad; anything else is a bug: ValueError."""
    try:
        octets = bytes(int(part) for part in ip.split("."))  # bytes() refuses a part over 255
    except ValueError:
        octets = b""
    if len(octets) != 4 or _ipv4(octets) != ip:
        raise ValueError(f"not an IPv4 address in dotted form: {ip!r}")
    return octets
