"""ARP through the controller against ARP between ordinary hosts on the same switch (issue 8 §5).

A lab (tests/netlab.py: OVS userspace datapath, members m1..m3 on ports 1-3, ordinary hosts c1 and o1 on
ports 4-5, no cluster members) with the app in proxy, then relay mode:

- resolution latency: interleaved rounds in which m2 and m3 flush their neighbours and resolve each other
  (answered by the app in proxy mode; relayed to the target and its reply revised in relay mode), and c1
  and o1 resolve each other (the switch's NORMAL pipeline and the other host's own reply);
- sustained answers: m1 sends ARP requests for m2's DIP at a fixed rate (tests/lab/stormkit.py), captured
  on m1: answers/s, loss, the latest answer's delay after the sending stopped, and the controller's CPU
  seconds per 1,000 answers (/proc/<pid>/stat). The baseline, interleaved at the same rate: c1 sends the
  same requests for o1's address, which o1's kernel answers through NORMAL, no controller involved.

The punt meters would cap the members' rate at 100/s per port: the config raises both punt rates to
RAISED_PUNT_RATE, above every offered rate, so the controller is what is measured. Prints medians, spread
and ratios; asserts nothing. Targets: proxy latency within 2x the ordinary pair's, proxy >= 10,000
answers/s with < 1 % loss, relay >= 5,000/s.

    python -m bench.arp [--short] [--runtime osken|ryu] [--mode proxy|relay] [--rate N]
    (as root; NLBFLOW_BENCH_SHORT=1 is --short: one runtime, small counts, well under a minute)
"""

from __future__ import annotations

import argparse
import os
import pstats
import struct
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from scapy.layers.inet import TCP
from scapy.layers.l2 import ARP, Ether

from bench.stats import ratio, spread
from bench.storm import resolve_times
from tests.lab.appkit import (
    OUTSIDER_ADDRESS,
    OUTSIDER_MAC,
    RUNTIMES,
    cluster_yaml,
    expected_table,
    wait_for_table,
    write_config,
)
from tests.lab.stormkit import arp_request, storm
from tests.netlab import CLUSTER_MAC, Host, Lab

CAPTURE_SETTLE_SECONDS = 2.0  # the capture runs this long after the sending stops: later answers are lost
CAPTURE_BUFFER_KIB = 32_768  # tcpdump's -B: room for a second of answers while the capture waits for a core
RAISED_PUNT_RATE = 100_000  # packets/s, per port and in total: above every rate offered here
RATES = {"proxy": (2_500, 5_000, 10_000, 15_000), "relay": (2_500, 5_000, 7_500)}
SHORT_RATES = {"proxy": (5_000,), "relay": (2_500,)}
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Flood:
    """One run of the sender: what it sent, what came back, and what the controller spent."""

    rate: int
    sent: int
    seconds: float
    answers: int
    latest_after_ms: float
    cpu_seconds: float
    switch_drops: dict[str, int]  # how much each of OVS_DROP_COUNTERS grew during the run
    capture_drops: int  # answers the capture lost (tcpdump's "dropped by kernel"): then `loss` is too high
    switch_sent: int  # frames the switch sent out of the sender's port meanwhile: the answers, counted by OVS

    @property
    def answers_per_second(self) -> float:
        return self.answers / self.seconds

    @property
    def loss(self) -> float:
        return 1 - self.answers / self.sent if self.sent else 1.0


@dataclass
class Results:
    member_ms: list[float] = field(default_factory=list)
    member_lost: int = 0
    ordinary_ms: list[float] = field(default_factory=list)
    member_wire_ms: list[float] = field(default_factory=list)
    ordinary_wire_ms: list[float] = field(default_factory=list)
    ordinary_lost: int = 0
    member_floods: dict[int, list[Flood]] = field(default_factory=dict)
    ordinary_floods: dict[int, list[Flood]] = field(default_factory=dict)
    legs: list[Leg] = field(default_factory=list)
    floor_legs: list[Leg] = field(default_factory=list)  # the same with bench/floor.py as the controller


def controller_cpu(lab: Lab) -> float:
    """User plus system CPU seconds of the controller process the lab started (/proc/<pid>/stat)."""
    pid = [record.pid for record in lab.processes if record.what.startswith("controller")][-1]
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime (fields 14, 15 of the whole line)


def flood(lab: Lab, sender: Host, target_ip: str, frame: bytes, rate: int, seconds: float) -> Flood:
    """Send `frame` from `sender` at `rate`/s for `seconds`; count the replies from target_ip it receives.

    The capture's filter keeps only those replies, and in the kernel (`inbound`, not tcpdump's -Q, which
    libpcap applies after the kernel has queued the sender's own requests too): with both cores busy, a
    capture that also had to take every request dropped 1.6 to 15 % of the answers before it saw them.
    """
    cpu_before, counters_before = controller_cpu(lab), ovs_drop_counters(lab)
    sent_before = lab.port_tx_packets(sender)
    answer_filter = f"inbound and arp and arp[6:2] = 2 and arp src host {target_ip}"
    with lab.capture(sender, answer_filter, settle=CAPTURE_SETTLE_SECONDS, buffer_kib=CAPTURE_BUFFER_KIB) as seen:
        with storm(lab, sender, frame, rate=rate, seconds=int(seconds) + 30) as running:
            time.sleep(seconds)
        sent = running.stop()
    cpu = controller_cpu(lab) - cpu_before
    grown = {name: total - counters_before[name] for name, total in ovs_drop_counters(lab).items()}
    switch_sent = lab.port_tx_packets(sender) - sent_before
    answers = [float(f.time) for f in seen.frames if ARP in f and f[ARP].op == 2 and f[ARP].psrc == target_ip]
    latest_after = max(0.0, max(answers, default=running.stopped) - running.stopped) * 1000
    seconds_sent = running.stopped - running.started
    return Flood(rate, sent, seconds_sent, len(answers), latest_after, cpu, grown, seen.dropped, switch_sent)


OVS_DROP_COUNTERS = ("packet_in_overflow", "rconn_overflow", "rconn_discarded")
"""ovs-vswitchd's coverage counters of punted frames it dropped: packet-ins the datapath could not queue
for the main thread, and OpenFlow messages a controller connection's full queue discarded. (Not
datapath_drop_userspace_action_error: it grows by one for every frame punted, answered or not.)"""


def ovs_drop_counters(lab: Lab) -> dict[str, int]:
    """OVS_DROP_COUNTERS' totals since ovs-vswitchd started (one never counted yet is absent: 0)."""
    counters = dict.fromkeys(OVS_DROP_COUNTERS, 0)
    for line in lab.appctl("coverage/show").splitlines():
        name, total = line.partition(" ")[0], line.rsplit("total:", 1)[-1].strip()
        if name in counters and total.isdigit():
            counters[name] = int(total)
    return counters


def start(lab: Lab, runtime: str, mode: str, extra_apps: tuple[str, ...] = ()) -> tuple[list[Host], Host, Host]:
    """The lab's cluster with the app in `mode`, punt rates raised, its flows in the switch."""
    members, client = lab.add_typical_cluster()
    outsider = lab.add_host("o1", OUTSIDER_MAC, [OUTSIDER_ADDRESS], ofport=len(members) + 2)
    raised = f"fabric: {{punt_rate_per_port: {RAISED_PUNT_RATE}, punt_rate_total: {RAISED_PUNT_RATE}}}\n"
    config = write_config(lab, raised + cluster_yaml(mode))
    lab.start_controller(runtime, config, extra_args=extra_apps)
    lab.wait_connected()
    expected = expected_table(config, members)
    if sorted(wait_for_table(lab, expected)) != sorted(expected):
        raise SystemExit(f"the app's flows never became the expected set:\n{lab.controller_log()}")
    return members, client, outsider


def measure_latency(lab: Lab, pair: tuple[Host, Host], arps: int) -> tuple[list[float], list[float], int]:
    """Both hosts of the pair resolve each other `arps` times: the times arping reports (ms), the times on
    the wire (ms: the request entering the switch at the requester's port to the answer leaving it there),
    and how many got no answer."""
    times, wire, lost = [], [], 0
    for src, dst in (pair, pair[::-1]):
        lab.flush_neigh(src)
        with lab.capture(src.switch_iface, "arp") as port:
            got, missing = resolve_times(lab, src, dst, arps)
        times += got
        lost += missing
        wire += _paired(port.frames, dst)
    return times, wire, lost


def _paired(frames: list, dst: Host) -> list[float]:
    """For each request for dst's address, the first answer from dst after it and before the next request."""
    requests = [float(f.time) for f in frames if ARP in f and f[ARP].op == 1 and f[ARP].pdst == dst.ip]
    answers = [float(f.time) for f in frames if ARP in f and f[ARP].op == 2 and f[ARP].psrc == dst.ip]
    times = []
    for number, sent in enumerate(requests):
        until = requests[number + 1] if number + 1 < len(requests) else float("inf")
        first = next((t for t in answers if sent <= t < until), None)
        if first is not None:
            times.append((first - sent) * 1000)
    return times


def run(runtime: str, mode: str, rounds: int, arps: int, rates: tuple[int, ...], seconds: float) -> Results:
    results = Results()
    with Lab() as lab:
        (m1, m2, m3), c1, o1 = start(lab, runtime, mode)
        for _ in range(rounds):
            times, wire, lost = measure_latency(lab, (m2, m3), arps)
            results.member_ms += times
            results.member_wire_ms += wire
            results.member_lost += lost
            times, wire, lost = measure_latency(lab, (c1, o1), arps)
            results.ordinary_ms += times
            results.ordinary_wire_ms += wire
            results.ordinary_lost += lost
        if mode == "proxy":
            results.legs, results.floor_legs = legs_and_floor(lab, runtime, (m1, m2, m3), arps // 2)
        member_frame = arp_request(CLUSTER_MAC, CLUSTER_MAC, m1.ip, m2.ip)
        ordinary_frame = arp_request(c1.mac, c1.mac, c1.ip, o1.ip)
        for rate in rates:
            for _ in range(max(1, rounds // 2)):
                results.ordinary_floods.setdefault(rate, []).append(
                    flood(lab, c1, o1.ip, ordinary_frame, rate, seconds)
                )
                results.member_floods.setdefault(rate, []).append(flood(lab, m1, m2.ip, member_frame, rate, seconds))
                time.sleep(1.0)  # let the controller's backlog, if any, drain before the next run
    report(runtime, mode, rounds, results)
    return results


OFPT_PACKET_IN, OFPT_PACKET_OUT = 10, 13
OF_HEADER = struct.Struct("!BBHI")


@dataclass
class Leg:
    """One proxy resolution taken apart on the wire, in ms: the request entering the switch to its
    packet-in on the controller connection, packet-in to packet-out (the controller), packet-out to the
    answer leaving the switch."""

    switch_in: float
    controller: float
    switch_out: float


def openflow_frames(segments: list) -> list[tuple[float, int, bytes]]:
    """(time, message type, the frame inside) of each packet-in and packet-out in captured TCP segments
    (each segment starts at a message: the connection sends whole messages, TCP_NODELAY)."""
    found = []
    for segment in segments:
        payload = bytes(segment[TCP].payload) if TCP in segment else b""
        offset = 0
        while offset + OF_HEADER.size <= len(payload):
            version, msg_type, length, _ = OF_HEADER.unpack_from(payload, offset)
            if version != 4 or length < OF_HEADER.size:
                break
            message = payload[offset : offset + length]
            if msg_type == OFPT_PACKET_IN and len(message) >= 28:
                match_length = struct.unpack_from("!H", message, 26)[0]
                found.append((float(segment.time), msg_type, message[24 + (match_length + 7) // 8 * 8 + 2 :]))
            elif msg_type == OFPT_PACKET_OUT and len(message) >= 24:
                found.append((float(segment.time), msg_type, message[24 + struct.unpack_from("!H", message, 16)[0] :]))
            offset += length
    return found


def proxy_legs(lab: Lab, src: Host, dst: Host, count: int) -> list[Leg]:
    """Resolutions of dst's DIP by src, one at a time, captured on src's switch port and on the controller
    connection (loopback in the switch namespace): where each one's time goes."""
    legs = []
    for _ in range(count):
        lab.flush_neigh(src)
        with lab.capture(src.switch_iface, "arp") as port, lab.capture("lo", "tcp port 6653") as connection:
            resolve_times(lab, src, dst, 1)
        requests = [float(f.time) for f in port.frames if ARP in f and f[ARP].op == 1 and f[ARP].pdst == dst.ip]
        answers = [float(f.time) for f in port.frames if ARP in f and f[ARP].op == 2 and f[ARP].psrc == dst.ip]
        ins = [t for t, kind, data in openflow_frames(connection.frames) if kind == OFPT_PACKET_IN and _asks(data, dst)]
        outs = [
            t for t, kind, data in openflow_frames(connection.frames) if kind == OFPT_PACKET_OUT and _tells(data, dst)
        ]
        if requests and answers and ins and outs:
            legs.append(Leg((ins[0] - requests[0]) * 1000, (outs[0] - ins[0]) * 1000, (answers[0] - outs[0]) * 1000))
    return legs


def legs_and_floor(lab: Lab, runtime: str, members: tuple[Host, ...], count: int) -> tuple[list[Leg], list[Leg]]:
    """Proxy resolutions taken apart with the app, then with the framework's floor (bench/floor.py) as the
    controller on the same switch and flows, in alternating halves; the app is running again at the end."""
    config = lab.workdir / "nlbflow.yaml"
    legs: list[Leg] = []
    floor: list[Leg] = []
    for _ in range(2):
        legs += proxy_legs(lab, members[1], members[2], count // 2)
        lab.stop_controller()
        lab.start_controller(runtime, app="bench/floor.py")
        lab.wait_connected()
        floor += proxy_legs(lab, members[1], members[2], count // 2)
        lab.stop_controller()
        lab.start_controller(runtime, config)
        lab.wait_connected()
        expected = expected_table(config, list(members))
        if sorted(wait_for_table(lab, expected)) != sorted(expected):
            raise SystemExit(f"the app's flows never became the expected set:\n{lab.controller_log()}")
    return legs, floor


def _asks(data: bytes, dst: Host) -> bool:
    frame = Ether(data)
    return ARP in frame and frame[ARP].op == 1 and frame[ARP].pdst == dst.ip


def _tells(data: bytes, dst: Host) -> bool:
    frame = Ether(data)
    return ARP in frame and frame[ARP].op == 2 and frame[ARP].psrc == dst.ip


def _flood_line(floods: list[Flood], with_cpu: bool) -> str:
    best = max(floods, key=lambda f: f.answers_per_second)
    worst_loss = max(f.loss for f in floods)
    line = (
        f"answers/s {spread([f.answers_per_second for f in floods])}  loss max {worst_loss:6.2%}  "
        f"latest after stop ms max {max(f.latest_after_ms for f in floods):7.0f}"
    )
    if with_cpu:
        per_thousand = [f.cpu_seconds / f.answers * 1000 for f in floods if f.answers]
        line += f"  controller CPU s/1,000 answers {min(per_thousand, default=float('nan')):.3f}"
    line += f"  (best sent {best.sent / best.seconds:,.0f}/s)"
    drops: dict[str, int] = {}
    for run in floods:
        for name, count in run.switch_drops.items():
            drops[name] = drops.get(name, 0) + count
    counted = ", ".join(f"{name} {drops.get(name, 0)}" for name in OVS_DROP_COUNTERS)
    switch_loss = max(1 - f.switch_sent / f.sent for f in floods)
    line += (
        f"\n      switch's count of frames sent to the requester: loss max {switch_loss:6.2%};"
        f"  answers the capture dropped: {sum(f.capture_drops for f in floods)}"
    )
    return line + f"\n      OVS's drop counters during these runs: {counted}"


def report(runtime: str, mode: str, rounds: int, results: Results) -> None:
    print(f"\n== {runtime}, {mode}: {rounds} interleaved latency rounds; punt meters raised to {RAISED_PUNT_RATE}/s")
    print("ARP resolution on the wire, ms (request in to answer out at the requester's switch port):")
    print(f"  members (m2<->m3, through the app): {spread(results.member_wire_ms)}  lost {results.member_lost}")
    print(f"  ordinary (c1<->o1, NORMAL):         {spread(results.ordinary_wire_ms)}  lost {results.ordinary_lost}")
    target = "  (target < 2x)" if mode == "proxy" else ""
    print(f"  member/ordinary median: {ratio(results.member_wire_ms, results.ordinary_wire_ms)}{target}")
    print(f"as arping reports it, ms: members {spread(results.member_ms)}")
    print(f"                          ordinary {spread(results.ordinary_ms)}")
    if results.legs:
        print("one proxy resolution on the wire, ms (m2's switch port and the controller connection):")
        print(f"  request in -> packet-in sent (the switch):       {spread([leg.switch_in for leg in results.legs])}")
        print(f"  packet-in -> packet-out (the controller):        {spread([leg.controller for leg in results.legs])}")
        print(f"  packet-out -> answer out (the switch):           {spread([leg.switch_out for leg in results.legs])}")
        floor = [leg.controller for leg in results.floor_legs]
        print(f"  the framework's floor (bench/floor.py), packet-in -> packet-out: {spread(floor)}")
    sustained = None
    for rate, floods in sorted(results.member_floods.items()):
        print(f"offered {rate:>6,}/s  members:  {_flood_line(floods, with_cpu=True)}")
        print(f"                  ordinary: {_flood_line(results.ordinary_floods[rate], with_cpu=False)}")
        if max(f.loss for f in floods) < 0.01:
            sustained = rate
    goal = 10_000 if mode == "proxy" else 5_000
    shown = f"{sustained:,}/s" if sustained else "none of the rates tried"
    print(f"highest offered rate answered with < 1 % loss in every run: {shown}  (target >= {goal:,}/s)")


PROFILED_PARTS = (  # (what, file, function): cumulative time of functions that never yield, so it is their own
    ("framework: OpenFlow parse of a message (ofproto_parser.msg)", "ofproto/ofproto_parser.py", "msg"),
    ("app: packet-in handler, whole (nlbflow.packet_in)", "ryu_apps/nlbflow.py", "packet_in"),
    ("app:   parsing the frame (ofmsgs.arp_frame)", "ryu_apps/ofmsgs.py", "arp_frame"),
    ("app:   the decision (NlbCore.packet_in)", "flows/core.py", "packet_in"),
    ("app:   _send (notes, outgoing: packet-out objects, answer bytes)", "ryu_apps/nlbflow.py", "_send"),
    ("app:     the answer's bytes (ofmsgs.arp_bytes)", "ryu_apps/ofmsgs.py", "arp_bytes"),
    ("app: serialising messages (MsgBase.serialize)", "ofproto/ofproto_parser.py", "serialize"),
)
OWNERS = (  # (what, whether a profile key (file, line, function) is its code)
    ("the app (flows/, ryu_apps/)", lambda key: "/flows/" in key[0] or "/ryu_apps/" in key[0]),
    ("the framework's OpenFlow layer (ofproto/)", lambda key: "/ofproto/" in key[0]),
    ("the framework's other code (controller, app_manager, hub, ...)", lambda key: _framework_other(key[0])),
    ("eventlet (green sockets, hub, queues)", lambda key: "/eventlet/" in key[0]),
    ("other: builtins (socket calls, struct, ...) and the stdlib", lambda key: _other(key[0])),
)


def _framework_other(path: str) -> bool:
    return ("/os_ken/" in path or "/ryu/" in path) and "/ofproto/" not in path


def _other(path: str) -> bool:
    known = ("/flows/", "/ryu_apps/", "/os_ken/", "/ryu/", "/eventlet/")
    return not any(part in path for part in known)


def profile(runtime: str, mode: str, rate: int, seconds: float) -> None:
    """One flood with the whole controller process under cProfile (bench/profiled.py): where its time goes."""
    with Lab() as lab:
        output = lab.workdir / "controller.prof"
        os.environ["NLBFLOW_PROFILE"] = str(output)
        members, _, _ = start(lab, runtime, mode, extra_apps=("bench/profiled.py",))
        m1, m2 = members[0], members[1]
        output.with_name(output.name + ".start").touch()
        time.sleep(0.5)
        result = flood(lab, m1, m2.ip, arp_request(CLUSTER_MAC, CLUSTER_MAC, m1.ip, m2.ip), rate, seconds)
        output.with_name(output.name + ".stop").touch()
        deadline = time.monotonic() + 30
        while not output.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        stats = pstats.Stats(str(output))
    answers = max(1, result.answers)
    idle = sum(
        v[2] for k, v in stats.stats.items() if "poll' of 'select" in k[2] or k[2] == "<built-in method time.sleep>"
    )
    total = sum(entry[2] for entry in stats.stats.values()) - idle
    print(f"\n== {runtime}, {mode}, profiled: {rate:,}/s offered for {seconds} s, {result.answers} answers")
    print(f"the process's work under cProfile (waiting in epoll left out): {total / answers * 1e6:.0f} us per answer")
    print("own time by where the code lives:")
    for label, owner in OWNERS:
        own = sum(v[2] for k, v in stats.stats.items() if owner(k)) - (idle if label.startswith("other") else 0)
        print(f"  {label:<68} {own / answers * 1e6:7.1f} us  {own / total:4.0%}")
    print("cumulative time of functions that never yield:")
    for label, where, name in PROFILED_PARTS:
        cumulative = sum(v[3] for k, v in stats.stats.items() if k[0].endswith(where) and k[2] == name)
        print(f"  {label:<68} {cumulative / answers * 1e6:7.1f} us  {cumulative / total:4.0%}")
    stats.sort_stats("tottime").print_stats(30)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", action="store_true", default=os.environ.get("NLBFLOW_BENCH_SHORT") == "1")
    parser.add_argument("--runtime", choices=RUNTIMES, action="append")
    parser.add_argument("--mode", choices=("proxy", "relay"), action="append")
    parser.add_argument("--rate", type=int, action="append", help="offered rates instead of the defaults")
    parser.add_argument("--profile", action="store_true", help="instead: one flood with the controller profiled")
    args = parser.parse_args(argv)
    if args.profile:
        for runtime in args.runtime or ["osken"]:
            for mode in args.mode or ("proxy",):
                profile(runtime, mode, (args.rate or [5_000])[0], seconds=5)
        return 0
    runtimes = args.runtime or (["osken"] if args.short else list(RUNTIMES))
    for runtime in runtimes:
        for mode in args.mode or ("proxy", "relay"):
            rates = tuple(args.rate) if args.rate else (SHORT_RATES if args.short else RATES)[mode]
            if args.short:
                run(runtime, mode, rounds=1, arps=5, rates=rates, seconds=2)
            else:
                run(runtime, mode, rounds=4, arps=20, rates=rates, seconds=5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
