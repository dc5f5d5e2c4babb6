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
from flows.model import Config, Member, Registry


@dataclass(frozen=True)
class Work:
    """What the OpenFlow layer must send, in order: flow changes first, then frames."""

    diff: FlowDiff = EMPTY_DIFF
    frames: tuple[FrameOut, ...] = ()


@dataclass
class SwitchState:
    ports: dict[int, bool] = field(default_factory=dict)  # port -> up (link up and not administratively down)
    installed: frozenset[FlowSpec] | None = None  # None until the switch's flows have been read back
    held: dict[str, frozenset[int]] = field(default_factory=dict)  # cluster -> delivery ports found at start
    withheld: frozenset[FlowSpec] = frozenset()  # expected flows the switch keeps refusing: not sent again

    @property
    def live_ports(self) -> set[int]:
        return {port for port, up in self.ports.items() if up}


class NlbCore:
    """Registry, member locations per switch, and the flows each switch must hold."""

    def __init__(self, config: Config) -> None:
        self.registry = config.registry
        self.settings = config.settings
        self.switches: dict[int, SwitchState] = {}
        self.learned: dict[tuple[int, str, str], int] = {}  # (dpid, cluster, member ip) -> port
        self.counters: Counter[str] = Counter()

    def member_ports(self, dpid: int) -> dict[tuple[str, str], int]:
        """Members this switch can deliver to now: located, on a port that is up."""
        state = self.switches.get(dpid)
        live = state.live_ports if state else set()
        return {key: port for key, port in self.located_ports(dpid).items() if port in live}

    def located_ports(self, dpid: int) -> dict[tuple[str, str], int]:
        """Where each member sits on this switch: its pinned port, else the port it was last heard on."""
        ports: dict[tuple[str, str], int] = {}
        for cluster in self.registry.clusters:
            for member in cluster.members:
                if member.pinned:
                    if member.dpid == dpid:
                        ports[(cluster.name, member.ip)] = member.port
                elif (dpid, cluster.name, member.ip) in self.learned:
                    ports[(cluster.name, member.ip)] = self.learned[(dpid, cluster.name, member.ip)]
        return ports

    def set_registry(self, registry: Registry) -> dict[int, Work]:
        """A changed registry, pushed to every switch: the flows it changes, and probes for new members."""
        self.registry = registry
        unpinned = {(c.name, m.ip) for c in registry.clusters for m in c.members if not m.pinned}
        for key in [key for key in self.learned if key[1:] not in unpinned]:  # gone, or pinned now
            del self.learned[key]
        return {dpid: Work(diff=self._sync(dpid), frames=self.unlocated_probes(dpid)) for dpid in self.switches}

    def locations(self, cluster_name: str, member: Member) -> list[dict]:
        """Where every connected switch sees the member: port, whether pinned or learned, port state."""
        how = "pinned" if member.pinned else "learned"
        found = ((dpid, self.located_ports(dpid).get((cluster_name, member.ip))) for dpid in sorted(self.switches))
        return [
            {"dpid": dpid, "port": port, "how": how, "port_up": self.switches[dpid].ports.get(port, False)}
            for dpid, port in found
            if port is not None
        ]

    def status(self) -> dict:
        """Switches and their ports, where each member is, and what the app did with every packet-in."""
        counters = {verdict.value: 0 for verdict in Verdict}
        counters.update({reason.value: 0 for reason in Refusal})
        counters.update(self.counters)
        return {
            "switches": [
                {"dpid": dpid, "ports": sorted(state.ports), "ports_down": sorted(set(state.ports) - state.live_ports)}
                for dpid, state in sorted(self.switches.items())
            ],
            "clusters": [
                {"name": c.name, "members": [{"ip": m.ip, "located": self.locations(c.name, m)} for m in c.members]}
                for c in self.registry.clusters
            ],
            "counters": counters,
        }

    def refused(self, reason: Refusal) -> None:
        """A packet-in the parser refused (flows/frames.py): dropped, and counted by reason."""
        self.counters[reason.value] += 1

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

    def flows_read_back(self, dpid: int, installed: Iterable[FlowSpec]) -> Work:
        """Reconcile a switch by difference, then look for members still unlocated.

        Member-delivery flows already in the switch say where members were; adopting them keeps a
        restarted controller from deleting the flows that carry traffic while it reconnects.
        """
        installed = frozenset(installed)
        self._adopt_locations(dpid, installed)
        state = self.switches[dpid]
        state.installed = installed
        diff = self._sync(dpid)
        return Work(diff=diff, frames=self.unlocated_probes(dpid))

    def port_changed(self, dpid: int, port: int, present: bool, up: bool = True) -> Work:
        """A port went down or up, appeared or vanished. A member's port that is down gets no frames until
        it is up again; members learned on a vanished port are no longer there."""
        state = self.switches.get(dpid)
        if state is None or port >= OFPP_MAX:
            return Work()
        if present:
            state.ports[port] = up
        else:
            state.ports.pop(port, None)
            for key in [key for key, learned in self.learned.items() if key[0] == dpid and learned == port]:
                del self.learned[key]
        return Work(diff=self._sync(dpid))

    def packet_in(self, dpid: int, in_port: int, frame: ArpFrame) -> tuple[ArpDecision, Work]:
        """One punted ARP: decide, follow the sender if it moved, and say what to send."""
        state = self.switches.get(dpid)
        switch_ports = state.live_ports if state else {in_port}
        normal = self.settings.normal_fallback
        decision = decide_arp(self.registry, self.member_ports(dpid), switch_ports, in_port, frame, normal)
        self.counters[decision.verdict.value] += 1
        diff = EMPTY_DIFF
        if decision.learned is not None:
            (cluster_name, member_ip), port = decision.learned
            if self.learned.get((dpid, cluster_name, member_ip)) != port:
                self.learned[(dpid, cluster_name, member_ip)] = port
                diff = self._sync(dpid)
        return decision, Work(diff=diff, frames=decision.outputs)

    def unlocated_probes(self, dpid: int) -> tuple[FrameOut, ...]:
        """ARP probes for members this switch has not heard from, so a peer's first packet arrives."""
        state = self.switches.get(dpid)
        if state is None or state.installed is None:  # no punt flow yet: the answers would be lost
            return ()
        heard_from = {key[1:] for key in self.learned}  # on any switch: no need to look on this one
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
        held = self._held_ports(dpid)
        state.held = {name: ports for name, ports in state.held.items() if name in held}  # found again: let go
        return diff

    def _held_ports(self, dpid: int) -> dict[str, frozenset[int]]:
        """Ports a cluster's delivery flow had when this controller came up, kept until each of the
        cluster's members is located again (multicast-mode members leave no other trace in the switch)."""
        state = self.switches.get(dpid)
        located = self.located_ports(dpid)
        held = {}
        for cluster in self.registry.clusters:
            ports = state.held.get(cluster.name, frozenset()) if state else frozenset()
            if ports and any((cluster.name, member.ip) not in located for member in cluster.members):
                held[cluster.name] = ports & set(state.ports)
        return held

    def _adopt_locations(self, dpid: int, installed: frozenset[FlowSpec]) -> None:
        state = self.switches[dpid]
        ports = state.ports
        names = {cluster_id(cluster.name): cluster.name for cluster in self.registry.clusters}
        for flow in installed:
            outputs = [action.port for action in flow.actions if isinstance(action, Output)]
            fields = decode_cookie(flow.cookie)
            if fields.purpose == Purpose.CLUSTER_DELIVERY and fields.cluster_id in names:
                state.held[names[fields.cluster_id]] = frozenset(outputs)
            if fields.purpose != Purpose.MEMBER_DELIVERY or len(outputs) != 1 or outputs[0] not in ports:
                continue
            dedicated_mac = dict(flow.match).get("eth_dst")
            for cluster in self.registry.clusters:
                member = cluster.member_for_dedicated_mac(dedicated_mac)
                if member is not None and not member.pinned:
                    self.learned.setdefault((dpid, cluster.name, member.ip), outputs[0])
