"""MAC, IPv4 and IPv6 address helpers: parsing, checks and the derived cluster and dedicated MACs."""

from __future__ import annotations

import ipaddress
import re

BROADCAST_MAC = "ff:ff:ff:ff:ff:ff"
ZERO_MAC = "00:00:00:00:00:00"
ZERO_IP = "0.0.0.0"
PROBE_MAC = "0e:4e:4c:00:00:01"
"""Sender MAC of the app's own ARP probes; locally administered, never a member's or a cluster's."""

_MAC_RE = re.compile(r"[0-9a-f]{2}([:-])[0-9a-f]{2}(\1[0-9a-f]{2}){4}")
_THIS_NETWORK = ipaddress.IPv4Network("0.0.0.0/8")
LINK_LOCAL_RULE = "nlbflow recognises a member's link-local traffic by its port, docs/ipv6.md"


class AddressError(ValueError):
    """A MAC or IP address is malformed or not allowed where it is used."""


def parse_mac(text: object) -> str:
    """Return the MAC in canonical lower-case colon form, or raise AddressError.

    Exactly six hex octets, all separated by ':' or all by '-', nothing around them: what the OpenAPI
    pattern in docs/rest-api.yaml says."""
    if not isinstance(text, str) or not _MAC_RE.fullmatch(text.lower()):
        raise AddressError(f"{text!r} is not a MAC address (expected six hex octets like 02:de:0a:00:00:0b)")
    return text.lower().replace("-", ":")


def parse_unicast_mac(text: object) -> str:
    """A MAC that can name one NIC: not multicast/broadcast, not all zeros."""
    mac = parse_mac(text)
    if mac == ZERO_MAC:
        raise AddressError(f"{mac} is the zero MAC")
    if is_multicast_mac(mac):
        raise AddressError(f"{mac} is a multicast MAC (lowest bit of the first octet set)")
    return mac


def parse_ipv4(text: object) -> str:
    """Return the IPv4 address in dotted form, or raise AddressError."""
    try:
        if not isinstance(text, str):
            raise ValueError
        return str(ipaddress.IPv4Address(text.strip()))
    except ValueError:
        raise AddressError(f"{text!r} is not an IPv4 address") from None


def parse_host_ipv4(text: object) -> str:
    """An IPv4 address that can belong to a host: not in 0.0.0.0/8 ("this network"), not broadcast,
    multicast or loopback."""
    ip = parse_ipv4(text)
    address = ipaddress.IPv4Address(ip)
    if address in _THIS_NETWORK:
        raise AddressError(f"{ip} cannot be a host address (0.0.0.0/8 is 'this network', RFC 1122)")
    if address.is_multicast or address.is_loopback or ip == "255.255.255.255":
        raise AddressError(f"{ip} cannot be a host address")
    return ip


def parse_host_ipv6(text: object) -> str:
    """An IPv6 address a cluster or a member can be registered with, in compressed form: a global or
    unique-local unicast address. Link-local addresses belong to one link and are never registered."""
    try:
        if not isinstance(text, str):
            raise ValueError
        address = ipaddress.IPv6Address(text.strip())
    except ValueError:
        raise AddressError(f"{text!r} is not an IPv6 address") from None
    problems = (
        (address.is_unspecified, "the unspecified address"),
        (address.is_loopback, "a loopback address"),
        (address.is_multicast, "a multicast address"),
        (address.is_link_local, f"a link-local address: it belongs to one link ({LINK_LOCAL_RULE})"),
        (address.ipv4_mapped is not None, f"an IPv4-mapped address: write {address.ipv4_mapped} itself"),
    )
    problem = next((text for found, text in problems if found), "")
    if problem:
        raise AddressError(f"{address} cannot be registered: it is {problem}")
    return str(address)


def parse_host_ip(text: object) -> str:
    """A host address of either family: IPv4 in dotted form, IPv6 compressed (parse_host_ipv4, parse_host_ipv6)."""
    if not isinstance(text, str):
        raise AddressError(f"{text!r} is not an IPv4 or IPv6 address")
    if ":" in text:
        return parse_host_ipv6(text)
    try:
        return parse_host_ipv4(text)
    except AddressError as exc:
        if str(exc).endswith("is not an IPv4 address"):
            raise AddressError(f"{text!r} is not an IPv4 or IPv6 address") from None
        raise


def is_ipv6(address: str) -> bool:
    """Whether a parsed address is IPv6 (only IPv6 text has colons)."""
    return ":" in address


def is_multicast_mac(mac: str) -> bool:
    return int(mac[:2], 16) & 1 == 1


def is_locally_administered_mac(mac: str) -> bool:
    """The second-lowest bit of the first octet: set for MACs no vendor assigns (NLB's 02:bf:..., 02:de:...)."""
    return int(mac[:2], 16) & 2 == 2


def _mac_from_ip(first_octets: tuple[int, int], ip: str) -> str:
    octets = first_octets + tuple(ipaddress.IPv4Address(ip).packed)
    return ":".join(f"{octet:02x}" for octet in octets)


def unicast_cluster_mac(cluster_ip: str) -> str:
    """Windows NLB's unicast cluster MAC for primary cluster IP W.X.Y.Z: 02:bf:W:X:Y:Z."""
    return _mac_from_ip((0x02, 0xBF), cluster_ip)


def multicast_cluster_mac(cluster_ip: str) -> str:
    """Windows NLB's multicast-mode cluster MAC: 03:bf:W:X:Y:Z."""
    return _mac_from_ip((0x03, 0xBF), cluster_ip)


def igmp_cluster_mac(cluster_ip: str) -> str:
    """Windows NLB's IGMP-multicast cluster MAC: 01:00:5e:7f:Y:Z."""
    packed = ipaddress.IPv4Address(cluster_ip).packed
    return f"01:00:5e:7f:{packed[2]:02x}:{packed[3]:02x}"


def dedicated_mac(ip: str) -> str:
    """nlbflow's default dedicated (non-cluster-mode) MAC for DIP A.B.C.D: 02:de:A:B:C:D (claim 4)."""
    return _mac_from_ip((0x02, 0xDE), ip)
