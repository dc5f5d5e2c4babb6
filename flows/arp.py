"""ARP decisions: what the fabric does with every ARP a member emits (method.md, Discovery).

decide_arp() is a pure function of the registry, where members sit on the switch and on the others of
the fabric, the switch's ports and uplinks, and one punted frame. It returns the frames to send and the
location it learned.
"""

from __future__ import annotations

from collections import ChainMap
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, replace
from enum import Enum
from typing import TYPE_CHECKING, Union

from flows.addresses import BROADCAST_MAC, PROBE_MAC, ZERO_IP, ZERO_MAC, is_multicast_mac
from flows.flowspec import NORMAL_PORT, MemberPorts
from flows.model import ArpMode, Cluster, Member, Registry

if TYPE_CHECKING:
    from flows.nd import NdFrame

ARP_REQUEST = 1
ARP_REPLY = 2


@dataclass(frozen=True)
class ArpFrame:
    """The fields of an Ethernet/ARP frame that the method reads or writes."""

    eth_src: str
    eth_dst: str
    op: int
    sha: str
    spa: str
    tha: str
    tpa: str


Frame = Union[ArpFrame, "NdFrame"]  # what the app sends: ARP, or Neighbor Discovery (flows/nd.py)


@dataclass(frozen=True)
class FrameOut:
    """A frame to send out of a port: of the switch the event came from (dpid None), or of another one."""

    port: int
    frame: Frame
    dpid: int | None = None
    in_port: int | None = None  # the packet-out's in_port (None: CONTROLLER); NORMAL never sends back there


FabricPorts = Mapping[tuple[str, str], tuple[int, int]]
"""(cluster name, member ip) -> (dpid, port) of members located, deliverable, on another switch."""
NO_OTHER_SWITCH: FabricPorts = {}


class Verdict(str, Enum):
    """What happened to a punted ARP; the app counts and logs these."""

    ANSWERED = "answered"  # proxy: the controller answered for a peer (claim 1)
    RELAYED = "relayed"  # relay: the request went on to the target only, sha revised (claims 12-13)
    REVISED = "revised"  # a member's reply to a peer, revised and delivered (claims 14-18)
    FORWARDED = "forwarded"  # not for a peer: outsiders get it unchanged, peers with sha revised
    LOCATED = "located"  # a member's answer to the app's own probe: consumed
    TARGET_UNLOCATED = "target_unlocated"  # the peer has not been found yet: probed, not answered
    NOT_A_CLUSTER = "not_a_cluster"  # sha is no registered cluster MAC (a cluster just removed): dropped
    LOOPED = "looped"  # a frame this switch sent out of an uplink came back in on one: a loop, dropped
    DROPPED_SPOOFED = "dropped_spoofed"  # claims a member it cannot be from (docs/trust.md): dropped
    UNCONFIRMED = "unconfirmed"  # claims a member located on another port: dropped while that port is probed
    PROBE_UNSOLICITED = "probe_unsolicited"  # answers no probe the app sent there recently: dropped
    MOVE_LIMITED = "move_limited"  # the member moved too often in the last minute: dropped


@dataclass(frozen=True)
class ArpDecision:
    """What to send, and where the frame says a member is: ((cluster, member ip), port). Whether that
    claim is believed is for flows/locations.py; with DROPPED_SPOOFED it is the member the spoof claimed."""

    verdict: Verdict
    outputs: tuple[FrameOut, ...] = ()
    claimed: tuple[tuple[str, str], int] | None = None


def probe_frame(target_ip: str) -> ArpFrame:
    """An RFC 5227 probe (sender IP 0.0.0.0): the member answers it and caches nothing about us."""
    return ArpFrame(
        eth_src=PROBE_MAC,
        eth_dst=BROADCAST_MAC,
        op=ARP_REQUEST,
        sha=PROBE_MAC,
        spa=ZERO_IP,
        tha=ZERO_MAC,
        tpa=target_ip,
    )


def probe_outputs(target_ip: str, switch_ports: Collection[int]) -> tuple[FrameOut, ...]:
    frame = probe_frame(target_ip)
    return tuple(FrameOut(port, frame) for port in sorted(switch_ports))


def proxy_reply(cluster: Cluster, target: Member, request: ArpFrame) -> ArpFrame:
    """Claims 1, 19: sender MAC = the peer's dedicated MAC, addressed to the cluster MAC."""
    return ArpFrame(
        eth_src=target.dedicated_mac,
        eth_dst=cluster.cluster_mac,
        op=ARP_REPLY,
        sha=target.dedicated_mac,
        spa=request.tpa,  # the address asked for: the primary DIP or another of the peer's
        tha=cluster.cluster_mac,
        tpa=request.spa,
    )


def address_owner(registry: Registry, address: str) -> tuple[str, str] | None:
    """The member (cluster name, primary ip) holding a dedicated address, in whichever cluster."""
    owners = registry.clusters_with_member_address(address)
    return (owners[0].name, owners[0].member_for_address(address).ip) if owners else None


def for_peer(frame: ArpFrame, sender: Member, cluster: Cluster) -> ArpFrame:
    """Claims 12-13: a member's ARP reaches its peers with the sender's dedicated MAC, never the cluster MAC."""
    eth_dst = cluster.cluster_mac if not is_multicast_mac(frame.eth_dst) else frame.eth_dst
    return replace(frame, eth_src=sender.dedicated_mac, eth_dst=eth_dst, sha=sender.dedicated_mac)


def revised_reply(frame: ArpFrame, sender: Member, cluster: Cluster) -> ArpFrame:
    """Claims 14, 18: the target's own reply with arp_sha -> its dedicated MAC, arp_tha and eth_dst -> CM."""
    return replace(for_peer(frame, sender, cluster), tha=cluster.cluster_mac, eth_dst=cluster.cluster_mac)


def decide_arp(
    registry: Registry,
    member_ports: MemberPorts,
    switch_ports: Collection[int],
    in_port: int,
    frame: ArpFrame,
    normal_delivery: bool = False,
    uplinks: Collection[int] = (),
    elsewhere: FabricPorts = NO_OTHER_SWITCH,
) -> ArpDecision:
    """Handle one ARP punted by the switch (its arp_sha is a cluster MAC); normal_delivery: see spread().

    A frame claiming a member's DIP with another cluster's MAC, or a pinned member's from another port, is
    a spoof. A sender that is no member (the VIP or an unknown IP as arp_spa, from a port where no member
    is located) is never answered with a dedicated MAC: dedicated MACs never leave a non-member port.

    On a fabric (docs/fabric.md), a peer located on another switch (elsewhere) is answered for at once,
    and relay reaches it on its own switch. A frame from an uplink was handled at its sender's edge switch
    already: it is only spread here, and never says where anyone is.
    """
    if in_port in uplinks:
        return _from_uplink(registry, member_ports, switch_ports, uplinks, in_port, frame, normal_delivery)
    if frame.op == ARP_REPLY and frame.tha == PROBE_MAC:
        return _probe_answer(registry, in_port, frame)
    cluster = registry.cluster_for_mac(frame.sha)
    if cluster is None:
        return ArpDecision(Verdict.NOT_A_CLUSTER)

    sender = cluster.member_for_address(frame.spa)
    claimed = ((cluster.name, sender.ip), in_port) if sender is not None else None
    ports: MemberPorts = member_ports
    if sender is None:
        owner = address_owner(registry, frame.spa)
        if owner is not None:  # another cluster's MAC with this member's DIP: its peers would cache it
            return ArpDecision(Verdict.DROPPED_SPOOFED, claimed=(owner, in_port))
    if sender is not None and sender.pinned and ports.get((cluster.name, sender.ip)) != in_port:
        return ArpDecision(Verdict.DROPPED_SPOOFED, claimed=claimed)
    if sender is not None:  # the sender is where its frame came from; looked up, never copied: O(1)
        ports = ChainMap({(cluster.name, sender.ip): in_port}, member_ports)
    if sender is None:  # a DAD probe (0.0.0.0) or the VIP as sender IP: recognise the sender by its port
        sender = member_on_port(cluster, ports, in_port)

    target = cluster.member_for_address(frame.tpa)
    is_own = frame.spa in (frame.tpa, ZERO_IP) or (sender is not None and target == sender)
    edge = Edge(switch_ports, uplinks, in_port)
    if target is None or is_own or sender is None:
        outputs = spread(frame, sender, cluster, ports, edge, normal_delivery)
        return ArpDecision(Verdict.FORWARDED, outputs, claimed)

    key = (cluster.name, target.ip)
    target_port = ports.get(key)
    dpid, target_port = (None, target_port) if target_port is not None else elsewhere.get(key, (None, None))
    if target_port is None:
        return ArpDecision(Verdict.TARGET_UNLOCATED, probe_outputs(target.ip, edge.ports()), claimed)
    if frame.op == ARP_REPLY:
        revised = FrameOut(target_port, revised_reply(frame, sender, cluster), dpid)
        return ArpDecision(Verdict.REVISED, (revised,), claimed)
    if cluster.arp == ArpMode.RELAY and sender is not None and frame.spa in sender.addresses:
        # with the VIP as sender IP the target would drop the request (its own address): answer instead
        relayed = FrameOut(target_port, for_peer(frame, sender, cluster), dpid)
        return ArpDecision(Verdict.RELAYED, (relayed,), claimed)
    return ArpDecision(Verdict.ANSWERED, (FrameOut(in_port, proxy_reply(cluster, target, frame)),), claimed)


@dataclass(frozen=True)
class Edge:
    """The ports a spread may use: the switch's live ports, which of them are uplinks, and where the frame
    came in (it never goes back there)."""

    switch_ports: Collection[int]
    uplinks: Collection[int]
    in_port: int

    def ports(self) -> set[int]:
        """Live edge ports: where hosts and members are."""
        return set(self.switch_ports) - set(self.uplinks)

    def other_uplinks(self) -> list[int]:
        return sorted(port for port in self.uplinks if port != self.in_port and port in self.switch_ports)


def _from_uplink(
    registry: Registry,
    member_ports: MemberPorts,
    switch_ports: Collection[int],
    uplinks: Collection[int],
    in_port: int,
    frame: ArpFrame,
    normal_delivery: bool,
) -> ArpDecision:
    """A member's ARP that another switch spread (method.md, Fabrics): its sender's edge switch answered
    or relayed it already and located its sender, so here it is spread and nothing else. A probe answer
    cannot come from beyond an uplink (probes never leave through one), and another cluster's MAC with a
    member's DIP is a spoof wherever it comes from. A duplicate address probe (arp_spa 0.0.0.0) or a VIP
    announcement names its sender by its Ethernet source, the DM its edge switch masked it with, so that the
    peers here get it too (one holding the probed address must answer). Neither can teach a peer a wrong
    MAC, which is why a forgeable Ethernet source is taken for them alone: hosts cache no entry from
    0.0.0.0 and none for an address of their own."""
    if frame.op == ARP_REPLY and frame.tha == PROBE_MAC:
        return ArpDecision(Verdict.PROBE_UNSOLICITED)
    cluster = registry.cluster_for_mac(frame.sha)
    if cluster is None:
        return ArpDecision(Verdict.NOT_A_CLUSTER)
    sender = cluster.member_for_address(frame.spa)
    if sender is None:
        owner = address_owner(registry, frame.spa)
        if owner is not None:
            return ArpDecision(Verdict.DROPPED_SPOOFED, claimed=(owner, in_port))
        if frame.spa == ZERO_IP or frame.spa in cluster.vips:
            sender = cluster.member_for_dedicated_mac(frame.eth_src)
    if sender is not None and (cluster.name, sender.ip) in member_ports:  # here on an edge port, not uplinked
        return ArpDecision(Verdict.DROPPED_SPOOFED, claimed=((cluster.name, sender.ip), in_port))
    edge = Edge(switch_ports, uplinks, in_port)
    return ArpDecision(Verdict.FORWARDED, spread(frame, sender, cluster, member_ports, edge, normal_delivery))


def _probe_answer(registry: Registry, in_port: int, frame: ArpFrame) -> ArpDecision:
    """An answer to the app's probe goes nowhere else. It claims a member's port only with the fields that
    member sends: its DIP as arp_spa and, as arp_sha, the cluster MAC in unicast mode or the member's
    registered NIC MAC in the multicast modes (any unicast MAC when none is registered). Whether the app
    sent that probe, there and recently, is for flows/locations.py."""
    for cluster in registry.clusters_with_member_ip(frame.spa):
        member = cluster.member_for_ip(frame.spa)
        if member.pinned:  # a pinned member is never probed
            continue
        expected = cluster.cluster_mac if cluster.unicast else member.own_mac
        claimed = ((cluster.name, member.ip), in_port)
        if (expected is not None and frame.sha != expected) or is_multicast_mac(frame.sha):
            return ArpDecision(Verdict.DROPPED_SPOOFED, claimed=claimed)
        return ArpDecision(Verdict.LOCATED, claimed=claimed)
    return ArpDecision(Verdict.LOCATED)


def member_on_port(cluster: Cluster, ports: MemberPorts, in_port: int) -> Member | None:
    """The member of the cluster located on in_port (the first in registry order where a port holds several):
    how a frame whose source address names no member (0.0.0.0, the VIP, a link-local address) is known as a
    member's. The core's view of its locations indexes members by port (on_port), so this costs the members
    on that port, not the cluster's size; a plain mapping (the tests') is scanned."""
    on_port = getattr(ports, "on_port", None)
    if on_port is not None:
        keys = [key for key in on_port(in_port) if key[0] == cluster.name]
        if not keys:
            return None
        if len(keys) == 1:
            return cluster.member_for_ip(keys[0][1])
    return next((m for m in cluster.members if ports.get((cluster.name, m.ip)) == in_port), None)


def spread(
    frame: Frame,
    sender: Member | None,
    cluster: Cluster,
    ports: MemberPorts,
    edge: Edge,
    normal_delivery: bool,
    to_peer: Callable[[Frame, Member, Cluster], Frame] = for_peer,
) -> tuple[FrameOut, ...]:
    """Invariant 1: outsiders get the frame unchanged, peers get it with the sender's dedicated MAC (to_peer
    rewrites it: for_peer here, flows/nd.py's for_peer for Neighbor Discovery).

    A frame addressed to one peer (its dedicated MAC) goes to that peer only; a frame addressed to
    the cluster MAC goes to the peers only; a broadcast goes to outsiders and peers. A frame addressed
    to an outsider (a member's reply to a client's ARP for the VIP or its DIP) goes, with
    normal_delivery, to the switch's NORMAL pipeline, which delivers it to the port that host was
    learned on as a learning switch does (and floods it only while that MAC is unknown, where every
    other NIC drops a frame addressed to another host's MAC); without it (NORMAL not in use, so its
    table knows nobody), to every non-member port.

    Uplinks (docs/fabric.md) get the unchanged frame wherever peers or outsiders may be behind them: a
    broadcast, a frame for the cluster MAC, for a peer not on this switch, or for an outsider. The switch
    at the other end spreads it to its own members. A frame from an uplink for an outsider goes to NORMAL
    as if it came in on that uplink, so NORMAL never sends it back there. What leaves by an uplink or
    NORMAL has the sender's dedicated MAC as Ethernet source, as its edge port's source masking would
    have made it (a member's first frame, before it was found), so no switch beyond learns the cluster
    MAC. Edge ports lead to hosts, which learn no MAC table: they get the frame as it came.
    """
    member_ports = {ports[key] for key in ((cluster.name, m.ip) for m in cluster.members) if key in ports}
    addressed_peer = cluster.member_for_dedicated_mac(frame.eth_dst)
    broadcast = is_multicast_mac(frame.eth_dst)
    to_outsider = addressed_peer is None and frame.eth_dst != cluster.cluster_mac and not broadcast
    from_uplink = edge.in_port in edge.uplinks
    outgoing, unmasked = frame, cluster.unicast and frame.eth_src == cluster.cluster_mac
    if unmasked and sender is not None:
        outgoing, unmasked = replace(frame, eth_src=sender.dedicated_mac), False
    # a sender not found yet cannot be masked: its frame stays off the uplinks, where a switch would learn CM
    up = edge.other_uplinks() if not unmasked else []
    if to_outsider and normal_delivery and not (unmasked and edge.uplinks):
        return (FrameOut(NORMAL_PORT, outgoing, in_port=edge.in_port if from_uplink else None),)
    outputs: list[FrameOut] = []
    if broadcast or to_outsider:
        outputs += _to_ports(frame, edge.ports() - member_ports - {edge.in_port})
    peer_elsewhere = addressed_peer is not None and (cluster.name, addressed_peer.ip) not in ports
    if broadcast or to_outsider or frame.eth_dst == cluster.cluster_mac or peer_elsewhere:
        outputs += _to_ports(outgoing, up)
    if sender is None:
        return tuple(outputs)
    for member in cluster.members:
        port = ports.get((cluster.name, member.ip))
        if member == sender or port is None or port == edge.in_port:
            continue
        if broadcast or frame.eth_dst == cluster.cluster_mac or member == addressed_peer:
            outputs.append(FrameOut(port, to_peer(frame, sender, cluster)))
    return tuple(outputs)


def _to_ports(frame: Frame, ports: Collection[int]) -> tuple[FrameOut, ...]:
    return tuple(FrameOut(port, frame) for port in sorted(ports))
