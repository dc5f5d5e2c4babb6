"""The one thin layer between plain specs and OpenFlow 1.3 messages (as Faucet's valve_of.py).

Every builder takes the datapath only to reach its ofproto/parser, so tests build messages on a
stand-in datapath and serialise them without a switch.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass

from flows.arp import Frame, FrameOut
from flows.cookies import APP_COOKIE_MASK, APP_ID
from flows.core import Work
from flows.flowspec import (
    Action,
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
    Unrecognized,
    WriteMetadata,
    make_match,
)
from flows.frames import Refusal, arp_frame_bytes, is_nic_mac, nd_frame_bytes, punted_arp
from flows.meters import MeterDiff, MeterReading, MeterSpec
from flows.nd import NdFrame

ALL_COOKIE_BITS = 0xFFFF_FFFF_FFFF_FFFF
PURPOSE_COOKIE_MASK = 0xFF00  # flows/cookies.py: bits 15-8
ALL_METADATA_BITS = 0xFFFF_FFFF_FFFF_FFFF  # write-metadata always sets the whole 64 bits
RESUBMIT_IN_PORT = 0xFFF8  # Nicira resubmit: keep the frame's in_port (OpenFlow 1.0's OFPP_IN_PORT)
REGISTER_BITS = 32  # output:reg0 reads the whole register
OUTPUT_REG_MAX_LEN = 0xFFFF  # what ovs-ofctl gives `output:NXM_NX_REG0[]`: only matters for the controller
NXM_SUFFIX = "_nxm"  # the frameworks name a Nicira header of an OpenFlow field (NXM_OF_ARP_SPA) arp_spa_nxm


def _actions(datapath, actions: Iterable[Action]) -> list:
    ofp, parser = datapath.ofproto, datapath.ofproto_parser
    built = []
    for action in actions:
        if isinstance(action, Output):
            built.append(parser.OFPActionOutput(action.port))
        elif isinstance(action, ToController):
            built.append(parser.OFPActionOutput(ofp.OFPP_CONTROLLER, ofp.OFPCML_NO_BUFFER))
        elif isinstance(action, Normal):
            built.append(parser.OFPActionOutput(ofp.OFPP_NORMAL))
        elif isinstance(action, SetField):
            built.append(parser.OFPActionSetField(**{action.field: action.value}))
        elif isinstance(action, Move):
            built.append(parser.NXActionRegMove(src_field=action.src, dst_field=action.dst, n_bits=action.n_bits))
        elif isinstance(action, InPort):
            built.append(parser.OFPActionOutput(ofp.OFPP_IN_PORT))
        elif isinstance(action, Resubmit):
            built.append(parser.NXActionResubmitTable(in_port=RESUBMIT_IN_PORT, table_id=action.table_id))
        elif isinstance(action, OutputReg):
            whole = _whole_register()
            built.append(parser.NXActionOutputReg(ofs_nbits=whole, src=action.field, max_len=OUTPUT_REG_MAX_LEN))
        else:
            raise ValueError(f"the app never installs {action!r}")
    return built


def _whole_register() -> int:
    """Nicira's ofs_nbits for bits 0..31 of a register: (start << 6) | (n_bits - 1)."""
    return REGISTER_BITS - 1


INSTRUCTION_KINDS = (GotoTable, Meter, WriteMetadata)


def _instructions(datapath, actions: Iterable[Action]) -> list:
    """The meter (kept first in a spec), apply-actions for what the flow does here, write-metadata, then
    goto-table (the two kept last, in that order) if it goes on."""
    ofp, parser = datapath.ofproto, datapath.ofproto_parser
    actions = tuple(actions)
    applied = [action for action in actions if not isinstance(action, INSTRUCTION_KINDS)]
    instructions = [parser.OFPInstructionMeter(a.meter_id, ofp.OFPIT_METER) for a in actions if isinstance(a, Meter)]
    if applied:
        instructions.append(parser.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS, _actions(datapath, applied)))
    instructions += [
        parser.OFPInstructionWriteMetadata(a.value, ALL_METADATA_BITS) for a in actions if isinstance(a, WriteMetadata)
    ]
    instructions += [parser.OFPInstructionGotoTable(a.table_id) for a in actions if isinstance(a, GotoTable)]
    return instructions


def flow_add(datapath, flow: FlowSpec):
    ofp, parser = datapath.ofproto, datapath.ofproto_parser
    instructions = _instructions(datapath, flow.actions)
    return parser.OFPFlowMod(
        datapath,
        cookie=flow.cookie,
        table_id=flow.table_id,
        command=ofp.OFPFC_ADD,
        priority=flow.priority,
        buffer_id=ofp.OFP_NO_BUFFER,
        match=parser.OFPMatch(**dict(flow.match)),
        instructions=instructions,
    )


def flow_delete(datapath, flow: FlowSpec):
    """Strict delete with the full cookie as mask: removes this flow and never another app's."""
    ofp, parser = datapath.ofproto, datapath.ofproto_parser
    return parser.OFPFlowMod(
        datapath,
        cookie=flow.cookie,
        cookie_mask=ALL_COOKIE_BITS,
        table_id=flow.table_id,
        command=ofp.OFPFC_DELETE_STRICT,
        priority=flow.priority,
        out_port=ofp.OFPP_ANY,
        out_group=ofp.OFPG_ANY,
        match=parser.OFPMatch(**dict(flow.match)),
    )


def flow_stats_request(datapath, app_only: bool = True):
    """Flow-stats for the app's cookie (the read-back reconciliation starts from), or for every flow
    (the audit counts other apps' flows)."""
    ofp, parser = datapath.ofproto, datapath.ofproto_parser
    return parser.OFPFlowStatsRequest(
        datapath,
        table_id=ofp.OFPTT_ALL,
        out_port=ofp.OFPP_ANY,
        out_group=ofp.OFPG_ANY,
        cookie=APP_ID << 48 if app_only else 0,
        cookie_mask=APP_COOKIE_MASK if app_only else 0,
        match=parser.OFPMatch(),
    )


def purpose_stats_request(datapath, purpose: int):
    """Flow-stats for the app's flows of one purpose (the cookie's purpose bits), wherever they are."""
    ofp, parser = datapath.ofproto, datapath.ofproto_parser
    return parser.OFPFlowStatsRequest(
        datapath,
        table_id=ofp.OFPTT_ALL,
        out_port=ofp.OFPP_ANY,
        out_group=ofp.OFPG_ANY,
        cookie=APP_ID << 48 | purpose << 8,
        cookie_mask=APP_COOKIE_MASK | PURPOSE_COOKIE_MASK,
        match=parser.OFPMatch(),
    )


def barrier_request(datapath):
    return datapath.ofproto_parser.OFPBarrierRequest(datapath)


def port_desc_request(datapath):
    return datapath.ofproto_parser.OFPPortDescStatsRequest(datapath, 0)


def port_is_up(datapath, port) -> bool:
    """Up means the link is up and the port is not administratively down (ip link set ... down on a veth
    shows as both)."""
    ofp = datapath.ofproto
    return not (port.state & ofp.OFPPS_LINK_DOWN or port.config & ofp.OFPPC_PORT_DOWN)


def port_name(port) -> str:
    """A port's name as OVS gives it (the frameworks hand it over as bytes, NUL-padded or not)."""
    name = port.name
    return (name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name)).rstrip("\x00")


def _normal_value(value: object) -> object:
    """Addresses in lower case, a masked value (value, mask) too."""
    if isinstance(value, str):
        return value.lower()
    if isinstance(value, tuple):
        return tuple(_normal_value(part) for part in value)
    return value


def _field_name(name: str) -> str:
    """An OpenFlow field by its OXM name, whichever header (OXM or Nicira's) the switch gave it."""
    return name.removesuffix(NXM_SUFFIX)


def spec_from_stats(datapath, stats) -> FlowSpec:
    """A flow read back from the switch, in the same form the app computes, so the two compare."""
    ofp, parser = datapath.ofproto, datapath.ofproto_parser
    meters: list[Action] = []
    actions: list[Action] = []
    metadata: list[Action] = []
    goto: list[Action] = []
    for instruction in stats.instructions:
        if instruction.type == ofp.OFPIT_APPLY_ACTIONS:
            actions += [_action_from_ofp(ofp, parser, action) for action in instruction.actions]
        elif instruction.type == ofp.OFPIT_GOTO_TABLE:
            goto.append(GotoTable(instruction.table_id))
        elif instruction.type == ofp.OFPIT_METER:
            meters.append(Meter(instruction.meter_id))
        elif instruction.type == ofp.OFPIT_WRITE_METADATA and instruction.metadata_mask == ALL_METADATA_BITS:
            metadata.append(WriteMetadata(instruction.metadata))
        else:
            actions.append(Unrecognized(repr(instruction)))
    return FlowSpec(
        priority=stats.priority,
        cookie=stats.cookie,
        match=make_match(**{_field_name(name): _normal_value(value) for name, value in stats.match.items()}),
        actions=tuple(meters + actions + metadata + goto),
        table_id=stats.table_id,
    )


def _action_from_ofp(ofp, parser, action) -> Action:
    if action.type == ofp.OFPAT_OUTPUT:
        if action.port == ofp.OFPP_CONTROLLER and action.max_len == ofp.OFPCML_NO_BUFFER:
            return ToController()
        if action.port == ofp.OFPP_NORMAL:
            return Normal()
        if action.port == ofp.OFPP_IN_PORT:
            return InPort()
        if action.port < ofp.OFPP_MAX:
            return Output(action.port)
    elif action.type == ofp.OFPAT_SET_FIELD:
        return SetField(_field_name(action.key), _normal_value(action.value))
    elif action.type == ofp.OFPAT_EXPERIMENTER:
        return _nicira_action_from_ofp(parser, action)
    return Unrecognized(repr(action))


def _nicira_action_from_ofp(parser, action) -> Action:
    """The Nicira actions the app installs, exactly as it installs them (a move from bit 0 to bit 0, a
    resubmit keeping in_port, an output to a whole register); any other reads back unrecognised."""
    if isinstance(action, parser.NXActionRegMove) and action.src_ofs == 0 and action.dst_ofs == 0:
        return Move(_field_name(action.src_field), _field_name(action.dst_field), action.n_bits)
    if isinstance(action, parser.NXActionResubmitTable) and action.in_port == RESUBMIT_IN_PORT:
        return Resubmit(action.table_id)
    whole_register = isinstance(action, parser.NXActionOutputReg) and action.ofs_nbits == _whole_register()
    if whole_register and action.max_len == OUTPUT_REG_MAX_LEN:
        return OutputReg(_field_name(action.src))
    return Unrecognized(repr(action))


# --- meters (flows/meters.py) ------------------------------------------------------------------------


def meter_mod(datapath, command: int, meter: MeterSpec):
    """A packet-rate meter with one drop band; the burst flag makes the bucket size the one given."""
    ofp, parser = datapath.ofproto, datapath.ofproto_parser
    flags = ofp.OFPMF_PKTPS | ofp.OFPMF_BURST | ofp.OFPMF_STATS
    band = parser.OFPMeterBandDrop(rate=meter.rate, burst_size=meter.burst)
    return parser.OFPMeterMod(datapath, command=command, flags=flags, meter_id=meter.meter_id, bands=[band])


def meter_delete(datapath, meter_id: int):
    ofp, parser = datapath.ofproto, datapath.ofproto_parser
    return parser.OFPMeterMod(datapath, command=ofp.OFPMC_DELETE, flags=0, meter_id=meter_id, bands=[])


def meter_messages(datapath, diff: MeterDiff) -> list:
    """Adds, modifies and deletes for a meter diff, then a barrier (a flow may use a meter only once the
    switch has it)."""
    ofp = datapath.ofproto
    messages = [meter_mod(datapath, ofp.OFPMC_ADD, meter) for meter in diff.to_add]
    messages += [meter_mod(datapath, ofp.OFPMC_MODIFY, meter) for meter in diff.to_modify]
    messages += [meter_delete(datapath, meter.meter_id) for meter in diff.to_delete]
    return [*messages, barrier_request(datapath)] if messages else []


def meter_config_request(datapath):
    ofp, parser = datapath.ofproto, datapath.ofproto_parser
    return parser.OFPMeterConfigStatsRequest(datapath, 0, ofp.OFPM_ALL)


def meter_stats_request(datapath):
    ofp, parser = datapath.ofproto, datapath.ofproto_parser
    return parser.OFPMeterStatsRequest(datapath, 0, ofp.OFPM_ALL)


def meter_from_config(datapath, config) -> MeterSpec:
    """A meter read back, in the form the app computes. One the app never installs (a bit rate, another
    kind of band, several bands) reads as rate 0, which no expected meter has: it is replaced."""
    ofp = datapath.ofproto
    bands = config.bands
    if not config.flags & ofp.OFPMF_PKTPS or len(bands) != 1 or bands[0].type != ofp.OFPMBT_DROP:
        return MeterSpec(config.meter_id, rate=0, burst=0)
    burst = bands[0].burst_size if config.flags & ofp.OFPMF_BURST else 0
    return MeterSpec(config.meter_id, bands[0].rate, burst)


def meter_reading(stats) -> MeterReading:
    """Packets that reached the meter, and those its drop band dropped."""
    dropped = sum(band.packet_band_count for band in stats.band_stats)
    return MeterReading(stats.meter_id, stats.packet_in_count, dropped)


def arp_bytes(frame: Frame) -> bytes:
    """The frame's bytes from a template (flows/frames.py): the framework's packet library would take most
    of an answer's time (docs/performance.md, The packet path). ND messages too (flows/nd.py).

    A frame whose Ethernet source or sender MAC (an ND message's link-layer address) is no NIC's (multicast,
    zero) is never sent: the parser refuses such input, so one here is a bug, and it fails loudly rather
    than reach a host's cache.
    """
    sender = (frame.lla or frame.eth_src) if isinstance(frame, NdFrame) else frame.sha
    if not (is_nic_mac(frame.eth_src) and is_nic_mac(sender)):
        raise ValueError(f"the app never sends from a multicast or zero MAC: {frame!r}")
    return nd_frame_bytes(frame) if isinstance(frame, NdFrame) else arp_frame_bytes(frame)


def arp_frame(data: bytes) -> Frame | Refusal:
    """The ARP or ND fields of a punted frame, or why it is refused (flows/frames.py).

    Never the framework's generic packet parser: some of its dissectors loop forever or raise.
    """
    return punted_arp(data)


PACKET_OUT_BODY = struct.Struct("!IIH6x")  # buffer_id, in_port, actions_len, padding: after the OpenFlow header
ACTION_OUTPUT = struct.Struct("!HHIH6x")  # type, length, port, max_len, padding
OFP_HEADER = struct.Struct("!BBHI")  # version, type, length, xid


@dataclass
class PacketOut:
    """A packet-out packed from a template: the bytes the framework's OFPPacketOut serialises to for the
    same frame and ports (tests/unit/test_ofmsgs.py compares them), at a small part of its cost, since the
    app sends one per answer. It has what the connection's sender uses of a framework message: set_xid(),
    serialize() and buf."""

    version: int
    msg_type: int
    body: bytes  # everything after the OpenFlow header: packet-out fields, actions, frame
    ports: tuple[int, ...]
    xid: int | None = None
    buf: bytes = b""

    def set_xid(self, xid: int) -> None:
        self.xid = xid

    def serialize(self) -> None:
        self.buf = OFP_HEADER.pack(self.version, self.msg_type, OFP_HEADER.size + len(self.body), self.xid) + self.body


def packet_out(datapath, ports: Iterable[int], data: bytes, in_port: int | None = None) -> PacketOut:
    """A frame leaving through `ports`; in_port CONTROLLER (None) lets it leave through the port its request
    came in on, a port given is one NORMAL never sends it back to (a frame from an uplink). The output
    actions carry the framework's default max_len, as OFPActionOutput(port) does."""
    ofp = datapath.ofproto
    ports = tuple(ports)
    actions = b"".join(ACTION_OUTPUT.pack(ofp.OFPAT_OUTPUT, ACTION_OUTPUT.size, port, ofp.OFPCML_MAX) for port in ports)
    source = ofp.OFPP_CONTROLLER if in_port is None else in_port
    body = PACKET_OUT_BODY.pack(ofp.OFP_NO_BUFFER, source, len(actions)) + actions + data
    return PacketOut(ofp.OFP_VERSION, ofp.OFPT_PACKET_OUT, body, ports)


def packet_outs(datapath, frames: Iterable[FrameOut]) -> list[PacketOut]:
    """One packet-out per distinct frame and in_port, with an output per port."""
    ports_by_frame: dict[tuple[Frame, int | None], list[int]] = {}
    for frame_out in frames:
        ports_by_frame.setdefault((frame_out.frame, frame_out.in_port), []).append(frame_out.port)
    return [
        packet_out(datapath, ports, arp_bytes(frame), in_port) for (frame, in_port), ports in ports_by_frame.items()
    ]


def work_messages(datapath, work: Work) -> list:
    """Flow changes, a barrier, then frames: an answer never overtakes the flow its traffic needs."""
    messages = [flow_add(datapath, flow) for flow in work.diff.to_add]
    messages += [flow_delete(datapath, flow) for flow in work.diff.to_delete]
    if messages:
        messages.append(barrier_request(datapath))
    return messages + packet_outs(datapath, work.frames)
