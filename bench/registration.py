"""What registering many members costs until the switch holds every flow, and what a restart costs.

A lab switch (tests/netlab.py: OVS userspace datapath) with the app, and members pinned (`dpid`/`port`) to
ports 1..N of the switch. The switch has no such ports: OVS takes flows for absent ports as it takes them
for present ones, and pinning gives every member the flows a located member has (delivery and source
masking), which is the honest flow count of a fabric that knows where its members are. What a real switch
of N ports would add, one punt flow and one meter per port, is left out (and said so in the docs).

Interleaved rounds, each with:
- the baseline: one `ovs-ofctl add-flows` of exactly the app's expected flows (the same texts, from a
  file) into a fresh bridge of the same ovs-vswitchd;
- `PUT /nlb/registry` of the whole registry on a controller with an empty registry, until the switch
  holds every flow (printed as not available while the route answers 404);
- the same registry one request at a time (`POST /nlb/clusters`, `POST /nlb/clusters/{name}/members`):
  member adds/s and the median latency of the first 100 against the last 100 member adds;
- a first start with the registry in the config's `clusters:` (fresh state), then a restart with that
  saved registry: from the controller's start until the switch is connected and synchronised (the app's
  "synchronised" log line), the flows the app says it added and deleted, and the flows whose OVS
  `duration=` shows they were replaced or that vanished.
Every duration is also printed over the baseline's median. Prints; asserts nothing. Issue 8's targets: PUT
within 10x add-flows; one by one at least 200 adds/s, the last 100 no slower than 1.5x the first 100; a
restart touches no flow and is reconciled within 3 s of reconnecting.

    python -m bench.registration [--short] [--runtime osken|ryu] [--members N] [--rounds N] [--no-one-by-one]
                                 [--large]
    (as root; NLBFLOW_BENCH_SHORT=1 is --short; --large adds a run at 10,000 members in 1,000 clusters,
    without the one-by-one part)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from bench.stats import ratio, spread
from flows.config import parse_config
from flows.cookies import cluster_id
from flows.flowspec import expected_flows
from tests.lab.appkit import API_URL, APP_COOKIES, RUNTIMES, app_table, ovs_text, switch_ports
from tests.netlab import BRIDGE, CONTROLLER_PORT, Lab

MEMBERS_PER_CLUSTER = 10
BASELINE_BRIDGE = "base0"
BODY_LIMIT = 16 * 1024 * 1024  # controller.rest.max_body_bytes: a 10,000-member PUT is about 0.6 MB
SYNCED_RE = re.compile(r"dpid 1: synchronised: (\d+) added, (\d+) deleted")

# Runs in the switch namespace: the requests given on stdin as JSON, one after another, each timed, then
# `ovs-ofctl dump-aggregate` until the switch holds the expected number of the app's flows. Prints the
# latencies, the statuses, the first refusal and when the flows were all there, in seconds from the start.
_LOADER = r"""
import json, subprocess, sys, time, urllib.error, urllib.request
plan = json.load(sys.stdin)
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
headers = {"Content-Type": "application/json", "Accept": "application/json"}
latencies, statuses, refusal = [], [], None
start = time.perf_counter()
for method, path, body in plan["requests"]:
    data = json.dumps(body).encode()
    request = urllib.request.Request(plan["url"] + path, data=data, headers=headers, method=method)
    sent = time.perf_counter()
    try:
        with opener.open(request, timeout=600) as response:
            status, text = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, text = error.code, error.read()
    latencies.append(time.perf_counter() - sent)
    statuses.append(status)
    if status >= 300:
        refusal = f"{method} {path}: {status} {text[:300].decode('utf-8', 'replace')}"
        break
answered = time.perf_counter() - start
flows_at, count = None, -1
deadline = time.perf_counter() + plan["timeout"]
while refusal is None and time.perf_counter() < deadline:
    out = subprocess.run(
        ["ovs-ofctl", "-O", "OpenFlow13", "dump-aggregate", plan["switch"], "cookie=" + plan["cookie"]],
        capture_output=True, text=True, check=True,
    ).stdout
    count = int(out.split("flow_count=")[1].split()[0])
    if count == plan["expected"]:
        flows_at = time.perf_counter() - start
        break
    time.sleep(0.01)
print(json.dumps({"latencies": latencies, "statuses": statuses, "refusal": refusal, "answered": answered,
                  "flows_at": flows_at, "count": count}))
"""

# Runs in the switch namespace: one command (its output discarded), timed.
_TIMED = r"""
import json, subprocess, sys, time
start = time.perf_counter()
subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL)
print(json.dumps(time.perf_counter() - start))
"""


# Runs in the switch namespace: exits 0 once the REST API answers anything (a 404 for no such cluster).
_API_PROBE = rf"""
import sys, urllib.error, urllib.request
opener = urllib.request.build_opener(urllib.request.ProxyHandler({{}}))
try:
    opener.open("{API_URL}/nlb/clusters/no-such-cluster", timeout=10)
except urllib.error.HTTPError:
    sys.exit(0)
except OSError:
    sys.exit(1)
"""


def registry_entries(clusters: int, per_cluster: int = MEMBERS_PER_CLUSTER) -> list[dict]:
    """`clusters:` entries as in the YAML config: member k (0-based, over all clusters) pinned to port k+1."""
    entries, names = [], cluster_names(clusters)
    for c in range(clusters):
        members = []
        for m in range(per_cluster):
            k = c * per_cluster + m
            members.append({"ip": f"10.1.{k // 250}.{k % 250 + 1}", "dpid": 1, "port": k + 1})
        entries.append({"name": names[c], "cluster_ip": f"10.200.{c // 250}.{c % 250 + 1}", "members": members})
    return entries


def cluster_names(count: int) -> list[str]:
    """c0, c1, ...: a name whose 16-bit cookie id another already has (the registry refuses that) gets a
    letter more."""
    names, ids = [], set()
    for c in range(count):
        name = f"c{c}"
        while cluster_id(name) in ids:
            name += "x"
        names.append(name)
        ids.add(cluster_id(name))
    return names


def config_text(lab: Lab, entries: list[dict]) -> str:
    """The bench's config: a large body limit, the state file in the lab's folder, and `entries`."""
    controller = {"rest": {"max_body_bytes": BODY_LIMIT}, "state_file": str(state_file(lab))}
    return yaml.safe_dump({"controller": controller, "clusters": entries}, sort_keys=False)


def state_file(lab: Lab) -> Path:
    return lab.workdir / "registry" / "nlbflow-state.yaml"


def expected_rows(lab: Lab, entries: list[dict]) -> set:
    """The app's flows for the registry on this switch, as ovs-ofctl prints them (flows/flowspec)."""
    config = parse_config(config_text(lab, entries))
    pinned = {(c.name, m.ip): m.port for c in config.registry.clusters for m in c.members}
    flows = expected_flows(config.registry, config.settings, pinned, switch_ports=switch_ports(lab))
    return {ovs_text(flow) for flow in flows}


def flow_file(lab: Lab, rows: set) -> Path:
    """The expected flows in `ovs-ofctl add-flows` syntax."""
    lines = []
    for table, cookie, priority, match, actions in sorted(rows):
        lines.append(
            f"table={table},priority={priority},cookie={cookie:#x},{match + ',' if match else ''}actions={actions}"
        )
    path = lab.workdir / "expected.flows"
    path.write_text("\n".join(lines) + "\n")
    return path


def meter_ids(rows: set) -> set[int]:
    return {int(found) for *_, actions in rows for found in re.findall(r"meter:(\d+)", actions)}


@dataclass
class Samples:
    """Per round: seconds of each way of getting the flows into the switch, rates and latencies."""

    add_flows: list[float] = field(default_factory=list)
    dump_flows: list[float] = field(default_factory=list)
    put: list[float] = field(default_factory=list)
    put_missing: str | None = None
    one_by_one: list[float] = field(default_factory=list)
    adds_per_s: list[float] = field(default_factory=list)
    first_100_ms: list[float] = field(default_factory=list)
    last_100_ms: list[float] = field(default_factory=list)
    first_start: list[float] = field(default_factory=list)
    restart_listening: list[float] = field(default_factory=list)
    restart_connected: list[float] = field(default_factory=list)
    restart_synced: list[float] = field(default_factory=list)
    restart_app_touched: list[str] = field(default_factory=list)
    restart_switch_touched: list[str] = field(default_factory=list)


class Bench:
    """One lab, one runtime, one registry size."""

    def __init__(self, lab: Lab, runtime: str, entries: list[dict]) -> None:
        self.lab = lab
        self.runtime = runtime
        self.entries = entries
        self.members = sum(len(entry["members"]) for entry in entries)
        # Reconnect within a second of a restart: OVS otherwise backs off up to 8 s.
        lab.vsctl("set", "controller", BRIDGE, "max_backoff=1000")
        self.rows = expected_rows(lab, entries)
        self.flows = flow_file(lab, self.rows)
        self.base_flows = len(expected_rows(lab, []))  # what the app installs with no cluster at all
        self.empty_config = lab.workdir / "empty.yaml"
        self.empty_config.write_text(config_text(lab, []))
        self.full_config = lab.workdir / "full.yaml"
        self.full_config.write_text(config_text(lab, entries))
        self.switch = f"unix:{lab.workdir}/{BRIDGE}.mgmt"
        self.timeout = 60.0 + self.members * 0.5

    # --- the baseline -------------------------------------------------------------------------------

    def add_flows(self) -> float:
        """One ovs-ofctl add-flows of the expected flows into a fresh bridge (its meters made first, untimed)."""
        lab = self.lab
        lab.vsctl("--if-exists", "del-br", BASELINE_BRIDGE)
        lab.vsctl(
            *("add-br", BASELINE_BRIDGE, "--", "set", "bridge", BASELINE_BRIDGE, "datapath_type=netdev"),
            *("protocols=OpenFlow13", "fail_mode=secure"),
        )
        target = f"unix:{lab.workdir}/{BASELINE_BRIDGE}.mgmt"
        for meter in sorted(meter_ids(self.rows)):
            spec = f"meter={meter},pktps,burst,band=type=drop,rate=1000,burst_size=1000"
            lab.run(None, "ovs-ofctl", "-O", "OpenFlow13", "add-meter", target, spec)
        seconds = self._timed("ovs-ofctl", "-O", "OpenFlow13", "add-flows", target, str(self.flows))
        count = self._count(target)
        if count != len(self.rows):
            raise SystemExit(f"add-flows left {count} flows in {BASELINE_BRIDGE}, not {len(self.rows)}")
        lab.vsctl("del-br", BASELINE_BRIDGE)
        return seconds

    # --- registration -------------------------------------------------------------------------------

    def fresh_controller(self, config: Path) -> float:
        """Stop the controller, forget its registry and the app's flows, start it on `config`; the seconds
        from its start until the switch holds every flow the config asks for."""
        lab = self.lab
        if lab.controller_connected():
            lab.stop_controller()
            lab.wait_disconnected()
        for path in state_file(lab).parent.glob("*"):
            path.unlink()
        state_file(lab).parent.mkdir(exist_ok=True)
        lab.del_flows()
        started = time.monotonic()
        lab.start_controller(self.runtime, config)
        lab.wait_connected(timeout=60)
        self._wait_api(started)
        self._wait_count(len(self.rows) if config == self.full_config else self.base_flows, started)
        return time.monotonic() - started

    def put(self) -> float | str:
        """PUT /nlb/registry of the whole registry; seconds until the switch holds every flow, or why not."""
        self.fresh_controller(self.empty_config)
        done = self._load([["PUT", "/nlb/registry", {"clusters": self.entries}]])
        if done["statuses"] == [404]:
            return "not available (404)"
        if done["refusal"] or done["flows_at"] is None:
            raise SystemExit(f"PUT /nlb/registry failed: {done['refusal'] or done}\n{self.lab.controller_log()}")
        self._check_table()
        return done["flows_at"]

    def one_by_one(self) -> dict:
        """Every cluster, then its members, one POST each; seconds until the switch holds every flow."""
        self.fresh_controller(self.empty_config)
        requests, member_requests = [], []
        for entry in self.entries:
            requests.append(["POST", "/nlb/clusters", {k: v for k, v in entry.items() if k != "members"}])
            for member in entry["members"]:
                member_requests.append(len(requests))
                requests.append(["POST", f"/nlb/clusters/{entry['name']}/members", member])
        done = self._load(requests)
        if done["refusal"] or done["flows_at"] is None:
            raise SystemExit(f"one-by-one registration failed: {done['refusal'] or done}\n{self.lab.controller_log()}")
        self._check_table()
        member_ms = [done["latencies"][i] * 1000 for i in member_requests]
        return {
            "seconds": done["flows_at"],
            "adds_per_s": len(member_ms) / (sum(member_ms) / 1000),
            "first_100": statistics.median(member_ms[:100]),
            "last_100": statistics.median(member_ms[-100:]),
        }

    # --- restart ------------------------------------------------------------------------------------

    def restart(self) -> dict:
        """A first start from the config's clusters, then a restart with the saved registry."""
        lab = self.lab
        first = self.fresh_controller(self.full_config)
        self._check_table()
        dump = self.dump_flows()
        before = {(f.table, f.priority, f.match): f for f in lab.dump_flows(APP_COOKIES)}
        lab.stop_controller()
        lab.wait_disconnected()
        started = time.monotonic()
        lab.start_controller(self.runtime, self.full_config)
        listening = self._wait_socket("-Htln", f"( sport = :{CONTROLLER_PORT} )", started=started)
        connected = self._wait_socket(
            "-Htn", "state", "established", f"( dport = :{CONTROLLER_PORT} )", started=started
        )
        deadline = time.monotonic() + self.timeout
        while not (synced := SYNCED_RE.search(lab.controller_log())):
            if time.monotonic() > deadline:
                raise SystemExit(f"the restarted controller never synchronised:\n{lab.controller_log()}")
            time.sleep(0.01)
        synced_after = time.monotonic() - started
        time.sleep(0.5)  # the barrier after the read-back: whatever the app sent is in the switch
        since = time.monotonic() - started
        after = {(f.table, f.priority, f.match): f for f in lab.dump_flows(APP_COOKIES)}
        replaced = sum(1 for key, flow in after.items() if key not in before or flow.duration < since)
        vanished = sum(1 for key in before if key not in after)
        self._check_table()
        return {
            "first_start": first,
            "dump_flows": dump,
            "listening": listening,
            "connected": connected,
            "synced": synced_after,
            "app": f"{synced.group(1)} added, {synced.group(2)} deleted",
            "switch": f"{replaced} new or replaced, {vanished} gone",
        }

    # --- helpers ------------------------------------------------------------------------------------

    def _load(self, requests: list) -> dict:
        plan = {
            "url": API_URL,
            "requests": requests,
            "switch": self.switch,
            "cookie": APP_COOKIES,
            "expected": len(self.rows),
            "timeout": self.timeout,
        }
        argv = [sys.executable, "-c", _LOADER]
        done = self.lab.run(None, *argv, stdin=json.dumps(plan), timeout=self.timeout * 3 + 600)
        return json.loads(done.stdout)

    def _wait_api(self, started: float) -> None:
        """Until the REST API answers (GET /nlb/status is no probe: it is quadratic at 10,000 members)."""
        while self.lab.run(None, sys.executable, "-c", _API_PROBE, check=False).returncode != 0:
            if time.monotonic() > started + self.timeout:
                raise SystemExit(f"the REST API never answered:\n{self.lab.controller_log()}")
            time.sleep(0.05)

    def _wait_socket(self, *ss_args: str, started: float) -> float:
        """Seconds from `started` until `ss` lists a socket: the controller listening (its start-up done,
        its registry loaded), or the switch's connection to it."""
        while not self.lab.run(None, "ss", *ss_args).stdout.strip():
            if time.monotonic() > started + self.timeout:
                raise SystemExit(f"no socket `ss {' '.join(ss_args)}`:\n{self.lab.controller_log()}")
            time.sleep(0.01)
        return time.monotonic() - started

    def dump_flows(self) -> float:
        """The second baseline: one `ovs-ofctl dump-flows` of the switch holding every flow (a read-back,
        the least a reconciliation must do)."""
        return self._timed("ovs-ofctl", "-O", "OpenFlow13", "dump-flows", self.switch)

    def _timed(self, *argv: str) -> float:
        return json.loads(self.lab.run(None, sys.executable, "-c", _TIMED, *argv, timeout=600).stdout)

    def _count(self, target: str) -> int:
        out = self.lab.run(None, "ovs-ofctl", "-O", "OpenFlow13", "dump-aggregate", target, f"cookie={APP_COOKIES}")
        return int(out.stdout.split("flow_count=")[1].split()[0])

    def _wait_count(self, expected: int, started: float) -> None:
        while self._count(self.switch) != expected:
            if time.monotonic() > started + self.timeout:
                raise SystemExit(f"the switch never held {expected} app flows:\n{self.lab.controller_log()}")
            time.sleep(0.01)

    def _check_table(self) -> None:
        """The switch holds exactly the expected flows, not just as many."""
        if sorted(app_table(self.lab)) != sorted(self.rows):
            raise SystemExit(f"the switch's app flows are not the expected set:\n{self.lab.controller_log()}")


def run(runtime: str, clusters: int, rounds: int, one_by_one: bool) -> None:
    samples = Samples()
    entries = registry_entries(clusters)
    with Lab() as lab:
        bench = Bench(lab, runtime, entries)
        for _ in range(rounds):
            samples.add_flows.append(bench.add_flows())
            put = bench.put()
            if isinstance(put, str):
                samples.put_missing = put
            else:
                samples.put.append(put)
            if one_by_one:
                result = bench.one_by_one()
                samples.one_by_one.append(result["seconds"])
                samples.adds_per_s.append(result["adds_per_s"])
                samples.first_100_ms.append(result["first_100"])
                samples.last_100_ms.append(result["last_100"])
            result = bench.restart()
            samples.first_start.append(result["first_start"])
            samples.dump_flows.append(result["dump_flows"])
            samples.restart_listening.append(result["listening"])
            samples.restart_connected.append(result["connected"])
            samples.restart_synced.append(result["synced"])
            samples.restart_app_touched.append(result["app"])
            samples.restart_switch_touched.append(result["switch"])
    report(runtime, bench, rounds, samples)


def report(runtime: str, bench: Bench, rounds: int, s: Samples) -> None:
    base = s.add_flows
    size = f"{bench.members} members in {len(bench.entries)} clusters, {len(bench.rows)} flows"
    print(f"\n== {runtime}: {size}, {rounds} rounds")
    print(f"baseline: one ovs-ofctl add-flows, s   {spread(base)}")
    if s.put_missing:
        print(f"PUT /nlb/registry: {s.put_missing}")
    else:
        print(f"PUT /nlb/registry until all flows, s   {spread(s.put)}")
        print(f"                   PUT/add-flows median: {ratio(s.put, base)}  (target <= 10x)")
    if s.one_by_one:
        print(f"one by one until all flows, s          {spread(s.one_by_one)}")
        print(f"                   one-by-one/add-flows median: {ratio(s.one_by_one, base)}")
        print(f"member adds/s                          {spread(s.adds_per_s)}  (target >= 200)")
        print(f"member add, first 100, median ms       {spread(s.first_100_ms)}")
        print(f"member add, last 100, median ms        {spread(s.last_100_ms)}")
        print(f"                   last/first median: {ratio(s.last_100_ms, s.first_100_ms)}  (target <= 1.5x)")
    else:
        print("one by one: not run at this size")
    print(f"first start from the config until all flows, s  {spread(s.first_start)}")
    print(f"                   first start/add-flows median: {ratio(s.first_start, base)}")
    print(f"restart: start until listening, s      {spread(s.restart_listening)}  (start-up, registry loaded)")
    print(f"restart: start until connected, s      {spread(s.restart_connected)}  (OVS retries every 1 s)")
    print(f"restart: start until synchronised, s   {spread(s.restart_synced)}")
    reconnect = [synced - connected for synced, connected in zip(s.restart_synced, s.restart_connected)]
    print(f"restart: connected until synchronised, s {spread(reconnect)}  (target < 3)")
    print(f"baseline: one ovs-ofctl dump-flows, s  {spread(s.dump_flows)}")
    print(f"                   (connected until synchronised)/dump-flows median: {ratio(reconnect, s.dump_flows)}")
    print(f"restart: the app's flow changes        {'; '.join(s.restart_app_touched)}  (target: 0 added, 0 deleted)")
    print(f"restart: the switch's flows            {'; '.join(s.restart_switch_touched)}  (by OVS duration=)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", action="store_true", default=os.environ.get("NLBFLOW_BENCH_SHORT") == "1")
    parser.add_argument("--runtime", choices=RUNTIMES, action="append")
    parser.add_argument("--members", type=int, help="members, 10 per cluster (default 1000; short: 200)")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 3; short: 2)")
    parser.add_argument("--no-one-by-one", action="store_true", help="leave out the one-by-one registration")
    parser.add_argument("--large", action="store_true", help="also 10,000 members (PUT, restart), one round")
    args = parser.parse_args(argv)
    runtimes = args.runtime or (["osken"] if args.short else list(RUNTIMES))
    members = args.members or (200 if args.short else 1000)
    if members % MEMBERS_PER_CLUSTER or members < MEMBERS_PER_CLUSTER:
        parser.error(f"--members: a multiple of {MEMBERS_PER_CLUSTER}")
    for runtime in runtimes:
        rounds = args.rounds or (2 if args.short else 3)
        run(runtime, members // MEMBERS_PER_CLUSTER, rounds, one_by_one=not args.no_one_by_one)
        if args.large:
            run(runtime, 1000, rounds=1, one_by_one=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
