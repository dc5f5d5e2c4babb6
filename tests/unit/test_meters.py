"""Admission control: the punt meters, the punt pipeline through them, their config, their messages on
the wire (checked by scapy's OpenFlow 1.3 dissector), and where a member's reply to an outsider goes."""

from __future__ import annotations

from dataclasses import replace

import pytest
from scapy.contrib.openflow3 import OFPTMeterMod

from flows.addresses import dedicated_mac
from flows.arp import FrameOut, decide_arp
from flows.config import ConfigError, parse_config
from flows.core import NlbCore
from flows.flowspec import (
    FORWARDING_TABLE,
    NORMAL_PORT,
    PUNT_OUT_TABLE,
    PUNT_TABLE,
    GotoTable,
    Meter,
    ToController,
    expected_flows,
    make_match,
)
from flows.meters import (
    APP_METER_IDS,
    SHARED_PORT_METER_ID,
    SLOW_PATH_METER_ID,
    TOTAL_METER_ID,
    DropWatch,
    MeterDiff,
    MeterReading,
    MeterSpec,
    around_flows,
    expected_meters,
    is_app_meter,
    meter_target,
    meters_status,
    port_meter_id,
    reconcile_meters,
    watch_drops,
)
from flows.model import Registry, Settings
from flows.oftable import CONTROLLER, FakeFabric, Frame
from ryu_apps import cli, ofmsgs
from ryu_apps.compat import ofproto_v1_3, ofproto_v1_3_parser
from tests.unit.example_cluster import (
    CLIENT_MAC,
    CLIENT_PORT,
    CLUSTER_IP,
    CM,
    MEMBER_PORT,
    SWITCH_PORTS,
    located_ports,
    reply,
    request,
    web_cluster,
    web_config,
)
from tests.unit.test_ofmsgs import DP

A, B = "10.0.0.11", "10.0.0.12"
SETTINGS = Settings(punt_rate_per_port=50, punt_rate_total=400, slow_path_rate=2000)
SLOW_PATH = MeterSpec(SLOW_PATH_METER_ID, 2000, 2000)


def test_every_port_gets_its_own_meter_and_all_share_one_total_meter():
    meters = expected_meters(SETTINGS, SWITCH_PORTS)
    assert meters == [
        MeterSpec(TOTAL_METER_ID, 400, 400),
        *(MeterSpec(TOTAL_METER_ID + port, 50, 50) for port in SWITCH_PORTS),
        SLOW_PATH,
    ]
    assert all(meter.meter_id in APP_METER_IDS for meter in meters[:-1])
    assert port_meter_id(3) == 0x10003
    assert port_meter_id(0xFF00) == port_meter_id(0x12345) == SHARED_PORT_METER_ID


def test_an_uplink_carries_every_member_behind_it_so_its_meter_has_the_totals_rate():
    meters = {meter.meter_id: meter for meter in expected_meters(SETTINGS, (1, 2, 6), uplinks=(6, 9))}
    assert meters[port_meter_id(6)] == MeterSpec(TOTAL_METER_ID + 6, 400, 400)
    assert meters[port_meter_id(1)] == MeterSpec(TOTAL_METER_ID + 1, 50, 50)
    assert port_meter_id(9) not in meters, "an uplink that is no port of the switch has no meter"


def test_meters_are_reconciled_by_difference_and_others_meters_are_never_touched():
    expected = expected_meters(SETTINGS, (1, 2))
    installed = [
        MeterSpec(TOTAL_METER_ID, 400, 400),  # right: untouched
        SLOW_PATH,  # right: untouched
        MeterSpec(TOTAL_METER_ID + 1, 999, 999),  # wrong rate: modified
        MeterSpec(TOTAL_METER_ID + 7, 50, 50),  # a port that is gone: deleted
        MeterSpec(5, 10, 10),  # another app's meter: left alone
        MeterSpec(APP_METER_IDS.stop, 10, 10),  # just outside the range: left alone
    ]
    diff = reconcile_meters(expected, installed)
    assert diff.to_add == (MeterSpec(TOTAL_METER_ID + 2, 50, 50),)
    assert diff.to_modify == (MeterSpec(TOTAL_METER_ID + 1, 50, 50),)
    assert diff.to_delete == (MeterSpec(TOTAL_METER_ID + 7, 50, 50),)
    assert not reconcile_meters(expected, expected)


def test_every_switch_holds_the_slow_path_meter_at_the_configured_rate_with_a_seconds_burst():
    assert SLOW_PATH_METER_ID == ofproto_v1_3.OFPM_SLOWPATH == 0xFFFFFFFD
    for ports in ((), (1,), SWITCH_PORTS):
        assert expected_meters(SETTINGS, ports)[-1] == SLOW_PATH
    assert expected_meters(Settings(), ())[-1] == MeterSpec(SLOW_PATH_METER_ID, 25000, 25000)
    assert is_app_meter(SLOW_PATH_METER_ID) and not is_app_meter(ofproto_v1_3.OFPM_CONTROLLER)
    assert meter_target(SLOW_PATH_METER_ID) == "slow path"


def test_the_slow_path_meter_is_reconciled_like_the_others_and_never_deleted():
    expected = expected_meters(SETTINGS, (1,))
    assert reconcile_meters(expected, []).to_add[-1] == SLOW_PATH
    wrong = reconcile_meters(expected, [*expected[:-1], MeterSpec(SLOW_PATH_METER_ID, 7, 7)])
    assert (wrong.to_add, wrong.to_modify, wrong.to_delete) == ((), (SLOW_PATH,), ())
    assert not reconcile_meters(expected, expected)
    assert SLOW_PATH not in reconcile_meters(expected_meters(SETTINGS, (2,)), expected).to_delete


def test_around_a_ports_flows_its_new_meter_goes_before_them_and_its_old_one_after():
    """A port that came gets its meter before its punt flow; one that went loses it after its flow."""
    diff = reconcile_meters(expected_meters(SETTINGS, [1, 3]), expected_meters(SETTINGS, [1, 2]))
    before, after = around_flows(diff)
    assert before == MeterDiff(to_add=(MeterSpec(port_meter_id(3), 50, 50),), to_modify=(), to_delete=())
    assert after == MeterDiff(to_add=(), to_modify=(), to_delete=(MeterSpec(port_meter_id(2), 50, 50),))


def test_a_meter_is_reported_dropping_once_when_its_drops_start_rising_and_once_when_they_stop():
    look = lambda dropped: [MeterReading(TOTAL_METER_ID + 1, 1000, dropped), MeterReading(7, 0, dropped)]  # noqa: E731
    first, started, stopped = watch_drops(None, look(5))
    assert (started, stopped) == ([], [])  # the baseline
    rising, started, stopped = watch_drops(first, look(90))
    assert (started, stopped) == ([TOTAL_METER_ID + 1], [])  # meter 7 is not the app's
    still, started, stopped = watch_drops(rising, look(200))
    assert (started, stopped) == ([], [])  # logged once, not on every look
    _, started, stopped = watch_drops(still, look(200))
    assert (started, stopped) == ([], [TOTAL_METER_ID + 1])
    assert watch_drops(DropWatch({}), look(10))[1] == []  # a meter not seen before has no baseline yet


def test_status_shows_each_meter_with_what_the_switch_counted():
    rows = meters_status(expected_meters(SETTINGS, (1,)), [MeterReading(TOTAL_METER_ID + 1, 120, 70)])
    assert rows == [
        {"meter_id": 0x10000, "applies_to": "total", "rate_pps": 400, "burst": 400, "packets": None, "dropped": None},
        {"meter_id": 0x10001, "applies_to": "port 1", "rate_pps": 50, "burst": 50, "packets": 120, "dropped": 70},
        {
            "meter_id": SLOW_PATH_METER_ID,
            "applies_to": "slow path",
            "rate_pps": 2000,
            "burst": 2000,
            "packets": None,
            "dropped": None,
        },
    ]


def test_the_slow_path_meters_drops_are_watched_like_a_punt_meters():
    first, _, _ = watch_drops(None, [MeterReading(SLOW_PATH_METER_ID, 100, 0)])
    _, started, _ = watch_drops(first, [MeterReading(SLOW_PATH_METER_ID, 9000, 40)])
    assert started == [SLOW_PATH_METER_ID]


def test_punted_frames_pass_their_ports_meter_then_the_total_one_then_reach_the_controller():
    flows = expected_flows(Registry(clusters=(web_cluster(),)), SETTINGS, located_ports(), switch_ports=SWITCH_PORTS)
    by_key = {(flow.table_id, flow.match): flow for flow in flows}
    punts = [flow for flow in flows if flow.table_id == FORWARDING_TABLE and GotoTable(PUNT_TABLE) in flow.actions]
    assert len(punts) == 4  # the member's ARP, its NS and NA, and the answers to the app's probes
    assert all(ToController() not in flow.actions for flow in flows if flow.table_id != PUNT_OUT_TABLE)
    for port in SWITCH_PORTS:
        flow = by_key[(PUNT_TABLE, make_match(in_port=port))]
        assert flow.actions == (Meter(TOTAL_METER_ID + port), GotoTable(PUNT_OUT_TABLE))
    assert by_key[(PUNT_OUT_TABLE, make_match())].actions == (Meter(TOTAL_METER_ID), ToController())


def test_offline_a_members_arp_still_reaches_the_controller_through_the_meters_and_an_unknown_port_punts_nothing():
    net = FakeFabric(NlbCore(web_config()), dpid=1, ports=list(SWITCH_PORTS))
    frame = Frame.from_arp(request(A, B))
    assert [d.port for d in net.table.forward(MEMBER_PORT[A], frame)] == [CONTROLLER]
    assert net.table.forward(9, frame) == [], "port 9 has no meter: the punt table's miss drops"


@pytest.mark.parametrize("flow", expected_flows(Registry(), SETTINGS, {}, switch_ports=(1, 2)), ids=repr)
def test_a_metered_flow_reads_back_as_the_spec_it_was_built_from(flow):
    message = ofmsgs.flow_add(DP, flow)
    message.set_xid(3)
    message.serialize()
    data = bytes(message.buf)
    parsed = ofproto_v1_3_parser.ofproto_parser.msg(DP, *ofproto_v1_3_parser.ofproto_parser.header(data), data)
    assert ofmsgs.spec_from_stats(DP, parsed) == flow


@pytest.mark.parametrize("command", [ofproto_v1_3.OFPMC_ADD, ofproto_v1_3.OFPMC_MODIFY])
def test_a_meter_mod_on_the_wire_is_a_packet_rate_drop_band_with_its_burst(command):
    message = ofmsgs.meter_mod(DP, command, MeterSpec(0x10003, 50, 60))
    message.set_xid(9)
    message.serialize()
    parsed = OFPTMeterMod(bytes(message.buf))
    assert (parsed.cmd, parsed.meter_id) == (command, 0x10003)
    assert parsed.flags == 0b1110  # PKTPS | BURST | STATS
    (band,) = parsed.bands
    assert (band.type, band.rate, band.burst_size) == (ofproto_v1_3.OFPMBT_DROP, 50, 60)


def test_the_slow_path_meter_mod_on_the_wire_names_ofpm_slowpath():
    message = ofmsgs.meter_mod(DP, ofproto_v1_3.OFPMC_ADD, SLOW_PATH)
    message.set_xid(9)
    message.serialize()
    parsed = OFPTMeterMod(bytes(message.buf))
    assert (parsed.cmd, parsed.meter_id, parsed.flags) == (ofproto_v1_3.OFPMC_ADD, 0xFFFFFFFD, 0b1110)
    (band,) = parsed.bands
    assert (band.type, band.rate, band.burst_size) == (ofproto_v1_3.OFPMBT_DROP, 2000, 2000)


def test_the_slow_path_meter_reads_back_from_its_config_and_stats():
    parser = ofproto_v1_3_parser
    flags = ofproto_v1_3.OFPMF_PKTPS | ofproto_v1_3.OFPMF_BURST | ofproto_v1_3.OFPMF_STATS
    band = parser.OFPMeterBandDrop(rate=2000, burst_size=2000)
    config = parser.OFPMeterConfigStats(flags=flags, meter_id=SLOW_PATH_METER_ID, bands=[band])
    assert ofmsgs.meter_from_config(DP, config) == SLOW_PATH
    stats = parser.OFPMeterStats(
        meter_id=SLOW_PATH_METER_ID, packet_in_count=9, band_stats=[parser.OFPMeterBandStats(4, 0)]
    )
    assert ofmsgs.meter_reading(stats) == MeterReading(SLOW_PATH_METER_ID, 9, 4)


def test_meter_messages_add_and_modify_before_a_barrier_and_delete_by_id():
    diff = reconcile_meters(expected_meters(SETTINGS, (1,)), [MeterSpec(TOTAL_METER_ID + 4, 50, 50)])
    messages = ofmsgs.meter_messages(DP, diff)
    kinds = [(type(m).__name__, getattr(m, "command", None), getattr(m, "meter_id", None)) for m in messages]
    assert kinds == [
        ("OFPMeterMod", ofproto_v1_3.OFPMC_ADD, TOTAL_METER_ID),
        ("OFPMeterMod", ofproto_v1_3.OFPMC_ADD, TOTAL_METER_ID + 1),
        ("OFPMeterMod", ofproto_v1_3.OFPMC_ADD, SLOW_PATH_METER_ID),
        ("OFPMeterMod", ofproto_v1_3.OFPMC_DELETE, TOTAL_METER_ID + 4),
        ("OFPBarrierRequest", None, None),
    ]
    assert ofmsgs.meter_messages(DP, reconcile_meters([], [])) == []


def test_a_meter_read_back_compares_with_the_spec_and_one_of_another_shape_is_replaced():
    parser = ofproto_v1_3_parser
    flags = ofproto_v1_3.OFPMF_PKTPS | ofproto_v1_3.OFPMF_BURST
    band = parser.OFPMeterBandDrop(rate=50, burst_size=50)
    ours = parser.OFPMeterConfigStats(flags=flags, meter_id=0x10001, bands=[band])
    assert ofmsgs.meter_from_config(DP, ours) == MeterSpec(0x10001, 50, 50)
    kbps = parser.OFPMeterConfigStats(flags=ofproto_v1_3.OFPMF_KBPS, meter_id=0x10001, bands=[band])
    assert reconcile_meters([MeterSpec(0x10001, 50, 50)], [ofmsgs.meter_from_config(DP, kbps)]).to_modify
    stats = parser.OFPMeterStats(
        meter_id=0x10001, packet_in_count=300, band_stats=[parser.OFPMeterBandStats(200, 8400)]
    )
    assert ofmsgs.meter_reading(stats) == MeterReading(0x10001, 300, 200)


def test_the_punt_rates_default_to_a_members_share_and_a_ceiling_and_are_configurable():
    assert (Settings().punt_rate_per_port, Settings().punt_rate_total) == (100, 1000)
    settings = parse_config("fabric: {punt_rate_per_port: 20, punt_rate_total: 300}").settings
    assert (settings.punt_rate_per_port, settings.punt_rate_total) == (20, 300)


@pytest.mark.parametrize(
    "text, key, problem",
    [
        ("fabric: {punt_rate_per_port: 0}", "fabric.punt_rate_per_port", "an integer from 1 to"),
        ("fabric: {punt_rate_total: -5}", "fabric.punt_rate_total", "an integer from 1 to"),
        ("fabric: {punt_rate_total: true}", "fabric.punt_rate_total", "got boolean True"),
        ("fabric: {punt_rate_per_port: '100'}", "fabric.punt_rate_per_port", "got string '100'"),
        ("fabric: {punt_rate_per_port: 2.5}", "fabric.punt_rate_per_port", "got number 2.5"),
        ("fabric: {punt_rate_total: 4294967296}", "fabric.punt_rate_total", "an integer from 1 to 4294967295"),
        ("fabric: {punt_rate_per_port: 500, punt_rate_total: 200}", "fabric.punt_rate_per_port", "is above"),
    ],
)
def test_a_bad_punt_rate_is_refused_naming_the_key(text, key, problem):
    with pytest.raises(ConfigError) as error:
        parse_config(text, "nlbflow.yaml")
    assert error.value.key == key and problem in error.value.problem


def vip_reply_to_client():
    """A member's answer to the client's ARP for the VIP, as it reaches the controller."""
    return reply(CLUSTER_IP, "10.0.0.50", tha=CLIENT_MAC, eth_dst=CLIENT_MAC)


def test_with_normal_a_members_reply_to_a_client_goes_to_the_switchs_learning_not_to_every_outsider_port():
    decision = decide_arp(
        Registry(clusters=(web_cluster(),)), located_ports(), SWITCH_PORTS, 1, vip_reply_to_client(), True
    )
    # its source masked as port 1's masking flow does, so NORMAL never learns the cluster MAC
    assert decision.outputs == (FrameOut(NORMAL_PORT, replace(vip_reply_to_client(), eth_src=dedicated_mac(A))),)


def test_without_normal_a_members_reply_to_a_client_goes_to_every_non_member_port():
    decision = decide_arp(Registry(clusters=(web_cluster(),)), located_ports(), SWITCH_PORTS, 1, vip_reply_to_client())
    assert [out.port for out in decision.outputs] == [CLIENT_PORT, 5]


def test_a_members_broadcast_still_reaches_outsiders_and_peers_through_the_app_with_normal_on():
    decision = decide_arp(
        Registry(clusters=(web_cluster(),)), located_ports(), SWITCH_PORTS, 1, request(A, "10.0.0.1"), True
    )
    assert sorted(out.port for out in decision.outputs) == [2, 3, CLIENT_PORT, 5]
    assert all(out.frame.sha != CM for out in decision.outputs if out.port in (2, 3))


def test_the_cli_status_lists_each_switchs_meters_with_their_drops():
    status = {
        "runtime": "os-ken",
        "switches": [
            {
                "dpid": 1,
                "ports": [1],
                "meters": meters_status(expected_meters(SETTINGS, (1,)), [MeterReading(0x10001, 120, 70)]),
            }
        ],
        "clusters": [],
        "counters": {},
    }
    text = cli.format_status(status)
    assert "punt meters:" in text
    rows = [line.split() for line in text.splitlines() if line.strip().startswith("0x1000")]
    assert rows == [["0x10000", "total", "400/s", "-", "-"], ["0x10001", "port", "1", "50/s", "120", "70"]]


@pytest.mark.parametrize("normal_fallback, ports", [(True, [NORMAL_PORT]), (False, [CLIENT_PORT, 5])])
def test_the_core_sends_a_members_reply_to_a_client_by_the_fabrics_normal_fallback(normal_fallback, ports):
    config = replace(web_config(pinned=True), settings=Settings(normal_fallback=normal_fallback))
    net = FakeFabric(NlbCore(config), dpid=1, ports=list(SWITCH_PORTS))
    out = net.send(MEMBER_PORT[A], Frame.from_arp(vip_reply_to_client()))
    assert [delivery.port for delivery in out] == ports
    assert all(delivery.frame.arp_sha == CM for delivery in out), "outsiders get the reply unchanged"
