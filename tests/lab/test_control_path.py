"""The control path against a real OVS, under both runtimes: a switch that keeps refusing flows is
resynchronised a bounded number of times, the refusal is reported, and nothing loops; a switch that
drops its connection in the middle of a REST change gets the change when it is back, and the API says
which switches the change was still pending on."""

from __future__ import annotations

import time

import pytest

from flows.session import SessionPolicy
from tests.lab.appkit import (
    RUNTIMES,
    api_ok,
    app_table,
    cluster_yaml,
    expected_table,
    nlbflow_cli,
    state_file,
    wait_for_api,
    wait_for_table,
    write_config,
)
from tests.lab.controlkit import (
    BackgroundCall,
    Snoop,
    controller_sockets,
    cut_controller_connection,
    limit_flow_table,
    pause_switch,
    resume_switch,
    saved_member_ips,
    wait_until,
)
from tests.netlab import MEMBER_DIPS

OFPET_FLOW_MOD_FAILED, OFPFMFC_TABLE_FULL = 5, 1
FORWARDING_TABLE = 1
POLICY = SessionPolicy()
QUIET_WINDOW_SECONDS = 2 * POLICY.backoff(POLICY.give_up_after - 1)  # twice the longest backoff it reaches
DPID = "0000000000000001"


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_table_that_refuses_flows_is_reported_once_and_not_retried_in_a_loop(lab, runtime):
    members, _ = lab.add_typical_cluster()
    config = write_config(lab, cluster_yaml())
    expected = expected_table(config, members)
    table_1 = {row for row in expected if row[0] == FORWARDING_TABLE}
    limit = len(table_1) - 2  # two of the app's forwarding flows can never fit
    limit_flow_table(lab, FORWARDING_TABLE, limit)
    snoop = Snoop(lab)
    lab.start_controller(runtime, config)
    lab.wait_connected()
    wait_for_api(lab)
    wait_until(lambda: lab.controller_log().count("keeps refusing") >= 2, "two flows given up")

    installed = app_table(lab)
    refused_rows = expected - set(installed)
    assert len([row for row in installed if row[0] == FORWARDING_TABLE]) == limit
    assert len(refused_rows) == 2 and all(row[0] == FORWARDING_TABLE for row in refused_rows)
    refused_cookies = {f"{row[1]:#018x}" for row in refused_rows}

    (switch,) = api_ok(lab, "GET", "/nlb/status")["switches"]
    reported = {r["cookie"]: (r["table_id"], r["command"], r["error_type"], r["error_code"]) for r in switch["refused"]}
    assert reported == dict.fromkeys(refused_cookies, (1, "add", OFPET_FLOW_MOD_FAILED, OFPFMFC_TABLE_FULL))
    audit = api_ok(lab, "GET", "/nlb/flows")["switches"][DPID]
    assert {r["cookie"] for r in audit["refused"]} == refused_cookies
    assert {m["cookie"] for m in audit["missing"]} == refused_cookies
    log = lab.controller_log()
    for cookie in refused_cookies:
        warnings = [
            line for line in log.splitlines() if "keeps refusing" in line and f"cookie {int(cookie, 16):#x}" in line
        ]
        assert len(warnings) == 1, f"one WARNING per refused flow:\n{log}"

    # The counter counts: the start (sync, locating the members, the resyncs) sent flow-mods, refused ones too.
    at_start = snoop.flow_mods()
    assert at_start >= len(expected), snoop.text()
    assert len(snoop.errors()) == 2 * POLICY.give_up_after
    for cookie in refused_cookies:  # sent at first, then once by each resync, until given up
        assert snoop.flow_mods(f"cookie:{cookie}") == POLICY.give_up_after, snoop.text()
    assert switch["resyncs"] == POLICY.give_up_after - 1, "one resync at a time, however many errors"
    time.sleep(QUIET_WINDOW_SECONDS)
    assert snoop.flow_mods() == at_start, f"flow-mods kept coming:\n{snoop.text()[-4000:]}"
    assert sorted(app_table(lab)) == sorted(installed)
    assert api_ok(lab, "GET", "/nlb/status")["switches"][0]["resyncs"] == switch["resyncs"]
    shown = nlbflow_cli(lab, "flows")
    assert sum(line.startswith("refused by the switch: add") for line in shown.stdout.splitlines()) == 2, shown

    # The operator's fix: room in the table, then a reconcile retries what was refused.
    lab.vsctl("clear", "Bridge", "br0", "flow_tables")
    repaired = api_ok(lab, "POST", "/nlb/flows/reconcile")["switches"][DPID]
    assert (repaired["repaired"]["added"], repaired["refused"], repaired["missing"]) == (2, [], [])
    assert sorted(app_table(lab)) == sorted(expected)
    assert api_ok(lab, "GET", "/nlb/status")["switches"][0]["refused"] == []
    assert lab.ping(members[0], members[1].ip) and lab.ping(members[1], members[2].ip)


@pytest.mark.parametrize("back_before_the_answer", [False, True], ids=["stays-away", "reconnects"])
@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_switch_lost_in_the_middle_of_a_change_gets_it_when_it_is_back(lab, runtime, back_before_the_answer):
    members, _ = lab.add_typical_cluster()
    m1, m2, m3 = members
    config = write_config(lab, cluster_yaml(member_dips=MEMBER_DIPS[:2]))
    lab.start_controller(runtime, config)
    lab.wait_connected()
    before = expected_table(config, [m1, m2])
    assert sorted(wait_for_table(lab, before)) == sorted(before)

    pause_switch(lab)  # the change's flow-mods and barrier wait in the connection, unanswered
    try:
        change = BackgroundCall(lab, "POST", "/nlb/clusters/web/members", {"ip": m3.ip})
        wait_until(lambda: m3.ip in saved_member_ips(state_file(config)), "the change saved")
        assert not change.done(), "the change must still wait for the switch's barrier"
        cut_controller_connection(lab)
        if not back_before_the_answer:
            answer = change.result()
    finally:
        resume_switch(lab)
    if back_before_the_answer:
        answer = change.result()  # OVS reconnects after 1 s; the change waits for that connection's sync
    assert answer.status == 201, answer
    assert answer.body["ip"] == m3.ip
    assert answer.body["pending_switches"] == ([] if back_before_the_answer else [DPID])

    lab.wait_connected()
    assert controller_sockets(lab) == 1
    after = expected_table(write_config(lab, cluster_yaml(), "all-members.yaml"), members)
    table = wait_for_table(lab, after)
    assert sorted(table) == sorted(after), lab.controller_log()
    assert len(table) == len(set(table)), "duplicate flows"
    for source, target in ((m1, m3), (m3, m2), (m2, m1)):
        assert lab.ping(source, target.ip), f"{source.name} -> {target.name}"
    assert [m["ip"] for m in api_ok(lab, "GET", "/nlb/clusters/web/members")["members"]] == [m1.ip, m2.ip, m3.ip]
