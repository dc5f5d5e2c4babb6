"""The problem nlbflow exists for, live in the lab, without nlbflow (method.md, "The problem").

br0 only does NORMAL here, as an ordinary learning switch would. Members of a unicast-mode cluster all
carry the cluster MAC, so a member's ARP for a peer's DIP is answered with its own MAC, or not at all,
and member-to-member traffic dies. Control tests show that the lab itself forwards fine, and that the
lab cleans up after itself whatever happens.
"""

from __future__ import annotations

from contextlib import ExitStack
from itertools import permutations

import pytest

from tests.netlab import CLUSTER_MAC, CLUSTER_VIP, Host, Lab, LabError, list_netns


@pytest.fixture
def cluster(lab: Lab) -> tuple[list[Host], Host]:
    """Three members and a client behind a switch that only does NORMAL."""
    members, client = lab.add_typical_cluster()
    lab.add_flow("actions=NORMAL")
    return members, client


def test_members_cannot_ping_each_other_by_dip_through_a_learning_switch(lab, cluster):
    members, _ = cluster
    answered = {(src.name, dst.name): lab.ping_replies(src, dst.ip, count=2) for src, dst in permutations(members, 2)}
    assert answered == {pair: 0 for pair in answered}


def test_members_resolve_peer_dips_to_the_cluster_mac_or_not_at_all(lab, cluster):
    members, _ = cluster
    for src, dst in permutations(members, 2):
        lab.ping_replies(src, dst.ip, count=1)
    for member in members:
        table = lab.neigh(member)
        for peer in members:
            if peer is member:
                continue
            entry = table.get(peer.ip)
            assert entry is not None, f"{member.name} never tried to resolve {peer.name}"
            assert entry.lladdr == CLUSTER_MAC or entry.state in {"FAILED", "INCOMPLETE"}, (member.name, entry)


def test_client_traffic_for_the_vip_reaches_a_single_member(lab, cluster):
    members, client = cluster
    vip = CLUSTER_VIP.split("/")[0]
    echo_requests = f"icmp[icmptype] = icmp-echo and dst host {vip}"
    with ExitStack() as stack:
        captures = {member.name: stack.enter_context(lab.capture(member, echo_requests)) for member in members}
        assert lab.ping(client, vip)
    reached = sorted(name for name, capture in captures.items() if capture.frames)
    assert len(reached) == 1, f"echo requests for the VIP reached {reached}"


def test_hosts_with_their_own_macs_reach_each_other_over_icmp_tcp_and_udp(lab):
    """Control: the same lab forwards between ordinary hosts, so the failures above are the cluster MAC's."""
    lab.add_flow("actions=NORMAL")
    a = lab.add_host("a", "02:00:0a:00:01:01", ["10.0.1.1/24"], ofport=1)
    b = lab.add_host("b", "02:00:0a:00:01:02", ["10.0.1.2/24"], ofport=2)
    assert lab.ping(a, b.ip)
    assert lab.tcp_exchange(a, b, b.ip, 7001)
    assert lab.udp_exchange(b, a, a.ip, 7002)
    assert lab.neigh(a)[b.ip].lladdr == b.mac


def test_lab_cleans_up_after_itself_when_the_test_body_raises():
    with pytest.raises(RuntimeError, match="test body failed"), Lab() as lab:
        a = lab.add_host("a", "02:00:0a:00:01:01", ["10.0.1.1/24"], ofport=1)
        b = lab.add_host("b", "02:00:0a:00:01:02", ["10.0.1.2/24"], ofport=2)
        lab.add_flow("actions=NORMAL")
        session = lab.tcp_session(a, b, b.ip, 7003)  # left open on purpose: close() must stop both ends
        assert session.echo()
        with lab.capture(a, "arp"):
            raise RuntimeError("test body failed")
    assert {"ovsdb-server", "ovs-vswitchd", "tcp echo server", "tcp client"} <= {p.what for p in lab.processes}
    assert not set(lab.namespaces) & set(list_netns())
    assert lab.leftovers() == []


def test_lab_cleans_up_after_itself_when_building_a_host_fails_halfway():
    with pytest.raises(LabError, match="address"), Lab() as lab:
        lab.add_host("a", "not-a-mac", ["10.0.1.1/24"], ofport=1)
    assert f"{lab.prefix}-a" in lab.namespaces
    assert lab.leftovers() == []
