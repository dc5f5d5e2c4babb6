"""Strict parsing of punted frames (Ethernet, at most two VLAN tags, then ARP for IPv4 or IPv6 Neighbor
Discovery, nothing else), and the bytes of the ARP and ND frames the app sends.

A packet-in is read by its EtherType only and never handed to a generic dissector: the frameworks'
packet libraries loop forever on some frames (a TCP segment to port 6653 whose payload looks like an
OpenFlow header of length 0) and raise on many others (CFM, VXLAN, BPDU, IGMP, IPv6, ...). What the
app does not handle is refused with a reason, which the app counts; docs/parsing.md lists them.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass
from enum import Enum
from functools import lru_cache

from flows.addresses import ZERO_MAC, is_multicast_mac
from flows.arp import ARP_REPLY, ARP_REQUEST, ArpFrame
from flows.nd import (
    ND_HOP_LIMIT,
    ND_NEIGHBOR_ADVERTISEMENT,
    ND_NEIGHBOR_SOLICITATION,
    ND_ROUTER_ADVERTISEMENT,
    ND_TYPES,
    UNSPECIFIED,
    NdFrame,
)

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
ETH_TYPE_IPV6 = 0x86DD
IPV6_HEADER = struct.Struct("!IHBB16s16s")  # version/class/flow, payload length, next header, hop limit, src, dst
IP_PROTO_ICMPV6 = 58
ICMPV6_HEADER = struct.Struct("!BBH")  # type, code, checksum
ND_FIXED = {ND_ROUTER_ADVERTISEMENT: 12}  # octets between the checksum and the target or options (RA: its fields)
ND_FIXED_DEFAULT = 4  # RS and NS: reserved; NA: its flags
ND_HAS_TARGET = (ND_NEIGHBOR_SOLICITATION, ND_NEIGHBOR_ADVERTISEMENT)


class Refusal(str, Enum):
    """Why a punted frame was dropped unhandled; each is a counter in `nlbflow status`."""

    TRUNCATED = "truncated"  # shorter than the headers it announces
    NOT_ARP = "not_arp"  # neither ARP nor a bare ICMPv6 ND message (133-136), or more than two VLAN tags
    MALFORMED = "malformed"  # ARP that is not Ethernet/IPv4, opcode not 1 or 2, or a sender MAC no NIC has; ND
    # with a hop limit other than 255, a code other than 0, a wrong checksum, a bad option, or a multicast target
    TAGGED = "tagged"  # a valid ARP inside VLAN tags: the app serves untagged member ports only


@dataclass(frozen=True)
class VlanTag:
    tpid: int  # 0x8100 (802.1Q) or 0x88a8 (802.1ad)
    vid: int


@dataclass(frozen=True)
class ParsedArp:
    """A well-formed Ethernet/ARP or Neighbor Discovery frame and the VLAN tags it came inside, outermost
    first."""

    frame: ArpFrame | NdFrame
    vlan_tags: tuple[VlanTag, ...] = ()


def parse_arp(data: bytes) -> ParsedArp | Refusal:
    """Read one frame as Ethernet, up to two VLAN tags, then ARP or ND; refuse anything else.

    Bytes after the 28-byte ARP body, or after the IPv6 payload length, are Ethernet padding (a switch pads
    frames to 60 bytes) and are ignored.
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
    if eth_type == ETH_TYPE_IPV6:
        nd = _nd_frame(data, offset, _mac(eth_dst), _mac(eth_src))
        return nd if isinstance(nd, Refusal) else ParsedArp(frame=nd, vlan_tags=tuple(tags))
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


def punted_arp(data: bytes) -> ArpFrame | NdFrame | Refusal:
    """The ARP and ND the app handles: well formed and untagged.

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


def _nd_frame(data: bytes, offset: int, eth_dst: str, eth_src: str) -> NdFrame | Refusal:
    """An IPv6 packet that is one bare ICMPv6 ND message (no extension header), checked as RFC 4861 asks a
    receiver to: hop limit 255, code 0, a right checksum, options of non-zero length within the message, no
    source link-layer address from the unspecified address, a target that is not multicast."""
    if len(data) < offset + IPV6_HEADER.size:
        return Refusal.TRUNCATED
    head, length, next_header, hop_limit, src, dst = IPV6_HEADER.unpack_from(data, offset)
    if head >> 28 != 6:
        return Refusal.MALFORMED
    if next_header != IP_PROTO_ICMPV6:
        return Refusal.NOT_ARP
    offset += IPV6_HEADER.size
    message = data[offset : offset + length]
    if len(message) < length or length < ICMPV6_HEADER.size:
        return Refusal.TRUNCATED
    icmp_type, code, _ = ICMPV6_HEADER.unpack_from(message)
    if icmp_type not in ND_TYPES:
        return Refusal.NOT_ARP
    fixed_size = ND_FIXED.get(icmp_type, ND_FIXED_DEFAULT)
    target_size = 16 if icmp_type in ND_HAS_TARGET else 0
    options_at = ICMPV6_HEADER.size + fixed_size + target_size
    if length < options_at:
        return Refusal.TRUNCATED
    if hop_limit != ND_HOP_LIMIT or code != 0 or icmpv6_checksum(src, dst, message) != 0:
        return Refusal.MALFORMED
    options = _nd_options(message[options_at:])
    if options is None:
        return Refusal.MALFORMED
    target = _ipv6(message[options_at - 16 : options_at]) if target_size else None
    frame = NdFrame(
        eth_src=eth_src,
        eth_dst=eth_dst,
        ip_src=_ipv6(src),
        ip_dst=_ipv6(dst),
        type=icmp_type,
        target=target,
        fixed=message[ICMPV6_HEADER.size : ICMPV6_HEADER.size + fixed_size],
        options=options,
        head=head,
    )
    lla = frame.lla
    if not is_nic_mac(eth_src) or (lla is not None and not is_nic_mac(lla)):
        return Refusal.MALFORMED
    if target is not None and message[options_at - 16] == 0xFF:
        return Refusal.MALFORMED  # a multicast target
    if frame.ip_src == UNSPECIFIED and lla is not None:
        return Refusal.MALFORMED
    return frame


def _nd_options(octets: bytes) -> tuple[tuple[int, bytes], ...] | None:
    """(type, data) of every option; None if one has length 0 or runs past the message."""
    options, offset = [], 0
    while offset < len(octets):
        if len(octets) < offset + 2 or octets[offset + 1] == 0:
            return None
        end = offset + 8 * octets[offset + 1]
        if end > len(octets):
            return None
        options.append((octets[offset], octets[offset + 2 : end]))
        offset = end
    return tuple(options)


def nd_frame_bytes(frame: NdFrame) -> bytes:
    """The frame on the wire: untagged Ethernet II, IPv6 with hop limit 255, the ICMPv6 message with its
    checksum computed over the pseudo-header (RFC 4443), padded to 60 bytes if shorter."""
    src, dst = _ipv6_octets(frame.ip_src), _ipv6_octets(frame.ip_dst)
    body = frame.fixed + (_ipv6_octets(frame.target) if frame.target is not None else b"")
    for option, data in frame.options:
        body += bytes((option, (len(data) + 2) // 8)) + data
    unsummed = ICMPV6_HEADER.pack(frame.type, 0, 0) + body
    message = ICMPV6_HEADER.pack(frame.type, 0, icmpv6_checksum(src, dst, unsummed)) + body
    header = ETH_HEADER.pack(_mac_octets(frame.eth_dst), _mac_octets(frame.eth_src), ETH_TYPE_IPV6)
    packet = IPV6_HEADER.pack(frame.head, len(message), IP_PROTO_ICMPV6, ND_HOP_LIMIT, src, dst) + message
    octets = header + packet
    return octets + bytes(max(0, ETH_MIN_FRAME - len(octets)))


def icmpv6_checksum(src: bytes, dst: bytes, message: bytes) -> int:
    """The one's-complement sum over the IPv6 pseudo-header and the message: 0 for a message whose checksum
    field is right, the value to put there for one whose field is 0."""
    pseudo = src + dst + struct.pack("!IxxxB", len(message), IP_PROTO_ICMPV6)
    octets = pseudo + message + (b"\0" if len(message) % 2 else b"")
    total = sum(struct.unpack(f"!{len(octets) // 2}H", octets))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


ND_NAMES = {133: "RS", 134: "RA", ND_NEIGHBOR_SOLICITATION: "NS", ND_NEIGHBOR_ADVERTISEMENT: "NA"}


def describe(frame: ArpFrame | NdFrame) -> str:
    """A punted frame in one line for the log: what it is, who sent it with which MAC, what it is about."""
    if isinstance(frame, NdFrame):
        about = frame.target if frame.target is not None else frame.ip_dst
        return f"ND {ND_NAMES[frame.type]} {frame.ip_src} ({frame.lla or frame.eth_src}) -> {about}"
    kind = "request" if frame.op == ARP_REQUEST else "reply"
    return f"ARP {kind} {frame.spa} ({frame.sha}) -> {frame.tpa}"


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
def _ipv6(octets: bytes) -> str:
    return str(ipaddress.IPv6Address(octets))


@lru_cache(maxsize=65536)
def _ipv6_octets(ip: str) -> bytes:
    """Sixteen octets from an IPv6 address in compressed form; anything else is a bug: ValueError."""
    octets = ipaddress.IPv6Address(ip).packed
    if _ipv6(octets) != ip:
        raise ValueError(f"not an IPv6 address in compressed form: {ip!r}")
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
