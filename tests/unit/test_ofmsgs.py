"""The OpenFlow layer under the installed framework (os-ken or Ryu): messages serialise, flows read
back equal the specs they came from, and the ARP frames the app builds are right field by field
according to an independent parser (scapy)."""

from __future__ import annotations

from dataclasses import dataclass, replace

import pytest
from scapy.layers.l2 import ARP, Ether
from scapy.packet import Padding

from flows.addresses import PROBE_MAC
from flows.arp import ARP_REPLY, ARP_REQUEST, ArpFrame, FrameOut, probe_frame, proxy_reply
from flows.audit import ReadBackFlow, audit_switch
from flows.core import NlbCore, Work
from flows.flowspec import (
    EMPTY_DIFF,
    FlowDiff,
    FlowSpec,
    InPort,
    Move,
    OutputReg,
    Resubmit,
    Unrecognized,
    WriteMetadata,
    expected_flows,
    punt_out_flow,
)
from flows.frames import Refusal
from flows.model import ArpMode, Cluster, ClusterMode, Config, Member, Registry, Settings
from flows.responder import MULTICAST_BIT
from ryu_apps import ofmsgs
from ryu_apps.compat import arp, ethernet, ofproto_v1_3, ofproto_v1_3_parser, packet
from tests.unit import framekit
from tests.unit.example_cluster import BROADCAST, CM, DM, ZERO_MAC, located_ports, reply, request, web_cluster

A, B = "10.0.0.11", "10.0.0.12"


@dataclass
class StandInDatapath:
    """Just what message builders read: the protocol modules. No switch, no socket."""

    id: int = 1
    ofproto = ofproto_v1_3
    ofproto_parser = ofproto_v1_3_parser


DP = StandInDatapath()


def wire(message) -> bytes:
    message.set_xid(7)
    message.serialize()
    return bytes(message.buf)


def located_flows():
    return expected_flows(Registry(clusters=(web_cluster(),)), Settings(), located_ports(), switch_ports=(1, 2, 3, 4))


@pytest.mark.parametrize("flow", located_flows(), ids=lambda flow: f"priority{flow.priority}-{flow.match}")
def test_a_flow_mod_on_the_wire_reads_back_as_the_spec_it_was_built_from(flow):
    data = wire(ofmsgs.flow_add(DP, flow))
    version, msg_type, msg_len, xid = ofproto_v1_3_parser.ofproto_parser.header(data)
    parsed = ofproto_v1_3_parser.ofproto_parser.msg(DP, version, msg_type, msg_len, xid, data)
    assert parsed.command == ofproto_v1_3.OFPFC_ADD
    assert ofmsgs.spec_from_stats(DP, parsed) == flow


def read_back(message):
    """A flow-mod on the wire, parsed by the framework's own parser as a flow-stats entry would be."""
    data = wire(message)
    return ofproto_v1_3_parser.ofproto_parser.msg(DP, *ofproto_v1_3_parser.ofproto_parser.header(data), data)


UPLINK = 6
MEDIA_CM = "03:bf:0a:00:02:64"


def switch_mode_registry() -> Registry:
    """A switch-mode cluster next to a multicast-mode one (which has no switch-mode flows)."""
    media = Cluster(
        name="media",
        cluster_ip="10.0.2.100",
        cluster_mac=MEDIA_CM,
        mode=ClusterMode.MULTICAST,
        arp=ArpMode.SWITCH,
        members=(Member(ip="10.0.2.11", dedicated_mac="02:de:0a:00:02:0b", own_mac="52:54:00:00:02:0b"),),
    )
    return Registry(clusters=(web_cluster(ArpMode.SWITCH), media))


def switch_mode_flows() -> list[FlowSpec]:
    """The registry's flows with two web members here (one on a port that is down), one behind the uplink:
    every kind of flow the app installs, switch mode included."""
    ports = {("web", A): 1, ("web", B): 2, ("media", "10.0.2.11"): 3}
    return expected_flows(
        switch_mode_registry(),
        Settings(),
        ports,
        down_ports=frozenset({2}),
        switch_ports=(1, 2, 3, 4, 5, UPLINK),
        uplinks=frozenset({UPLINK}),
        elsewhere={("web", "10.0.0.13")},
    )


def test_the_switch_mode_flows_use_every_action_and_match_the_app_installs():
    flows = switch_mode_flows()
    kinds = {type(action) for flow in flows for action in flow.actions}
    assert {Move, InPort, WriteMetadata, Resubmit, OutputReg} <= kinds
    values = {value for flow in flows for _, value in flow.match}
    assert MULTICAST_BIT in values
    assert any(name == "metadata" and isinstance(value, int) for flow in flows for name, value in flow.match)


@pytest.mark.parametrize("flow", switch_mode_flows(), ids=lambda flow: f"table{flow.table_id}-{flow.cookie:#x}")
def test_a_switch_mode_flow_mod_on_the_wire_reads_back_as_the_spec_it_was_built_from(flow):
    parsed = read_back(ofmsgs.flow_add(DP, flow))
    assert parsed.command == ofproto_v1_3.OFPFC_ADD
    assert ofmsgs.spec_from_stats(DP, parsed) == flow


def test_the_audit_of_switch_mode_flows_read_back_finds_none_missing_or_unexpected_and_names_their_claims():
    expected = switch_mode_flows()
    read = [ReadBackFlow(ofmsgs.spec_from_stats(DP, read_back(ofmsgs.flow_add(DP, flow))), 0, 0) for flow in expected]
    audit = audit_switch(switch_mode_registry(), expected, read)
    assert (audit["missing"], audit["unexpected"]) == ([], [])
    assert all(entry["claims"] for entry in audit["flows"])
    purposes = {entry["purpose"] for entry in audit["flows"]}
    assert {"arp_sender", "arp_answer", "arp_spread", "arp_flood"} <= purposes


def switch_flow(table_id: int, kind: type) -> FlowSpec:
    return next(
        f for f in switch_mode_flows() if f.table_id == table_id and any(isinstance(a, kind) for a in f.actions)
    )


def test_the_instructions_are_meter_apply_actions_write_metadata_then_goto():
    sender = switch_flow(1, WriteMetadata)
    instructions = ofmsgs.flow_add(DP, sender).instructions
    assert [type(i).__name__ for i in instructions] == ["OFPInstructionWriteMetadata", "OFPInstructionGotoTable"]
    assert (instructions[0].metadata, instructions[0].metadata_mask) == (sender.actions[0].value, 2**64 - 1)


def test_a_masked_eth_dst_installs_as_a_masked_match_and_reads_back_in_lower_case():
    broadcast = next(f for f in switch_mode_flows() if ("eth_dst", MULTICAST_BIT) in f.match)
    parsed = read_back(ofmsgs.flow_add(DP, broadcast))
    assert parsed.match["eth_dst"] == MULTICAST_BIT
    upper = replace(
        broadcast,
        match=tuple(
            (n, ("0F:AB:00:00:00:00", "FF:FF:00:00:00:00") if n == "eth_dst" else v) for n, v in broadcast.match
        ),
    )
    assert dict(ofmsgs.spec_from_stats(DP, read_back(ofmsgs.flow_add(DP, upper))).match)["eth_dst"] == (
        "0f:ab:00:00:00:00",
        "ff:ff:00:00:00:00",
    )


def with_apply_action(flow: FlowSpec, index: int, action) -> object:
    """The flow-mod of a flow with one of its applied actions replaced by a framework action."""
    message = ofmsgs.flow_add(DP, flow)
    applied = next(i for i in message.instructions if i.type == ofproto_v1_3.OFPIT_APPLY_ACTIONS)
    applied.actions[index] = action
    return message


def test_a_move_the_app_never_installs_reads_back_unrecognized():
    answer = switch_flow(4, Move)
    parser = ofproto_v1_3_parser
    for other in (
        parser.NXActionRegMove(src_field="arp_spa", dst_field="arp_tpa", n_bits=16, src_ofs=16, dst_ofs=0),
        parser.NXActionRegMove(src_field="arp_spa", dst_field="arp_tpa", n_bits=16, src_ofs=0, dst_ofs=16),
    ):
        actions = ofmsgs.spec_from_stats(DP, read_back(with_apply_action(answer, 0, other))).actions
        assert isinstance(actions[0], Unrecognized)
        assert actions[1:] == answer.actions[1:]


def test_a_resubmit_or_register_output_the_app_never_installs_reads_back_unrecognized():
    parser = ofproto_v1_3_parser
    flood, egress = (f for f in switch_mode_flows() if f.table_id in (6, 7) and f.cookie & 0xFF00 == 14 << 8)
    resubmit = parser.NXActionResubmitTable(in_port=1, table_id=7)
    assert isinstance(
        ofmsgs.spec_from_stats(DP, read_back(with_apply_action(flood, 1, resubmit))).actions[1], Unrecognized
    )
    partial = parser.NXActionOutputReg(ofs_nbits=15, src="reg0", max_len=0xFFFF)
    assert ofmsgs.spec_from_stats(DP, read_back(with_apply_action(egress, 0, partial))).actions == (
        Unrecognized(repr(partial)),
    )


def test_a_partial_metadata_write_reads_back_unrecognized():
    sender = switch_flow(1, WriteMetadata)
    message = ofmsgs.flow_add(DP, sender)
    message.instructions[0] = ofproto_v1_3_parser.OFPInstructionWriteMetadata(sender.actions[0].value, 0xFFFF_FFFF_FFFF)
    (unrecognized, goto) = ofmsgs.spec_from_stats(DP, read_back(message)).actions
    assert isinstance(unrecognized, Unrecognized) and goto == sender.actions[-1]


def test_in_port_goes_back_out_of_the_port_the_request_came_in_on():
    answer = switch_flow(4, InPort)
    output = ofmsgs.flow_add(DP, answer).instructions[0].actions[-1]
    assert output.port == ofproto_v1_3.OFPP_IN_PORT


def test_a_strict_delete_names_the_flows_full_cookie_so_it_never_removes_another_apps_flow():
    flow = located_flows()[1]
    data = wire(ofmsgs.flow_delete(DP, flow))
    parsed = ofproto_v1_3_parser.ofproto_parser.msg(DP, *ofproto_v1_3_parser.ofproto_parser.header(data), data)
    assert parsed.command == ofproto_v1_3.OFPFC_DELETE_STRICT
    assert (parsed.cookie, parsed.cookie_mask, parsed.priority) == (flow.cookie, 2**64 - 1, flow.priority)


def test_the_punt_flow_sends_whole_frames_to_the_controller():
    action = ofmsgs.flow_add(DP, punt_out_flow()).instructions[1].actions[0]
    assert (action.port, action.max_len) == (ofproto_v1_3.OFPP_CONTROLLER, ofproto_v1_3.OFPCML_NO_BUFFER)


def scapy_fields(frame: ArpFrame) -> tuple:
    """The frame's bytes read by scapy, an independent parser: every header field is checked, the frame is
    60 bytes (the 42 of Ethernet/ARP and 18 of zero padding); the addresses and opcode are returned."""
    data = ofmsgs.arp_bytes(frame)
    parsed = Ether(data)
    arp = parsed[ARP]
    assert len(data) == 60
    assert (parsed.type, arp.hwtype, arp.ptype, arp.hwlen, arp.plen) == (0x0806, 1, 0x0800, 6, 4)
    assert bytes(arp.payload) == bytes(18) and isinstance(arp.payload, Padding)
    return (parsed.src, parsed.dst, arp.op, arp.hwsrc, arp.psrc, arp.hwdst, arp.pdst)


def sent_frames(arp: ArpMode, in_port: int, frame: ArpFrame) -> dict[int, ArpFrame]:
    """What the core sends, by port, for one punted frame, with every member located on its port."""
    core = NlbCore(Config(registry=Registry(clusters=(web_cluster(arp, pinned=True),))))
    core.switch_connected(1, dict.fromkeys((1, 2, 3, 4, 5), True))
    core.flows_read_back(1, [], 0.0)
    _, work = core.packet_in(1, in_port, frame, 0.0)
    return {out.port: out.frame for out in work.frames}


def test_proxy_reply_on_the_wire_matches_method_md_field_by_field():
    (answer,) = sent_frames(ArpMode.PROXY, 1, request(A, B)).values()
    assert scapy_fields(answer) == (DM[B], CM, ARP_REPLY, DM[B], B, CM, A)


def test_relayed_request_on_the_wire_carries_the_senders_dedicated_mac_field_by_field():
    relayed = sent_frames(ArpMode.RELAY, 1, request(A, B))
    assert list(relayed) == [2]
    assert scapy_fields(relayed[2]) == (DM[A], BROADCAST, ARP_REQUEST, DM[A], A, ZERO_MAC, B)


def test_revised_relay_reply_on_the_wire_matches_method_md_field_by_field():
    revised = sent_frames(ArpMode.RELAY, 2, reply(B, A, tha=DM[A], eth_dst=DM[A]))
    assert list(revised) == [1]
    assert scapy_fields(revised[1]) == (DM[B], CM, ARP_REPLY, DM[B], B, CM, A)


def test_a_forwarded_broadcast_reaches_peers_with_the_revised_sha_and_others_unchanged_field_by_field():
    forwarded = sent_frames(ArpMode.PROXY, 1, request(A, A))  # a gratuitous ARP
    assert sorted(forwarded) == [2, 3, 4, 5]
    for peer in (2, 3):
        assert scapy_fields(forwarded[peer]) == (DM[A], BROADCAST, ARP_REQUEST, DM[A], A, ZERO_MAC, A)
    for outsider in (4, 5):
        assert scapy_fields(forwarded[outsider]) == (CM, BROADCAST, ARP_REQUEST, CM, A, ZERO_MAC, A)


def test_probe_on_the_wire_is_an_rfc5227_probe_from_the_apps_own_mac():
    frame = probe_frame(B)
    assert scapy_fields(frame) == (
        PROBE_MAC,
        "ff:ff:ff:ff:ff:ff",
        ARP_REQUEST,
        PROBE_MAC,
        "0.0.0.0",
        "00:00:00:00:00:00",
        B,
    )


@pytest.mark.parametrize(
    "frame",
    [
        proxy_reply(web_cluster(), web_cluster().member_for_ip(B), request(A, B)),
        request(A, B, sha=DM[A], eth_src=DM[A]),
        reply(B, A, tha=CM, eth_dst=CM, sha=DM[B], eth_src=DM[B]),
        probe_frame(B),
        request("0.0.0.0", A, eth_dst="02:00:00:00:00:99"),
    ],
    ids=["proxy-reply", "relayed-request", "revised-reply", "probe", "unicast-probe-of-a-dad"],
)
def test_the_template_builds_the_frameworks_own_frame_byte_for_byte(frame):
    assert ofmsgs.arp_bytes(frame) == framework_frame(frame)


def framework_frame(frame: ArpFrame) -> bytes:
    """The frame as the framework's generic packet library serialises it (it pads to 60 bytes too)."""
    pkt = packet.Packet()
    pkt.add_protocol(ethernet.ethernet(dst=frame.eth_dst, src=frame.eth_src, ethertype=0x0806))
    pkt.add_protocol(arp.arp(opcode=frame.op, src_mac=frame.sha, src_ip=frame.spa, dst_mac=frame.tha, dst_ip=frame.tpa))
    pkt.serialize()
    return bytes(pkt.data)


@pytest.mark.parametrize(
    ("field", "value"),
    [("eth_dst", "02:DE:0A:00:00:0B"), ("tha", "2:de:a:0:0:b"), ("spa", "10.0.0"), ("tpa", "10.0.0.256")],
)
def test_an_address_not_in_canonical_form_is_a_bug_that_fails_loudly(field, value):
    frame = replace(proxy_reply(web_cluster(), web_cluster().member_for_ip(B), request(A, B)), **{field: value})
    with pytest.raises(ValueError, match=r"not a MAC in canonical form|not an IPv4 address in dotted form"):
        ofmsgs.arp_bytes(frame)


def test_a_frame_scapy_builds_is_parsed_back_to_the_same_fields():
    raw = bytes(Ether(src=CM, dst=DM[B]) / ARP(op=1, hwsrc=CM, psrc=A, hwdst="00:00:00:00:00:00", pdst=B))
    assert ofmsgs.arp_frame(raw) == request(A, B, eth_dst=DM[B])


def test_a_frame_that_is_not_arp_is_not_taken_for_one():
    assert ofmsgs.arp_frame(bytes(Ether(src=CM, dst=DM[B], type=0x0800) / (b"\x45" + b"\x00" * 40))) == Refusal.NOT_ARP


def test_the_frame_that_hung_the_generic_parser_is_refused_in_bounded_time():
    with framekit.hang_detector(), framekit.one_frame():
        assert ofmsgs.arp_frame(bytes(framekit.openflow_lookalike())) == Refusal.NOT_ARP


def test_arp_inside_gre_is_not_taken_for_a_members_arp():
    assert ofmsgs.arp_frame(bytes(framekit.gre_with_arp())) == Refusal.NOT_ARP


@pytest.mark.parametrize("field", ["eth_src", "sha"])
@pytest.mark.parametrize("mac", [BROADCAST, "01:00:5e:7f:00:64", "03:bf:0a:00:00:64", ZERO_MAC])
def test_a_frame_from_a_mac_no_nic_has_is_never_serialised(field, mac):
    frame = replace(proxy_reply(web_cluster(), web_cluster().member_for_ip(B), request(A, B)), **{field: mac})
    with pytest.raises(ValueError, match="never sends from a multicast or zero MAC"):
        ofmsgs.arp_bytes(frame)


def test_packet_outs_leave_from_the_controller_port_one_message_per_distinct_frame():
    answer = proxy_reply(web_cluster(), web_cluster().member_for_ip(B), request(A, B))
    frames = (FrameOut(1, answer), FrameOut(4, request(A, A)), FrameOut(5, request(A, A)))
    messages = ofmsgs.packet_outs(DP, frames)
    assert [m.ports for m in messages] == [(1,), (4, 5)]
    assert [wire(m) for m in messages] == [
        wire(framework_packet_out([1], ofmsgs.arp_bytes(answer))),
        wire(framework_packet_out([4, 5], ofmsgs.arp_bytes(request(A, A)))),
    ]


def framework_packet_out(ports: list[int], data: bytes):
    parser = ofproto_v1_3_parser
    actions = [parser.OFPActionOutput(port) for port in ports]
    return parser.OFPPacketOut(
        DP, buffer_id=ofproto_v1_3.OFP_NO_BUFFER, in_port=ofproto_v1_3.OFPP_CONTROLLER, actions=actions, data=data
    )


@pytest.mark.parametrize("ports", [[1], [2, 3], [1, 2, 3, 4, 5, 6, 7], [ofproto_v1_3.OFPP_NORMAL], [0xFFFFFF00]])
def test_a_packet_out_from_the_template_is_the_frameworks_packet_out_byte_for_byte(ports):
    """The same header, length, xid, buffer id, in_port CONTROLLER, output actions (max_len included) and
    frame as the framework's own OFPPacketOut."""
    data = ofmsgs.arp_bytes(probe_frame(B))
    ours = ofmsgs.packet_out(DP, ports, data)
    assert wire(ours) == wire(framework_packet_out(ports, data))
    assert (ours.xid, len(ours.buf)) == (7, 24 + 16 * len(ports) + 60)


def test_flow_changes_are_fenced_by_a_barrier_before_any_frame_goes_out():
    flow = located_flows()[2]
    work = Work(diff=FlowDiff(to_add=(flow,), to_delete=()), frames=(FrameOut(1, request(A, A)),))
    kinds = [type(m).__name__ for m in ofmsgs.work_messages(DP, work)]
    assert kinds == ["OFPFlowMod", "OFPBarrierRequest", "PacketOut"]
    assert ofmsgs.work_messages(DP, Work(diff=EMPTY_DIFF)) == []
