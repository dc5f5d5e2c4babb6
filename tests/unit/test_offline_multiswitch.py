"""The method on a fabric of several switches, offline: frames followed from host to host across switches.

FakeNetwork (flows/oftable.py) runs every nlbflow switch's flow table, OVS's NORMAL on each, ordinary
learning switches (Linux bridges) between them, and one real NlbCore for all of them. Hosts are passive:
a test answers for them. Three topologies, as the lab of issue 9 has them:

    learning   hv1 (a, b, n1) --4-- [core: client, outsider] --4-- hv2 (c, d, n2)
    direct     hv1 (a, b, n1, client) --4 (patch-hv2) ---- 4 (patch-hv1)-- hv2 (c, d, n2)
    line       hv1 (a, b, n1) --4-- [core: client, outsider] --4-- hv2 (c, d, n2)
                                                                hv2 --5-- [core2: outsider2] --4-- hv3 (e, f, n3)
    loop       hv1 (a, b, n1) --4---4-- hv2 (c, d, n2), and --5---5-- as well: two links, a loop

On every nlbflow switch the members sit on ports 1 and 2, a non-member on port 3; port 5 is free unless
it is an uplink. The members form one unicast cluster; build(ipv6=True) makes it dual-stack (an IPv6 DIP per
member, an IPv6 VIP: tests/unit/test_offline_multiswitch_ipv6.py).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from itertools import permutations

import pytest

from flows.addresses import PROBE_MAC, dedicated_mac, unicast_cluster_mac
from flows.arp import ARP_REPLY, ARP_REQUEST, ArpFrame
from flows.core import NlbCore
from flows.flowspec import FlowDiff, ingress_flow, normal_fallback_flow
from flows.locations import UNLOCATED_PROBE_SECONDS, Level
from flows.model import ArpMode, Cluster, Config, Fabric, LocationSettings, Member, Registry, SwitchConfig
from flows.oftable import ETH_TYPE_IPV4, FakeNetwork, FakeOFTable, Frame, FrameLoop, LearningSwitch, Received

VIP = "10.0.0.100"
CM = unicast_cluster_mac(VIP)
BROADCAST = "ff:ff:ff:ff:ff:ff"
ZERO_MAC = "00:00:00:00:00:00"
CLIENT_IP, CLIENT_MAC = "10.0.0.50", "52:54:00:00:00:50"
IP = {host: f"10.0.0.{n}" for n, host in enumerate("abcdef", start=11)}
DM = {host: dedicated_mac(ip) for host, ip in IP.items()}
VIP6 = "fd00:10::100"
IP6 = {host: f"fd00:10::{n}" for n, host in enumerate("abcdef", start=11)}
MEMBERS_ON = {1: ("a", "b"), 2: ("c", "d"), 3: ("e", "f")}
OUTSIDERS = ("n1", "n2", "n3", "client", "outsider", "outsider2")  # every non-member a topology may hold
OUTSIDER_IP = {host: CLIENT_IP if host == "client" else f"10.0.0.{n}" for n, host in enumerate(OUTSIDERS, start=60)}
OUTSIDER_MAC = {host: CLIENT_MAC if host == "client" else f"52:54:00:00:01:{n:02x}" for n, host in enumerate(OUTSIDERS)}
OUTSIDER_IP6 = {host: f"fd00:10::{ip.split('.')[-1]}" for host, ip in OUTSIDER_IP.items()}
PORTS = (1, 2, 3, 4, 5)
FREE_PORT = 5  # on hv2 of the learning topology: where a member moves to, or a forger sits
CONFIRM = LocationSettings().confirm_seconds
TOPOLOGIES = ("learning", "direct", "line")


@dataclass
class Topology:
    net: FakeNetwork
    members: tuple[str, ...]  # member hosts, by switch
    edge: tuple[str, ...]  # non-member hosts on nlbflow switches' edge ports
    beyond: tuple[str, ...]  # hosts on learning switches

    @property
    def non_members(self) -> tuple[str, ...]:
        return self.edge + self.beyond

    def switch_of(self, host: str) -> int | str:
        return self.net.hosts[host][0]


ANSWERING = {"arp": ArpMode.PROXY}  # the mode build() uses unless a test names one


@pytest.fixture(autouse=True, params=[ArpMode.PROXY, ArpMode.SWITCH, ArpMode.RELAY], ids=["proxy", "switch", "relay"])
def answering(request) -> ArpMode:
    """Every test runs in every ARP mode (issue 10): the controller answering, the switch answering, and the
    peer answering a relayed request; the same frames are expected of all three."""
    ANSWERING["arp"] = request.param
    return request.param


def build(
    kind: str, arp: ArpMode | None = None, pinned: tuple[str, ...] = (), configured: bool = True, ipv6: bool = False
) -> Topology:
    """A topology, not yet connected. pinned: members pinned where they sit; configured: the fabric is in the
    config (else only set later, with set_fabric()); ipv6: each member also holds IP6[host], the cluster VIP6."""
    dpids = (1, 2, 3) if kind == "line" else (1, 2)
    members = tuple(host for dpid in dpids for host in MEMBERS_ON[dpid])
    cluster = Cluster(
        name="web",
        cluster_ip=VIP,
        cluster_mac=CM,
        arp=arp or ANSWERING["arp"],
        members=tuple(member(host, dpids, pinned, ipv6) for host in members),
        cluster_ips=(VIP6,) if ipv6 else (),
    )
    net = FakeNetwork(
        NlbCore(Config(registry=Registry(clusters=(cluster,)), fabric=fabric(kind) if configured else Fabric()))
    )
    names = {1: {4: "patch-hv2"}, 2: {4: "patch-hv1"}} if kind == "direct" else {}
    for dpid in dpids:
        net.add_switch(dpid, PORTS, names.get(dpid))
        for port, host in enumerate(MEMBERS_ON[dpid], start=1):
            net.attach(host, (dpid, port))
        net.attach(f"n{dpid}", (dpid, 3))
    edge = tuple(f"n{dpid}" for dpid in dpids)
    beyond: tuple[str, ...] = ()
    if kind == "direct":
        net.link((1, 4), (2, 4))
        net.attach("client", (1, 5))
        edge += ("client",)
    elif kind == "loop":
        net.link((1, 4), (2, 4))
        net.link((1, 5), (2, 5))
    else:
        net.add_learning_switch("core", (1, 2, 3, 4))
        net.link((1, 4), ("core", 1))
        net.link((2, 4), ("core", 2))
        net.attach("client", ("core", 3))
        net.attach("outsider", ("core", 4))
        beyond = ("client", "outsider")
    if kind == "line":
        net.add_learning_switch("core2", (1, 2, 3))
        net.link((2, 5), ("core2", 1))
        net.link((3, 4), ("core2", 2))
        net.attach("outsider2", ("core2", 3))
        beyond += ("outsider2",)
    return Topology(net, members, edge, beyond)


def member(host: str, dpids: tuple[int, ...], pinned: tuple[str, ...], ipv6: bool = False) -> Member:
    dpid = next(dpid for dpid in dpids if host in MEMBERS_ON[dpid])
    ips = (IP6[host],) if ipv6 else ()
    if host in pinned:
        port = MEMBERS_ON[dpid].index(host) + 1
        return Member(ip=IP[host], dedicated_mac=DM[host], dpid=dpid, port=port, ips=ips)
    return Member(ip=IP[host], dedicated_mac=DM[host], ips=ips)


def fabric(kind: str) -> Fabric:
    uplinks: dict[int, tuple[int | str, ...]] = {
        "learning": {1: (4,), 2: (4,)},
        "direct": {1: ("patch-hv2",), 2: ("patch-hv1",)},
        "line": {1: (4,), 2: (4, 5), 3: (4,)},
        "loop": {1: (4, 5), 2: (4, 5)},
    }[kind]
    return Fabric(switches=tuple(SwitchConfig(dpid=d, name=f"hv{d}", uplinks=up) for d, up in uplinks.items()))


def start(topo: Topology) -> Topology:
    """Connect every switch, then locate(): the fabric as the tests begin with it."""
    return locate(topo, topo.net.connect())


def locate(topo: Topology, got: Received) -> Topology:
    """Each unpinned member answers the app's probe for it (got: the probes), then every member announces
    itself (a gratuitous ARP), so the learning switches know every dedicated MAC where it is."""
    pinned = {m.ip for cluster in topo.net.core.registry.clusters for m in cluster.members if m.pinned}
    for host in topo.members:
        if IP[host] not in pinned:
            assert IP[host] in probed(got, host), f"{host} was probed for"
            topo.net.send(host, arp(probe_answer(IP[host])))
    for host in topo.members:
        topo.net.send(host, arp(gratuitous(IP[host])))
    return topo


def arp(frame: ArpFrame) -> Frame:
    return Frame.from_arp(frame)


def request(spa: str, tpa: str) -> ArpFrame:
    """A member's ARP request, as its stack sends it: the cluster MAC as source and sender MAC."""
    return ArpFrame(eth_src=CM, eth_dst=BROADCAST, op=ARP_REQUEST, sha=CM, spa=spa, tha=ZERO_MAC, tpa=tpa)


def gratuitous(ip: str) -> ArpFrame:
    return request(ip, ip)


def reply(spa: str, tpa: str, tha: str) -> ArpFrame:
    return ArpFrame(eth_src=CM, eth_dst=tha, op=ARP_REPLY, sha=CM, spa=spa, tha=tha, tpa=tpa)


def probe_answer(ip: str) -> ArpFrame:
    return ArpFrame(eth_src=CM, eth_dst=PROBE_MAC, op=ARP_REPLY, sha=CM, spa=ip, tha=PROBE_MAC, tpa="0.0.0.0")


def data(dst: str, tag: str, eth_type: int = ETH_TYPE_IPV4) -> Frame:
    """An IPv4 (or eth_type's) frame a member's stack sends: from the cluster MAC (the switch masks it)."""
    return Frame(eth_src=CM, eth_dst=dst, eth_type=eth_type, payload=tag)


def probed(got: Received, host: str) -> list[str]:
    """The member IPs the app's probes that reached this host asked for, one entry per probe."""
    return [f.arp_tpa for f in got.get(host, []) if f.arp_sha == PROBE_MAC and f.arp_op == ARP_REQUEST]


def copies(got: Received, tag: str) -> dict[str, list[Frame]]:
    """Who got a frame of this tag, and how."""
    return {host: found for host, frames in got.items() if (found := [f for f in frames if f.payload == tag])}


def assert_no_cluster_mac_learned(topo: Topology) -> None:
    for name, bridge in topo.net.learning.items():
        assert CM not in bridge.fdb, f"{name} learned the cluster MAC on port {bridge.fdb.get(CM)}"


def assert_delivered_to(topo: Topology, x: str, y: str, tag: str, eth_type: int = ETH_TYPE_IPV4) -> None:
    """An IPv4 (or eth_type's) frame from member x to DM(y) reaches y once as the cluster MAC, and no one else;
    between switches it travels as DM(y)."""
    got = topo.net.send(x, data(DM[y], tag, eth_type))
    expected = Frame(eth_src=DM[x], eth_dst=CM, eth_type=eth_type, payload=tag)
    assert copies(got, tag) == {y: [expected]}, f"{x} -> DM({y})"
    on_links = [(frame.eth_src, frame.eth_dst) for _, _, frame in topo.net.crossed if frame.payload == tag]
    assert set(on_links) <= {(DM[x], DM[y])}, f"{x} -> DM({y}) on the links: {on_links}"
    if topo.switch_of(x) != topo.switch_of(y):
        assert on_links, f"{x} -> DM({y}) crossed no link"


def resolve(net: FakeNetwork, x: str, y: str) -> Received:
    """What every host receives when member x asks for member y. In relay mode y's stack answers the
    relayed request, which must carry x's dedicated MAC, and that reply's journey is the answer."""
    got = net.send(x, arp(request(IP[x], IP[y])))
    if ANSWERING["arp"] == ArpMode.RELAY:
        relayed = [f for f in got.get(y, []) if f.arp_op == ARP_REQUEST and f.arp_tpa == IP[y]]
        assert [(f.arp_sha, f.arp_spa, f.eth_src) for f in relayed] == [(DM[x], IP[x], DM[x])], f"{x} -> {y}"
        got = net.send(y, arp(reply(IP[y], IP[x], tha=DM[x])))
    return got


@pytest.mark.parametrize("kind", TOPOLOGIES)
def test_every_ordered_member_pair_resolves_the_peer_to_its_dedicated_mac_and_reaches_it_as_the_cluster_mac(kind):
    topo = start(build(kind))
    net = topo.net
    for x, y in permutations(topo.members, 2):
        got = resolve(net, x, y)
        answers = [f for f in got.get(x, []) if f.arp_op == ARP_REPLY]
        assert [(f.arp_sha, f.arp_spa, f.arp_tpa) for f in answers] == [(DM[y], IP[y], IP[x])], f"{x} asks for {y}"
        assert_delivered_to(topo, x, y, f"{x}->{y}")
    assert_no_cluster_mac_learned(topo)


@pytest.mark.parametrize("kind", TOPOLOGIES)
def test_client_frames_for_the_cluster_mac_reach_each_member_once_and_no_non_member_on_an_nlbflow_switch(kind):
    topo = start(build(kind))
    got = topo.net.send("client", Frame(eth_src=CLIENT_MAC, eth_dst=CM, payload="burst"))
    reached = copies(got, "burst")
    assert {host: len(frames) for host, frames in reached.items() if host in topo.members} == dict.fromkeys(
        topo.members, 1
    )
    assert all(frame.eth_dst == CM for frames in reached.values() for frame in frames)
    assert not set(reached) & (set(topo.edge) - {"client"}), "no non-member port of an nlbflow switch gets them"
    assert_no_cluster_mac_learned(topo)


def outsider_asks(topo: Topology, host: str, target: str) -> dict[str, Received]:
    """A non-member's ARP request for target (the VIP or a DIP), which NORMAL floods over the tree and every
    member receives once; each member owning the address answers: what each answer reached, by member."""
    asked = ArpFrame(
        eth_src=OUTSIDER_MAC[host],
        eth_dst=BROADCAST,
        op=ARP_REQUEST,
        sha=OUTSIDER_MAC[host],
        spa=OUTSIDER_IP[host],
        tha=ZERO_MAC,
        tpa=target,
    )
    got = topo.net.send(host, arp(asked))
    assert {m: len(got.get(m, [])) for m in topo.members} == dict.fromkeys(topo.members, 1), f"{host}: {target}"
    owners = [m for m in topo.members if target in (VIP, IP[m])]
    return {m: topo.net.send(m, arp(reply(target, OUTSIDER_IP[host], tha=OUTSIDER_MAC[host]))) for m in owners}


@pytest.mark.parametrize("kind", TOPOLOGIES)
def test_every_non_member_resolves_the_vip_and_every_dip_to_the_cluster_mac_and_reaches_every_member(kind):
    topo = start(build(kind))
    for host in topo.non_members:
        for target in (VIP, *(IP[m] for m in topo.members)):
            answers = outsider_asks(topo, host, target)
            assert [(f.arp_sha, f.arp_spa, f.eth_src) for m, got in answers.items() for f in got.get(host, [])] == [
                (CM, target, DM[m]) for m in answers
            ], f"{host} resolves {target}"
        burst = copies(topo.net.send(host, Frame(eth_src=OUTSIDER_MAC[host], eth_dst=CM, payload=host)), host)
        assert Counter(m for m, frames in burst.items() for _ in frames if m in topo.members) == Counter(topo.members)
    assert_no_cluster_mac_learned(topo)


@pytest.mark.parametrize("kind", TOPOLOGIES)
def test_a_members_answer_to_a_non_member_reaches_that_non_member_only(kind):
    """Addressed to one host: each switch's NORMAL takes it to where that host was learned, as a learning
    switch does, and no other host gets it."""
    topo = start(build(kind))
    for host in topo.non_members:
        for member, got in outsider_asks(topo, host, VIP).items():
            assert set(got) == {host}, f"{member}'s answer to {host}"


@pytest.mark.parametrize("kind", TOPOLOGIES)
@pytest.mark.parametrize("target", ["itself", "an outsider"])
def test_a_members_broadcast_arp_reaches_each_peer_once_with_its_dedicated_mac_and_each_non_member_unchanged(
    kind, target
):
    topo = start(build(kind))
    for x in topo.members:
        sent = request(IP[x], IP[x] if target == "itself" else CLIENT_IP)
        got = topo.net.send(x, arp(sent))
        assert x not in got, "nothing comes back to the sender"
        for peer in (m for m in topo.members if m != x):
            assert [(f.arp_sha, f.eth_src, f.arp_spa, f.arp_tpa) for f in got.get(peer, [])] == [
                (DM[x], DM[x], sent.spa, sent.tpa)
            ], f"{x}'s ARP at {peer}"
        for host in topo.non_members:
            assert [(f.arp_op, f.arp_sha, f.arp_spa, f.arp_tha, f.arp_tpa, f.eth_dst) for f in got.get(host, [])] == [
                (sent.op, CM, sent.spa, sent.tha, sent.tpa, BROADCAST)
            ], f"{x}'s ARP at {host}"
            assert got[host][0].eth_src == DM[x], "masked at the edge: no switch learns the cluster MAC"
    assert_no_cluster_mac_learned(topo)


def test_an_unlocated_members_first_arp_teaches_no_learning_switch_the_cluster_mac():
    """Before the member is located its port has no source masking yet: the frame arrives as CM."""
    topo = build("learning")
    topo.net.connect()
    got = topo.net.send("a", arp(gratuitous(IP["a"])))
    assert "outsider" in got, "the announcement goes on"
    assert_no_cluster_mac_learned(topo)


@pytest.mark.parametrize("kind", TOPOLOGIES)
def test_unlocated_members_are_probed_on_every_edge_port_of_every_switch_and_never_out_of_an_uplink(kind):
    topo = build(kind)
    net = topo.net
    edge_hosts = topo.members + topo.edge
    everyone = sorted(IP[host] for host in topo.members)
    for got in (net.connect(), net.tick(UNLOCATED_PROBE_SECONDS)):
        assert {host: sorted(probed(got, host)) for host in edge_hosts} == {host: everyone for host in edge_hosts}
        assert not any(probed(got, host) for host in topo.beyond)
        assert not [frame for _, _, frame in net.crossed if frame.arp_sha == PROBE_MAC], "no probe on a link"
    net.send("a", arp(probe_answer(IP["a"])))
    again = net.tick(UNLOCATED_PROBE_SECONDS)
    others = [ip for ip in everyone if ip != IP["a"]]
    assert {host: sorted(probed(again, host)) for host in edge_hosts} == {host: others for host in edge_hosts}, (
        "a member found on one switch is not probed for on the others"
    )


@pytest.mark.parametrize("old_port", ["gone", "down", "up"])
def test_a_member_that_moves_to_another_switch_is_followed_and_then_reached_by_its_peers(old_port):
    """A VM migration takes seconds; its old port goes away, goes down, or stays up with nobody behind it."""
    topo = start(build("learning"))
    net = topo.net
    net.tick(UNLOCATED_PROBE_SECONDS)
    net.move_host("b", (2, FREE_PORT), old_port=old_port)
    net.send("b", arp(gratuitous(IP["b"])))
    if old_port == "up":
        assert "b" not in copies(net.send("a", data(DM["b"], "early")), "early"), "not before its old port is asked"
    net.tick(CONFIRM)
    got = net.send("b", arp(gratuitous(IP["b"])))  # it keeps talking: the learning switch learns where it is
    for peer in ("a", "c", "d"):
        assert [f.arp_sha for f in got.get(peer, [])] == [DM["b"]], f"b's ARP at {peer}"
    for peer in ("a", "c", "d"):
        assert_delivered_to(topo, peer, "b", f"{peer}->b")
    answer = resolve(net, "a", "b")
    assert [f.arp_sha for f in answer.get("a", []) if f.arp_op == ARP_REPLY] == [DM["b"]]
    assert net.core.status(net.now)["counters"]["looped"] == 0
    assert_no_cluster_mac_learned(topo)


def test_a_member_that_moved_right_after_its_last_arp_is_heard_again_on_its_old_switch_and_is_no_loop():
    """b announced itself on hv1 a moment ago; now on hv2 it announces itself again, the same frame: hv1
    gets it back over its uplink, and it is b's, not a frame of hv1's that came round a loop."""
    topo = start(build("learning"))
    net = topo.net
    net.move_host("b", (2, FREE_PORT), old_port="gone")
    net.send("b", arp(gratuitous(IP["b"])))
    got = net.send("b", arp(gratuitous(IP["b"])))
    assert [f.arp_sha for f in got.get("a", [])] == [DM["b"]], "b's ARP at a"
    assert net.core.switch_view(1)["loops"] == 0


def test_a_forged_arp_for_a_member_from_another_switchs_edge_port_does_not_move_it_while_it_answers():
    topo = start(build("learning"))
    net = topo.net
    net.attach("forger", (2, FREE_PORT))
    got = net.send("forger", arp(request(IP["a"], IP["c"])))
    assert not [f for f in got.get("forger", []) if f.arp_op == ARP_REPLY], "no answer to the forger"
    assert probed(got, "a") == [IP["a"]], "a is asked on its own port"
    net.send("a", arp(probe_answer(IP["a"])))
    net.tick(CONFIRM)
    for peer in ("b", "c", "d"):
        assert_delivered_to(topo, peer, "a", f"{peer}->a")
    assert net.core.status(net.now)["counters"]["moves"] == 0


def test_a_pinned_members_arp_arriving_at_another_switch_over_the_uplink_is_not_a_spoof():
    topo = start(build("learning", pinned=("a",)))
    net = topo.net
    got = net.send("a", arp(gratuitous(IP["a"])))
    for peer in ("b", "c", "d"):
        assert [f.arp_sha for f in got.get(peer, [])] == [DM["a"]], f"a's ARP at {peer}"
    assert net.core.status(net.now)["counters"]["dropped_spoofed"] == 0
    assert not [note.text for note in net.notes if note.level == Level.WARNING]
    assert_delivered_to(topo, "c", "a", "c->a")


def test_an_uplink_down_cuts_off_the_members_behind_it_until_it_is_up_and_changes_no_other_switch():
    topo = start(build("learning"))
    net = topo.net
    hv1 = dict(net.switches[1].table.flows)
    net.set_link((2, 4), up=False)
    assert net.switches[1].table.flows == hv1, "hv1 does not depend on hv2's uplink"
    assert "c" not in copies(net.send("a", data(DM["c"], "a->c")), "a->c")
    assert "a" not in copies(net.send("c", data(DM["a"], "c->a")), "c->a")
    burst = copies(net.send("client", Frame(eth_src=CLIENT_MAC, eth_dst=CM, payload="burst")), "burst")
    assert {host: len(frames) for host, frames in burst.items() if host in topo.members} == {"a": 1, "b": 1}

    net.set_link((2, 4), up=True)
    assert net.switches[1].table.flows == hv1
    assert [f.eth_dst for f in copies(net.send("a", data(DM["c"], "a->c")), "a->c").get("c", [])] == [CM]
    assert [f.eth_dst for f in copies(net.send("c", data(DM["a"], "c->a")), "c->a").get("a", [])] == [CM]
    burst = copies(net.send("client", Frame(eth_src=CLIENT_MAC, eth_dst=CM, payload="burst")), "burst")
    assert {host: len(frames) for host, frames in burst.items() if host in topo.members} == dict.fromkeys(
        topo.members, 1
    )


def test_a_switch_that_disconnects_keeps_forwarding_and_its_reconnect_changes_no_flow_anywhere():
    topo = start(build("learning"))
    net = topo.net
    flows = {dpid: dict(switch.table.flows) for dpid, switch in net.switches.items()}
    net.disconnect(2)
    assert_delivered_to(topo, "a", "b", "a->b")
    assert_delivered_to(topo, "a", "c", "a->c")  # hv2 keeps its flows while it has no controller
    net.connect(2)
    assert {dpid: dict(switch.table.flows) for dpid, switch in net.switches.items()} == flows
    assert_delivered_to(topo, "c", "a", "c->a")


def test_a_members_arp_sent_again_a_second_later_crosses_a_middle_switch_again_and_is_no_loop():
    """ARP retransmits an unanswered request every second, the same frame each time: hv2, with two uplinks,
    passes the first on from one uplink to the other, and must pass the second on too."""
    topo = start(build("line"))
    net = topo.net
    net.tick(UNLOCATED_PROBE_SECONDS)  # start()'s announcements are long past
    others = [host for host in topo.members + topo.non_members if host != "a"]
    for attempt in (1, 2):
        got = net.send("a", arp(request(IP["a"], "10.0.0.99")))
        assert {host: len(got.get(host, [])) for host in others} == dict.fromkeys(others, 1), f"attempt {attempt}"
        net.tick(1.0)
    assert [view["loops"] for view in map(net.core.switch_view, (1, 2, 3))] == [0, 0, 0]


def test_a_loop_in_the_uplinks_is_reported_when_a_frame_of_ours_comes_back_instead_of_circling(answering):
    """Two links between the same two switches: a member's ARP sent out of one comes back on the other. In
    switch mode the switch spread it, so the controller never saw it leave: the frame that comes back names a
    member located here, no flow recognises it from an uplink, and the controller drops it as a spoof
    (docs/switch-mode.md)."""
    topo = start(build("loop"))  # FakeNetwork raises FrameLoop if a frame circles
    net = topo.net
    spoofs = net.core.counters["dropped_spoofed"]
    net.send("a", arp(gratuitous(IP["a"])))
    if answering == ArpMode.SWITCH:
        assert net.core.counters["dropped_spoofed"] > spoofs
        return
    assert net.core.switch_view(1)["loops"] > 0
    assert [note.text for note in net.notes if note.level == Level.WARNING and "loop" in note.text.lower()]


def test_status_shows_every_switch_with_its_name_its_uplinks_resolved_by_name_and_its_members():
    topo = start(build("direct"))
    switches = topo.net.core.status(topo.net.now)["switches"]
    assert [(s["dpid"], s["name"], s["connected"], s["uplinks"]) for s in switches] == [
        (1, "hv1", True, [{"uplink": "patch-hv2", "port": 4}]),
        (2, "hv2", True, [{"uplink": "patch-hv1", "port": 4}]),
    ]
    assert [sorted((m["ip"], m["port"]) for m in s["members"]) for s in switches] == [
        [(IP["a"], 1), (IP["b"], 2)],
        [(IP["c"], 1), (IP["d"], 2)],
    ]


def test_uplinks_given_at_run_time_take_effect_without_a_reconnect():
    topo = build("learning", configured=False)
    got = topo.net.connect()
    topo.net.set_fabric(fabric("learning"))
    locate(topo, got)
    burst = copies(topo.net.send("client", Frame(eth_src=CLIENT_MAC, eth_dst=CM, payload="burst")), "burst")
    assert Counter(host for host in burst if host in topo.members) == Counter(topo.members)
    assert_delivered_to(topo, "a", "c", "a->c")


def test_the_learning_switch_learns_sources_floods_the_unknown_and_never_sends_a_frame_back():
    x, y, z = "52:54:00:00:00:01", "52:54:00:00:00:02", "52:54:00:00:00:03"
    bridge = LearningSwitch((1, 2, 3))
    assert bridge.forward(1, Frame(eth_src=x, eth_dst=y)) == [2, 3]
    assert bridge.forward(2, Frame(eth_src=y, eth_dst=x)) == [1]
    assert bridge.forward(1, Frame(eth_src=z, eth_dst=x)) == [], "learned on the port it came in on: dropped"
    assert bridge.forward(None, Frame(eth_src=z, eth_dst=BROADCAST)) == [1, 2, 3], "a packet-out to NORMAL"
    assert bridge.fdb == {x: 1, y: 2, z: 1}
    bridge.set_port(1, present=True, up=False)
    assert bridge.fdb == {y: 2}, "a port down forgets what it learned there"
    assert bridge.forward(2, Frame(eth_src=y, eth_dst=x)) == [3]


def test_the_simulation_stops_a_frame_circling_in_a_loop_with_an_error():
    """Two switches that only run NORMAL, joined twice: a broadcast would circle for ever."""
    net = FakeNetwork(NlbCore(Config()))
    for dpid in (1, 2):
        table = FakeOFTable()
        table.apply(FlowDiff(to_add=(ingress_flow(), normal_fallback_flow()), to_delete=()))
        net.add_switch(dpid, (1, 2, 3), table=table)
    net.link((1, 1), (2, 1))
    net.link((1, 2), (2, 2))
    net.attach("host", (1, 3))
    with pytest.raises(FrameLoop):
        net.send("host", Frame(eth_src=CLIENT_MAC, eth_dst=BROADCAST))
