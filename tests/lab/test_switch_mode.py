"""Switch mode live (issue 10): the switch answers and spreads members' ARP itself, so in steady state the
controller gets no packet-in, and members keep resolving each other while it is down.

One lab per runtime: members m1..m3, a client and an outsider on br0, the cluster in `arp: switch`. The
storm test has a lab of its own (os-ken), with the slow-path meter set low.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from itertools import permutations

import pytest
from scapy.layers.l2 import ARP, Ether

from tests.lab.appkit import (
    APP_COOKIES,
    RUNTIMES,
    VIP,
    ClusterLab,
    api_ok,
    dm,
    start_cluster,
)
from tests.lab.stormkit import arp_request, storm
from tests.netlab import CLUSTER_MAC, Lab

WARM_UP_SECONDS = 12  # longer than the app's counter reads (idle_seconds / 3): every member heard by counts
STEADY_SECONDS = 20


@pytest.fixture(scope="module", params=RUNTIMES)
def net(request, lab_available) -> Iterator[ClusterLab]:
    with Lab() as lab:
        cluster = start_cluster(lab, request.param, "switch")
        for member in cluster.members:  # entries go stale and are probed again every few seconds
            lab.run(member, "sysctl", "-qw", "net.ipv4.neigh.eth0.base_reachable_time_ms=2000")
            lab.run(member, "sysctl", "-qw", "net.ipv4.neigh.eth0.delay_first_probe_time=1")
        yield cluster
    assert lab.leftovers() == []


def resolve_every_pair(net: ClusterLab) -> None:
    for member in net.members:
        net.lab.flush_neigh(member)
    for src, dst in permutations(net.members, 2):
        assert net.lab.ping(src, dst.ip, count=1, timeout=2), f"{src.name} -> {dst.name}"


def assert_peers_are_dedicated_macs(net: ClusterLab) -> None:
    for member in net.members:
        table = net.lab.neigh(member)
        for peer in net.members:
            if peer is not member:
                assert table[peer.ip].lladdr == dm(peer), f"{member.name} holds {table[peer.ip]} for {peer.name}"


def controller_bound(lab: Lab) -> int:
    """Frames that reached the controller path: the punt-out flow of table 3 counts every one."""
    [punt_out] = [flow for flow in lab.dump_flows(APP_COOKIES, table=3)]
    return punt_out.n_packets


def answered_by_the_switch(lab: Lab) -> int:
    return sum(flow.n_packets for flow in lab.dump_flows(APP_COOKIES, table=4) if "IN_PORT" in flow.actions)


def packet_ins_counted(net: ClusterLab) -> int:
    return sum(api_ok(net.lab, "GET", "/nlb/status")["counters"].values())


def talk(net: ClusterLab, seconds: float) -> None:
    """Members ping each other and the outsider, so their entries keep going stale and being refreshed."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for src, dst in permutations(net.members, 2):
            assert net.lab.ping(src, dst.ip, count=1, timeout=2), f"{src.name} -> {dst.name}"
        for member in net.members:
            assert net.lab.ping(member, net.outsider.ip, count=1, timeout=2)
        time.sleep(0.5)


def settled(read, lab: Lab) -> int:
    """A counter once OVS's revalidators caught up (they update flow stats lazily)."""
    value = read()
    for _ in range(20):
        time.sleep(0.6)
        again = read()
        if again == value:
            return value
        value = again
    raise AssertionError("counters never settled")


def test_in_steady_state_the_controller_receives_no_packet_in(net):
    resolve_every_pair(net)
    talk(net, WARM_UP_SECONDS)
    punted = settled(lambda: controller_bound(net.lab), net.lab)
    counted = packet_ins_counted(net)
    answered = settled(lambda: answered_by_the_switch(net.lab), net.lab)
    resolve_every_pair(net)  # the positive control: members really did ARP for each other meanwhile
    talk(net, STEADY_SECONDS)
    assert settled(lambda: answered_by_the_switch(net.lab), net.lab) >= answered + 6, "no ARP was answered"
    assert settled(lambda: controller_bound(net.lab), net.lab) == punted
    assert packet_ins_counted(net) == counted
    assert_peers_are_dedicated_macs(net)


def test_the_switchs_answer_carries_the_peers_dedicated_mac_field_by_field(net):
    requester, peer = net.members[0], net.members[1]
    net.lab.flush_neigh(requester)
    with net.lab.capture(requester, "arp") as view:
        assert net.lab.ping(requester, peer.ip, count=1, timeout=2)
    answers = [f for f in view.frames if ARP in f and f[ARP].op == 2 and f[ARP].psrc == peer.ip]
    assert answers, "no answer reached the requester"
    for frame in answers:
        fields = (frame[Ether].src, frame[Ether].dst, frame[ARP].hwsrc, frame[ARP].hwdst, frame[ARP].pdst)
        assert fields == (dm(peer), CLUSTER_MAC, dm(peer), CLUSTER_MAC, requester.ip)


@pytest.mark.parametrize("kill9", [True, False], ids=["sigkill", "sigterm"])
def test_with_the_controller_down_members_resolve_each_other_and_outsiders_the_cluster_mac(net, kill9):
    before = {(f.table, f.priority, f.match): f.actions for f in net.lab.dump_flows(APP_COOKIES)}
    net.lab.stop_controller(kill9=kill9)
    net.lab.wait_disconnected()
    try:
        resolve_every_pair(net)
        assert_peers_are_dedicated_macs(net)
        net.lab.flush_neigh(net.outsider)
        for address in (VIP, *(member.ip for member in net.members)):
            assert net.lab.ping(net.outsider, address, count=1, timeout=2), address
            assert net.lab.neigh(net.outsider)[address].lladdr == CLUSTER_MAC
    finally:
        net.lab.restart_controller()
        net.lab.wait_connected()
    log_line = "synchronised: 0 added, 0 deleted"
    deadline = time.monotonic() + 20
    while log_line not in net.lab.controller_log() and time.monotonic() < deadline:
        time.sleep(0.3)
    assert log_line in net.lab.controller_log(), net.lab.controller_log()
    assert {(f.table, f.priority, f.match): f.actions for f in net.lab.dump_flows(APP_COOKIES)} == before


SLOW_PATH_RATE = 200  # packets/s the storm lab's slow-path meter lets through (fabric.slow_path_rate)
STORM_RATE = 2000  # ten times that
STORM_SECONDS = 4


def slow_path_band_drops(lab: Lab) -> int:
    """Packets the slow-path meter's drop band has dropped (ovs-ofctl meter-stats)."""
    out = lab.ofctl("meter-stats", "meter=slowpath")
    found = re.search(r"0: packet_count:(\d+)", out)
    assert found, f"no drop band in the slow-path meter's stats:\n{out}"
    return int(found.group(1))


def test_a_storm_of_member_arp_is_capped_by_the_slow_path_meter_and_the_switch_goes_on_answering(lab_available):
    """The in-switch answers run in ovs-vswitchd's slow path; the OFPM_SLOWPATH meter bounds them, so a
    member flooding ARP for a peer gets at most the meter's rate of answers and the switch stays well."""
    with Lab() as lab:
        members = start_cluster(lab, "osken", "switch", f"fabric: {{slow_path_rate: {SLOW_PATH_RATE}}}\n").members
        assert f"rate={SLOW_PATH_RATE} burst_size={SLOW_PATH_RATE}" in lab.ofctl("dump-meters", "meter=slowpath")
        m1, m2 = members[0], members[1]
        assert lab.ping(m1, m2.ip, count=1, timeout=2), "the positive control: m1 resolves m2 and reaches it"
        assert lab.ping(m2, m1.ip, count=1, timeout=2)
        answered = settled(lambda: answered_by_the_switch(lab), lab)
        punted = settled(lambda: controller_bound(lab), lab)
        dropped = settled(lambda: slow_path_band_drops(lab), lab)

        request = arp_request(CLUSTER_MAC, CLUSTER_MAC, m1.ip, m2.ip)
        answers_filter = f"inbound and arp and arp[6:2] = 2 and arp src host {m2.ip}"
        with (
            lab.capture(m1, answers_filter, settle=1.0) as view,
            storm(lab, m1, request, rate=STORM_RATE, seconds=STORM_SECONDS + 30) as running,
        ):
            time.sleep(STORM_SECONDS)
            sent = running.stop()
        span = running.stopped - running.started
        answers = len([f for f in view.frames if ARP in f and f[ARP].op == 2])
        assert sent >= STORM_RATE * STORM_SECONDS // 2, f"the storm sent only {sent} requests"
        assert settled(lambda: answered_by_the_switch(lab), lab) > answered, "the switch answered none of them"
        assert 0 < answers <= SLOW_PATH_RATE * (span + 1) + SLOW_PATH_RATE, (sent, span, answers)
        assert settled(lambda: slow_path_band_drops(lab), lab) - dropped >= sent - answers - SLOW_PATH_RATE
        assert settled(lambda: controller_bound(lab), lab) == punted, "the storm reached the controller"

        lab.flush_neigh(m1)
        assert lab.ping(m1, m2.ip, count=1, timeout=2), "after the storm m1 resolves m2 again"
        assert lab.neigh(m1)[m2.ip].lladdr == dm(m2)
    assert lab.leftovers() == []
