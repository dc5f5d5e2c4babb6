"""An offline OpenFlow table and fabric, in the spirit of Faucet's FakeOFTable and FakeOFNetwork.

FakeOFTable applies the app's flow changes the way a switch does (one flow per key, highest
priority wins, masked matches, a pipeline of tables with its metadata) and answers "this frame, from this
port: where does it leave, and how?". It executes every action the app installs, including switch mode's
in-switch ARP answers (flows/responder.py: move, set_field on the ARP fields, IN_PORT, write_metadata), and
counts the frames it sends the controller (packet_ins), so a test can say that the switch did it alone.
FakeFabric adds the controller: frames sent to it go through NlbCore.packet_in, and what the
core sends back is delivered, so a test can follow ARP -> answer -> rewrite flow -> delivery.
FakeNetwork does the same for several switches, ordinary learning switches and the hosts and links
between them, so a test can follow a frame from one host to every host it reaches.
"""

from __future__ import annotations

import ipaddress
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Union

from flows.addresses import ZERO_MAC, is_multicast_mac
from flows.arp import ArpFrame
from flows.arp import Frame as Punted
from flows.core import NlbCore, Work
from flows.flowspec import (
    ETH_TYPE_ARP,
    ETH_TYPE_IPV6,
    IP_PROTO_ICMPV6,
    NORMAL_PORT,
    Action,
    FlowDiff,
    FlowSpec,
    GotoTable,
    InPort,
    Meter,
    Move,
    Normal,
    Output,
    OutputReg,
    Resubmit,
    SetField,
    ToController,
    WriteMetadata,
)
from flows.locations import Note
from flows.model import Fabric
from flows.nd import ND_NEIGHBOR_ADVERTISEMENT, ND_NEIGHBOR_SOLICITATION, NdFrame

ETH_TYPE_IPV4 = 0x0800


@dataclass(frozen=True)
class Frame:
    """The header fields a flow can match or set; ARP fields are None for other frames, and so are the ND
    fields (an ND message is carried whole in nd, its fields beside it as a switch parses them)."""

    eth_src: str
    eth_dst: str
    eth_type: int = ETH_TYPE_IPV4
    arp_op: int | None = None
    arp_sha: str | None = None
    arp_spa: str | None = None
    arp_tha: str | None = None
    arp_tpa: str | None = None
    payload: str | None = None  # a data frame's tag, so that a test can count the copies of one frame
    ip_proto: int | None = None
    icmpv6_type: int | None = None
    ipv6_nd_sll: str | None = None  # NS only: its SLLA option, all zeros without one (as OVS reads it)
    ipv6_nd_tll: str | None = None  # NA only
    nd: NdFrame | None = None

    @classmethod
    def of(cls, frame: Punted) -> Frame:
        """What the controller sends or receives, as the switch sees it."""
        return cls.from_nd(frame) if isinstance(frame, NdFrame) else cls.from_arp(frame)

    def punted(self) -> Punted:
        """The frame as the controller reads it from a packet-in."""
        return self.to_nd() if self.nd is not None else self.to_arp()

    @classmethod
    def from_nd(cls, nd: NdFrame) -> Frame:
        lla = nd.lla or ZERO_MAC
        return cls(
            eth_src=nd.eth_src,
            eth_dst=nd.eth_dst,
            eth_type=ETH_TYPE_IPV6,
            ip_proto=IP_PROTO_ICMPV6,
            icmpv6_type=nd.type,
            ipv6_nd_sll=lla if nd.type == ND_NEIGHBOR_SOLICITATION else None,
            ipv6_nd_tll=lla if nd.type == ND_NEIGHBOR_ADVERTISEMENT else None,
            nd=nd,
        )

    def to_nd(self) -> NdFrame:
        """The ND message with what flows set (Ethernet addresses, the link-layer address option) applied."""
        nd = replace(self.nd, eth_src=self.eth_src, eth_dst=self.eth_dst)
        lla = self.ipv6_nd_sll or self.ipv6_nd_tll
        return nd.with_lla(lla) if lla not in (None, ZERO_MAC) else nd

    @classmethod
    def from_arp(cls, arp: ArpFrame) -> Frame:
        return cls(
            eth_src=arp.eth_src,
            eth_dst=arp.eth_dst,
            eth_type=ETH_TYPE_ARP,
            arp_op=arp.op,
            arp_sha=arp.sha,
            arp_spa=arp.spa,
            arp_tha=arp.tha,
            arp_tpa=arp.tpa,
        )

    def to_arp(self) -> ArpFrame:
        return ArpFrame(
            eth_src=self.eth_src,
            eth_dst=self.eth_dst,
            op=self.arp_op,
            sha=self.arp_sha,
            spa=self.arp_spa,
            tha=self.arp_tha,
            tpa=self.arp_tpa,
        )


CONTROLLER = "controller"
NORMAL = "normal"


@dataclass(frozen=True)
class Delivery:
    """A frame leaving the table: on a port number, or to CONTROLLER / NORMAL."""

    port: int | str
    frame: Frame


MAC_FIELDS = frozenset({"eth_src", "eth_dst", "arp_sha", "arp_tha", "ipv6_nd_sll", "ipv6_nd_tll"})
IPV4_FIELDS = frozenset({"arp_spa", "arp_tpa"})
FIELD_BITS = {
    **dict.fromkeys(MAC_FIELDS, 48),
    **dict.fromkeys(IPV4_FIELDS, 32),
    "arp_op": 16,
    "eth_type": 16,
    "ip_proto": 8,
    "icmpv6_type": 8,
    "in_port": 32,
    "metadata": 64,
    "reg0": 32,
}
REGISTERS = frozenset({"reg0"})  # pipeline registers: 0 when a frame enters, kept across tables
MAX_RESUBMIT_DEPTH = 64  # OVS's limit on nested resubmits
ARP_FIELDS = frozenset({"arp_op", "arp_sha", "arp_spa", "arp_tha", "arp_tpa"})
ND_PREREQUISITE = {  # what OVS asks a match to hold before a field may be matched (ovs-fields(7))
    "icmpv6_type": range(256),
    "ipv6_nd_sll": (ND_NEIGHBOR_SOLICITATION,),
    "ipv6_nd_tll": (ND_NEIGHBOR_ADVERTISEMENT,),
}
WRITABLE = MAC_FIELDS | IPV4_FIELDS | REGISTERS | {"arp_op"}  # the fields an app's flow may set or move into


class FlowRejected(ValueError):
    """A flow a switch would refuse (OpenFlow's bad-action and bad-match errors): a test that installs it
    fails at once instead of running something no switch runs."""


def field_int(name: str, value: object) -> int:
    """A field's value as the bits a switch holds."""
    if name in MAC_FIELDS:
        return int(str(value).replace(":", ""), 16)
    if name in IPV4_FIELDS:
        return int(ipaddress.IPv4Address(str(value)))
    return int(value)  # type: ignore[call-overload]


def field_value(name: str, bits: int) -> object:
    """The bits of a field as a Frame holds them: a MAC or an IPv4 address as text, others as numbers."""
    if name in MAC_FIELDS:
        text = f"{bits:012x}"
        return ":".join(text[i : i + 2] for i in range(0, 12, 2))
    if name in IPV4_FIELDS:
        return str(ipaddress.IPv4Address(bits))
    return bits


def check_flow(flow: FlowSpec) -> None:
    """What OVS checks when it installs a flow, for the actions switch mode adds: a field set, moved or
    matched exists and is writable, a move fits both fields, an ARP field is touched only under a match
    on eth_type=ARP (OpenFlow's prerequisites), and a mask is given only as (value, mask)."""
    match = dict(flow.match)
    is_arp = match.get("eth_type") == ETH_TYPE_ARP
    is_icmpv6 = match.get("eth_type") == ETH_TYPE_IPV6 and match.get("ip_proto") == IP_PROTO_ICMPV6
    for name, value in flow.match:
        if name not in FIELD_BITS:
            raise FlowRejected(f"{flow}: no field {name!r} to match")
        if name in ARP_FIELDS and not is_arp:
            raise FlowRejected(f"{flow}: {name} matched without eth_type=ARP")
        if name in ND_PREREQUISITE and (not is_icmpv6 or match.get("icmpv6_type") not in ND_PREREQUISITE[name]):
            raise FlowRejected(f"{flow}: {name} matched without its ICMPv6 prerequisites (OFPBMC_BAD_PREREQ)")
        if isinstance(value, tuple) and len(value) != 2:
            raise FlowRejected(f"{flow}: a masked match on {name} is (value, mask)")
    for action in flow.actions:
        touched: tuple[str, ...] = ()
        if isinstance(action, SetField):
            touched = (action.field,)
        elif isinstance(action, Move):
            touched = (action.src, action.dst)
            if action.src not in FIELD_BITS or action.dst not in WRITABLE:
                raise FlowRejected(f"{flow}: cannot move {action.src} to {action.dst}")
            if not 0 < action.n_bits <= min(FIELD_BITS[action.src], FIELD_BITS[action.dst]):
                raise FlowRejected(f"{flow}: {action.n_bits} bits do not fit {action.src} -> {action.dst}")
        if isinstance(action, SetField) and action.field not in WRITABLE:
            raise FlowRejected(f"{flow}: cannot set {action.field}")
        if any(name in ARP_FIELDS for name in touched) and not is_arp:
            raise FlowRejected(f"{flow}: {action} on a flow that does not match eth_type=ARP")


def _matches(match: tuple, fields: Mapping[str, object]) -> bool:
    for name, wanted in match:
        value = fields.get(name)
        if value is None:
            return False
        if isinstance(wanted, tuple):  # (value, mask): only the mask's bits must agree
            want, mask = (field_int(name, part) for part in wanted)
            if field_int(name, value) & mask != want & mask:
                return False
        elif value != wanted:
            return False
    return True


class FakeOFTable:
    """One switch's tables. A frame starts in table 0 with metadata 0; each flow runs as OpenFlow 1.3 orders
    its instructions: its meter, its apply-actions in order (each output sends the frame as it is by then),
    then write-metadata, then goto-table. A table miss drops, as fail_mode=secure does."""

    def __init__(self) -> None:
        self.flows: dict[tuple, FlowSpec] = {}
        self.packet_ins = 0  # frames sent to the controller, as the n_packets of the flows that send there

    def apply(self, diff: FlowDiff) -> None:
        for flow in diff.to_delete:
            if self.flows.get(flow.key) == flow:
                del self.flows[flow.key]
        for flow in diff.to_add:
            check_flow(flow)
            self.flows[flow.key] = flow

    def lookup(
        self, table_id: int, in_port: int, frame: Frame, metadata: int = 0, registers: Mapping[str, int] | None = None
    ) -> FlowSpec | None:
        fields = {"in_port": in_port, "metadata": metadata, **dict.fromkeys(REGISTERS, 0), **(registers or {})}
        fields.update(vars(frame))
        matching = [flow for flow in self.flows.values() if flow.table_id == table_id and _matches(flow.match, fields)]
        return max(matching, key=lambda flow: flow.priority, default=None)

    def forward(self, in_port: int, frame: Frame) -> list[Delivery]:
        """The frames that leave, in order, for one frame entering on in_port."""
        deliveries: list[Delivery] = []
        table_id: int | None = 0
        metadata = 0
        registers: dict[str, int] = {}
        while table_id is not None:
            flow = self.lookup(table_id, in_port, frame, metadata, registers)
            table_id = None
            for action in flow.actions if flow else ():
                if isinstance(action, WriteMetadata):
                    continue  # an instruction: after the apply-actions
                if isinstance(action, GotoTable):
                    table_id = action.table_id
                else:
                    frame = self._act(action, in_port, frame, metadata, registers, deliveries)
            for action in flow.actions if flow else ():
                if isinstance(action, WriteMetadata):
                    metadata = action.value
        return deliveries

    def _act(
        self,
        action: Action,
        in_port: int,
        frame: Frame,
        metadata: int,
        registers: dict[str, int],
        out: list[Delivery],
        depth: int = 0,
    ) -> Frame:
        """One apply-action: the frame as it is after it; what it sends is added to out. A resubmit runs the
        other table's flow's apply-actions on the frame as it is, then comes back (OVS keeps its changes)."""
        if isinstance(action, SetField) and action.field in REGISTERS:
            registers[action.field] = int(action.value)
            return frame
        if isinstance(action, SetField):
            return replace(frame, **{action.field: action.value})
        if isinstance(action, Resubmit):
            if depth >= MAX_RESUBMIT_DEPTH:
                raise FlowRejected(f"resubmits nested deeper than {MAX_RESUBMIT_DEPTH}")
            flow = self.lookup(action.table_id, in_port, frame, metadata, registers)
            for inner in flow.actions if flow else ():
                if not isinstance(inner, (GotoTable, WriteMetadata)):
                    frame = self._act(inner, in_port, frame, metadata, registers, out, depth + 1)
            return frame
        if isinstance(action, OutputReg):
            port = registers.get(action.field, 0)
            if port != in_port:
                out.append(Delivery(port, frame))
            return frame
        if isinstance(action, Move):
            source = metadata if action.src == "metadata" else getattr(frame, action.src)
            low = (1 << action.n_bits) - 1
            bits = field_int(action.dst, getattr(frame, action.dst))
            bits = (bits & ~low) | (field_int(action.src, source) & low)
            return replace(frame, **{action.dst: field_value(action.dst, bits)})
        if isinstance(action, Output) and action.port != in_port:  # a plain output never goes back
            out.append(Delivery(action.port, frame))
        elif isinstance(action, InPort):  # OFPP_IN_PORT: the one way back out of in_port
            out.append(Delivery(in_port, frame))
        elif isinstance(action, ToController):
            self.packet_ins += 1
            out.append(Delivery(CONTROLLER, frame))
        elif isinstance(action, Normal):
            out.append(Delivery(NORMAL, frame))
        elif not isinstance(action, (Output, Meter)):  # a meter drops nothing offline
            raise FlowRejected(f"the offline table cannot run {action}")
        return frame


class FakeFabric:
    """One fake switch driven by a real NlbCore, with the controller loop closed."""

    def __init__(
        self, core: NlbCore, dpid: int, ports: list[int], table: FakeOFTable | None = None, down: Iterable[int] = ()
    ) -> None:
        """table: the flows a switch already holds (a controller restart); down: its ports that are down."""
        self.core = core
        self.dpid = dpid
        self.table = table or FakeOFTable()
        self.core.switch_connected(dpid, {port: port not in set(down) for port in ports})
        self.sent: list[Delivery] = []  # frames the controller sent out (packet-outs)
        self.notes: list[Note] = []  # what the controller logged
        self.now = 0.0  # the time the core is told; a test moves it on
        self.apply(self.core.flows_read_back(dpid, self.table.flows.values(), self.now))

    def send(self, in_port: int, frame: Frame) -> list[Delivery]:
        """Frames that leave the switch, on ports, for one frame entering on in_port."""
        out: list[Delivery] = []
        for delivery in self.table.forward(in_port, frame):
            if delivery.port == CONTROLLER:
                _, work = self.core.packet_in(self.dpid, in_port, delivery.frame.punted(), self.now)
                out += self.apply(work)
            else:
                out.append(delivery)
        return out

    def tick(self, seconds: float = 0.0) -> list[Delivery]:
        """Move the clock on, then run the core's periodic work; the frames it sends."""
        self.now += seconds
        return self.apply(self.core.tick(self.dpid, self.now))

    @property
    def packet_ins(self) -> int:
        """Frames the switch has sent the controller so far."""
        return self.table.packet_ins

    def apply(self, work: Work) -> list[Delivery]:
        self.table.apply(work.diff)
        self.notes += work.notes
        frames = [Delivery(frame_out.port, Frame.of(frame_out.frame)) for frame_out in work.frames]
        self.sent += frames
        return frames


Node = Union[int, str]  # in a FakeNetwork: an nlbflow switch's dpid, or a learning switch's name
Endpoint = tuple[Node, int]  # a port of a node
Received = dict[str, list[Frame]]  # host -> the frames that reached it, in order

HOP_LIMIT = 32  # more links than any path of a test topology crosses: a frame past it is circling
STEP_LIMIT = 100_000  # frames arriving anywhere for one event: past it, copies are multiplying in a loop


class FrameLoop(RuntimeError):
    """A frame circled (or multiplied) in the network: a loop that nothing stopped."""


class LearningSwitch:
    """A legacy learning bridge (a Linux bridge), and the NORMAL pipeline of each nlbflow switch.

    It learns a frame's source on the port it came in on, sends a frame for a learned MAC to that port only
    (never back where it came from), and floods broadcasts and unknown destinations to every other port
    that is up. `fdb` is its forwarding table (MAC -> port), as `bridge fdb show` lists it.
    """

    def __init__(self, ports: Iterable[int]) -> None:
        self.ports: dict[int, bool] = dict.fromkeys(ports, True)  # port -> up
        self.fdb: dict[str, int] = {}

    def forward(self, in_port: int | None, frame: Frame) -> list[int]:
        """The ports a frame leaves on. in_port None: the controller sent it (a packet-out to NORMAL), so
        there is no port to learn it on and none to leave out."""
        if in_port is not None and not is_multicast_mac(frame.eth_src):
            self.fdb[frame.eth_src] = in_port
        port = None if is_multicast_mac(frame.eth_dst) else self.fdb.get(frame.eth_dst)
        if port is not None:
            return [port] if port != in_port else []
        return sorted(port for port, up in self.ports.items() if up and port != in_port)

    def set_port(self, port: int, present: bool, up: bool) -> None:
        """A port gone or down forgets what was learned on it, as a Linux bridge flushes its fdb."""
        if present:
            self.ports[port] = up
        else:
            self.ports.pop(port, None)
        if not (present and up):
            self.fdb = {mac: learned for mac, learned in self.fdb.items() if learned != port}


@dataclass
class NetSwitch:
    """An nlbflow switch in a FakeNetwork: its flow table, its NORMAL pipeline (which also holds its ports)
    and the OVS names of its ports."""

    dpid: int
    table: FakeOFTable
    normal: LearningSwitch
    names: dict[int, str] = field(default_factory=dict)


class FakeNetwork:
    """Several nlbflow switches driven by one NlbCore, learning switches, and hosts and links on their ports.

    Every event (a host sending, the clock moving on, a port going down, a host moving) is followed through
    every switch and link until nothing is left to deliver: frames a switch punts go through the core, and
    what the core sends back (flow changes for any switch, packet-outs on any switch) is applied on the way.
    Hosts do nothing by themselves: an event returns what each host received, and a test answers for them.
    """

    def __init__(self, core: NlbCore) -> None:
        self.core = core
        self.switches: dict[int, NetSwitch] = {}
        self.learning: dict[str, LearningSwitch] = {}
        self.hosts: dict[str, Endpoint] = {}
        self.links: dict[Endpoint, Endpoint] = {}  # each link under both of its ends
        self.connected: set[int] = set()
        self.notes: list[Note] = []  # what the controller logged
        self.crossed: list[tuple[Endpoint, Endpoint, Frame]] = []  # frames on links during the last event
        self.now = 0.0  # the time the core is told; tick() moves it on
        self._at: dict[Endpoint, str] = {}  # endpoint -> the host attached there
        self._queue: deque[tuple[Node, int, Frame, int]] = deque()  # (node, in_port, frame, links crossed)
        self._received: Received = {}

    def add_switch(
        self, dpid: int, ports: Iterable[int], names: Mapping[int, str] | None = None, table: FakeOFTable | None = None
    ) -> NetSwitch:
        """An nlbflow switch, not yet connected; table: the flows it already holds (a controller restart)."""
        switch = NetSwitch(dpid, table or FakeOFTable(), LearningSwitch(ports), dict(names or {}))
        self.switches[dpid] = switch
        return switch

    def add_learning_switch(self, name: str, ports: Iterable[int]) -> LearningSwitch:
        self.learning[name] = LearningSwitch(ports)
        return self.learning[name]

    def attach(self, host: str, endpoint: Endpoint) -> None:
        self.hosts[host] = endpoint
        self._at[endpoint] = host

    def link(self, a: Endpoint, b: Endpoint) -> None:
        self.links[a], self.links[b] = b, a

    def connect(self, *dpids: int) -> Received:
        """These switches (every one when none is named) connect to the controller, which reads their flows
        back: the flows it then sends, and its probes, are delivered."""
        self._begin()
        for dpid in dpids or sorted(self.switches):
            switch = self.switches[dpid]
            self.core.switch_connected(dpid, dict(switch.normal.ports), switch.names)
            self.connected.add(dpid)
            self._apply(dpid, self.core.flows_read_back(dpid, switch.table.flows.values(), self.now), 0)
        return self._drain()

    def packet_ins(self) -> dict[int, int]:
        """dpid -> the frames each switch has sent toward the controller so far (also while disconnected,
        when they are lost)."""
        return {dpid: switch.table.packet_ins for dpid, switch in sorted(self.switches.items())}

    def disconnect(self, dpid: int) -> None:
        """The switch loses its controller; it keeps its flows (fail_mode=secure), and what it punts is lost."""
        self.core.switch_disconnected(dpid)
        self.connected.discard(dpid)

    def send(self, host: str, frame: Frame) -> Received:
        """A host sends a frame: what every host received, one list entry per copy."""
        self._begin()
        self._queue.append((*self.hosts[host], frame, 0))
        return self._drain()

    def tick(self, seconds: float = 0.0) -> Received:
        """Move the clock on, then run the core's periodic work on every connected switch."""
        self.now += seconds
        self._begin()
        for dpid in sorted(self.connected):
            self._apply(dpid, self.core.tick(dpid, self.now), 0)
        return self._drain()

    def set_port(self, endpoint: Endpoint, up: bool) -> Received:
        """One port goes down or up; on an nlbflow switch, the core is told."""
        self._begin()
        self._set(endpoint, present=True, up=up)
        return self._drain()

    def set_link(self, endpoint: Endpoint, up: bool) -> Received:
        """The link at this endpoint goes down or up: both of its ends."""
        self._begin()
        self._set(endpoint, present=True, up=up)
        self._set(self.links[endpoint], present=True, up=up)
        return self._drain()

    def move_host(self, host: str, to: Endpoint, old_port: str = "down") -> Received:
        """A host moves (a VM migration): its old port goes "down", or "gone" altogether, or stays "up" with
        nobody behind it; its new port appears (or comes up)."""
        self._begin()
        old = self.hosts[host]
        if old_port != "up":
            self._set(old, present=old_port != "gone", up=False)
        del self._at[old]
        self.attach(host, to)
        self._set(to, present=True, up=True)
        return self._drain()

    def set_fabric(self, fabric: Fabric) -> Received:
        """A changed fabric (switch names, uplinks), pushed by the core to every switch."""
        self._begin()
        for dpid, work in sorted(self.core.set_fabric(fabric, self.now).items()):
            self._apply(dpid, work, 0)
        return self._drain()

    def _begin(self) -> None:
        self.crossed = []
        self._received = {}

    def _drain(self) -> Received:
        steps = 0
        while self._queue:
            steps += 1
            if steps > STEP_LIMIT:
                self._queue.clear()
                raise FrameLoop(f"more than {STEP_LIMIT} frames arrived for one event: copies multiply in a loop")
            self._arrive(*self._queue.popleft())
        return self._received

    def _ports(self, node: Node) -> dict[int, bool]:
        return self.learning[node].ports if isinstance(node, str) else self.switches[node].normal.ports

    def _set(self, endpoint: Endpoint, present: bool, up: bool) -> None:
        node, port = endpoint
        if isinstance(node, str):
            self.learning[node].set_port(port, present, up)
            return
        switch = self.switches[node]
        switch.normal.set_port(port, present, up)
        if node in self.connected:
            self._apply(node, self.core.port_changed(node, port, present, up, self.now, switch.names.get(port)), 0)

    def _arrive(self, node: Node, in_port: int, frame: Frame, hops: int) -> None:
        """A frame enters a node: a learning switch forwards it, an nlbflow switch runs its flow table."""
        if not self._ports(node).get(in_port):  # a port that is down or gone receives nothing
            return
        if isinstance(node, str):
            for port in self.learning[node].forward(in_port, frame):
                self._emit(node, port, frame, hops)
            return
        switch = self.switches[node]
        for delivery in switch.table.forward(in_port, frame):
            if delivery.port == CONTROLLER and node not in self.connected:
                continue
            if delivery.port == CONTROLLER:
                _, work = self.core.packet_in(node, in_port, delivery.frame.punted(), self.now)
                self._apply(node, work, hops)
            elif delivery.port == NORMAL:
                for port in switch.normal.forward(in_port, delivery.frame):
                    self._emit(node, port, delivery.frame, hops)
            else:
                self._emit(node, delivery.port, delivery.frame, hops)

    def _emit(self, node: Node, port: int, frame: Frame, hops: int) -> None:
        """A frame leaves a node's port: to the host there, or over the link to the node at its other end."""
        if not self._ports(node).get(port):  # nothing leaves on a port that is down or gone
            return
        endpoint = (node, port)
        host = self._at.get(endpoint)
        if host is not None:
            self._received.setdefault(host, []).append(frame)
            return
        peer = self.links.get(endpoint)
        if peer is None:
            return
        if hops >= HOP_LIMIT:
            self._queue.clear()
            raise FrameLoop(f"{frame} crossed {HOP_LIMIT} links, the last from {endpoint} to {peer}: a loop")
        self.crossed.append((endpoint, peer, frame))
        self._queue.append((*peer, frame, hops + 1))

    def _apply(self, dpid: int, work: Work, hops: int) -> None:
        """The core's answer to an event on switch dpid: flow changes on it and on other switches first, then
        its packet-outs (in_port CONTROLLER unless the FrameOut names one, so they may leave on any port;
        NORMAL_PORT: the switch's NORMAL)."""
        self.switches[dpid].table.apply(work.diff)
        for other, diff in work.other_switches:
            self.switches[other].table.apply(diff)
        self.notes += work.notes
        for out in work.frames:
            target = dpid if out.dpid is None else out.dpid
            frame = Frame.of(out.frame)
            if out.port == NORMAL_PORT:  # in_port as the packet-out gives it: NORMAL never sends it back there
                for port in self.switches[target].normal.forward(out.in_port, frame):
                    self._emit(target, port, frame, hops)
            else:
                self._emit(target, out.port, frame, hops)
