"""The method on a real Open vSwitch with Linux members, under both runtimes and both ARP modes.

One lab per (runtime, ARP mode) serves the tests of this module; each test sets up the state it checks.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import ExitStack
from itertools import permutations

import pytest
from scapy.layers.inet import ICMP, IP
from scapy.layers.l2 import ARP, Ether

from tests.lab.appkit import (
    APP_COOKIES,
    ARP_MODES,
    RUNTIMES,
    VIP,
    ClusterLab,
    dm,
    start_cluster,
)
from tests.netlab import CLUSTER_MAC, Lab


@pytest.fixture(scope="module", params=[(r, a) for r in RUNTIMES for a in ARP_MODES], ids=lambda p: "-".join(p))
def net(request, lab_available) -> Iterator[ClusterLab]:
    runtime, arp = request.param
    with Lab() as lab:
        yield start_cluster(lab, runtime, arp)
    assert lab.leftovers() == []


def populate_caches(net: ClusterLab) -> None:
    for src, dst in permutations(net.members, 2):
        assert net.lab.ping(src, dst.ip, count=1, timeout=2), f"{src.name} -> {dst.name}"


def assert_peer_entries_are_dedicated_macs(net: ClusterLab) -> None:
    for member in net.members:
        table = net.lab.neigh(member)
        for peer in net.members:
            if peer is not member and peer.ip in table:
                assert table[peer.ip].lladdr == dm(peer), f"{member.name} holds {table[peer.ip]} for {peer.name}"


def settled_packet_counts(lab: Lab) -> dict[int, int]:
    """n_packets per app flow, once OVS's revalidators have caught up (they update stats lazily)."""
    counts = {f.cookie: f.n_packets for f in lab.dump_flows(APP_COOKIES)}
    for _ in range(20):
        time.sleep(0.6)
        again = {f.cookie: f.n_packets for f in lab.dump_flows(APP_COOKIES)}
        if again == counts:
            return counts
        counts = again
    raise AssertionError("flow counters never settled")


def arp_frames(capture) -> list:
    return [frame for frame in capture.frames if ARP in frame]


def test_every_member_pings_every_peer_by_dip(net):
    failed = [(s.name, d.name) for s, d in permutations(net.members, 2) if not net.lab.ping(s, d.ip, count=3)]
    assert failed == []


def test_every_member_exchanges_tcp_and_udp_with_every_peer(net):
    for port, (src, dst) in enumerate(permutations(net.members, 2), start=7100):
        assert net.lab.tcp_exchange(src, dst, dst.ip, port), f"TCP {src.name} -> {dst.name}"
        assert net.lab.udp_exchange(src, dst, dst.ip, port + 100), f"UDP {src.name} -> {dst.name}"


def test_every_member_resolves_every_peer_to_its_dedicated_mac_never_the_cluster_mac(net):
    populate_caches(net)
    for member in net.members:
        table = net.lab.neigh(member)
        assert {peer.ip: table[peer.ip].lladdr for peer in net.members if peer is not member} == {
            peer.ip: dm(peer) for peer in net.members if peer is not member
        }


def test_relay_the_target_stores_the_requesters_dedicated_mac_and_proxy_never_shows_it_the_request(net):
    requester, target = net.members[0], net.members[1]
    net.lab.flush_neigh(requester)
    net.lab.flush_neigh(target)
    assert net.lab.arping(requester, target.ip, source_ip=requester.ip) == [dm(target)]
    if net.arp == "relay":
        assert net.lab.neigh(target)[requester.ip].lladdr == dm(requester)
    else:
        assert requester.ip not in net.lab.neigh(target)


def test_an_arp_with_the_vip_as_sender_ip_is_answered_with_the_peers_dedicated_mac(net):
    """Linux with arp_announce at its default may put the VIP in arp_spa; relay then answers as proxy does."""
    requester, target = net.members[2], net.members[0]
    assert net.lab.arping(requester, target.ip, source_ip=VIP) == [dm(target)]
    assert_peer_entries_are_dedicated_macs(net)


def test_gratuitous_arp_reaches_peers_with_the_dedicated_mac_and_outsiders_unchanged(net):
    populate_caches(net)
    sender, peers = net.members[0], net.members[1:]
    with ExitStack() as stack:
        seen = {h.name: stack.enter_context(net.lab.capture(h, "arp")) for h in [*peers, net.client, net.outsider]}
        net.lab.gratuitous_arp(sender, sender.ip)
        net.lab.gratuitous_arp(sender, sender.ip, reply=True)
    for peer in peers:
        frames = [f for f in arp_frames(seen[peer.name]) if f[ARP].psrc == sender.ip]
        assert {f[ARP].op for f in frames} == {1, 2}, f"{peer.name} saw {frames}"
        assert {(f[Ether].src, f[ARP].hwsrc) for f in frames} == {(dm(sender), dm(sender))}
    for outsider in (net.client, net.outsider):
        frames = [f for f in arp_frames(seen[outsider.name]) if f[ARP].psrc == sender.ip]
        assert {f[ARP].op for f in frames} == {1, 2}
        assert {f[ARP].hwsrc for f in frames} == {CLUSTER_MAC}
    assert_peer_entries_are_dedicated_macs(net)


def test_arp_for_an_outsider_leaves_peer_caches_clean_and_is_answered_by_the_outsider(net):
    populate_caches(net)
    sender = net.members[0]
    net.lab.flush_neigh(sender)
    with net.lab.capture(net.members[1], "arp") as peer_view:
        assert net.lab.ping(sender, net.outsider.ip, count=1)  # the kernel's own ARP for the outsider
    assert net.lab.neigh(sender)[net.outsider.ip].lladdr == net.outsider.mac
    frames = [f for f in arp_frames(peer_view) if f[ARP].psrc == sender.ip]
    assert frames and {f[ARP].hwsrc for f in frames} == {dm(sender)}
    assert net.lab.neigh(net.outsider)[sender.ip].lladdr == CLUSTER_MAC
    assert_peer_entries_are_dedicated_macs(net)


def test_a_stale_entry_is_probed_by_unicast_and_stays_the_dedicated_mac(net):
    member, peer = net.members[0], net.members[2]
    net.lab.run(member, "sysctl", "-qw", "net.ipv4.neigh.eth0.delay_first_probe_time=1")
    assert net.lab.ping(member, peer.ip, count=1)
    net.lab.set_neigh_stale(member, peer.ip)
    with net.lab.capture(member, "arp") as probe_view:  # DELAY for 1 s, then a unicast probe
        assert net.lab.ping_replies(member, peer.ip, count=8, timeout=2, interval=0.4) == 8
    probes = [f for f in arp_frames(probe_view) if f[ARP].op == 1 and f[ARP].pdst == peer.ip]
    answers = [f for f in arp_frames(probe_view) if f[ARP].op == 2 and f[ARP].psrc == peer.ip]
    assert probes and all(f[Ether].dst == dm(peer) for f in probes), "Linux did not probe the cached MAC"
    assert answers and {(f[ARP].hwsrc, f[Ether].dst, f[ARP].hwdst) for f in answers} == {
        (dm(peer), CLUSTER_MAC, CLUSTER_MAC)
    }
    entry = net.lab.neigh(member)[peer.ip]
    assert (entry.lladdr, entry.state) == (dm(peer), "REACHABLE")


def test_a_members_duplicate_address_probe_for_its_own_ip_gets_no_answer(net):
    member = net.members[1]
    assert net.lab.dad_probe(member, member.ip) == []


def test_a_frame_for_a_dedicated_mac_leaves_only_on_the_targets_port_addressed_to_the_cluster_mac(net):
    src, dst = net.members[0], net.members[1]
    assert net.lab.ping(src, dst.ip, count=1)
    echo = f"icmp[icmptype] = icmp-echo and src host {src.ip} and dst host {dst.ip}"
    with ExitStack() as stack:
        seen = {h.name: stack.enter_context(net.lab.capture(h, echo)) for h in [*net.members, net.client, net.outsider]}
        assert net.lab.ping(src, dst.ip, count=5)
    requests = [f for f in seen[dst.name].frames if ICMP in f]
    assert len(requests) == 5
    assert {(f[Ether].dst, f[IP].dst) for f in requests} == {(CLUSTER_MAC, dst.ip)}
    others = {name: len(cap.frames) for name, cap in seen.items() if name not in (src.name, dst.name)}
    assert others == {name: 0 for name in others}


def test_data_frames_cause_no_packet_in(net):
    """Only ARP (and ND) may reach the controller: every packet-in during a data burst is an ARP a member
    sent (IPv6 is off in this lab: tests/lab/test_ipv6.py)."""
    populate_caches(net)
    flows = net.lab.dump_flows(APP_COOKIES)
    punts = [f for f in flows if f.actions == "goto_table:2"]  # into the punt meters (docs/storms.md)
    nd = re.compile(r"icmp6,.*icmp_type=13[3-6]")  # a member's Neighbor Discovery (docs/ipv6.md)
    only_arp_and_nd = all(f.match.startswith("arp,") or nd.match(f.match) for f in punts)
    assert punts and only_arp_and_nd, "only ARP and ND may go to the controller"
    assert [f.table for f in flows if "CONTROLLER" in f.actions] == [3], "the punt meters' table alone punts"
    src, dst = net.members[0], net.members[1]
    with ExitStack() as stack:  # the captures span both counter readings: every frame punted in between is in them
        sent_arp = [stack.enter_context(net.lab.capture(m, "arp", direction="out")) for m in net.members]
        before = settled_packet_counts(net.lab)
        assert net.lab.ping(src, dst.ip, count=50, timeout=2)
        assert net.lab.tcp_exchange(src, dst, dst.ip, 7300)
        after = settled_packet_counts(net.lab)
    delivered = sum(after[f.cookie] - before[f.cookie] for f in net.lab.dump_flows(APP_COOKIES) if f.priority == 200)
    punted = sum(after[f.cookie] - before[f.cookie] for f in punts)
    members_arp = sum(1 for cap in sent_arp for f in cap.frames if ARP in f and f[ARP].hwsrc == CLUSTER_MAC)
    assert delivered >= 100, "member-to-member frames did not take the delivery flows"
    if net.arp == "switch":  # the switch answers members' ARP itself: none reaches the controller
        assert punted == 0, f"{punted} packet-ins, though the switch answers members' {members_arp} ARP frames"
    else:  # members' ARP sent while a reading settled may fall outside the window: at most as many, not exactly
        assert punted <= members_arp, f"{punted} packet-ins, but members sent only {members_arp} ARP frames"
    assert "not ARP" not in net.lab.controller_log()


def test_an_outsider_resolves_dips_and_the_vip_to_the_cluster_mac_and_reaches_both(net):
    """The ARP payload reaches outsiders unchanged: with source masking only the Ethernet source differs."""
    client = net.client
    net.lab.flush_neigh(client)
    with net.lab.capture(client, "arp") as seen:
        for member in net.members:
            assert net.lab.ping(client, member.ip, count=1)
        assert net.lab.ping(client, VIP)
    table = net.lab.neigh(client)
    resolved = {ip: table[ip].lladdr for ip in [*(m.ip for m in net.members), VIP]}
    assert resolved == dict.fromkeys(resolved, CLUSTER_MAC)
    replies = [f for f in arp_frames(seen) if f[ARP].op == 2]
    assert replies and {f[ARP].hwsrc for f in replies} == {CLUSTER_MAC}
    assert net.lab.tcp_exchange(client, net.members[1], net.members[1].ip, 7400)


def test_cluster_traffic_from_a_client_reaches_every_member_and_not_the_outsider(net):
    with ExitStack() as stack:
        seen = {
            h.name: stack.enter_context(net.lab.capture(h, f"ether dst {CLUSTER_MAC} and icmp"))
            for h in [*net.members, net.outsider]
        }
        net.lab.ping(net.client, VIP, count=3)
    assert all(len(seen[m.name].frames) >= 3 for m in net.members)
    assert seen[net.outsider.name].frames == []


def test_members_keep_reaching_each_other_over_time(net):
    """Invariant 2 over neighbour refreshes: entries age to STALE and are probed again while pings run."""
    for member in net.members:
        net.lab.run(member, "sysctl", "-qw", "net.ipv4.neigh.eth0.base_reachable_time_ms=1000")
        net.lab.run(member, "sysctl", "-qw", "net.ipv4.neigh.eth0.delay_first_probe_time=1")
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline:
        populate_caches(net)
        assert_peer_entries_are_dedicated_macs(net)
        time.sleep(0.5)
