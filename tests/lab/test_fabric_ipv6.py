"""IPv6 on a fabric of two switches, live (issue 11): topology A (tests/lab/fabrickit.py) with every host
dual-stack, the members' IPv6 DIPs and the IPv6 VIP registered, under both runtimes and every ARP mode.

Frames for a dedicated MAC cross the uplinks and the Linux bridge as IPv4 ones do, a member's Neighbor
Discovery for a peer on the other switch is answered (or relayed there) with dedicated MACs, and hosts of
no cluster, on the Linux bridge or on an nlbflow switch, still see the cluster MAC for every member address.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack

import pytest
from scapy.layers.inet6 import ICMPv6ND_NS, ICMPv6NDOptSrcLLAddr

from tests.lab.appkit import dm
from tests.lab.fabrickit import FabricLab, build_topology_a, cross_pairs, log_tail, member_pairs, start_fabric
from tests.lab.test_fabric import COMBINATIONS, combination_id
from tests.netlab import CLUSTER_MAC, CLUSTER_VIP6, Lab

VIP6 = CLUSTER_VIP6.split("/")[0]


@pytest.fixture(scope="module", params=COMBINATIONS, ids=combination_id)
def fabric(request, lab_available) -> Iterator[FabricLab]:
    runtime, arp = request.param
    with Lab(dpid=None) as lab:
        yield start_fabric(build_topology_a(lab, ipv6=True), runtime, arp)
    assert lab.leftovers() == []


def peer_entries6(fabric: FabricLab, member) -> dict[str, str | None]:
    """What a member's `ip -6 neigh` holds for each peer's IPv6 DIP (None: no entry, or unresolved)."""
    table = fabric.lab.neigh6(member)
    return {p.name: table[p.ip6].lladdr if p.ip6 in table else None for p in fabric.members if p is not member}


def test_every_member_pair_reaches_each_other_by_ipv6_dip_across_the_switches_and_caches_only_dedicated_macs(
    fabric: FabricLab,
):
    lab = fabric.lab
    unanswered = [(s.name, d.name) for s, d in member_pairs(fabric) if not lab.ping(s, d.ip6, count=2, timeout=2)]
    assert unanswered == [], log_tail(lab)
    pairs = enumerate(cross_pairs(fabric), start=7300)
    assert [(s.name, d.name) for port, (s, d) in pairs if not lab.tcp_exchange(s, d, d.ip6, port)] == []
    for member in fabric.members:
        assert peer_entries6(fabric, member) == {p.name: dm(p) for p in fabric.members if p is not member}


def test_hosts_of_no_cluster_resolve_the_ipv6_vip_and_every_ipv6_dip_to_the_cluster_mac_and_reach_them(
    fabric: FabricLab,
):
    lab = fabric.lab
    targets = [*(m.ip6 for m in fabric.members), VIP6]
    for host in [fabric.client, *fabric.others]:  # c1 and o1 on the Linux bridge, o2 on hv2
        lab.flush_neigh(host)
        unanswered = [address for address in targets if not lab.ping(host, address, count=1, timeout=2)]
        table = lab.neigh6(host)
        resolved = {address: table[address].lladdr if address in table else None for address in targets}
        assert (unanswered, resolved) == ([], dict.fromkeys(targets, CLUSTER_MAC)), host.name
    m1, _, _, m4 = fabric.members
    for port, (host, member) in enumerate([(fabric.client, m1), (fabric.client, m4)], start=7400):
        assert lab.tcp_exchange(host, member, member.ip6, port), f"TCP {host.name} -> {member.name}"


def test_a_members_solicitation_reaches_outsiders_only_when_it_asks_for_one_and_then_unchanged(fabric: FabricLab):
    """m1 resolves a peer behind the uplink, then o1 (on the Linux bridge): the first never reaches a host of
    no cluster, the second reaches o1 with the cluster MAC as its source link-layer address, as m1 sent it."""
    lab = fabric.lab
    m1, m3 = fabric.members[0], fabric.members[2]
    o1, o2 = fabric.others
    for host in (m1, o1, o2):
        lab.flush_neigh(host)
    with ExitStack() as stack:
        seen = {
            h.name: stack.enter_context(lab.capture(h, "icmp6 and ip6[40] == 135", direction="in")) for h in (o1, o2)
        }
        reached_peer = lab.ping(m1, m3.ip6, count=1, timeout=2)
        reached_outsider = lab.ping(m1, o1.ip6, count=1, timeout=2)
    assert (reached_peer, reached_outsider) == (True, True), log_tail(lab)
    solicitations = {
        name: [
            (p[ICMPv6ND_NS].tgt, p[ICMPv6NDOptSrcLLAddr].lladdr) for p in capture.frames if ICMPv6NDOptSrcLLAddr in p
        ]
        for name, capture in seen.items()
    }
    from_m1 = {
        name: [(target, lla) for target, lla in got if target in (m3.ip6, o1.ip6)]
        for name, got in solicitations.items()
    }
    assert from_m1["o1"] and set(from_m1["o1"]) == {(o1.ip6, CLUSTER_MAC)}  # the positive control: o1 was asked
    assert all(target != m3.ip6 for target, _ in from_m1["o1"] + from_m1["o2"])
    assert lab.neigh6(o1)[m1.ip6].lladdr == CLUSTER_MAC
