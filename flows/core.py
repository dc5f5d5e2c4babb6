"""The controller's state and every decision it makes, free of any framework.

The Ryu/os-ken app (ryu_apps/nlbflow.py) only turns events into calls on NlbCore and sends what
they return. The offline fabric (flows/oftable.py) drives the same object, so one test can follow
an ARP request through the controller to the frame a peer receives.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from flows.arp import ArpDecision, ArpFrame, FrameOut, Verdict, decide_arp, probe_outputs
from flows.cookies import Purpose, cluster_id, decode_cookie
from flows.flowspec import EMPTY_DIFF, OFPP_MAX, FlowDiff, FlowSpec, Output, expected_flows, reconcile
from flows.frames import Refusal
from flows.locations import (
    UNLOCATED_PROBE_SECONDS,
    How,
    Judgement,
    Level,
    Note,
    Outcome,
    SwitchLocations,
    members_by_port,
)
from flows.model import Config, Member, Registry

COUNTERS = ("moves", "moves_refused")  # kept by flows/locations.py beside the verdicts
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
    frames: tuple[FrameOut, ...] = ()
    notes: tuple[Note, ...] = ()


@dataclass
class SwitchState:
    ports: dict[int, bool] = field(default_factory=dict)  # port -> up (link up and not administratively down)
    installed: frozenset[FlowSpec] | None = None  # None until the switch's flows have been read back
    held: dict[str, frozenset[int]] = field(default_factory=dict)  # cluster -> delivery ports found at start
    withheld: frozenset[FlowSpec] = frozenset()  # expected flows the switch keeps refusing: not sent again
    held_rounds: int = 0  # rounds of probing for unlocated members since the held ports were found
    next_unlocated_probe: float = float("-inf")  # when tick() next probes every port for unlocated members

    @property
    def live_ports(self) -> set[int]:
        return {port for port, up in self.ports.items() if up}


class NlbCore:
    """Registry, member locations per switch (flows/locations.py), and the flows each switch must hold."""

    def __init__(self, config: Config) -> None:
        self.registry = config.registry
        self.settings = config.settings
        self.switches: dict[int, SwitchState] = {}
        self.counters: Counter[str] = Counter()
        self.where: dict[int, SwitchLocations] = {}  # kept across reconnects, as the switch keeps its flows

    def member_ports(self, dpid: int) -> dict[tuple[str, str], int]:
        """Members this switch can deliver to now: located, on a port that is up."""
        state = self.switches.get(dpid)
        live = state.live_ports if state else set()
        return {key: port for key, port in self.located_ports(dpid).items() if port in live}

    def located_ports(self, dpid: int) -> dict[tuple[str, str], int]:
        """Where each member sits on this switch: its pinned port, else where it was found and believed."""
        ports: dict[tuple[str, str], int] = {}
        learned = self._where(dpid).ports()
        for cluster in self.registry.clusters:
            for member in cluster.members:
                key = (cluster.name, member.ip)
                if member.pinned:
                    if member.dpid == dpid:
                        ports[key] = member.port
                elif key in learned:
                    ports[key] = learned[key]
        return ports

    def set_registry(self, registry: Registry, now: float) -> dict[int, Work]:
        """A changed registry, pushed to every switch: the flows it changes, and probes for new members."""
        self.registry = registry
        unpinned = {(c.name, m.ip) for c in registry.clusters for m in c.members if not m.pinned}
        for where in self.where.values():
            where.forget(unpinned)
        return {dpid: Work(diff=self._sync(dpid), frames=self._probe_unlocated(dpid, now)) for dpid in self.switches}

    def locations(self, cluster_name: str, member: Member) -> list[dict]:
        """Where every connected switch sees the member: port, how it was found, whether the port is up, and
        the spoofs seen against it. Stable while nothing happens, as the REST member view needs."""
        key = (cluster_name, member.ip)
        views = []
        for dpid in sorted(self.switches):
            port = self.located_ports(dpid).get(key)
            if port is None:
                continue
            location = self._where(dpid).located.get(key)
            attempts = self._where(dpid).attempts.get(key)
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
        return {
            "switches": [
                {
                    "dpid": dpid,
                    "ports": sorted(state.ports),
                    "ports_down": sorted(set(state.ports) - state.live_ports),
                    "shared_ports": self.shared_ports(dpid),
                }
                for dpid, state in sorted(self.switches.items())
            ],
            "clusters": [
                {
                    "name": c.name,
                    "members": [{"ip": m.ip, "located": self.confirmations(c.name, m, now)} for m in c.members],
                }
                for c in self.registry.clusters
            ],
            "counters": counters,
        }

    def refused(self, reason: Refusal) -> None:
        """A packet-in the parser refused (flows/frames.py): dropped, and counted by reason."""
        self.counters[reason.value] += 1

    def shared_ports(self, dpid: int) -> list[dict]:
        """Ports holding several members, or a member and other hosts: the fabric cannot serve those
        (docs/trust.md, one edge port per member). For status and the audit."""
        where = self._where(dpid)
        shared = []
        for port, keys in sorted(members_by_port(self.located_ports(dpid)).items()):
            others = sorted(where.strangers.get(port, ()))
            if len(keys) > 1 or others:
                members = [{"cluster": name, "ip": ip} for name, ip in keys]
                shared.append({"port": port, "members": members, "other_sources": others})
        return shared

    def expected_flows(self, dpid: int) -> list[FlowSpec]:
        state = self.switches.get(dpid)
        down = set(state.ports) - state.live_ports if state else set()
        ports = set(state.ports) if state else set()
        return expected_flows(
            self.registry, self.settings, self.located_ports(dpid), down, self._held_ports(dpid), switch_ports=ports
        )

    def switch_connected(self, dpid: int, ports: Mapping[int, bool]) -> None:
        """A (re)connected switch and its ports (port -> up): its flows are unknown until read back, so
        nothing is pushed yet."""
        self.switches[dpid] = SwitchState(ports={port: up for port, up in ports.items() if port < OFPP_MAX})

    def withhold(self, dpid: int, flows: frozenset[FlowSpec]) -> None:
        """Flows this switch keeps refusing (flows/session.py decides which): no sync adds them again, so
        a full or missing table costs a few refusals, not a loop. An empty set retries them all."""
        state = self.switches.get(dpid)
        if state is not None:
            state.withheld = flows
            if state.installed is not None:
                state.installed = state.installed - flows

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
        state = self.switches[dpid]
        state.installed = installed
        return Work(diff=self._sync(dpid), frames=self._probe_unlocated(dpid, now))

    def port_changed(self, dpid: int, port: int, present: bool, up: bool, now: float) -> Work:
        """A port went down or up, appeared or vanished. A member's port that is down gets no frames until
        it is up again; a member claimed elsewhere meanwhile has moved; members on a vanished port are no
        longer there."""
        state = self.switches.get(dpid)
        if state is None or port >= OFPP_MAX:
            return Work()
        if present:
            state.ports[port] = up
        else:
            state.ports.pop(port, None)
        notes = () if present and up else self._where(dpid).port_lost(port, gone=not present, now=now).notes
        return Work(diff=self._sync(dpid), notes=notes + self._shared_port_notes(dpid))

    def packet_in(self, dpid: int, in_port: int, frame: ArpFrame, now: float) -> tuple[ArpDecision, Work]:
        """One punted ARP: decide, judge where it says its sender is (flows/locations.py), and say what to
        send. A frame whose claim is not believed is not acted on: it is dropped."""
        state = self.switches.get(dpid)
        switch_ports = state.live_ports if state else {in_port}
        where = self._where(dpid)
        self._note_stranger(dpid, in_port, frame)
        normal = self.settings.normal_fallback
        decision = decide_arp(self.registry, self.member_ports(dpid), switch_ports, in_port, frame, normal)
        judgement = Judgement(Outcome.BELIEVED)
        if decision.claimed is not None:
            decision, judgement = self._judge(dpid, decision, frame, now, switch_ports)
        self.counters[decision.verdict.value] += 1
        where.probes_sent(decision.outputs, now)
        diff = self._sync(dpid) if judgement.changed else EMPTY_DIFF
        return decision, Work(diff=diff, frames=decision.outputs, notes=judgement.notes + self._shared_port_notes(dpid))

    def tick(self, dpid: int, now: float) -> Work:
        """The periodic work for one switch (the app calls it about every second; it stays cheap): moves
        whose old port stayed silent, checks of quiet members, and probes for unlocated members."""
        state = self.switches.get(dpid)
        if state is None or state.installed is None:  # no punt flow yet: the answers would be lost
            return Work()
        where = self._where(dpid)
        judgement = where.tick(now, state.live_ports)
        frames, notes, changed = list(judgement.probes), list(judgement.notes), judgement.changed
        if now >= state.next_unlocated_probe:
            frames += self._probe_unlocated(dpid, now)
            if state.held:
                state.held_rounds += 1
                if state.held_rounds > self.settings.locations.unanswered_probes:
                    released = ", ".join(f"{name}: {sorted(ports)}" for name, ports in sorted(state.held.items()))
                    text = (
                        f"dpid {dpid}: delivery ports kept since start no member answered for are let go ({released})"
                    )
                    notes.append(Note(Level.INFO, text))
                    state.held, changed = {}, True
        diff = self._sync(dpid) if changed else EMPTY_DIFF
        return Work(diff=diff, frames=tuple(frames), notes=(*notes, *self._shared_port_notes(dpid)))

    def _judge(
        self, dpid: int, decision: ArpDecision, frame: ArpFrame, now: float, live_ports: set[int]
    ) -> tuple[ArpDecision, Judgement]:
        """Whether to believe where the frame says its sender is; a disbelieved frame is not acted on."""
        key, port = decision.claimed
        where = self._where(dpid)
        cluster = self.registry.cluster_named(key[0])
        member = cluster.member_for_ip(key[1])
        if decision.verdict == Verdict.DROPPED_SPOOFED:
            own_port = self.located_ports(dpid).get(key)
            return decision, Judgement(Outcome.SPOOFED, notes=(where.spoof_refused(key, port, own_port, now),))
        if member.pinned:
            where.heard_pinned(key, now)
            return decision, Judgement(Outcome.BELIEVED)
        how = How.PROBE if decision.verdict == Verdict.LOCATED else How.ARP
        judgement = where.claim(key, port, how, frame.eth_src, now, live_ports)
        if judgement.outcome == Outcome.BELIEVED:
            return decision, judgement
        return ArpDecision(VERDICT_OF[judgement.outcome], judgement.probes, decision.claimed), judgement

    def _note_stranger(self, dpid: int, in_port: int, frame: ArpFrame) -> None:
        """A punted frame from a member's port with a source none of the members there sends."""
        keys = [key for key, port in self.located_ports(dpid).items() if port == in_port]
        allowed: set[str] = set()
        where = self._where(dpid)
        for name, ip in keys:
            cluster = self.registry.cluster_named(name)
            member = cluster.member_for_ip(ip)
            location = where.located.get((name, ip))
            allowed |= {cluster.cluster_mac, member.dedicated_mac, *(location.macs if location else ())}
            allowed |= {member.own_mac} if member.own_mac else set()
        if keys and frame.eth_src not in allowed:
            where.stranger(in_port, frame.eth_src)

    def _shared_port_notes(self, dpid: int) -> tuple[Note, ...]:
        return self._where(dpid).shared_port_notes(self.located_ports(dpid))

    def _where(self, dpid: int) -> SwitchLocations:
        if dpid not in self.where:
            self.where[dpid] = SwitchLocations(dpid, self.settings.locations, self.counters)
        return self.where[dpid]

    def _probe_unlocated(self, dpid: int, now: float) -> tuple[FrameOut, ...]:
        """ARP probes for members no switch has heard from, so a peer's first packet arrives; remembered, so
        that only their answers count, and sent again UNLOCATED_PROBE_SECONDS later by tick()."""
        state = self.switches[dpid]
        if state.installed is None:  # no punt flow yet: the answers would be lost
            return ()
        state.next_unlocated_probe = now + UNLOCATED_PROBE_SECONDS
        frames = self._unlocated_probes(dpid)
        self._where(dpid).probes_sent(frames, now)
        return frames

    def _unlocated_probes(self, dpid: int) -> tuple[FrameOut, ...]:
        state = self.switches[dpid]
        heard_from = {key for where in self.where.values() for key in where.located}  # on any switch
        frames: list[FrameOut] = []
        for cluster in self.registry.clusters:
            for member in cluster.members:
                if not member.pinned and (cluster.name, member.ip) not in heard_from:
                    frames += probe_outputs(member.ip, state.live_ports)
        return tuple(frames)

    def _sync(self, dpid: int) -> FlowDiff:
        """Bring a switch whose flows are known to the expected set; wait for the read-back otherwise."""
        state = self.switches.get(dpid)
        if state is None or state.installed is None:
            return EMPTY_DIFF
        # A withheld flow is not added again; should the switch hold it after all, it is kept, not deleted.
        expected = [f for f in self.expected_flows(dpid) if f not in state.withheld or f in state.installed]
        diff = reconcile(expected, state.installed)
        state.installed = frozenset(expected)
        state.held = self._held_ports(dpid)  # each port let go stays let go
        return diff

    def _held_ports(self, dpid: int) -> dict[str, frozenset[int]]:
        """Ports a cluster's delivery flow had when this controller came up (multicast-mode members leave no
        other trace in the switch), each let go as soon as it is known not to hold an unlocated member of
        the cluster: the port is gone, a member is located on it (if that member moves, its old port gets
        nothing), every member is found again, or a few rounds of probes got no answer (tick())."""
        state = self.switches.get(dpid)
        located = self.located_ports(dpid)
        taken = set(located.values())
        held = {}
        for cluster in self.registry.clusters:
            ports = state.held.get(cluster.name, frozenset()) if state else frozenset()
            if ports and any((cluster.name, member.ip) not in located for member in cluster.members):
                held[cluster.name] = (ports & set(state.ports)) - taken
        return {name: ports for name, ports in held.items() if ports}

    def _adopt_locations(self, dpid: int, installed: frozenset[FlowSpec]) -> None:
        state = self.switches[dpid]
        ports = state.ports
        names = {cluster_id(cluster.name): cluster.name for cluster in self.registry.clusters}
        for flow in installed:
            outputs = [action.port for action in flow.actions if isinstance(action, Output)]
            fields = decode_cookie(flow.cookie)
            if fields.purpose == Purpose.CLUSTER_DELIVERY and fields.cluster_id in names:
                state.held[names[fields.cluster_id]] = frozenset(outputs)
                state.held_rounds = 0
            if fields.purpose != Purpose.MEMBER_DELIVERY or len(outputs) != 1 or outputs[0] not in ports:
                continue
            dedicated_mac = dict(flow.match).get("eth_dst")
            for cluster in self.registry.clusters:
                member = cluster.member_for_dedicated_mac(dedicated_mac)
                if member is not None and not member.pinned:
                    self._where(dpid).adopt((cluster.name, member.ip), outputs[0])
