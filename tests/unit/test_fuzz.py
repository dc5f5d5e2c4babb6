"""Fuzz of the packet-in path (issue 7, 1b): random, truncated, mutated, tagged, tunnelled and hostile
frames through ofmsgs.arp_frame, then NlbCore.packet_in, with members located on a connected switch.

Seeded and bounded: NLBFLOW_FUZZ_SEED and NLBFLOW_FUZZ_FRAMES change the run (`make fuzz` runs a
million frames per runtime). The seed is printed, and every failure names the seed, the frame's index,
its port and its bytes, so `NLBFLOW_FUZZ_SEED=<seed>` replays it. The fuzz runs once per session; each
test below asserts one property over every frame of it.
"""

from __future__ import annotations

import os
import random
import time
from collections import defaultdict
from dataclasses import dataclass, field

import pytest
from scapy.layers.l2 import ARP, Ether
from scapy.packet import Padding

from flows.addresses import BROADCAST_MAC, PROBE_MAC, ZERO_IP, ZERO_MAC, dedicated_mac, unicast_cluster_mac
from flows.arp import ArpFrame, FrameOut
from flows.core import NlbCore
from flows.frames import Refusal, is_nic_mac
from flows.model import ArpMode, Cluster, Config, Member, Registry
from ryu_apps import ofmsgs
from tests.unit import framekit
from tests.unit.example_cluster import CLIENT_IP, CLIENT_MAC, CLIENT_PORT, MEMBER_PORT, OTHER_PORT, web_cluster

SEED = int(os.environ.get("NLBFLOW_FUZZ_SEED", "20261201"))
FRAMES = int(os.environ.get("NLBFLOW_FUZZ_FRAMES", "150000"))
DPID = 1
FRESH_CORE_EVERY = 50  # frames handled by one core before a new one starts from every member located
TICK_EVERY = 10  # frames between two calls of the periodic work
FRAME_SECONDS = 0.05  # virtual time per frame: a core lives 2.5 s, long enough for confirmations to time out
EXAMPLES_KEPT = 8  # failing frames quoted per property

# A second unicast cluster in relay mode, one member pinned: ports 6 and 7.
APP_IP = "10.0.1.100"
APP_MEMBERS = (Member("10.0.1.21", dedicated_mac("10.0.1.21")), Member("10.0.1.22", dedicated_mac("10.0.1.22"), 1, 7))
APP_CLUSTER = Cluster("app", APP_IP, unicast_cluster_mac(APP_IP), ArpMode.RELAY, members=APP_MEMBERS)
REGISTRY = Registry(clusters=(web_cluster(), APP_CLUSTER))
HOME_PORT = {
    **{("web", ip): port for ip, port in MEMBER_PORT.items()},
    ("app", "10.0.1.21"): 6,
    ("app", "10.0.1.22"): 7,
}
SWITCH_PORTS = (1, 2, 3, CLIENT_PORT, OTHER_PORT, 6, 7)
DEDICATED_MACS = {m.dedicated_mac for c in REGISTRY.clusters for m in c.members}
CLUSTER_MACS = {c.cluster_mac for c in REGISTRY.clusters}

# Byte offsets in an untagged Ethernet/ARP frame, for splicing field values into scapy-built templates.
FIELD_SLICES = {
    "eth_dst": slice(0, 6),
    "eth_src": slice(6, 12),
    "eth_type": slice(12, 14),
    "arp_fixed": slice(14, 20),
    "op": slice(20, 22),
    "sha": slice(22, 28),
    "spa": slice(28, 32),
    "tha": slice(32, 38),
    "tpa": slice(38, 42),
}


def _mac_bytes(mac: str) -> bytes:
    return bytes.fromhex(mac.replace(":", ""))


def _ip_bytes(ip: str) -> bytes:
    return bytes(int(octet) for octet in ip.split("."))


MEMBER_IPS = [m.ip for c in REGISTRY.clusters for m in c.members]
IPS = [*MEMBER_IPS, *(c.cluster_ip for c in REGISTRY.clusters), CLIENT_IP, ZERO_IP, "10.0.0.99", "255.255.255.255"]
MACS = [
    *sorted(DEDICATED_MACS),
    *sorted(CLUSTER_MACS),
    PROBE_MAC,
    CLIENT_MAC,
    BROADCAST_MAC,
    ZERO_MAC,
    "01:00:5e:7f:00:64",
    "03:bf:0a:00:00:64",
    "33:33:00:00:00:01",
]
FIELD_VALUES = {
    "eth_dst": [_mac_bytes(mac) for mac in MACS],
    "eth_src": [_mac_bytes(mac) for mac in MACS],
    "eth_type": [b"\x08\x06", b"\x08\x00", b"\x81\x00", b"\x88\xa8", b"\x80\x35", b"\x00\x2a"],
    "arp_fixed": [b"\x00\x01\x08\x00\x06\x04", b"\x00\x06\x08\x00\x06\x04", b"\x00\x01\x86\xdd\x06\x10"],
    "op": [bytes([0, op]) for op in (0, 1, 2, 3, 4, 8, 9)] + [b"\x01\x01", b"\xff\xff"],
    "sha": [_mac_bytes(mac) for mac in MACS],
    "spa": [_ip_bytes(ip) for ip in IPS],
    "tha": [_mac_bytes(mac) for mac in MACS],
    "tpa": [_ip_bytes(ip) for ip in IPS],
}


def member_templates() -> list[tuple[int, bytes]]:
    """Every kind of ARP a located member sends, from its own port, as the switch punts it (Ethernet
    source masked to its dedicated MAC): requests and replies for peers, the VIP, outsiders, itself,
    probe answers, RFC 5227 probes, gratuitous ARP, with every destination a member uses."""
    templates = []
    for cluster in REGISTRY.clusters:
        for sender in cluster.members:
            port = HOME_PORT[(cluster.name, sender.ip)]
            peers = [m for m in cluster.members if m != sender]
            targets = [*(m.ip for m in peers), cluster.cluster_ip, CLIENT_IP, sender.ip]
            for tpa in targets:
                for spa in (sender.ip, cluster.cluster_ip, ZERO_IP):
                    for eth_dst in (BROADCAST_MAC, cluster.cluster_mac, CLIENT_MAC, *(m.dedicated_mac for m in peers)):
                        request = ARP(op=1, hwsrc=cluster.cluster_mac, psrc=spa, hwdst=ZERO_MAC, pdst=tpa)
                        templates.append((port, bytes(Ether(src=sender.dedicated_mac, dst=eth_dst) / request)))
                    reply = ARP(op=2, hwsrc=cluster.cluster_mac, psrc=spa, hwdst=cluster.cluster_mac, pdst=tpa)
                    templates.append((port, bytes(Ether(src=sender.dedicated_mac, dst=cluster.cluster_mac) / reply)))
            templates.append((port, probe_answer(cluster, sender)))
    return templates


def probe_answer(cluster: Cluster, member: Member) -> bytes:
    answer = ARP(op=2, hwsrc=cluster.cluster_mac, psrc=member.ip, hwdst=PROBE_MAC, pdst=ZERO_IP)
    return bytes(Ether(src=member.dedicated_mac, dst=PROBE_MAC) / answer / Padding(bytes(18)))


def hostile_templates() -> list[bytes]:
    """The frames that broke the generic parsers, tagged member ARP, and member ARP in tunnels."""
    frames = [bytes(build()) for build in framekit.HOSTILE.values()]
    arp = framekit.member_arp()
    frames += [bytes(framekit.tagged(arp, *vids)) for vids in ((10,), (0,), (100, 10), (1, 2, 3))]
    frames.append(bytes(framekit.tagged(arp, 100, 10, outer_tpid=0x88A8)))
    return frames


class FrameSource:
    """The fuzz's frames, each with the port it arrives on and the kind of mutation that made it."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.members = member_templates()
        self.hostile = hostile_templates()
        self.kinds = (
            (self.member_frame, 20),
            (self.member_frame_elsewhere, 5),
            (self.spliced, 30),
            (self.flipped, 10),
            (self.cut_or_padded, 8),
            (self.random_bytes, 8),
            (self.tagged, 7),
            (self.hostile_or_mutated, 12),
        )
        self.weights = [weight for _, weight in self.kinds]

    def next(self) -> tuple[str, int, bytes]:
        (make,) = self.rng.choices([make for make, _ in self.kinds], self.weights)
        port, data = make()
        return make.__name__, port, data

    def _member(self) -> tuple[int, bytes]:
        return self.rng.choice(self.members)

    def _any_port(self) -> int:
        return self.rng.choice(SWITCH_PORTS)

    def member_frame(self) -> tuple[int, bytes]:
        return self._member()

    def member_frame_elsewhere(self) -> tuple[int, bytes]:
        return self._any_port(), self._member()[1]

    def spliced(self) -> tuple[int, bytes]:
        """A member's frame with one to four fields replaced, mostly by addresses the fabric knows."""
        port, template = self._member()
        data = bytearray(template)
        for name in self.rng.sample(sorted(FIELD_SLICES), self.rng.randint(1, 4)):
            part = FIELD_SLICES[name]
            if self.rng.random() < 0.9:
                data[part] = self.rng.choice(FIELD_VALUES[name])
            else:
                data[part] = self.rng.randbytes(part.stop - part.start)
        return (port if self.rng.random() < 0.7 else self._any_port()), bytes(data)

    def flipped(self) -> tuple[int, bytes]:
        port, template = self._member()
        data = bytearray(template)
        for _ in range(self.rng.randint(1, 4)):
            data[self.rng.randrange(len(data))] = self.rng.randrange(256)
        return port, bytes(data)

    def cut_or_padded(self) -> tuple[int, bytes]:
        port, template = self._member()
        if self.rng.random() < 0.5:
            return port, template[: self.rng.randrange(len(template))]
        return port, template + self.rng.randbytes(self.rng.randint(1, 64))

    def random_bytes(self) -> tuple[int, bytes]:
        return self._any_port(), self.rng.randbytes(self.rng.randint(0, 128))

    def tagged(self) -> tuple[int, bytes]:
        """Zero to three tags of the known TPIDs (or another) pushed in front of a member's EtherType."""
        port, template = self._member()
        tags = b"".join(
            self.rng.choice((b"\x81\x00", b"\x88\xa8", b"\x91\x00")) + self.rng.randbytes(2)
            for _ in range(self.rng.randint(0, 3))
        )
        return port, template[:12] + tags + template[12:]

    def hostile_or_mutated(self) -> tuple[int, bytes]:
        data = bytearray(self.rng.choice(self.hostile))
        if self.rng.random() < 0.5:
            for _ in range(self.rng.randint(1, 4)):
                data[self.rng.randrange(len(data))] = self.rng.randrange(256)
        if self.rng.random() < 0.3:
            data = data[: self.rng.randrange(len(data))]
        return self._any_port(), bytes(data)


def located_core(now: float = 0.0) -> NlbCore:
    """A switch with every port up and its flows read back (which probes for every unpinned member);
    each unpinned member answered its probe from its own port, so every member is located where it lives."""
    core = NlbCore(Config(registry=REGISTRY))
    core.switch_connected(DPID, {port: True for port in SWITCH_PORTS})
    core.flows_read_back(DPID, [], now)
    for cluster in REGISTRY.clusters:
        for member in cluster.members:
            if not member.pinned:
                frame = ofmsgs.arp_frame(probe_answer(cluster, member))
                core.packet_in(DPID, HOME_PORT[(cluster.name, member.ip)], frame, now)
    assert core.located_ports(DPID) == HOME_PORT
    return core


def emitted_frame_flaws(frame: ArpFrame) -> str | None:
    """What scapy finds wrong with the bytes the app would send, or None: well-formed Ethernet/ARP,
    opcode 1 or 2, NIC MACs as Ethernet source and sender MAC, the fields the core decided."""
    try:
        data = ofmsgs.arp_bytes(frame)
    except ValueError as error:
        return f"not serialised: {error}"
    parsed = Ether(data)
    arp = parsed.getlayer(ARP)
    if parsed.type != 0x0806 or arp is None:
        return f"not Ethernet/ARP: {data.hex()}"
    if (arp.hwtype, arp.ptype, arp.hwlen, arp.plen) != (1, 0x0800, 6, 4) or arp.op not in (1, 2):
        return f"ARP header {(arp.hwtype, arp.ptype, arp.hwlen, arp.plen, arp.op)}: {data.hex()}"
    if not (is_nic_mac(parsed.src) and is_nic_mac(arp.hwsrc)):
        return f"sent from eth_src {parsed.src}, arp_sha {arp.hwsrc}"
    on_wire = ArpFrame(parsed.src, parsed.dst, arp.op, arp.hwsrc, arp.psrc, arp.hwdst, arp.pdst)
    return None if on_wire == frame else f"on the wire {on_wire} is not {frame}"


@dataclass
class FuzzRun:
    seed: int
    frames: int = 0
    accepted: int = 0
    emitted: int = 0
    refusals: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))
    kinds: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))
    failures: defaultdict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    failure_counts: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))
    seconds: float = 0.0

    def fail(self, prop: str, index: int, kind: str, port: int, data: bytes, detail: str) -> None:
        self.failure_counts[prop] += 1
        if len(self.failures[prop]) < EXAMPLES_KEPT:
            self.failures[prop].append(f"#{index} ({kind}) port {port} {data.hex()}: {detail}")

    def report(self, prop: str) -> str:
        examples = "\n  ".join(self.failures[prop])
        return f"seed {self.seed}: {self.failure_counts[prop]} of {self.frames} frames fail ({prop}):\n  {examples}"


def masked_own_source_ok(punted: ArpFrame, sent: ArpFrame, located: dict, in_port: int) -> bool:
    """Whether the controller put the sender's dedicated MAC as Ethernet source of the sender's own frame
    (arp_spa its DIP, from the port it is located on, with the cluster MAC as source)."""
    for cluster in REGISTRY.clusters_with_member_ip(punted.spa):
        member = cluster.member_for_ip(punted.spa)
        own_port = located.get((cluster.name, member.ip)) == in_port
        if own_port and punted.eth_src == cluster.cluster_mac and sent.eth_src == member.dedicated_mac:
            return True
    return False


def check_outputs(run: FuzzRun, core: NlbCore, punted: ArpFrame, outputs: tuple[FrameOut, ...], where) -> None:
    located = core.located_ports(DPID)
    members_at = defaultdict(list)
    for (cluster_name, ip), port in located.items():
        members_at[port].append((REGISTRY.cluster_named(cluster_name), ip))
    for out in outputs:
        flaw = emitted_frame_flaws(out.frame)
        if flaw:
            run.fail("emitted_malformed", *where, f"to port {out.port}: {flaw}")
        if out.port not in members_at:
            # A member's own frame keeps its masked source (its dedicated MAC) on the way out, or gets it from
            # the controller as its edge port's masking would have given it: allowed.
            own_source = out.frame.eth_src == punted.eth_src or masked_own_source_ok(
                punted, out.frame, located, where[2]
            )
            if out.frame.sha in DEDICATED_MACS or (out.frame.eth_src in DEDICATED_MACS and not own_source):
                run.fail("dedicated_mac_to_non_member", *where, f"to port {out.port}: {out.frame}")
        for cluster, ip in members_at.get(out.port, ()):
            peer_ips = {m.ip for m in cluster.members} - {ip}
            if out.frame.spa not in peer_ips:
                continue
            if out.frame.sha == cluster.cluster_mac:
                run.fail("own_cluster_mac_for_peer", *where, f"to {ip}'s port {out.port}: {out.frame}")
            elif out.frame.sha in CLUSTER_MACS:
                run.fail("other_cluster_mac_for_peer", *where, f"to {ip}'s port {out.port}: {out.frame}")


def check_locations(run: FuzzRun, before: dict, after: dict, punted: ArpFrame | Refusal, where) -> None:
    """A member's location changes only on a frame it could have sent: its cluster's MAC as arp_sha,
    its DIP as arp_spa (both clusters are in unicast mode)."""
    for key in set(before) | set(after):
        if before.get(key) == after.get(key):
            continue
        cluster_name, ip = key
        cluster_mac = REGISTRY.cluster_named(cluster_name).cluster_mac
        could_have_sent = isinstance(punted, ArpFrame) and punted.sha == cluster_mac and punted.spa == ip
        if not could_have_sent:
            run.fail("location_forged", *where, f"{key} {before.get(key)} -> {after.get(key)} by {punted}")


def fuzz(seed: int, count: int) -> FuzzRun:
    rng = random.Random(seed)
    source = FrameSource(rng)
    run = FuzzRun(seed=seed)
    started = time.perf_counter()
    core = located_core()
    with framekit.hang_detector():
        for index in range(count):
            now = index * FRAME_SECONDS
            if index % FRESH_CORE_EVERY == 0:
                core = located_core(now)
            elif index % TICK_EVERY == 0:  # the app's periodic work: confirmation timeouts, re-probes
                core.tick(DPID, now)
            kind, port, data = source.next()
            where = (index, kind, port, data)
            run.frames += 1
            run.kinds[kind] += 1
            try:
                with framekit.one_frame():
                    before = core.located_ports(DPID)
                    punted = ofmsgs.arp_frame(data)
                    if isinstance(punted, Refusal):
                        counted = core.counters[punted.value]
                        core.refused(punted)
                        run.refusals[punted.value] += 1
                        if core.counters[punted.value] != counted + 1:
                            run.fail("refusal_uncounted", *where, punted.value)
                    else:
                        run.accepted += 1
                        _decision, work = core.packet_in(DPID, port, punted, now)
                        run.emitted += len(work.frames)
                        check_outputs(run, core, punted, work.frames, where)
                    check_locations(run, before, core.located_ports(DPID), punted, where)
            except framekit.FrameHung:
                run.fail("hang", *where, f"still running after {framekit.HANG_SECONDS} s")
                core = located_core(now)
            except Exception as error:  # the property: nothing escapes
                run.fail("exception", *where, f"{type(error).__name__}: {error}")
                core = located_core(now)
    run.seconds = time.perf_counter() - started
    return run


@pytest.fixture(scope="module")
def fuzz_run() -> FuzzRun:
    print(f"\nfuzz: seed {SEED} (NLBFLOW_FUZZ_SEED), {FRAMES} frames (NLBFLOW_FUZZ_FRAMES)")
    run = fuzz(SEED, FRAMES)
    print(
        f"fuzz: {run.frames} frames in {run.seconds:.1f} s: {run.accepted} accepted, {run.emitted} frames emitted, "
        f"refused {dict(run.refusals)}; kinds {dict(run.kinds)}; failures {dict(run.failure_counts)}"
    )
    return run


def test_the_fuzz_reaches_every_outcome(fuzz_run):
    """A positive control: the mix is worth something only if it reaches every refusal and the core."""
    assert set(fuzz_run.refusals) == {reason.value for reason in Refusal}
    assert fuzz_run.accepted > fuzz_run.frames // 10 and fuzz_run.emitted > fuzz_run.frames // 10


def test_no_frame_raises_or_hangs(fuzz_run):
    assert not fuzz_run.failure_counts["exception"], fuzz_run.report("exception")
    assert not fuzz_run.failure_counts["hang"], fuzz_run.report("hang")


def test_every_refused_frame_is_counted_by_its_reason(fuzz_run):
    assert not fuzz_run.failure_counts["refusal_uncounted"], fuzz_run.report("refusal_uncounted")


def test_every_frame_the_app_emits_is_well_formed_ethernet_arp(fuzz_run):
    assert not fuzz_run.failure_counts["emitted_malformed"], fuzz_run.report("emitted_malformed")


def test_no_dedicated_mac_leaves_a_port_without_a_member(fuzz_run):
    """As arp_sha never; as Ethernet source only on a member's own frame (source masking)."""
    assert not fuzz_run.failure_counts["dedicated_mac_to_non_member"], fuzz_run.report("dedicated_mac_to_non_member")


def test_no_member_is_told_a_peers_address_is_at_its_cluster_mac(fuzz_run):
    assert not fuzz_run.failure_counts["own_cluster_mac_for_peer"], fuzz_run.report("own_cluster_mac_for_peer")


def test_no_member_is_told_a_peers_address_is_at_another_clusters_mac(fuzz_run):
    """Another cluster's MAC with a member's DIP is a spoof (issue 7, 1b): the member's peers must not see it."""
    assert not fuzz_run.failure_counts["other_cluster_mac_for_peer"], fuzz_run.report("other_cluster_mac_for_peer")


def test_no_location_changes_on_a_frame_the_member_could_not_have_sent(fuzz_run):
    assert not fuzz_run.failure_counts["location_forged"], fuzz_run.report("location_forged")
