"""What a 10,000 frames/s ARP storm from one member port costs everyone else (docs/storms.md).

A lab (tests/netlab.py: OVS userspace datapath, three members, a client, an outsider) with the app in proxy
mode. Idle and storm rounds interleave; in each, m2 and m3 resolve each other (arping, the app answers)
and a client in the switch namespace times REST requests. After each storm, the delay of the latest answer
the storming member received after the storm ended. Prints medians, spread and the ratios; asserts nothing
(issue 7's targets: the others' resolution within 3x its idle median, the latest answer under 1 s).

    python -m bench.storm [--short] [--runtime osken|ryu] [--unmetered]
    (as root; NLBFLOW_BENCH_SHORT=1 is --short; --unmetered adds a baseline whose meters never drop)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from dataclasses import dataclass, field

from scapy.layers.l2 import ARP

from bench.stats import ratio, spread
from tests.lab.appkit import (
    API_URL,
    OUTSIDER_ADDRESS,
    OUTSIDER_MAC,
    RUNTIMES,
    cluster_yaml,
    expected_table,
    wait_for_table,
    write_config,
)
from tests.lab.stormkit import STORM_RATE, arp_request, storm
from tests.netlab import CLUSTER_MAC, Host, Lab

UNMETERED = "fabric: {punt_rate_per_port: 4294967295, punt_rate_total: 4294967295}\n"

# argv: url, count. Prints the seconds each GET took, as a JSON list.
_REST_TIMER = r"""
import json, sys, time, urllib.request
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
times = []
for _ in range(int(sys.argv[2])):
    start = time.perf_counter()
    with opener.open(sys.argv[1], timeout=30) as response:
        response.read()
    times.append(time.perf_counter() - start)
print(json.dumps(times))
"""


@dataclass
class Samples:
    arp_ms: list[float] = field(default_factory=list)
    arp_lost: int = 0
    rest_ms: list[float] = field(default_factory=list)


def resolve_times(lab: Lab, src: Host, dst: Host, count: int) -> tuple[list[float], int]:
    """ARP round trips (ms) of `count` requests from src for dst's DIP, and how many got no answer."""
    argv = ["arping", "-i", "eth0", "-S", src.ip, "-c", str(count), "-W", "0.05", "-w", str(count + 2), dst.ip]
    out = lab.run(src, *argv, check=False, timeout=count + 15).stdout
    scale = {"usec": 0.001, "msec": 1.0, "sec": 1000.0}
    times = [float(value) * scale[unit] for value, unit in re.findall(r"time=([0-9.]+) (usec|msec|sec)\b", out)]
    return times, count - len(times)


def rest_times(lab: Lab, count: int) -> list[float]:
    out = lab.run(None, sys.executable, "-c", _REST_TIMER, API_URL + "/nlb/clusters", str(count), timeout=120)
    return [seconds * 1000 for seconds in json.loads(out.stdout)]


def measure(lab: Lab, peers: tuple[Host, Host], into: Samples, arps: int, rests: int) -> None:
    for src, dst in (peers, peers[::-1]):
        lab.flush_neigh(src)
        times, lost = resolve_times(lab, src, dst, arps)
        into.arp_ms += times
        into.arp_lost += lost
    into.rest_ms += rest_times(lab, rests)


def start(lab: Lab, runtime: str, metered: bool) -> list[Host]:
    """The lab's cluster with the app in proxy mode, its flows in the switch; unmetered: rates so high
    the meters never drop (what the switch did before them)."""
    members, _ = lab.add_typical_cluster()
    lab.add_host("o1", OUTSIDER_MAC, [OUTSIDER_ADDRESS], ofport=len(members) + 2)
    config = write_config(lab, ("" if metered else UNMETERED) + cluster_yaml("proxy"))
    lab.start_controller(runtime, config)
    lab.wait_connected()
    expected = expected_table(config, members)
    if sorted(wait_for_table(lab, expected)) != sorted(expected):
        raise SystemExit(f"the app's flows never became the expected set:\n{lab.controller_log()}")
    return members


def run(runtime: str, rounds: int, arps: int, rests: int, storm_seconds: float, metered: bool) -> None:
    idle, stormy = Samples(), Samples()
    latest_after: list[float] = []
    rates: list[float] = []
    with Lab() as lab:
        m1, m2, m3 = start(lab, runtime, metered)
        frame = arp_request(CLUSTER_MAC, CLUSTER_MAC, m1.ip, m2.ip)
        for _ in range(rounds):
            measure(lab, (m2, m3), idle, arps, rests)
            with lab.capture(m1, "arp", direction="in", settle=2.0) as seen:
                with storm(lab, m1, frame, seconds=int(storm_seconds) + 30) as running:
                    time.sleep(0.5)
                    measure(lab, (m2, m3), stormy, arps, rests)
                    time.sleep(max(0.0, running.started + storm_seconds - time.time()))
                sent = running.stop()
            rates.append(sent / (running.stopped - running.started))
            answers = [float(f.time) for f in seen.frames if ARP in f and f[ARP].op == 2 and f[ARP].psrc == m2.ip]
            latest_after.append(max(0.0, max(answers, default=running.stopped) - running.stopped) * 1000)
        drops = [line for line in lab.ofctl("meter-stats").split("\n\n") if "meter:65537 " in line]
    meters = "metered (defaults)" if metered else "UNMETERED (baseline)"
    print(f"\n== {runtime}, {meters}: {rounds} idle/storm rounds, storm {STORM_RATE} frames/s from m1")
    print(f"storm frames/s sent:         {spread(rates)}")
    print(f"others' ARP resolution, ms   idle:  {spread(idle.arp_ms)}  lost {idle.arp_lost}")
    print(f"                             storm: {spread(stormy.arp_ms)}  lost {stormy.arp_lost}")
    print(f"                             storm/idle median: {ratio(stormy.arp_ms, idle.arp_ms)}  (target < 3x)")
    print(f"REST GET /nlb/clusters, ms   idle:  {spread(idle.rest_ms)}")
    print(f"                             storm: {spread(stormy.rest_ms)}")
    print(f"                             storm/idle median: {ratio(stormy.rest_ms, idle.rest_ms)}")
    print(f"latest answer after the storm ended, ms: {spread(latest_after)}  (target < 1000)")
    print("m1's port meter at the end: " + " ".join(drops[0].split()) if drops else "no meter stats")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", action="store_true", default=os.environ.get("NLBFLOW_BENCH_SHORT") == "1")
    parser.add_argument("--runtime", choices=RUNTIMES, action="append")
    parser.add_argument("--unmetered", action="store_true", help="also a baseline whose meters never drop")
    args = parser.parse_args(argv)
    runtimes = args.runtime or (["osken"] if args.short else list(RUNTIMES))
    for runtime in runtimes:
        for metered in (True, False) if args.unmetered else (True,):
            if args.short:
                run(runtime, rounds=2, arps=5, rests=10, storm_seconds=3, metered=metered)
            else:
                run(runtime, rounds=5, arps=20, rests=40, storm_seconds=8, metered=metered)
    return 0


if __name__ == "__main__":
    sys.exit(main())
