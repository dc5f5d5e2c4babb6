"""ARP decisions: what the fabric does with every ARP a member emits (method.md, Discovery).

decide_arp() is a pure function of the registry, where members sit on the switch, the switch's
ports and one punted frame. It returns the frames to send and the location it learned.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, replace
from enum import Enum

from flows.addresses import BROADCAST_MAC, PROBE_MAC, ZERO_IP, ZERO_MAC, is_multicast_mac
from flows.flowspec import NORMAL_PORT, MemberPorts
from flows.model import ArpMode, Cluster, Member, Registry

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


@dataclass(frozen=True)
class FrameOut:
    port: int
    frame: ArpFrame


class Verdict(str, Enum):
    """What happened to a punted ARP; the app counts and logs these."""

    ANSWERED = "answered"  # proxy: the controller answered for a peer (claim 1)
    RELAYED = "relayed"  # relay: the request went on to the target only, sha revised (claims 12-13)
    REVISED = "revised"  # a member's reply to a peer, revised and delivered (claims 14-18)
    FORWARDED = "forwarded"  # not for a peer: outsiders get it unchanged, peers with sha revised
    LOCATED = "located"  # a member's answer to the app's own probe: consumed
    TARGET_UNLOCATED = "target_unlocated"  # the peer has not been found yet: probed, not answered
    NOT_A_CLUSTER = "not_a_cluster"  # sha is no registered cluster MAC (a cluster just removed): dropped
    DROPPED_SPOOFED = "dropped_spoofed"  # claims a pinned member's DIP from another port: dropped


@dataclass(frozen=True)
class ArpDecision:
    verdict: Verdict
    outputs: tuple[FrameOut, ...] = ()
    learned: tuple[tuple[str, str], int] | None = None  # ((cluster, member ip), port) seen just now


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
        spa=target.ip,
        tha=cluster.cluster_mac,
        tpa=request.spa,
    )


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
) -> ArpDecision:
    """Handle one ARP punted by the switch (its arp_sha is a cluster MAC); normal_delivery: see _spread()."""
    if frame.op == ARP_REPLY and frame.tha == PROBE_MAC:
        return _probe_answer(registry, in_port, frame)
    cluster = registry.cluster_for_mac(frame.sha)
    if cluster is None:
        return ArpDecision(Verdict.NOT_A_CLUSTER)

    sender = cluster.member_for_ip(frame.spa)
    learned = None
    ports = dict(member_ports)
    if sender is not None and sender.pinned and ports.get((cluster.name, sender.ip)) != in_port:
        return ArpDecision(Verdict.DROPPED_SPOOFED)
    if sender is not None and not sender.pinned:
        learned = ((cluster.name, sender.ip), in_port)
        ports[(cluster.name, sender.ip)] = in_port
    if sender is None:  # a DAD probe (0.0.0.0) or the VIP as sender IP: recognise the sender by its port
        sender = next((m for m in cluster.members if ports.get((cluster.name, m.ip)) == in_port), None)

    target = cluster.member_for_ip(frame.tpa)
    is_own = frame.spa in (frame.tpa, ZERO_IP) or (sender is not None and target == sender)
    if target is None or is_own or (sender is None and frame.op == ARP_REPLY):
        spread = _spread(frame, sender, cluster, ports, switch_ports, in_port, normal_delivery)
        return ArpDecision(Verdict.FORWARDED, spread, learned)

    target_port = ports.get((cluster.name, target.ip))
    if target_port is None:
        return ArpDecision(Verdict.TARGET_UNLOCATED, probe_outputs(target.ip, switch_ports), learned)
    if frame.op == ARP_REPLY:
        return ArpDecision(Verdict.REVISED, (FrameOut(target_port, revised_reply(frame, sender, cluster)),), learned)
    if cluster.arp == ArpMode.RELAY and sender is not None and frame.spa == sender.ip:
        # with the VIP as sender IP the target would drop the request (its own address): answer instead
        return ArpDecision(Verdict.RELAYED, (FrameOut(target_port, for_peer(frame, sender, cluster)),), learned)
    return ArpDecision(Verdict.ANSWERED, (FrameOut(in_port, proxy_reply(cluster, target, frame)),), learned)


def _probe_answer(registry: Registry, in_port: int, frame: ArpFrame) -> ArpDecision:
    """A member answered the app's probe (with the cluster MAC in unicast mode, its own MAC otherwise):
    now its port is known. The answer goes nowhere else."""
    for cluster in registry.clusters:
        member = cluster.member_for_ip(frame.spa)
        if member is not None and not member.pinned:
            return ArpDecision(Verdict.LOCATED, (), ((cluster.name, member.ip), in_port))
    return ArpDecision(Verdict.LOCATED)


def _spread(
    frame: ArpFrame,
    sender: Member | None,
    cluster: Cluster,
    ports: MemberPorts,
    switch_ports: Collection[int],
    in_port: int,
    normal_delivery: bool,
) -> tuple[FrameOut, ...]:
    """Invariant 1: outsiders get the frame unchanged, peers get it with the sender's dedicated MAC.

    A frame addressed to one peer (its dedicated MAC) goes to that peer only; a frame addressed to
    the cluster MAC goes to the peers only; a broadcast goes to outsiders and peers. A frame addressed
    to an outsider (a member's reply to a client's ARP for the VIP or its DIP) goes, with
    normal_delivery, to the switch's NORMAL pipeline, which delivers it to the port that host was
    learned on as a learning switch does (and floods it only while that MAC is unknown, where every
    other NIC drops a frame addressed to another host's MAC); without it (NORMAL not in use, so its
    table knows nobody), to every non-member port.
    """
    member_ports = {port for (name, _), port in ports.items() if name == cluster.name}
    addressed_peer = cluster.member_for_dedicated_mac(frame.eth_dst)
    broadcast = is_multicast_mac(frame.eth_dst)
    to_outsider = addressed_peer is None and frame.eth_dst != cluster.cluster_mac and not broadcast
    outputs: list[FrameOut] = []
    if to_outsider and normal_delivery:
        return (FrameOut(NORMAL_PORT, frame),)
    if broadcast or to_outsider:
        outputs += _to_ports(frame, set(switch_ports) - member_ports - {in_port})
    if sender is None:
        return tuple(outputs)
    for member in cluster.members:
        port = ports.get((cluster.name, member.ip))
        if member == sender or port is None or port == in_port:
            continue
        if broadcast or frame.eth_dst == cluster.cluster_mac or member == addressed_peer:
            outputs.append(FrameOut(port, for_peer(frame, sender, cluster)))
    return tuple(outputs)


def _to_ports(frame: ArpFrame, ports: Collection[int]) -> tuple[FrameOut, ...]:
    return tuple(FrameOut(port, frame) for port in sorted(ports))
