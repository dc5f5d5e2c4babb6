"""Switch mode (`arp: switch`): the method done by flows, so a member's ARP never waits for the controller.

Three stages, for the ARP of a member the app located (docs/switch-mode.md):

- the forwarding table recognises the sender: its cluster MAC as `arp_sha`, and its DIP, the VIP or 0.0.0.0
  as `arp_spa`, from the port it is located on (or, for a member on another switch, from an uplink). The
  flow writes the sender's dedicated MAC into the pipeline metadata. Anything else a member could not have
  sent from there is not recognised and goes to the controller, which judges it as in the other modes;
- the answer table answers a request for a peer's DIP out of the port it came in on, never a member about
  its own address (those flows come first) and never for an address that is no member's;
- the spread table does what the controller's spread does (flows/arp.py, spread): the frame unchanged to
  the other hosts, then the sender's dedicated MAC moved from the metadata into `eth_src` and `arp_sha`
  for the uplinks and the peers.

Like every other spec these are pure values; a cluster's depend on the same inputs as its other flows. The
frame unchanged "to every other host" goes through two flows of the switch's own (flood_flows): each edge port
in turn through an egress table where the ports of the sender's cluster drop it, so a port appearing changes
one flow, not one per cluster.
"""

from __future__ import annotations

from collections.abc import Collection, Container, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from functools import lru_cache

from flows.addresses import ZERO_IP, is_ipv6
from flows.cookies import Purpose, cluster_id, make_cookie
from flows.flowspec import (
    ETH_TYPE_ARP,
    FORWARDING_TABLE,
    MEMBER_FLOWS_CACHED,
    PUNT_TABLE,
    Action,
    FlowSpec,
    GotoTable,
    InPort,
    Move,
    Normal,
    Output,
    OutputReg,
    Resubmit,
    SetField,
    WriteMetadata,
    make_match,
)
from flows.model import ArpMode, Cluster, Member

ANSWER_TABLE = 4  # after the punt tables (goto-table only goes forward): requests for a peer answered here
SPREAD_TABLE = 5  # then the hygiene spread
FLOOD_TABLE = 6  # one flow per switch: every edge port in turn, through the egress table (resubmit)
EGRESS_TABLE = 7  # a port of the sender's own cluster gets nothing unchanged; any other port gets the frame
FLOOD_REGISTER = "reg0"  # the port the egress table is asked about
CLUSTER_BITS = 0xFFFF << 48  # the metadata's top 16 bits: the sender's cluster id; the low 48: its DM

PRIORITY_ARP_SENDER = 350  # above the cluster's ARP punt: a recognised sender is handled by the switch
PRIORITY_OWN_ADDRESS = 300  # never answer a member about its own address
PRIORITY_ANSWER = 200
PRIORITY_ASK_CONTROLLER = 360  # forwarding table, above the senders: a request for a peer not located yet
# goes to the controller, which probes for it (the punt tables come before the answer table, and goto-table
# only goes forward)
PRIORITY_SPREAD_ADDRESSED = 200  # addressed to a peer's dedicated MAC, or to the cluster MAC
PRIORITY_SPREAD_BROADCAST = 100
PRIORITY_SPREAD_OTHER = 0  # addressed to some other host
PRIORITY_EGRESS_DROP = 100
MULTICAST_BIT = ("01:00:00:00:00:00", "01:00:00:00:00:00")  # eth_dst value/mask: broadcast and multicast

ARP_REQUEST = 1
ARP_REPLY = 2
MAC_BITS = 48
IPV4_BITS = 32
SENDER_MAC = (Move("metadata", "eth_src", MAC_BITS), Move("metadata", "arp_sha", MAC_BITS))


@dataclass(frozen=True)
class Owner:
    """What a cluster's switch-mode flows take from it: a small key, so the per-member flows are built once
    and kept (as flowspec's member flows are), and a cluster's recomputation costs lookups, not builds."""

    name: str
    cluster_mac: str
    vips: tuple[str, ...]  # its IPv4 cluster addresses: ARP names no other


def owner_of(cluster: Cluster) -> Owner:
    return Owner(cluster.name, cluster.cluster_mac, ipv4_only(cluster.vips))


def ipv4_only(addresses: Sequence[str]) -> tuple[str, ...]:
    """The addresses ARP can name (an IPv6 one is resolved by Neighbor Discovery)."""
    return tuple(address for address in addresses if not is_ipv6(address))


def uses_switch_mode(cluster: Cluster) -> bool:
    """Only unicast clusters need ARP handled at all (in the multicast modes NICs keep their own MACs)."""
    return cluster.unicast and cluster.arp == ArpMode.SWITCH


def sender_tag(cluster: Cluster | Owner, member: Member) -> int:
    """What the metadata holds for a recognised sender: its cluster's id, then its dedicated MAC."""
    return cluster_id(cluster.name) << 48 | int(member.dedicated_mac.replace(":", ""), 16)


def flood_flows(edge_ports: Collection[int]) -> list[FlowSpec]:
    """The switch's own two flows for "unchanged to every other host": each edge port in turn is put in a
    register and the egress table asked (a port of the sender's cluster drops it there, any other outputs
    it). They depend on the edge ports alone, so a port appearing changes one flow, whatever the clusters."""
    flood: list[Action] = []
    for port in sorted(edge_ports):
        flood += [SetField(FLOOD_REGISTER, port), Resubmit(EGRESS_TABLE)]
    return [
        FlowSpec(0, make_cookie(Purpose.ARP_FLOOD), make_match(), tuple(flood), FLOOD_TABLE),
        FlowSpec(0, make_cookie(Purpose.ARP_FLOOD), make_match(), (OutputReg(FLOOD_REGISTER),), EGRESS_TABLE),
    ]


def switch_mode_flows(
    cluster: Cluster,
    normal_fallback: bool,
    located: Sequence[tuple[Member, int]],
    down_ports: AbstractSet[int],
    uplinks: Sequence[int],
    elsewhere: Container[tuple[str, str]],
) -> list[FlowSpec]:
    """The cluster's switch-mode flows on one switch: located are its members here (in registry order) and
    their ports, uplinks the switch's present uplinks (sorted), elsewhere the
    members located on another switch. A switch with no member of the cluster and none behind an uplink
    holds none: no requester can be there."""
    here = {member.ip for member, _ in located}
    remote = [member for member in cluster.members if member.ip not in here]
    behind_uplinks = bool(uplinks) and any((cluster.name, member.ip) in elsewhere for member in remote)
    if not located and not behind_uplinks:
        return []
    owner = owner_of(cluster)
    flows = _sender_flows(owner, located, uplinks, remote)
    flows += _answer_flows(cluster, owner, located, down_ports, uplinks, elsewhere)
    flows += _spread_flows(cluster, owner, normal_fallback, located, down_ports, uplinks)
    return flows


def _sender_flows(
    cluster: Owner, located: Sequence[tuple[Member, int]], uplinks: Sequence[int], remote: Sequence[Member]
) -> list[FlowSpec]:
    """Recognise the sender, from where it can be: its own port (its DIP, or the VIP or 0.0.0.0 for the
    first member on that port, as the controller recognises a sender by its port), or an uplink for a member
    not here. A DAD probe (0.0.0.0) skips the answers: it is never answered."""
    flows = [
        _sender_flow(cluster, member, port, address, ANSWER_TABLE)
        for member, port in located
        for address in ipv4_only(member.addresses)
    ]
    for port, member in _first_on_port(located).items():
        flows += [_sender_flow(cluster, member, port, vip, ANSWER_TABLE) for vip in cluster.vips]
        flows.append(_sender_flow(cluster, member, port, ZERO_IP, SPREAD_TABLE))
    for uplink in uplinks:
        flows += [
            _sender_flow(cluster, member, uplink, address, SPREAD_TABLE)
            for member in remote
            for address in ipv4_only(member.addresses)
        ]
    return flows


@lru_cache(maxsize=MEMBER_FLOWS_CACHED)
def _sender_flow(cluster: Owner, member: Member, port: int, sender_ip: str, table_id: int) -> FlowSpec:
    return FlowSpec(
        priority=PRIORITY_ARP_SENDER,
        cookie=make_cookie(Purpose.ARP_SENDER, cluster.name, member.ip),
        match=make_match(in_port=port, eth_type=ETH_TYPE_ARP, arp_sha=cluster.cluster_mac, arp_spa=sender_ip),
        actions=(WriteMetadata(sender_tag(cluster, member)), GotoTable(table_id)),
        table_id=FORWARDING_TABLE,
    )


def _answer_flows(
    cluster: Cluster,
    owner: Owner,
    located: Sequence[tuple[Member, int]],
    down_ports: AbstractSet[int],
    uplinks: Sequence[int],
    elsewhere: Container[tuple[str, str]],
) -> list[FlowSpec]:
    """Claims 1-5 in the switch: the answer for every peer the switch can deliver to (here on a port that is
    up, or on another switch behind the uplinks); a request for a peer not located yet goes to the
    controller, which probes for it; nothing else is answered."""
    flows = [
        _own_address_flow(owner, member, address) for member, _ in located for address in ipv4_only(member.addresses)
    ]
    reachable = {member.ip for member, port in located if port not in down_ports}
    for target in cluster.members:
        deliverable = target.ip in reachable or (uplinks and (cluster.name, target.ip) in elsewhere)
        for address in ipv4_only(target.addresses):
            flows.append(_answer_flow(owner, target, address) if deliverable else _ask_flow(owner, target, address))
    flows.append(
        FlowSpec(
            priority=0,
            cookie=make_cookie(Purpose.ARP_SPREAD, cluster.name),
            match=make_match(eth_type=ETH_TYPE_ARP, arp_sha=cluster.cluster_mac),
            actions=(GotoTable(SPREAD_TABLE),),
            table_id=ANSWER_TABLE,
        )
    )
    return flows


@lru_cache(maxsize=MEMBER_FLOWS_CACHED)
def _own_address_flow(cluster: Owner, member: Member, address: str) -> FlowSpec:
    return FlowSpec(
        priority=PRIORITY_OWN_ADDRESS,
        cookie=make_cookie(Purpose.ARP_SENDER, cluster.name, member.ip),
        match=make_match(metadata=sender_tag(cluster, member), eth_type=ETH_TYPE_ARP, arp_tpa=address),
        actions=(GotoTable(SPREAD_TABLE),),
        table_id=ANSWER_TABLE,
    )


@lru_cache(maxsize=MEMBER_FLOWS_CACHED)
def _ask_flow(cluster: Owner, target: Member, address: str) -> FlowSpec:
    return FlowSpec(
        priority=PRIORITY_ASK_CONTROLLER,
        cookie=make_cookie(Purpose.ARP_PUNT, cluster.name, target.ip),
        match=_request_for(cluster, address),
        actions=(GotoTable(PUNT_TABLE),),
        table_id=FORWARDING_TABLE,
    )


def answer_flow(cluster: Cluster, target: Member, address: str | None = None) -> FlowSpec:
    """The in-switch answer for one address (None: the primary DIP) of a peer of this cluster."""
    return _answer_flow(owner_of(cluster), target, address or target.ip)


@lru_cache(maxsize=MEMBER_FLOWS_CACHED)
def _answer_flow(cluster: Owner, target: Member, address: str) -> FlowSpec:
    """The proxy answer (flows/arp.py, proxy_reply) built from the request itself: its sender IP becomes the
    target IP, everything else is the peer's or the cluster's, and it leaves where the request came in."""
    return FlowSpec(
        priority=PRIORITY_ANSWER,
        cookie=make_cookie(Purpose.ARP_ANSWER, cluster.name, target.ip),
        match=_request_for(cluster, address),
        actions=(
            Move("arp_spa", "arp_tpa", IPV4_BITS),
            SetField("eth_dst", cluster.cluster_mac),
            SetField("arp_tha", cluster.cluster_mac),
            SetField("arp_spa", address),
            SetField("arp_sha", target.dedicated_mac),
            SetField("eth_src", target.dedicated_mac),
            SetField("arp_op", ARP_REPLY),
            InPort(),
        ),
        table_id=ANSWER_TABLE,
    )


def _request_for(cluster: Owner, address: str) -> tuple:
    """A cluster member's request for this address of a peer (a member of another cluster is an outsider)."""
    return make_match(eth_type=ETH_TYPE_ARP, arp_op=ARP_REQUEST, arp_sha=cluster.cluster_mac, arp_tpa=address)


def _spread_flows(
    cluster: Cluster,
    owner: Owner,
    normal_fallback: bool,
    located: Sequence[tuple[Member, int]],
    down_ports: AbstractSet[int],
    uplinks: Sequence[int],
) -> list[FlowSpec]:
    """Invariant 1 in the switch, as flows/arp.py's spread(): the other hosts get the frame as it came, the
    uplinks get it with the sender's dedicated MAC as Ethernet source, the peers with it as `arp_sha` too.
    OpenFlow never outputs a frame back to its in_port, so the sender never gets its own frame."""
    ports_here = {port for _, port in located}
    peers = _outputs(ports_here - set(down_ports))
    outsiders = Resubmit(FLOOD_TABLE)
    up = _outputs(uplinks)
    flows = [_egress_drop(owner, member, port) for port, member in _first_on_port(located).items()]
    port_of = {member.ip: port for member, port in located}
    for member in cluster.members:
        flows.append(_spread_to_member(owner, member, port_of.get(member.ip), up))
    to_cluster = (SENDER_MAC[0], *up, SENDER_MAC[1], *peers)
    flows.append(_spread_flow(owner, None, PRIORITY_SPREAD_ADDRESSED, cluster.cluster_mac, to_cluster))
    flows.append(_spread_flow(owner, None, PRIORITY_SPREAD_BROADCAST, MULTICAST_BIT, (outsiders, *to_cluster)))
    to_host = (SENDER_MAC[0], Normal()) if normal_fallback else (outsiders, SENDER_MAC[0], *up)
    flows.append(_spread_flow(owner, None, PRIORITY_SPREAD_OTHER, None, to_host))
    return flows


@lru_cache(maxsize=MEMBER_FLOWS_CACHED)
def _spread_to_member(cluster: Owner, member: Member, port: int | None, up: tuple[Output, ...]) -> FlowSpec:
    """A member's ARP addressed to this peer's dedicated MAC: to the peer only, or up if it is not here."""
    if port is not None:
        actions: tuple[Action, ...] = (*SENDER_MAC, SetField("eth_dst", cluster.cluster_mac), Output(port))
    else:  # on another switch, or nowhere yet: up, where it may be
        actions = (SENDER_MAC[0], *up) if up else ()
    return _spread_flow(cluster, member, PRIORITY_SPREAD_ADDRESSED, member.dedicated_mac, actions)


@lru_cache(maxsize=MEMBER_FLOWS_CACHED)
def _egress_drop(cluster: Owner, member: Member, port: int) -> FlowSpec:
    """The cluster's member port gets nothing from the flood: its frame for peers comes with the DM."""
    return FlowSpec(
        priority=PRIORITY_EGRESS_DROP,
        cookie=make_cookie(Purpose.ARP_SPREAD, cluster.name, member.ip),
        match=make_match(**{FLOOD_REGISTER: port, "metadata": (cluster_id(cluster.name) << 48, CLUSTER_BITS)}),
        actions=(),
        table_id=EGRESS_TABLE,
    )


def _first_on_port(located: Sequence[tuple[Member, int]]) -> dict[int, Member]:
    """Each port's first member (registry order): the one a frame from that port without a DIP stands for."""
    first: dict[int, Member] = {}
    for member, port in located:
        first.setdefault(port, member)
    return dict(sorted(first.items()))


def _spread_flow(
    cluster: Owner, member: Member | None, priority: int, eth_dst: object, actions: tuple[Action, ...]
) -> FlowSpec:
    fields: dict[str, object] = {"eth_type": ETH_TYPE_ARP, "arp_sha": cluster.cluster_mac}
    if eth_dst is not None:
        fields["eth_dst"] = eth_dst
    return FlowSpec(
        priority=priority,
        cookie=make_cookie(Purpose.ARP_SPREAD, cluster.name, member.ip if member else None),
        match=make_match(**fields),
        actions=actions,
        table_id=SPREAD_TABLE,
    )


def _outputs(ports: Collection[int]) -> tuple[Output, ...]:
    return tuple(Output(port) for port in sorted(ports))
