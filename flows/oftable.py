"""An offline OpenFlow table and fabric, in the spirit of Faucet's FakeOFTable.

FakeOFTable applies the app's flow changes the way a switch does (one flow per key, highest
priority wins) and answers "this frame, from this port: where does it leave, and how?".
FakeFabric adds the controller: frames sent to it go through NlbCore.packet_in, and what the
core sends back is delivered, so a test can follow ARP -> answer -> rewrite flow -> delivery.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from flows.arp import ArpFrame
from flows.core import NlbCore, Work
from flows.flowspec import ETH_TYPE_ARP, FlowDiff, FlowSpec, GotoTable, Normal, Output, SetField, ToController
from flows.locations import Note

ETH_TYPE_IPV4 = 0x0800


@dataclass(frozen=True)
class Frame:
    """The header fields a flow can match or set; ARP fields are None for other frames."""

    eth_src: str
    eth_dst: str
    eth_type: int = ETH_TYPE_IPV4
    arp_op: int | None = None
    arp_sha: str | None = None
    arp_spa: str | None = None
    arp_tha: str | None = None
    arp_tpa: str | None = None

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


class FakeOFTable:
    def __init__(self) -> None:
        self.flows: dict[tuple, FlowSpec] = {}

    def apply(self, diff: FlowDiff) -> None:
        for flow in diff.to_delete:
            if self.flows.get(flow.key) == flow:
                del self.flows[flow.key]
        for flow in diff.to_add:
            self.flows[flow.key] = flow

    def lookup(self, table_id: int, in_port: int, frame: Frame) -> FlowSpec | None:
        fields = {"in_port": in_port, **vars(frame)}
        matching = [
            flow
            for flow in self.flows.values()
            if flow.table_id == table_id and all(fields.get(k) == v for k, v in flow.match)
        ]
        return max(matching, key=lambda flow: flow.priority, default=None)

    def forward(self, in_port: int, frame: Frame) -> list[Delivery]:
        """Run the pipeline from table 0; a table miss drops, as fail_mode=secure does."""
        deliveries: list[Delivery] = []
        table_id: int | None = 0
        while table_id is not None:
            flow = self.lookup(table_id, in_port, frame)
            table_id = None
            for action in flow.actions if flow else ():
                if isinstance(action, SetField):
                    frame = replace(frame, **{action.field: action.value})
                elif isinstance(action, Output) and action.port != in_port:  # never back out of in_port
                    deliveries.append(Delivery(action.port, frame))
                elif isinstance(action, ToController):
                    deliveries.append(Delivery(CONTROLLER, frame))
                elif isinstance(action, Normal):
                    deliveries.append(Delivery(NORMAL, frame))
                elif isinstance(action, GotoTable):
                    table_id = action.table_id
        return deliveries


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
                _, work = self.core.packet_in(self.dpid, in_port, delivery.frame.to_arp(), self.now)
                out += self.apply(work)
            else:
                out.append(delivery)
        return out

    def tick(self, seconds: float = 0.0) -> list[Delivery]:
        """Move the clock on, then run the core's periodic work; the frames it sends."""
        self.now += seconds
        return self.apply(self.core.tick(self.dpid, self.now))

    def apply(self, work: Work) -> list[Delivery]:
        self.table.apply(work.diff)
        self.notes += work.notes
        frames = [Delivery(frame_out.port, Frame.from_arp(frame_out.frame)) for frame_out in work.frames]
        self.sent += frames
        return frames
