"""The incremental core computes exactly what a full recomputation would (issue 8, 1).

Seeded random registries (unicast, multicast and IGMP clusters, proxy and relay, pinned and unpinned
members) on several switches, driven by random event sequences: connects with random flows already in
the switch, probe answers and member ARP from random ports, ports going down, up and away, ticks with the
clock moving on, registry changes that add, change and remove clusters and members, refused flows. After
every step each switch's expected and installed flows equal flowspec.expected_flows() computed from
scratch, the diffs the core returned, applied to a model of each switch's table, give exactly those
flows, and status, locations, shared ports and the audit equal what the full scans of the old core gave
(the reference implementations below). NLBFLOW_INCREMENTAL_SEED replays one sequence.
"""

from __future__ import annotations

import os
import random
from dataclasses import replace

import pytest

from flows.addresses import (
    BROADCAST_MAC,
    PROBE_MAC,
    ZERO_IP,
    ZERO_MAC,
    dedicated_mac,
    igmp_cluster_mac,
    multicast_cluster_mac,
    unicast_cluster_mac,
)
from flows.arp import ARP_REPLY, ARP_REQUEST, ArpFrame, Verdict, decide_arp, probe_outputs
from flows.audit import CLAIMS, ReadBackFlow, audit_switch
from flows.config import ConfigError, validate_registry
from flows.cookies import Purpose, cluster_id, decode_cookie, is_app_cookie, member_id
from flows.core import COUNTERS, NlbCore, RemotePorts
from flows.fabric import resolve_uplinks, uplink_ports
from flows.flowspec import FlowSpec, Output, action_text, cluster_delivery_flow, expected_flows, member_delivery_flow
from flows.frames import Refusal
from flows.locations import How
from flows.model import (
    ArpMode,
    Cluster,
    ClusterMode,
    Config,
    Fabric,
    LocationSettings,
    Member,
    Registry,
    Settings,
    SwitchConfig,
)

SEEDS = [int(os.environ["NLBFLOW_INCREMENTAL_SEED"])] if "NLBFLOW_INCREMENTAL_SEED" in os.environ else range(40)
STEPS = 120
DPIDS = (1, 2, 3)
PORTS = tuple(range(1, 9))
CLIENT_MAC = "52:54:00:00:00:50"
STRANGER_MAC = "52:54:00:00:00:77"
MODE_MAC = {
    ClusterMode.UNICAST: unicast_cluster_mac,
    ClusterMode.MULTICAST: multicast_cluster_mac,
    ClusterMode.IGMP: igmp_cluster_mac,
}


# --- the reference: the old core's full scans, over the core's own state -------------------------------------


def ref_located_ports(core: NlbCore, dpid: int) -> dict:
    where = core.where.get(dpid)
    learned = where.ports() if where else {}
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


def ref_held_ports(core: NlbCore, dpid: int) -> dict:
    state = core.switches[dpid]
    located = ref_located_ports(core, dpid)
    taken = set(located.values())
    held = {}
    for cluster in core.registry.clusters:
        ports = state.held.get(cluster.name, frozenset())
        if ports and any((cluster.name, member.ip) not in located for member in cluster.members):
            held[cluster.name] = (ports & set(state.ports)) - taken
    return {name: ports for name, ports in held.items() if ports}


def ref_uplinks(core: NlbCore, dpid: int) -> frozenset[int]:
    state = core.switches[dpid]
    return uplink_ports(resolve_uplinks(core.fabric.switch(dpid), state.names), state.ports)


def ref_elsewhere(core: NlbCore, dpid: int) -> set:
    """Members placed on a switch other than dpid: pinned there, or in its learned locations."""
    elsewhere = set()
    for cluster in core.registry.clusters:
        for member in cluster.members:
            key = (cluster.name, member.ip)
            if member.pinned:
                if member.dpid != dpid:
                    elsewhere.add(key)
            elif any(other != dpid and key in where.located for other, where in core.where.items()):
                elsewhere.add(key)
    return elsewhere


def ref_remote(core: NlbCore, dpid: int) -> dict:
    """Members on another connected switch, on a port that is up there: (dpid, port), the lowest dpid first."""
    remote = {}
    for cluster in core.registry.clusters:
        for member in cluster.members:
            key = (cluster.name, member.ip)
            for other in sorted(d for d in core.switches if d != dpid):
                port = ref_located_ports(core, other).get(key)
                if port is not None and port in core.switches[other].live_ports:
                    remote[key] = (other, port)
                    break
    return remote


def ref_expected_flows(core: NlbCore, dpid: int) -> list[FlowSpec]:
    state = core.switches[dpid]
    down = {port for port, up in state.ports.items() if not up}
    located = ref_located_ports(core, dpid)
    held = ref_held_ports(core, dpid)
    uplinks, elsewhere = ref_uplinks(core, dpid), ref_elsewhere(core, dpid)
    return expected_flows(core.registry, core.settings, located, down, held, state.ports, uplinks, elsewhere)


def ref_members_by_port(located: dict) -> dict:
    by_port: dict = {}
    for key, port in sorted(located.items()):
        by_port.setdefault(port, []).append(key)
    return by_port


def ref_shared_ports(core: NlbCore, dpid: int) -> list[dict]:
    where = core.where[dpid]
    shared = []
    for port, keys in sorted(ref_members_by_port(ref_located_ports(core, dpid)).items()):
        others = sorted(where.strangers.get(port, ()))
        if len(keys) > 1 or others:
            members = [{"cluster": name, "ip": ip} for name, ip in keys]
            shared.append({"port": port, "members": members, "other_sources": others})
    return shared


def ref_locations(core: NlbCore, cluster_name: str, member: Member) -> list[dict]:
    key = (cluster_name, member.ip)
    views = []
    for dpid in sorted(core.switches):
        port = ref_located_ports(core, dpid).get(key)
        if port is None:
            continue
        location = core.where[dpid].located.get(key)
        attempts = core.where[dpid].attempts.get(key)
        views.append(
            {
                "dpid": dpid,
                "port": port,
                "how": How.PINNED.value if member.pinned else location.how.value,
                "port_up": core.switches[dpid].ports.get(port, False),
                "spoof_attempts": attempts.count if attempts else 0,
                "last_spoof_port": attempts.last_port if attempts else None,
            }
        )
    return views


def ref_confirmations(core: NlbCore, cluster_name: str, member: Member, now: float) -> list[dict]:
    key = (cluster_name, member.ip)
    views = []
    for view in ref_locations(core, cluster_name, member):
        where = core.where[view["dpid"]]
        location = where.located.get(key)
        heard = where.pinned_heard.get(key) if member.pinned else location.heard
        checking = key in where.claims or (location is not None and location.checking_since is not None)
        confirmed_ago = None if heard is None else round(now - heard, 1)
        views.append({**view, "confirmed_ago": confirmed_ago, "checking": checking})
    return views


def ref_status(core: NlbCore, now: float) -> dict:
    counters = {verdict.value: 0 for verdict in Verdict}
    counters.update({reason.value: 0 for reason in Refusal})
    counters.update(dict.fromkeys(COUNTERS, 0))
    counters.update(core.counters)
    switches = []
    for dpid in sorted({switch.dpid for switch in core.fabric.switches} | set(core.switches)):
        state, config = core.switches.get(dpid), core.fabric.switch(dpid)
        resolved = resolve_uplinks(config, state.names if state else {})
        located = sorted(ref_located_ports(core, dpid).items())
        switches.append(
            {
                "dpid": dpid,
                "name": config.name if config else None,
                "connected": state is not None,
                "uplinks": [{"uplink": uplink, "port": port} for uplink, port in resolved],
                "members": [{"cluster": name, "ip": ip, "port": port} for (name, ip), port in located],
                "loops": core.loops[dpid],
                "ports": sorted(state.ports) if state else [],
                "ports_down": sorted(port for port, up in state.ports.items() if not up) if state else [],
                "shared_ports": ref_shared_ports(core, dpid) if state else [],
            }
        )
    return {
        "switches": switches,
        "clusters": [
            {
                "name": c.name,
                "members": [{"ip": m.ip, "located": ref_confirmations(core, c.name, m, now)} for m in c.members],
            }
            for c in core.registry.clusters
        ],
        "counters": counters,
    }


def ref_flow_entry(registry: Registry, spec: FlowSpec) -> dict:
    fields = decode_cookie(spec.cookie)
    cluster = next((c for c in registry.clusters if cluster_id(c.name) == fields.cluster_id), None)
    member = None
    if cluster is not None:
        member = next((m for m in cluster.members if member_id(m.ip) == fields.member_id), None)
    return {
        "cookie": f"{spec.cookie:#018x}",
        "cluster": cluster.name if cluster else None,
        "member": member.ip if member else None,
        "purpose": fields.purpose.name.lower() if fields.purpose else None,
        "claims": CLAIMS.get(fields.purpose),
        "table_id": spec.table_id,
        "priority": spec.priority,
        "match": dict(spec.match),
        "actions": [action_text(action) for action in spec.actions],
    }


def ref_audit(registry: Registry, expected, read_back, shared) -> dict:
    def order(spec: FlowSpec) -> tuple:
        return (spec.table_id, -spec.priority, spec.cookie, repr(spec.match))

    app_flows = [flow for flow in read_back if is_app_cookie(flow.spec.cookie)]
    installed = {flow.spec for flow in app_flows}
    return {
        "flows": [{**ref_flow_entry(registry, f.spec), "packets": f.packets, "bytes": f.bytes} for f in app_flows],
        "missing": [ref_flow_entry(registry, spec) for spec in sorted(set(expected) - installed, key=order)],
        "unexpected": [ref_flow_entry(registry, spec) for spec in sorted(installed - set(expected), key=order)],
        "other_apps_flows": len(read_back) - len(app_flows),
        "refused": [],
        "shared_ports": shared,
    }


def ref_unlocated(core: NlbCore) -> dict:
    heard_from = {key for where in core.where.values() for key in where.located}
    unlocated: dict = {}
    for cluster in core.registry.clusters:
        for member in cluster.members:
            if not member.pinned and (cluster.name, member.ip) not in heard_from:
                unlocated.setdefault(cluster.name, set()).add(member.ip)
    return unlocated


# --- random registries and events -----------------------------------------------------------------------------


class Run:
    """One random sequence: the core, a model of every switch's table, and where members really are."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.seed = seed
        self.next_cluster = 0
        self.next_member = 0
        self.now = 0.0
        self.tables: dict[int, dict[tuple, FlowSpec]] = {}
        self.home: dict[str, tuple[int, int]] = {}  # member ip -> (dpid, port) it mostly sends from
        self.noted: set[int] = set()  # switches told of the last step's shared ports (packet-in, port, tick)
        self.withheld_since_sync: set[int] = set()  # switches whose withheld flows changed since their last event
        registry = Registry()
        for _ in range(self.rng.randint(1, 4)):
            registry = self.valid(replace(registry, clusters=(*registry.clusters, self.new_cluster(registry)))) or (
                registry
            )
        settings = Settings(
            normal_fallback=self.rng.random() < 0.7,
            source_masking=self.rng.random() < 0.7,
            locations=LocationSettings(confirm_seconds=1.0, idle_seconds=6.0, unanswered_probes=2, moves_per_minute=3),
        )
        self.core = NlbCore(Config(registry=registry, settings=settings, fabric=self.random_fabric()))

    def random_fabric(self) -> Fabric:
        """Some switches with uplinks, by number or by port name (ports are named p1, p2, ...), some
        names that no port has."""
        switches = []
        for dpid in DPIDS:
            if self.rng.random() < 0.6:
                uplinks = [
                    self.rng.choice([port, f"p{port}"]) for port in self.rng.sample(PORTS, self.rng.randint(1, 2))
                ]
                uplinks += ["nosuchport"] if self.rng.random() < 0.2 else []
                switches.append(SwitchConfig(dpid=dpid, name=f"hv{dpid}", uplinks=tuple(uplinks)))
        return Fabric(switches=tuple(switches))

    # registries

    def valid(self, registry: Registry) -> Registry | None:
        try:
            validate_registry(registry, "test")
        except ConfigError:
            return None
        return registry

    def new_member(self, mode: ClusterMode) -> Member:
        self.next_member += 1
        ip = f"10.{self.next_member // 200}.{self.next_member % 200 + 1}.{self.rng.randint(1, 250)}"
        own_mac = None if mode == ClusterMode.UNICAST or self.rng.random() < 0.5 else dedicated_mac(ip)
        member = Member(ip=ip, dedicated_mac=dedicated_mac(ip), own_mac=own_mac)
        self.home[ip] = (self.rng.choice(DPIDS), self.rng.choice(PORTS))
        if self.rng.random() < 0.3:
            member = replace(member, dpid=self.home[ip][0], port=self.home[ip][1])
        return member

    def new_cluster(self, registry: Registry) -> Cluster:
        self.next_cluster += 1
        mode = self.rng.choice(list(ClusterMode))
        ip = f"10.99.{self.next_cluster}.100"
        members = tuple(self.new_member(mode) for _ in range(self.rng.randint(0, 5)))
        arp = self.rng.choice(list(ArpMode))
        return Cluster(f"c{self.next_cluster}", ip, MODE_MAC[mode](ip), arp, mode, members)

    def changed_registry(self) -> Registry:
        registry = self.core.registry
        clusters = list(registry.clusters)
        for _ in range(self.rng.randint(1, 3)):
            choice = self.rng.random()
            if choice < 0.15 or not clusters:
                clusters.append(self.new_cluster(registry))
            elif choice < 0.25:
                clusters.pop(self.rng.randrange(len(clusters)))
            else:
                index = self.rng.randrange(len(clusters))
                clusters[index] = self.changed_cluster(clusters[index])
        return self.valid(Registry(clusters=tuple(clusters))) or registry

    def changed_cluster(self, cluster: Cluster) -> Cluster:
        members = list(cluster.members)
        choice = self.rng.random()
        if choice < 0.35 or not members:
            members.append(self.new_member(cluster.mode))
        elif choice < 0.55:
            members.pop(self.rng.randrange(len(members)))
        elif choice < 0.9:
            index = self.rng.randrange(len(members))
            member = members[index]
            how = self.rng.choice(["pin", "unpin", "mac"])
            if how == "pin":
                member = replace(member, dpid=self.rng.choice(DPIDS), port=self.rng.choice(PORTS))
            elif how == "unpin":
                member = replace(member, dpid=None, port=None)
            else:
                member = replace(member, dedicated_mac=f"02:de:77:{self.rng.randint(0, 255):02x}:00:{index:02x}")
            members[index] = member
        else:
            return replace(cluster, arp=ArpMode.RELAY if cluster.arp == ArpMode.PROXY else ArpMode.PROXY)
        return replace(cluster, members=tuple(members))

    # switches

    def apply(self, dpid: int, work) -> None:
        self.withheld_since_sync.discard(dpid)
        self.apply_diff(dpid, work.diff)
        for other, diff in work.other_switches:
            assert other != dpid, f"seed {self.seed}: the event's own switch among the others"
            self.apply_diff(other, diff)

    def apply_diff(self, dpid: int, diff) -> None:
        table = self.tables.get(dpid)
        if table is None:
            return
        for flow in diff.to_delete:
            assert table.get(flow.key) == flow, f"seed {self.seed}: deletes a flow the switch does not hold"
            del table[flow.key]
        for flow in diff.to_add:
            table[flow.key] = flow

    def random_installed(self, dpid: int) -> list[FlowSpec]:
        """What a switch may hold at connect: some right flows, some stale, adoptable delivery flows."""
        flows: dict[tuple, FlowSpec] = {}
        candidates = list(self.core.expected_flows(dpid))
        for cluster in self.core.registry.clusters:
            ports = self.rng.sample(PORTS, self.rng.randint(0, 3))
            candidates.append(cluster_delivery_flow(cluster.name, cluster.cluster_mac, ports))
            for member in cluster.members:
                port = self.rng.choice(PORTS)
                delivery = member_delivery_flow(
                    cluster.name, cluster.cluster_mac, member.ip, member.dedicated_mac, port
                )
                candidates.append(delivery)
        for flow in candidates:
            if self.rng.random() < 0.5:
                flows[flow.key] = flow
        return list(flows.values())

    def connect(self, dpid: int) -> None:
        ports = {port: self.rng.random() < 0.85 for port in PORTS if self.rng.random() < 0.9}
        names = {port: f"p{port}" if self.rng.random() < 0.9 else f"p{port % 8 + 1}x" for port in ports}
        self.core.switch_connected(dpid, ports, names)
        installed = self.random_installed(dpid)
        self.tables[dpid] = {flow.key: flow for flow in installed}
        self.apply(dpid, self.core.flows_read_back(dpid, installed, self.now))

    def frame(self, dpid: int) -> tuple[int, ArpFrame] | None:
        members = [(c, m) for c in self.core.registry.clusters for m in c.members]
        if not members:
            return None
        cluster, member = self.rng.choice(members)
        home_dpid, home_port = self.home.get(member.ip, (dpid, 1))
        port = home_port if home_dpid == dpid and self.rng.random() < 0.8 else self.rng.choice(PORTS)
        eth_src = self.rng.choice(
            [member.dedicated_mac, cluster.cluster_mac, member.own_mac or CLIENT_MAC, STRANGER_MAC]
        )
        if self.rng.random() < 0.35:
            sha = cluster.cluster_mac if cluster.unicast else (member.own_mac or dedicated_mac(member.ip))
            sha = sha if self.rng.random() < 0.9 else STRANGER_MAC
            return port, ArpFrame(eth_src, PROBE_MAC, ARP_REPLY, sha, member.ip, PROBE_MAC, ZERO_IP)
        peers = [m for m in cluster.members if m != member]
        others = [m.ip for _, m in members]
        spa = self.rng.choice([member.ip, member.ip, cluster.cluster_ip, ZERO_IP, *others[:2]])
        tpa = self.rng.choice([*(m.ip for m in peers), cluster.cluster_ip, "10.0.0.50"])
        eth_dst = self.rng.choice([BROADCAST_MAC, cluster.cluster_mac, CLIENT_MAC, *(m.dedicated_mac for m in peers)])
        op = self.rng.choice([ARP_REQUEST, ARP_REPLY])
        tha = ZERO_MAC if op == ARP_REQUEST else cluster.cluster_mac
        return port, ArpFrame(eth_src, eth_dst, op, cluster.cluster_mac, spa, tha, tpa)

    def step(self) -> None:
        core, rng = self.core, self.rng
        self.noted = set()
        dpid = rng.choice(DPIDS)
        connected = dpid in core.switches
        choice = rng.random()
        if not connected and choice < 0.5:
            self.connect(dpid)
        elif choice < 0.03:
            core.switch_disconnected(dpid)
            self.tables.pop(dpid, None)
        elif choice < 0.45:
            sent = self.frame(dpid)
            if sent is not None:
                port, frame = sent
                state = core.switches.get(dpid)
                live = state.live_ports if state else {port}
                view, remote = core.member_ports(dpid), RemotePorts(core, dpid)
                uplinks = state.uplinks if state else frozenset()
                normal = core.settings.normal_fallback
                plain = decide_arp(
                    core.registry, dict(view), live, port, frame, normal, uplinks, ref_remote(core, dpid)
                )
                assert decide_arp(core.registry, view, live, port, frame, normal, uplinks, remote) == plain
                self.apply(dpid, core.packet_in(dpid, port, frame, self.now)[1])
                self.noted.add(dpid)
        elif choice < 0.6:
            port = rng.choice(PORTS)
            present, up = rng.random() < 0.85, rng.random() < 0.6
            name = rng.choice([f"p{port}", f"p{port % 8 + 1}", None])
            self.apply(dpid, core.port_changed(dpid, port, present, up, self.now, name))
            self.noted |= {dpid} & set(core.switches)
        elif choice < 0.75:
            self.now += rng.choice([0.2, 0.5, 1.0, 2.5, 5.0])
            for each in sorted(core.switches):
                self.apply(each, core.tick(each, self.now))
                self.noted |= {each} if core.switches[each].installed is not None else set()
        elif choice < 0.86:
            for each, work in core.set_registry(self.changed_registry(), self.now).items():
                self.apply(each, work)
        elif choice < 0.9:
            for each, work in core.set_fabric(self.random_fabric(), self.now).items():
                self.apply(each, work)
        elif connected and core.switches[dpid].installed is not None and choice < 0.93:
            self.apply(dpid, core.flows_read_back(dpid, list(self.tables[dpid].values()), self.now))  # a resync
        elif connected and core.switches[dpid].installed is not None:
            expected = core.expected_flows(dpid)
            refused = frozenset(rng.sample(expected, min(len(expected), rng.randint(0, 2))))
            core.withhold(dpid, refused)
            self.withheld_since_sync.add(dpid)
            for flow in refused:  # the switch refused them: it does not hold them
                if self.tables[dpid].get(flow.key) == flow:
                    del self.tables[dpid][flow.key]

    def check(self, step: int) -> None:
        core = self.core
        where = f"seed {self.seed} step {step}"
        for dpid in DPIDS:
            assert core.located_ports(dpid) == ref_located_ports(core, dpid), where
        assert core.unlocated == ref_unlocated(core), where
        for dpid, state in core.switches.items():
            if state.installed is None:
                continue
            assert state.held == ref_held_ports(core, dpid), where
            expected = ref_expected_flows(core, dpid)
            assert sorted(core.expected_flows(dpid), key=repr) == sorted(expected, key=repr), where
            assert state.installed <= set(expected) and set(expected) - state.installed == state.unsent, where
            if dpid not in self.withheld_since_sync:  # withheld no more: added again at the switch's next event
                assert state.unsent <= state.withheld, where
            assert set(self.tables[dpid].values()) == state.installed, f"{where}: the switch's table"
            assert core.shared_ports(dpid) == ref_shared_ports(core, dpid), where
            read_back = [ReadBackFlow(flow, 1, 60) for flow in self.tables[dpid].values()]
            shared = core.shared_ports(dpid)
            report = audit_switch(core.registry, core.expected_flows(dpid), read_back, (), shared)
            assert report == ref_audit(core.registry, expected, read_back, shared), where
        assert core.status(self.now) == ref_status(core, self.now), where
        for dpid in self.noted:  # every port shared now has been warned of, once
            warned = core.where[dpid].warned
            for shared in ref_shared_ports(core, dpid):
                assert len(shared["members"]) < 2 or (shared["port"], "members") in warned, where
                assert not shared["other_sources"] or (shared["port"], "hosts") in warned, where


@pytest.mark.parametrize("seed", SEEDS)
def test_every_step_of_a_random_sequence_leaves_what_a_full_recomputation_gives(seed):
    run = Run(seed)
    for step in range(STEPS):
        run.step()
        run.check(step)


def test_the_random_sequences_reach_every_kind_of_state():
    """The sequences are worth something only if they locate, move and lose members, hold ports at start,
    withhold flows, change the registry, resolve uplinks, send members' frames toward other switches and
    move members between switches: counted over all seeds."""
    seen = {"located": 0, "held": 0, "withheld": 0, "moves": 0, "down": 0, "clusters": set()}
    seen |= {"transit": 0, "crossed": 0, "uplinks": 0}
    for seed in range(10):
        run = Run(seed)
        for _ in range(STEPS):
            run.step()
            core = run.core
            seen["located"] += sum(bool(w.located) for w in core.where.values())
            seen["held"] += sum(bool(s.held) for s in core.switches.values())
            seen["withheld"] += sum(bool(s.withheld) for s in core.switches.values())
            seen["down"] += sum(bool(s.down_ports) for s in core.switches.values())
            seen["clusters"] |= {c.mode for c in core.registry.clusters}
            seen["uplinks"] += sum(bool(s.uplinks) for s in core.switches.values())
            installed = [flow for s in core.switches.values() for flow in s.installed or ()]
            seen["transit"] += sum(decode_cookie(flow.cookie).purpose == Purpose.MEMBER_TRANSIT for flow in installed)
        seen["crossed"] += sum(bool(moved) for moved in run.core.crossed.values())
        seen["moves"] += run.core.counters["moves"]
    assert all(seen[name] for name in ("located", "held", "withheld", "moves", "down")), seen
    assert all(seen[name] for name in ("transit", "crossed", "uplinks")), seen
    assert seen["clusters"] == set(ClusterMode)


def test_a_learned_location_recomputes_only_its_own_clusters_flows():
    """The diff of one member found names only that member's cluster: nothing else is recomputed into it."""
    members = tuple(Member(f"10.0.{c}.{i}", dedicated_mac(f"10.0.{c}.{i}")) for c in (1, 2) for i in (11, 12))
    clusters = tuple(
        Cluster(f"c{c}", f"10.0.{c}.100", unicast_cluster_mac(f"10.0.{c}.100"), members=members[2 * c - 2 : 2 * c])
        for c in (1, 2)
    )
    core = NlbCore(Config(registry=Registry(clusters=clusters)))
    core.switch_connected(1, dict.fromkeys(PORTS, True))
    core.flows_read_back(1, [], 0.0)
    answer = ArpFrame(
        clusters[1].cluster_mac, PROBE_MAC, ARP_REPLY, clusters[1].cluster_mac, "10.0.2.11", PROBE_MAC, ZERO_IP
    )
    _, work = core.packet_in(1, 3, answer, 0.5)
    assert work.diff.to_add and all(decode_cookie(f.cookie).cluster_id == cluster_id("c2") for f in work.diff.to_add)
    assert {f for f in work.diff.to_add if any(isinstance(a, Output) and a.port == 3 for a in f.actions)}
    assert set(core.expected_flows(1)) == set(ref_expected_flows(core, 1))


def test_an_unchanged_pinned_members_confirmation_survives_a_change_to_another_cluster():
    """Only what a registry change touches is forgotten: a pinned member heard from stays confirmed when
    another cluster gains a member."""
    pinned = Member("10.0.1.11", dedicated_mac("10.0.1.11"), dpid=1, port=1)
    web = Cluster("web", "10.0.1.100", unicast_cluster_mac("10.0.1.100"), members=(pinned,))
    app = Cluster("app", "10.0.2.100", unicast_cluster_mac("10.0.2.100"))
    core = NlbCore(Config(registry=Registry(clusters=(web, app))))
    core.switch_connected(1, dict.fromkeys(PORTS, True))
    core.flows_read_back(1, [], 0.0)
    heard = ArpFrame(web.cluster_mac, BROADCAST_MAC, ARP_REQUEST, web.cluster_mac, pinned.ip, ZERO_MAC, "10.0.1.1")
    core.packet_in(1, 1, heard, 1.0)
    grown = replace(app, members=(Member("10.0.2.11", dedicated_mac("10.0.2.11")),))
    work = core.set_registry(Registry(clusters=(web, grown)), 2.0)[1]
    assert core.confirmations("web", pinned, 3.0)[0]["confirmed_ago"] == 2.0
    assert (work.diff.to_add, work.diff.to_delete) == ((), ()), "an unlocated member needs no flow yet"
    assert work.frames == probe_outputs("10.0.2.11", PORTS), "the new member is looked for on every port"


def test_the_search_for_unlocated_members_counts_answers_from_the_ports_it_probed_while_they_are_fresh():
    """A read-back probes each unlocated member out of every port that is up, remembered once per member:
    an answer counts from those ports within confirm_seconds, and from no other port or later."""
    member = Member("10.0.1.11", dedicated_mac("10.0.1.11"))
    web = Cluster("web", "10.0.1.100", unicast_cluster_mac("10.0.1.100"), members=(member,))
    answer = ArpFrame(web.cluster_mac, PROBE_MAC, ARP_REPLY, web.cluster_mac, member.ip, PROBE_MAC, ZERO_IP)
    verdicts = {}
    for port, at in ((3, 0.5), (8, 0.5), (3, 1.5)):
        core = NlbCore(Config(registry=Registry(clusters=(web,))))
        core.switch_connected(1, {**dict.fromkeys(range(1, 8), True), 8: False})
        work = core.flows_read_back(1, [], 0.0)
        assert work.frames == probe_outputs(member.ip, range(1, 8))
        verdicts[(port, at)] = core.packet_in(1, port, answer, at)[0].verdict
    assert verdicts == {
        (3, 0.5): Verdict.LOCATED,
        (8, 0.5): Verdict.PROBE_UNSOLICITED,
        (3, 1.5): Verdict.PROBE_UNSOLICITED,
    }
