"""The core offline (issue 8, 1 and 5): what one event costs NlbCore at 100 to 10,000 members.

No switch and no framework: a registry of N members in C clusters, spread over S switches (member i on
switch i mod S, each member on its own port, plus an uplink and a client port per switch), every member
unpinned and located. For each size, interleaved rounds of:

- a learned location: an unlocated member's answer to the app's probe (one packet-in);
- a port event: a member's port goes down, then (next round) up again;
- a member add: set_registry() with one unpinned member more (its probes on every port included);
- status: NlbCore.status();
- locating every member of a fresh switch: its connect and read-back (with the probes for its unlocated
  members on every port) and one packet-in per member answering its probe.

Each figure has a baseline from the same run: the full recomputation the core did before issue 8 for the
same event, flowspec.expected_flows() and reconcile() over the whole registry for every switch the event
concerns (for status, the old full scans per member and switch). Medians and spread in milliseconds, and
full / incremental. Times are the CPU time of this process (time.process_time()): what the controller
would spend, which a busy machine's other processes do not inflate. Asserts nothing.

With --uplinks each switch's uplink port is an uplink of the fabric (docs/fabric.md, issue 9): every switch
then holds a transit flow per member of the others, and a member found on one switch changes its cluster's
flows on every switch, so the baseline of a learned location (and of a fresh switch's) is the full
recomputation of every switch.

With --arp switch the clusters are in switch mode (issue 10, docs/switch-mode.md): more flows per member.

    python -m bench.core [--short] [--uplinks] [--arp switch]   (NLBFLOW_BENCH_SHORT=1 is --short)
"""

from __future__ import annotations

import argparse
import gc
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from bench.stats import ratio, spread
from flows.addresses import PROBE_MAC, ZERO_IP, ZERO_MAC, dedicated_mac, unicast_cluster_mac
from flows.arp import ARP_REPLY, ARP_REQUEST, ArpFrame, Verdict
from flows.cookies import cluster_id
from flows.core import COUNTERS, NlbCore
from flows.flowspec import expected_flows, reconcile
from flows.frames import Refusal
from flows.locations import How
from flows.model import ArpMode, Cluster, Config, Member, Registry, SwitchConfig
from flows.model import Fabric as FabricConfig

CLIENT_IP, CLIENT_MAC = "10.250.0.50", "52:54:00:00:00:50"
NOW = 100.0  # the clock stands still: every probe answer comes within confirm_seconds of its probe
FULL_SIZES = [(100, 10), (1000, 10), (10000, 10), (10000, 1000)]  # fewer than 2 members a cluster: skipped
SHORT_SIZES = [(100, 10), (1000, 10)]
SWITCHES = (1, 10)
LEGACY_STATUS_LIMIT = 2 * 10**7  # members^2 x switches beyond which the old quadratic status is not run
SAMPLED_RECOMPUTATIONS = 20  # full recomputations timed during a fresh switch's locating, then scaled
TARGETS = {
    "learned location": "under 1 ms",
    "port event": "under 1 ms",
    "status": "under 100 ms",
    "fresh switch, every member located": "under 5 s",
}
TARGET_SIZE = (10000, 1000, 10)


@dataclass(frozen=True)
class Rounds:
    events: int  # learned locations, port events
    adds: int
    status: int
    fresh: int


FULL_ROUNDS = Rounds(events=30, adds=10, status=5, fresh=2)
SHORT_ROUNDS = Rounds(events=8, adds=4, status=2, fresh=1)


class Fabric:
    """The registry and where each member sits (switch, port), in the layout the module docstring says."""

    def __init__(self, members: int, clusters: int, switches: int, arp: ArpMode = ArpMode.PROXY) -> None:
        self.switches = switches
        self.per_switch = -(-members // switches)
        self.uplink, self.client_port = self.per_switch + 1, self.per_switch + 2
        names = _cluster_names(clusters)
        per_cluster = members // clusters
        built = []
        for c, name in enumerate(names):
            ip = f"10.200.{c // 250}.{c % 250 + 1}"
            ips = [_member_ip(i) for i in range(c * per_cluster, (c + 1) * per_cluster)]
            built.append(
                Cluster(
                    name, ip, unicast_cluster_mac(ip), arp=arp, members=tuple(Member(a, dedicated_mac(a)) for a in ips)
                )
            )
        self.registry = Registry(clusters=tuple(built))
        self.config = FabricConfig()  # the nlbflow fabric: no uplinks, unless with_uplinks()
        self.home = {}  # (cluster, member ip) -> (dpid, port)
        for i, (cluster, member) in enumerate((c, m) for c in built for m in c.members):
            self.home[(cluster.name, member.ip)] = (i % switches + 1, i // switches + 1)
        self.added = 0

    def with_uplinks(self) -> None:
        self.config = FabricConfig(
            switches=tuple(SwitchConfig(dpid, uplinks=(self.uplink,)) for dpid in range(1, self.switches + 1))
        )

    def concerned(self, dpid: int) -> list[int]:
        """The switches whose flows a member found on dpid can change: every one with uplinks, else dpid."""
        return list(range(1, self.switches + 1)) if self.config.switches else [dpid]

    def ports(self, dpid: int) -> dict[int, bool]:
        taken = [port for (switch, port) in self.home.values() if switch == dpid]
        return dict.fromkeys([*taken, self.uplink, self.client_port], True)

    def member_add(self, registry: Registry) -> tuple[Registry, tuple[str, str], int, int]:
        """One unpinned member more, in the clusters in turn, on a new port of a switch in turn."""
        cluster = registry.clusters[self.added % len(registry.clusters)]
        ip = _member_ip(10**5 + self.added)
        dpid, port = self.added % self.switches + 1, self.client_port + 1 + self.added
        self.added += 1
        grown = replace(cluster, members=(*cluster.members, Member(ip, dedicated_mac(ip))))
        clusters = tuple(grown if c.name == cluster.name else c for c in registry.clusters)
        return Registry(clusters=clusters), (cluster.name, ip), dpid, port


def _member_ip(i: int) -> str:
    return f"10.{1 + i // 60000}.{i % 60000 // 250}.{i % 250 + 1}"


def _cluster_names(count: int) -> list[str]:
    """Names whose flow-cookie ids differ (flows/config.py refuses two clusters sharing one)."""
    names, ids, n = [], set(), 0
    while len(names) < count:
        name, n = f"nlb{n:05d}", n + 1
        if cluster_id(name) not in ids:
            ids.add(cluster_id(name))
            names.append(name)
    return names


def probe_answer(cluster: Cluster, ip: str) -> ArpFrame:
    return ArpFrame(cluster.cluster_mac, PROBE_MAC, ARP_REPLY, cluster.cluster_mac, ip, PROBE_MAC, ZERO_IP)


def unicast_poll(cluster: Cluster, ip: str) -> ArpFrame:
    """A member's unicast ARP to a client (it re-checks its cache): believed without a probe, and sent on
    through NORMAL as one frame, so setting a fabric up costs no fan-out."""
    return ArpFrame(cluster.cluster_mac, CLIENT_MAC, ARP_REQUEST, cluster.cluster_mac, ip, ZERO_MAC, CLIENT_IP)


def located_core(fabric: Fabric, unlocated: set[tuple[str, str]], read_back: set[int]) -> NlbCore:
    """Every switch connected, every member located by its own ARP except `unlocated`; the switches in
    read_back have their flows read back (empty) and hold every expected flow."""
    core = NlbCore(Config(registry=fabric.registry, fabric=fabric.config))
    for dpid in range(1, fabric.switches + 1):
        core.switch_connected(dpid, fabric.ports(dpid))
    for cluster in fabric.registry.clusters:
        for member in cluster.members:
            key = (cluster.name, member.ip)
            if key not in unlocated:
                dpid, port = fabric.home[key]
                core.packet_in(dpid, port, unicast_poll(cluster, member.ip), NOW)
    for dpid in sorted(read_back):
        core.flows_read_back(dpid, [], NOW)
    return core


def full_recomputation(core: NlbCore, dpid: int) -> None:
    """What every event cost before issue 8: every flow of the switch from scratch, and the difference."""
    state = core.switches[dpid]
    located = core.located_ports(dpid)
    elsewhere = {key for key in core.heard_on if any(other != dpid for other in core.heard_on[key])}
    flows = expected_flows(
        core.registry, core.settings, located, state.down_ports, state.held, state.ports, state.uplinks, elsewhere
    )
    reconcile(flows, state.installed)


def timed(action: Callable[[], object]) -> float:
    """Milliseconds of this process's CPU time."""
    start = time.process_time()
    action()
    return (time.process_time() - start) * 1000


def legacy_status(core: NlbCore, now: float) -> dict:
    """NlbCore.status() as it was before issue 8: for each member and switch, a scan of the registry."""

    def located_ports(dpid: int) -> dict:
        learned = core.where[dpid].ports()
        ports = {}
        for cluster in core.registry.clusters:
            for member in cluster.members:
                key = (cluster.name, member.ip)
                if member.pinned:
                    if member.dpid == dpid:
                        ports[key] = member.port
                elif key in learned:
                    ports[key] = learned[key]
        return ports

    def confirmations(name: str, member: Member) -> list[dict]:
        views = []
        for dpid in sorted(core.switches):
            port = located_ports(dpid).get((name, member.ip))
            if port is None:
                continue
            location = core.where[dpid].located[(name, member.ip)]
            views.append({"dpid": dpid, "port": port, "how": How(location.how).value, "heard": location.heard})
        return views

    counters = {verdict.value: 0 for verdict in Verdict} | {reason.value: 0 for reason in Refusal}
    counters |= dict.fromkeys(COUNTERS, 0)
    return {
        "switches": [{"dpid": dpid, "shared": located_ports(dpid)} for dpid in sorted(core.switches)],
        "clusters": [[confirmations(c.name, m) for m in c.members] for c in core.registry.clusters],
        "counters": counters,
    }


def measure(
    members: int, clusters: int, switches: int, rounds: Rounds, uplinks: bool = False, arp: ArpMode = ArpMode.PROXY
) -> dict[str, tuple[list, list, str]]:
    fabric = Fabric(members, clusters, switches, arp)
    if uplinks:
        fabric.with_uplinks()
    keys = list(fabric.home)
    reserved = keys[:: max(1, len(keys) // rounds.events)][: rounds.events]
    core = located_core(fabric, set(reserved), set(range(1, switches + 1)))
    gc.collect()
    results = {
        "learned location": learned_locations(core, fabric, reserved),
        "port event": port_events(core, fabric, [key for key in keys if key not in reserved], rounds.events),
        "member add": member_adds(core, fabric, rounds.adds),
        "status": status_calls(core, members * members * switches <= LEGACY_STATUS_LIMIT, rounds.status),
    }
    del core
    gc.collect()
    results["fresh switch, every member located"] = fresh_switch(fabric, rounds.fresh)
    return results


def learned_locations(core: NlbCore, fabric: Fabric, unlocated: list) -> tuple[list, list, str]:
    """Each unlocated member answers the probe the read-back sent it."""
    learned, full = [], []
    for key in unlocated:
        dpid, port = fabric.home[key]
        answer = probe_answer(core.registry.cluster_named(key[0]), key[1])
        learned.append(timed(lambda: core.packet_in(dpid, port, answer, NOW)))  # noqa: B023
        full.append(sum(timed(lambda: full_recomputation(core, each)) for each in fabric.concerned(dpid)))  # noqa: B023
    assert all(key in core.located_ports(fabric.home[key][0]) for key in unlocated)
    return learned, full, ""


def port_events(core: NlbCore, fabric: Fabric, located: list, count: int) -> tuple[list, list, str]:
    events, full = [], []
    for n in range(count):
        dpid, port = fabric.home[located[(n // 2 * 7919) % len(located)]]
        up = n % 2 == 1
        events.append(timed(lambda: core.port_changed(dpid, port, True, up, NOW)))  # noqa: B023
        full.append(timed(lambda: full_recomputation(core, dpid)))  # noqa: B023
    return events, full, "a member's port down, then up again"


def member_adds(core: NlbCore, fabric: Fabric, count: int) -> tuple[list, list, str]:
    """One unpinned member more on a new port; found (untimed) before the next add."""
    adds, full, frames = [], [], 0
    for _ in range(count):
        registry, key, dpid, port = fabric.member_add(core.registry)
        core.port_changed(dpid, port, True, True, NOW)
        start = time.process_time()
        works = core.set_registry(registry, NOW)
        adds.append((time.process_time() - start) * 1000)
        frames = sum(len(work.frames) for work in works.values())
        full.append(sum(timed(lambda: full_recomputation(core, each)) for each in works))  # noqa: B023
        core.packet_in(dpid, port, probe_answer(registry.cluster_named(key[0]), key[1]), NOW)
    return adds, full, f"with its probe out of every port of every switch: {frames:,} frames"


def status_calls(core: NlbCore, legacy: bool, count: int) -> tuple[list, list, str]:
    status, full = [], []
    for _ in range(count):
        status.append(timed(lambda: core.status(NOW)))
        if legacy:
            full.append(timed(lambda: legacy_status(core, NOW)))
    note = "full: the old scans per member and switch"
    return status, full, note if legacy else "old status not run: quadratic (issue 8 measured 62 s at 10,000)"


def fresh_switch(fabric: Fabric, count: int) -> tuple[list, list, str]:
    """The last switch's members are unlocated; it connects, its flows are read back (and its members
    probed on every port), and each member answers: total controller time for all of it."""
    dpid = fabric.switches
    fresh_members = [key for key in fabric.home if fabric.home[key][0] == dpid]
    probes = len(fresh_members) * len(fabric.ports(dpid))
    if probes > 2 * 10**6:
        return [], [], f"not run: {probes:,} probe frames at connect (one per unlocated member and port)"
    fresh, full = [], []
    for _ in range(count):
        core = located_core(fabric, set(fresh_members), set())
        answers = [
            (fabric.home[key][1], probe_answer(core.registry.cluster_named(key[0]), key[1])) for key in fresh_members
        ]
        sample_every = max(1, len(answers) // SAMPLED_RECOMPUTATIONS)
        sampled = []
        gc.collect()
        start = time.process_time()
        core.switch_connected(dpid, fabric.ports(dpid))
        core.flows_read_back(dpid, [], NOW)
        for n, (port, answer) in enumerate(answers):
            core.packet_in(dpid, port, answer, NOW)
            if n % sample_every == 0:  # the baseline, sampled; its time is taken out of the incremental's
                concerned = [each for each in fabric.concerned(dpid) if core.switches[each].installed is not None]
                sampled.append(sum(timed(lambda: full_recomputation(core, each)) for each in concerned))  # noqa: B023
        fresh.append((time.process_time() - start) * 1000 - sum(sampled))
        full.append(sum(sampled) / len(sampled) * (len(answers) + 1))
        assert len(core.located_ports(dpid)) == len(fresh_members)
    note = f"{len(fresh_members):,} members, {probes:,} probe frames; full: {len(sampled)} recomputations timed, scaled"
    return fresh, full, note


def report(members: int, clusters: int, switches: int, results: dict[str, tuple[list, list, str]]) -> None:
    print(f"\n{members:,} members in {clusters:,} clusters on {switches} switch{'es' if switches > 1 else ''}")
    for name, (incremental, full, note) in results.items():
        target = (
            f"   [target {TARGETS[name]}]" if name in TARGETS and (members, clusters, switches) == TARGET_SIZE else ""
        )
        print(f"  {name}{target}" + (f"   ({note})" if note else ""))
        if incremental:
            print(f"    incremental ms  {spread(incremental)}")
        if full:
            print(f"    full ms         {spread(full)}")
            print(f"    full / incremental: {ratio(full, incremental)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--short", action="store_true", help="100 and 1,000 members only, few rounds")
    parser.add_argument("--uplinks", action="store_true", help="every switch's uplink port is a fabric uplink")
    parser.add_argument(
        "--arp", choices=[mode.value for mode in ArpMode], default="proxy", help="the clusters' ARP mode"
    )
    args = parser.parse_args()
    short = args.short or os.environ.get("NLBFLOW_BENCH_SHORT") == "1"
    sizes, rounds = (SHORT_SIZES, SHORT_ROUNDS) if short else (FULL_SIZES, FULL_ROUNDS)
    print(
        f"bench.core ({'short' if short else 'full'}{', uplinks' if args.uplinks else ''}, arp: {args.arp}):"
        " milliseconds per"
        " event; targets at 10,000 members in 1,000 clusters on 10 switches"
    )
    for members, clusters in sizes:
        for switches in SWITCHES:
            results = measure(members, clusters, switches, rounds, args.uplinks, ArpMode(args.arp))
            report(members, clusters, switches, results)


if __name__ == "__main__":
    main()
