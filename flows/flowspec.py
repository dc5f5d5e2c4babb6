"""Flow specs: the exact set of flows the app wants in one switch, as plain values.

A FlowSpec is what a flow-mod installs and what flow-stats reads back, so reconciliation is a set
difference (see reconcile()). The OpenFlow layer in ryu_apps/ofmsgs.py turns specs into messages.
"""

from __future__ import annotations

from collections.abc import Collection, Container, Iterable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Union

from flows.addresses import PROBE_MAC
from flows.cookies import Purpose, make_cookie, port_cookie
from flows.meters import TOTAL_METER_ID, port_meter_id
from flows.model import Cluster, Registry, Settings

ETH_TYPE_ARP = 0x0806
ETH_TYPE_IPV6 = 0x86DD
IP_PROTO_ICMPV6 = 58
OFPP_MAX = 0xFFFFFF00  # OpenFlow's reserved ports (LOCAL, CONTROLLER, ...) start here

INGRESS_TABLE = 0  # source masking, then on to forwarding
FORWARDING_TABLE = 1
PUNT_TABLE = 2  # what goes to the controller passes its ingress port's meter here (flows/meters.py)
PUNT_OUT_TABLE = 3  # then the total meter, then the controller

PRIORITY_SOURCE_MASKING = 100
PRIORITY_ROUTER_ND_PUNT = 150  # ingress table, above source masking: an RS or RA keeps the cluster MAC as source
PRIORITY_INGRESS = 0
PRIORITY_PROBE_ANSWER = 400
PRIORITY_ARP_PUNT = 300
PRIORITY_MEMBER_DELIVERY = 200
PRIORITY_CLUSTER_DELIVERY = 100
PRIORITY_NORMAL_FALLBACK = 0
PRIORITY_PUNT_PORT = 100
PRIORITY_PUNT_OUT = 0
NORMAL_PORT = 0xFFFFFFFA  # OpenFlow's OFPP_NORMAL: a packet-out there is delivered by the switch's learning


@dataclass(frozen=True)
class Output:
    port: int


@dataclass(frozen=True)
class ToController:
    """Send the whole frame to the controller (OFPCML_NO_BUFFER)."""


@dataclass(frozen=True)
class Normal:
    """OVS's NORMAL pipeline: the switch's own learning and flooding."""


@dataclass(frozen=True)
class SetField:
    field: str
    value: str


@dataclass(frozen=True)
class Move:
    """Copy n_bits of one field into another (OVS's Nicira `move`), low bits first: what the switch's own ARP
    answers use for the fields that come from the request (docs/switch-mode.md)."""

    src: str
    dst: str
    n_bits: int


@dataclass(frozen=True)
class Resubmit:
    """Run another table's flows on the frame as it is now, then go on with this list (OVS's Nicira
    `resubmit`): the switch-mode spread sends a frame to every edge port through one shared flow."""

    table_id: int


@dataclass(frozen=True)
class OutputReg:
    """Output to the port a register holds (OVS's Nicira `output:reg0`)."""

    field: str


@dataclass(frozen=True)
class InPort:
    """Output back out of the port the frame came in on (OFPP_IN_PORT): where an in-switch answer goes."""


@dataclass(frozen=True)
class WriteMetadata:
    """Set the pipeline's 64-bit metadata (the OpenFlow instruction, kept before goto-table): the switch
    carries a member's dedicated MAC in it from the table that recognises the sender to those that use it."""

    value: int


@dataclass(frozen=True)
class GotoTable:
    """Continue in another table (the OpenFlow instruction, kept last among a flow's actions)."""

    table_id: int


@dataclass(frozen=True)
class Meter:
    """Pass the meter first (the OpenFlow instruction, kept first among a flow's actions)."""

    meter_id: int


@dataclass(frozen=True)
class Unrecognized:
    """An action read back from a switch that the app never installs; it marks a flow as unexpected."""

    text: str


Action = Union[
    Output,
    ToController,
    Normal,
    SetField,
    Move,
    Resubmit,
    OutputReg,
    InPort,
    WriteMetadata,
    GotoTable,
    Meter,
    Unrecognized,
]
Match = tuple[tuple[str, object], ...]


def action_text(action: Action) -> str:
    """An action as ovs-ofctl prints it (OpenFlow 1.3), for the audit and for tests."""
    if isinstance(action, Output):
        return f"output:{action.port}"
    if isinstance(action, ToController):
        return "CONTROLLER:65535"
    if isinstance(action, Normal):
        return "NORMAL"
    if isinstance(action, SetField):
        return f"set_field:{action.value}->{action.field}"
    if isinstance(action, Move):
        return f"move:{action.src}[0..{action.n_bits - 1}]->{action.dst}[]"
    if isinstance(action, Resubmit):
        return f"resubmit(,{action.table_id})"
    if isinstance(action, OutputReg):
        return f"output:{action.field}[]"
    if isinstance(action, InPort):
        return "IN_PORT"
    if isinstance(action, WriteMetadata):
        return f"write_metadata:{action.value:#x}"
    if isinstance(action, GotoTable):
        return f"goto_table:{action.table_id}"
    if isinstance(action, Meter):
        return f"meter:{action.meter_id}"
    return action.text


def make_match(**fields: object) -> Match:
    """A match as sorted (field, value) pairs, so equal matches compare equal."""
    return tuple(sorted(fields.items()))


@dataclass(frozen=True)
class FlowSpec:
    priority: int
    cookie: int
    match: Match
    actions: tuple[Action, ...]
    table_id: int = 0

    @property
    def key(self) -> tuple[int, int, Match]:
        """What identifies a flow in OpenFlow: adding a flow with the same key replaces it."""
        return (self.table_id, self.priority, self.match)

    def __hash__(self) -> int:
        """Computed once per flow (a flow is immutable): the core keeps tens of thousands in sets."""
        try:
            return self.__dict__["_hash"]
        except KeyError:
            value = hash((self.priority, self.cookie, self.match, self.actions, self.table_id))
            object.__setattr__(self, "_hash", value)
            return value


MEMBER_FLOWS_CACHED = 1 << 16  # per-member flows kept built: recomputing a cluster rebuilds only what moved
MemberPorts = Mapping[tuple[str, str], int]
"""(cluster name, member ip) -> port, on one switch; members not located there are absent."""
NOWHERE_ELSE: frozenset[tuple[str, str]] = frozenset()  # a switch alone: no member is on another switch


@lru_cache(maxsize=MEMBER_FLOWS_CACHED)
def source_masking_flow(cluster_name: str, cluster_mac: str, member_ip: str, dedicated_mac: str, port: int) -> FlowSpec:
    """A member's frames leave its port with its dedicated MAC as source, so no switch table ever holds
    the cluster MAC and NORMAL never sees it move (NLB's MaskSourceMAC, done in the fabric)."""
    return FlowSpec(
        priority=PRIORITY_SOURCE_MASKING,
        cookie=make_cookie(Purpose.SOURCE_MASKING, cluster_name, member_ip),
        match=make_match(in_port=port, eth_src=cluster_mac),
        actions=(SetField("eth_src", dedicated_mac), GotoTable(FORWARDING_TABLE)),
        table_id=INGRESS_TABLE,
    )


def ingress_flow() -> FlowSpec:
    return FlowSpec(
        priority=PRIORITY_INGRESS,
        cookie=make_cookie(Purpose.INGRESS),
        match=make_match(),
        actions=(GotoTable(FORWARDING_TABLE),),
        table_id=INGRESS_TABLE,
    )


def probe_answer_flow() -> FlowSpec:
    """Members answer the app's probes to PROBE_MAC with their own MACs, whatever the cluster mode."""
    return FlowSpec(
        priority=PRIORITY_PROBE_ANSWER,
        cookie=make_cookie(Purpose.PROBE_ANSWER),
        match=make_match(eth_type=ETH_TYPE_ARP, arp_op=2, eth_dst=PROBE_MAC),
        actions=(GotoTable(PUNT_TABLE),),
        table_id=FORWARDING_TABLE,
    )


def arp_punt_flow(cluster_name: str, cluster_mac: str) -> FlowSpec:
    """Every ARP a member emits carries arp_sha = cluster MAC; the controller handles all of it, as far
    as the punt meters let it through."""
    return FlowSpec(
        priority=PRIORITY_ARP_PUNT,
        cookie=make_cookie(Purpose.ARP_PUNT, cluster_name),
        match=make_match(eth_type=ETH_TYPE_ARP, arp_sha=cluster_mac),
        actions=(GotoTable(PUNT_TABLE),),
        table_id=FORWARDING_TABLE,
    )


ND_PUNT_MATCHES = (  # (table, the frame's field that holds a member's cluster MAC, ICMPv6 type)
    (FORWARDING_TABLE, "ipv6_nd_sll", 135),  # NS: its source link-layer address option
    (FORWARDING_TABLE, "ipv6_nd_tll", 136),  # NA: its target link-layer address option
    (INGRESS_TABLE, "eth_src", 133),  # RS and RA: OpenFlow matches no option of theirs; a member sends them
    (INGRESS_TABLE, "eth_src", 134),  # from the cluster MAC (Linux), taken before source masking rewrites it
)


@lru_cache(maxsize=MEMBER_FLOWS_CACHED)
def nd_punt_flows(cluster_name: str, cluster_mac: str) -> tuple[FlowSpec, ...]:
    """Neighbor Discovery as ARP (docs/ipv6.md): a member's NS carries the cluster MAC as source link-layer
    address, its NA as target link-layer address; the controller handles all of it, as far as the punt
    meters let it through. An NS without the option (DAD, from ::) matches none: it is switched as before."""
    return tuple(
        FlowSpec(
            priority=PRIORITY_ARP_PUNT if table == FORWARDING_TABLE else PRIORITY_ROUTER_ND_PUNT,
            cookie=make_cookie(Purpose.ND_PUNT, cluster_name) | icmp_type,
            match=make_match(
                eth_type=ETH_TYPE_IPV6, ip_proto=IP_PROTO_ICMPV6, icmpv6_type=icmp_type, **{field: cluster_mac}
            ),
            actions=(GotoTable(PUNT_TABLE),),
            table_id=table,
        )
        for table, field, icmp_type in ND_PUNT_MATCHES
    )


def punt_port_flow(port: int) -> FlowSpec:
    """A port's punted frames pass its own meter: its storm spends its share and no other port's.
    A port without this flow (not yet known to the app) punts nothing: OpenFlow 1.3's table miss drops."""
    return FlowSpec(
        priority=PRIORITY_PUNT_PORT,
        cookie=port_cookie(Purpose.PUNT_PORT, port),
        match=make_match(in_port=port),
        actions=(Meter(port_meter_id(port)), GotoTable(PUNT_OUT_TABLE)),
        table_id=PUNT_TABLE,
    )


def punt_out_flow() -> FlowSpec:
    """Every punted frame passes the total meter last: the controller never gets more than it answers."""
    return FlowSpec(
        priority=PRIORITY_PUNT_OUT,
        cookie=make_cookie(Purpose.PUNT_TOTAL),
        match=make_match(),
        actions=(Meter(TOTAL_METER_ID), ToController()),
        table_id=PUNT_OUT_TABLE,
    )


@lru_cache(maxsize=MEMBER_FLOWS_CACHED)
def member_delivery_flow(
    cluster_name: str, cluster_mac: str, member_ip: str, dedicated_mac: str, port: int
) -> FlowSpec:
    """Claims 54-58: a frame for the member's dedicated MAC reaches its stack addressed to the cluster MAC."""
    return FlowSpec(
        priority=PRIORITY_MEMBER_DELIVERY,
        cookie=make_cookie(Purpose.MEMBER_DELIVERY, cluster_name, member_ip),
        match=make_match(eth_dst=dedicated_mac),
        actions=(SetField("eth_dst", cluster_mac), Output(port)),
        table_id=FORWARDING_TABLE,
    )


@lru_cache(maxsize=MEMBER_FLOWS_CACHED)
def member_transit_flow(cluster_name: str, member_ip: str, dedicated_mac: str, uplinks: tuple[int, ...]) -> FlowSpec:
    """A frame for a member on another switch travels there unchanged, with eth_dst = its dedicated MAC, out
    of every uplink but the one it came in on (docs/fabric.md): it is rewritten to the cluster MAC only on
    the member's own edge port, and no learning switch in between ever sees the cluster MAC."""
    return FlowSpec(
        priority=PRIORITY_MEMBER_DELIVERY,
        cookie=make_cookie(Purpose.MEMBER_TRANSIT, cluster_name, member_ip),
        match=make_match(eth_dst=dedicated_mac),
        actions=tuple(Output(port) for port in uplinks),
        table_id=FORWARDING_TABLE,
    )


def cluster_delivery_flow(cluster_name: str, cluster_mac: str, ports: Iterable[int]) -> FlowSpec:
    """Invariant 4 and flood containment: cluster traffic reaches every member's filter and no other
    port (OpenFlow never sends a frame back out of the port it came in on). With no member port up, the
    flow drops: a cluster's frames are never flooded. On a fabric, ports include the switch's uplinks, so
    the frame reaches the members behind them too (split horizon: never back where it came from)."""
    return FlowSpec(
        priority=PRIORITY_CLUSTER_DELIVERY,
        cookie=make_cookie(Purpose.CLUSTER_DELIVERY, cluster_name),
        match=make_match(eth_dst=cluster_mac),
        actions=tuple(Output(port) for port in sorted(set(ports))),
        table_id=FORWARDING_TABLE,
    )


def normal_fallback_flow() -> FlowSpec:
    return FlowSpec(
        priority=PRIORITY_NORMAL_FALLBACK,
        cookie=make_cookie(Purpose.NORMAL_FALLBACK),
        match=make_match(),
        actions=(Normal(),),
        table_id=FORWARDING_TABLE,
    )


def base_flows(settings: Settings) -> list[FlowSpec]:
    """The flows every switch holds whatever the registry: the pipeline, probe answers, the total meter and
    the table-miss."""
    flows = [ingress_flow(), probe_answer_flow(), punt_out_flow()]
    return [*flows, normal_fallback_flow()] if settings.normal_fallback else flows


def cluster_flows(
    cluster: Cluster,
    settings: Settings,
    member_ports: MemberPorts,
    down_ports: AbstractSet[int] = frozenset(),
    held_ports: AbstractSet[int] = frozenset(),
    uplinks: AbstractSet[int] = frozenset(),
    elsewhere: Container[tuple[str, str]] = NOWHERE_ELSE,
) -> list[FlowSpec]:
    """One cluster's flows on one switch: they depend on nothing but the cluster, where its members sit
    there, which of those ports are down, the delivery ports it held at start, the switch's uplinks and
    which members sit on another switch (elsewhere), so a change elsewhere never needs them recomputed
    (flows/core.py keeps them per cluster). An uplink that is down keeps its place in the flows: a link
    flapping changes no flow."""
    flows: list[FlowSpec] = []
    located = [(member, member_ports.get((cluster.name, member.ip))) for member in cluster.members]
    located = [(member, port) for member, port in located if port is not None]
    if cluster.unicast:
        flows.append(arp_punt_flow(cluster.name, cluster.cluster_mac))
        flows += nd_punt_flows(cluster.name, cluster.cluster_mac)
        for member, port in located:
            delivery = member_delivery_flow(cluster.name, cluster.cluster_mac, member.ip, member.dedicated_mac, port)
            flows.append(replace(delivery, actions=()) if port in down_ports else delivery)
        if uplinks:
            toward = tuple(sorted(uplinks))
            for member in cluster.members:
                key = (cluster.name, member.ip)
                if key not in member_ports and key in elsewhere:
                    flows.append(member_transit_flow(cluster.name, member.ip, member.dedicated_mac, toward))
    if cluster.unicast and settings.source_masking:
        masked_ports: set[int] = set()
        for member, port in sorted(located, key=lambda pair: pair[0].ip):
            if port not in masked_ports:  # two members behind one port cannot be told apart by source
                masked_ports.add(port)
                flows.append(
                    source_masking_flow(cluster.name, cluster.cluster_mac, member.ip, member.dedicated_mac, port)
                )
    if responder.uses_switch_mode(cluster):
        toward = tuple(sorted(uplinks))
        flows += responder.switch_mode_flows(cluster, settings.normal_fallback, located, down_ports, toward, elsewhere)
    ports = ({port for _, port in located} | set(held_ports)) - set(down_ports)
    flows.append(cluster_delivery_flow(cluster.name, cluster.cluster_mac, ports | set(uplinks)))
    return flows


def expected_flows(
    registry: Registry,
    settings: Settings,
    member_ports: MemberPorts,
    down_ports: AbstractSet[int] = frozenset(),
    held_ports: Mapping[str, AbstractSet[int]] | None = None,
    switch_ports: Collection[int] = (),
    uplinks: AbstractSet[int] = frozenset(),
    elsewhere: Container[tuple[str, str]] = NOWHERE_ELSE,
) -> list[FlowSpec]:
    """The complete set of the app's flows for one switch, computed from scratch: the reference that the
    incremental bookkeeping of flows/core.py must always agree with.

    member_ports says where members sit; a port in down_ports gets nothing (a member there is dropped, not
    flooded). held_ports adds ports a cluster's delivery flow already had when the controller came up, so
    a restart changes nothing before the members are found again. switch_ports are the switch's ports:
    each gets its punt meter (a port not listed punts nothing). uplinks are the switch's present uplinks and
    elsewhere the members located on another switch of the fabric (docs/fabric.md).
    """
    flows = base_flows(settings) + [punt_port_flow(port) for port in sorted(set(switch_ports))]
    for cluster in registry.clusters:
        held = (held_ports or {}).get(cluster.name, frozenset())
        flows += cluster_flows(cluster, settings, member_ports, down_ports, held, uplinks, elsewhere)
    if any(responder.uses_switch_mode(cluster) for cluster in registry.clusters):
        flows += responder.flood_flows(set(switch_ports) - set(uplinks))
    return flows


@dataclass(frozen=True)
class FlowDiff:
    """What a switch needs to hold exactly the expected flows: ADD installs or replaces by key."""

    to_add: tuple[FlowSpec, ...]
    to_delete: tuple[FlowSpec, ...]


def reconcile(expected: Iterable[FlowSpec], installed: Iterable[FlowSpec]) -> FlowDiff:
    """Difference, never wipe: flows already right stay untouched, so traffic never sees a gap.

    A stale flow whose key an added flow reuses is replaced by that ADD and needs no delete.
    Duplicates read back from the switch (same spec twice) cannot exist in OpenFlow, since a key
    holds one flow; two flows that differ only in cookie share a key and the ADD overwrites it.
    """
    expected_set = set(expected)
    installed_set = set(installed)
    to_add = tuple(sorted(expected_set - installed_set, key=diff_order))
    added_keys = {flow.key for flow in to_add}
    stale = (flow for flow in installed_set - expected_set if flow.key not in added_keys)
    to_delete = tuple(sorted(stale, key=diff_order))
    return FlowDiff(to_add=to_add, to_delete=to_delete)


def diff_order(flow: FlowSpec) -> tuple[int, int, str]:
    """The order a diff lists its flows in: by table, highest priority first."""
    return (flow.table_id, -flow.priority, repr(flow.match))


EMPTY_DIFF = FlowDiff(to_add=(), to_delete=())


# Last: the switch-mode flows (flows/responder.py) are built from the specs above.
from flows import responder  # noqa: E402
