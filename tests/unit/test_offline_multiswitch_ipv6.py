"""IPv6 and Neighbor Discovery on a fabric of several switches, offline, in every ARP mode (docs/ipv6.md,
docs/fabric.md): the topologies, hosts and helpers of test_offline_multiswitch.py, with a dual-stack cluster
(each member also holds IP6[host], the cluster VIP6). ND frames are built by scapy and read back as a user
reads them in a capture: the link-layer address option, the target, the Ethernet addresses.
"""

from __future__ import annotations

import ipaddress
from itertools import permutations

import pytest
from scapy.layers.inet6 import ICMPv6ND_NA, ICMPv6ND_NS, ICMPv6NDOptDstLLAddr, ICMPv6NDOptSrcLLAddr, IPv6
from scapy.layers.l2 import Ether

from flows.flowspec import ETH_TYPE_IPV6
from flows.model import ArpMode
from flows.nd import ND_NEIGHBOR_ADVERTISEMENT, ND_NEIGHBOR_SOLICITATION, NdFrame
from flows.oftable import Frame, Received
from tests.unit.test_offline_ipv6 import nd
from tests.unit.test_offline_multiswitch import (  # noqa: F401 (answering: the autouse fixture, every ARP mode)
    ANSWERING,
    CM,
    CONFIRM,
    DM,
    FREE_PORT,
    IP,
    IP6,
    OUTSIDER_IP6,
    OUTSIDER_MAC,
    TOPOLOGIES,
    VIP6,
    Topology,
    answering,
    arp,
    assert_delivered_to,
    assert_no_cluster_mac_learned,
    build,
    gratuitous,
    probe_answer,
    probed,
    start,
)

ALL_NODES, ALL_NODES_MAC = "ff02::1", "33:33:00:00:00:01"
LINK_LOCAL = {host: f"fe80::5054:ff:fe00:{n:x}" for n, host in enumerate("abcdef", start=0x11)}  # random in life
FORGER_MAC, FORGER_IP6 = "52:54:00:00:0f:0f", "fd00:10::f0"


def start6(kind: str) -> Topology:
    """The dual-stack topology, connected, every member located and announced (start())."""
    return start(build(kind, ipv6=True))


def solicited_node(address: str) -> tuple[str, str]:
    """The solicited-node multicast group of an address, and its Ethernet address (RFC 4291, RFC 2464)."""
    low = ipaddress.IPv6Address(address).packed[-3:]
    group = ipaddress.IPv6Address(bytes.fromhex("ff0200000000000000000001ff") + low)
    return str(group), "33:33:" + ipaddress.IPv6Address(group).packed[-4:].hex(":")


def solicitation(
    eth_src: str, src: str, target: str, slla: str | None, eth_dst: str | None = None, ip_dst: str | None = None
) -> Frame:
    """An NS as a stack sends it: to the target's solicited-node group unless eth_dst/ip_dst say otherwise
    (a unicast reachability probe); slla None: no option (DAD, RFC 4862)."""
    group, group_mac = solicited_node(target)
    packet = Ether(src=eth_src, dst=eth_dst or group_mac) / IPv6(src=src, dst=ip_dst or group, hlim=255)
    packet /= ICMPv6ND_NS(tgt=target)
    if slla is not None:
        packet /= ICMPv6NDOptSrcLLAddr(lladdr=slla)
    return nd(packet)


def advertisement(
    eth_src: str, target: str, tlla: str, eth_dst: str, ip_dst: str, solicited: bool = True, src: str | None = None
) -> Frame:
    """An NA for target (from target itself unless src says otherwise), Override set, as Linux answers."""
    packet = Ether(src=eth_src, dst=eth_dst) / IPv6(src=src or target, dst=ip_dst, hlim=255)
    return nd(packet / ICMPv6ND_NA(tgt=target, S=int(solicited), O=1) / ICMPv6NDOptDstLLAddr(lladdr=tlla))


def member_ns(x: str, target: str, src: str | None = None) -> Frame:
    """Member x's NS as its stack sends it: from the cluster MAC, SLLA = the cluster MAC."""
    return solicitation(CM, src or IP6[x], target, slla=CM)


def nds(got: Received, host: str, icmp_type: int | None = None) -> list[NdFrame]:
    """The ND messages that reached host, as its capture shows them (what the flows set applied)."""
    frames = [f.to_nd() for f in got.get(host, []) if f.nd is not None]
    return [n for n in frames if icmp_type is None or n.type == icmp_type]


def crossed_nd(topo: Topology) -> list[NdFrame]:
    """The ND messages on the links during the last event."""
    return [frame.to_nd() for _, _, frame in topo.net.crossed if frame.nd is not None]


def everywhere(topo: Topology) -> dict[str, list[tuple]]:
    """Where the core sees every member, on every switch, and how it found it (status's locations; the spoof
    attempts counted against it left out)."""
    cluster = topo.net.core.registry.clusters[0]
    return {
        m.ip: [(v["dpid"], v["port"], v["how"], v["port_up"]) for v in topo.net.core.locations(cluster.name, m)]
        for m in cluster.members
    }


def resolve6(topo: Topology, x: str, y: str) -> Received:
    """What every host receives when member x solicits member y's IPv6 DIP. In relay mode y's stack answers
    the relayed NS, which must carry x's dedicated MAC, as Linux does (unicast to DM(x)), and that
    answer's journey is the result."""
    got = topo.net.send(x, member_ns(x, IP6[y]))
    if ANSWERING["arp"] == ArpMode.RELAY:
        relayed = nds(got, y, ND_NEIGHBOR_SOLICITATION)
        assert [(n.lla, n.ip_src, n.target, n.eth_src) for n in relayed] == [(DM[x], IP6[x], IP6[y], DM[x])], x
        assert set(got) == {y}, f"{x}'s NS for {y} is relayed to {y} alone"
        got = topo.net.send(y, advertisement(CM, IP6[y], tlla=CM, eth_dst=DM[x], ip_dst=IP6[x]))
    return got


@pytest.mark.parametrize("kind", TOPOLOGIES)
def test_every_ordered_member_pair_resolves_the_peers_ipv6_dip_to_its_dedicated_mac_and_reaches_it(kind):
    topo = start6(kind)
    for x, y in permutations(topo.members, 2):
        got = resolve6(topo, x, y)
        answers = [(n.type, n.target, n.lla, n.ip_src, n.ip_dst, n.eth_dst) for n in nds(got, x)]
        assert answers == [(ND_NEIGHBOR_ADVERTISEMENT, IP6[y], DM[y], IP6[y], IP6[x], CM)], f"{x} solicits {y}"
        assert set(got) == {x}, f"the answer to {x} reaches {x} alone"
        on_links = [(n.type, n.eth_src, n.eth_dst) for n in crossed_nd(topo)]
        if ANSWERING["arp"] == ArpMode.RELAY and topo.switch_of(x) != topo.switch_of(y):
            # y's own NA, addressed to DM(x): the legacy switches take it to x's switch alone, which revises it
            assert on_links and set(on_links) == {(ND_NEIGHBOR_ADVERTISEMENT, DM[y], DM[x])}, f"{y}'s NA to {x}"
        else:
            assert not on_links, f"answered where {x} asked"
        assert_delivered_to(topo, x, y, f"{x}->{y}", eth_type=ETH_TYPE_IPV6)
    assert_no_cluster_mac_learned(topo)


def link_local_targets(topo: Topology, x: str) -> dict[str, str]:
    """What member x may solicit from its link-local address, spread rather than answered."""
    peer = next(m for m in topo.members if m != x and topo.switch_of(m) != topo.switch_of(x))
    return {"an outsider": OUTSIDER_IP6["client"], "the vip": VIP6, "a peer's link-local": LINK_LOCAL[peer]}


@pytest.mark.parametrize("kind", TOPOLOGIES)
def test_a_members_link_local_ns_reaches_its_switchs_peers_with_its_dm_and_every_outsider_unchanged(kind):
    """A link-local source names its sender only where the port does: on the sender's own switch. Beyond an
    uplink anyone could write a member's DM as Ethernet source, so peers there get nothing (docs/ipv6.md)."""
    topo = start6(kind)
    for x in topo.members:
        for what, target in link_local_targets(topo, x).items():
            got = topo.net.send(x, member_ns(x, target, src=LINK_LOCAL[x]))
            assert x not in got, "nothing comes back to the sender"
            for peer in (m for m in topo.members if m != x):
                wanted = [(DM[x], DM[x], LINK_LOCAL[x], target)] if topo.switch_of(peer) == topo.switch_of(x) else []
                assert [(n.lla, n.eth_src, n.ip_src, n.target) for n in nds(got, peer)] == wanted, (
                    f"{x}'s NS for {what} at {peer}"
                )
            for host in topo.non_members:
                assert [(n.lla, n.eth_src, n.eth_dst, n.ip_src, n.target) for n in nds(got, host)] == [
                    (CM, DM[x], solicited_node(target)[1], LINK_LOCAL[x], target)
                ], f"{x}'s NS for {what} at {host}: unchanged, its Ethernet source masked at the edge"
            on_links = crossed_nd(topo)
            assert on_links, f"{x}'s NS for {what} crossed no link"
            assert {n.eth_src for n in on_links} == {DM[x]}, f"{x}'s NS for {what} on the links"
    assert_no_cluster_mac_learned(topo)


@pytest.mark.parametrize("kind", TOPOLOGIES)
def test_a_members_link_local_reachability_probe_reaches_a_peer_on_its_switch_and_never_one_with_the_cluster_mac(kind):
    """Linux confirms a stale entry for a peer's link-local address with a unicast NS to the MAC it cached:
    DM(peer). On the sender's switch the peer gets it with DM(sender); beyond an uplink no peer gets it."""
    topo = start6(kind)
    for x, y in permutations(topo.members, 2):
        probe = solicitation(CM, LINK_LOCAL[x], LINK_LOCAL[y], slla=CM, eth_dst=DM[y], ip_dst=LINK_LOCAL[y])
        got = topo.net.send(x, probe)
        here = topo.switch_of(x) == topo.switch_of(y)
        wanted = [(DM[x], DM[x], CM, LINK_LOCAL[y])] if here else []
        assert [(n.lla, n.eth_src, n.eth_dst, n.target) for n in nds(got, y)] == wanted, f"{x} probes {y}"
        assert set(got) <= {y}, f"{x}'s probe for {y} reaches no one else"
        assert all(n.lla != CM for m in topo.members for n in nds(got, m))
        assert {n.eth_src for n in crossed_nd(topo)} <= {DM[x]}


@pytest.mark.parametrize("kind", TOPOLOGIES)
def test_a_members_link_local_ns_for_a_peers_dip_is_answered_with_the_peers_dedicated_mac_and_reaches_no_one(kind):
    """The positive side of the link-local rule: answered in every mode (relay cannot relay it: the peer
    would answer a link-local address the requester's peers cannot tell apart), never passed on."""
    topo = start6(kind)
    for x, y in permutations(topo.members, 2):
        got = topo.net.send(x, member_ns(x, IP6[y], src=LINK_LOCAL[x]))
        assert [(n.type, n.target, n.lla, n.ip_dst, n.eth_dst) for n in nds(got, x)] == [
            (ND_NEIGHBOR_ADVERTISEMENT, IP6[y], DM[y], LINK_LOCAL[x], CM)
        ], f"{x} solicits {y} from its link-local address"
        assert set(got) == {x}, "answered, not passed on"
        assert not topo.net.crossed


def client_solicits(topo: Topology, client: str, target: str) -> dict[str, Received]:
    """A non-member's NS for target (the IPv6 VIP or a member's IPv6 DIP), which every member receives once and
    unchanged; each member owning the address answers as its stack does (TLLA = the cluster MAC): what each
    answer reached, by member."""
    mac, address = OUTSIDER_MAC[client], OUTSIDER_IP6[client]
    got = topo.net.send(client, solicitation(mac, address, target, slla=mac))
    for m in topo.members:
        assert [(n.lla, n.eth_src, n.ip_src, n.target) for n in nds(got, m)] == [(mac, mac, address, target)], (
            f"{client}'s NS for {target} at {m}"
        )
    owners = [m for m in topo.members if target in (VIP6, IP6[m])]
    answers = {}
    for m in owners:
        answers[m] = topo.net.send(m, advertisement(CM, target, tlla=CM, eth_dst=mac, ip_dst=address))
        assert {n.eth_src for n in crossed_nd(topo)} <= {DM[m]}, f"{m}'s NA to {client} on the links"
    return answers


@pytest.mark.parametrize("kind", TOPOLOGIES)
def test_every_non_member_resolves_the_ipv6_vip_and_every_ipv6_dip_to_the_cluster_mac(kind):
    topo = start6(kind)
    for client in topo.non_members:
        for target in (VIP6, *(IP6[m] for m in topo.members)):
            answers = client_solicits(topo, client, target)
            assert answers, f"someone owns {target}"
            for m, got in answers.items():
                assert [(n.type, n.target, n.lla, n.eth_src, n.eth_dst) for n in nds(got, client)] == [
                    (ND_NEIGHBOR_ADVERTISEMENT, target, CM, DM[m], OUTSIDER_MAC[client])
                ], f"{m}'s answer to {client} for {target}"
                assert set(got) == {client}, f"{m}'s answer to {client} reaches {client} alone"
    assert_no_cluster_mac_learned(topo)


@pytest.mark.parametrize("kind", TOPOLOGIES)
@pytest.mark.parametrize("address", ["a new address", "its own dip"])
def test_a_members_duplicate_address_detection_crosses_the_fabric_and_nobody_answers_it(kind, address):
    topo = start6(kind)
    for n, x in enumerate(topo.members):
        tentative = f"fd00:10::a{n}" if address == "a new address" else IP6[x]
        punted = topo.net.packet_ins()
        got = topo.net.send(x, solicitation(CM, "::", tentative, slla=None))
        assert topo.net.packet_ins() == punted, "no option, no punt flow: switched as before"
        assert x not in got, "no answer, from the controller or anyone"
        others = [h for h in topo.members + topo.non_members if h != x]
        for host in others:
            assert [(n.ip_src, n.target, n.lla, n.eth_src) for n in nds(got, host)] == [
                ("::", tentative, None, DM[x])
            ], f"{x}'s DAD probe for {tentative} at {host}"
    assert_no_cluster_mac_learned(topo)


BEYOND = {"learning": "outsider", "line": "outsider2"}  # a host behind an uplink of every nlbflow switch


def forgeries(topo: Topology) -> dict[str, tuple[Frame, str | None]]:
    """ND with the cluster MAC, as a forger beyond an uplink makes it, and the member it names (None: none):
    claiming each member's IPv6 DIP, or from a link-local address with the forger's own Ethernet source or a
    member's dedicated MAC (as that member's edge switch would mask it: a link-local source names nobody
    beyond an uplink all the same), soliciting each member's IPv6 DIP or advertising it."""
    frames: dict[str, tuple[Frame, str | None]] = {}
    for m in topo.members:
        for target in (t for t in topo.members if t != m):
            frames[f"NS {m} -> {target}"] = (solicitation(FORGER_MAC, IP6[m], IP6[target], slla=CM), m)
        frames[f"NS link-local -> {m}"] = (solicitation(FORGER_MAC, LINK_LOCAL["a"], IP6[m], slla=CM), None)
        ll_as_member = solicitation(DM[m], LINK_LOCAL[m], IP6[topo.members[0]], slla=CM)
        frames[f"NS link-local as DM({m})"] = (ll_as_member, None)
        na = advertisement(FORGER_MAC, IP6[m], CM, ALL_NODES_MAC, ALL_NODES, solicited=False)
        frames[f"NA {m}"] = (na, m)
    return frames


@pytest.mark.parametrize("kind", sorted(BEYOND))
def test_nd_with_the_cluster_mac_arriving_from_an_uplink_is_never_answered_relayed_or_believed(kind):
    topo = start6(kind)
    net, forger = topo.net, BEYOND[kind]
    where, counters = everywhere(topo), dict(net.core.counters)
    for what, (frame, named) in forgeries(topo).items():
        got = net.send(forger, frame)
        assert not nds(got, forger), f"{what}: nothing comes back to the sender"
        assert not [f for f in got.get(forger, []) if f.arp_op is not None], f"{what}: not even a probe"
        members_got = {m: nds(got, m) for m in topo.members if m in got}
        assert CM not in {n.lla for found in members_got.values() for n in found}, f"{what}: CM in an option"
        if named is None:  # nobody to rewrite it for: outsiders only, unchanged
            assert not members_got, f"{what} reaches no member"
            assert [n.lla for n in nds(got, "n1")] == [CM], f"{what} reaches the outsiders"
            continue
        # spread with DM(named) to members of other switches; named's own drops it as a spoof (and on a line,
        # so it never reaches the switches beyond that one)
        elsewhere = {m for m in topo.members if topo.switch_of(m) != topo.switch_of(named)}
        assert members_got and set(members_got) <= elsewhere, f"{what}: who gets it"
        assert {n.lla for found in members_got.values() for n in found} == {DM[named]}, what
    assert everywhere(topo) == where
    assert [net.core.counters[v] for v in ("answered", "relayed", "moves")] == [
        counters.get(v, 0) for v in ("answered", "relayed", "moves")
    ]
    for m in topo.members:  # the forger taught the legacy switches DM(m) on its own port: the members talk again
        net.send(m, arp(gratuitous(IP[m])))
    for x, y in (("a", "c"), ("c", "a")):
        got = resolve6(topo, x, y)
        assert [n.lla for n in nds(got, x)] == [DM[y]], "the members still resolve each other"
        assert_delivered_to(topo, x, y, f"{x}->{y}", eth_type=ETH_TYPE_IPV6)


@pytest.mark.parametrize("kind", ["learning", "direct"])  # hv2's port 5 is free in both
@pytest.mark.parametrize("forged", ["NS", "NA"])
def test_a_forged_nd_for_a_member_from_another_switchs_edge_port_does_not_move_it_while_it_answers(kind, forged):
    topo = start6(kind)
    net = topo.net
    where = everywhere(topo)
    net.attach("forger", (2, FREE_PORT))
    if forged == "NS":
        frame = solicitation(CM, IP6["a"], IP6["c"], slla=CM)
    else:
        frame = advertisement(CM, IP6["a"], CM, ALL_NODES_MAC, ALL_NODES, solicited=False)
    got = net.send("forger", frame)
    assert not nds(got, "forger", ND_NEIGHBOR_ADVERTISEMENT), "no answer to the forger"
    assert not [n for m in topo.members for n in nds(got, m)], "held, not passed on, while a is asked"
    assert probed(got, "a") == [IP["a"]], "a is asked on its own port"
    net.send("a", arp(probe_answer(IP["a"])))
    net.tick(CONFIRM)
    assert everywhere(topo) == where
    assert net.core.status(net.now)["counters"]["moves"] == 0
    for peer in ("b", "c", "d"):
        assert_delivered_to(topo, peer, "a", f"{peer}->a", eth_type=ETH_TYPE_IPV6)
    again = net.send("forger", frame)
    assert not [n for m in topo.members for n in nds(again, m)], "a claim proven forged is refused for a while"


@pytest.mark.parametrize("kind", ["learning", "line"])
@pytest.mark.parametrize("where", ["edge", "beyond"])
def test_a_forged_advertisement_with_a_members_dm_as_source_teaches_no_member_a_wrong_mac(kind, where):
    """A host of no cluster writes c's DM as Ethernet source and advertises, from a link-local address or a
    router's, b's IPv6 DIP or the router's address: no member may come to hold any address at a MAC other
    than its owner's (nor the router's at a DM), from an edge port of hv2 or from beyond an uplink."""
    topo = start6(kind)
    net = topo.net
    forger = BEYOND[kind]
    if where == "edge":
        net.attach("forger", (2, FREE_PORT))
        forger = "forger"
    router = "fe80::1"
    for target in (IP6["b"], router):
        got = net.send(
            forger, advertisement(DM["c"], target, CM, ALL_NODES_MAC, ALL_NODES, solicited=False, src=router)
        )
        taught = {(m, n.target, n.lla) for m in topo.members for n in nds(got, m, ND_NEIGHBOR_ADVERTISEMENT)}
        assert taught == set(), f"{where}: the NA for {target} reached members as {taught}"
        assert [n.lla for n in nds(got, "n1")] in ([], [CM]), "outsiders at most get it as it was sent"
    # positive control: c's own advertisement for its own address reaches its peers with DM(c)
    own = net.send("c", advertisement(CM, IP6["c"], CM, ALL_NODES_MAC, ALL_NODES, solicited=False))
    assert {n.lla for n in nds(own, "a", ND_NEIGHBOR_ADVERTISEMENT)} == {DM["c"]}
