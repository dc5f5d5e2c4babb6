"""The registry across controller restarts: the SQLite store (flows/store.py), live in the lab.

What the API acknowledged is committed before the answer leaves, so neither a restart nor a `kill -9` in
the middle of a burst of writes loses it; an older version's YAML state file is imported on the first
start and kept; a state file that cannot be read stops the start and is left byte for byte as it is; the
YAML config seeds the registry only while no state file exists.
"""

from __future__ import annotations

import hashlib
import ipaddress
import queue
import random
import sqlite3
import sys
import threading
import time
from itertools import permutations
from pathlib import Path

import pytest
import yaml

from flows.addresses import dedicated_mac
from flows.config import parse_config
from flows.cookies import cluster_id
from flows.model import Registry
from flows.state import YAML_STATE_FILE_NAME, cluster_data
from flows.store import RegistryStore
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
    saved_registry,
    state_file,
    wait_for_api,
    wait_for_table,
    write_config,
)
from tests.netlab import Lab

DPID = "0000000000000001"
WEB_WITHOUT_MEMBERS = f"clusters:\n  - name: web\n    cluster_ip: {VIP}\n"
BURST_CLIENTS = 3  # each keeps one POST in flight, so up to 3 changes are in flight at the kill
BURST_SIZE = 3000  # per client: many seconds of writes in the lab; the kill comes well before the end

# POSTs members FIRST, FIRST+1, ... one after another as fast as the API answers; prints each IP once its
# 2xx has arrived, and stops at the first failure (the controller gone). Ends by itself after 120 s.
_BURST_CLIENT = r"""
import ipaddress, json, signal, sys, urllib.request
signal.alarm(120)
url, first, count = sys.argv[1], ipaddress.IPv4Address(sys.argv[2]), int(sys.argv[3])
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
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


def burst_ips(client: int, count: int) -> list[str]:
    """Client c's IPs: from 10.0.(1 + 16c).1, apart from the others' and the VIP's, and their cookie ids too."""
    first = ipaddress.IPv4Address(f"10.0.{1 + 16 * client}.1")
    return [str(first + n) for n in range(count)]


def assert_synced(lab: Lab, expected: set) -> None:
    """Wait until the switch holds exactly `expected`: before that, a change is not yet pushed to it."""
    assert sorted(wait_for_table(lab, expected)) == sorted(expected), lab.controller_log()


def restart(lab: Lab, kill9: bool = False) -> None:
    lab.restart_controller(kill9=kill9)
    lab.wait_connected()
    wait_for_api(lab)


def registry_yaml(registry: Registry) -> str:
    """A registry in the config's `clusters:` format: what versions before the store wrote as state file."""
    header = "# nlbflow registry, written by the controller on every change; edit only while it is stopped.\n"
    return header + yaml.safe_dump({"clusters": [cluster_data(c) for c in registry.clusters]}, sort_keys=False)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


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
    expected_path = write_config(lab, expected_yaml, "expected.yaml")
    expected = expected_table(expected_path, members)
    assert_synced(lab, expected)
    before = registry_and_ports(lab)

    restart(lab)

    assert_synced(lab, expected)
    assert registry_and_ports(lab) == before  # how each location was found and when may differ
    assert "registry from state file" in lab.controller_log()
    assert saved_registry(state_file(config_path)) == parse_config(expected_yaml).registry
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
    clients, readers, lines = [], [], []
    for client in range(BURST_CLIENTS):
        first = burst_ips(client, 1)[0]
        argv = [sys.executable, "-c", _BURST_CLIENT, f"{API_URL}/nlb/clusters/web/members", first, str(BURST_SIZE)]
        clients.append(lab._spawn(lab.switch_netns, argv, f"burst client {client}"))
        lines.append(queue.Queue())
        readers.append(threading.Thread(target=read_lines, args=(clients[-1].stdout, lines[-1]), daemon=True))
        readers[-1].start()
    acknowledged: list[list[str]] = []
    for client in range(BURST_CLIENTS):
        try:
            acknowledged.append([lines[client].get(timeout=30)])
        except queue.Empty:
            raise AssertionError(f"burst client {client} never got going:\n{lab.controller_log()}") from None
    time.sleep(random.uniform(0.2, 1.5))  # the kill lands wherever the burst is then: no poll chooses it

    lab.stop_controller(kill9=True)

    for client in range(BURST_CLIENTS):
        assert clients[client].wait(timeout=60) == 0
        readers[client].join(timeout=10)
        while not lines[client].empty():
            acknowledged[client].append(lines[client].get())
    assert all(1 < len(ips) < BURST_SIZE for ips in acknowledged), "the kill must land during the burst"
    wal = Path(f"{state_file(config_path)}-wal")
    assert wal.stat().st_size > 0, "the kill left the WAL as it was: the restart recovers from it"

    restart(lab)  # the controller itself reads the database as the kill left it

    saved_ips = [m["ip"] for m in api_ok(lab, "GET", "/nlb/clusters/web/members")["members"]]
    for client, ips in enumerate(acknowledged):
        assert ips == burst_ips(client, len(ips)), "each client's changes acknowledged in order"
        kept = [ip for ip in saved_ips if ip in set(burst_ips(client, BURST_SIZE))]
        assert kept[: len(ips)] == ips, f"client {client}: every acknowledged change is saved, in order"
        assert len(kept) - len(ips) <= 1, "at most the one write in flight was saved unanswered"
    saved = saved_registry(state_file(config_path))
    assert [m.ip for m in saved.cluster_named("web").members] == saved_ips
    assert [m.dedicated_mac for m in saved.cluster_named("web").members] == [dedicated_mac(ip) for ip in saved_ips]
    assert_synced(lab, expected_table(write_config(lab, registry_yaml(saved), "expected.yaml"), []))
    assert api_ok(lab, "POST", "/nlb/clusters/web/members", {"ip": "10.0.200.1"})["ip"] == "10.0.200.1"


@pytest.mark.parametrize("layout", ["old-default", "configured"])
@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_yaml_state_file_of_an_older_version_is_imported_on_the_first_start_and_kept(lab, runtime, layout):
    members, _ = lab.add_typical_cluster()
    m1, m2, m3 = members
    saved_yaml = (
        f"clusters:\n  - name: web\n    cluster_ip: {VIP}\n    arp: relay\n    members:\n"
        f"      - ip: {m1.ip}\n      - {{ip: {m2.ip}, mac: '02:aa:00:00:00:0c'}}\n"
        f"      - {{ip: {m3.ip}, dpid: '{DPID}', port: {m3.ofport}}}\n"
        "  - name: db\n    cluster_ip: 10.0.0.200\n    mode: multicast\n    members:\n      - ip: 10.0.0.21\n"
    )
    saved = parse_config(saved_yaml).registry
    if layout == "old-default":  # no state_file in the config: the older default name beside it
        config_path = write_config(lab, cluster_yaml())
        yaml_path, database = lab.workdir / YAML_STATE_FILE_NAME, state_file(config_path)
    else:  # a configured state_file keeps its name, whatever its extension, and holds the database
        config_path = write_config(lab, "controller:\n  state_file: registry.yaml\n" + cluster_yaml())
        yaml_path = database = lab.workdir / "registry.yaml"
    yaml_path.write_text(registry_yaml(saved))
    yaml_hash = sha256(yaml_path)

    lab.start_controller(runtime, config_path)
    lab.wait_connected()
    wait_for_api(lab)

    clusters = api_ok(lab, "GET", "/nlb/clusters")["clusters"]
    shown = [
        {**{k: v for k, v in c.items() if k != "members"}, "members": [m["ip"] for m in c["members"]]} for c in clusters
    ]
    assert shown == [
        {**{k: v for k, v in cluster_data(c).items() if k != "members"}, "members": [m.ip for m in c.members]}
        for c in saved.clusters
    ], "the registry served is the YAML file's"
    assert api_ok(lab, "GET", f"/nlb/clusters/web/members/{m2.ip}")["mac"] == "02:aa:00:00:00:0c"
    kept = Path(f"{yaml_path}.imported")
    assert sha256(kept) == yaml_hash, "the YAML file is kept as it was, renamed beside it"
    assert database.read_bytes()[:16] == b"SQLite format 3\x00"
    assert layout == "configured" or not yaml_path.exists()
    log = lab.controller_log()
    assert f"registry from the YAML state file {yaml_path} (imported, the YAML file kept as {kept})" in log, log
    assert f"kept in {database}" in log, log
    assert saved_registry(database) == saved
    assert_synced(lab, expected_table(write_config(lab, saved_yaml, "expected.yaml"), members))

    api_ok(lab, "DELETE", "/nlb/clusters/db")
    restart(lab)

    assert [c["name"] for c in api_ok(lab, "GET", "/nlb/clusters")["clusters"]] == ["web"], "imported once"
    assert "registry from state file" in lab.controller_log()
    assert sha256(kept) == yaml_hash


def hand_edited(path: Path, statement: str) -> None:
    """A valid database, then one statement run on it as with the sqlite3 shell."""
    RegistryStore.create(str(path), parse_config(cluster_yaml()).registry).close()
    connection = sqlite3.connect(path)
    connection.execute(statement)
    connection.commit()
    connection.close()


def truncated(path: Path) -> None:
    clusters = "".join(
        f"  - name: c{n}\n    cluster_ip: 10.20.{n}.100\n    members:\n"
        + "".join(f"      - ip: 10.{n}.0.{m}\n" for m in range(1, 9))
        for n in range(60)
    )
    RegistryStore.create(str(path), parse_config("clusters:\n" + clusters).registry).close()
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


CORRUPT_STATES = {
    "invalid-yaml": (lambda p: p.write_text("clusters: [\n"), "invalid YAML"),
    "duplicate-key": (
        lambda p: p.write_text(f"clusters:\n  - name: web\n    cluster_ip: {VIP}\n    name: db\n"),
        "duplicate key",
    ),
    "truncated-database": (truncated, "database disk image is malformed"),
    "row-failing-validation": (
        lambda p: hand_edited(p, "UPDATE clusters SET cluster_mac = '01:00:00:00:00:01'"),
        "clusters[name='web'].cluster_mac",
    ),
}


def state_files(lab: Lab) -> tuple[list[str], dict[str, str]]:
    """The names in the lab's folder but the controller's logs, and the hash of each state file there."""
    names = sorted(p.name for p in lab.workdir.iterdir() if not p.name.startswith("controller-"))
    return names, {name: sha256(lab.workdir / name) for name in names if "state" in name}


@pytest.mark.parametrize("content", CORRUPT_STATES.values(), ids=list(CORRUPT_STATES))
@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_corrupt_state_file_stops_the_start_naming_it_and_is_never_replaced(lab, runtime, content):
    make, problem = content
    config_path = write_config(lab, cluster_yaml())
    state = state_file(config_path)
    make(state)
    before = state_files(lab)

    process = lab.start_controller(runtime, config_path)

    assert process.wait(timeout=60) == 2
    log = lab.controller_log()
    assert f"nlbflow: {state}: " in log and problem in log and "the state file is never replaced silently" in log
    assert state_files(lab) == before, "the file is left byte for byte, and no file was written beside it"
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
    assert [c.name for c in saved_registry(state_file(config_path)).clusters] == ["web"]
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
    for name in ("", "-wal", "-shm"):  # the database and SQLite's files of it, as docs/configuration.md says
        Path(f"{state_file(config_path)}{name}").unlink(missing_ok=True)
    restart(lab)

    clusters = api_ok(lab, "GET", "/nlb/clusters")["clusters"]
    assert [(c["name"], len(c["members"])) for c in clusters] == [("web", 3), ("db", 1)]
    assert "registry from config (first start)" in lab.controller_log()
    assert [c.name for c in saved_registry(state_file(config_path)).clusters] == ["web", "db"]
    assert_synced(lab, expected_table(config_path, members))
