"""Whom the fabric believes about where a member is (flows/locations.py, docs/trust.md), decision by decision.

Each test drives one SwitchLocations with an explicit clock, as NlbCore does, and checks what it believes,
what it probes, what it counts and what it logs.
"""

from __future__ import annotations

from collections import Counter

import pytest

from flows.addresses import PROBE_MAC
from flows.arp import probe_outputs
from flows.config import ConfigError, parse_config
from flows.core import NlbCore
from flows.locations import How, Level, Outcome, SwitchLocations
from flows.model import ClusterMode, LocationSettings
from flows.oftable import FakeFabric, Frame
from flows.registry_ops import add_member, update_member
from flows.state import cluster_data
from tests.unit.example_cluster import SWITCH_PORTS, reply, request, web_config

KEY = ("web", "10.0.0.12")
IP = KEY[1]
SETTINGS = LocationSettings(confirm_seconds=1.0, idle_seconds=30.0, unanswered_probes=3, moves_per_minute=2)
LIVE = set(SWITCH_PORTS)


def book() -> SwitchLocations:
    return SwitchLocations(dpid=1, settings=SETTINGS, counters=Counter())


def located_at(port: int, now: float = 0.0) -> SwitchLocations:
    where = book()
    assert where.claim(KEY, port, How.ARP, "02:de:0a:00:00:0c", now, LIVE).outcome == Outcome.BELIEVED
    return where


def probe_targets(probes) -> list[tuple[int, str]]:
    return [(out.port, out.frame.tpa) for out in probes if out.frame.sha == PROBE_MAC]


# --- probe answers ------------------------------------------------------------------------------------------


def test_a_probe_answer_counts_only_from_a_port_the_app_probed_for_that_member_recently():
    where = book()
    assert where.claim(KEY, 2, How.PROBE, "m", 0.0, LIVE).outcome == Outcome.UNSOLICITED, "never probed"
    where.probes_sent(probe_outputs(IP, (2,)), 10.0)
    assert where.claim(KEY, 5, How.PROBE, "m", 10.1, LIVE).outcome == Outcome.UNSOLICITED, "not probed there"
    where.probes_sent(probe_outputs("10.0.0.13", (5,)), 10.0)
    assert where.claim(KEY, 5, How.PROBE, "m", 10.1, LIVE).outcome == Outcome.UNSOLICITED, "probed for another"
    assert where.claim(KEY, 2, How.PROBE, "m", 11.5, LIVE).outcome == Outcome.UNSOLICITED, "too late"
    assert where.ports() == {}
    where.probes_sent(probe_outputs(IP, (2,)), 20.0)
    judgement = where.claim(KEY, 2, How.PROBE, "m", 20.2, LIVE)
    assert (judgement.outcome, judgement.changed, where.ports()) == (Outcome.BELIEVED, True, {KEY: 2})
    assert [(n.level, n.text) for n in judgement.notes] == [
        (Level.INFO, f"dpid 1: member {IP} of cluster web located on port 2 (probe)")
    ]


# --- claims from another port -------------------------------------------------------------------------------


def test_a_claim_from_another_port_is_held_and_only_the_old_port_is_probed_once():
    where = located_at(2)
    first = where.claim(KEY, 5, How.ARP, "x", 1.0, LIVE)
    assert (first.outcome, first.changed, probe_targets(first.probes)) == (Outcome.UNCONFIRMED, False, [(2, IP)])
    again = where.claim(KEY, 5, How.ARP, "x", 1.2, LIVE)
    assert (again.outcome, again.probes) == (Outcome.UNCONFIRMED, ()), "one probe per claim"
    assert where.ports() == {KEY: 2}


def test_an_answer_on_the_old_port_proves_the_claim_a_spoof_counted_and_logged_with_both_ports():
    where = located_at(2)
    where.claim(KEY, 5, How.ARP, "x", 1.0, LIVE)
    answered = where.claim(KEY, 2, How.PROBE, "m", 1.1, LIVE)
    assert (answered.outcome, answered.changed, where.ports()) == (Outcome.BELIEVED, False, {KEY: 2})
    assert where.counters["dropped_spoofed"] == 1
    assert (where.attempts[KEY].count, where.attempts[KEY].last_port) == (1, 5)
    assert [(n.level, n.text) for n in answered.notes] == [
        (
            Level.WARNING,
            f"dpid 1: member {IP} of cluster web on port 2: a frame claiming it from port 5 was a spoof, "
            "dropped (dropped_spoofed)",
        )
    ]
    assert where.tick(3.0, LIVE).changed is False, "the claim is gone: no move later"
    assert where.ports() == {KEY: 2}


def test_right_after_a_proof_another_claim_is_a_spoof_at_once_and_later_one_is_checked_again():
    where = located_at(2)
    where.claim(KEY, 5, How.ARP, "x", 1.0, LIVE)
    where.claim(KEY, 2, How.PROBE, "m", 1.1, LIVE)
    soon = where.claim(KEY, 4, How.ARP, "x", 1.5, LIVE)
    assert (soon.outcome, soon.probes, where.attempts[KEY].last_port) == (Outcome.SPOOFED, (), 4)
    later = where.claim(KEY, 4, How.ARP, "x", 3.0, LIVE)
    assert (later.outcome, probe_targets(later.probes)) == (Outcome.UNCONFIRMED, [(2, IP)])


def test_spoofs_from_one_port_are_warned_of_once_a_minute_and_counted_every_time():
    where = located_at(2)
    levels = [where.spoof_refused(KEY, port, 2, now).level for port, now in ((5, 1.0), (5, 2.0), (4, 3.0), (5, 62.0))]
    assert levels == [Level.WARNING, Level.DEBUG, Level.WARNING, Level.WARNING]
    assert (where.attempts[KEY].count, where.attempts[KEY].last_port) == (4, 5)


def test_a_claim_whose_old_port_stays_silent_is_a_move_logged_with_both_ports():
    where = located_at(2)
    where.claim(KEY, 5, How.ARP, "x", 1.0, LIVE)
    assert where.tick(1.5, LIVE).changed is False, "still within the confirm time"
    moved = where.tick(2.0, LIVE)
    assert (moved.changed, where.ports(), where.located[KEY].how) == (True, {KEY: 5}, How.ARP)
    assert [(n.level, n.text) for n in moved.notes] == [
        (Level.INFO, f"dpid 1: member {IP} of cluster web moved from port 2 to port 5 (port 2 silent for 1 s)")
    ]
    assert where.counters["moves"] == 1


@pytest.mark.parametrize("gone", [False, True], ids=["old-port-down", "old-port-gone"])
def test_a_claim_is_a_move_at_once_when_the_old_port_is_down_or_goes_away_meanwhile(gone):
    where = located_at(2)
    at_once = where.claim(KEY, 5, How.ARP, "x", 1.0, LIVE - {2})
    assert (at_once.outcome, at_once.changed, where.ports()) == (Outcome.BELIEVED, True, {KEY: 5})
    assert "port 2 is down or gone" in at_once.notes[0].text

    where = located_at(2)
    where.claim(KEY, 5, How.ARP, "x", 1.0, LIVE)
    lost = where.port_lost(2, gone=gone, now=1.2)
    assert (lost.changed, where.ports()) == (True, {KEY: 5})


def test_moves_are_limited_per_member_and_minute():
    where = located_at(2)
    for now, port in ((1.0, 5), (2.0, 4)):
        assert where.claim(KEY, port, How.ARP, "x", now, LIVE - {where.ports()[KEY]}).changed
    limited = where.claim(KEY, 3, How.ARP, "x", 3.0, LIVE - {4})
    assert (limited.outcome, where.ports(), where.counters["moves_refused"]) == (Outcome.MOVE_LIMITED, {KEY: 4}, 1)
    assert limited.notes[0].level == Level.WARNING and "at most 2 moves in a minute" in limited.notes[0].text
    assert where.claim(KEY, 3, How.ARP, "x", 61.5, LIVE - {4}).changed, "a minute later it may move again"


# --- locations in use are checked ---------------------------------------------------------------------------


def test_a_quiet_member_is_probed_on_its_port_and_given_up_after_unanswered_probes():
    where = located_at(2)
    assert where.tick(29.0, LIVE).probes == (), "heard within the idle time"
    assert probe_targets(where.tick(30.0, LIVE).probes) == [(2, IP)]
    assert where.tick(30.5, LIVE).probes == (), "waiting for the answer"
    assert probe_targets(where.tick(31.0, LIVE).probes) == [(2, IP)], "second probe"
    assert probe_targets(where.tick(32.0, LIVE).probes) == [(2, IP)], "third probe"
    lost = where.tick(33.0, LIVE)
    assert (lost.changed, where.ports()) == (True, {})
    assert (
        lost.notes[0].text
        == f"dpid 1: member {IP} of cluster web lost: 3 probes on port 2 unanswered; looking everywhere"
    )


def test_an_answer_to_a_check_keeps_the_location_and_starts_the_idle_time_again():
    where = located_at(2)
    where.tick(30.0, LIVE)
    where.tick(31.0, LIVE)
    assert where.claim(KEY, 2, How.PROBE, "m", 31.2, LIVE).outcome == Outcome.BELIEVED
    assert (where.located[KEY].unanswered, where.located[KEY].checking_since) == (0, None)
    assert where.tick(60.0, LIVE).probes == () and where.ports() == {KEY: 2}


def test_an_adopted_location_is_checked_at_the_first_tick_and_a_down_port_is_not_probed():
    where = book()
    where.adopt(KEY, 2)
    assert probe_targets(where.tick(0.0, LIVE).probes) == [(2, IP)]
    down = book()
    down.adopt(KEY, 2)
    assert down.tick(0.0, LIVE - {2}).probes == ()


def test_a_vanished_port_takes_its_members_and_forget_drops_what_was_learned():
    where = located_at(2)
    assert where.port_lost(2, gone=True, now=1.0).changed and where.ports() == {}
    where = located_at(2)
    where.forget(gone={KEY})
    assert where.ports() == {} and where.attempts == {}


# --- through the core: what status shows --------------------------------------------------------------------


def test_status_shows_how_each_location_was_found_when_it_was_confirmed_and_spoof_attempts():
    core = NlbCore(web_config())
    core.switch_connected(1, dict.fromkeys(SWITCH_PORTS, True))
    core.flows_read_back(1, [], now=0.0)
    core.packet_in(1, 2, request(IP, IP), now=10.0)
    core.packet_in(1, 5, request(IP, IP), now=11.0)  # held: port 2 is probed
    core.packet_in(1, 2, request(IP, "10.0.0.11"), now=11.5)  # the member on its own port
    (view,) = core.status(now=20.0)["clusters"][0]["members"][1]["located"]
    assert view == {
        "dpid": 1,
        "port": 2,
        "how": "arp",
        "port_up": True,
        "confirmed_ago": 8.5,
        "checking": False,
        "spoof_attempts": 1,
        "last_spoof_port": 5,
    }
    assert core.status(now=20.0)["counters"]["unconfirmed"] == 1


# --- configuration ------------------------------------------------------------------------------------------


def test_location_settings_have_defaults_and_are_read_from_fabric_locations():
    assert parse_config("fabric: {}").settings.locations == LocationSettings()
    text = "fabric:\n  locations: {confirm_seconds: 0.5, idle_seconds: 10, unanswered_probes: 2, moves_per_minute: 4}"
    assert parse_config(text).settings.locations == LocationSettings(0.5, 10.0, 2, 4)


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("{confirm: 1}", "fabric.locations.confirm: unknown key"),
        ("{confirm_seconds: 0}", "fabric.locations.confirm_seconds: expected seconds"),
        ("{idle_seconds: true}", "fabric.locations.idle_seconds: expected seconds"),
        ("{unanswered_probes: 1.5}", "fabric.locations.unanswered_probes: expected an integer from 1 to 1000"),
        ("{moves_per_minute: 0}", "fabric.locations.moves_per_minute: expected an integer from 1 to 1000"),
        ("{confirm_seconds: 40}", "fabric.locations.confirm_seconds: must be shorter than idle_seconds"),
        ("[]", "fabric.locations: expected a mapping"),
    ],
)
def test_bad_location_settings_are_refused_with_the_key_named(value, problem):
    with pytest.raises(ConfigError) as error:
        parse_config(f"fabric:\n  locations: {value}", "nlbflow.yaml")
    assert str(error.value).startswith(f"nlbflow.yaml: {problem}")


MULTICAST = """
clusters:
  - name: web
    cluster_ip: 10.0.0.100
    mode: multicast
    members:
      - {ip: 10.0.0.11, mac: "52:54:00:00:00:0b"}
      - {ip: 10.0.0.12}
"""


def test_in_the_multicast_modes_a_members_mac_is_its_nic_mac_kept_in_the_state_and_shown_as_mac():
    cluster = parse_config(MULTICAST).registry.clusters[0]
    first, second = cluster.members
    assert (first.own_mac, second.own_mac) == ("52:54:00:00:00:0b", None)
    assert [member.get("mac") for member in cluster_data(cluster)["members"]] == ["52:54:00:00:00:0b", None]
    assert parse_config(MULTICAST.replace("multicast", "igmp")).registry.clusters[0].members[0].own_mac
    unicast = parse_config(MULTICAST.replace("mode: multicast", "mode: unicast")).registry.clusters[0]
    assert (unicast.members[0].dedicated_mac, unicast.members[0].own_mac) == ("52:54:00:00:00:0b", None)


def test_the_rest_changes_set_and_keep_a_multicast_members_nic_mac():
    registry = parse_config(MULTICAST).registry
    registry, added = add_member(registry, "web", {"ip": "10.0.0.13", "mac": "52:54:00:00:00:0d"})
    assert added.own_mac == "52:54:00:00:00:0d"
    registry, pinned = update_member(registry, "web", "10.0.0.11", {"dpid": 1, "port": 3})
    assert (pinned.own_mac, pinned.port) == ("52:54:00:00:00:0b", 3)


def test_a_nic_mac_is_one_members_only():
    text = MULTICAST.replace("{ip: 10.0.0.12}", '{ip: 10.0.0.12, mac: "52:54:00:00:00:0b"}')
    with pytest.raises(ConfigError, match=r"members\[1\]\.mac: 52:54:00:00:00:0b is already the NIC MAC of member"):
        parse_config(text)


def test_a_moved_multicast_member_is_found_again_by_its_nic_mac():
    """Its ARP is not punted: the check of its quiet location finds it gone, every port is probed again,
    and only an answer with its registered NIC MAC locates it."""
    config = parse_config(MULTICAST.replace("{ip: 10.0.0.12}", '{ip: 10.0.0.12, mac: "52:54:00:00:00:0c"}'))
    assert config.registry.clusters[0].mode == ClusterMode.MULTICAST
    net = FakeFabric(NlbCore(config), 1, list(SWITCH_PORTS))
    nic = "52:54:00:00:00:0c"
    answer = Frame.from_arp(reply(IP, "0.0.0.0", tha=PROBE_MAC, eth_dst=PROBE_MAC, sha=nic, eth_src=nic))
    net.send(2, answer)
    assert net.core.located_ports(1)[KEY] == 2
    net.tick(config.settings.locations.idle_seconds)
    for _ in range(config.settings.locations.unanswered_probes):
        net.tick(config.settings.locations.confirm_seconds)  # the member is on port 5 now: port 2 is silent
    assert KEY not in net.core.located_ports(1)
    net.tick(5.0)  # every port is probed for it
    forged = Frame.from_arp(reply(IP, "0.0.0.0", tha=PROBE_MAC, eth_dst=PROBE_MAC, sha="52:54:00:00:00:99"))
    net.send(4, forged)
    assert KEY not in net.core.located_ports(1), "another MAC does not locate it"
    net.send(5, answer)
    assert net.core.located_ports(1)[KEY] == 5
