"""What the controller's reconnect costs in CPU, stage by stage, offline: no switch, no lab.

The app's expected flows for the registration bench's registry (bench/registration.py: members pinned, 10
per cluster) are serialised as the OpenFlow 1.3 flow-stats replies a switch sends (parts under 64 KiB),
then taken through what the controller does with them after a restart: the framework decodes each reply
(as its receive loop does), ryu_apps/ofmsgs.py spec_from_stats turns every entry into a flow spec, and a
fresh NlbCore (cold caches) takes the switch and its read-back (switch_connected, flows_read_back). Each
round is timed twice, interleaved: with Python's cyclic collector running as usual, and held off as the
app's read-back holds it (ryu_apps/nlbflow.py CollectorPause); the time the collector itself took is
printed beside. CPU seconds (process time), so that other load on the machine counts less. Prints;
asserts only that the read-back changes nothing, as the restart must not.

    python -m bench.readback [--short] [--members N] [--rounds N]
    (the installed framework's parser: run with .venv or .venv-ryu; --short is 1,000 members)
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import struct
import sys
import time

import yaml

from bench.registration import MEMBERS_PER_CLUSTER, registry_entries
from bench.stats import spread
from flows import flowspec
from flows.config import parse_config
from flows.core import NlbCore
from flows.flowspec import FlowSpec, expected_flows
from ryu_apps import ofmsgs
from ryu_apps.compat import ofproto_v1_3, ofproto_v1_3_parser
from ryu_apps.nlbflow import CollectorPause

SWITCH_PORTS = {1: True, 2: True}  # the lab switch's own ports; members are pinned to ports it does not have
REPLY_PART_BYTES = 64_000


class StandInDatapath:
    """What the parser and the message builders read: the protocol modules."""

    id = 1
    ofproto = ofproto_v1_3
    ofproto_parser = ofproto_v1_3_parser


DP = StandInDatapath()


def stats_entry(flow: FlowSpec) -> bytes:
    """One ofp_flow_stats as a switch sends it: the framework's own match and instructions serialisation."""
    ofp = ofproto_v1_3
    flow_mod = ofmsgs.flow_add(DP, flow)
    buf = bytearray()
    flow_mod.match.serialize(buf, ofp.OFP_FLOW_STATS_0_SIZE)
    for instruction in flow_mod.instructions:
        instruction.serialize(buf, len(buf))
    header = (len(buf), flow.table_id, 5, 0, flow.priority, 0, 0, 0, flow.cookie, 0, 0)
    struct.pack_into(ofp.OFP_FLOW_STATS_0_PACK_STR, buf, 0, *header)
    return bytes(buf)


def flow_stats_replies(flows: list[FlowSpec]) -> list[bytes]:
    """The multipart reply parts, each but the last flagged REPLY_MORE."""
    ofp = ofproto_v1_3
    parts: list[list[bytes]] = [[]]
    size = 0
    for entry in map(stats_entry, flows):
        if size + len(entry) > REPLY_PART_BYTES:
            parts.append([])
            size = 0
        parts[-1].append(entry)
        size += len(entry)
    replies = []
    for number, entries in enumerate(parts):
        body = b"".join(entries)
        head = bytearray(ofp.OFP_MULTIPART_REPLY_SIZE)
        length = len(head) + len(body)
        struct.pack_into(ofp.OFP_HEADER_PACK_STR, head, 0, ofp.OFP_VERSION, ofp.OFPT_MULTIPART_REPLY, length, 9)
        flags = ofp.OFPMPF_REPLY_MORE if number < len(parts) - 1 else 0
        struct.pack_into(ofp.OFP_MULTIPART_REPLY_PACK_STR, head, ofp.OFP_HEADER_SIZE, ofp.OFPMP_FLOW, flags)
        replies.append(bytes(head) + body)
    return replies


def decode(replies: list[bytes]) -> list:
    """What the framework's receive loop does with each reply before the app sees it."""
    bodies = []
    for data in replies:
        version, msg_type, msg_len, xid = ofproto_v1_3_parser.ofproto_parser.header(data)
        bodies += ofproto_v1_3_parser.ofproto_parser.msg(DP, version, msg_type, msg_len, xid, data).body
    return bodies


class CollectorClock:
    """CPU seconds Python's cyclic collector spent, from its own start/stop callbacks."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._started = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._started = time.process_time()
        else:
            self.seconds += time.process_time() - self._started


def clear_member_flow_caches() -> None:
    """A restarted controller starts with none of its per-member flows built."""
    flowspec.source_masking_flow.cache_clear()
    flowspec.member_delivery_flow.cache_clear()


def one_round(config, replies: list[bytes], paused: bool, clock: CollectorClock) -> dict[str, float]:
    clear_member_flow_caches()
    gc.unfreeze()  # each round starts from the same heap, whatever the last one froze
    gc.collect()
    clock.seconds = 0.0
    times = {}
    started = time.process_time()
    with CollectorPause() if paused else contextlib.nullcontext():
        bodies = decode(replies)
        times["framework decode"] = time.process_time()
        specs = [ofmsgs.spec_from_stats(DP, stats) for stats in bodies]
        times["spec_from_stats"] = time.process_time()
        core = NlbCore(config)
        core.switch_connected(DP.id, SWITCH_PORTS)
        times["switch_connected"] = time.process_time()
        work = core.flows_read_back(DP.id, specs, now=0.0)
        times["flows_read_back"] = time.process_time()
        del bodies, specs
    if work.diff.to_add or work.diff.to_delete:
        raise SystemExit(f"the read-back changed flows: {len(work.diff.to_add)} added, {len(work.diff.to_delete)}")
    stages, last = {}, started
    for name, at in times.items():
        stages[name], last = at - last, at
    stages["total"] = last - started
    stages["of which the collector"] = clock.seconds
    return stages


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", action="store_true", default=os.environ.get("NLBFLOW_BENCH_SHORT") == "1")
    parser.add_argument("--members", type=int, help="members, 10 per cluster (default 10000; short: 1000)")
    parser.add_argument("--rounds", type=int, help="rounds of each (default 3; short: 1)")
    args = parser.parse_args(argv)
    members = args.members or (1000 if args.short else 10_000)
    if members % MEMBERS_PER_CLUSTER or members < MEMBERS_PER_CLUSTER:
        parser.error(f"--members: a multiple of {MEMBERS_PER_CLUSTER}")
    rounds = args.rounds or (1 if args.short else 3)
    config = parse_config(yaml.safe_dump({"clusters": registry_entries(members // MEMBERS_PER_CLUSTER)}))
    pinned = {(c.name, m.ip): m.port for c in config.registry.clusters for m in c.members}
    flows = expected_flows(config.registry, config.settings, pinned, switch_ports=set(SWITCH_PORTS))
    replies = flow_stats_replies(flows)
    del flows
    print(f"{members} members: {len(replies)} flow-stats replies, {sum(map(len, replies))} bytes; CPU seconds")
    clock = CollectorClock()
    samples: dict[bool, dict[str, list[float]]] = {False: {}, True: {}}
    for _ in range(rounds):
        for paused in (False, True):
            for stage, seconds in one_round(config, replies, paused, clock).items():
                samples[paused].setdefault(stage, []).append(seconds)
    for paused, stages in samples.items():
        print("collector held off (as the app does)" if paused else "collector running")
        for stage, values in stages.items():
            print(f"  {stage:24} {spread(values)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
