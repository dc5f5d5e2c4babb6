"""Fabrics of several switches, live (issue 9): two OVS bridges, each its own OpenFlow switch driven by
one controller, with members on both, under both runtimes and both ARP modes.

Topology A joins the bridges through a Linux bridge (an ordinary learning switch, which also holds the
client and a non-member); topology B joins them directly with patch ports (tests/lab/fabrickit.py draws
both). The first tests run without the app: the topology switches frames with OVS NORMAL, and members
on different switches cannot reach each other by DIP, the problem the fabric support solves.
One lab per (topology, runtime, ARP mode) serves the tests of its class; a test that changes the
topology (a member moved, an uplink down) puts it back before it ends.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from itertools import permutations

import pytest
from scapy.layers.inet import ICMP, IP
from scapy.layers.l2 import ARP, Ether

from tests.lab.appkit import APP_COOKIES, ARP_MODES, RUNTIMES, VIP, dm
from tests.lab.fabrickit import (
    BURST_SIZE,
    OWN_MACS,
    PATCH_PORT,
    FabricLab,
    answered_pairs,
    app_flows,
    build_topology_a,
    build_topology_b,
    burst_frames,
    burst_view,
    cross_pairs,
    dedicated_macs_of_peers,
    expected_burst,
    log_tail,
    member_pairs,
    members_in_status,
    normal_only,
    peer_entries,
    start_fabric,
    switch_status,
    unreachable_pairs,
    wait_located,
    wait_reachable,
)
from tests.netlab import CLUSTER_MAC, Capture, Lab

# The default mode under both runtimes; proxy and relay, which test_cluster.py runs under both, once each
# here, to keep CI inside its time (every fabric lab is two switches and eight hosts).
COMBINATIONS = [(runtime, "switch") for runtime in RUNTIMES] + [("osken", "proxy"), ("ryu", "relay")]
assert {arp for _, arp in COMBINATIONS} == set(ARP_MODES)


def combination_id(param: tuple[str, str]) -> str:
    return "-".join(param)


# --- without the app: the topology itself, and the problem ---------------------------------------------


@pytest.mark.parametrize("build", [build_topology_a, build_topology_b], ids=["linux-bridge", "patch"])
def test_with_normal_only_and_own_macs_every_host_reaches_every_other_across_the_bridges(lab_available, build):
    """Control: with NORMAL flows and no controller, hosts that have MACs of their own reach each other on
    every bridge, so whatever fails later is the cluster MAC's, not the lab's."""
    with Lab(dpid=None) as lab:
        fabric = build(lab, member_macs=OWN_MACS)
        normal_only(fabric)
        client = fabric.client
        hosts = [*fabric.members, *fabric.others]
        assert [h.name for h in hosts if not lab.ping(client, h.ip, count=1)] == []
        assert unreachable_pairs(fabric, cross_pairs(fabric), count=1) == []
        m1, m3 = fabric.members[0], fabric.members[2]
        assert lab.tcp_exchange(m1, m3, m3.ip, 7001)
        assert lab.tcp_exchange(client, m3, m3.ip, 7002)
        if fabric.linux_bridge is not None:
            learned = {e.mac: e.iface for e in lab.linux_fdb(fabric.linux_bridge) if not e.permanent}
            assert learned[m1.mac] == fabric.uplinks["hv1"].end_on(fabric.linux_bridge).iface
            assert learned[m3.mac] == fabric.uplinks["hv2"].end_on(fabric.linux_bridge).iface
            assert learned[client.mac] == client.switch_iface


def test_with_normal_only_members_on_different_switches_cannot_reach_each_other_by_dip(lab_available):
    """The problem on a fabric: every member carries the cluster MAC, so a learning switch drops its frames
    for a peer (they are addressed to the sender's own MAC), and the Linux bridge learns the cluster MAC."""
    with Lab(dpid=None) as lab:
        fabric = build_topology_a(lab)
        normal_only(fabric)
        assert [h.name for h in fabric.others if not lab.ping(fabric.client, h.ip, count=1)] == []
        assert answered_pairs(fabric, cross_pairs(fabric), count=1) == []
        assert CLUSTER_MAC in {e.mac for e in lab.linux_fdb(fabric.linux_bridge) if not e.permanent}


# --- with the app: what both topologies must do ---------------------------------------------------------


def running(request, build: Callable[[Lab], FabricLab]) -> Iterator[FabricLab]:
    """A topology with the app running on it in the fixture's (runtime, arp mode); nothing left after."""
    runtime, arp = request.param
    with Lab(dpid=None) as lab:
        yield start_fabric(build(lab), runtime, arp)
    assert lab.leftovers() == []


@pytest.fixture(scope="module", params=COMBINATIONS, ids=combination_id)
def through_a_linux_bridge(request, lab_available) -> Iterator[FabricLab]:
    yield from running(request, build_topology_a)


@pytest.fixture(scope="module", params=COMBINATIONS, ids=combination_id)
def linked_directly(request, lab_available) -> Iterator[FabricLab]:
    yield from running(request, build_topology_b)


class FabricChecks:
    """The tests both topologies pass; each subclass provides the `fabric` fixture."""

    def test_every_member_pair_reaches_each_other_by_dip_and_caches_only_dedicated_macs(self, fabric: FabricLab):
        lab = fabric.lab
        for member in fabric.members:
            lab.flush_neigh(member)
        assert unreachable_pairs(fabric, member_pairs(fabric)) == [], log_tail(lab)
        pairs = enumerate(cross_pairs(fabric), start=7100)
        assert [(s.name, d.name) for port, (s, d) in pairs if not lab.tcp_exchange(s, d, d.ip, port)] == []
        for member in fabric.members:
            assert peer_entries(fabric, member) == dedicated_macs_of_peers(fabric, member), member.name

    def test_the_client_and_non_members_resolve_the_vip_and_every_dip_to_the_cluster_mac_and_reach_them(
        self, fabric: FabricLab
    ):
        lab = fabric.lab
        targets = [*(m.ip for m in fabric.members), VIP]
        for host in [fabric.client, *fabric.others]:
            lab.flush_neigh(host)
            unanswered = [ip for ip in targets if not lab.ping(host, ip, count=1)]
            table = lab.neigh(host)
            resolved = {ip: table[ip].lladdr if ip in table else None for ip in targets}
            assert (unanswered, resolved) == ([], dict.fromkeys(targets, CLUSTER_MAC)), host.name
        m1, m2, _, m4 = fabric.members
        connections = [(fabric.client, m1), (fabric.client, m4), (fabric.others[-1], m2)]  # o2 is on hv2
        for port, (host, member) in enumerate(connections, start=7200):
            assert lab.tcp_exchange(host, member, member.ip, port), f"TCP {host.name} -> {member.name}"

    def test_a_members_gratuitous_arp_reaches_every_peer_once_with_its_dedicated_mac_and_others_unchanged(
        self, fabric: FabricLab
    ):
        lab, sender = fabric.lab, fabric.members[0]
        peers, others = fabric.members[1:], [fabric.client, *fabric.others]
        with ExitStack() as stack:
            seen = {h.name: stack.enter_context(lab.capture(h, "arp", direction="in")) for h in [*peers, *others]}
            lab.gratuitous_arp(sender, sender.ip)
            lab.gratuitous_arp(sender, sender.ip, reply=True)
        got = {name: gratuitous_arps(capture, sender.ip) for name, capture in seen.items()}
        wanted = {p.name: [(1, dm(sender)), (2, dm(sender))] for p in peers}
        wanted.update({h.name: [(1, CLUSTER_MAC), (2, CLUSTER_MAC)] for h in others})
        assert got == wanted, log_tail(lab)

    def test_a_burst_for_the_cluster_mac_reaches_each_member_exactly_once_and_no_non_member_port(
        self, fabric: FabricLab
    ):
        lab, client = fabric.lab, fabric.client
        for host in fabric.others:
            assert lab.ping(client, host.ip, count=1), f"{client.name} -> {host.name}"  # every switch learns them
        with ExitStack() as stack:
            seen = {
                h.name: stack.enter_context(lab.capture(h, "udp port 9999", direction="in"))
                for h in [*fabric.members, *fabric.others]
            }
            # A frame for each non-member's own MAC first: its capture must see that one (the control).
            controls = [frame for h in fabric.others for frame in burst_frames(client, h.mac, f"control {h.name}")]
            lab.send_frames(client, controls + burst_frames(client, CLUSTER_MAC, "burst", BURST_SIZE), interval=0.01)
        burst = expected_burst(client, CLUSTER_MAC, "burst", BURST_SIZE)
        for member in fabric.members:
            assert burst_view(seen[member.name]) == burst, f"{member.name}:\n{log_tail(lab)}"
        for host in fabric.others:
            # No OVS port of a non-member gets the burst; the Linux bridge floods it, as a learning switch
            # floods any MAC it never learned.
            flooded = burst if host.ofport is None else []
            control = expected_burst(client, host.mac, f"control {host.name}")
            assert burst_view(seen[host.name]) == control + flooded, host.name
        if fabric.linux_bridge is not None:
            learned = {e.mac: e.iface for e in lab.linux_fdb(fabric.linux_bridge) if not e.permanent}
            assert CLUSTER_MAC not in learned
            assert learned[client.mac] == client.switch_iface
            for member in fabric.members:  # they answered the burst (port unreachable): masked, from their uplink
                uplink = fabric.uplinks[fabric.switch_of(member)].end_on(fabric.linux_bridge).iface
                assert learned.get(dm(member)) == uplink, member.name


class TestThroughALinuxBridge(FabricChecks):
    """Topology A: hv1 and hv2, each with an uplink into a Linux bridge that holds the client."""

    @pytest.fixture
    def fabric(self, through_a_linux_bridge: FabricLab) -> FabricLab:
        return through_a_linux_bridge

    def test_frames_between_members_cross_the_learning_switch_with_dedicated_macs_only(self, fabric: FabricLab):
        """Between switches a frame for DM(x) stays DM(x) (rewritten to the cluster MAC only at x's port), and
        members' frames carry their DM as source, so the learning switch has nothing to flood or mislearn."""
        lab, bridge = fabric.lab, fabric.linux_bridge
        assert bridge is not None
        wires = [fabric.uplinks[label].end_on(bridge).iface for label in fabric.switches]
        with ExitStack() as stack:
            seen = [stack.enter_context(lab.capture(wire, "", direction="in")) for wire in wires]
            assert unreachable_pairs(fabric, cross_pairs(fabric), count=1) == []
        frames = [f for capture in seen for f in capture.frames]
        by_ip = {m.ip: m for m in fabric.members}
        echoes = {
            (f[IP].src, f[IP].dst, f[Ether].src, f[Ether].dst) for f in frames if ICMP in f and f[IP].src in by_ip
        }
        wanted = {(s.ip, d.ip, dm(s), dm(d)) for s, d in cross_pairs(fabric)}  # the echo requests
        wanted |= {(d.ip, s.ip, dm(d), dm(s)) for s, d in cross_pairs(fabric)}  # and their replies
        assert echoes == wanted
        assert CLUSTER_MAC not in {f[Ether].src for f in frames}

    def test_a_member_moved_to_the_other_switch_is_followed_there_and_back(self, fabric: FabricLab):
        lab, m2 = fabric.lab, fabric.members[1]
        assert (m2.ip, m2.ofport) in members_in_status(fabric, "hv1")
        for target, port in (("hv2", 4), ("hv1", m2.ofport)):
            moved = lab.move_host(lab.hosts[m2.name], fabric.switches[target].name, ofport=port)
            wait_located(fabric, [moved])
            peers = [p for p in fabric.current(fabric.members) if p.name != m2.name]
            pairs = [pair for peer in peers for pair in ((peer, moved), (moved, peer))]
            assert wait_reachable(fabric, pairs) == [], log_tail(lab)
            assert wait_reachable(fabric, [(fabric.client, moved)]) == []
            other = "hv1" if target == "hv2" else "hv2"
            assert (m2.ip, port) in members_in_status(fabric, target)
            assert m2.ip not in {ip for ip, _ in members_in_status(fabric, other)}
            for peer in peers:
                assert peer_entries(fabric, peer)[m2.name] == dm(m2), peer.name
        assert fabric.switch_of(m2) == "hv1"

    def test_an_uplink_down_cuts_off_only_its_switch_and_up_again_brings_it_back(self, fabric: FabricLab):
        lab = fabric.lab
        near, far = fabric.members_on("hv1"), fabric.members_on("hv2")
        across = [*((a, b) for a in near for b in far), *((b, a) for a in near for b in far)]
        across += [(fabric.client, b) for b in far]
        local = [*permutations(near, 2), *permutations(far, 2), *((fabric.client, a) for a in near)]
        assert unreachable_pairs(fabric, across + local, count=1) == []
        before = app_flows(fabric, "hv1")
        uplink = fabric.uplink_port("hv2")

        lab.set_link(fabric.uplinks["hv2"], False)
        wait_port_down(fabric, "hv2", uplink, True)
        assert answered_pairs(fabric, across, count=1) == []
        assert unreachable_pairs(fabric, local) == [], log_tail(lab)
        during = app_flows(fabric, "hv1")

        lab.set_link(fabric.uplinks["hv2"], True)
        wait_port_down(fabric, "hv2", uplink, False)
        assert wait_reachable(fabric, across) == [], log_tail(lab)
        assert unreachable_pairs(fabric, local) == []
        after = app_flows(fabric, "hv1")
        assert set(during) == set(before) == set(after), "hv1's flows changed"
        replaced = [key for key in before if after[key] < before[key]]
        assert replaced == [], f"hv1's flows were replaced: {replaced}"


class TestLinkedDirectly(FabricChecks):
    """Topology B: hv1 and hv2 joined by patch ports; the client on hv1, a non-member on hv2."""

    @pytest.fixture
    def fabric(self, linked_directly: FabricLab) -> FabricLab:
        return linked_directly

    def test_the_patch_link_removed_added_again_and_renumbered_is_followed_by_its_name(self, fabric: FabricLab):
        """hv1 names its uplink by port name: while the patch port is gone the name is unresolved, and it
        is found again when the port comes back, also under another port number."""
        lab, hv1 = fabric.lab, fabric.switches["hv1"].name
        across = cross_pairs(fabric)
        local = [(s, d) for s, d in member_pairs(fabric) if fabric.switch_of(s) == fabric.switch_of(d)]
        wait_uplink_port(fabric, "hv1", PATCH_PORT)
        assert unreachable_pairs(fabric, across, count=1) == []

        lab.set_link(fabric.uplinks["hv1"], False)
        wait_uplink_port(fabric, "hv1", None)
        assert answered_pairs(fabric, across, count=1) == []
        assert unreachable_pairs(fabric, local, count=1) == [], log_tail(lab)
        lab.set_link(fabric.uplinks["hv1"], True)
        wait_uplink_port(fabric, "hv1", PATCH_PORT)
        assert wait_reachable(fabric, across) == [], log_tail(lab)

        for port in (PATCH_PORT + 1, PATCH_PORT):  # to another number, and back: the fixture's lab again
            link = lab.renumber_link(fabric.uplinks["hv1"], hv1, port)
            fabric.uplinks = {"hv1": link, "hv2": link}
            wait_uplink_port(fabric, "hv1", port)
            assert wait_reachable(fabric, across) == [], log_tail(lab)
            cluster_flow = [f for f in lab.dump_flows(APP_COOKIES, bridge=hv1) if f"dl_dst={CLUSTER_MAC}" == f.match]
            assert [f.actions for f in cluster_flow] == [f"output:1,output:2,output:{port}"]


def wait_port_down(fabric: FabricLab, label: str, port: int, down: bool, timeout: float = 15.0) -> None:
    """Wait until the app's status shows a switch's port down (or up again)."""
    deadline = time.monotonic() + timeout
    while (port in switch_status(fabric, label)["ports_down"]) != down:
        if time.monotonic() > deadline:
            raise AssertionError(f"port {port} of {label} never {'down' if down else 'up'}:\n{log_tail(fabric.lab)}")
        time.sleep(0.2)


def gratuitous_arps(capture: Capture, ip: str) -> list[tuple[int, str]]:
    """(op, arp_sha) of each gratuitous ARP for `ip` (sender and target IP both `ip`) in a capture. Not every
    ARP from that IP: in relay mode a peer refreshing its entry meanwhile gets the sender's own answer."""
    frames = [f for f in capture.frames if ARP in f and f[ARP].psrc == f[ARP].pdst == ip]
    return sorted((f[ARP].op, f[ARP].hwsrc) for f in frames)


def wait_uplink_port(fabric: FabricLab, label: str, port: int | None, timeout: float = 15.0) -> None:
    """Wait until the status shows the switch's one uplink resolved to `port` (None: unresolved)."""
    deadline = time.monotonic() + timeout
    while [u["port"] for u in switch_status(fabric, label)["uplinks"]] != [port]:
        if time.monotonic() > deadline:
            raise AssertionError(f"{label}'s uplink never on port {port}:\n{log_tail(fabric.lab)}")
        time.sleep(0.2)
