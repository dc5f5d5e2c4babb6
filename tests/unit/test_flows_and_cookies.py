"""Addresses, cookies and the expected flow set of one switch."""

from __future__ import annotations

from dataclasses import replace

import pytest

from flows.addresses import PROBE_MAC, AddressError, dedicated_mac, parse_unicast_mac, unicast_cluster_mac
from flows.cookies import APP_COOKIE_MASK, APP_ID, Purpose, cluster_id, decode_cookie, is_app_cookie, member_id
from flows.flowspec import (
    ETH_TYPE_ARP,
    FORWARDING_TABLE,
    INGRESS_TABLE,
    PUNT_TABLE,
    FlowSpec,
    GotoTable,
    Normal,
    Output,
    SetField,
    expected_flows,
    make_match,
    reconcile,
)
from flows.model import ClusterMode, Registry, Settings
from tests.unit.example_cluster import CM, DM, MEMBER_PORT, located_ports, web_cluster


def test_cluster_mac_is_derived_from_the_primary_cluster_ip_as_windows_nlb_does():
    assert unicast_cluster_mac("10.0.0.100") == "02:bf:0a:00:00:64"


def test_dedicated_mac_is_derived_from_the_dedicated_ip():
    assert dedicated_mac("10.0.0.11") == "02:de:0a:00:00:0b"
    assert dedicated_mac("192.168.200.254") == "02:de:c0:a8:c8:fe"


@pytest.mark.parametrize("text", ["01:00:5e:00:00:01", "ff:ff:ff:ff:ff:ff", "00:00:00:00:00:00", "02:de:0a", "xyz"])
def test_a_member_or_cluster_mac_must_be_unicast_and_well_formed(text):
    with pytest.raises(AddressError):
        parse_unicast_mac(text)


def test_cookie_names_app_cluster_member_and_purpose():
    flows = expected_flows(Registry(clusters=(web_cluster(),)), Settings(), {("web", "10.0.0.11"): 1})
    delivery = next(f for f in flows if decode_cookie(f.cookie).purpose == Purpose.MEMBER_DELIVERY)
    fields = decode_cookie(delivery.cookie)
    assert delivery.cookie & APP_COOKIE_MASK == APP_ID << 48
    assert (fields.cluster_id, fields.member_id) == (cluster_id("web"), member_id("10.0.0.11"))
    assert all(is_app_cookie(flow.cookie) for flow in flows)
    assert not is_app_cookie(0)


ND_PUNTS = (
    make_match(eth_type=0x86DD, ip_proto=58, icmpv6_type=135, ipv6_nd_sll=CM),
    make_match(eth_type=0x86DD, ip_proto=58, icmpv6_type=136, ipv6_nd_tll=CM),
    make_match(eth_type=0x86DD, ip_proto=58, icmpv6_type=133, eth_src=CM),
    make_match(eth_type=0x86DD, ip_proto=58, icmpv6_type=134, eth_src=CM),
)


def test_every_flow_of_a_switch_carries_a_distinct_cookie():
    flows = expected_flows(Registry(clusters=(web_cluster(),)), Settings(), located_ports(), switch_ports=range(1, 6))
    assert len({flow.cookie for flow in flows}) == len(flows)


def test_expected_flows_for_a_located_unicast_cluster():
    flows = {
        (flow.table_id, flow.match): flow
        for flow in expected_flows(Registry(clusters=(web_cluster(),)), Settings(), located_ports())
    }
    ingress, forwarding = INGRESS_TABLE, FORWARDING_TABLE
    for ip, port in MEMBER_PORT.items():
        masking = flows[(ingress, make_match(in_port=port, eth_src=CM))]
        assert masking.actions == (SetField("eth_src", DM[ip]), GotoTable(forwarding))
        assert flows[(forwarding, make_match(eth_dst=DM[ip]))].actions == (SetField("eth_dst", CM), Output(port))
    assert flows[(ingress, make_match())].actions == (GotoTable(forwarding),)
    probe_answers = make_match(eth_type=ETH_TYPE_ARP, arp_op=2, eth_dst=PROBE_MAC)
    assert flows[(forwarding, probe_answers)].actions == (GotoTable(PUNT_TABLE),)
    assert flows[(forwarding, make_match(eth_type=ETH_TYPE_ARP, arp_sha=CM))].actions == (GotoTable(PUNT_TABLE),)
    assert flows[(forwarding, make_match(eth_dst=CM))].actions == (Output(1), Output(2), Output(3))
    assert flows[(forwarding, make_match())].actions == (Normal(),)
    nd_punts = {match: flow for (table, match), flow in flows.items() if match in ND_PUNTS}
    assert set(nd_punts) == set(ND_PUNTS)
    assert {(flow.table_id, flow.actions) for flow in nd_punts.values()} == {
        (forwarding, (GotoTable(PUNT_TABLE),)),  # NS and NA, after source masking: their options hold CM
        (ingress, (GotoTable(PUNT_TABLE),)),  # RS and RA, before source masking: their Ethernet source holds CM
    }
    assert len(flows) == 16  # and the punt-out flow (tests/unit/test_meters.py)


@pytest.mark.parametrize("mode", [ClusterMode.MULTICAST, ClusterMode.IGMP])
def test_a_multicast_mode_cluster_gets_containment_only(mode):
    cluster = replace(web_cluster(), mode=mode, cluster_mac="03:bf:0a:00:00:64")
    flows = expected_flows(Registry(clusters=(cluster,)), Settings(), located_ports())
    cluster_flows = [flow for flow in flows if decode_cookie(flow.cookie).cluster_id]
    assert [(flow.match, flow.actions) for flow in cluster_flows] == [
        (make_match(eth_dst="03:bf:0a:00:00:64"), (Output(1), Output(2), Output(3)))
    ]


def test_unlocated_members_get_no_delivery_flow_and_masking_and_normal_fallback_can_be_turned_off():
    settings = Settings(normal_fallback=False, source_masking=False)
    flows = {flow.match: flow for flow in expected_flows(Registry(clusters=(web_cluster(),)), settings, {})}
    assert set(flows) == {
        make_match(),  # the ingress table's way on to forwarding
        make_match(eth_type=ETH_TYPE_ARP, arp_op=2, eth_dst=PROBE_MAC),
        make_match(eth_type=ETH_TYPE_ARP, arp_sha=CM),
        *ND_PUNTS,
        make_match(eth_dst=CM),
    }
    assert flows[make_match(eth_dst=CM)].actions == (), "no member to send to: dropped, never flooded"
    located = expected_flows(Registry(clusters=(web_cluster(),)), settings, located_ports())
    assert not [flow for flow in located if decode_cookie(flow.cookie).purpose == Purpose.SOURCE_MASKING]


def test_a_member_on_a_port_that_is_down_is_dropped_not_flooded_and_held_ports_survive_a_restart():
    flows = expected_flows(
        Registry(clusters=(web_cluster(),)), Settings(), located_ports(), down_ports={3}, held_ports={"web": {7}}
    )
    by_match = {flow.match: flow.actions for flow in flows}
    assert by_match[make_match(eth_dst=DM["10.0.0.13"])] == ()
    assert by_match[make_match(eth_dst=CM)] == (Output(1), Output(2), Output(7))


def test_two_members_behind_one_port_get_one_masking_flow():
    ports = {("web", "10.0.0.11"): 7, ("web", "10.0.0.12"): 7}
    flows = expected_flows(Registry(clusters=(web_cluster(),)), Settings(), ports)
    masking = [flow for flow in flows if decode_cookie(flow.cookie).purpose == Purpose.SOURCE_MASKING]
    assert [(dict(f.match)["in_port"], f.actions[0]) for f in masking] == [(7, SetField("eth_src", DM["10.0.0.11"]))]


def test_reconcile_adds_missing_deletes_stale_and_leaves_correct_flows_alone():
    expected = expected_flows(Registry(clusters=(web_cluster(),)), Settings(), located_ports())
    stale = FlowSpec(priority=200, cookie=expected[1].cookie, match=make_match(eth_dst="02:de:0a:00:00:63"), actions=())
    installed = [*expected[2:], stale]
    diff = reconcile(expected, installed)
    assert set(diff.to_add) == set(expected[:2])
    assert diff.to_delete == (stale,)


def test_reconcile_replaces_a_changed_flow_by_add_without_a_delete_that_would_remove_it():
    expected = expected_flows(Registry(clusters=(web_cluster(),)), Settings(), located_ports())
    moved = next(f for f in expected if f.match == make_match(eth_dst=DM["10.0.0.11"]))
    old = replace(moved, actions=(SetField("eth_dst", CM), Output(9)))
    installed = [f for f in expected if f != moved] + [old]
    diff = reconcile(expected, installed)
    assert diff.to_add == (moved,)
    assert diff.to_delete == ()
