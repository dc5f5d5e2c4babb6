"""Where one ARP answer's time goes in the app's own code, without a switch (docs/performance.md).

A faithful harness of the packet path: the app object with the real core and three located members (the
lab's cluster, proxy or relay mode), packet-ins built as the switch sends them and parsed by the framework's
own OpenFlow parser (ofproto_parser.msg, as its receive loop does), handed to the app's packet-in handler,
and the app's sender greenthread handing what it sends to a datapath whose send() keeps the bytes (as the
framework's Datapath.send queues them for its socket writer). Prints the CPU time (process time, so other
processes' load matters less) per frame in rounds, the framework's parse of the OpenFlow message apart,
and with --profile the cProfile of the app's part by what it does.

    python -m bench.packet_path [--mode proxy|relay] [--frames N] [--rounds N] [--profile]
    (run it with the venv of the runtime: .venv for os-ken, .venv-ryu for Ryu)
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

from scapy.layers.l2 import ARP, Ether

from bench.stats import spread
from flows.addresses import dedicated_mac, unicast_cluster_mac
from flows.core import NlbCore
from flows.flowspec import expected_flows
from flows.model import ArpMode, Cluster, Config, Member, Registry
from flows.session import SessionPolicy
from ryu_apps.compat import RUNTIME, hub, ofp_event, ofproto_v1_3, ofproto_v1_3_parser
from ryu_apps.nlbflow import Connection, NlbFlow
from tests.netlab import CLUSTER_MAC, CLUSTER_VIP, MEMBER_DIPS

DIPS = tuple(dip.split("/")[0] for dip in MEMBER_DIPS)
PORTS = (1, 2, 3, 4, 5)
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


def app_for(mode: ArpMode) -> tuple[NlbFlow, KeepingDatapath]:
    """The app with the lab's cluster located on ports 1-3 (adopted from its flows, as after a restart)."""
    members = tuple(Member(ip=ip, dedicated_mac=dedicated_mac(ip)) for ip in DIPS)
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
    app.core.switch_connected(1, dict.fromkeys(PORTS, True))
    located = {("web", ip): port for port, ip in enumerate(DIPS, start=1)}
    app.core.flows_read_back(1, expected_flows(config.registry, config.settings, located, switch_ports=PORTS), 0.0)
    return app, datapath


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


def handle(mode: ArpMode, frames: int, profiler: cProfile.Profile | None = None) -> tuple[float, float, int]:
    """CPU seconds per frame of the framework's parse and of the app's part, and the socket writes made."""
    app, datapath = app_for(mode)
    conn = app.connections[1]
    request = Ether(src=CLUSTER_MAC, dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, hwsrc=CLUSTER_MAC, psrc=DIPS[1], pdst=DIPS[2])
    wire = packet_in_bytes(bytes(request).ljust(60, b"\x00"), in_port=2)
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


def run(mode: ArpMode, frames: int, rounds: int, profile: bool) -> None:
    parses, apps = [], []
    for _ in range(rounds):
        framework_parse, app_seconds, writes = handle(mode, frames)
        parses.append(framework_parse * 1e6)
        apps.append(app_seconds * 1e6)
    print(f"\n== {RUNTIME}, {mode.value}: {rounds} rounds of {frames} packet-ins, {writes} socket writes a round")
    print(f"CPU us per frame, framework parse of the packet-in (ofproto_parser.msg): {spread(parses)}")
    print(f"CPU us per frame, the app (handler, building, serialising, sending):  {spread(apps)}")
    ceiling = 1e6 / (statistics.median(parses) + statistics.median(apps))
    print(f"  at most {ceiling:,.0f} frames/s on one core for these two parts (medians)")
    if profile:
        profiler = cProfile.Profile()
        handle(mode, frames, profiler)
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
    args = parser.parse_args(argv)
    for mode in args.mode or ["proxy", "relay"]:
        run(ArpMode(mode), args.frames, args.rounds, args.profile)
    return 0


if __name__ == "__main__":
    sys.exit(main())
