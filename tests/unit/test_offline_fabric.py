"""The whole method on an offline switch: frames in, frames out, the controller in the loop.

FakeFabric feeds what the table sends to the controller into NlbCore and delivers what the core
sends back, so these tests state forwarding behaviour rather than a literal flow list.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from flows.addresses import PROBE_MAC, igmp_cluster_mac, multicast_cluster_mac
from flows.arp import ARP_REQUEST
from flows.core import NlbCore
from flows.locations import Level
from flows.model import ArpMode, ClusterMode, LocationSettings, Registry, Settings
from flows.oftable import CONTROLLER, NORMAL, Delivery, FakeFabric, Frame
from flows.registry_ops import remove_member
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
SETTINGS = LocationSettings()
CONFIRM, IDLE, UNANSWERED = SETTINGS.confirm_seconds, SETTINGS.idle_seconds, SETTINGS.unanswered_probes
MULTICAST_CM = multicast_cluster_mac(CLUSTER_IP)


ANSWERING = {"arp": ArpMode.PROXY}  # the mode fabric() builds unless a test names one


@pytest.fixture(autouse=True, params=[ArpMode.PROXY, ArpMode.SWITCH, ArpMode.RELAY], ids=["proxy", "switch", "relay"])
def answering(request) -> ArpMode:
    """Every test runs in every ARP mode (issue 10): the controller answering, the switch answering, and the
    peer answering a relayed request; the same frames are expected of all three."""
    ANSWERING["arp"] = request.param
    return request.param


def fabric(arp: ArpMode | None = None) -> FakeFabric:
    return FakeFabric(NlbCore(web_config(arp or ANSWERING["arp"])), dpid=1, ports=list(SWITCH_PORTS))


def arp_in(frame) -> Frame:
    return Frame.from_arp(frame)


def announce_all(net: FakeFabric) -> None:
    """Each member announces itself (as Linux does when its link comes up)."""
    for ip in (A, B, C):
        net.send(MEMBER_PORT[ip], arp_in(request(ip, ip)))


def resolve(net: FakeFabric, in_port: int, spa: str, tpa: str) -> list[Delivery]:
    """What leaves the switch when the member at in_port asks for tpa. In relay mode the request must reach
    the peer's port alone, carrying the requester's dedicated MAC; the peer's stack answers it as Linux
    does (to that MAC), and what the switch makes of that reply is the answer."""
    out = net.send(in_port, arp_in(request(spa, tpa)))
    if ANSWERING["arp"] != ArpMode.RELAY:
        return out
    assert [(d.port, d.frame.arp_op, d.frame.arp_sha, d.frame.eth_src, d.frame.arp_tpa) for d in out] == [
        (MEMBER_PORT[tpa], ARP_REQUEST, DM[spa], DM[spa], tpa)
    ], f"{spa} asks for {tpa}: relayed as {out}"
    return net.send(MEMBER_PORT[tpa], arp_in(reply(tpa, spa, tha=DM[spa], eth_dst=DM[spa])))


def ports_of(deliveries: list[Delivery]) -> set:
    return {delivery.port for delivery in deliveries}


def test_end_to_end_request_answer_then_data_reaches_the_peer_only_as_cluster_mac():
    net = fabric()
    announce_all(net)
    answer = resolve(net, MEMBER_PORT[A], A, B)
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
    retry = resolve(net, MEMBER_PORT[A], A, B)
    assert [(d.port, d.frame.arp_sha) for d in retry] == [(MEMBER_PORT[A], DM[B])]


def test_switch_connect_probes_every_unlocated_member_on_every_port_and_again_every_few_seconds():
    core = NlbCore(web_config(ANSWERING["arp"]))
    net = FakeFabric(core, dpid=1, ports=list(SWITCH_PORTS))
    everywhere = {(p, ip) for p in SWITCH_PORTS for ip in (A, B, C)}
    assert {(d.port, d.frame.arp_tpa) for d in net.sent} == everywhere
    assert net.tick(1.0) == [], "not at every tick"
    assert {(d.port, d.frame.arp_tpa) for d in net.tick(4.0)} == everywhere


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


def test_a_member_that_moves_is_followed_once_its_old_port_stayed_silent():
    """A VM migration: the member speaks from a new port and no longer answers on its old one."""
    net = fabric()
    announce_all(net)
    held = net.send(OTHER_PORT, arp_in(request(B, B)))
    assert [(d.port, d.frame.arp_sha, d.frame.arp_tpa) for d in held] == [(MEMBER_PORT[B], PROBE_MAC, B)]
    assert ports_of(net.send(MEMBER_PORT[A], Frame(eth_src=CM, eth_dst=DM[B]))) == {MEMBER_PORT[B]}, "not yet"
    net.tick(CONFIRM)
    assert net.send(MEMBER_PORT[A], Frame(eth_src=CM, eth_dst=DM[B])) == [
        Delivery(OTHER_PORT, Frame(eth_src=DM[A], eth_dst=CM))
    ]
    moved = [note.text for note in net.notes if "moved" in note.text]
    assert moved == [f"dpid 1: member {B} of cluster web moved from port 2 to port 5 (port 2 silent for 1 s)"]


def test_a_member_whose_old_port_went_down_is_followed_at_once():
    net = fabric()
    announce_all(net)
    net.apply(net.core.port_changed(1, MEMBER_PORT[B], present=True, up=False, now=net.now))
    assert resolve(net, OTHER_PORT, B, A) == [
        Delivery(OTHER_PORT, Frame.from_arp(reply(A, B, tha=CM, eth_dst=CM, sha=DM[A], eth_src=DM[A])))
    ]
    assert ports_of(net.send(MEMBER_PORT[A], Frame(eth_src=CM, eth_dst=DM[B]))) == {OTHER_PORT}


def test_a_claim_held_while_the_old_port_is_probed_is_followed_when_that_port_goes_away():
    net = fabric()
    announce_all(net)
    net.send(OTHER_PORT, arp_in(request(B, B)))
    net.apply(net.core.port_changed(1, MEMBER_PORT[B], present=False, up=False, now=net.now))
    assert ports_of(net.send(MEMBER_PORT[A], Frame(eth_src=CM, eth_dst=DM[B]))) == {OTHER_PORT}


def test_a_forged_member_arp_from_another_port_is_dropped_while_the_member_answers_on_its_own():
    net = fabric()
    announce_all(net)
    forged = net.send(OTHER_PORT, arp_in(request(B, A)))
    assert [d.port for d in forged] == [MEMBER_PORT[B]], "no answer to the forger: only a probe of B's own port"
    answer = reply(B, "0.0.0.0", tha=PROBE_MAC, eth_dst=PROBE_MAC)
    assert net.send(MEMBER_PORT[B], arp_in(answer)) == []
    net.tick(CONFIRM)
    assert ports_of(net.send(MEMBER_PORT[A], Frame(eth_src=CM, eth_dst=DM[B]))) == {MEMBER_PORT[B]}
    status = net.core.status(net.now)
    assert status["counters"]["dropped_spoofed"] == 1 and status["counters"]["moves"] == 0
    where = status["clusters"][0]["members"][1]["located"]
    assert [(w["port"], w["spoof_attempts"], w["last_spoof_port"]) for w in where] == [(2, 1, OTHER_PORT)]
    warnings = [note.text for note in net.notes if note.level == Level.WARNING]
    assert warnings == [
        f"dpid 1: member {B} of cluster web on port 2: a frame claiming it from port 5 was a spoof, "
        "dropped (dropped_spoofed)"
    ]
    again = net.send(OTHER_PORT, arp_in(request(B, A)))
    assert again == [], "right after a proof, another claim is a spoof at once, without a probe"
    assert net.core.status(net.now)["counters"]["dropped_spoofed"] == 2


def test_a_forged_probe_answer_from_a_non_member_port_does_not_move_a_located_member():
    net = fabric()
    announce_all(net)
    forged = reply(B, "0.0.0.0", tha=PROBE_MAC, eth_dst=PROBE_MAC)
    check = net.send(OTHER_PORT, arp_in(forged))
    assert [(d.port, d.frame.arp_tpa) for d in check] == [(MEMBER_PORT[B], B)], "B's own port is asked"
    net.send(MEMBER_PORT[B], arp_in(forged))
    net.tick(CONFIRM)
    assert ports_of(net.send(MEMBER_PORT[A], Frame(eth_src=CM, eth_dst=DM[B]))) == {MEMBER_PORT[B]}
    assert net.core.status(net.now)["counters"]["dropped_spoofed"] == 1


def test_a_probe_answer_nobody_asked_for_locates_no_one():
    net = fabric()
    net.now += 2 * CONFIRM  # the probes sent at connect are no longer waiting for an answer
    forged = reply(B, "0.0.0.0", tha=PROBE_MAC, eth_dst=PROBE_MAC)
    assert net.send(OTHER_PORT, arp_in(forged)) == []
    assert ("web", B) not in net.core.located_ports(1)
    net.tick(5.0)  # now the app probes every port for B again, and B's own answer locates it
    net.send(MEMBER_PORT[B], arp_in(forged))
    assert net.core.located_ports(1)[("web", B)] == MEMBER_PORT[B]


def test_a_quiet_member_is_probed_on_its_port_and_unlocated_after_unanswered_probes():
    net = fabric()
    announce_all(net)
    net.tick(5.0)  # unlocated probing has nothing to do; nobody is idle yet
    checks = net.tick(IDLE)
    assert sorted((d.port, d.frame.arp_tpa) for d in checks) == sorted((p, ip) for ip, p in MEMBER_PORT.items())
    net.send(MEMBER_PORT[A], arp_in(reply(A, "0.0.0.0", tha=PROBE_MAC, eth_dst=PROBE_MAC)))  # only A answers
    for _ in range(UNANSWERED):
        net.tick(CONFIRM)
    assert set(net.core.located_ports(1)) == {("web", A)}
    assert ports_of(net.send(CLIENT_PORT, Frame(eth_src=CLIENT_MAC, eth_dst=CM))) == {MEMBER_PORT[A]}
    everywhere = net.tick(5.0)
    assert {(d.port, d.frame.arp_tpa) for d in everywhere} == {(p, ip) for p in SWITCH_PORTS for ip in (B, C)}


def test_a_removed_port_takes_its_learned_members_flows_with_it():
    net = fabric()
    announce_all(net)
    net.apply(net.core.port_changed(1, MEMBER_PORT[B], present=False, up=False, now=net.now))
    assert ports_of(net.send(MEMBER_PORT[A], Frame(eth_src=CM, eth_dst=DM[B]))) == {NORMAL}
    assert ports_of(net.send(CLIENT_PORT, Frame(eth_src=CLIENT_MAC, eth_dst=CM))) == {MEMBER_PORT[A], MEMBER_PORT[C]}


def test_a_restarted_controller_adopts_locations_from_the_switch_and_changes_nothing():
    net = fabric()
    announce_all(net)
    before = dict(net.table.flows)

    restarted = NlbCore(web_config(ANSWERING["arp"]))
    restarted.switch_connected(1, dict.fromkeys(SWITCH_PORTS, True))
    work = restarted.flows_read_back(1, before.values(), now=0.0)
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
    config = web_config(ANSWERING["arp"])
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
    unmasked = FakeFabric(
        NlbCore(replace(web_config(ANSWERING["arp"]), settings=Settings(source_masking=False))), 1, [1, 2, 3, 4, 5]
    )
    announce_all(unmasked)
    assert unmasked.send(MEMBER_PORT[B], Frame(eth_src=CM, eth_dst=CLIENT_MAC))[0].frame.eth_src == CM


def test_a_member_port_that_is_down_gets_nothing_until_it_is_up():
    net = fabric()
    announce_all(net)
    net.apply(net.core.port_changed(1, MEMBER_PORT[C], present=True, up=False, now=net.now))
    assert ports_of(net.send(CLIENT_PORT, Frame(eth_src=CLIENT_MAC, eth_dst=CM))) == {MEMBER_PORT[A], MEMBER_PORT[B]}
    assert ports_of(net.send(MEMBER_PORT[A], Frame(eth_src=CM, eth_dst=DM[C]))) == set(), "dropped, not flooded"
    net.apply(net.core.port_changed(1, MEMBER_PORT[C], present=True, up=True, now=net.now))
    assert ports_of(net.send(MEMBER_PORT[A], Frame(eth_src=CM, eth_dst=DM[C]))) == {MEMBER_PORT[C]}


def multicast_net() -> tuple[FakeFabric, NlbCore]:
    config = web_config(ANSWERING["arp"])
    cluster = replace(config.registry.clusters[0], mode=ClusterMode.MULTICAST, cluster_mac=MULTICAST_CM)
    config = replace(config, registry=Registry(clusters=(cluster,)))
    net = FakeFabric(NlbCore(config), 1, list(SWITCH_PORTS))
    for ip, port in MEMBER_PORT.items():
        net.send(port, arp_in(probe_answer(ip, own_mac(port))))
    return net, NlbCore(config)


def own_mac(port: int) -> str:
    return f"02:00:00:00:00:{port:02x}"


def probe_answer(ip: str, mac: str):
    return reply(ip, "0.0.0.0", tha=PROBE_MAC, eth_dst=PROBE_MAC, sha=mac, eth_src=mac)


def restarted_fabric(net: FakeFabric, core: NlbCore, down: tuple[int, ...] = ()) -> FakeFabric:
    """A new controller on the same switch: the flows stay, the core starts over from them."""
    return FakeFabric(core, 1, list(SWITCH_PORTS), table=net.table, down=down)


def test_a_restart_keeps_a_multicast_clusters_delivery_ports_until_its_members_are_found_again():
    """Members with their own MACs leave no member flow behind; the cluster flow itself is kept."""
    net, core = multicast_net()
    before = dict(net.table.flows)
    restarted = restarted_fabric(net, core)
    assert restarted.table.flows == before, "nothing changed by the restart"
    assert {out.frame.arp_tpa for out in restarted.sent} == set(MEMBER_PORT), "members are looked for again"


def test_held_ports_no_member_answers_for_are_let_go_after_a_few_probe_rounds():
    """After a restart B answers from a new port and C not at all: their old ports stop getting the cluster."""
    net, core = multicast_net()
    restarted = restarted_fabric(net, core)
    restarted.send(MEMBER_PORT[A], arp_in(probe_answer(A, own_mac(1))))
    restarted.send(OTHER_PORT, arp_in(probe_answer(B, own_mac(2))))
    assert ports_of(restarted.send(CLIENT_PORT, Frame(eth_src=CLIENT_MAC, eth_dst=MULTICAST_CM))) == {1, 2, 3, 5}
    for _ in range(UNANSWERED + 1):
        restarted.tick(5.0)
    assert ports_of(restarted.send(CLIENT_PORT, Frame(eth_src=CLIENT_MAC, eth_dst=MULTICAST_CM))) == {1, OTHER_PORT}


def unicast_restart_with_c_down() -> FakeFabric:
    """A unicast restart while C's port is down: A and B are adopted from their flows, C stays unlocated."""
    net = fabric()
    announce_all(net)
    net.apply(net.core.port_changed(1, MEMBER_PORT[C], present=True, up=False, now=net.now))
    return restarted_fabric(net, NlbCore(web_config(ANSWERING["arp"])), down=(MEMBER_PORT[C],))


def test_a_deleted_members_port_gets_nothing_after_a_restart_even_while_another_member_is_unlocated():
    restarted = unicast_restart_with_c_down()
    assert ports_of(restarted.send(CLIENT_PORT, Frame(eth_src=CLIENT_MAC, eth_dst=CM))) == {1, 2}
    registry, _ = remove_member(restarted.core.registry, "web", B)
    restarted.apply(restarted.core.set_registry(registry, restarted.now)[1])
    assert ports_of(restarted.send(CLIENT_PORT, Frame(eth_src=CLIENT_MAC, eth_dst=CM))) == {1}


def test_a_moved_members_old_port_gets_nothing_after_a_restart_even_while_another_member_is_unlocated():
    restarted = unicast_restart_with_c_down()
    restarted.send(OTHER_PORT, arp_in(request(B, B)))
    restarted.tick(CONFIRM)
    assert ports_of(restarted.send(CLIENT_PORT, Frame(eth_src=CLIENT_MAC, eth_dst=CM))) == {1, OTHER_PORT}


def test_two_members_on_one_port_are_reported_once_in_status_and_the_log():
    net = fabric()
    net.send(1, arp_in(request(A, A)))
    net.send(1, arp_in(request(B, B)))
    net.send(1, arp_in(request(B, B)))
    shared = net.core.status(net.now)["switches"][0]["shared_ports"]
    assert shared == [
        {"port": 1, "members": [{"cluster": "web", "ip": A}, {"cluster": "web", "ip": B}], "other_sources": []}
    ]
    logged = [note for note in net.notes if "shared" in note.text]
    assert [(note.level, note.text.split(":")[0]) for note in logged] == [(Level.WARNING, "dpid 1 port 1 is shared")]
    assert f"members {A} (web), {B} (web)" in logged[0].text and "own edge port" in logged[0].text


def test_a_non_member_source_on_a_members_port_is_reported():
    net = fabric()
    net.send(1, arp_in(request(A, A)))
    net.send(1, arp_in(probe_answer(B, CLIENT_MAC)))  # another host behind port 1 claims B's address
    shared = net.core.shared_ports(1)
    assert shared == [{"port": 1, "members": [{"cluster": "web", "ip": A}], "other_sources": [CLIENT_MAC]}]
    assert net.core.shared_ports(1) == shared
    assert fabric().core.shared_ports(1) == [], "a fabric of one member per port reports nothing"
