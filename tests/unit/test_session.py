"""A connection's refusal and resync policy (flows/session.py), and what the core does with a flow the
switch keeps refusing: one resync at a time, backing off, and a flow given up after a few refusals."""

from __future__ import annotations

from flows.audit import ReadBackFlow, audit_switch
from flows.core import NlbCore
from flows.flowspec import FORWARDING_TABLE
from flows.session import FLOW_ADD, FLOW_DELETE, Session, SessionPolicy
from tests.unit.example_cluster import SWITCH_PORTS, web_config

OFPET_FLOW_MOD_FAILED, OFPFMFC_TABLE_FULL = 5, 1
POLICY = SessionPolicy(give_up_after=3, first_backoff=1.0, max_backoff=8.0)


def connected_core() -> NlbCore:
    core = NlbCore(web_config(pinned=True))
    core.switch_connected(1, dict.fromkeys(SWITCH_PORTS, True))
    core.flows_read_back(1, [], 0.0)
    return core


def a_flow():
    return next(flow for flow in connected_core().expected_flows(1) if flow.table_id == FORWARDING_TABLE)


def test_fifty_refusals_at_once_want_one_resync_after_the_first_backoff():
    session = Session(POLICY)
    flows = [flow for flow in connected_core().expected_flows(1)]
    for flow in flows:
        session.refused(100.0, FLOW_ADD, flow, OFPET_FLOW_MOD_FAILED, OFPFMFC_TABLE_FULL)
    assert session.resync_delay(100.0) == 1.0
    assert session.resync_delay(101.5) == 0.0
    session.resync_started(101.5)
    for flow in flows:  # refused again while the resync runs: covered by the next one, not a second one now
        session.refused(101.6, FLOW_ADD, flow, OFPET_FLOW_MOD_FAILED, OFPFMFC_TABLE_FULL)
    assert session.resync_delay(101.6) is None
    assert session.resyncs == 1


def test_the_backoff_doubles_after_each_resync_refused_again_and_is_capped():
    session = Session(POLICY)
    flow = a_flow()
    delays = []
    now = 0.0
    for _ in range(2):
        session.want_resync(now)
        delay = session.resync_delay(now)
        delays.append(delay)
        now += delay
        session.resync_started(now)
        session.want_resync(now)  # the resync's own changes were refused again
        session.resync_finished(now)
        delays.append(session.resync_delay(now))
        now += session.resync_delay(now)
        session.resync_started(now)
        session.resync_finished(now)  # this one was clean
    assert delays == [1.0, 2.0, 1.0, 2.0], "a clean resync resets the backoff"
    session = Session(POLICY)
    session.refused(0.0, FLOW_DELETE, flow, OFPET_FLOW_MOD_FAILED, 0)
    now, seen = 0.0, []
    for _ in range(6):
        now += session.resync_delay(now)
        session.resync_started(now)
        session.want_resync(now)
        session.resync_finished(now)
        seen.append(session.resync_delay(now))
    assert seen == [2.0, 4.0, 8.0, 8.0, 8.0, 8.0]


def test_a_flow_refused_three_times_is_given_up_once_and_wants_no_more_resyncs():
    session = Session(POLICY)
    flow = a_flow()
    answers = [session.refused(float(t), FLOW_ADD, flow, OFPET_FLOW_MOD_FAILED, OFPFMFC_TABLE_FULL) for t in range(5)]
    assert answers == [False, False, True, False, False], "True (warn) exactly once"
    (refusal,) = session.given_up()
    assert (refusal.error_type, refusal.error_code, refusal.count, refusal.first_seen) == (5, 1, 3, 0.0)
    assert session.withheld() == {flow}
    session.resync_started(5.0)
    session.resync_finished(5.0)
    assert session.resync_delay(5.0) is None, "only refusals not given up ask for a resync"
    session.retry_all()
    assert session.given_up() == [] and session.withheld() == frozenset()


def test_a_refused_delete_is_reported_but_never_withheld():
    session = Session(POLICY)
    flow = a_flow()
    for now in range(3):
        session.refused(float(now), FLOW_DELETE, flow, OFPET_FLOW_MOD_FAILED, 0)
    assert [r.command for r in session.given_up()] == [FLOW_DELETE]
    assert session.withheld() == frozenset()


def test_a_withheld_flow_is_never_sent_again_by_a_sync_nor_by_a_read_back():
    core = connected_core()
    flow = a_flow()
    core.withhold(1, frozenset({flow}))
    other_flows = [f for f in core.expected_flows(1) if f != flow]
    work = core.flows_read_back(1, other_flows, 0.0)  # the switch holds all but the refused one
    assert flow not in work.diff.to_add and work.diff.to_delete == ()
    assert flow not in core.port_changed(1, 4, present=True, up=False, now=0.0).diff.to_add
    held_after_all = core.flows_read_back(1, [*other_flows, flow], 0.0)  # the switch took it after all: kept
    assert flow not in held_after_all.diff.to_delete and flow not in held_after_all.diff.to_add
    core.withhold(1, frozenset())  # an operator's reconcile retries it
    assert flow in core.flows_read_back(1, other_flows, 0.0).diff.to_add


def test_the_audit_lists_refused_flows_with_the_error_type_and_code():
    core = connected_core()
    flow = a_flow()
    session = Session(POLICY)
    for now in range(3):
        session.refused(float(now), FLOW_ADD, flow, OFPET_FLOW_MOD_FAILED, OFPFMFC_TABLE_FULL)
    installed = [ReadBackFlow(f, 0, 0) for f in core.expected_flows(1) if f != flow]
    report = audit_switch(core.registry, core.expected_flows(1), installed, session.given_up())
    (refused,) = report["refused"]
    assert (refused["table_id"], refused["priority"], refused["cookie"]) == (1, flow.priority, f"{flow.cookie:#018x}")
    assert (refused["command"], refused["error_type"], refused["error_code"], refused["refusals"]) == ("add", 5, 1, 3)
    assert [m["cookie"] for m in report["missing"]] == [refused["cookie"]]
