"""The saved registry, registry changes pushed through the core, and the audited flow dump."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from flows.addresses import PROBE_MAC
from flows.audit import ReadBackFlow, audit_switch
from flows.config import ConfigError
from flows.core import NlbCore
from flows.flowspec import FlowSpec, Output, make_match
from flows.registry_ops import add_member, remove_member
from flows.state import load_state, remove_stale_temp_files, save_state, state_path
from tests.unit.example_cluster import CM, DM, MEMBER_PORT, SWITCH_PORTS, request, web_config


def test_state_file_round_trips_the_registry(tmp_path):
    registry = web_config(pinned=True).registry
    path = str(tmp_path / "state.yaml")
    save_state(path, registry)
    assert load_state(path) == registry
    assert os.listdir(tmp_path) == ["state.yaml"], "no temp file is left after an atomic write"


KILLED_WHILE_WRITING = textwrap.dedent(
    """
    import os, signal, sys
    from flows.config import parse_config
    from flows.state import save_state
    # kill -9 after the temp file is written and synced, just before the rename would publish it
    os.replace = lambda *args: os.kill(os.getpid(), signal.SIGKILL)
    save_state(sys.argv[1], parse_config("clusters: [{name: new, cluster_ip: 10.9.9.9}]").registry)
    """
)


def kill_while_saving(path: Path) -> subprocess.CompletedProcess:
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([sys.executable, "-c", KILLED_WHILE_WRITING, str(path)], env=env, capture_output=True)


def test_a_temp_file_left_by_kill_9_is_never_the_state_and_the_next_start_removes_it(tmp_path):
    path = tmp_path / "state.yaml"
    registry = web_config().registry
    save_state(str(path), registry)
    other = tmp_path / "other.yaml"
    other.write_text("clusters: []\n")

    killed = kill_while_saving(path)

    assert killed.returncode == -signal.SIGKILL, killed.stderr
    left = sorted(name for name in os.listdir(tmp_path) if name not in ("state.yaml", "other.yaml"))
    assert len(left) == 1 and left[0].startswith(".state.yaml.") and left[0].endswith(".tmp"), left
    assert "name: new" in (tmp_path / left[0]).read_text(), "the killed write had finished its temp file"
    assert load_state(str(path)) == registry, "the state is the last complete write"
    assert remove_stale_temp_files(str(path)) == [str(tmp_path / left[0])]
    assert sorted(os.listdir(tmp_path)) == ["other.yaml", "state.yaml"], "only the state file's own temp files go"
    assert load_state(str(path)) == registry


def test_a_crash_before_the_first_save_leaves_no_state_only_a_temp_file_the_start_removes(tmp_path):
    path = tmp_path / "state.yaml"
    assert kill_while_saving(path).returncode == -signal.SIGKILL
    assert load_state(str(path)) is None, "a first start: the config seeds the registry, not the temp file"
    assert len(remove_stale_temp_files(str(path))) == 1
    assert os.listdir(tmp_path) == []


def test_no_state_file_means_first_start(tmp_path):
    assert load_state(str(tmp_path / "absent.yaml")) is None


@pytest.mark.parametrize("garbage", ["clusters: [", "clusters: []\nclusters: []\n", "clusters: [{name: web}]"])
def test_a_corrupt_state_file_is_an_error_naming_it_and_is_left_as_it_is(tmp_path, garbage):
    path = tmp_path / "state.yaml"
    path.write_text(garbage)
    with pytest.raises(ConfigError, match="never replaced silently") as caught:
        load_state(str(path))
    assert caught.value.source == str(path)
    assert path.read_text() == garbage


def test_state_file_sits_beside_the_config_unless_configured(tmp_path):
    config = str(tmp_path / "etc" / "nlbflow.yaml")
    assert state_path(config, None) == str(tmp_path / "etc" / "nlbflow-state.yaml")
    assert state_path(config, "state/s.yaml") == str(tmp_path / "etc" / "state" / "s.yaml")
    assert state_path(config, "/var/lib/s.yaml") == "/var/lib/s.yaml"


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
