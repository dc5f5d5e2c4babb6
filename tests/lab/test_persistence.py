"""The registry across controller restarts: the state file (flows/state.py), live in the lab.

What the API acknowledged is on disk before the answer leaves, so neither a restart nor a `kill -9` in the
middle of a burst of writes loses it; a state file that cannot be read stops the start and is left as it
is; the YAML config seeds the registry only while no state file exists.
"""

from __future__ import annotations

import ipaddress
import queue
import sys
import threading
import time
from itertools import permutations

import pytest

from flows.addresses import dedicated_mac
from flows.cookies import cluster_id
from flows.state import load_state
from tests.lab.appkit import (
    API_URL,
    APP_COOKIES,
    RUNTIMES,
    VIP,
    api_ok,
    app_table,
    cluster_yaml,
    dm,
    expected_table,
    state_file,
    wait_for_api,
    wait_for_table,
    write_config,
)
from tests.netlab import Lab

DPID = "0000000000000001"
WEB_WITHOUT_MEMBERS = f"clusters:\n  - name: web\n    cluster_ip: {VIP}\n"
BURST_SIZE = 1000  # about 5 s of writes in the lab; the kill comes after 0.5 s

# POSTs members 10.0.1.1, 10.0.1.2, ... one after another as fast as the API answers; prints each IP once
# its 2xx has arrived, and stops at the first failure (the controller gone). Ends by itself after 120 s.
_BURST_CLIENT = r"""
import ipaddress, json, signal, sys, urllib.request
signal.alarm(120)
url, count = sys.argv[1], int(sys.argv[2])
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
first = ipaddress.IPv4Address("10.0.1.1")
for n in range(count):
    ip = str(first + n)
    body = json.dumps({"ip": ip}).encode()
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"}, method="POST")
    try:
        with opener.open(request, timeout=30) as response:
            acknowledged = 200 <= response.status < 300
    except Exception as error:
        print("stopped:", type(error).__name__, error, file=sys.stderr, flush=True)
        break
    if not acknowledged:
        break
    print(ip, flush=True)
"""


def burst_ips(count: int) -> list[str]:
    first = ipaddress.IPv4Address("10.0.1.1")
    return [str(first + n) for n in range(count)]


def assert_synced(lab: Lab, expected: set) -> None:
    """Wait until the switch holds exactly `expected`: before that, a change is not yet pushed to it."""
    assert sorted(wait_for_table(lab, expected)) == sorted(expected), lab.controller_log()


def restart(lab: Lab, kill9: bool = False) -> None:
    lab.restart_controller(kill9=kill9)
    lab.wait_connected()
    wait_for_api(lab)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_restart_keeps_the_registry_built_through_rest_its_flows_and_member_traffic(lab, runtime):
    members, _ = lab.add_typical_cluster()
    config_path = write_config(lab, "clusters: []\n")
    lab.start_controller(runtime, config_path)
    lab.wait_connected()
    wait_for_api(lab)
    assert_synced(lab, expected_table(config_path, []))
    m1, m2, m3 = members
    api_ok(lab, "POST", "/nlb/clusters", {"name": "web", "cluster_ip": VIP, "arp": "relay"})
    api_ok(lab, "POST", "/nlb/clusters/web/members", {"ip": m1.ip})
    api_ok(lab, "POST", "/nlb/clusters/web/members", {"ip": m2.ip, "mac": "02:aa:00:00:00:0c"})
    api_ok(lab, "POST", "/nlb/clusters/web/members", {"ip": m3.ip, "dpid": DPID, "port": m3.ofport})
    for src, dst in permutations(members, 2):
        assert lab.ping(src, dst.ip), f"{src.name} -> {dst.name} before the restart"
    expected_yaml = (
        f"clusters:\n  - name: web\n    cluster_ip: {VIP}\n    arp: relay\n    members:\n"
        f"      - ip: {m1.ip}\n      - {{ip: {m2.ip}, mac: '02:aa:00:00:00:0c'}}\n"
        f"      - {{ip: {m3.ip}, dpid: '{DPID}', port: {m3.ofport}}}\n"
    )
    expected = expected_table(write_config(lab, expected_yaml, "expected.yaml"), members)
    assert_synced(lab, expected)
    before = registry_and_ports(lab)

    restart(lab)

    assert_synced(lab, expected)
    assert registry_and_ports(lab) == before  # how each location was found and when may differ
    assert "registry from state file" in lab.controller_log()
    failed = [(s.name, d.name) for s, d in permutations(members, 2) if not lab.ping(s, d.ip, count=2)]
    assert failed == []
    assert lab.neigh(m1)[m2.ip].lladdr == "02:aa:00:00:00:0c" and lab.neigh(m2)[m1.ip].lladdr == dm(m1)


def registry_and_ports(lab: Lab) -> list[dict]:
    """GET /nlb/clusters, each member's `located` reduced to the switch ports it names."""
    clusters = api_ok(lab, "GET", "/nlb/clusters")["clusters"]
    for cluster in clusters:
        for member in cluster["members"]:
            member["located"] = [(spot["dpid"], spot["port"]) for spot in member["located"]]
    return clusters


def read_lines(pipe, lines: queue.Queue) -> None:
    with pipe:
        for line in pipe:
            lines.put(line.strip())


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_kill_9_during_a_burst_of_writes_loses_no_acknowledged_change(lab, runtime):
    config_path = write_config(lab, WEB_WITHOUT_MEMBERS)
    lab.start_controller(runtime, config_path)
    lab.wait_connected()
    wait_for_api(lab)
    argv = [sys.executable, "-c", _BURST_CLIENT, f"{API_URL}/nlb/clusters/web/members", str(BURST_SIZE)]
    client = lab._spawn(lab.switch_netns, argv, "burst client")
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=read_lines, args=(client.stdout, lines), daemon=True)
    reader.start()
    try:
        acknowledged = [lines.get(timeout=30)]
    except queue.Empty:
        raise AssertionError(f"the burst never got going:\n{lab.controller_log()}") from None
    time.sleep(0.5)  # the kill lands wherever the burst is by then: no poll can choose that moment

    lab.stop_controller(kill9=True)

    assert client.wait(timeout=60) == 0
    reader.join(timeout=10)
    while not lines.empty():
        acknowledged.append(lines.get())
    assert 1 < len(acknowledged) < BURST_SIZE, "the kill must land during the burst, or it proves nothing"
    assert acknowledged == burst_ips(len(acknowledged)), "acknowledged in order"
    saved = load_state(str(state_file(config_path)))  # parses and validates, or raises
    saved_ips = [m.ip for m in saved.cluster_named("web").members]
    assert saved_ips[: len(acknowledged)] == acknowledged
    assert len(saved_ips) - len(acknowledged) <= 1, "at most the one write in flight was saved unanswered"

    restart(lab)

    members = api_ok(lab, "GET", "/nlb/clusters/web/members")["members"]
    assert [m["ip"] for m in members] == saved_ips
    assert [m["mac"] for m in members] == [dedicated_mac(ip) for ip in saved_ips]
    assert_synced(lab, expected_table(state_file(config_path), []))
    assert api_ok(lab, "POST", "/nlb/clusters/web/members", {"ip": "10.0.9.1"})["ip"] == "10.0.9.1"


CORRUPT_STATES = {
    "invalid-yaml": "clusters: [\n",
    "duplicate-key": f"clusters:\n  - name: web\n    cluster_ip: {VIP}\n    name: db\n",
}


@pytest.mark.parametrize("content", CORRUPT_STATES.values(), ids=list(CORRUPT_STATES))
@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_corrupt_state_file_stops_the_start_naming_it_and_is_never_replaced(lab, runtime, content):
    config_path = write_config(lab, cluster_yaml())
    state = state_file(config_path)
    state.write_text(content)
    before = sorted(p.name for p in lab.workdir.iterdir())

    process = lab.start_controller(runtime, config_path)

    assert process.wait(timeout=60) != 0
    log = lab.controller_log()
    assert f"{state}: " in log and "the state file is never replaced silently" in log, log
    assert state.read_bytes() == content.encode()
    assert sorted(p.name for p in lab.workdir.iterdir() if not p.name.startswith("controller-")) == sorted(
        p for p in before if not p.startswith("controller-")
    ), "no file was written beside it"
    assert app_table(lab) == []


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_the_yaml_config_seeds_the_registry_on_first_start_only_then_the_state_file_wins(lab, runtime):
    members, _ = lab.add_typical_cluster()
    m1, m2, m3 = members
    config_path = write_config(lab, cluster_yaml())
    lab.start_controller(runtime, config_path)
    lab.wait_connected()
    wait_for_api(lab)
    assert "registry from config (first start)" in lab.controller_log()
    assert [c.name for c in load_state(str(state_file(config_path))).clusters] == ["web"]
    assert_synced(lab, expected_table(config_path, members))
    api_ok(lab, "DELETE", f"/nlb/clusters/web/members/{m3.ip}")
    db = "  - name: db\n    cluster_ip: 10.0.0.200\n    members:\n      - ip: 10.0.0.21\n"
    write_config(lab, cluster_yaml() + db)

    restart(lab)

    clusters = api_ok(lab, "GET", "/nlb/clusters")["clusters"]
    assert [(c["name"], [m["ip"] for m in c["members"]]) for c in clusters] == [("web", [m1.ip, m2.ip])]
    log = lab.controller_log()
    assert f"the state file holds the registry; clusters in {config_path} are not applied" in log, log
    without_m3 = write_config(lab, cluster_yaml(member_dips=(m1.addresses[0], m2.addresses[0])), "expected.yaml")
    assert_synced(lab, expected_table(without_m3, [m1, m2]))
    assert not [f for f in lab.dump_flows(APP_COOKIES) if (f.cookie >> 32) & 0xFFFF == cluster_id("db")]

    lab.stop_controller()
    state_file(config_path).unlink()
    restart(lab)

    clusters = api_ok(lab, "GET", "/nlb/clusters")["clusters"]
    assert [(c["name"], len(c["members"])) for c in clusters] == [("web", 3), ("db", 1)]
    assert "registry from config (first start)" in lab.controller_log()
    assert [c.name for c in load_state(str(state_file(config_path))).clusters] == ["web", "db"]
    assert_synced(lab, expected_table(config_path, members))
