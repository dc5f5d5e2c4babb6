"""nlbflow: unicast-mode NLB members reach each other through the fabric.

Load with `osken-manager ryu_apps/nlbflow.py` or `ryu-manager ryu_apps/nlbflow.py`. Each handler
hands one event to NlbCore (flows/core.py) and sends back what it returns.
"""

from __future__ import annotations

import os

from flows.config import ConfigError, load_config
from flows.core import NlbCore, Work
from flows.model import Config
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

PROBE_INTERVAL_SECONDS = 5.0

cfg.CONF.register_opts(
    [cfg.StrOpt("config", default=None, help="nlbflow YAML config; overrides the NLBFLOW_CONFIG variable")],
    group="nlbflow",
)


def config_path() -> str | None:
    """The `[nlbflow] config` option of a --config-file wins over the NLBFLOW_CONFIG variable."""
    return cfg.CONF.nlbflow.config or os.environ.get("NLBFLOW_CONFIG") or None


class NlbFlow(BaseApp):
    OFP_VERSIONS = (ofproto_v1_3.OFP_VERSION,)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        path = config_path()
        try:
            config = load_config(path) if path else Config()
        except ConfigError as error:  # a bad config stops the start, with file, key and problem named
            self.logger.error("nlbflow: bad config: %s", error)
            raise SystemExit(2) from None
        self.core = NlbCore(config)
        self.datapaths: dict[int, object] = {}
        self.multipart: dict[tuple[int, int], list] = {}  # (dpid, xid) -> bodies so far
        clusters = ", ".join(f"{c.name} ({len(c.members)} members, {c.arp.value})" for c in config.registry.clusters)
        self.logger.info("nlbflow on %s, config %s: %s", RUNTIME, path or "(none)", clusters or "no clusters")
        hub.spawn(self._probe_unlocated)

    @set_ev_cls(ofp_event.EventOFPSwitchFeatures, CONFIG_DISPATCHER)
    def switch_features(self, ev) -> None:
        datapath = ev.msg.datapath
        self.datapaths[datapath.id] = datapath
        datapath.send_msg(ofmsgs.port_desc_request(datapath))

    @set_ev_cls(ofp_event.EventOFPPortDescStatsReply, MAIN_DISPATCHER)
    def port_desc(self, ev) -> None:
        bodies = self._complete(ev)
        if bodies is not None:
            datapath = ev.msg.datapath
            self.core.switch_connected(datapath.id, [port.port_no for port in bodies])
            datapath.send_msg(ofmsgs.app_flow_stats_request(datapath))

    @set_ev_cls(ofp_event.EventOFPFlowStatsReply, MAIN_DISPATCHER)
    def flow_stats(self, ev) -> None:
        bodies = self._complete(ev)
        if bodies is not None:
            datapath = ev.msg.datapath
            installed = [ofmsgs.spec_from_stats(datapath, stats) for stats in bodies]
            self._send(datapath, self.core.flows_read_back(datapath.id, installed))

    @set_ev_cls(ofp_event.EventOFPPortStatus, MAIN_DISPATCHER)
    def port_status(self, ev) -> None:
        datapath, msg = ev.msg.datapath, ev.msg
        present = msg.reason != datapath.ofproto.OFPPR_DELETE
        self._send(datapath, self.core.port_changed(datapath.id, msg.desc.port_no, present))

    @set_ev_cls(ofp_event.EventOFPPacketIn, MAIN_DISPATCHER)
    def packet_in(self, ev) -> None:
        datapath, msg = ev.msg.datapath, ev.msg
        frame = ofmsgs.arp_frame(msg.data)
        if frame is None:
            self.core.counters["packet_in_not_arp"] += 1
            self.logger.warning("dpid %s: unexpected packet-in that is not ARP", datapath.id)
            return
        decision, work = self.core.packet_in(datapath.id, msg.match["in_port"], frame)
        self.logger.info(
            "dpid %s port %s: ARP %s %s (%s) -> %s: %s",
            datapath.id,
            msg.match["in_port"],
            "request" if frame.op == 1 else "reply",
            frame.spa,
            frame.sha,
            frame.tpa,
            decision.verdict.value,
        )
        self._send(datapath, work)

    @set_ev_cls(ofp_event.EventOFPStateChange, DEAD_DISPATCHER)
    def switch_gone(self, ev) -> None:
        if ev.datapath.id is not None and self.datapaths.get(ev.datapath.id) is ev.datapath:
            del self.datapaths[ev.datapath.id]
            self.core.switch_disconnected(ev.datapath.id)

    def _complete(self, ev) -> list | None:
        """Multipart replies may span messages; return all bodies once the last one arrived."""
        msg = ev.msg
        key = (msg.datapath.id, msg.xid)
        bodies = self.multipart.pop(key, []) + list(msg.body)
        if msg.flags & msg.datapath.ofproto.OFPMPF_REPLY_MORE:
            self.multipart[key] = bodies
            return None
        return bodies

    def _send(self, datapath, work: Work) -> None:
        for message in ofmsgs.work_messages(datapath, work):
            datapath.send_msg(message)

    def _probe_unlocated(self) -> None:
        """Keep looking for members no switch has heard from, so a peer's first packet arrives."""
        while True:
            hub.sleep(PROBE_INTERVAL_SECONDS)
            for dpid, datapath in list(self.datapaths.items()):
                self._send(datapath, Work(frames=self.core.unlocated_probes(dpid)))
