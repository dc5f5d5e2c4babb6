"""The strict parser of punted frames (flows/frames.py): what it accepts field by field, and that every
frame that hung or broke the frameworks' generic parsers is refused with its reason, in bounded time.
Frames are built by scapy, an independent implementation."""

from __future__ import annotations

import random

import pytest
from scapy.layers.l2 import ARP, Ether
from scapy.packet import Padding, Raw

from flows.addresses import PROBE_MAC
from flows.arp import ArpFrame
from flows.frames import ParsedArp, Refusal, VlanTag, parse_arp, punted_arp
from tests.unit import framekit
from tests.unit.example_cluster import BROADCAST, CLIENT_MAC, CM, DM, ZERO_MAC
from tests.unit.framekit import A, B, member_arp, tagged

A_REQUEST_FOR_B = ArpFrame(eth_src=DM[A], eth_dst=BROADCAST, op=1, sha=CM, spa=A, tha=ZERO_MAC, tpa=B)


def parsed(frame) -> ParsedArp | Refusal:
    with framekit.hang_detector(), framekit.one_frame():
        return parse_arp(bytes(frame))


def test_a_members_arp_request_is_read_field_by_field():
    assert parsed(member_arp()) == ParsedArp(frame=A_REQUEST_FOR_B)


def test_a_probe_answer_is_read_field_by_field():
    answer = Ether(src=DM[B], dst=PROBE_MAC) / ARP(op=2, hwsrc=CM, psrc=B, hwdst=PROBE_MAC, pdst="0.0.0.0")
    assert parsed(answer) == ParsedArp(
        ArpFrame(eth_src=DM[B], eth_dst=PROBE_MAC, op=2, sha=CM, spa=B, tha=PROBE_MAC, tpa="0.0.0.0")
    )


@pytest.mark.parametrize("padding", [bytes(18), b"\xff" * 18, b"\xab" * 1400], ids=["zeros", "ones", "long"])
def test_bytes_after_the_arp_body_are_padding(padding):
    frame = member_arp() / Padding(padding)
    assert len(bytes(frame)) == 42 + len(padding)
    assert punted_arp(bytes(frame)) == A_REQUEST_FOR_B


@pytest.mark.parametrize("name", sorted(framekit.HOSTILE))
def test_a_frame_that_is_not_arp_is_refused_without_being_dissected(name):
    assert parsed(framekit.HOSTILE[name]()) == Refusal.NOT_ARP


def test_arp_bytes_behind_any_other_ethertype_are_not_arp():
    for eth_type in (0x0800, 0x8035, 0x0000, 0x05DC, 0xFFFF):  # 0x86dd: tests/unit/test_nd_frames.py
        frame = Ether(src=DM[A], dst=BROADCAST, type=eth_type) / Raw(bytes(member_arp()[ARP]))
        assert parsed(frame) == Refusal.NOT_ARP, hex(eth_type)


def test_a_tagged_arp_is_read_with_its_tags_but_never_handled():
    """The app answers untagged only; an answer to a tagged request would land on the wrong VLAN."""
    one = tagged(member_arp(), 10)
    two = tagged(member_arp(), 100, 10, outer_tpid=0x88A8)
    assert parsed(one) == ParsedArp(A_REQUEST_FOR_B, (VlanTag(0x8100, 10),))
    assert parsed(two) == ParsedArp(A_REQUEST_FOR_B, (VlanTag(0x88A8, 100), VlanTag(0x8100, 10)))
    assert punted_arp(bytes(one)) == Refusal.TAGGED
    assert punted_arp(bytes(two)) == Refusal.TAGGED


def test_priority_tagged_arp_is_tagged_too():
    assert punted_arp(bytes(tagged(member_arp(), 0))) == Refusal.TAGGED


def test_more_than_two_tags_are_not_read_through():
    assert parsed(tagged(member_arp(), 1, 2, 3)) == Refusal.NOT_ARP
    assert parsed(tagged(member_arp(), *range(1, 200))) == Refusal.NOT_ARP


@pytest.mark.parametrize("op", [0, 3, 4, 8, 9, 256, 0xFFFF])
def test_an_opcode_other_than_request_or_reply_is_malformed(op):
    frame = member_arp()
    frame[ARP].op = op
    assert parsed(frame) == Refusal.MALFORMED


@pytest.mark.parametrize(
    "field, value",
    [("hwtype", 6), ("hwtype", 0), ("ptype", 0x86DD), ("ptype", 0x0806), ("hwlen", 8), ("hwlen", 0), ("plen", 16)],
)
def test_arp_that_is_not_ethernet_over_ipv4_is_malformed(field, value):
    frame = member_arp()
    setattr(frame[ARP], field, value)
    assert parsed(frame) == Refusal.MALFORMED


@pytest.mark.parametrize("sha", [BROADCAST, "01:00:5e:00:00:01", "03:bf:0a:00:00:64", "33:33:00:00:00:01", ZERO_MAC])
def test_a_sender_mac_no_nic_has_is_malformed(sha):
    assert parsed(member_arp(sha=sha)) == Refusal.MALFORMED


@pytest.mark.parametrize("eth_src", [BROADCAST, "01:80:c2:00:00:00", ZERO_MAC])
def test_an_ethernet_source_no_nic_has_is_malformed(eth_src):
    assert parsed(member_arp(eth_src=eth_src)) == Refusal.MALFORMED


def test_every_truncation_of_an_arp_is_refused_as_truncated():
    for frame in (member_arp(), tagged(member_arp(), 10), tagged(member_arp(), 100, 10, outer_tpid=0x88A8)):
        data = bytes(frame)
        for length in range(len(data)):
            assert parse_arp(data[:length]) == Refusal.TRUNCATED, (data.hex(), length)


def test_the_parser_agrees_with_scapy_on_mutated_member_arp():
    """An independent reading: a frame is accepted exactly when scapy sees untagged Ethernet/ARP for
    IPv4 with opcode 1 or 2 and NIC MACs, and then with the same fields."""
    rng = random.Random(7)
    template = bytes(member_arp(op=2, eth_dst=CM) / Padding(bytes(18)))
    verdicts = set()
    for _ in range(3000):
        data = bytearray(template)
        for _ in range(rng.randint(1, 3)):
            data[rng.randrange(42)] = rng.choice((0, 1, 2, 3, 4, 6, 0x08, 0x06, 0xFF, rng.randrange(256)))
        data = bytes(data[: rng.choice((len(data), len(data), rng.randrange(len(data))))])
        expected = scapy_reading(data)
        assert punted_arp(data) == expected, data.hex()
        verdicts.add(expected if isinstance(expected, Refusal) else "accepted")
    assert verdicts == {"accepted", *Refusal} - {Refusal.TAGGED}  # the mutations reached every outcome


def scapy_reading(data: bytes) -> ArpFrame | Refusal:
    """What the parser should say about an untagged frame, read by scapy with the rules of
    docs/parsing.md. A frame cut short is zero-filled for scapy, which reads no partial ARP."""
    if len(data) < 14:
        return Refusal.TRUNCATED
    eth = Ether(data.ljust(42, b"\0"))
    if not isinstance(eth, Ether) or eth.type != 0x0806:  # scapy reads Dot3 for an 802.3 length
        return Refusal.NOT_ARP
    if len(data) < 22:
        return Refusal.TRUNCATED
    arp = eth.getlayer(ARP)  # None: scapy could not dissect it as ARP at all
    if arp is None or (arp.hwtype, arp.ptype, arp.hwlen, arp.plen) != (1, 0x0800, 6, 4) or arp.op not in (1, 2):
        return Refusal.MALFORMED
    if len(data) < 42:
        return Refusal.TRUNCATED
    if any(mac == ZERO_MAC or int(mac[:2], 16) & 1 for mac in (eth.src, arp.hwsrc)):
        return Refusal.MALFORMED
    return ArpFrame(eth.src, eth.dst, arp.op, arp.hwsrc, arp.psrc, arp.hwdst, arp.pdst)


def test_a_clients_arp_is_accepted_the_core_decides_about_it():
    """The parser checks form, not who sent it: a client's well-formed ARP is the core's to judge."""
    frame = Ether(src=CLIENT_MAC, dst=BROADCAST) / ARP(op=1, hwsrc=CLIENT_MAC, psrc="10.0.0.50", pdst=A)
    assert isinstance(punted_arp(bytes(frame)), ArpFrame)


def general_reading(data: bytes) -> ArpFrame | Refusal:
    """punted_arp() by the general path only: parse_arp(), whatever the frame's tags or length."""
    parsed = parse_arp(data)
    if isinstance(parsed, Refusal):
        return parsed
    return Refusal.TAGGED if parsed.vlan_tags else parsed.frame


def test_the_fast_path_for_untagged_arp_answers_exactly_what_the_general_parser_does():
    """punted_arp() reads an untagged ARP of 42 bytes or more with one unpack: on mutated, cut, padded and
    tagged frames it gives the general parser's answer, refusal reason included."""
    rng = random.Random(11)
    templates = [bytes(member_arp(op=op) / Padding(bytes(18))) for op in (1, 2)]
    templates += [bytes(tagged(member_arp(), 10)), bytes(member_arp())]
    answers = set()
    for _ in range(5000):
        data = bytearray(rng.choice(templates))
        for _ in range(rng.randint(0, 3)):
            data[rng.randrange(len(data))] = rng.choice((0, 1, 2, 4, 6, 0x08, 0x06, 0x81, 0xFF, rng.randrange(256)))
        cut = rng.choice((len(data), len(data), 42, 41, rng.randrange(len(data) + 1)))
        data = bytes(data[:cut]) + bytes(rng.choice((0, 0, 18, 100)))
        reading = punted_arp(data)
        assert reading == general_reading(data), data.hex()
        answers.add(reading if isinstance(reading, Refusal) else "accepted")
    assert answers == {"accepted", *Refusal}  # the mutations reached every outcome
