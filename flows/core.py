"""The controller's state and every decision it makes, free of any framework.

The Ryu/os-ken app (ryu_apps/nlbflow.py) only turns events into calls on NlbCore and sends what
they return. The offline fabric (flows/oftable.py) drives the same object, so one test can follow
an ARP request through the controller to the frame a peer receives.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace

from flows.arp import ArpDecision, Frame, FrameOut, Verdict, decide_arp, probe_outputs
from flows.audit import Owners
from flows.cookies import Purpose, cluster_id, decode_cookie
from flows.fabric import Resolved, resolve_uplinks, uplink_ports
from flows.flowspec import (
    EMPTY_DIFF,
    OFPP_MAX,
    FlowDiff,
    FlowSpec,
    Output,
    base_flows,
    cluster_flows,
    diff_order,
    expected_flows,
    punt_port_flow,
    reconcile,
)
from flows.frames import Refusal
from flows.locations import (
    MOVE_WINDOW_SECONDS,
    SPOOF_WARNING_SECONDS,
    UNLOCATED_PROBE_SECONDS,
    How,
    Judgement,
    Level,
    MemberKey,
    Note,
    Outcome,
    Placement,
    SwitchLocations,
)
from flows.model import Cluster, Config, Fabric, Member, Registry
from flows.nd import NdFrame, decide_nd
from flows.responder import flood_flows, uses_switch_mode

COUNTERS = ("moves", "moves_refused")  # kept by flows/locations.py beside the verdicts
LOOP_SECONDS = 1.0  # a member's frame sent out of an uplink that comes back on one within this long came
# round a loop (a real loop brings it back within milliseconds; a member repeats an ARP after a second)
VERDICT_OF = {
    Outcome.UNCONFIRMED: Verdict.UNCONFIRMED,
    Outcome.SPOOFED: Verdict.DROPPED_SPOOFED,
    Outcome.UNSOLICITED: Verdict.PROBE_UNSOLICITED,
    Outcome.MOVE_LIMITED: Verdict.MOVE_LIMITED,
}


@dataclass(frozen=True)
class Work:
    """What the OpenFlow layer must send, in order: flow changes first, then frames; and what to log."""

    diff: FlowDiff = EMPTY_DIFF
    frames: tuple[FrameOut, ...] = ()  # a frame whose dpid is set goes out of that switch
    notes: tuple[Note, ...] = ()
    other_switches: tuple[tuple[int, FlowDiff], ...] = ()  # (dpid, its flow changes) the same event caused


@dataclass
class ExpectedFlows:
    """A switch's expected flows, kept by what they depend on: a change recomputes only its own part."""

    base: list[FlowSpec]  # the same on every switch
    ports: dict[int, FlowSpec]  # port -> its punt-meter flow
    clusters: dict[str, tuple[FlowSpec, ...]]  # cluster name -> its flows on this switch
    flood: list[FlowSpec] = field(default_factory=list)  # switch mode's flood over the edge ports, if any

    def all(self, registry: Registry) -> list[FlowSpec]:
        flows = self.base + [self.ports[port] for port in sorted(self.ports)] + self.flood
        for cluster in registry.clusters:
            flows += self.clusters.get(cluster.name, ())
        return flows


@dataclass
class SwitchState:
    ports: dict[int, bool] = field(default_factory=dict)  # port -> up (link up and not administratively down)
    installed: set[FlowSpec] | None = None  # None until the switch's flows have been read back
    held: dict[str, frozenset[int]] = field(default_factory=dict)  # cluster -> delivery ports found at start
    withheld: frozenset[FlowSpec] = frozenset()  # expected flows the switch keeps refusing: not sent again
    held_rounds: int = 0  # rounds of probing for unlocated members since the held ports were found
    next_unlocated_probe: float = float("-inf")  # when tick() next probes every port for unlocated members
    live_ports: set[int] = field(default_factory=set)  # the ports that are up (kept with `ports`)
    down_ports: set[int] = field(default_factory=set)  # the ports that are present and down
    flows: ExpectedFlows | None = None  # the expected flows, once the switch's flows have been read back
    unsent: set[FlowSpec] = field(default_factory=set)  # expected but withheld, so not in the switch
    holding: dict[int, set[str]] = field(default_factory=dict)  # port -> clusters whose held ports include it
    names: dict[int, str] = field(default_factory=dict)  # port -> its name in OVS
    resolved: Resolved = ()  # each configured uplink and the port it names now
    uplinks: frozenset[int] = frozenset()  # the ports of the switch that are uplinks
    emitted: dict[Frame, float] = field(default_factory=dict)  # frames sent out of uplinks lately -> when
    passed: dict[Frame, tuple[float, int]] = field(default_factory=dict)  # passed on from an uplink -> (when,
    # the uplink it came in on)
    loop_warned: float = float("-inf")
    counted: dict[FlowSpec, int] = field(default_factory=dict)  # n_packets of the flows counters_read() watches
    flood: list[FlowSpec] = field(default_factory=list)  # flood_flows() of the edge ports in flood_for
    flood_for: frozenset[int] | None = None

    def __post_init__(self) -> None:
        self.live_ports = {port for port, up in self.ports.items() if up}
        self.down_ports = set(self.ports) - self.live_ports

    def set_port(self, port: int, present: bool, up: bool) -> None:
        self.live_ports.discard(port)
        self.down_ports.discard(port)
        if not present:
            self.ports.pop(port, None)
            return
        self.ports[port] = up
        (self.live_ports if up else self.down_ports).add(port)

    def hold(self, cluster_name: str, ports: frozenset[int]) -> None:
        """A cluster's held delivery ports are now these (none: it holds nothing any more)."""
        for port in self.held.pop(cluster_name, frozenset()):
            holders = self.holding[port]
            holders.discard(cluster_name)
            if not holders:
                del self.holding[port]
        if ports:
            self.held[cluster_name] = ports
            for port in ports:
                self.holding.setdefault(port, set()).add(cluster_name)


class DeliverablePorts(Mapping):
    """Members a switch can deliver to now: located, on a port that is up. A view of the core's own index,
    so that a packet-in looks up the members it needs instead of copying every member's port."""

    def __init__(
        self,
        located: Mapping[MemberKey, int],
        live_ports: Collection[int],
        by_port: Mapping[int, Collection[MemberKey]],
    ) -> None:
        self._located = located
        self._live_ports = live_ports
        self._by_port = by_port

    def on_port(self, port: int) -> Collection[MemberKey]:
        """The members located on one port, from the placement's index (flows/arp.py, member_on_port)."""
        return self._by_port.get(port, ()) if port in self._live_ports else ()

    def __getitem__(self, key: MemberKey) -> int:
        port = self._located[key]
        if port not in self._live_ports:
            raise KeyError(key)
        return port

    def __iter__(self) -> Iterator[MemberKey]:
        return (key for key, port in self._located.items() if port in self._live_ports)

    def __len__(self) -> int:
        return sum(1 for _ in self)


class RemotePorts(Mapping):
    """Members located on another switch than this one, on a port that is up there: (dpid, port). Looked
    up per member a packet-in names, never copied."""

    def __init__(self, core: NlbCore, dpid: int) -> None:
        self._core = core
        self._dpid = dpid

    def __getitem__(self, key: MemberKey) -> tuple[int, int]:
        for dpid in sorted(self._core.placed_on(key)):
            state = self._core.switches.get(dpid)
            port = self._core.placements[dpid].located.get(key) if dpid in self._core.placements else None
            if dpid != self._dpid and state is not None and port in state.live_ports:
                return dpid, port
        raise KeyError(key)

    def __iter__(self) -> Iterator[MemberKey]:
        return (key for key in self._core.heard_on if key in self)

    def __len__(self) -> int:
        return sum(1 for _ in self)


class PlacedElsewhere:
    """Whether a member sits on another switch than this one (pinned there, or heard there): a frame for it
    leaves this switch by its uplinks (flowspec.member_transit_flow)."""

    def __init__(self, core: NlbCore, dpid: int) -> None:
        self._core = core
        self._dpid = dpid

    def __contains__(self, key: object) -> bool:
        return any(dpid != self._dpid for dpid in self._core.placed_on(key))


@dataclass(frozen=True)
class Crossing:
    """A member located on one switch and heard on another's edge port: held until its old port has had
    the time to answer for it, as a move within one switch is (flows/locations.py)."""

    dpid: int  # where it was heard
    port: int
    how: How
    mac: str
    since: float
    from_dpid: int  # where it is located
    from_port: int
    probed: bool = True  # False while its old switch is not connected: it is probed once it is back


class NlbCore:
    """Registry, member locations per switch (flows/locations.py), and the flows each switch must hold.

    Every event costs what it changes, not what is registered: each switch's expected flows are kept per
    cluster (ExpectedFlows), where members sit is indexed per switch (Placement) and across switches
    (heard_on, unlocated), and an event recomputes only the clusters whose members, ports or registration
    it touched. flowspec.expected_flows(), the full computation, is what this must always agree with
    (tests/unit/test_incremental.py). Assumes a valid registry (flows/config.py validate_registry): no two
    clusters share a flow.
    """

    def __init__(self, config: Config) -> None:
        self._registry = config.registry
        self._fabric = config.fabric
        self.settings = config.settings
        self.switches: dict[int, SwitchState] = {}
        self.counters: Counter[str] = Counter()
        self.where: dict[int, SwitchLocations] = {}  # kept across reconnects, as the switch keeps its flows
        self.placements: dict[int, Placement] = {}  # per switch, beside its SwitchLocations
        self.heard_on: dict[MemberKey, set[int]] = {}  # member -> switches whose learned locations hold it
        self.unlocated: dict[str, set[str]] = {}  # cluster -> unpinned members no switch has heard from
        self.crossings: dict[MemberKey, Crossing] = {}  # members heard on another switch, being confirmed
        self.crossing_proven: dict[MemberKey, float] = {}  # when its own port last disproved a crossing
        self.crossed: dict[MemberKey, list[float]] = {}  # when each member last moved between switches
        self.loops: Counter[int] = Counter()  # dpid -> frames of ours that came back to it (a loop)
        self._fabric_changed: set[str] = set()  # clusters with a member now placed on other switches than before
        self._relocated_on: set[int] = set()  # switches whose learned locations an event on another changed
        self._base_flows = base_flows(self.settings)
        self._switch_mode_of: tuple[Registry | None, set[str]] = (None, set())
        self._owners = Owners(self._registry)  # cookie -> cluster and member, for counters_read()
        for cluster in self._registry.clusters:
            self._count_unlocated(cluster)

    @property
    def registry(self) -> Registry:
        """Changed only through set_registry(), which keeps the indexes in step."""
        return self._registry

    @property
    def fabric(self) -> Fabric:
        """Changed only through set_fabric()."""
        return self._fabric

    @property
    def _switch_mode_clusters(self) -> set[str]:
        """The clusters whose flows send to every edge port (flows/responder.py), kept per registry value."""
        if self._switch_mode_of[0] is not self._registry:
            names = {cluster.name for cluster in self._registry.clusters if uses_switch_mode(cluster)}
            self._switch_mode_of = (self._registry, names)
        return self._switch_mode_of[1]

    def placed_on(self, key: object) -> Iterable[int]:
        """The switches a member sits on: the one it is pinned to, else those whose learned locations hold it."""
        cluster = self._registry.cluster_named(key[0]) if isinstance(key, tuple) else None
        member = cluster.member_for_ip(key[1]) if cluster is not None else None
        if member is not None and member.pinned:
            return (member.dpid,)
        return self.heard_on.get(key, ())

    def member_ports(self, dpid: int) -> Mapping[tuple[str, str], int]:
        """Members this switch can deliver to now: located, on a port that is up."""
        state = self.switches.get(dpid)
        placement = self._placement(dpid)
        return DeliverablePorts(placement.located, state.live_ports if state else (), placement.by_port)

    def located_ports(self, dpid: int) -> dict[tuple[str, str], int]:
        """Where each member sits on this switch: its pinned port, else where it was found and believed."""
        return dict(self._placement(dpid).located)

    def set_registry(self, registry: Registry, now: float) -> dict[int, Work]:
        """A changed registry, pushed to every switch: the flows it changes, and probes for new members.

        Only the clusters that differ (added, removed, or not equal to their old value) are looked at: a
        registry change costs the size of the clusters it changes.
        """
        old_registry, self._registry = self._registry, registry
        changed = _changed_clusters(old_registry, registry)
        gone: set[MemberKey] = set()
        keys: set[MemberKey] = set()
        for name in changed:
            old, new = old_registry.cluster_named(name), registry.cluster_named(name)
            old_members = old.members if old is not None else ()
            keys |= {(name, member.ip) for member in old_members}
            keys |= {(name, member.ip) for member in (new.members if new is not None else ())}
            for member in old_members:  # what was learned about a member goes when it does, or its pin changes
                now_member = new.member_for_ip(member.ip) if new is not None else None
                if now_member is None or (now_member.pinned and now_member != member):
                    gone.add((name, member.ip))
        touched: dict[int, set[str]] = {}
        for key in gone:
            self.crossings.pop(key, None)
            self.crossing_proven.pop(key, None)
            self.crossed.pop(key, None)
        for dpid, where in self.where.items():
            where.forget(gone)
            touched[dpid] = self._absorb(dpid) | set(changed)
            for key in keys:
                self._place(dpid, key, touched[dpid])
        for name in changed:
            self.unlocated.pop(name, None)
            cluster = registry.cluster_named(name)
            if cluster is not None:
                self._count_unlocated(cluster)
        return self._every_switch(touched, now)

    def set_fabric(self, fabric: Fabric, now: float) -> dict[int, Work]:
        """A changed description of the switches: each connected switch whose uplinks it changes gets its
        flows recomputed; a member found on a port that is now an uplink was never there, and is looked
        for again."""
        self._fabric = fabric
        touched = {dpid: self._resolve(dpid) for dpid in self.switches}
        return self._every_switch(touched, now)

    def uplink_conflicts(self, fabric: Fabric) -> list[str]:
        """Why a fabric cannot be taken as it is: an uplink that is the port of a member located there now
        (learned or pinned). Members are never on an uplink; the user names the wrong port."""
        problems = []
        for switch in fabric.switches:
            state = self.switches.get(switch.dpid)
            names = state.names if state is not None else {}
            for uplink, port in resolve_uplinks(switch, names):
                if port is None:
                    continue
                for name, ip in sorted(self._placement(switch.dpid).by_port.get(port, ())):
                    problems.append(
                        f"dpid {switch.dpid:016x} port {port} (uplink {uplink!r}) holds member {ip} of cluster"
                        f" {name!r}: an uplink never holds a member"
                    )
        return problems

    def switch_views(self) -> list[dict]:
        """Every switch the fabric describes or that is connected, by dpid: what `nlbflow switch list` shows."""
        dpids = {switch.dpid for switch in self._fabric.switches} | set(self.switches)
        return [self.switch_view(dpid) for dpid in sorted(dpids)]

    def switch_view(self, dpid: int) -> dict:
        """One switch: its name, whether it is connected, each uplink and its port, the members on it and
        the loops seen."""
        config = self._fabric.switch(dpid)
        state = self.switches.get(dpid)
        resolved = state.resolved if state is not None else resolve_uplinks(config, {})
        placement = self.placements.get(dpid)
        located = sorted(placement.located.items()) if placement is not None else []
        return {
            "dpid": dpid,
            "name": config.name if config is not None else None,
            "connected": state is not None,
            "uplinks": [{"uplink": uplink, "port": port} for uplink, port in resolved],
            "members": [{"cluster": name, "ip": ip, "port": port} for (name, ip), port in located],
            "loops": self.loops[dpid],
        }

    def locations(self, cluster_name: str, member: Member) -> list[dict]:
        """Where every connected switch sees the member: port, how it was found, whether the port is up, and
        the spoofs seen against it. Stable while nothing happens, as the REST member view needs."""
        key = (cluster_name, member.ip)
        dpids = set(self.heard_on.get(key, ()))
        cluster = self._registry.cluster_named(cluster_name)
        registered = cluster.member_for_ip(member.ip) if cluster is not None else None
        if registered is not None and registered.pinned:
            dpids.add(registered.dpid)
        views = []
        for dpid in sorted(dpid for dpid in dpids if dpid in self.switches):
            port = self._placement(dpid).located.get(key)
            if port is None:
                continue
            location = self.where[dpid].located.get(key)
            attempts = self.where[dpid].attempts.get(key)
            views.append(
                {
                    "dpid": dpid,
                    "port": port,
                    "how": How.PINNED.value if member.pinned else location.how.value,
                    "port_up": self.switches[dpid].ports.get(port, False),
                    "spoof_attempts": attempts.count if attempts else 0,
                    "last_spoof_port": attempts.last_port if attempts else None,
                }
            )
        return views

    def confirmations(self, cluster_name: str, member: Member, now: float) -> list[dict]:
        """locations(), each with when the member was last heard there (seconds ago, None if not yet) and
        whether a check of the port is under way: what `nlbflow status` shows."""
        key = (cluster_name, member.ip)
        views = []
        for view in self.locations(cluster_name, member):
            where = self._where(view["dpid"])
            location = where.located.get(key)
            heard = where.pinned_heard.get(key) if member.pinned else location.heard
            checking = key in where.claims or (location is not None and location.checking_since is not None)
            views.append(
                {**view, "confirmed_ago": None if heard is None else round(now - heard, 1), "checking": checking}
            )
        return views

    def status(self, now: float) -> dict:
        """Switches and their ports, shared ports, where each member is, and what the app did with every
        packet-in."""
        counters = {verdict.value: 0 for verdict in Verdict}
        counters.update({reason.value: 0 for reason in Refusal})
        counters.update(dict.fromkeys(COUNTERS, 0))
        counters.update(self.counters)
        switches = []
        for view in self.switch_views():
            state = self.switches.get(view["dpid"])
            ports = sorted(state.ports) if state is not None else []
            down = sorted(state.down_ports) if state is not None else []
            shared = self.shared_ports(view["dpid"]) if state is not None else []
            switches.append({**view, "ports": ports, "ports_down": down, "shared_ports": shared})
        return {
            "switches": switches,
            "clusters": [
                {
                    "name": c.name,
                    "members": [{"ip": m.ip, "located": self.confirmations(c.name, m, now)} for m in c.members],
                }
                for c in self._registry.clusters
            ],
            "counters": counters,
        }

    def refused(self, reason: Refusal) -> None:
        """A packet-in the parser refused (flows/frames.py): dropped, and counted by reason."""
        self.counters[reason.value] += 1

    def shared_ports(self, dpid: int) -> list[dict]:
        """Ports holding several members, or a member and other hosts: the fabric cannot serve those
        (docs/trust.md, one edge port per member). For status and the audit."""
        placement, where = self._placement(dpid), self._where(dpid)
        ports = placement.crowded | {port for port in where.strangers if port in placement.by_port}
        shared = []
        for port in sorted(ports):
            members = [{"cluster": name, "ip": ip} for name, ip in sorted(placement.by_port[port])]
            shared.append({"port": port, "members": members, "other_sources": sorted(where.strangers.get(port, ()))})
        return shared

    def expected_flows(self, dpid: int) -> list[FlowSpec]:
        state = self.switches.get(dpid)
        if state is not None and state.flows is not None:
            return state.flows.all(self._registry)
        down = state.down_ports if state else set()
        ports = set(state.ports) if state else set()
        uplinks = state.uplinks if state else frozenset()
        located = self._placement(dpid).located
        elsewhere = PlacedElsewhere(self, dpid)
        return expected_flows(
            self._registry, self.settings, located, down, switch_ports=ports, uplinks=uplinks, elsewhere=elsewhere
        )

    def switch_connected(self, dpid: int, ports: Mapping[int, bool], names: Mapping[int, str] | None = None) -> None:
        """A (re)connected switch, its ports (port -> up) and their names in OVS (port -> name): its flows are
        unknown until read back, so nothing is pushed yet."""
        self._where(dpid)
        state = SwitchState(ports={port: up for port, up in ports.items() if port < OFPP_MAX})
        state.names = {port: name for port, name in (names or {}).items() if port in state.ports}
        self.switches[dpid] = state
        self._resolve(dpid)

    def withhold(self, dpid: int, flows: frozenset[FlowSpec]) -> None:
        """Flows this switch keeps refusing (flows/session.py decides which): no sync adds them again, so
        a full or missing table costs a few refusals, not a loop. An empty set retries them all."""
        state = self.switches.get(dpid)
        if state is not None:
            state.withheld = flows
            if state.installed is not None:
                for flow in flows & state.installed:
                    state.installed.discard(flow)
                    state.unsent.add(flow)

    def switch_disconnected(self, dpid: int) -> None:
        self.switches.pop(dpid, None)

    def flows_read_back(self, dpid: int, installed: Iterable[FlowSpec], now: float) -> Work:
        """Reconcile a switch by difference, then look for members still unlocated.

        Member-delivery flows already in the switch say where members were; adopting them keeps a
        restarted controller from deleting the flows that carry traffic while it reconnects. Adopted
        locations are checked by a probe at the next tick, like any other.
        """
        installed = frozenset(installed)
        self._adopt_locations(dpid, installed)
        touched_on = self._settle({dpid: set()})
        del touched_on[dpid]  # rebuilt whole
        diff = self._rebuild(dpid, installed)
        return Work(diff=diff, frames=self._probe_unlocated(dpid, now), other_switches=self._diffs(touched_on))

    def port_changed(self, dpid: int, port: int, present: bool, up: bool, now: float, name: str | None = None) -> Work:
        """A port went down or up, appeared or vanished (name: its name in OVS). A member's port that is down
        gets no frames until it is up again; a member claimed elsewhere meanwhile has moved; members on a
        vanished port are no longer there. An uplink going down or up changes no flow; one that appears,
        vanishes or is renumbered changes the flows that send to uplinks."""
        state = self.switches.get(dpid)
        if state is None or port >= OFPP_MAX:
            return Work()
        was = (port in state.ports, state.names.get(port))
        state.set_port(port, present, up)
        if present and name is not None:
            state.names[port] = name
        elif not present:
            state.names.pop(port, None)
        notes = () if present and up else self._where(dpid).port_lost(port, gone=not present, now=now).notes
        if not (present and up):  # a claim from a port that went away is no move
            for key in [key for key, c in self.crossings.items() if (c.dpid, c.port) == (dpid, port)]:
                del self.crossings[key]
        touched = self._resolve(dpid) if was != (present, state.names.get(port)) else set()
        touched |= {name for name, _ in self._placement(dpid).by_port.get(port, ())}
        touched |= state.holding.get(port, set())
        return self._work(dpid, touched, notes=notes, punt_ports=(port,))

    def packet_in(self, dpid: int, in_port: int, frame: Frame, now: float) -> tuple[ArpDecision, Work]:
        """One punted ARP or ND message: decide (flows/arp.py, flows/nd.py), judge where it says its sender is
        (flows/locations.py), and say what to send. A frame whose claim is not believed is not acted on: it is
        dropped."""
        state = self.switches.get(dpid)
        switch_ports = state.live_ports if state else {in_port}
        uplinks = state.uplinks if state else frozenset()
        if in_port in uplinks and self._came_round(state, dpid, in_port, frame, now):
            return ArpDecision(Verdict.LOOPED), Work(notes=self._looped(dpid, in_port, now))
        where = self._where(dpid)
        self._note_stranger(dpid, in_port, frame)
        normal = self.settings.normal_fallback
        elsewhere = RemotePorts(self, dpid)
        decide = decide_nd if isinstance(frame, NdFrame) else decide_arp
        decision = decide(
            self._registry, self.member_ports(dpid), switch_ports, in_port, frame, normal, uplinks, elsewhere
        )
        judgement = Judgement(Outcome.BELIEVED)
        if decision.claimed is not None:
            decision, judgement = self._judge(dpid, decision, frame, now, switch_ports)
        self.counters[decision.verdict.value] += 1
        here = [out for out in decision.outputs if out.dpid is None]
        where.probes_sent(here, now)
        if uplinks:
            sent_up = [out.frame for out in here if out.port in uplinks]
            if in_port in uplinks:
                self._remember(state.passed, sent_up, (now, in_port))
            else:
                self._remember(state.emitted, sent_up, now)
        return decision, self._work(dpid, set(), frames=decision.outputs, notes=judgement.notes)

    @property
    def counts_traffic(self) -> bool:
        """Whether the app should read the flow counters that say switch-mode members are still there."""
        return bool(self._switch_mode_clusters)

    def counters_read(self, dpid: int, counters: Iterable[tuple[FlowSpec, int]], now: float) -> None:
        """Packet counts of a switch's ARP_SENDER and SOURCE_MASKING flows (flow, n_packets). In switch mode
        the switch answers a member's ARP itself, so no packet-in says the member is still on its port: a
        count that grew on a flow matching that port and that member's frames says it instead, and the member
        is not probed as a quiet one (docs/switch-mode.md)."""
        state, where = self.switches.get(dpid), self.where.get(dpid)
        if state is None or where is None:
            return
        seen = {}
        for flow, packets in counters:
            seen[flow] = packets
            if packets <= state.counted.get(flow, 0):
                continue
            key = self._counted_member(flow)
            port = dict(flow.match).get("in_port")
            if key is not None and key[0] in self._switch_mode_clusters and isinstance(port, int):
                where.heard_by_counter(key, port, now)
        state.counted = seen

    def _counted_member(self, flow: FlowSpec) -> MemberKey | None:
        """The member a counted flow's cookie names, found as the audit finds it (flows/audit.py, Owners)."""
        if decode_cookie(flow.cookie).purpose not in (Purpose.ARP_SENDER, Purpose.SOURCE_MASKING):
            return None
        if self._owners.registry is not self._registry:
            self._owners = Owners(self._registry)
        cluster, member = self._owners.of(flow.cookie)
        return (cluster.name, member.ip) if cluster is not None and member is not None else None

    def tick(self, dpid: int, now: float) -> Work:
        """The periodic work for one switch (the app calls it about every second; it stays cheap): moves
        whose old port stayed silent, checks of quiet members, and probes for unlocated members."""
        state = self.switches.get(dpid)
        if state is None or state.installed is None:  # no punt flow yet: the answers would be lost
            return Work()
        where = self._where(dpid)
        judgement = where.tick(now, state.live_ports)
        frames, notes = list(judgement.probes), list(judgement.notes)
        frames += self._settle_crossings(now, notes)
        while state.emitted and now - next(iter(state.emitted.values())) > LOOP_SECONDS:
            del state.emitted[next(iter(state.emitted))]
        while state.passed and now - next(iter(state.passed.values()))[0] > LOOP_SECONDS:
            del state.passed[next(iter(state.passed))]
        released: set[str] = set()
        if now >= state.next_unlocated_probe:
            frames += self._probe_unlocated(dpid, now)
            if state.held:
                state.held_rounds += 1
                if state.held_rounds > self.settings.locations.unanswered_probes:
                    text = ", ".join(f"{name}: {sorted(ports)}" for name, ports in sorted(state.held.items()))
                    text = f"dpid {dpid}: delivery ports kept since start no member answered for are let go ({text})"
                    notes.append(Note(Level.INFO, text))
                    released = set(state.held)
                    for name in released:
                        state.hold(name, frozenset())
        return self._work(dpid, released, frames=tuple(frames), notes=tuple(notes))

    def _judge(
        self, dpid: int, decision: ArpDecision, frame: Frame, now: float, live_ports: set[int]
    ) -> tuple[ArpDecision, Judgement]:
        """Whether to believe where the frame says its sender is; a disbelieved frame is not acted on."""
        key, port = decision.claimed
        where = self._where(dpid)
        cluster = self._registry.cluster_named(key[0])
        member = cluster.member_for_ip(key[1])
        if decision.verdict == Verdict.DROPPED_SPOOFED:
            own_port = self._placement(dpid).located.get(key)
            return decision, Judgement(Outcome.SPOOFED, notes=(where.spoof_refused(key, port, own_port, now),))
        if member.pinned:
            where.heard_pinned(key, now)
            return decision, Judgement(Outcome.BELIEVED)
        how = How.PROBE if decision.verdict == Verdict.LOCATED else How.ND if isinstance(frame, NdFrame) else How.ARP
        if key not in where.located:
            other = next(((d, self.where[d].located[key].port) for d in self.heard_on.get(key, ()) if d != dpid), None)
            if other is not None:
                judgement = self._cross(dpid, key, port, how, frame.eth_src, now, other)
                if judgement.outcome == Outcome.BELIEVED:
                    return decision, judgement
                return ArpDecision(VERDICT_OF[judgement.outcome], judgement.probes, decision.claimed), judgement
        judgement = where.claim(key, port, how, frame.eth_src, now, live_ports)
        crossing = self.crossings.get(key)
        if judgement.outcome == Outcome.BELIEVED and crossing is not None and crossing.from_dpid == dpid:
            del self.crossings[key]  # its own port answered while a claim from another switch waited: forged
            self.crossing_proven[key] = now
            self.counters[Verdict.DROPPED_SPOOFED.value] += 1
            note = self._where(crossing.dpid).spoof_refused(key, crossing.port, None, now)
            text = f"{note.text} (it answered on dpid {dpid} port {port})"
            notes = (*judgement.notes, Note(note.level, text))
            judgement = Judgement(judgement.outcome, judgement.changed, judgement.probes, notes)
        if judgement.outcome == Outcome.BELIEVED:
            return decision, judgement
        return ArpDecision(VERDICT_OF[judgement.outcome], judgement.probes, decision.claimed), judgement

    def _cross(
        self, dpid: int, key: MemberKey, port: int, how: How, mac: str, now: float, other: tuple[int, int]
    ) -> Judgement:
        """The member is located on another switch and heard on this one's edge port: confirmed as a move
        within one switch is. Its old port is probed, and the claim held; an answer there proves the claim
        forged, silence for confirm_seconds (or the old port or switch gone) makes it a move."""
        where = self._where(dpid)
        if how == How.PROBE and not where.solicited(key[1], port, now):
            return Judgement(Outcome.UNSOLICITED)
        if key in self.crossings:
            return Judgement(Outcome.UNCONFIRMED)
        if now - self.crossing_proven.get(key, float("-inf")) <= self.settings.locations.confirm_seconds:
            return Judgement(Outcome.SPOOFED, notes=(where.spoof_refused(key, port, None, now),))
        from_dpid, from_port = other
        crossing = Crossing(dpid, port, how, mac, now, from_dpid, from_port)
        state = self.switches.get(from_dpid)
        if state is not None and from_port not in state.live_ports:
            notes = self._cross_now(key, crossing, now, f"dpid {from_dpid} port {from_port} is down or gone")
            outcome = Outcome.BELIEVED if key in where.located else Outcome.MOVE_LIMITED
            return Judgement(outcome, outcome == Outcome.BELIEVED, notes=notes)
        where_from = f"dpid {dpid}: member {key[1]} of cluster {key[0]} on dpid {from_dpid} port {from_port}"
        if state is None:  # its switch may well still forward: probed once it is back (tick())
            self.crossings[key] = replace(crossing, probed=False)
            text = f"{where_from}, heard on port {port}: dpid {from_dpid} is not connected; its old port is probed"
            return Judgement(Outcome.UNCONFIRMED, notes=(Note(Level.INFO, f"{text} once it is back"),))
        self.crossings[key] = crossing
        text = f"{where_from}, heard on port {port}: probing its old port before believing it"
        return Judgement(
            Outcome.UNCONFIRMED, probes=self._probe_old_port(key[1], crossing, now), notes=(Note(Level.INFO, text),)
        )

    def _probe_old_port(self, ip: str, crossing: Crossing, now: float) -> tuple[FrameOut, ...]:
        """One probe for the member out of its old port, on its old switch, remembered there."""
        probes = probe_outputs(ip, (crossing.from_port,))
        self._where(crossing.from_dpid).probes_sent(probes, now)
        return tuple(FrameOut(out.port, out.frame, crossing.from_dpid) for out in probes)

    def _settle_crossings(self, now: float, notes: list[Note]) -> list[FrameOut]:
        """Crossings whose old port stayed silent are moves; one whose new port went away is dropped; one
        waiting for its old switch is probed once that is back, and is a move if it stays away for
        idle_seconds (a hypervisor that died with its switch)."""
        confirm, frames = self.settings.locations.confirm_seconds, []
        for key, crossing in list(self.crossings.items()):
            new_state, old_state = self.switches.get(crossing.dpid), self.switches.get(crossing.from_dpid)
            if new_state is None or crossing.port not in new_state.live_ports:
                del self.crossings[key]
            elif not crossing.probed and old_state is not None and old_state.installed is not None:
                self.crossings[key] = replace(crossing, since=now, probed=True)
                frames += self._probe_old_port(key[1], crossing, now)
            elif not crossing.probed and now - crossing.since >= self.settings.locations.idle_seconds:
                del self.crossings[key]
                gone = f"dpid {crossing.from_dpid} not connected for {self.settings.locations.idle_seconds:g} s"
                notes += self._cross_now(key, crossing, now, gone)
            elif crossing.probed and now - crossing.since >= confirm:
                del self.crossings[key]
                silent = f"dpid {crossing.from_dpid} port {crossing.from_port} silent for {confirm:g} s"
                notes += self._cross_now(key, crossing, now, silent)
        return frames

    def _cross_now(self, key: MemberKey, crossing: Crossing, now: float, why: str) -> tuple[Note, ...]:
        """Move a member from one switch to another, at most moves_per_minute times a minute."""
        name, ip = key
        recent = [at for at in self.crossed.get(key, []) if now - at < MOVE_WINDOW_SECONDS]
        self.crossed[key] = recent
        old = f"dpid {crossing.from_dpid} port {crossing.from_port}"
        new = f"dpid {crossing.dpid} port {crossing.port}"
        if len(recent) >= self.settings.locations.moves_per_minute:
            self.counters["moves_refused"] += 1
            limit = f"{self.settings.locations.moves_per_minute} moves in a minute"
            text = f"member {ip} of cluster {name} not moved from {old} to {new} ({why}): at most {limit}"
            return (Note(Level.WARNING, text),)
        if key in self.where[crossing.from_dpid].located:
            self.where[crossing.from_dpid].release(key)
            self._relocated_on.add(crossing.from_dpid)
        self._where(crossing.dpid).settle(key, crossing.port, crossing.how, crossing.mac, now)
        self._relocated_on.add(crossing.dpid)
        recent.append(now)
        self.counters["moves"] += 1
        return (Note(Level.INFO, f"member {ip} of cluster {name} moved from {old} to {new} ({why})"),)

    def _remember(self, sent: dict, frames: Iterable[Frame], value: object) -> None:
        """Remember what went out of uplinks, newest last, so that tick() forgets the oldest first."""
        for frame in frames:
            sent.pop(frame, None)
            sent[frame] = value

    def _came_round(self, state: SwitchState, dpid: int, in_port: int, frame: Frame, now: float) -> bool:
        """Whether a member's frame entering by an uplink is one this switch sent out of an uplink itself a
        moment ago (LOOP_SECONDS): first, from the member's edge port here, while the member is still here;
        or passed on from another uplink, and now entering by another uplink than that one. Over a tree a
        frame enters a switch by one way only; a loop brings it in by both. A member that repeats a frame
        (keepalived sends its gratuitous ARPs back to back) repeats it by the same way."""
        mac, ip = (frame.lla or frame.eth_src, frame.ip_src) if isinstance(frame, NdFrame) else (frame.sha, frame.spa)
        cluster = self._registry.cluster_for_mac(mac)
        member = cluster.member_for_address(ip) if cluster is not None else None
        if member is None:  # every member's VIP announcement is the same frame: only a frame naming one member
            return False  # says there is a loop
        still_here = (cluster.name, member.ip) in self._placement(dpid).located  # else it moved and repeats
        if now - state.emitted.get(frame, float("-inf")) <= LOOP_SECONDS and still_here:
            return True
        passed_at, came_in = state.passed.get(frame, (float("-inf"), None))
        return now - passed_at <= LOOP_SECONDS and in_port != came_in

    def _looped(self, dpid: int, in_port: int, now: float) -> tuple[Note, ...]:
        """A frame this switch sent out of an uplink came back in on one: the uplinks form a loop, which
        docs/fabric.md rules out. Counted, and dropped so that it goes round no more; one WARNING a minute."""
        self.loops[dpid] += 1
        self.counters[Verdict.LOOPED.value] += 1
        state = self.switches[dpid]
        if now - state.loop_warned < SPOOF_WARNING_SECONDS:
            return ()
        state.loop_warned = now
        text = (
            f"dpid {dpid}: a frame sent out of an uplink came back in on uplink port {in_port}: the uplinks form a"
            " loop (a configuration error: the fabric's uplinks must form a tree; docs/fabric.md)"
        )
        return (Note(Level.WARNING, text),)

    def _note_stranger(self, dpid: int, in_port: int, frame: Frame) -> None:
        """A punted frame from a member's port with a source none of the members there sends."""
        placement = self._placement(dpid)
        keys = placement.by_port.get(in_port)
        if not keys:
            return
        allowed: set[str] = set()
        where = self._where(dpid)
        for name, ip in keys:
            cluster = self._registry.cluster_named(name)
            member = cluster.member_for_ip(ip)
            location = where.located.get((name, ip))
            allowed |= {cluster.cluster_mac, member.dedicated_mac, *(location.macs if location else ())}
            allowed |= {member.own_mac} if member.own_mac else set()
        if frame.eth_src not in allowed:
            where.stranger(in_port, frame.eth_src)
            placement.unchecked.add(in_port)

    def _shared_port_notes(self, dpid: int) -> tuple[Note, ...]:
        placement = self._placement(dpid)
        ports, placement.unchecked = placement.unchecked, set()
        return self._where(dpid).shared_port_notes(placement.by_port, ports)

    def _where(self, dpid: int) -> SwitchLocations:
        if dpid not in self.where:
            self.where[dpid] = SwitchLocations(dpid, self.settings.locations, self.counters)
            placement = self.placements[dpid] = Placement()
            for key, port in self._registry.pinned_on(dpid).items():
                placement.place(key, port)
        return self.where[dpid]

    def _placement(self, dpid: int) -> Placement:
        self._where(dpid)
        return self.placements[dpid]

    def _absorb(self, dpid: int) -> set[str]:
        """Bring the indexes up to date with the members whose learned location on this switch changed;
        the clusters whose flows on it that touches. A member that appears on or leaves a switch also
        touches its cluster's transit flows on the others (_fabric_changed)."""
        where = self._where(dpid)
        touched: set[str] = set()
        for key in where.take_relocated():
            heard = self.heard_on.get(key, set())
            if (key in where.located) != (dpid in heard):
                self._fabric_changed.add(key[0])
            if key in where.located:
                self.heard_on.setdefault(key, set()).add(dpid)
            elif key in self.heard_on:
                self.heard_on[key].discard(dpid)
                if not self.heard_on[key]:
                    del self.heard_on[key]
            self._recount(key)
            self._place(dpid, key, touched)
        return touched

    def _work(
        self,
        dpid: int,
        touched: set[str],
        frames: tuple[FrameOut, ...] = (),
        notes: tuple[Note, ...] = (),
        punt_ports: Iterable[int] = (),
    ) -> Work:
        """The end of every event on one switch: its own flow changes, those it caused on the others, and
        the ports that became shared."""
        state, where = self.switches.get(dpid), self.where.get(dpid)
        quiet = not (touched or punt_ports or self._relocated_on or self._fabric_changed)
        if quiet and where is not None and not where.relocated and (state is None or not state.unsent):
            # most packet-ins change nothing: no flow to recompute anywhere, nothing withheld to retry
            shared = self._shared_port_notes(dpid) if self.placements[dpid].unchecked else ()
            return Work(frames=frames, notes=(*notes, *shared))
        touched_on = self._settle({dpid: set(touched)})
        diff = self._update(dpid, touched_on.pop(dpid), punt_ports)
        others = self._diffs(touched_on)
        shared = [note for other in (dpid, *sorted(touched_on)) for note in self._shared_port_notes(other)]
        return Work(diff=diff, frames=frames, notes=(*notes, *shared), other_switches=others)

    def _settle(self, touched: dict[int, set[str]]) -> dict[int, set[str]]:
        """Absorb what every switch learned (the event's, and those an event on another changed: a member
        that moved between switches), then add the clusters whose transit flows that changes on every
        switch with uplinks: the clusters to recompute, per switch."""
        for dpid in set(touched) | self._relocated_on:
            touched.setdefault(dpid, set()).update(self._absorb(dpid))
        self._relocated_on.clear()
        changed, self._fabric_changed = self._fabric_changed, set()
        if changed:
            for dpid, state in self.switches.items():
                if state.uplinks:
                    touched.setdefault(dpid, set()).update(changed)
        return touched

    def _diffs(self, touched: dict[int, set[str]]) -> tuple[tuple[int, FlowDiff], ...]:
        diffs = ((dpid, self._update(dpid, names)) for dpid, names in sorted(touched.items()))
        return tuple((dpid, diff) for dpid, diff in diffs if diff.to_add or diff.to_delete)

    def _every_switch(self, touched: dict[int, set[str]], now: float) -> dict[int, Work]:
        """A change that reaches every switch (the registry, the fabric): each one's flows and probes."""
        touched = self._settle(touched)
        # every connected switch has its SwitchLocations (switch_connected)
        return {
            dpid: Work(
                diff=self._update(dpid, touched.get(dpid, set()), edge_changed=True),
                frames=self._probe_unlocated(dpid, now),
            )
            for dpid in self.switches
        }

    def _resolve(self, dpid: int) -> set[str]:
        """Resolve the switch's uplinks again (its ports or the fabric changed): if they changed, every
        cluster's flows on it do, and a member located on what is now an uplink was never there."""
        state = self.switches[dpid]
        state.resolved = resolve_uplinks(self._fabric.switch(dpid), state.names)
        uplinks = uplink_ports(state.resolved, state.ports)
        if uplinks == state.uplinks:
            return set()
        state.uplinks = uplinks
        where = self._where(dpid)
        where.forget([key for key, location in where.located.items() if location.port in uplinks])
        for name in list(state.held):
            state.hold(name, state.held[name] - uplinks)
        self._absorb(dpid)
        return {cluster.name for cluster in self._registry.clusters}

    def _place(self, dpid: int, key: MemberKey, touched: set[str]) -> None:
        """Put a member on the port the registry (pinned) or the switch's learned locations say; a change
        touches its cluster, and the clusters holding the port it now takes (_held())."""
        cluster = self._registry.cluster_named(key[0])
        member = cluster.member_for_ip(key[1]) if cluster is not None else None
        port = None
        if member is not None and member.pinned:
            port = member.port if member.dpid == dpid else None
        elif member is not None:
            location = self.where[dpid].located.get(key)
            port = location.port if location is not None else None
        if self.placements[dpid].place(key, port) != port:
            touched.add(key[0])
            state = self.switches.get(dpid)
            if port is not None and state is not None:
                touched |= state.holding.get(port, set())

    def _recount(self, key: MemberKey) -> None:
        """Whether a member is among those no switch has heard from."""
        cluster = self._registry.cluster_named(key[0])
        member = cluster.member_for_ip(key[1]) if cluster is not None else None
        if member is not None and not member.pinned and key not in self.heard_on:
            self.unlocated.setdefault(key[0], set()).add(key[1])
        elif key[1] in self.unlocated.get(key[0], ()):
            self.unlocated[key[0]].discard(key[1])
            if not self.unlocated[key[0]]:
                del self.unlocated[key[0]]

    def _count_unlocated(self, cluster: Cluster) -> None:
        ips = {m.ip for m in cluster.members if not m.pinned and (cluster.name, m.ip) not in self.heard_on}
        if ips:
            self.unlocated[cluster.name] = ips

    def _probe_unlocated(self, dpid: int, now: float) -> tuple[FrameOut, ...]:
        """ARP probes for members no switch has heard from, so a peer's first packet arrives; remembered, so
        that only their answers count, and sent again UNLOCATED_PROBE_SECONDS later by tick()."""
        state = self.switches[dpid]
        if state.installed is None:  # no punt flow yet: the answers would be lost
            return ()
        state.next_unlocated_probe = now + UNLOCATED_PROBE_SECONDS
        if not self.unlocated:
            return ()
        ports = sorted(state.live_ports - state.uplinks)  # probes never leave through an uplink
        frames: list[FrameOut] = []
        probed: list[str] = []
        for cluster in self._registry.clusters:  # in registry order
            ips = self.unlocated.get(cluster.name)
            for member in cluster.members if ips else ():
                if member.ip in ips:
                    frames += probe_outputs(member.ip, ports)
                    probed.append(member.ip)
        self._where(dpid).probes_swept(probed, frozenset(ports), now)
        return tuple(frames)

    def _rebuild(self, dpid: int, installed: frozenset[FlowSpec]) -> FlowDiff:
        """Every expected flow of a switch whose flows were just read back, and the difference to them."""
        state = self.switches[dpid]
        placement = self._placement(dpid)
        ports = {port: punt_port_flow(port) for port in state.ports}
        state.flows = ExpectedFlows(list(self._base_flows), ports, {}, self._flood_flows(state))
        for name in set(state.held) - {cluster.name for cluster in self._registry.clusters}:
            state.hold(name, frozenset())
        elsewhere = PlacedElsewhere(self, dpid)
        for cluster in self._registry.clusters:
            held = self._held(state, placement, cluster)
            flows = cluster_flows(
                cluster, self.settings, placement.located, state.down_ports, held, state.uplinks, elsewhere
            )
            state.flows.clusters[cluster.name] = tuple(flows)
        expected = set(state.flows.all(self._registry))
        # A withheld flow is not added again; should the switch hold it after all, it is kept, not deleted.
        withheld = state.withheld - installed
        state.installed = expected - withheld if withheld else expected
        state.unsent = expected & withheld
        return reconcile(state.installed, installed)

    def _update(
        self, dpid: int, clusters: Iterable[str], punt_ports: Collection[int] = (), edge_changed: bool = False
    ) -> FlowDiff:
        """Recompute the flows of these clusters (and these ports' punt flows, and with them or edge_changed
        the switch-mode flood) on a switch whose flows are known, and bring the switch to them; a switch not
        read back yet waits for its read-back."""
        state = self.switches.get(dpid)
        if state is None or state.flows is None:
            return EMPTY_DIFF
        placement = self._placement(dpid)
        elsewhere = PlacedElsewhere(self, dpid)
        removed: list[FlowSpec] = []
        added: list[FlowSpec] = []
        for name in clusters:
            old = state.flows.clusters.pop(name, ())
            cluster = self._registry.cluster_named(name)
            new: tuple[FlowSpec, ...] = ()
            if cluster is None:
                state.hold(name, frozenset())
            else:
                held = self._held(state, placement, cluster)
                located, down = placement.located, state.down_ports
                new = tuple(cluster_flows(cluster, self.settings, located, down, held, state.uplinks, elsewhere))
                state.flows.clusters[name] = new
            if old != new:
                old_set, new_set = set(old), set(new)
                removed += old_set - new_set
                added += new_set - old_set
        flood = self._flood_flows(state) if punt_ports or edge_changed else state.flows.flood
        if flood != state.flows.flood:
            removed += state.flows.flood
            added += flood
            state.flows.flood = flood
        for port in punt_ports:
            old_flow = state.flows.ports.pop(port, None)
            new_flow = punt_port_flow(port) if port in state.ports else None
            if new_flow is not None:
                state.flows.ports[port] = new_flow
            if old_flow != new_flow:
                removed += [old_flow] if old_flow is not None else []
                added += [new_flow] if new_flow is not None else []
        return self._apply(state, removed, added)

    def _flood_flows(self, state: SwitchState) -> list[FlowSpec]:
        """The switch's flood over its edge ports (flows/responder.py), while any cluster is in switch mode:
        asked for after events that can change the ports, the uplinks or the registry, and built again only
        when the edge ports differ from the last time."""
        if not self._switch_mode_clusters:
            return []
        edge = frozenset(state.ports) - state.uplinks
        if state.flood_for != edge:
            state.flood_for, state.flood = edge, flood_flows(edge)
        return state.flood

    def _apply(self, state: SwitchState, removed: list[FlowSpec], added: list[FlowSpec]) -> FlowDiff:
        """The switch's difference for flows no longer and newly expected, in O(change): the installed set
        always is the expected set less what is withheld (state.unsent), so nothing else can differ."""
        to_delete = []
        for flow in removed:
            state.unsent.discard(flow)
            if flow in state.installed:
                state.installed.discard(flow)
                to_delete.append(flow)
        to_add = []
        for flow in added:
            if flow in state.withheld:
                state.unsent.add(flow)
            else:
                state.installed.add(flow)
                to_add.append(flow)
        for flow in [flow for flow in state.unsent if flow not in state.withheld]:  # withheld no more: retried
            state.unsent.discard(flow)
            state.installed.add(flow)
            to_add.append(flow)
        if not to_add and not to_delete:
            return EMPTY_DIFF
        added_keys = {flow.key for flow in to_add}  # an ADD of the same key replaces the old flow: no delete
        return FlowDiff(
            to_add=tuple(sorted(to_add, key=diff_order)),
            to_delete=tuple(sorted((flow for flow in to_delete if flow.key not in added_keys), key=diff_order)),
        )

    def _held(self, state: SwitchState, placement: Placement, cluster: Cluster) -> frozenset[int]:
        """Ports a cluster's delivery flow had when this controller came up (multicast-mode members leave no
        other trace in the switch), each let go as soon as it is known not to hold an unlocated member of
        the cluster: the port is gone, a member is located on it (if that member moves, its old port gets
        nothing), every member is found again, or a few rounds of probes got no answer (tick())."""
        ports = state.held.get(cluster.name)
        if not ports:
            return frozenset()
        every_member_found = placement.per_cluster[cluster.name] >= len(cluster.members)
        kept = (
            frozenset()
            if every_member_found
            else frozenset(port for port in ports if port in state.ports and port not in placement.by_port)
        )
        if kept != ports:
            state.hold(cluster.name, kept)
        return kept

    def _adopt_locations(self, dpid: int, installed: frozenset[FlowSpec]) -> None:
        state = self.switches[dpid]
        ports = state.ports
        names = {cluster_id(cluster.name): cluster.name for cluster in self._registry.clusters}
        for flow in installed:
            fields = decode_cookie(flow.cookie)
            if fields.purpose not in (Purpose.CLUSTER_DELIVERY, Purpose.MEMBER_DELIVERY):
                continue  # most flows read back: only delivery flows say where members are
            outputs = [action.port for action in flow.actions if isinstance(action, Output)]
            if fields.purpose == Purpose.CLUSTER_DELIVERY and fields.cluster_id in names:
                state.hold(names[fields.cluster_id], frozenset(outputs) - state.uplinks)
                state.held_rounds = 0
            if fields.purpose != Purpose.MEMBER_DELIVERY or len(outputs) != 1 or outputs[0] not in ports:
                continue
            if outputs[0] in state.uplinks:
                continue
            dedicated_mac = dict(flow.match).get("eth_dst")
            for cluster in self._registry.clusters_with_dedicated_mac(dedicated_mac):
                member = cluster.member_for_dedicated_mac(dedicated_mac)
                key = (cluster.name, member.ip)
                if not member.pinned and not self.heard_on.get(key, set()) - {dpid}:  # not found elsewhere since
                    self._where(dpid).adopt(key, outputs[0])


def _changed_clusters(old: Registry, new: Registry) -> set[str]:
    """Names of the clusters added, removed or changed: a cluster the change left alone is the same object
    (flows/registry_ops.py keeps it) or an equal one, and costs one comparison."""
    changed = {cluster.name for cluster in old.clusters if new.cluster_named(cluster.name) is None}
    for cluster in new.clusters:
        before = old.cluster_named(cluster.name)
        if before is not cluster and before != cluster:
            changed.add(cluster.name)
    return changed
