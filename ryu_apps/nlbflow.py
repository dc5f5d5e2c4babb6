"""nlbflow: unicast-mode NLB members reach each other through the fabric.

Load with `osken-manager ryu_apps/nlbflow.py` or `ryu-manager ryu_apps/nlbflow.py`. Each handler
hands one event to NlbCore (flows/core.py) and sends back what it returns; the REST API
(ryu_apps/rest.py) changes the registry through the same core.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import replace
from typing import TypeVar

from flows.arp import ARP_REQUEST
from flows.audit import ReadBackFlow, audit_switch
from flows.config import ConfigError, load_config, read_token_file
from flows.core import NlbCore, Work
from flows.locations import Level
from flows.model import Config, Member, Registry
from flows.state import beside_config, load_state, save_state, startup_registry, state_path
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
from ryu_apps.rest import RestApi

T = TypeVar("T")
TICK_SECONDS = 1.0  # confirmation timeouts and re-probes (flows/locations.py) are checked this often
REPLY_TIMEOUT_SECONDS = 10.0

cfg.CONF.register_opts(
    [cfg.StrOpt("config", default=None, help="nlbflow YAML config; overrides the NLBFLOW_CONFIG variable")],
    group="nlbflow",
)


def config_path() -> str | None:
    """The `[nlbflow] config` option of a --config-file wins over the NLBFLOW_CONFIG variable."""
    return cfg.CONF.nlbflow.config or os.environ.get("NLBFLOW_CONFIG") or None


class Reply:
    """A request's reply bodies, filled by the reply handlers while the requester waits."""

    def __init__(self) -> None:
        self.bodies: list = []
        self.refused = False
        self.done = hub.Event()


class NlbFlow(BaseApp):
    OFP_VERSIONS = (ofproto_v1_3.OFP_VERSION,)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        path = config_path()
        try:  # a bad config or state file stops the start, with file, key and problem named
            config = load_config(path) if path else Config()
            self.state_file = state_path(path, config.controller.state_file)
            saved = load_state(self.state_file)
            token_file = config.controller.token_file
            token = read_token_file(beside_config(path, token_file)) if token_file else None
        except ConfigError as error:
            self.logger.error("nlbflow: %s", error)
            raise SystemExit(2) from None
        registry, config_ignored = startup_registry(config.registry, saved)
        if saved is None:
            save_state(self.state_file, registry)
        self.core = NlbCore(replace(config, registry=registry))
        self.datapaths: dict[int, object] = {}
        self.synced: dict[int, object] = {}  # dpid -> Event set once the switch's flows were read back
        self.replies: dict[tuple[int, int], Reply] = {}
        self.change_lock = hub.BoundedSemaphore(1)
        source = "state file" if saved is not None else "config (first start)"
        clusters = ", ".join(f"{c.name} ({c.mode.value}, {len(c.members)} members)" for c in self.registry.clusters)
        self.logger.info(
            "nlbflow on %s, registry from %s %s: %s", RUNTIME, source, self.state_file, clusters or "empty"
        )
        if config_ignored:
            self.logger.warning("nlbflow: the state file holds the registry; clusters in %s are not applied", path)
        listen = (config.controller.rest_host, config.controller.rest_port)
        try:
            self.rest_server = hub.WSGIServer(listen, RestApi(self, token))
        except OSError as error:
            self.logger.error("nlbflow: cannot serve the REST API on %s:%s: %s", *listen, error.strerror)
            raise SystemExit(2) from None
        hub.spawn(self.rest_server.serve_forever)
        hub.spawn(self._tick)
        self.logger.info("nlbflow REST API on http://%s:%s/nlb/ (token %s)", *listen, "required" if token else "off")

    # --- events -----------------------------------------------------------------------------------

    @set_ev_cls(ofp_event.EventOFPSwitchFeatures, CONFIG_DISPATCHER)
    def switch_features(self, ev) -> None:
        self.datapaths[ev.msg.datapath.id] = ev.msg.datapath
        self.synced[ev.msg.datapath.id] = hub.Event()
        hub.spawn(self._sync_switch, ev.msg.datapath)

    @set_ev_cls(
        [ofp_event.EventOFPPortDescStatsReply, ofp_event.EventOFPFlowStatsReply, ofp_event.EventOFPBarrierReply],
        MAIN_DISPATCHER,
    )
    def reply(self, ev) -> None:
        msg = ev.msg
        waiting = self.replies.get((msg.datapath.id, msg.xid))
        if waiting is not None:
            waiting.bodies += getattr(msg, "body", None) or []
            if not getattr(msg, "flags", 0) & msg.datapath.ofproto.OFPMPF_REPLY_MORE:
                waiting.done.set()

    @set_ev_cls(ofp_event.EventOFPPortStatus, MAIN_DISPATCHER)
    def port_status(self, ev) -> None:
        datapath, msg = ev.msg.datapath, ev.msg
        present = msg.reason != datapath.ofproto.OFPPR_DELETE
        up = ofmsgs.port_is_up(datapath, msg.desc)
        self.logger.info("dpid %s port %s: %s", datapath.id, msg.desc.port_no, "up" if up and present else "down")
        self._send(datapath, self.core.port_changed(datapath.id, msg.desc.port_no, present, up, time.monotonic()))

    @set_ev_cls(ofp_event.EventOFPPacketIn, MAIN_DISPATCHER)
    def packet_in(self, ev) -> None:
        datapath, msg = ev.msg.datapath, ev.msg
        frame = ofmsgs.arp_frame(msg.data)
        if frame is None:
            self.core.not_arp()
            self.logger.warning("dpid %s: unexpected packet-in that is not ARP", datapath.id)
            return
        decision, work = self.core.packet_in(datapath.id, msg.match["in_port"], frame, time.monotonic())
        self.logger.info(  # a spoof's warning, naming both ports, is among the work's notes
            "dpid %s port %s: ARP %s %s (%s) -> %s: %s",
            *(datapath.id, msg.match["in_port"], "request" if frame.op == ARP_REQUEST else "reply"),
            *(frame.spa, frame.sha, frame.tpa, decision.verdict.value),
        )
        self._send(datapath, work)

    @set_ev_cls(ofp_event.EventOFPErrorMsg, MAIN_DISPATCHER)
    def error(self, ev) -> None:
        """A refused request: its waiter gets no answer, and a refused flow change is repaired by reading
        the switch back."""
        datapath, msg = ev.msg.datapath, ev.msg
        self.logger.error("dpid %s refused xid %s: type %s code %s", datapath.id, msg.xid, msg.type, msg.code)
        waiting = self.replies.get((datapath.id, msg.xid))
        if waiting is not None:
            waiting.refused = True
            waiting.done.set()
        elif datapath.id in self.synced:
            hub.spawn(self._sync_switch, datapath)

    @set_ev_cls(ofp_event.EventOFPStateChange, DEAD_DISPATCHER)
    def switch_gone(self, ev) -> None:
        if ev.datapath.id is not None and self.datapaths.get(ev.datapath.id) is ev.datapath:
            del self.datapaths[ev.datapath.id]
            del self.synced[ev.datapath.id]
            self.core.switch_disconnected(ev.datapath.id)

    # --- the service the REST API calls -----------------------------------------------------------

    @property
    def registry(self) -> Registry:
        return self.core.registry

    def change(self, mutate: Callable[[Registry], tuple[Registry, T]]) -> T:
        """Persist first (a 2xx survives kill -9), then push to every switch and wait for its barrier."""
        with self.change_lock:
            self._wait_synced()
            registry, touched = mutate(self.core.registry)
            save_state(self.state_file, registry)
            for dpid, work in self.core.set_registry(registry, time.monotonic()).items():
                if dpid in self.datapaths:  # one that just went away is read back when it reconnects
                    self._send(self.datapaths[dpid], work)
            try:
                self._wait_barriers()
            except TimeoutError as error:
                raise TimeoutError(f"{error}; the change is saved and reaches it when it reconnects") from None
            return touched

    def locations(self, cluster_name: str, member: Member) -> list[dict]:
        return self.core.locations(cluster_name, member)

    def audit(self) -> dict:
        switches = {}
        for dpid, datapath in sorted(self.datapaths.items()):
            stats = self._request(datapath, ofmsgs.flow_stats_request(datapath, app_only=False))
            read_back = [ReadBackFlow(ofmsgs.spec_from_stats(datapath, s), s.packet_count, s.byte_count) for s in stats]
            expected = self.core.expected_flows(dpid)
            report = audit_switch(self.core.registry, expected, read_back, self.core.shared_ports(dpid))
            switches[f"{dpid:016x}"] = {"dpid": dpid, **report}
        return {"switches": switches}

    def reconcile(self) -> dict:
        repaired = {}
        with self.change_lock:
            self._wait_synced()
            for dpid, datapath in sorted(self.datapaths.items()):
                work = self.core.flows_read_back(dpid, self._app_flows(datapath), time.monotonic())
                self._send(datapath, work)
                repaired[f"{dpid:016x}"] = {"added": len(work.diff.to_add), "deleted": len(work.diff.to_delete)}
            self._wait_barriers()
        report = self.audit()
        for key, counts in repaired.items():
            report["switches"].get(key, {})["repaired"] = counts
        return report

    def status(self) -> dict:
        return {"runtime": RUNTIME, **self.core.status(time.monotonic())}

    # --- talking to switches ----------------------------------------------------------------------

    def _sync_switch(self, datapath) -> None:
        """Ports first (the spread of ARP needs them), then the read-back that reconciliation starts from.

        A switch that does not answer, or is replaced meanwhile, is dropped: it reconnects and starts over.
        """
        try:
            ports = self._request(datapath, ofmsgs.port_desc_request(datapath))
            self._check_current(datapath)
            self.core.switch_connected(datapath.id, {p.port_no: ofmsgs.port_is_up(datapath, p) for p in ports})
            installed = self._app_flows(datapath)
            self._check_current(datapath)
        except (TimeoutError, ConnectionError) as error:
            self.logger.error("dpid %s: cannot synchronise (%s); closing the connection", datapath.id, error)
            datapath.close()
            return
        self._send(datapath, self.core.flows_read_back(datapath.id, installed, time.monotonic()))
        self.synced[datapath.id].set()

    def _app_flows(self, datapath) -> list:
        """The app's flows as the switch holds them now: what reconciliation starts from."""
        stats = self._request(datapath, ofmsgs.flow_stats_request(datapath))
        return [ofmsgs.spec_from_stats(datapath, s) for s in stats]

    def _check_current(self, datapath) -> None:
        if self.datapaths.get(datapath.id) is not datapath:
            raise ConnectionError("the switch reconnected or went away")

    def _request(self, datapath, message) -> list:
        """Send a request and wait for its whole reply (all parts of a multipart one)."""
        datapath.set_xid(message)
        key = (datapath.id, message.xid)
        self.replies[key] = waiting = Reply()
        try:
            datapath.send_msg(message)
            if not waiting.done.wait(timeout=REPLY_TIMEOUT_SECONDS):
                raise TimeoutError(f"dpid {datapath.id} did not answer {type(message).__name__}")
            if waiting.refused:
                raise ConnectionError(f"dpid {datapath.id} refused {type(message).__name__}")
            return waiting.bodies
        finally:
            del self.replies[key]

    def _wait_synced(self) -> None:
        """A switch that just connected gets a change only once its flows are read back, so the
        change is in it when the API answers."""
        for dpid, synced in list(self.synced.items()):
            if dpid in self.datapaths and not synced.wait(timeout=REPLY_TIMEOUT_SECONDS):
                raise TimeoutError(f"dpid {dpid} did not finish connecting; nothing was changed")

    def _wait_barriers(self) -> None:
        for datapath in list(self.datapaths.values()):
            self._request(datapath, ofmsgs.barrier_request(datapath))

    def _send(self, datapath, work: Work) -> None:
        for note in work.notes:
            log = {Level.WARNING: self.logger.warning, Level.INFO: self.logger.info}.get(note.level, self.logger.debug)
            log("%s", note.text)
        for message in ofmsgs.work_messages(datapath, work):
            datapath.send_msg(message)

    def _tick(self) -> None:
        """The core's periodic work: moves whose old port stayed silent, checks of quiet members, and
        probes for members no switch has heard from, so a peer's first packet arrives."""
        while True:
            hub.sleep(TICK_SECONDS)
            for dpid, datapath in list(self.datapaths.items()):
                self._send(datapath, self.core.tick(dpid, time.monotonic()))
