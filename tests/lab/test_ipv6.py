"""IPv6 on a real Open vSwitch with Linux members, under both runtimes and in every ARP mode: members
reach each other by their IPv6 DIPs while their caches hold only dedicated MACs for each other, clients
resolve the members and the VIP to the cluster MAC, and DAD keeps working (docs/ipv6.md).

Each namespace has IPv6 on with random link-local addresses (the rule docs/ipv6.md gives for members that
share one MAC); members add the shared IPv6 VIP with nodad, as every member holds it, and preferred_lft 0,
so that Linux never picks it as the source of its own connections (a peer drops a packet from its own VIP).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import permutations

import pytest
from scapy.layers.inet6 import ICMPv6ND_NA, ICMPv6NDOptDstLLAddr, IPv6
from scapy.layers.l2 import Ether

from tests.lab.appkit import ARP_MODES, RUNTIMES, cluster_yaml, dm, expected_table, wait_for_table, write_config
from tests.netlab import CLUSTER_MAC, CLUSTER_VIP6, IPV6_PREFIX, Host, Lab

VIP6 = CLUSTER_VIP6.split("/")[0]


@dataclass
class Ipv6Lab:
    lab: Lab
    members: list[Host]
    client: Host
    arp: str


@pytest.fixture(scope="module", params=[(r, a) for r in RUNTIMES for a in ARP_MODES], ids=lambda p: "-".join(p))
def net(request, lab_available) -> Iterator[Ipv6Lab]:
    runtime, arp = request.param
    with Lab() as lab:
        members, client = lab.add_typical_cluster(ipv6=True)
        config_path = write_config(lab, cluster_yaml(arp, ipv6=True))
        lab.start_controller(runtime, config_path)
        lab.wait_connected()
        expected = expected_table(config_path, members)
        table = wait_for_table(lab, expected)
        assert sorted(table) == sorted(expected), f"app flows never became the expected set:\n{lab.controller_log()}"
        yield Ipv6Lab(lab, members, client, arp)
    assert lab.leftovers() == []


def assert_peers_held_as_dedicated_macs(net: Ipv6Lab) -> None:
    """`ip -6 neigh` of every member: each peer's IPv6 DIP, where cached, at that peer's dedicated MAC."""
    for member in net.members:
        table = net.lab.neigh6(member)
        for peer in net.members:
            entry = table.get(peer.ip6)
            if peer is not member and entry is not None and entry.lladdr is not None:
                assert entry.lladdr == dm(peer), f"{member.name} holds {entry} for {peer.name}"


def test_every_member_reaches_every_other_by_ipv6_dip_over_icmpv6_and_tcp(net):
    for src, dst in permutations(net.members, 2):
        assert net.lab.ping(src, dst.ip6, count=2, timeout=2), f"{src.name} -> {dst.name} ({net.arp})"
        assert net.lab.tcp_exchange(src, dst, dst.ip6, 7000), f"TCP {src.name} -> {dst.name}"
    for src in net.members:  # positive control: every peer was resolved, so the check below reads real entries
        table = net.lab.neigh6(src)
        assert all(table.get(peer.ip6) is not None for peer in net.members if peer is not src), table
    assert_peers_held_as_dedicated_macs(net)


def test_ipv4_and_ipv6_run_between_the_same_members_at_once(net):
    src, dst = net.members[0], net.members[1]
    with net.lab.tcp_session(src, dst, dst.ip, 7001) as four, net.lab.tcp_session(src, dst, dst.ip6, 7002) as six:
        assert four.connected and six.connected
        for _ in range(3):
            assert four.echo("v4") and six.echo("v6")
    assert net.lab.neigh(src)[dst.ip].lladdr == net.lab.neigh6(src)[dst.ip6].lladdr == dm(dst)


def test_an_unsolicited_override_advertisement_leaves_peers_with_the_dedicated_mac(net):
    m1, m2 = net.members[0], net.members[1]
    assert net.lab.ping(m2, m1.ip6, count=1, timeout=2)
    advert = (
        Ether(src=CLUSTER_MAC, dst="33:33:00:00:00:01")
        / IPv6(src=m1.ip6, dst="ff02::1", hlim=255)
        / ICMPv6ND_NA(tgt=m1.ip6, R=0, S=0, O=1)
        / ICMPv6NDOptDstLLAddr(lladdr=CLUSTER_MAC)
    )
    net.lab.send_frames(m1, [bytes(advert)])
    time.sleep(0.5)
    assert net.lab.neigh6(m2)[m1.ip6].lladdr == dm(m1)
    assert net.lab.ping(m2, m1.ip6, count=1, timeout=2)


def test_reachability_probes_of_stale_entries_keep_the_dedicated_mac(net):
    m1, m2 = net.members[0], net.members[2]
    assert net.lab.ping(m1, m2.ip6, count=1, timeout=2)
    net.lab.run(m1, "ip", "-6", "neigh", "change", m2.ip6, "dev", "eth0", "nud", "stale")
    assert net.lab.neigh6(m1)[m2.ip6].state == "STALE"
    assert net.lab.ping(m1, m2.ip6, count=1, timeout=2)
    time.sleep(7)  # the reachability probe goes out delay_first_probe_time (5 s) after the entry is used
    entry = net.lab.neigh6(m1)[m2.ip6]
    assert entry.lladdr == dm(m2), entry
    assert_peers_held_as_dedicated_macs(net)


def test_a_client_reaches_the_ipv6_vip_and_every_member_dip_at_the_cluster_mac(net):
    assert net.lab.ping_replies(net.client, VIP6, count=2, timeout=2) >= 1
    for member in net.members:
        assert net.lab.ping(net.client, member.ip6, count=1, timeout=2), member.name
    table = net.lab.neigh6(net.client)
    assert {address: table[address].lladdr for address in [VIP6, *(m.ip6 for m in net.members)]} == dict.fromkeys(
        [VIP6, *(m.ip6 for m in net.members)], CLUSTER_MAC
    )


def test_duplicate_address_detection_passes_for_a_new_address_and_catches_a_real_duplicate(net):
    m1 = net.members[0]
    fresh = IPV6_PREFIX + "21"
    net.lab.run(m1, "ip", "addr", "add", f"{fresh}/64", "dev", "eth0")
    net.lab.wait_for_dad(m1)  # raises if DAD failed
    duplicate = IPV6_PREFIX + "31"
    net.lab.run(net.client, "ip", "addr", "add", f"{duplicate}/64", "dev", "eth0")
    net.lab.wait_for_dad(net.client)
    net.lab.run(m1, "ip", "addr", "add", f"{duplicate}/64", "dev", "eth0")
    deadline = time.monotonic() + 10
    while "dadfailed" not in (shown := net.lab.run(m1, "ip", "-6", "addr", "show", "dev", "eth0").stdout):
        assert time.monotonic() < deadline, f"the duplicate {duplicate} was never detected:\n{shown}"
        time.sleep(0.2)
    net.lab.run(m1, "ip", "addr", "del", f"{duplicate}/64", "dev", "eth0")
    net.lab.run(m1, "ip", "addr", "del", f"{fresh}/64", "dev", "eth0")
