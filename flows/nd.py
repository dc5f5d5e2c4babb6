"""Neighbor Discovery decisions: what the fabric does with every NS, NA, RS and RA a member emits, as
flows/arp.py does with its ARP (method.md, Discovery; docs/ipv6.md).

A member's Neighbor Solicitation carries the cluster MAC in its source link-layer address option (SLLA) and
its Neighbor Advertisement the cluster MAC as target link-layer address (TLLA): the ARP sender MAC of IPv6.
decide_nd() is a pure function of the same inputs as decide_arp() and one punted frame.
"""

from __future__ import annotations

from collections import ChainMap
from collections.abc import Collection
from dataclasses import dataclass, replace

from flows.addresses import is_multicast_mac
from flows.arp import (
    NO_OTHER_SWITCH,
    ArpDecision,
    Edge,
    FabricPorts,
    FrameOut,
    Verdict,
    address_owner,
    member_on_port,
    probe_outputs,
    spread,
)
from flows.flowspec import MemberPorts
from flows.model import ArpMode, Cluster, Member, Registry

ND_ROUTER_SOLICITATION = 133
ND_ROUTER_ADVERTISEMENT = 134
ND_NEIGHBOR_SOLICITATION = 135
ND_NEIGHBOR_ADVERTISEMENT = 136
ND_TYPES = (ND_ROUTER_SOLICITATION, ND_ROUTER_ADVERTISEMENT, ND_NEIGHBOR_SOLICITATION, ND_NEIGHBOR_ADVERTISEMENT)
OPTION_SLLA = 1  # source link-layer address: NS, RS, RA
OPTION_TLLA = 2  # target link-layer address: NA
NA_ROUTER = 0x8000_0000
NA_SOLICITED = 0x4000_0000
NA_OVERRIDE = 0x2000_0000
UNSPECIFIED = "::"  # the source of a Duplicate Address Detection probe
IPV6_HEAD = 0x6000_0000  # version 6, traffic class 0, flow label 0
ND_HOP_LIMIT = 255  # RFC 4861: anything else came from beyond the link


@dataclass(frozen=True)
class NdFrame:
    """An Ethernet/IPv6/ICMPv6 Neighbor Discovery message, as the fabric reads and rewrites it.

    What the method does not touch is kept as it came: the IPv6 header's first word, the bytes between the
    checksum and the target (the NA's flags, the RA's fields), and every option, in order.
    """

    eth_src: str
    eth_dst: str
    ip_src: str
    ip_dst: str
    type: int
    target: str | None = None  # NS and NA only
    fixed: bytes = bytes(4)
    options: tuple[tuple[int, bytes], ...] = ()  # (type, data without the type and length octets)
    head: int = IPV6_HEAD

    @property
    def lla_option(self) -> int:
        """The option that carries the sender's MAC: the target's in an NA, the source's otherwise."""
        return OPTION_TLLA if self.type == ND_NEIGHBOR_ADVERTISEMENT else OPTION_SLLA

    @property
    def lla(self) -> str | None:
        """The MAC in the frame's first link-layer address option (None: it has none)."""
        for option, data in self.options:
            if option == self.lla_option and len(data) == 6:
                return data.hex(":")
        return None

    @property
    def flags(self) -> int:
        return int.from_bytes(self.fixed[:4], "big")

    def with_lla(self, mac: str) -> NdFrame:
        """The same frame with the link-layer address option holding mac (the first one, where it is)."""
        new, done = [], False
        for option, data in self.options:
            if option == self.lla_option and len(data) == 6 and not done:
                data, done = bytes.fromhex(mac.replace(":", "")), True
            new.append((option, data))
        return replace(self, options=tuple(new)) if done else self


def proxy_advertisement(cluster: Cluster, target: Member, solicitation: NdFrame) -> NdFrame:
    """Claims 1, 19 for IPv6: the peer's address is at its dedicated MAC, told to the requester's cluster MAC.
    Solicited and Override, as the peer's own answer would be; never the Router flag."""
    return NdFrame(
        eth_src=target.dedicated_mac,
        eth_dst=cluster.cluster_mac,
        ip_src=solicitation.target,
        ip_dst=solicitation.ip_src,
        type=ND_NEIGHBOR_ADVERTISEMENT,
        target=solicitation.target,
        fixed=(NA_SOLICITED | NA_OVERRIDE).to_bytes(4, "big"),
        options=((OPTION_TLLA, bytes.fromhex(target.dedicated_mac.replace(":", ""))),),
    )


def for_peer(frame: NdFrame, sender: Member, cluster: Cluster) -> NdFrame:
    """Claims 12-13 for IPv6: a member's ND reaches its peers with its dedicated MAC in the link-layer address
    option and as Ethernet source, addressed to the cluster MAC unless it was multicast."""
    eth_dst = cluster.cluster_mac if not is_multicast_mac(frame.eth_dst) else frame.eth_dst
    return replace(frame.with_lla(sender.dedicated_mac), eth_src=sender.dedicated_mac, eth_dst=eth_dst)


def decide_nd(
    registry: Registry,
    member_ports: MemberPorts,
    switch_ports: Collection[int],
    in_port: int,
    frame: NdFrame,
    normal_delivery: bool = False,
    uplinks: Collection[int] = (),
    elsewhere: FabricPorts = NO_OTHER_SWITCH,
) -> ArpDecision:
    """Handle one ND message punted by the switch (its link-layer address option, or for RS and RA its
    Ethernet source, is a cluster MAC), with decide_arp()'s rules and verdicts.

    The sender is the member whose registered address is the IPv6 source, else the member located on the
    port (a link-local, VIP or unspecified source: link-local addresses are never registered). Beyond an
    uplink the port names nobody, and an Ethernet source there is anyone's to forge: such ND reaches
    outsiders only. An NA speaks for its target, so one whose target is another member's address is a spoof,
    and one whose target is no address of its sender reaches outsiders only: peers given the sender's DM for
    it would send that address's traffic to the sender.

    A member's NS for a peer's address is answered (proxy, switch) or relayed to the peer (relay); a DAD
    probe (source ::) and an NS for the sender's own address are never answered. Everything else is spread:
    unchanged to outsiders, with the sender's dedicated MAC to its peers (invariant 1).
    """
    cluster = registry.cluster_for_mac(frame.lla or frame.eth_src)
    if cluster is None or not cluster.unicast:
        return ArpDecision(Verdict.NOT_A_CLUSTER)
    from_uplink = in_port in uplinks
    sender = cluster.member_for_address(frame.ip_src)
    if sender is None:
        owner = address_owner(registry, frame.ip_src)
        if owner is not None:  # another cluster's MAC with this member's address: its peers would cache it
            return ArpDecision(Verdict.DROPPED_SPOOFED, claimed=(owner, in_port))
    if frame.type == ND_NEIGHBOR_ADVERTISEMENT and frame.target != frame.ip_src:
        spoken_for = cluster.member_for_address(frame.target)
        if spoken_for is not None and spoken_for != sender:
            return ArpDecision(Verdict.DROPPED_SPOOFED)
    key = (cluster.name, sender.ip) if sender is not None else None
    if from_uplink and key is not None and key in member_ports:  # here on an edge port: never by an uplink
        return ArpDecision(Verdict.DROPPED_SPOOFED, claimed=(key, in_port))
    claimed = (key, in_port) if key is not None and not from_uplink else None
    if sender is not None and sender.pinned and not from_uplink and member_ports.get(key) != in_port:
        return ArpDecision(Verdict.DROPPED_SPOOFED, claimed=claimed)
    ports: MemberPorts = member_ports
    if claimed is not None:
        ports = ChainMap({key: in_port}, member_ports)
    if sender is None and not from_uplink:
        sender = member_on_port(cluster, ports, in_port)
    # an NA for an address its sender does not hold: peers must not cache that address at DM(sender)
    speaks_for_others = frame.type == ND_NEIGHBOR_ADVERTISEMENT and frame.target != frame.ip_src
    if speaks_for_others and sender is not None and frame.target not in sender.addresses:
        sender = None
    edge = Edge(switch_ports, uplinks, in_port)

    def spread_only() -> ArpDecision:  # built only when it is the answer: it visits every peer
        outputs = spread(frame, sender, cluster, ports, edge, normal_delivery, for_peer)
        return ArpDecision(Verdict.FORWARDED, outputs, claimed)

    if from_uplink or frame.type != ND_NEIGHBOR_SOLICITATION or sender is None or frame.ip_src == UNSPECIFIED:
        return spread_only()
    target = cluster.member_for_address(frame.target)
    if target is None or target == sender:
        return spread_only()
    target_key = (cluster.name, target.ip)
    target_port = ports.get(target_key)
    dpid, target_port = (None, target_port) if target_port is not None else elsewhere.get(target_key, (None, None))
    if target_port is None:
        return ArpDecision(Verdict.TARGET_UNLOCATED, probe_outputs(target.ip, edge.ports()), claimed)
    if cluster.arp == ArpMode.RELAY and frame.ip_src in sender.addresses:
        relayed = FrameOut(target_port, for_peer(frame, sender, cluster), dpid)
        return ArpDecision(Verdict.RELAYED, (relayed,), claimed)
    answer = FrameOut(in_port, proxy_advertisement(cluster, target, frame))
    return ArpDecision(Verdict.ANSWERED, (answer,), claimed)
