"""The whole method on an offline switch: frames in, frames out, the controller in the loop.

FakeFabric feeds what the table sends to the controller into NlbCore and delivers what the core
sends back, so these tests state forwarding behaviour rather than a literal flow list.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from flows.addresses import PROBE_MAC, igmp_cluster_mac, multicast_cluster_mac
from flows.core import NlbCore
from flows.model import ArpMode, ClusterMode, Registry, Settings
from flows.oftable import CONTROLLER, NORMAL, Delivery, FakeFabric, Frame
from tests.unit.example_cluster import (
    CLIENT_MAC,
    CLIENT_PORT,
    CLUSTER_IP,
    CM,
    DM,
    MEMBER_PORT,
    OTHER_PORT,
    SWITCH_PORTS,
    reply,
    request,
    web_config,
)

A, B, C = "10.0.0.11", "10.0.0.12", "10.0.0.13"


def fabric(arp: ArpMode = ArpMode.PROXY) -> FakeFabric:
    return FakeFabric(NlbCore(web_config(arp)), dpid=1, ports=list(SWITCH_PORTS))


def arp_in(frame) -> Frame:
    return Frame.from_arp(frame)


def announce_all(net: FakeFabric) -> None:
    """Each member announces itself (as Linux does when its link comes up)."""
    for ip in (A, B, C):
        net.send(MEMBER_PORT[ip], arp_in(request(ip, ip)))


def ports_of(deliveries: list[Delivery]) -> set:
    return {delivery.port for delivery in deliveries}


def test_proxy_end_to_end_request_answer_then_data_reaches_the_peer_only_as_cluster_mac():
    net = fabric()
    announce_all(net)
    answer = net.send(MEMBER_PORT[A], arp_in(request(A, B)))
    assert [(d.port, d.frame.arp_sha, d.frame.eth_dst) for d in answer] == [(MEMBER_PORT[A], DM[B], CM)]

    data = net.send(MEMBER_PORT[A], Frame(eth_src=CM, eth_dst=DM[B]))
    assert data == [Delivery(MEMBER_PORT[B], Frame(eth_src=DM[A], eth_dst=CM))]
    back = net.send(MEMBER_PORT[B], Frame(eth_src=CM, eth_dst=DM[A]))
    assert back == [Delivery(MEMBER_PORT[A], Frame(eth_src=DM[B], eth_dst=CM))]


def test_relay_end_to_end_the_target_learns_the_requesters_dedicated_mac_and_its_reply_is_revised():
    net = fabric(ArpMode.RELAY)
    announce_all(net)
    relayed = net.send(MEMBER_PORT[A], arp_in(request(A, B)))
    assert [(d.port, d.frame.arp_sha, d.frame.arp_spa) for d in relayed] == [(MEMBER_PORT[B], DM[A], A)]

    answered = net.send(MEMBER_PORT[B], arp_in(reply(B, A, tha=DM[A], eth_dst=DM[A])))
    assert [(d.port, d.frame.arp_sha, d.frame.arp_tha, d.frame.eth_dst) for d in answered] == [
        (MEMBER_PORT[A], DM[B], CM, CM)
    ]


def test_a_member_that_never_spoke_is_found_by_probe_before_a_peer_needs_it():
    net = fabric()
    net.send(MEMBER_PORT[A], arp_in(request(A, A)))
    probes = net.send(MEMBER_PORT[A], arp_in(request(A, B)))
    assert ports_of(probes) == set(SWITCH_PORTS)
    assert {(d.frame.arp_sha, d.frame.arp_spa, d.frame.arp_tpa) for d in probes} == {(PROBE_MAC, "0.0.0.0", B)}

    assert net.send(MEMBER_PORT[B], arp_in(reply(B, "0.0.0.0", tha=PROBE_MAC, eth_dst=PROBE_MAC))) == []
    retry = net.send(MEMBER_PORT[A], arp_in(request(A, B)))
    assert [(d.port, d.frame.arp_sha) for d in retry] == [(MEMBER_PORT[A], DM[B])]


def test_switch_connect_probes_every_unlocated_member():
    core = NlbCore(web_config())
    net = FakeFabric(core, dpid=1, ports=list(SWITCH_PORTS))
    assert {d.frame.arp_tpa for d in net.sent} == {A, B, C}


def test_cluster_traffic_from_a_client_reaches_every_member_port_and_no_other():
    net = fabric()
    announce_all(net)
    out = net.send(CLIENT_PORT, Frame(eth_src=CLIENT_MAC, eth_dst=CM))
    assert ports_of(out) == set(MEMBER_PORT.values())
    assert all(d.frame.eth_dst == CM for d in out)


def test_data_frames_never_reach_the_controller_and_other_traffic_goes_to_normal():
    net = fabric()
    announce_all(net)
    for src_port, dst in [(1, DM[B]), (2, DM[C]), (CLIENT_PORT, CM)]:
        assert CONTROLLER not in ports_of(net.table.forward(src_port, Frame(eth_src=CM, eth_dst=dst)))
    assert ports_of(net.table.forward(OTHER_PORT, Frame(eth_src="52:54:00:00:00:05", eth_dst=CLIENT_MAC))) == {NORMAL}


def test_a_member_that_moves_is_followed():
    net = fabric()
    announce_all(net)
    net.send(OTHER_PORT, arp_in(request(B, B)))
    assert net.send(MEMBER_PORT[A], Frame(eth_src=CM, eth_dst=DM[B])) == [
        Delivery(OTHER_PORT, Frame(eth_src=DM[A], eth_dst=CM))
    ]


def test_a_removed_port_takes_its_learned_members_flows_with_it():
    net = fabric()
    announce_all(net)
    net.apply(net.core.port_changed(1, MEMBER_PORT[B], present=False))
    assert ports_of(net.send(MEMBER_PORT[A], Frame(eth_src=CM, eth_dst=DM[B]))) == {NORMAL}
    assert ports_of(net.send(CLIENT_PORT, Frame(eth_src=CLIENT_MAC, eth_dst=CM))) == {MEMBER_PORT[A], MEMBER_PORT[C]}


def test_a_restarted_controller_adopts_locations_from_the_switch_and_changes_nothing():
    net = fabric()
    announce_all(net)
    before = dict(net.table.flows)

    restarted = NlbCore(web_config())
    restarted.switch_connected(1, dict.fromkeys(SWITCH_PORTS, True))
    work = restarted.flows_read_back(1, before.values())
    assert work.diff.to_add == () and work.diff.to_delete == ()
    assert work.frames == ()  # every member is known again: nothing to probe


@pytest.mark.parametrize(
    ("mode", "cluster_mac"),
    [
        (ClusterMode.UNICAST, CM),
        (ClusterMode.MULTICAST, multicast_cluster_mac(CLUSTER_IP)),
        (ClusterMode.IGMP, igmp_cluster_mac(CLUSTER_IP)),
    ],
)
def test_in_every_mode_cluster_frames_leave_on_member_ports_only_never_back_where_they_came_from(mode, cluster_mac):
    """Members with their own MACs (multicast modes) answer the app's probe with them and are located."""
    config = web_config()
    cluster = replace(config.registry.clusters[0], mode=mode, cluster_mac=cluster_mac)
    net = FakeFabric(NlbCore(replace(config, registry=Registry(clusters=(cluster,)))), 1, list(SWITCH_PORTS))
    for ip, port in MEMBER_PORT.items():
        own_mac = f"02:00:00:00:00:{port:02x}" if mode != ClusterMode.UNICAST else CM
        net.send(port, arp_in(reply(ip, "0.0.0.0", tha=PROBE_MAC, eth_dst=PROBE_MAC, sha=own_mac, eth_src=own_mac)))
    from_client = net.send(CLIENT_PORT, Frame(eth_src=CLIENT_MAC, eth_dst=cluster_mac))
    assert ports_of(from_client) == set(MEMBER_PORT.values())
    from_member = net.send(MEMBER_PORT[A], Frame(eth_src="02:00:00:00:00:01", eth_dst=cluster_mac))
    assert ports_of(from_member) == {MEMBER_PORT[B], MEMBER_PORT[C]}


def test_a_members_frames_leave_with_its_dedicated_mac_as_source_so_normal_never_learns_the_cluster_mac():
    net = fabric()
    announce_all(net)
    out = net.send(MEMBER_PORT[B], Frame(eth_src=CM, eth_dst=CLIENT_MAC))
    assert out == [Delivery(NORMAL, Frame(eth_src=DM[B], eth_dst=CLIENT_MAC))]
    unmasked = FakeFabric(NlbCore(replace(web_config(), settings=Settings(source_masking=False))), 1, [1, 2, 3, 4, 5])
    announce_all(unmasked)
    assert unmasked.send(MEMBER_PORT[B], Frame(eth_src=CM, eth_dst=CLIENT_MAC))[0].frame.eth_src == CM


def test_a_member_port_that_is_down_gets_nothing_until_it_is_up():
    net = fabric()
    announce_all(net)
    net.apply(net.core.port_changed(1, MEMBER_PORT[C], present=True, up=False))
    assert ports_of(net.send(CLIENT_PORT, Frame(eth_src=CLIENT_MAC, eth_dst=CM))) == {MEMBER_PORT[A], MEMBER_PORT[B]}
    assert ports_of(net.send(MEMBER_PORT[A], Frame(eth_src=CM, eth_dst=DM[C]))) == set(), "dropped, not flooded"
    net.apply(net.core.port_changed(1, MEMBER_PORT[C], present=True, up=True))
    assert ports_of(net.send(MEMBER_PORT[A], Frame(eth_src=CM, eth_dst=DM[C]))) == {MEMBER_PORT[C]}


def test_a_restart_keeps_a_multicast_clusters_delivery_ports_until_its_members_are_found_again():
    """Members with their own MACs leave no member flow behind; the cluster flow itself is kept."""
    config = web_config()
    cluster = replace(config.registry.clusters[0], mode=ClusterMode.MULTICAST, cluster_mac="03:bf:0a:00:00:64")
    config = replace(config, registry=Registry(clusters=(cluster,)))
    net = FakeFabric(NlbCore(config), 1, list(SWITCH_PORTS))
    for ip, port in MEMBER_PORT.items():
        own = f"02:00:00:00:00:{port:02x}"
        net.send(port, arp_in(reply(ip, "0.0.0.0", tha=PROBE_MAC, eth_dst=PROBE_MAC, sha=own, eth_src=own)))
    restarted = NlbCore(config)
    restarted.switch_connected(1, dict.fromkeys(SWITCH_PORTS, True))
    work = restarted.flows_read_back(1, net.table.flows.values())
    assert work.diff.to_add == () and work.diff.to_delete == ()
    assert {out.frame.tpa for out in work.frames} == set(MEMBER_PORT), "members are looked for again"
