"""Member-to-member TCP throughput through the app's flows, against an ordinary pair on the same switch.

A lab (tests/netlab.py: OVS userspace datapath, TX offload off in every host) with two cluster members
m1 and m2 (unicast mode: both NICs carry the cluster MAC) and two plain hosts p1 and p2, the app in proxy
mode. m1 reaches m2's DIP through the app's flows: its frames leave with its dedicated MAC as source
(source masking) and reach m2 addressed to m2's dedicated MAC, rewritten to the cluster MAC on m2's port
(member delivery). p1 and p2 talk through the switch's NORMAL fallback. Rounds interleave the two pairs;
in each, one iperf3 run (server in the receiver's namespace, bound to its lab address; client in the
sender's). Also the packet-ins per data frame during the member runs: what the switch's punt flows sent
toward the controller, over the frames the app's delivery flows carried (about 0: data never reaches the
controller), and the sender's retransmits. Prints; asserts nothing.

    python -m bench.throughput [--short] [--runtime osken|ryu]
    (as root; NLBFLOW_BENCH_SHORT=1 is --short)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field

from bench.stats import ratio, spread
from tests.lab.appkit import APP_COOKIES, RUNTIMES, cluster_yaml, expected_table, wait_for_table, write_config
from tests.netlab import MEMBER_DIPS, Host, Lab, LabError

IPERF_PORT = 5201
PLAIN_HOSTS = (("p1", "02:00:0a:00:00:15", "10.0.0.21/24"), ("p2", "02:00:0a:00:00:16", "10.0.0.22/24"))


@dataclass
class Samples:
    member_mbps: list[float] = field(default_factory=list)
    ordinary_mbps: list[float] = field(default_factory=list)
    member_retransmits: list[int] = field(default_factory=list)
    ordinary_retransmits: list[int] = field(default_factory=list)
    member_frames: int = 0  # what m1 and m2 sent during the member runs
    delivered: int = 0  # of those, what the app's delivery flows carried
    punted: int = 0  # what the switch's punt flows sent toward the controller meanwhile


def tx_packets(lab: Lab, host: Host) -> int:
    stats = json.loads(lab.run(host, "ip", "-j", "-s", "link", "show", "eth0").stdout)[0]["stats64"]
    return int(stats["tx"]["packets"])


def flow_packets(lab: Lab) -> tuple[int, int]:
    """(frames the app's punt flows sent to the controller, frames its delivery flows carried: to a
    member's dedicated MAC, or to the cluster MAC),
    once settled: OVS adds a datapath flow's packets to its OpenFlow flow's counters only every second or
    so, so the counters are read until two readings a second apart agree."""
    last = None
    for _ in range(10):
        flows = lab.dump_flows(APP_COOKIES)
        punted = sum(f.n_packets for f in flows if "CONTROLLER" in f.actions)
        delivered = sum(f.n_packets for f in flows if "dl_dst=" in f.match and "output:" in f.actions)
        if (punted, delivered) == last:
            break
        last = (punted, delivered)
        time.sleep(1.0)
    return last


def iperf(lab: Lab, client: Host, server: Host, seconds: int) -> tuple[float, int]:
    """One iperf3 TCP run from client to server's address, both bound to lab addresses: the Mbit/s
    received and the sender's retransmits."""
    argv = ["iperf3", "-s", "-1", "-B", server.ip, "-p", str(IPERF_PORT)]
    proc = lab._spawn(server.netns, argv, f"iperf3 server on {server.name}", stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not lab.run(server, "ss", "-Htln", f"( sport = :{IPERF_PORT} )").stdout.strip():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise LabError(f"iperf3 server on {server.name} did not start")
            time.sleep(0.05)
        argv = ["iperf3", "-c", server.ip, "-B", client.ip, "-p", str(IPERF_PORT), "-t", str(seconds), "-J"]
        result = json.loads(lab.run(client, *argv, timeout=seconds + 30).stdout)
        if "error" in result:
            raise LabError(f"iperf3 {client.name} -> {server.name}: {result['error']}")
        end = result["end"]
        return end["sum_received"]["bits_per_second"] / 1e6, int(end["sum_sent"].get("retransmits", 0))
    finally:
        stop(proc)


def stop(proc: subprocess.Popen) -> None:
    """A one-off iperf3 server ends with its client's run; one that does not is stopped, by its pid."""
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.terminate()
        proc.wait(timeout=10)


def run(runtime: str, rounds: int, seconds: int) -> None:
    samples = Samples()
    with Lab() as lab:
        m1, m2 = (lab.add_member(f"m{i}", dip, ofport=i) for i, dip in enumerate(MEMBER_DIPS[:2], start=1))
        p1, p2 = (lab.add_host(name, mac, [address], ofport=i) for i, (name, mac, address) in enumerate(PLAIN_HOSTS, 3))
        config = write_config(lab, cluster_yaml("proxy", member_dips=MEMBER_DIPS[:2]))
        lab.start_controller(runtime, config)
        lab.wait_connected()
        expected = expected_table(config, [m1, m2])
        if sorted(wait_for_table(lab, expected)) != sorted(expected):
            raise SystemExit(f"the app's flows never became the expected set:\n{lab.controller_log()}")
        for src, dst in ((m1, m2), (p1, p2)):
            if not lab.ping(src, dst.ip):
                raise SystemExit(f"{src.name} cannot reach {dst.name}:\n{lab.controller_log()}")
        for index in range(rounds):
            pairs = (("member", m1, m2), ("ordinary", p1, p2))
            for kind, src, dst in pairs if index % 2 == 0 else pairs[::-1]:
                if kind == "ordinary":
                    mbps, retransmits = iperf(lab, src, dst, seconds)
                    samples.ordinary_mbps.append(mbps)
                    samples.ordinary_retransmits.append(retransmits)
                    continue
                frames_before = tx_packets(lab, m1) + tx_packets(lab, m2)
                punted_before, delivered_before = flow_packets(lab)
                mbps, retransmits = iperf(lab, src, dst, seconds)
                samples.member_mbps.append(mbps)
                samples.member_retransmits.append(retransmits)
                punted, delivered = flow_packets(lab)
                samples.member_frames += tx_packets(lab, m1) + tx_packets(lab, m2) - frames_before
                samples.punted += punted - punted_before
                samples.delivered += delivered - delivered_before
    print(f"\n== {runtime}: {rounds} interleaved rounds of {seconds} s iperf3 TCP, userspace datapath")
    print(f"ordinary pair p1 -> p2, Mbit/s          {spread(samples.ordinary_mbps)}")
    print(f"members m1 -> m2 (app's flows), Mbit/s  {spread(samples.member_mbps)}")
    print(f"                   member/ordinary median: {ratio(samples.member_mbps, samples.ordinary_mbps)}")
    print(f"retransmits per run, ordinary           {spread([float(n) for n in samples.ordinary_retransmits])}")
    print(f"retransmits per run, members            {spread([float(n) for n in samples.member_retransmits])}")
    per_frame = samples.punted / samples.delivered if samples.delivered else float("nan")
    print(
        f"member runs: m1 and m2 sent {samples.member_frames} frames, the app's delivery flows carried"
        f" {samples.delivered} (the userspace datapath's sockets lost the rest: the retransmits), its punt flows"
        f" sent {samples.punted} to the controller: {per_frame:.6f} packet-ins per data frame"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", action="store_true", default=os.environ.get("NLBFLOW_BENCH_SHORT") == "1")
    parser.add_argument("--runtime", choices=RUNTIMES, action="append")
    args = parser.parse_args(argv)
    runtimes = args.runtime or (["osken"] if args.short else list(RUNTIMES))
    for runtime in runtimes:
        if args.short:
            run(runtime, rounds=2, seconds=3)
        else:
            run(runtime, rounds=6, seconds=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
