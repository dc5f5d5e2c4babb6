"""nlbflow: unicast-mode NLB members reach each other through the fabric.

Load with `osken-manager ryu_apps/nlbflow.py` or `ryu-manager ryu_apps/nlbflow.py`. Each handler
hands one event to NlbCore (flows/core.py) and sends back what it returns; the REST API
(ryu_apps/rest.py) changes the registry through the same core.
"""

from __future__ import annotations

import gc
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import TypeVar

from flows.arp import FrameOut
from flows.audit import ReadBackFlow, audit_switch, refused_entries
from flows.config import ConfigError, load_config, read_token_file
from flows.cookies import Purpose
from flows.core import NlbCore, Work
from flows.fabric_ops import check_pins
from flows.flowspec import EMPTY_DIFF, FlowDiff, FlowSpec
from flows.frames import Refusal, describe
from flows.locations import Level
from flows.meters import (
    DropWatch,
    MeterReading,
    MeterSpec,
    around_flows,
    expected_meters,
    meter_target,
    meters_status,
    reconcile_meters,
    watch_drops,
)
from flows.model import Config, Fabric, Member, Registry
from flows.registry_ops import RegistryError
from flows.session import FLOW_ADD, FLOW_DELETE, Session, SessionPolicy
from flows.state import beside_config, state_path, yaml_state_path
from flows.store import open_registry, remove_stale_temp_files
from ryu_apps import ofmsgs
from ryu_apps.compat import (
    CONFIG_DISPATCHER,
    DEAD_DISPATCHER,
    MAIN_DISPATCHER,
    RUNTIME,
    BaseApp,
    cfg,
    hub,
    ofp_event,
    ofproto_v1_3,
    set_ev_cls,
)
from ryu_apps.httpserver import RestServer
from ryu_apps.rest import RestApi

T = TypeVar("T")
TICK_SECONDS = 1.0  # confirmation timeouts and re-probes (flows/locations.py) are checked this often
REPLY_TIMEOUT_SECONDS = 10.0
RECONNECT_WAIT_SECONDS = 5.0  # a change waits this long for a switch that dropped mid-change to be back
METER_WATCH_SECONDS = 2.0
COUNTS_PER_IDLE_PERIOD = 3  # switch mode: flow counters are read this often per idle_seconds (_count_traffic)
SEND_BATCH = 64  # messages the sender joins into one socket write at most (packet-outs are ~100 bytes)

cfg.CONF.register_opts(
    [cfg.StrOpt("config", default=None, help="nlbflow YAML config; overrides the NLBFLOW_CONFIG variable")],
    group="nlbflow",
)


def config_path() -> str | None:
    """The `[nlbflow] config` option of a --config-file wins over the NLBFLOW_CONFIG variable."""
    return cfg.CONF.nlbflow.config or os.environ.get("NLBFLOW_CONFIG") or None


class CollectorPause:
    """Python's cyclic garbage collector held off while switches' flows are read back, then the heap frozen.

    Decoding a read-back (the framework's flow-stats entries, then flow specs, then the expected set)
    makes hundreds of thousands of objects that all stay alive until it ends: every collection meanwhile
    finds nothing to free, and at 10,000 members they took about half of its CPU time (1.1 to 1.5 of 2.2
    to 3.0 s, `python -m bench.readback`). Freezing what is alive afterwards (the registry, the expected
    and installed flows) keeps later full collections from walking it again (137 ms against 1 ms there).
    Nested: several switches may read back at once; the collector runs again when the last one is done.
    Only objects alive at a freeze and later caught in a reference cycle are never reclaimed.
    """

    def __init__(self) -> None:
        self.depth = 0
        self.was_enabled = False

    def __enter__(self) -> None:
        if self.depth == 0:
            self.was_enabled = gc.isenabled()
            gc.disable()
        self.depth += 1

    def __exit__(self, *exc_info) -> None:
        self.depth -= 1
        if self.depth == 0 and self.was_enabled:
            gc.freeze()
            gc.enable()


READ_BACK_COLLECTOR = CollectorPause()


class RequestRefused(RuntimeError):
    """The switch answered a request with an error: the connection is of no use and is closed."""


class Reply:
    """A request's reply bodies, filled by the reply handlers while the requester waits."""

    def __init__(self) -> None:
        self.bodies: list = []
        self.refused = False
        self.lost = False  # the connection closed before the reply came
        self.xid: int | None = None  # given by the sender when the request leaves
        self.abandoned = False  # the requester stopped waiting before it left: nobody to hand a reply to
        self.done = hub.Event()


@dataclass(frozen=True)
class Outgoing:
    """One message in a connection's outbox, with the flow change it carries and who waits for its reply."""

    message: object
    flow: tuple[str, FlowSpec] | None = None  # (FLOW_ADD or FLOW_DELETE, flow): found again by xid on an error
    reply: Reply | None = None


class Connection:
    """One switch connection: its ordered outbox, the replies it owes, its sync state and its refusals.

    Everything for the switch is computed and appended here without yielding, and one sender greenthread
    sends it in order, so a change computed later never reaches the switch before an earlier one. A
    reconnect makes a new Connection: nothing of a dead one (a reply, a resync, `synced`) reaches it.
    """

    def __init__(self, datapath, policy: SessionPolicy) -> None:
        self.datapath = datapath
        self.dpid: int = datapath.id
        self.outbox: deque[Outgoing] = deque()
        self.wakeup = hub.Event()  # set when the outbox gets something, or the connection closes
        self.replies: dict[int, Reply] = {}  # xid -> waiter
        self.flow_mods: dict[int, tuple[str, FlowSpec]] = {}  # xid -> flow change, until a later barrier's reply
        self.synced = hub.Event()  # set once the switch's flows were read back, or the connection closed
        self.session = Session(policy)
        self.resync_kick = hub.Event()
        self.alive = True
        self.meters: frozenset[MeterSpec] | None = None  # the app's meters in the switch, once synchronised
        self.drop_watch: DropWatch | None = None  # the meters' drop counts at the last look

    def enqueue(self, items: list[Outgoing]) -> None:
        if self.alive and items:
            self.outbox.extend(items)
            self.wakeup.set()

    def closed(self) -> None:
        """Every waiter learns the connection is gone; the sender and the resync loop stop."""
        self.alive = False
        self.synced.set()  # its waiters wake and find it dead
        unsent = [item.reply for item in self.outbox if item.reply is not None]
        self.outbox.clear()
        for waiting in [*self.replies.values(), *unsent]:
            waiting.lost = True
            waiting.done.set()
        self.wakeup.set()
        self.resync_kick.set()

    def answered_through(self, xid: int) -> None:
        """A barrier's reply: the switch has processed everything sent before it, so errors for older
        flow-mods can no longer come."""
        while self.flow_mods and next(iter(self.flow_mods)) < xid:
            del self.flow_mods[next(iter(self.flow_mods))]


def outgoing(datapath, diff: FlowDiff, frames: Iterable[FrameOut]) -> list[Outgoing]:
    """Flow changes (each tagged with its flow), a barrier, then frames: an answer never overtakes the
    flow its traffic needs (the order of ofmsgs.work_messages)."""
    items = [Outgoing(ofmsgs.flow_add(datapath, flow), (FLOW_ADD, flow)) for flow in diff.to_add]
    items += [Outgoing(ofmsgs.flow_delete(datapath, flow), (FLOW_DELETE, flow)) for flow in diff.to_delete]
    if items:
        items.append(Outgoing(ofmsgs.barrier_request(datapath)))
    return items + [Outgoing(message) for message in ofmsgs.packet_outs(datapath, frames)]


def per_switch(dpid: int, work: Work) -> dict[int, tuple[FlowDiff, list[FrameOut]]]:
    """What an event's work sends to each switch: its own flow changes and frames, and those it caused on
    other switches of the fabric (a member moved between them, a relay to a peer on another switch)."""
    sends: dict[int, tuple[FlowDiff, list[FrameOut]]] = {dpid: (work.diff, [])}
    for other, diff in work.other_switches:
        sends[other] = (diff, [])
    for frame in work.frames:
        target = dpid if frame.dpid is None else frame.dpid
        sends.setdefault(target, (EMPTY_DIFF, []))[1].append(frame)
    return sends


class NlbFlow(BaseApp):
    OFP_VERSIONS = (ofproto_v1_3.OFP_VERSION,)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        path = config_path()
        try:  # a bad config or state file stops the start, with file, key and problem named
            config = load_config(path) if path else Config()
            self.state_file = state_path(path, config.controller.state_file)
            yaml_state_file = yaml_state_path(path, config.controller.state_file)
            for stale in remove_stale_temp_files(self.state_file) + (
                remove_stale_temp_files(yaml_state_file) if yaml_state_file else []
            ):
                self.logger.warning("nlbflow: removed %s, the temp file of a write a crash interrupted", stale)
            opened = open_registry(self.state_file, config.registry, yaml_state_file, config.fabric)
            token_file = config.controller.token_file
            token = read_token_file(beside_config(path, token_file)) if token_file else None
        except ConfigError as error:
            self.logger.error("nlbflow: %s", error)
            raise SystemExit(2) from None
        self.store = opened.store
        self.core = NlbCore(replace(config, registry=self.store.registry, fabric=self.store.fabric))
        self.connections: dict[int, Connection] = {}  # dpid -> its current connection
        self.session_policy = SessionPolicy()
        self.change_lock = hub.BoundedSemaphore(1)
        source = "config (first start)" if opened.first_start else "state file"
        if opened.imported:
            source = f"the YAML state file {opened.imported} (imported, the YAML file kept as {opened.kept_as})"
        clusters = ", ".join(f"{c.name} ({c.mode.value}, {len(c.members)} members)" for c in self.registry.clusters)
        self.logger.info(
            "nlbflow on %s, registry from %s, kept in %s (SQLite): %s",
            RUNTIME,
            source,
            self.state_file,
            clusters or "empty",
        )
        if opened.not_read:
            self.logger.warning(
                "nlbflow: %s is not read: the registry is kept in %s; an older version wrote it",
                opened.not_read,
                self.state_file,
            )
        if opened.config_ignored:
            self.logger.warning("nlbflow: the state file holds the registry; clusters in %s are not applied", path)
        switches = ", ".join(
            f"{switch.dpid:016x} ({switch.name or 'no name'}, uplinks {list(switch.uplinks)})"
            for switch in self.core.fabric.switches
        )
        fabric_source = "config" if opened.fabric_first_start or opened.first_start else "state file"
        self.logger.info("nlbflow fabric from %s: %s", fabric_source, switches or "no switches described")
        if opened.fabric_ignored:
            self.logger.warning(
                "nlbflow: the state file holds the fabric; fabric.switches in %s are not applied "
                "(change them with `nlbflow switch set`)",
                path,
            )
        listen = (config.controller.rest_host, config.controller.rest_port)
        try:
            api = RestApi(self, token, config.controller)
            self.rest_server = RestServer(listen, api, config.controller.rest_max_body_bytes)
        except OSError as error:
            self.logger.error("nlbflow: cannot serve the REST API on %s:%s: %s", *listen, error.strerror)
            raise SystemExit(2) from None
        hub.spawn(self.rest_server.serve_forever)
        hub.spawn(self._tick)
        hub.spawn(self._watch_meters)
        hub.spawn(self._count_traffic)
        self.logger.info("nlbflow REST API on http://%s:%s/nlb/ (token %s)", *listen, "required" if token else "off")

    # --- events -----------------------------------------------------------------------------------

    @set_ev_cls(ofp_event.EventOFPSwitchFeatures, CONFIG_DISPATCHER)
    def switch_features(self, ev) -> None:
        old = self.connections.get(ev.msg.datapath.id)
        if old is not None:  # reconnected before the old connection was seen to close
            old.closed()
            self.core.switch_disconnected(old.dpid)
        self.connections[ev.msg.datapath.id] = conn = Connection(ev.msg.datapath, self.session_policy)
        hub.spawn(self._drain, conn)
        hub.spawn(self._sync_switch, conn)

    @set_ev_cls(
        [
            *(ofp_event.EventOFPPortDescStatsReply, ofp_event.EventOFPFlowStatsReply, ofp_event.EventOFPBarrierReply),
            *(ofp_event.EventOFPMeterConfigStatsReply, ofp_event.EventOFPMeterStatsReply),
        ],
        MAIN_DISPATCHER,
    )
    def reply(self, ev) -> None:
        msg = ev.msg
        conn = self._connection(msg.datapath)
        if conn is None:
            return
        if isinstance(msg, msg.datapath.ofproto_parser.OFPBarrierReply):
            conn.answered_through(msg.xid)
        waiting = conn.replies.get(msg.xid)
        if waiting is not None:
            waiting.bodies += getattr(msg, "body", None) or []
            if not getattr(msg, "flags", 0) & msg.datapath.ofproto.OFPMPF_REPLY_MORE:
                waiting.done.set()

    @set_ev_cls(ofp_event.EventOFPPortStatus, MAIN_DISPATCHER)
    def port_status(self, ev) -> None:
        datapath, msg = ev.msg.datapath, ev.msg
        conn = self._connection(datapath)
        if conn is None:  # a dead connection's news: the new one read the ports itself
            return
        present = msg.reason != datapath.ofproto.OFPPR_DELETE
        up = ofmsgs.port_is_up(datapath, msg.desc)
        name = ofmsgs.port_name(msg.desc)
        state = "up" if up and present else "down"
        self.logger.info("dpid %s port %s (%s): %s", datapath.id, msg.desc.port_no, name, state)
        work = self.core.port_changed(datapath.id, msg.desc.port_no, present, up, time.monotonic(), name)
        before, after = self._port_meter_changes(conn)
        conn.enqueue(before)
        self._send(datapath, work)
        conn.enqueue(after)

    @set_ev_cls(ofp_event.EventOFPPacketIn, MAIN_DISPATCHER)
    def packet_in(self, ev) -> None:
        datapath, msg = ev.msg.datapath, ev.msg
        frame = ofmsgs.arp_frame(msg.data)
        if isinstance(frame, Refusal):
            self.core.refused(frame)
            self.logger.debug("dpid %s port %s: packet-in dropped: %s", datapath.id, msg.match["in_port"], frame.value)
            return
        in_port = msg.match["in_port"]
        decision, work = self.core.packet_in(datapath.id, in_port, frame, time.monotonic())
        # Per frame at DEBUG (a storm would flood the log), and nothing built for the line unless DEBUG is on;
        # a frame that changed the switch's flows (a member located or moved) at INFO. A spoof's warning,
        # naming both ports, is among the work's notes.
        level = logging.INFO if work.diff.to_add or work.diff.to_delete else logging.DEBUG
        if self.logger.isEnabledFor(level):
            self.logger.log(
                level, "dpid %s port %s: %s: %s", datapath.id, in_port, describe(frame), decision.verdict.value
            )
        self._send(datapath, work)

    @set_ev_cls(ofp_event.EventOFPErrorMsg, MAIN_DISPATCHER)
    def error(self, ev) -> None:
        """A refused request: its waiter gets no answer; a refused flow change goes to the connection's
        Session, which coalesces resyncs, backs off, and gives up a flow the switch keeps refusing."""
        datapath, msg = ev.msg.datapath, ev.msg
        conn = self._connection(datapath)
        if conn is None:
            return
        waiting = conn.replies.get(msg.xid)
        flow = conn.flow_mods.get(msg.xid)
        if waiting is not None:
            self.logger.error("dpid %s refused xid %s: type %s code %s", datapath.id, msg.xid, msg.type, msg.code)
            waiting.refused = True
            waiting.done.set()
        elif flow is None:
            self.logger.error(
                "dpid %s refused xid %s (no flow change): type %s code %s",
                *(datapath.id, msg.xid),
                *(msg.type, msg.code),
            )
        else:
            self._flow_refused(conn, flow, msg.type, msg.code)

    @set_ev_cls(ofp_event.EventOFPStateChange, DEAD_DISPATCHER)
    def switch_gone(self, ev) -> None:
        conn = self._connection(ev.datapath) if ev.datapath.id is not None else None
        if conn is not None:
            del self.connections[conn.dpid]
            conn.closed()
            self.core.switch_disconnected(conn.dpid)

    # --- the service the REST API calls -----------------------------------------------------------

    @property
    def registry(self) -> Registry:
        return self.core.registry

    @property
    def datapaths(self) -> dict[int, object]:
        """The datapath of each switch connected now."""
        return {dpid: conn.datapath for dpid, conn in self.connections.items()}

    def change(self, mutate: Callable[[Registry], tuple[Registry, T]]) -> tuple[T, list[str]]:
        """Persist first (a 2xx survives kill -9), then push to every switch and wait for its barrier.

        Returns what the change touched and the switches (dpids as 16 hex digits) it is still pending on:
        those that went away before confirming it and are not back and synchronised yet. They get it
        when they reconnect, since every new connection is reconciled against the saved registry.
        """
        with self.change_lock:
            self._wait_synced()
            registry, touched = mutate(self.core.registry)
            check_pins(self.core.fabric, registry)  # no member pinned to an uplink
            self.store.save(registry)
            connections = list(self.connections.values())
            for dpid, work in self.core.set_registry(registry, time.monotonic()).items():
                if dpid in self.connections:  # one that just went away is read back when it reconnects
                    self._send(self.connections[dpid].datapath, work)
            try:
                pending = self._confirm(connections)
            except TimeoutError as error:
                raise TimeoutError(f"{error}; the change is saved and reaches it when it reconnects") from None
            return touched, pending

    @property
    def fabric(self) -> Fabric:
        return self.core.fabric

    def change_fabric(self, mutate: Callable[[Fabric], tuple[Fabric, T]]) -> tuple[T, list[str]]:
        """As change(), for the description of the switches: refused (409) when a new uplink is a port where
        a member is located now; persisted, pushed to every switch (its meters first), confirmed."""
        with self.change_lock:
            self._wait_synced()
            fabric, touched = mutate(self.core.fabric)
            conflicts = self.core.uplink_conflicts(fabric)
            if conflicts:
                raise RegistryError(409, f"uplinks: {'; '.join(conflicts)}")
            self.store.save_fabric(fabric)
            connections = list(self.connections.values())
            for dpid, work in self.core.set_fabric(fabric, time.monotonic()).items():
                conn = self.connections.get(dpid)
                if conn is not None:
                    before, after = self._port_meter_changes(conn)
                    conn.enqueue(before)
                    self._send(conn.datapath, work)
                    conn.enqueue(after)
            try:
                pending = self._confirm(connections)
            except TimeoutError as error:
                raise TimeoutError(f"{error}; the change is saved and reaches it when it reconnects") from None
            return touched, pending

    def switch_views(self) -> list[dict]:
        """Configured switches in their order, then those connected but not described."""
        views = {view["dpid"]: view for view in self.core.switch_views()}
        order = [switch.dpid for switch in self.core.fabric.switches]
        return [views[dpid] for dpid in order] + [view for dpid, view in sorted(views.items()) if dpid not in order]

    def switch_view(self, dpid: int) -> dict | None:
        if self.core.fabric.switch(dpid) is None and dpid not in self.core.switches:
            return None
        return self.core.switch_view(dpid)

    def locations(self, cluster_name: str, member: Member) -> list[dict]:
        return self.core.locations(cluster_name, member)

    def audit(self) -> dict:
        switches = {}
        for dpid, conn in sorted(self.connections.items()):
            datapath = conn.datapath
            try:
                stats = self._request(conn, ofmsgs.flow_stats_request(datapath, app_only=False))
            except ConnectionError:  # went away meanwhile: it is audited once it is back
                continue
            read_back = [ReadBackFlow(ofmsgs.spec_from_stats(datapath, s), s.packet_count, s.byte_count) for s in stats]
            expected = self.core.expected_flows(dpid)
            shared = self.core.shared_ports(dpid)
            report = audit_switch(self.core.registry, expected, read_back, conn.session.given_up(), shared)
            switches[f"{dpid:016x}"] = {"dpid": dpid, **report}
            hub.sleep(0)  # an audit of many switches lets packet-ins and echoes in between switches
        return {"switches": switches}

    def reconcile(self) -> dict:
        """Read every switch back and repair it; flows a switch kept refusing get a fresh set of tries."""
        repaired = {}
        with self.change_lock:
            self._wait_synced()
            for dpid, conn in sorted(self.connections.items()):
                conn.session.retry_all()
                self.core.withhold(dpid, frozenset())
                try:
                    self._sync_meters(conn)
                    work = self._read_back(conn)
                except ConnectionError:  # went away meanwhile: its reconnect reconciles it
                    continue
                repaired[f"{dpid:016x}"] = {"added": len(work.diff.to_add), "deleted": len(work.diff.to_delete)}
            self._confirm(list(self.connections.values()))
        report = self.audit()
        for key, counts in repaired.items():
            report["switches"].get(key, {})["repaired"] = counts
        return report

    def status(self) -> dict:
        status = {"runtime": RUNTIME, **self.core.status(time.monotonic())}
        for switch in status["switches"]:
            conn = self.connections.get(switch["dpid"])
            if conn is not None:
                switch["refused"] = refused_entries(self.core.registry, conn.session.given_up())
                switch["resyncs"] = conn.session.resyncs
                readings = self._meter_readings(conn)
                switch["meters"] = meters_status(conn.meters or (), readings)
        return status

    # --- talking to switches ----------------------------------------------------------------------

    def _connection(self, datapath) -> Connection | None:
        """The current connection of this datapath; None for one that closed or was replaced."""
        conn = self.connections.get(datapath.id)
        return conn if conn is not None and conn.datapath is datapath else None

    def _sync_switch(self, conn: Connection) -> None:
        """Ports first (the spread of ARP needs them), then the read-back that reconciliation starts from,
        then the resyncs the connection's refusals ask for.

        A switch that does not answer is dropped: it reconnects and starts over.
        """
        datapath = conn.datapath
        try:
            ports = self._request(conn, ofmsgs.port_desc_request(datapath))
            self._check_current(conn)
            up = {port.port_no: ofmsgs.port_is_up(datapath, port) for port in ports}
            self.core.switch_connected(conn.dpid, up, {port.port_no: ofmsgs.port_name(port) for port in ports})
            self._sync_meters(conn)
            work = self._read_back(conn)
            conn.synced.set()
            self._request(conn, ofmsgs.barrier_request(datapath))
        except ConnectionError as error:
            self.logger.info("dpid %s: synchronisation abandoned: %s", conn.dpid, error)
            return
        except (TimeoutError, RequestRefused) as error:
            self.logger.error("dpid %s: cannot synchronise (%s); closing the connection", conn.dpid, error)
            datapath.close()
            return
        # What a restart costs the switch: nothing added or deleted when nothing changed (bench/registration).
        self.logger.info(
            "dpid %s: synchronised: %s added, %s deleted", conn.dpid, len(work.diff.to_add), len(work.diff.to_delete)
        )
        self._resync_loop(conn)

    def _resync_loop(self, conn: Connection) -> None:
        """At most one resync at a time on a connection, started only when its Session says so."""
        while conn.alive:
            delay = conn.session.resync_delay(time.monotonic())
            if delay is None:
                conn.resync_kick.clear()
                conn.resync_kick.wait()
            elif delay > 0:
                hub.sleep(delay)
            else:
                conn.session.resync_started(time.monotonic())
                try:
                    work = self._read_back(conn)
                    self._request(conn, ofmsgs.barrier_request(conn.datapath))
                except ConnectionError as error:
                    self.logger.info("dpid %s: resync abandoned: %s", conn.dpid, error)
                    return
                except (TimeoutError, RequestRefused) as error:
                    self.logger.error("dpid %s: cannot resync (%s); closing the connection", conn.dpid, error)
                    conn.datapath.close()
                    return
                finally:
                    conn.session.resync_finished(time.monotonic())
                self.logger.info(
                    "dpid %s: resync %s: %s added, %s deleted",
                    *(conn.dpid, conn.session.resyncs, len(work.diff.to_add), len(work.diff.to_delete)),
                )

    def _read_back(self, conn: Connection) -> Work:
        """Read the app's flows back and enqueue the difference to the expected set (with no yield between
        the check that the connection is current and the enqueue)."""
        with READ_BACK_COLLECTOR:
            installed = self._app_flows(conn)
            self._check_current(conn)
            work = self.core.flows_read_back(conn.dpid, installed, time.monotonic())
            self._send(conn.datapath, work)
        return work

    def _flow_refused(self, conn: Connection, flow: tuple[str, FlowSpec], error_type: int, error_code: int) -> None:
        command, spec = flow
        self.logger.info(
            "dpid %s refused flow %s (table %s priority %s cookie %#x): type %s code %s",
            *(conn.dpid, command, spec.table_id, spec.priority, spec.cookie, error_type, error_code),
        )
        if conn.session.refused(time.monotonic(), command, spec, error_type, error_code):
            self.logger.warning(
                "dpid %s keeps refusing to %s flow table %s priority %s cookie %#x match %s (error type %s code %s):"
                " not sent again on this connection; shown as refused in status and the audit until it"
                " reconnects or POST /nlb/flows/reconcile retries it",
                *(conn.dpid, command, spec.table_id, spec.priority, spec.cookie, dict(spec.match)),
                *(error_type, error_code),
            )
            self.core.withhold(conn.dpid, conn.session.withheld())
        conn.resync_kick.set()

    def _app_flows(self, conn: Connection) -> list:
        """The app's flows as the switch holds them now: what reconciliation starts from."""
        stats = self._request(conn, ofmsgs.flow_stats_request(conn.datapath))
        return [ofmsgs.spec_from_stats(conn.datapath, s) for s in stats]

    def _check_current(self, conn: Connection) -> None:
        if not conn.alive or self.connections.get(conn.dpid) is not conn:
            raise ConnectionError("the switch reconnected or went away")

    def _request(self, conn: Connection, message) -> list:
        """Send a request through the outbox and wait for its whole reply (all parts of a multipart one)."""
        self._check_current(conn)
        waiting = Reply()
        conn.enqueue([Outgoing(message, reply=waiting)])
        try:
            answered = waiting.done.wait(timeout=REPLY_TIMEOUT_SECONDS)
        finally:
            waiting.abandoned = True
            conn.replies.pop(waiting.xid, None)
        if not answered:
            raise TimeoutError(f"dpid {conn.dpid} did not answer {type(message).__name__}")
        if waiting.lost:
            raise ConnectionError(f"dpid {conn.dpid} went away before answering {type(message).__name__}")
        if waiting.refused:
            raise RequestRefused(f"dpid {conn.dpid} refused {type(message).__name__}")
        return waiting.bodies

    def _wait_synced(self) -> None:
        """A switch that just connected gets a change only once its flows are read back, so the
        change is in it when the API answers."""
        for conn in list(self.connections.values()):
            if not conn.synced.wait(timeout=REPLY_TIMEOUT_SECONDS):
                raise TimeoutError(f"dpid {conn.dpid} did not finish connecting; nothing was changed")

    def _confirm(self, connections: list[Connection]) -> list[str]:
        """Wait for each switch's barrier; the switches that went away instead, and are not back and
        synchronised within RECONNECT_WAIT_SECONDS, are returned as pending (dpids in hex)."""
        pending = []
        for conn in connections:
            try:
                self._request(conn, ofmsgs.barrier_request(conn.datapath))
            except ConnectionError:
                if not self._back_and_synced(conn.dpid):
                    pending.append(f"{conn.dpid:016x}")
        return pending

    def _back_and_synced(self, dpid: int) -> bool:
        """Whether a switch that lost its connection is connected again and reconciled (within a wait)."""
        deadline = time.monotonic() + RECONNECT_WAIT_SECONDS
        while time.monotonic() < deadline:
            conn = self.connections.get(dpid)
            if conn is not None and conn.synced.wait(timeout=max(0.0, deadline - time.monotonic())) and conn.alive:
                try:
                    self._request(conn, ofmsgs.barrier_request(conn.datapath))
                    return True
                except ConnectionError:
                    continue
            hub.sleep(0.1)
        return False

    def _send(self, datapath, work: Work) -> None:
        """Append a computed change to the switch's outbox; the sender greenthread sends it in order.

        Work for a connection that is gone is dropped; if the core already counted it installed there
        (an event of a replaced connection), the current connection is read back to repair it.
        """
        for note in work.notes:
            log = {Level.WARNING: self.logger.warning, Level.INFO: self.logger.info}.get(note.level, self.logger.debug)
            log("%s", note.text)
        if not work.other_switches and all(frame.dpid is None for frame in work.frames):  # the common case
            self._send_to(datapath, work.diff, work.frames)
            return
        for dpid, (diff, frames) in per_switch(datapath.id, work).items():
            conn = self.connections.get(dpid)
            if dpid == datapath.id:
                self._send_to(datapath, diff, frames)
            elif conn is not None:  # the core computed it for the switch's current connection
                self._send_to(conn.datapath, diff, frames)

    def _send_to(self, datapath, diff: FlowDiff, frames: Iterable[FrameOut]) -> None:
        conn = self.connections.get(datapath.id)
        if conn is None:
            return
        if conn.datapath is not datapath:
            if diff.to_add or diff.to_delete:
                conn.session.want_resync(time.monotonic())
                conn.resync_kick.set()
            return
        conn.enqueue(outgoing(datapath, diff, frames))

    def _drain(self, conn: Connection) -> None:
        """The connection's one sender: xids are given at sending, and each flow-mod's xid remembered,
        so an error names the flow it refused.

        What waits in the outbox goes out together: up to SEND_BATCH messages serialised here and handed
        to the framework as one buffer (Datapath.send), which its socket writer sends in one write. One
        queue entry and one write for a burst of answers, not one each; the order stays the outbox's.
        """
        datapath = conn.datapath
        while conn.alive:
            if not conn.outbox:
                conn.wakeup.clear()
                conn.wakeup.wait()
                continue
            buffers = []
            for _ in range(min(SEND_BATCH, len(conn.outbox))):
                item = conn.outbox.popleft()
                xid = datapath.set_xid(item.message)
                if item.reply is not None and not item.reply.abandoned:
                    conn.replies[xid] = item.reply
                    item.reply.xid = xid
                if item.flow is not None:
                    conn.flow_mods[xid] = item.flow
                try:
                    item.message.serialize()
                except Exception:  # a message that does not serialise is a bug; the rest of the queue still goes
                    self.logger.exception("dpid %s: cannot send %s", conn.dpid, type(item.message).__name__)
                    continue
                buffers.append(item.message.buf)
            if buffers and not datapath.send(b"".join(buffers)):  # the framework is closing the connection
                conn.closed()

    # --- admission control: the punt meters (flows/meters.py) -----------------------------------------

    def _sync_meters(self, conn: Connection) -> None:
        """Reconcile the app's meters by difference before the flows: a punt flow needs its meter in the
        switch, and deleting a stale meter also deletes the flows that use it. The meter-mods go through
        the outbox, so they reach the switch before the flow-mods computed after them."""
        configs = self._request(conn, ofmsgs.meter_config_request(conn.datapath))
        installed = [ofmsgs.meter_from_config(conn.datapath, config) for config in configs]
        self._check_current(conn)
        state = self.core.switches[conn.dpid]
        expected = expected_meters(self.core.settings, state.ports, state.uplinks)
        messages = ofmsgs.meter_messages(conn.datapath, reconcile_meters(expected, installed))
        conn.enqueue([Outgoing(message) for message in messages])
        conn.meters = frozenset(expected)

    def _port_meter_changes(self, conn: Connection) -> tuple[list[Outgoing], list[Outgoing]]:
        """A port came or went: (messages before its flows, messages after them). A new port's meter is
        added before the flow that uses it; a gone port's meter is deleted after its flow."""
        state = self.core.switches.get(conn.dpid)
        if conn.meters is None or state is None:  # not synchronised yet: the sync does it
            return [], []
        expected = expected_meters(self.core.settings, state.ports, state.uplinks)
        before, after = around_flows(reconcile_meters(expected, conn.meters))
        conn.meters = frozenset(expected)
        return (
            [Outgoing(message) for message in ofmsgs.meter_messages(conn.datapath, before)],
            [Outgoing(message) for message in ofmsgs.meter_messages(conn.datapath, after)],
        )

    def _meter_readings(self, conn: Connection) -> list[MeterReading]:
        """The meters' counters now; none from a switch that goes away meanwhile."""
        try:
            stats = self._request(conn, ofmsgs.meter_stats_request(conn.datapath))
        except (ConnectionError, RequestRefused):
            return []
        return [ofmsgs.meter_reading(entry) for entry in stats]

    def _watch_meters(self) -> None:
        """Log once when a meter starts dropping (a storm on its port), and once when it stops."""
        while True:
            hub.sleep(METER_WATCH_SECONDS)
            for conn in list(self.connections.values()):
                if conn.meters is None:
                    continue
                try:
                    readings = self._meter_readings(conn)
                except TimeoutError:
                    continue
                conn.drop_watch, started, stopped = watch_drops(conn.drop_watch, readings)
                for meter_id in started:
                    self.logger.warning(
                        "dpid %s: meter %#x (%s) is dropping punted frames: more than its rate arrives",
                        *(conn.dpid, meter_id, meter_target(meter_id)),
                    )
                for meter_id in stopped:
                    self.logger.info(
                        "dpid %s: meter %#x (%s) stopped dropping", conn.dpid, meter_id, meter_target(meter_id)
                    )

    def _count_traffic(self) -> None:
        """Switch mode: read the counters of the flows only a member's own frames match, so that a member the
        switch serves without packet-ins is known to be there and not probed as a quiet one."""
        while True:
            hub.sleep(self.core.settings.locations.idle_seconds / COUNTS_PER_IDLE_PERIOD)
            if not self.core.counts_traffic:
                continue
            for conn in list(self.connections.values()):
                try:
                    counters = [
                        (ofmsgs.spec_from_stats(conn.datapath, entry), entry.packet_count)
                        for purpose in (Purpose.ARP_SENDER, Purpose.SOURCE_MASKING)
                        for entry in self._request(conn, ofmsgs.purpose_stats_request(conn.datapath, purpose))
                    ]
                except (ConnectionError, RequestRefused, TimeoutError):
                    continue
                self.core.counters_read(conn.dpid, counters, time.monotonic())

    def _tick(self) -> None:
        """The core's periodic work: moves whose old port stayed silent, checks of quiet members, and
        probes for members no switch has heard from, so a peer's first packet arrives."""
        while True:
            hub.sleep(TICK_SECONDS)
            for dpid, datapath in list(self.datapaths.items()):
                self._send(datapath, self.core.tick(dpid, time.monotonic()))
