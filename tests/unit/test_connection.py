"""The app's control-path bookkeeping, driven without a switch: the app object with the real core, a
stand-in datapath that records what it is sent, and the framework's own message classes for replies.

It shows the ordering of one connection's outbox when sending blocks, that replies and syncs of a
dead connection never reach its successor, and what a refused flow-mod does."""

from __future__ import annotations

import gc
import logging
import struct
from dataclasses import dataclass, field

import pytest

from flows.core import NlbCore
from flows.flowspec import FlowDiff
from flows.frames import punted_arp
from flows.session import FLOW_ADD, FLOW_DELETE, SessionPolicy
from ryu_apps import nlbflow, ofmsgs
from ryu_apps.compat import hub, ofproto_v1_3, ofproto_v1_3_parser
from ryu_apps.nlbflow import Connection, NlbFlow, Outgoing, Reply, outgoing
from tests.unit.example_cluster import MEMBER_IPS, MEMBER_PORT, SWITCH_PORTS, request, web_config

PARSER = ofproto_v1_3_parser
OFP_HEADER = struct.Struct("!BBHI")  # version, type, length, xid


@dataclass
class RecordingDatapath:
    """What the app reads of a datapath, and every message sent, in order; sending can be made to block.

    The app hands the framework whole buffers (Datapath.send); each is split at the OpenFlow headers into
    the messages it carries, found again by their xids, so a test sees both the messages and the writes.
    """

    id: int = 1
    ofproto = ofproto_v1_3
    ofproto_parser = ofproto_v1_3_parser
    xid: int = 0
    sent: list = field(default_factory=list)
    writes: list = field(default_factory=list)  # per buffer handed to the framework, the messages in it
    given_xids: dict = field(default_factory=dict)
    block_first_send: bool = False

    def set_xid(self, message) -> int:
        self.xid += 1
        message.set_xid(self.xid)
        self.given_xids[self.xid] = message
        return self.xid

    def send(self, buf: bytes, close_socket: bool = False) -> bool:
        if self.block_first_send and not self.sent:
            hub.sleep(0.05)  # the framework's send queue is full: this greenthread yields here
        messages, offset = [], 0
        while offset < len(buf):
            _, _, length, xid = OFP_HEADER.unpack_from(buf, offset)
            message = self.given_xids[xid]
            assert bytes(buf[offset : offset + length]) == bytes(message.buf), "whole messages, as serialised"
            messages.append(message)
            offset += length
        self.writes.append(messages)
        self.sent += messages
        return True


@dataclass
class Event:
    msg: object = None
    datapath: object = None


def app_with_core() -> NlbFlow:
    app = NlbFlow.__new__(NlbFlow)  # no manager, no REST server: only what the handlers use
    app.core = NlbCore(web_config(pinned=True))
    app.connections = {}
    app.session_policy = SessionPolicy(give_up_after=3, first_backoff=0.01, max_backoff=0.04)
    app.change_lock = hub.BoundedSemaphore(1)
    app.logger = logging.getLogger("nlbflow-test")
    return app


def connect(app: NlbFlow, datapath: RecordingDatapath) -> Connection:
    app.switch_features(Event(msg=Event(datapath=datapath)))
    return app.connections[datapath.id]


READS = (PARSER.OFPPortDescStatsRequest, PARSER.OFPMeterConfigStatsRequest, PARSER.OFPFlowStatsRequest)
BARRIERS = (PARSER.OFPBarrierRequest,)


def answer(app: NlbFlow, datapath: RecordingDatapath, kinds: tuple = READS + BARRIERS) -> None:
    """For a while, answer every request of these kinds the app sends: the switch's ports, an empty
    meter and flow read-back, barriers (a switch answers a barrier only after the errors of what came before it)."""
    for _ in range(20):
        hub.sleep(0.01)
        for message in [m for m in datapath.sent if isinstance(m, kinds) and not getattr(m, "answered", False)]:
            message.answered = True
            if isinstance(message, PARSER.OFPPortDescStatsRequest):
                ports = [port(number) for number in SWITCH_PORTS]
                app.reply(Event(msg=reply_to(message, PARSER.OFPPortDescStatsReply(datapath, body=ports))))
            elif isinstance(message, PARSER.OFPMeterConfigStatsRequest):
                app.reply(Event(msg=reply_to(message, PARSER.OFPMeterConfigStatsReply(datapath, body=[]))))
            elif isinstance(message, PARSER.OFPFlowStatsRequest):
                app.reply(Event(msg=reply_to(message, PARSER.OFPFlowStatsReply(datapath, body=[]))))
            else:
                app.reply(Event(msg=reply_to(message, PARSER.OFPBarrierReply(datapath))))


def reply_to(request, reply):
    reply.xid = request.xid
    reply.flags = 0
    return reply


def port(number: int):
    return PARSER.OFPPort(number, "02:00:00:00:00:01", f"p{number}", 0, 0, 0, 0, 0, 0, 0, 0)


def flow_mods(datapath: RecordingDatapath) -> list:
    return [m for m in datapath.sent if isinstance(m, PARSER.OFPFlowMod)]


def test_outgoing_tags_every_flow_mod_with_its_flow_and_keeps_the_order_of_work_messages():
    core = NlbCore(web_config(pinned=True))
    core.switch_connected(1, dict.fromkeys(SWITCH_PORTS, True))
    expected = core.flows_read_back(1, [], 0.0).diff.to_add
    items = outgoing(RecordingDatapath(), FlowDiff(to_add=expected[:2], to_delete=expected[2:3]), ())
    tags = [(FLOW_ADD, expected[0]), (FLOW_ADD, expected[1]), (FLOW_DELETE, expected[2]), None]
    assert [item.flow for item in items] == tags
    assert isinstance(items[-1].message, PARSER.OFPBarrierRequest)


def test_a_change_computed_later_never_reaches_the_switch_first_even_when_sending_blocks():
    app = app_with_core()
    datapath = RecordingDatapath(block_first_send=True)
    conn = Connection(datapath, app.session_policy)
    app.connections[1] = conn
    hub.spawn(app._drain, conn)
    app.core.switch_connected(1, dict.fromkeys(SWITCH_PORTS, True))
    sync = app.core.flows_read_back(1, [], 0.0)
    app._send(datapath, sync)
    changes = []

    def port_down() -> None:  # while the sender is blocked in send, another greenthread changes a port
        changes.append(app.core.port_changed(1, 1, present=True, up=False, now=0.0))
        app._send(datapath, changes[0])

    hub.spawn(port_down)
    hub.sleep(0.3)
    assert changes[0].diff.to_add or changes[0].diff.to_delete
    expected = [summary(item.message) for item in outgoing(datapath, sync.diff, sync.frames)]
    expected += [summary(item.message) for item in outgoing(datapath, changes[0].diff, changes[0].frames)]
    assert [summary(message) for message in datapath.sent] == expected
    assert [message.xid for message in datapath.sent] == list(range(1, len(expected) + 1)), "xids in sending order"
    conn.closed()


def summary(message) -> tuple:
    return (type(message).__name__, getattr(message, "command", None), getattr(message, "cookie", None))


def flow_key(message) -> tuple:
    return (message.cookie, message.table_id, message.priority, tuple(sorted(message.match.items())))


def test_a_refused_flow_is_given_up_after_three_refusals_with_one_warning_and_no_resync_loop(caplog):
    app = app_with_core()
    datapath = RecordingDatapath()
    conn = connect(app, datapath)
    answer(app, datapath, READS)
    assert conn.synced.is_set()
    refused = flow_key(flow_mods(datapath)[0])
    sent_before = len(flow_mods(datapath))
    with caplog.at_level(logging.INFO, logger="nlbflow-test"):
        for _ in range(5):  # each refusal wants a resync, which re-adds the flow, refused again until given up
            error = PARSER.OFPErrorMsg(datapath, type_=5, code=1, data=b"")
            error.xid = [m for m in flow_mods(datapath) if flow_key(m) == refused][-1].xid
            app.error(Event(msg=error))
            answer(app, datapath, BARRIERS)
            answer(app, datapath, READS)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "keeps refusing" in r.getMessage()]
    assert len(warnings) == 1
    (given_up,) = conn.session.given_up()
    assert (given_up.error_type, given_up.error_code, given_up.count) == (5, 1, 3)
    readds = [m for m in flow_mods(datapath)[sent_before:] if flow_key(m) == refused]
    assert len(readds) == 2, "two resyncs re-added it (refusals 2 and 3), then it was withheld"
    assert conn.session.resyncs == 2
    assert app.core.switches[1].withheld == {given_up.flow}
    conn.closed()


def test_an_error_for_every_flow_mod_at_once_starts_one_resync_not_one_each():
    app = app_with_core()
    datapath = RecordingDatapath()
    conn = connect(app, datapath)
    answer(app, datapath, READS)
    sent = flow_mods(datapath)
    assert len(sent) > 10
    for message in sent:  # the switch refuses the whole first push
        error = PARSER.OFPErrorMsg(datapath, type_=5, code=1, data=b"")
        error.xid = message.xid
        app.error(Event(msg=error))
    answer(app, datapath, BARRIERS)
    answer(app, datapath, READS)
    answer(app, datapath, BARRIERS)
    flow_reads = [m for m in datapath.sent if isinstance(m, PARSER.OFPFlowStatsRequest)]
    assert len(flow_reads) == 2, "the first read-back, then one resync"
    assert conn.session.resyncs == 1
    assert len(flow_mods(datapath)) == 2 * len(sent), "the resync sent each refused flow once more"
    conn.closed()


def test_replies_and_syncs_of_a_dead_connection_never_reach_the_new_one():
    app = app_with_core()
    old_datapath, new_datapath = RecordingDatapath(), RecordingDatapath()
    old = connect(app, old_datapath)
    hub.sleep(0.02)  # the old connection's sync asked for the ports, and waits
    (port_request,) = old_datapath.sent
    new = connect(app, new_datapath)  # the switch reconnected
    assert not old.alive and app.connections[1] is new
    hub.sleep(0.02)
    late = reply_to(port_request, PARSER.OFPPortDescStatsReply(old_datapath, body=[port(1)]))
    app.reply(Event(msg=late))  # the dead connection's answer, arriving late
    hub.sleep(0.02)
    assert not new.synced.is_set(), "the old sync gave up; only the new one's read-back marks it synced"
    assert 1 not in app.core.switches, "nothing of the old connection reached the core"
    answer(app, new_datapath)
    assert new.synced.is_set() and app.core.switches[1].installed is not None
    new.closed()


def test_closing_a_connection_wakes_every_waiter_sent_or_not():
    conn = Connection(RecordingDatapath(), SessionPolicy())
    sent, unsent = Reply(), Reply()
    conn.replies[7] = sent

    conn.enqueue([Outgoing(PARSER.OFPBarrierRequest(conn.datapath), reply=unsent)])
    conn.closed()
    assert sent.lost and unsent.lost and sent.done.is_set() and unsent.done.is_set()
    conn.enqueue([Outgoing(PARSER.OFPBarrierRequest(conn.datapath))])
    assert not conn.outbox, "a closed connection takes nothing more"


def test_a_barrier_reply_forgets_the_flow_mods_sent_before_it():
    conn = Connection(RecordingDatapath(), SessionPolicy())
    conn.flow_mods.update({3: ("add", None), 4: ("add", None), 9: ("add", None)})
    conn.answered_through(5)
    assert list(conn.flow_mods) == [9]


@pytest.fixture(autouse=True)
def let_closed_connections_wind_down():
    yield
    hub.sleep(0.05)


def test_a_request_given_up_before_it_left_leaves_no_waiter_behind(monkeypatch):
    monkeypatch.setattr(nlbflow, "REPLY_TIMEOUT_SECONDS", 0.01)
    app = app_with_core()
    datapath = RecordingDatapath()
    conn = Connection(datapath, app.session_policy)
    app.connections[1] = conn
    with pytest.raises(TimeoutError, match="did not answer OFPBarrierRequest"):
        app._request(conn, PARSER.OFPBarrierRequest(datapath))  # no sender runs yet: it never left
    hub.spawn(app._drain, conn)
    hub.sleep(0.02)
    assert len(datapath.sent) == 1 and conn.replies == {}
    conn.closed()


def test_a_switch_gone_mid_request_fails_its_waiter_at_once_and_only_its_own_connection_goes():
    app = app_with_core()
    datapath = RecordingDatapath()
    conn = connect(app, datapath)
    answer(app, datapath)
    assert app.core.switches[1].installed is not None
    outcome = []

    def audit() -> None:
        try:
            app._request(conn, PARSER.OFPBarrierRequest(datapath))
        except ConnectionError as error:
            outcome.append(str(error))

    hub.spawn(audit)
    hub.sleep(0.02)
    app.switch_gone(Event(datapath=RecordingDatapath()))  # another connection of that dpid, long replaced
    assert app.connections[1] is conn
    app.switch_gone(Event(datapath=datapath))
    hub.sleep(0.02)
    assert outcome == ["dpid 1 went away before answering OFPBarrierRequest"]
    assert 1 not in app.connections and 1 not in app.core.switches


def test_a_burst_of_answers_leaves_in_few_writes_in_order_each_message_whole():
    """The sender joins what waits in the outbox into one buffer for the framework (up to SEND_BATCH
    messages): 200 proxy answers computed while it waits leave in a few writes, in the order computed."""
    app = app_with_core()
    datapath = RecordingDatapath()
    conn = Connection(datapath, app.session_policy)
    app.connections[1] = conn
    app.core.switch_connected(1, dict.fromkeys(SWITCH_PORTS, True))
    app.core.flows_read_back(1, [], 0.0)
    requesters = [ip for ip in MEMBER_IPS for _ in range(100)][:200]
    for number, requester in enumerate(requesters):
        target = next(ip for ip in MEMBER_IPS if ip != requester)
        event = Event(msg=packet_in(datapath, MEMBER_PORT[requester], request(requester, target)))
        app.packet_in(event)
        assert len(conn.outbox) == number + 1, "nothing is sent from the handler itself"
    hub.spawn(app._drain, conn)
    hub.sleep(0.05)
    assert len(datapath.sent) == 200
    assert [len(write) for write in datapath.writes] == [nlbflow.SEND_BATCH] * 3 + [200 - 3 * nlbflow.SEND_BATCH]
    assert [message.xid for message in datapath.sent] == list(range(1, 201))
    answered = [ofmsgs_frame(message) for message in datapath.sent]
    assert [frame.tpa for frame in answered] == requesters
    conn.closed()


def test_a_message_that_does_not_serialise_is_logged_and_the_rest_still_leave(caplog):
    app = app_with_core()
    datapath = RecordingDatapath()
    conn = Connection(datapath, app.session_policy)
    broken = PARSER.OFPPacketOut(datapath, buffer_id=ofproto_v1_3.OFP_NO_BUFFER, in_port=1, actions=["?"], data=b"")
    conn.enqueue(
        [Outgoing(PARSER.OFPBarrierRequest(datapath)), Outgoing(broken), Outgoing(PARSER.OFPEchoRequest(datapath))]
    )
    with caplog.at_level(logging.ERROR, logger="nlbflow-test"):
        hub.spawn(app._drain, conn)
        hub.sleep(0.02)
    assert [type(m).__name__ for m in datapath.sent] == ["OFPBarrierRequest", "OFPEchoRequest"]
    assert len(datapath.writes) == 1
    assert any("cannot send OFPPacketOut" in record.getMessage() for record in caplog.records)
    conn.closed()


def packet_in(datapath: RecordingDatapath, in_port: int, frame):
    """A packet-in as the framework hands it to the handler, with the frame's bytes as the switch punts them."""
    message = PARSER.OFPPacketIn(datapath, buffer_id=ofproto_v1_3.OFP_NO_BUFFER, data=ofmsgs.arp_bytes(frame))
    message.match = PARSER.OFPMatch(in_port=in_port)
    return message


def ofmsgs_frame(message):
    """The ARP frame a packet-out carries, read back by the app's parser."""
    return punted_arp(message.body[-60:])


def test_the_collector_is_held_off_until_the_last_overlapping_read_back_ends_then_what_lives_is_frozen():
    pause = nlbflow.CollectorPause()
    gc.unfreeze()
    try:
        with pause:
            with pause:  # a second switch reads back meanwhile
                assert not gc.isenabled()
            assert not gc.isenabled()
            assert gc.get_freeze_count() == 0
        assert gc.isenabled()
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.enable()


def test_a_collector_someone_else_turned_off_stays_off_after_a_read_back():
    pause = nlbflow.CollectorPause()
    gc.disable()
    try:
        with pause:
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
