"""The OpenFlow layer under the installed framework (os-ken or Ryu): messages serialise, flows read
back equal the specs they came from, and the ARP frames the app builds are right field by field
according to an independent parser (scapy)."""

from __future__ import annotations

from dataclasses import dataclass, replace

import pytest
from scapy.layers.l2 import ARP, Ether

from flows.addresses import PROBE_MAC
from flows.arp import ARP_REPLY, ARP_REQUEST, ArpFrame, FrameOut, probe_frame, proxy_reply, revised_reply
from flows.core import Work
from flows.flowspec import EMPTY_DIFF, FlowDiff, expected_flows, punt_out_flow
from flows.frames import Refusal
from flows.model import Registry, Settings
from ryu_apps import ofmsgs
from ryu_apps.compat import ofproto_v1_3, ofproto_v1_3_parser
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
    parsed = Ether(ofmsgs.arp_bytes(frame))
    arp = parsed[ARP]
    assert (parsed.type, arp.hwtype, arp.ptype, arp.hwlen, arp.plen) == (0x0806, 1, 0x0800, 6, 4)
    return (parsed.src, parsed.dst, arp.op, arp.hwsrc, arp.psrc, arp.hwdst, arp.pdst)


def test_proxy_reply_on_the_wire_matches_method_md_field_by_field():
    frame = proxy_reply(web_cluster(), web_cluster().member_for_ip(B), request(A, B))
    assert scapy_fields(frame) == (DM[B], CM, ARP_REPLY, DM[B], B, CM, A)


def test_revised_relay_reply_on_the_wire_matches_method_md_field_by_field():
    target_reply = reply(B, A, tha=DM[A], eth_dst=DM[A])
    frame = revised_reply(target_reply, web_cluster().member_for_ip(B), web_cluster())
    assert scapy_fields(frame) == (DM[B], CM, ARP_REPLY, DM[B], B, CM, A)


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
    assert [(m.in_port, [a.port for a in m.actions]) for m in messages] == [
        (ofproto_v1_3.OFPP_CONTROLLER, [1]),
        (ofproto_v1_3.OFPP_CONTROLLER, [4, 5]),
    ]
    assert all(wire(m) for m in messages)


def test_flow_changes_are_fenced_by_a_barrier_before_any_frame_goes_out():
    flow = located_flows()[2]
    work = Work(diff=FlowDiff(to_add=(flow,), to_delete=()), frames=(FrameOut(1, request(A, A)),))
    kinds = [type(m).__name__ for m in ofmsgs.work_messages(DP, work)]
    assert kinds == ["OFPFlowMod", "OFPBarrierRequest", "OFPPacketOut"]
    assert ofmsgs.work_messages(DP, Work(diff=EMPTY_DIFF)) == []
