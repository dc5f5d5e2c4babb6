"""Switch mode (issue 10): ARP answered by the switch's flows, against a host's own reply through NORMAL.

The lab of bench/arp.py (members m1..m3 on ports 1-3, ordinary hosts c1 and o1 on ports 4-5), the app with
`arp: switch`, punt meters raised as in bench/arp.py:

- resolution latency: interleaved rounds of m2 and m3 resolving each other (the switch's responder flows
  answer) and c1 and o1 resolving each other (NORMAL and o1's own reply), timed on the wire at the
  requester's switch port; ratio of medians (target <= 1.1x). Then, in a lab of its own in the same run,
  the same with the app in proxy mode, for comparison;
- sustained answers: m1 sends requests for m2's DIP (tests/lab/stormkit.py's sender) at each offered rate,
  interleaved with the baseline c1 -> o1 at the same rate: answers/s, loss, the controller's CPU seconds
  (should be 0), and ovs-vswitchd's CPU seconds per 1,000 answers, both from /proc/<pid>/stat. Once with
  the default slow-path meter (Settings.slow_path_rate), once with it raised to UNMETERED by
  `ovs-ofctl mod-meter` after the app installed it (the config has no key for it yet; not in --short);
- packet-ins: members with base_reachable_time_ms low ping each other and the outsider for `--minutes`;
  the n_packets of every controller-bound flow before and after.

    python -m bench.switch_mode [--short] [--runtime osken|ryu] [--rate N] [--minutes M]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from contextlib import ExitStack
from pathlib import Path

from scapy.layers.l2 import ARP

from bench import arp
from bench.stats import ratio, spread
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

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
RATES = (10_000, 20_000, 30_000, 40_000)
SINGLE_SENDER_RATE = 20_000  # above it, several senders (multi_flood): one tops out near 20,000/s
SHORT_RATES = (20_000,)
UNMETERED = 1_000_000  # slow_path_rate for the run without the meter's limit


def process_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def vswitchd_pid(lab: Lab) -> int:
    return [record.pid for record in lab.processes if record.what.startswith("ovs-vswitchd")][-1]


def start(lab: Lab, runtime: str, mode: str, slow_path_rate: int | None = None) -> tuple[list[Host], Host, Host]:
    members, client = lab.add_typical_cluster()
    outsider = lab.add_host("o1", OUTSIDER_MAC, [OUTSIDER_ADDRESS], ofport=len(members) + 2)
    fabric = f"punt_rate_per_port: {arp.RAISED_PUNT_RATE}, punt_rate_total: {arp.RAISED_PUNT_RATE}"
    if slow_path_rate:
        fabric += f", slow_path_rate: {slow_path_rate}"
    config = write_config(lab, f"fabric: {{{fabric}}}\n" + cluster_yaml(mode))
    lab.start_controller(runtime, config)
    lab.wait_connected()
    expected = expected_table(config, members)
    if sorted(wait_for_table(lab, expected)) != sorted(expected):
        raise SystemExit(f"the app's flows never became the expected set:\n{lab.controller_log()}")
    # Locate the members (switch mode answers only for located members): one ARP each.
    for member in members:
        lab.run(member, "arping", "-c", "1", "-w", "1", "-I", "eth0", client.ip, check=False)
    return members, client, outsider


def punted(lab: Lab) -> int:
    """Packets every controller-bound flow of the switch has sent so far."""
    return sum(flow.n_packets for flow in lab.dump_flows() if "CONTROLLER" in flow.actions)


def latency(runtime: str, mode: str, rounds: int, arps: int) -> tuple[list[float], list[float], int]:
    member, ordinary, lost = [], [], 0
    with Lab() as lab:
        (_m1, m2, m3), c1, o1 = start(lab, runtime, mode)
        before = punted(lab)
        for _ in range(rounds):
            _, wire, missing = arp.measure_latency(lab, (m2, m3), arps)
            member += wire
            lost += missing
            _, wire, missing = arp.measure_latency(lab, (c1, o1), arps)
            ordinary += wire
        print(f"{mode}: packet-ins during the latency rounds: {punted(lab) - before}")
    return member, ordinary, lost


def multi_flood(lab: Lab, senders: list[tuple[Host, str, bytes]], rate: int, seconds: float) -> arp.Flood:
    """arp.flood from several hosts at once, `rate` in total (rate / len(senders) each): one sender alone
    tops out near 20,000/s here. Each sender's capture keeps only the answers from its target."""
    each = rate // len(senders)
    cpu_before = arp.controller_cpu(lab)
    tx_before = {host.name: lab.port_tx_packets(host) for host, _, _ in senders}
    with ExitStack() as stack:
        seen = []
        for host, target_ip, _ in senders:
            answer_filter = f"inbound and arp and arp[6:2] = 2 and arp src host {target_ip}"
            seen.append(
                stack.enter_context(
                    lab.capture(
                        host, answer_filter, settle=arp.CAPTURE_SETTLE_SECONDS, buffer_kib=arp.CAPTURE_BUFFER_KIB
                    )
                )
            )
        running = [
            stack.enter_context(storm(lab, host, frame, rate=each, seconds=int(seconds) + 30))
            for host, _, frame in senders
        ]
        time.sleep(seconds)
        sent = sum(r.stop() for r in running)
    cpu = arp.controller_cpu(lab) - cpu_before
    answers = sum(
        len([f for f in capture.frames if ARP in f and f[ARP].op == 2 and f[ARP].psrc == target_ip])
        for capture, (_, target_ip, _) in zip(seen, senders, strict=True)
    )
    switch_sent = sum(lab.port_tx_packets(host) - tx_before[host.name] for host, _, _ in senders)
    span = max(r.stopped for r in running) - min(r.started for r in running)
    return arp.Flood(rate, sent, span, answers, 0.0, cpu, {}, sum(c.dropped for c in seen), switch_sent)


def floods(runtime: str, rates: tuple[int, ...], rounds: int, seconds: float, slow_path_rate: int | None) -> None:
    meter = f"slow_path_rate {slow_path_rate:,}" if slow_path_rate else "slow_path_rate default"
    with Lab() as lab:
        (m1, m2, m3), c1, o1 = start(lab, runtime, "switch", slow_path_rate)
        vswitchd = vswitchd_pid(lab)
        print(" ".join(lab.ofctl("dump-meters").split()))
        switch = [
            (a, b.ip, arp_request(CLUSTER_MAC, CLUSTER_MAC, a.ip, b.ip)) for a, b in ((m1, m2), (m2, m3), (m3, m1))
        ]
        ordinary = [(a, b.ip, arp_request(a.mac, a.mac, a.ip, b.ip)) for a, b in ((c1, o1), (o1, c1))]
        print(f"\n== {runtime}, switch, {meter}: {rounds} interleaved floods of {seconds} s per rate")
        for rate in rates:
            got: dict[str, list[tuple[arp.Flood, float, int]]] = {"switch": [], "ordinary": []}
            for _ in range(rounds):
                for kind, senders in (("ordinary", ordinary), ("switch", switch)):
                    cpu, ins = process_cpu(vswitchd), punted(lab)
                    if rate > SINGLE_SENDER_RATE:
                        result = multi_flood(lab, senders, rate, seconds)
                    else:
                        (sender, target, frame), *_ = senders
                        result = arp.flood(lab, sender, target, frame, rate, seconds)
                    got[kind].append((result, process_cpu(vswitchd) - cpu, punted(lab) - ins))
                    time.sleep(1.0)
            for kind, runs in got.items():
                per_k = [cpu / r.answers * 1000 for r, cpu, _ in runs if r.answers]
                print(
                    f"offered {rate:>6,}/s {kind:>8}: sent/s {spread([r.sent / r.seconds for r, _, _ in runs])}\n"
                    f"                  answers/s {spread([r.answers_per_second for r, _, _ in runs])}\n"
                    f"                  loss max {max(r.loss for r, _, _ in runs):6.2%}  "
                    f"(by switch tx: {max(1 - r.switch_sent / r.sent for r, _, _ in runs if r.sent):6.2%})  "
                    f"capture drops {sum(r.capture_drops for r, _, _ in runs)}  "
                    f"controller CPU s max {max(r.cpu_seconds for r, _, _ in runs):.2f}  "
                    f"packet-ins {sum(n for _, _, n in runs)}\n"
                    f"                  ovs-vswitchd CPU s per 1,000 answers {spread(per_k)}"
                )
            per_answer = {kind: [c / r.answers for r, c, _ in runs if r.answers] for kind, runs in got.items()}
            share = ratio(per_answer["switch"], per_answer["ordinary"])
            print(f"offered {rate:>6,}/s: vswitchd CPU per 1,000 answers, switch / NORMAL: {share}")


def steady(runtime: str, minutes: float) -> None:
    """Members refresh entries every few seconds while they talk to each other and to the outsider."""
    with Lab() as lab:
        members, _c1, o1 = start(lab, runtime, "switch")
        for host in members:
            lab.run(host, "sysctl", "-qw", "net.ipv4.neigh.eth0.base_reachable_time_ms=2000")
            lab.run(host, "sysctl", "-qw", "net.ipv4.neigh.eth0.delay_first_probe_time=1")
            lab.run(host, "sysctl", "-qw", "net.ipv4.neigh.eth0.gc_stale_time=2")
        for host in members:  # first contacts: the steady state starts once every entry exists
            for peer in [*members, o1]:
                if peer is not host:
                    lab.ping(host, peer.ip, count=1)
        time.sleep(2)
        before = punted(lab)
        started = time.monotonic()
        replies = sent = 0
        while time.monotonic() - started < minutes * 60:
            for host in members:
                for peer in [*members, o1]:
                    if peer is not host:
                        replies += lab.ping_replies(host, peer.ip, count=2, timeout=1.0, interval=0.2)
                        sent += 2
        after = punted(lab)
        arps = sum(f.n_packets for f in lab.dump_flows() if "arp" in f.match and "CONTROLLER" not in f.actions)
        print(
            f"\n== {runtime}, switch, steady state {minutes} min: pings {replies}/{sent} answered, "
            f"packet-ins {after - before} (controller-bound flows' n_packets), ARP frames through the app's "
            f"non-punt ARP flows in all {arps}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", action="store_true", default=os.environ.get("NLBFLOW_BENCH_SHORT") == "1")
    parser.add_argument("--runtime", choices=RUNTIMES, action="append")
    parser.add_argument("--rate", type=int, action="append")
    parser.add_argument("--minutes", type=float, default=None)
    parser.add_argument("--only", choices=("latency", "floods", "steady"), action="append")
    args = parser.parse_args(argv)
    runtimes = args.runtime or (["osken"] if args.short else list(RUNTIMES))
    rates = tuple(args.rate) if args.rate else (SHORT_RATES if args.short else RATES)
    rounds, arps, seconds = (1, 5, 3.0) if args.short else (4, 20, 10.0)
    minutes = args.minutes if args.minutes is not None else (0.25 if args.short else 2.0)
    parts = args.only or ("latency", "floods", "steady")
    for runtime in runtimes:
        if "latency" in parts:
            switch, ordinary, lost = latency(runtime, "switch", rounds, arps)
            proxy, proxy_ordinary, _ = latency(runtime, "proxy", rounds, arps)
            print(f"\n== {runtime}: resolution on the wire, ms ({rounds} interleaved rounds per lab)")
            print(f"switch mode:       {spread(switch)}  lost {lost}")
            print(f"ordinary (NORMAL): {spread(ordinary)}")
            print(f"switch / ordinary: {ratio(switch, ordinary)}  (target <= 1.1x)")
            print(f"proxy mode:        {spread(proxy)}")
            print(f"ordinary (NORMAL): {spread(proxy_ordinary)}")
            print(f"proxy / ordinary:  {ratio(proxy, proxy_ordinary)}")
        if "floods" in parts:
            floods(runtime, rates, max(1, rounds // 2), seconds, None)
            if not args.short:  # the CI share stays under 2 minutes
                floods(runtime, rates, max(1, rounds // 2), seconds, UNMETERED)
        if "steady" in parts:
            steady(runtime, minutes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
