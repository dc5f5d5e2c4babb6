"""Switch mode (`arp: switch`) on a real Open vSwitch, under both runtimes: the switch holds exactly the flows
the app computes (as ovs-ofctl prints them), the audit agrees, a restart touches none of them, a flow changed
by hand is shown and repaired, and the slow-path meter bounds what the switch runs through its slow path."""

from __future__ import annotations

import time

import pytest

from flows.cookies import Purpose, decode_cookie
from flows.model import Settings
from flows.responder import ANSWER_TABLE
from tests.lab.appkit import (
    APP_COOKIES,
    RUNTIMES,
    api_ok,
    app_table,
    expected_table,
    start_cluster,
    wait_for_api,
    wait_for_table,
)
from tests.lab.controlkit import wait_until
from tests.netlab import Flow, Lab

DPID = "0000000000000001"
SWITCH_PURPOSES = {"arp_sender", "arp_answer", "arp_spread", "arp_flood"}
TAMPERED_MAC = "02:de:0a:00:00:99"


def audit(lab: Lab) -> dict:
    return api_ok(lab, "GET", "/nlb/flows")["switches"][DPID]


def ages(lab: Lab) -> dict[tuple[int, int, str], Flow]:
    """The app's flows by key (table, priority, match), with how long each has been in the switch."""
    return {(f.table, f.priority, f.match): f for f in lab.dump_flows(APP_COOKIES)}


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_switch_mode_cluster_holds_exactly_the_expected_flows_and_the_audit_agrees(lab, runtime):
    net = start_cluster(lab, runtime, "switch")  # asserts the dump is exactly the expected table
    wait_for_api(lab)
    switch = audit(lab)
    assert (switch["missing"], switch["unexpected"]) == ([], [])
    assert {flow["purpose"] for flow in switch["flows"]} >= SWITCH_PURPOSES
    assert all(flow["claims"] for flow in switch["flows"])
    dumped = {f.cookie for f in lab.dump_flows(APP_COOKIES)}
    assert {int(flow["cookie"], 16) for flow in switch["flows"]} == dumped
    assert sorted(app_table(lab)) == sorted(expected_table(net.config_path, net.members))


@pytest.mark.parametrize("kill9", [False, True], ids=["sigterm", "sigkill"])
@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_restart_changes_no_switch_mode_flow(lab, runtime, kill9):
    net = start_cluster(lab, runtime, "switch")
    expected = expected_table(net.config_path, net.members)
    before = ages(lab)
    measured_at = time.monotonic()
    lab.stop_controller(kill9=kill9)
    lab.wait_disconnected()
    lab.restart_controller()
    lab.wait_connected()
    wait_for_api(lab)
    wait_until(lambda: "dpid 1: synchronised:" in lab.controller_log(), "the restart's sync")
    assert "dpid 1: synchronised: 0 added, 0 deleted" in lab.controller_log(), lab.controller_log()
    assert sorted(app_table(lab)) == sorted(expected)
    elapsed = time.monotonic() - measured_at
    after = ages(lab)
    assert after.keys() == before.keys()
    replaced = [key for key, flow in after.items() if flow.duration < before[key].duration + elapsed - 1]
    assert replaced == [], "flows the restart replaced (their durations started again)"
    switch = audit(lab)
    assert (switch["missing"], switch["unexpected"]) == ([], [])


def answer_flow(lab: Lab) -> Flow:
    """One of the switch's in-switch answers (table 4), as dump-flows prints it."""
    return next(
        f
        for f in lab.dump_flows(APP_COOKIES, table=ANSWER_TABLE)
        if decode_cookie(f.cookie).purpose == Purpose.ARP_ANSWER
    )


def tamper(lab: Lab, flow: Flow) -> str:
    """Change the answer's arp_sha set_field by hand (strict mod-flows keeps its cookie); returns its actions."""
    actions = flow.actions.split(",")
    index = next(i for i, action in enumerate(actions) if action.endswith("->arp_sha"))
    actions[index] = f"set_field:{TAMPERED_MAC}->arp_sha"
    lab.ofctl(
        "mod-flows", "--strict", f"table={flow.table},priority={flow.priority},{flow.match},actions={','.join(actions)}"
    )
    return ",".join(actions)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_an_answer_changed_by_hand_shows_in_the_audit_and_a_resync_repairs_it(lab, runtime):
    net = start_cluster(lab, runtime, "switch")
    expected = expected_table(net.config_path, net.members)
    wait_for_api(lab)
    flow = answer_flow(lab)
    tampered = tamper(lab, flow)
    assert any(f.actions == tampered and f.cookie == flow.cookie for f in lab.dump_flows(APP_COOKIES))

    switch = audit(lab)
    (unexpected,) = switch["unexpected"]
    (missing,) = switch["missing"]
    for entry in (unexpected, missing):
        assert (int(entry["cookie"], 16), entry["purpose"], entry["table_id"]) == (flow.cookie, "arp_answer", 4)
    assert f"set_field:{TAMPERED_MAC}->arp_sha" in unexpected["actions"]
    assert f"set_field:{TAMPERED_MAC}->arp_sha" not in missing["actions"]

    repaired = api_ok(lab, "POST", "/nlb/flows/reconcile")["switches"][DPID]
    assert (repaired["missing"], repaired["unexpected"]) == ([], [])
    assert sorted(app_table(lab)) == sorted(expected)

    tamper(lab, answer_flow(lab))  # again, and this time the controller's reconnect repairs it
    lab.restart_controller()
    lab.wait_connected()
    assert sorted(wait_for_table(lab, expected)) == sorted(expected)
    wait_for_api(lab)
    assert (audit(lab)["missing"], audit(lab)["unexpected"]) == ([], [])


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_the_switch_holds_the_slow_path_meter_at_the_configured_rate(lab, runtime):
    start_cluster(lab, runtime, "switch")
    rate = Settings().slow_path_rate
    dump = " ".join(lab.ofctl("dump-meters").split())
    assert f"meter=slowpath pktps burst stats bands= type=drop rate={rate} burst_size={rate}" in dump, dump
    wait_for_api(lab)
    status = api_ok(lab, "GET", "/nlb/status")
    (switch,) = status["switches"]
    slow = [meter for meter in switch["meters"] if meter["applies_to"] == "slow path"]
    assert [(m["meter_id"], m["rate_pps"], m["burst"]) for m in slow] == [(0xFFFFFFFD, rate, rate)]
