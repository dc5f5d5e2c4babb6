"""The saved registry, registry changes pushed through the core, and the audited flow dump."""

from __future__ import annotations

import os

from flows.addresses import PROBE_MAC
from flows.audit import ReadBackFlow, audit_switch
from flows.core import NlbCore
from flows.flowspec import FlowSpec, Output, make_match
from flows.registry_ops import add_member, remove_member
from flows.state import state_path, yaml_state_path
from flows.store import remove_stale_temp_files
from tests.unit.example_cluster import CM, DM, MEMBER_PORT, SWITCH_PORTS, request, web_config


def test_the_temp_file_an_older_versions_yaml_writer_left_is_removed_at_the_start(tmp_path):
    yaml_path = tmp_path / "nlbflow-state.yaml"
    yaml_path.write_text("clusters: []\n")
    stale = tmp_path / ".nlbflow-state.yaml.k9x2q1.tmp"  # a kill -9 between its temp file and the rename
    stale.write_text("clusters: [{name: new, cluster_ip: 10.9.9.9}]\n")
    assert remove_stale_temp_files(str(yaml_path)) == [str(stale)]
    assert os.listdir(tmp_path) == ["nlbflow-state.yaml"]


def test_state_file_sits_beside_the_config_unless_configured(tmp_path):
    config = str(tmp_path / "etc" / "nlbflow.yaml")
    assert state_path(config, None) == str(tmp_path / "etc" / "nlbflow-state.db")
    assert state_path(config, "state/s.yaml") == str(tmp_path / "etc" / "state" / "s.yaml")
    assert state_path(config, "/var/lib/s.yaml") == "/var/lib/s.yaml"


def test_the_older_default_yaml_state_file_is_looked_for_only_when_no_state_file_is_configured(tmp_path):
    config = str(tmp_path / "etc" / "nlbflow.yaml")
    assert yaml_state_path(config, None) == str(tmp_path / "etc" / "nlbflow-state.yaml")
    assert yaml_state_path(config, "/var/lib/s.yaml") is None, "the configured file itself is imported"


def located_core() -> NlbCore:
    core = NlbCore(web_config())
    core.switch_connected(1, dict.fromkeys(SWITCH_PORTS, True))
    core.flows_read_back(1, [], now=0.0)
    for ip, port in MEMBER_PORT.items():
        core.packet_in(1, port, request(ip, ip), now=0.0)
    return core


def test_a_new_member_is_probed_at_once_and_a_removed_one_loses_its_flows():
    core = located_core()
    registry, _ = add_member(core.registry, "web", {"ip": "10.0.0.14"})
    work = core.set_registry(registry, now=1.0)[1]
    assert {(out.frame.sha, out.frame.tpa) for out in work.frames} == {(PROBE_MAC, "10.0.0.14")}
    assert work.diff.to_add == () and work.diff.to_delete == ()

    registry, _ = remove_member(core.registry, "web", "10.0.0.12")
    diff = core.set_registry(registry, now=2.0)[1].diff
    assert sorted(map(repr, (dict(flow.match) for flow in diff.to_delete))) == sorted(
        map(repr, [{"eth_dst": DM["10.0.0.12"]}, {"eth_src": CM, "in_port": MEMBER_PORT["10.0.0.12"]}])
    )
    assert [flow.actions for flow in diff.to_add] == [(Output(1), Output(3))]
    assert ("web", "10.0.0.12") not in core.located_ports(1)


def test_audit_decodes_cookies_and_lists_missing_unexpected_and_other_apps_flows():
    core = located_core()
    expected = core.expected_flows(1)
    delivery = next(flow for flow in expected if dict(flow.match).get("eth_dst") == DM["10.0.0.11"])
    stale = FlowSpec(priority=200, cookie=delivery.cookie, match=make_match(eth_dst="02:de:0a:00:00:63"), actions=())
    foreign = FlowSpec(priority=5, cookie=0x1234, match=(), actions=())
    read_back = [ReadBackFlow(flow, 7, 700) for flow in expected if flow != delivery]
    read_back += [ReadBackFlow(stale, 0, 0), ReadBackFlow(foreign, 1, 1)]

    report = audit_switch(core.registry, expected, read_back)
    assert report["other_apps_flows"] == 1
    assert [(e["member"], e["purpose"], e["match"]) for e in report["missing"]] == [
        ("10.0.0.11", "member_delivery", {"eth_dst": DM["10.0.0.11"]})
    ]
    assert report["missing"][0]["actions"] == ["set_field:02:bf:0a:00:00:64->eth_dst", "output:1"]
    assert [(e["cookie"], e["match"]) for e in report["unexpected"]] == [
        (f"{delivery.cookie:#018x}", {"eth_dst": "02:de:0a:00:00:63"})
    ]
    punt = next(e for e in report["flows"] if e["purpose"] == "arp_punt")
    assert (punt["cluster"], punt["member"], punt["packets"], punt["bytes"]) == ("web", None, 7, 700)
    assert punt["claims"].startswith("1-19")
    assert len(report["flows"]) == len(expected)  # every app flow in the switch, the stale one included
    assert report["shared_ports"] == []


def test_the_audit_warns_of_a_port_shared_by_two_members():
    core = located_core()
    core.packet_in(1, 1, request("10.0.0.12", "10.0.0.12"), now=1.0)
    core.tick(1, now=2.0)  # port 2 stays silent: the member has moved to port 1, beside 10.0.0.11
    expected = core.expected_flows(1)
    report = audit_switch(
        core.registry, expected, [ReadBackFlow(f, 0, 0) for f in expected], shared_ports=core.shared_ports(1)
    )
    members = [{"cluster": "web", "ip": "10.0.0.11"}, {"cluster": "web", "ip": "10.0.0.12"}]
    assert report["shared_ports"] == [{"port": 1, "members": members, "other_sources": []}]
