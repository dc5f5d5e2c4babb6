"""Where one ARP answer's time goes in the app's own code, without a switch (docs/performance.md).

A faithful harness of the packet path: the app object with the real core and three located members (the
lab's cluster, proxy or relay mode), packet-ins built as the switch sends them and parsed by the framework's
own OpenFlow parser (ofproto_parser.msg, as its receive loop does), handed to the app's packet-in handler,
and the app's sender greenthread handing what it sends to a datapath whose send() keeps the bytes (as the
framework's Datapath.send queues them for its socket writer). Prints the CPU time (process time, so other
processes' load matters less) per frame in rounds, the framework's parse of the OpenFlow message apart,
and with --profile the cProfile of the app's part by what it does.

With --nd, each round handles a member's Neighbor Solicitations for a peer's IPv6 DIP as well (from its own
IPv6 DIP, and from a link-local address as Linux's reachability probes come), interleaved with the ARP
request for the same peer, and prints their cost as a ratio of ARP's (issue 11); --members N
registers and locates N members (each with an IPv6 DIP), so the decision's cost at 10,000 members shows.

    python -m bench.packet_path [--mode proxy|relay] [--frames N] [--rounds N] [--profile] [--nd] [--members N]
    (run it with the venv of the runtime: .venv for os-ken, .venv-ryu for Ryu)

One app serves every round and kind, so that a large registry is built once.
"""

from __future__ import annotations

import argparse
import cProfile
import logging
import pstats
import statistics
import struct
import sys
import time
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address

from scapy.layers.inet6 import ICMPv6ND_NS, ICMPv6NDOptSrcLLAddr, IPv6
from scapy.layers.l2 import ARP, Ether

from bench.stats import ratio, spread
from flows.addresses import dedicated_mac, unicast_cluster_mac
from flows.core import NlbCore
from flows.flowspec import expected_flows
from flows.model import ArpMode, Cluster, Config, Member, Registry
from flows.session import SessionPolicy
from ryu_apps.compat import RUNTIME, hub, ofp_event, ofproto_v1_3, ofproto_v1_3_parser
from ryu_apps.nlbflow import Connection, NlbFlow
from tests.netlab import CLUSTER_MAC, CLUSTER_VIP, MEMBER_DIPS

DIPS = tuple(dip.split("/")[0] for dip in MEMBER_DIPS)
KINDS = {
    "arp": "ARP request",
    "nd": "ND solicitation from the IPv6 DIP",
    "nud": "ND solicitation from a link-local address (a reachability probe)",
}
PARTS = (  # (what, file, function): its cumulative time in the profile
    ("the whole handler (nlbflow.packet_in)", "ryu_apps/nlbflow.py", "packet_in"),
    ("  parsing the frame (flows/frames.py)", "ryu_apps/ofmsgs.py", "arp_frame"),
    ("  the decision (NlbCore.packet_in)", "flows/core.py", "packet_in"),
    ("  logging (Logger.log, at INFO: the line is not written)", "logging/__init__.py", "log"),
    ("  _send: notes, outgoing()", "ryu_apps/nlbflow.py", "_send"),
    ("    building the answer frame (ofmsgs.arp_bytes)", "ryu_apps/ofmsgs.py", "arp_bytes"),
    ("    the packet-out objects (ofmsgs.packet_outs, with arp_bytes)", "ryu_apps/ofmsgs.py", "packet_outs"),
    ("serialising framework messages (MsgBase.serialize, in the sender)", "ofproto_parser.py", "serialize"),
    ("serialising template packet-outs (PacketOut.serialize, in the sender)", "ryu_apps/ofmsgs.py", "serialize"),
)


@dataclass
class KeepingDatapath:
    """What the app uses of a datapath; send() keeps the bytes the framework would write to the socket."""

    id: int = 1
    ofproto = ofproto_v1_3
    ofproto_parser = ofproto_v1_3_parser
    xid: int = 0
    written: list = field(default_factory=list)

    def set_xid(self, message) -> int:
        self.xid += 1
        message.set_xid(self.xid)
        return self.xid

    def send(self, buf: bytes, close_socket: bool = False) -> bool:
        self.written.append(buf)
        return True

    def send_msg(self, message, close_socket: bool = False) -> bool:
        if message.xid is None:
            self.set_xid(message)
        message.serialize()
        return self.send(message.buf)


def member_ips(count: int) -> tuple[str, ...]:
    """The lab's three DIPs, then 10.1.0.0 onwards."""
    more = (str(IPv4Address("10.1.0.0") + index) for index in range(max(0, count - len(DIPS))))
    return (*DIPS[:count], *more)


def wide_ipv6_dip(ip: str) -> str:
    """A member's IPv6 DIP: fd00:10:: and all 32 bits of its IPv4 DIP (10.0.0.11 -> fd00:10::a00:b), so that
    10,000 members get distinct ones (the lab's netlab.ipv6_dip uses the last octet)."""
    value = int(IPv4Address(ip))
    return f"fd00:10::{value >> 16:x}:{value & 0xFFFF:x}"


def app_for(mode: ArpMode, count: int = len(DIPS)) -> tuple[NlbFlow, KeepingDatapath]:
    """The app with `count` members (the lab's cluster first, each with an IPv6 DIP too) located on ports 1
    to count (adopted from its flows, as after a restart)."""
    members = tuple(
        Member(ip=ip, dedicated_mac=dedicated_mac(ip), ips=(wide_ipv6_dip(ip),)) for ip in member_ips(count)
    )
    ports = tuple(range(1, count + 3))  # the members' ports, and two more
    vip = CLUSTER_VIP.split("/")[0]
    cluster = Cluster(name="web", cluster_ip=vip, cluster_mac=unicast_cluster_mac(vip), arp=mode, members=members)
    config = Config(registry=Registry(clusters=(cluster,)))
    app = NlbFlow.__new__(NlbFlow)  # no manager, no REST server: only what the handlers use
    app.core = NlbCore(config)
    app.connections = {}
    app.session_policy = SessionPolicy()
    app.logger = logging.getLogger("nlbflow-bench")
    app.logger.setLevel(logging.INFO)  # as the controller runs: per-frame lines are DEBUG
    datapath = KeepingDatapath()
    app.connections[1] = Connection(datapath, app.session_policy)
    app.core.switch_connected(1, dict.fromkeys(ports, True))
    located = {("web", member.ip): port for port, member in enumerate(members, start=1)}
    app.core.flows_read_back(1, expected_flows(config.registry, config.settings, located, switch_ports=ports), 0.0)
    return app, datapath


def punted_frame(family: str) -> bytes:
    """What m2 punts when it resolves m3: an ARP request, or a Neighbor Solicitation (SLLA = cluster MAC);
    "nud": the NS by which Linux confirms a stale entry, from its link-local address to m3's dedicated MAC,
    whose sender the app knows by its port alone."""
    if family == "arp":
        return bytes(
            Ether(src=CLUSTER_MAC, dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, hwsrc=CLUSTER_MAC, psrc=DIPS[1], pdst=DIPS[2])
        )
    target = IPv6Address(wide_ipv6_dip(DIPS[2]))
    low24 = target.packed[13:]  # to the target's solicited-node multicast group, as a host sends it
    group = IPv6Address(IPv6Address("ff02::1:ff00:0").packed[:13] + low24)
    if family == "nud":
        ether, ipv6 = Ether(src=CLUSTER_MAC, dst=dedicated_mac(DIPS[2])), IPv6(src="fe80::2", dst=str(target), hlim=255)
    else:
        ether = Ether(src=CLUSTER_MAC, dst="33:33:ff:" + low24.hex(":"))
        ipv6 = IPv6(src=wide_ipv6_dip(DIPS[1]), dst=str(group), hlim=255)
    return bytes(ether / ipv6 / ICMPv6ND_NS(tgt=str(target)) / ICMPv6NDOptSrcLLAddr(lladdr=CLUSTER_MAC))


def packet_in_bytes(frame: bytes, in_port: int) -> bytes:
    """An OpenFlow 1.3 packet-in as OVS sends it for the app's punt flow (no buffer, whole frame)."""
    parser = ofproto_v1_3_parser
    match = parser.OFPMatch(in_port=in_port)
    msg = parser.OFPPacketIn(KeepingDatapath(), buffer_id=ofproto_v1_3.OFP_NO_BUFFER, total_len=len(frame))
    msg.reason, msg.table_id, msg.cookie, msg.match, msg.data = ofproto_v1_3.OFPR_ACTION, 0, 0, match, frame
    return _serialise_packet_in(msg)


def _serialise_packet_in(msg) -> bytes:
    """OFPPacketIn has no serialiser in the frameworks (a controller never sends one): packed by hand."""
    body = bytearray()
    msg.match.serialize(body, 0)
    header = struct.pack("!IHBBQ", msg.buffer_id, msg.total_len, msg.reason, msg.table_id, msg.cookie)
    payload = header + bytes(body) + b"\x00\x00" + msg.data
    return struct.pack("!BBHI", ofproto_v1_3.OFP_VERSION, ofproto_v1_3.OFPT_PACKET_IN, 8 + len(payload), 0) + payload


def parse(datapath: KeepingDatapath, wire: bytes):
    version, msg_type, msg_len, xid = ofproto_v1_3_parser.ofproto_parser.header(wire)
    return ofproto_v1_3_parser.ofproto_parser.msg(datapath, version, msg_type, msg_len, xid, bytearray(wire))


def handle(
    app: NlbFlow, datapath: KeepingDatapath, family: str, frames: int, profiler: cProfile.Profile | None = None
) -> tuple[float, float, int]:
    """CPU seconds per frame of the framework's parse and of the app's part, and the socket writes made."""
    datapath.written.clear()
    app.connections[1] = conn = Connection(datapath, app.session_policy)
    wire = packet_in_bytes(punted_frame(family).ljust(60, b"\x00"), in_port=2)
    sender = hub.spawn(app._drain, conn)
    start = time.process_time()
    for _ in range(frames):
        parse(datapath, wire)
    framework_parse = (time.process_time() - start) / frames
    events = [ofp_event.ofp_msg_to_ev(parse(datapath, wire)) for _ in range(frames)]
    start = time.process_time()
    if profiler:
        profiler.enable()
    for number, event in enumerate(events, start=1):
        app.packet_in(event)
        if number % 16 == 0:
            hub.sleep(0)  # the framework's receive loop yields now and then; the sender runs
    while conn.outbox:
        hub.sleep(0)
    if profiler:
        profiler.disable()
    app_seconds = (time.process_time() - start) / frames
    conn.closed()
    hub.kill(sender)
    return framework_parse, app_seconds, len(datapath.written)


def run(mode: ArpMode, frames: int, rounds: int, profile: bool, families: tuple[str, ...], count: int) -> None:
    app, datapath = app_for(mode, count)
    parses: dict[str, list[float]] = {family: [] for family in families}
    apps: dict[str, list[float]] = {family: [] for family in families}
    writes = {}
    for _ in range(rounds):
        for family in families:  # interleaved: each round measures every family once
            framework_parse, app_seconds, writes[family] = handle(app, datapath, family, frames)
            parses[family].append(framework_parse * 1e6)
            apps[family].append(app_seconds * 1e6)
    print(f"\n== {RUNTIME}, {mode.value}, {count:,} members: {rounds} rounds of {frames} packet-ins of each kind")
    for family in families:
        print(f"-- {KINDS[family]}: {writes[family]} socket writes a round")
        print(f"CPU us per frame, framework parse of the packet-in (ofproto_parser.msg): {spread(parses[family])}")
        print(f"CPU us per frame, the app (handler, building, serialising, sending):  {spread(apps[family])}")
        ceiling = 1e6 / (statistics.median(parses[family]) + statistics.median(apps[family]))
        print(f"  at most {ceiling:,.0f} frames/s on one core for these two parts (medians)")
    for family in families[1:]:
        per_round = [nd / arp for nd, arp in zip(apps[family], apps["arp"])]
        print(f"{family} over ARP, the app's part: {ratio(apps[family], apps['arp'])} (per round: {spread(per_round)})")
    if profile:
        profiler = cProfile.Profile()
        handle(app, datapath, families[0], frames, profiler)
        stats = pstats.Stats(profiler)
        total = sum(entry[2] for entry in stats.stats.values())  # every function's own time: the whole run
        print(
            f"cProfile, per frame (profiled, so slower; the shares are what counts), of {total / frames * 1e6:.1f} us:"
        )
        for label, where, name in PARTS:
            seconds = sum(v[3] for k, v in stats.stats.items() if k[0].endswith(where) and k[2] == name)
            print(f"  {label:<66} {seconds / frames * 1e6:7.1f} us  {seconds / total:4.0%}")
        stats.sort_stats("tottime").print_stats(15)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=[m.value for m in ArpMode], action="append")
    parser.add_argument("--frames", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--profile", action="store_true", help="print the cProfile of the app's part")
    parser.add_argument("--nd", action="store_true", help="Neighbor Solicitations too, against ARP (issue 11)")
    parser.add_argument("--members", type=int, default=len(DIPS), help="members registered and located (>= 3)")
    args = parser.parse_args(argv)
    if args.members < len(DIPS):
        parser.error(f"--members must be at least {len(DIPS)}")
    families = ("arp", "nd", "nud") if args.nd else ("arp",)
    for mode in args.mode or ["proxy", "relay"]:
        run(ArpMode(mode), args.frames, args.rounds, args.profile, families, args.members)
    return 0


if __name__ == "__main__":
    sys.exit(main())
