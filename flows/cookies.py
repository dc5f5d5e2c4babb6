"""Flow cookies: app, cluster, member and purpose packed in 64 bits.

As in Ryu's rest_router, one cookie/mask pair selects the app's flows, a cluster's, or one member's,
so audit and cleanup never touch another application's flows.

    bits 63-48  APP_ID ("NL")
    bits 47-32  cluster id  (0 = not tied to a cluster)
    bits 31-16  member id   (0 = not tied to a member); in a PUNT_PORT flow, the port it meters
    bits 15-8   purpose
    bits 7-0    0; in an ND_PUNT flow, the ICMPv6 type it punts
"""

from __future__ import annotations

import ipaddress
import zlib
from dataclasses import dataclass
from enum import IntEnum

APP_ID = 0x4E4C
APP_COOKIE_MASK = 0xFFFF_0000_0000_0000


class Purpose(IntEnum):
    """Why a flow exists; the audit prints these names."""

    NORMAL_FALLBACK = 1  # table-miss: other traffic is switched as before (invariant 6)
    ARP_PUNT = 2  # a member's ARP (arp_sha = cluster MAC) goes to the controller (claims 6-11)
    MEMBER_DELIVERY = 3  # eth_dst = dedicated MAC -> cluster MAC, out of the member's port (claims 54-58)
    CLUSTER_DELIVERY = 4  # eth_dst = cluster MAC -> every member's port, no other (invariant 4, containment)
    SOURCE_MASKING = 5  # eth_src = cluster MAC from a member's port -> its dedicated MAC (no switch learns CM)
    INGRESS = 6  # table 0 miss: on to the forwarding table
    PROBE_ANSWER = 7  # answers to the app's own probes go to the controller (locating members)
    PUNT_PORT = 8  # a port's punted frames pass that port's meter (storms, flows/meters.py)
    PUNT_TOTAL = 9  # then the total meter, then the controller
    MEMBER_TRANSIT = 10  # eth_dst = dedicated MAC of a member on another switch -> every uplink, unchanged
    ARP_SENDER = 11  # switch mode: a member's ARP from where it is located, recognised and tagged with its DM
    ARP_ANSWER = 12  # switch mode: a request for a peer's DIP answered inside the switch (claims 1-5)
    ARP_SPREAD = 13  # switch mode: a member's ARP to outsiders unchanged, to peers with its DM (invariant 1)
    ARP_FLOOD = 14  # switch mode: a member's ARP unchanged to every edge port but those of its cluster
    ND_PUNT = 15  # a member's Neighbor Discovery (its link-layer address or source = cluster MAC) -> controller


def cluster_id(cluster_name: str) -> int:
    """A stable 16-bit id in 1..0xffff; collisions are rejected when the registry is built."""
    return zlib.crc32(cluster_name.encode()) % 0xFFFF + 1


def member_id(member_ip: str) -> int:
    """The dedicated IP's last two octets (0x000b for 10.0.0.11): readable in a flow dump, and unique
    for members of one subnet up to a /16. Collisions and id 0 are rejected when the registry is built."""
    return int(ipaddress.IPv4Address(member_ip)) & 0xFFFF


def make_cookie(purpose: Purpose, cluster_name: str | None = None, member_ip: str | None = None) -> int:
    """The cookie of a flow: whose it is and why it exists, readable again by decode_cookie()."""
    cluster = cluster_id(cluster_name) if cluster_name is not None else 0
    member = member_id(member_ip) if member_ip is not None else 0
    return (APP_ID << 48) | (cluster << 32) | (member << 16) | (int(purpose) << 8)


def port_cookie(purpose: Purpose, port: int) -> int:
    """The cookie of a flow tied to a switch port rather than a member: unique per port up to 0xffff, so
    every flow of the app still has a cookie of its own."""
    return make_cookie(purpose) | (min(port, 0xFFFF) << 16)


@dataclass(frozen=True)
class CookieFields:
    cluster_id: int
    member_id: int
    purpose: Purpose | None  # None: the app's id with a purpose this version does not know


def is_app_cookie(cookie: int) -> bool:
    """Whether a flow is this app's: the only flows it may change or delete."""
    return cookie & APP_COOKIE_MASK == APP_ID << 48


def decode_cookie(cookie: int) -> CookieFields:
    """The fields of an app cookie, for the audit and for adopting what a switch already holds."""
    purpose_value = (cookie >> 8) & 0xFF
    purpose = Purpose(purpose_value) if purpose_value in Purpose._value2member_map_ else None
    return CookieFields(cluster_id=(cookie >> 32) & 0xFFFF, member_id=(cookie >> 16) & 0xFFFF, purpose=purpose)
