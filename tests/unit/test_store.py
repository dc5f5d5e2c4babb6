"""The SQLite store (flows/store.py): exact round trips, writes in proportion to the change, the import of
an older version's YAML state file, kill -9 while writing, and storage it refuses without touching it."""

from __future__ import annotations

import copy
import hashlib
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
from dataclasses import astuple, replace
from pathlib import Path

import pytest
import yaml

from flows.config import ConfigError, config_from_data, parse_config
from flows.model import ArpMode, Fabric, Registry, SwitchConfig
from flows.registry_ops import add_member, remove_member, update_member
from flows.state import cluster_data
from flows.store import (
    ClusterRow,
    RegistryStore,
    cluster_row,
    member_rows,
    open_registry,
    plan_writes,
    remove_stale_temp_files,
    switch_rows,
)
from tests.unit.example_cluster import web_config

ROOT = Path(__file__).resolve().parents[2]
NEVER_REPLACED = "the state file is never replaced silently: repair or remove it"
ARP_MODES = [mode.value for mode in ArpMode]  # switch, proxy and relay


# --- random registries ---------------------------------------------------------------------------------


def random_member(rng: random.Random, cluster_number: int, used: set[str]) -> dict:
    while True:
        ip = f"10.{cluster_number}.{rng.randrange(4)}.{rng.randrange(1, 60)}"
        if ip not in used:
            used.add(ip)
            break
    member: dict = {"ip": ip}
    if rng.random() < 0.3:
        member["mac"] = f"02:aa:{rng.randrange(256):02x}:{rng.randrange(256):02x}:{rng.randrange(256):02x}:01"
    if rng.random() < 0.3:
        member.update(dpid=rng.randrange(1, 4), port=rng.randrange(1, 200))
    if rng.random() < 0.3:  # more addresses: IPv6 ones, and an IPv4 one sometimes
        more = [f"fd00:{cluster_number}::{rng.randrange(1, 60):x}", f"10.{cluster_number}.9.{rng.randrange(1, 60)}"]
        member["ips"] = [address for address in more[: rng.randrange(1, 3)] if address not in used]
        used.update(member["ips"])
    return member


def random_cluster(rng: random.Random, number: int, used: set[str]) -> dict:
    cluster = {
        "name": f"c{number}",
        "cluster_ip": f"10.200.{number}.100",
        "mode": rng.choice(["unicast", "unicast", "multicast", "igmp"]),
        "arp": rng.choice(ARP_MODES),
        "members": [random_member(rng, number, used) for _ in range(rng.randrange(6))],
    }
    if rng.random() < 0.3:
        cluster["cluster_ips"] = [f"fd00:200:{number}::100", f"10.201.{number}.100"][: rng.randrange(1, 3)]
    return cluster


def registry_of(data: list[dict]) -> Registry:
    return config_from_data({"clusters": data}, "generated").registry


def mutated(rng: random.Random, data: list[dict]) -> list[dict]:
    """data with one random change of the kinds the API and `apply` make; the input is left as it is."""
    data = copy.deepcopy(data)
    used = {
        address
        for cluster in data
        for member in cluster["members"]
        for address in (member["ip"], *member.get("ips", []))
    }
    kind = rng.choice(
        ["add cluster", "remove cluster", "swap clusters", "cluster field"] + ["member"] * 4 + ["move member"]
    )
    if kind == "add cluster" or not data:
        free = sorted({n for n in range(20)} - {int(cluster["name"][1:]) for cluster in data})
        data.insert(rng.randrange(len(data) + 1), random_cluster(rng, rng.choice(free), used))
    elif kind == "remove cluster":
        data.pop(rng.randrange(len(data)))
    elif kind == "swap clusters":
        i, j = rng.randrange(len(data)), rng.randrange(len(data))
        data[i], data[j] = data[j], data[i]
    elif kind == "cluster field":
        cluster = rng.choice(data)
        field = rng.choice(["arp", "mode", "cluster_ips"])
        if field == "cluster_ips":
            number = int(cluster["name"][1:])
            cluster[field] = rng.sample([f"fd00:200:{number}::100", f"10.201.{number}.100"], rng.randrange(3))
        else:
            cluster[field] = rng.choice(ARP_MODES if field == "arp" else ["unicast", "multicast", "igmp"])
    elif kind == "move member":
        source, target = rng.choice(data), rng.choice(data)
        if source["members"]:
            member = source["members"].pop(rng.randrange(len(source["members"])))
            target["members"].insert(rng.randrange(len(target["members"]) + 1), member)
    else:
        cluster = rng.choice(data)
        members = cluster["members"]
        action = rng.choice(["add", "remove", "change", "swap"])
        number = int(cluster["name"][1:])
        if action == "add" or not members:
            members.insert(rng.randrange(len(members) + 1), random_member(rng, number, used))
        elif action == "remove":
            members.pop(rng.randrange(len(members)))
        elif action == "change":
            index = rng.randrange(len(members))
            members[index] = {**random_member(rng, number, set()), "ip": members[index]["ip"]}
        else:
            i, j = rng.randrange(len(members)), rng.randrange(len(members))
            members[i], members[j] = members[j], members[i]
    return data


def random_steps(seed: int, steps: int) -> list[Registry]:
    """A random start and a sequence of valid registries, each one change (or a few) from the last."""
    rng = random.Random(seed)
    used: set[str] = set()
    data = [random_cluster(rng, number, used) for number in rng.sample(range(20), rng.randrange(1, 6))]
    registries = [registry_of(data)]
    while len(registries) < steps:
        candidate = data
        for _ in range(rng.choice([1, 1, 1, 2, 3])):
            candidate = mutated(rng, candidate)
        try:
            registries.append(registry_of(candidate))
        except ConfigError:  # a clash the generator made (a pinned port, a cookie id): not a change to try
            continue
        data = candidate
    return registries


def stored_rows(connection: sqlite3.Connection) -> tuple[set, set]:
    return set(connection.execute("SELECT * FROM clusters")), set(connection.execute("SELECT * FROM members"))


def rows_of(registry: Registry) -> tuple[dict, dict]:
    """The rows a registry is stored as, by key (the functions plan_writes uses, checked independently by
    stored_rows against a database created from scratch)."""
    names = [None, *(cluster.name for cluster in registry.clusters)]
    clusters = {
        cluster.name: ClusterRow(
            cluster.name,
            names[i],
            cluster.cluster_ip,
            cluster.cluster_mac,
            cluster.mode.value,
            cluster.arp.value,
            " ".join(cluster.cluster_ips),
        )
        for i, cluster in enumerate(registry.clusters)
    }
    members = {(row.cluster, row.ip): row for cluster in registry.clusters for row in member_rows(cluster)}
    return clusters, members


# --- plan_writes and the round trip --------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(12))
def test_every_change_of_a_random_sequence_is_stored_exactly_and_writes_only_the_rows_it_changes(tmp_path, seed):
    registries = random_steps(seed, 40)
    store = RegistryStore.create(str(tmp_path / "state.db"), registries[0])
    for old, new in zip(registries, registries[1:]):
        writes = store.save(new)

        old_clusters, old_members = rows_of(old)
        new_clusters, new_members = rows_of(new)
        assert set(writes.clusters_deleted) == old_clusters.keys() - new_clusters.keys()
        assert set(writes.clusters_inserted) == {new_clusters[n] for n in new_clusters.keys() - old_clusters.keys()}
        assert set(writes.clusters_updated) == {
            row for name, row in new_clusters.items() if name in old_clusters and old_clusters[name] != row
        }
        kept = {key for key in old_members if key[0] in new_clusters}
        assert set(writes.members_deleted) == kept - new_members.keys()
        assert set(writes.members_inserted) == {row for key, row in new_members.items() if key not in old_members}
        assert set(writes.members_updated) == {
            row for key, row in new_members.items() if key in old_members and old_members[key] != row
        }
        reopened = RegistryStore.open(store.path)
        assert reopened.registry == new
        fresh = RegistryStore.create(str(tmp_path / "fresh.db"), new)
        assert stored_rows(reopened.connection) == stored_rows(fresh.connection)
        for other in (reopened, fresh):
            other.close()
    store.close()


def test_an_unchanged_registry_writes_nothing_and_an_empty_one_round_trips(tmp_path):
    registry = web_config(pinned=True).registry
    assert plan_writes(registry, registry).rows == 0
    assert plan_writes(registry, Registry(clusters=tuple(registry.clusters))).rows == 0
    store = RegistryStore.create(str(tmp_path / "state.db"), Registry())
    assert RegistryStore.open(store.path).registry == Registry()


def test_a_dpid_beyond_a_signed_64_bit_integer_round_trips(tmp_path):
    text = (
        "clusters: [{name: web, cluster_ip: 10.0.0.100, members: [{ip: 10.0.0.11, dpid: 0xffffffffffffffff, port: 7}]}]"
    )
    registry = parse_config(text).registry
    RegistryStore.create(str(tmp_path / "state.db"), registry).close()
    assert RegistryStore.open(str(tmp_path / "state.db")).registry == registry


def test_every_arp_mode_round_trips_and_a_change_of_mode_rewrites_only_that_clusters_row(tmp_path):
    text = (
        "clusters: [{name: web, cluster_ip: 10.0.0.100, arp: switch, members: [{ip: 10.0.0.11}, {ip: 10.0.0.12}]},"
        " {name: app, cluster_ip: 10.0.1.100, arp: relay}, {name: db, cluster_ip: 10.0.2.100, arp: proxy}]"
    )
    registry = parse_config(text).registry
    store = RegistryStore.create(str(tmp_path / "state.db"), registry)
    assert [cluster.arp for cluster in RegistryStore.open(store.path).registry.clusters] == [
        ArpMode.SWITCH,
        ArpMode.RELAY,
        ArpMode.PROXY,
    ]
    assert [row[0] for row in store.connection.execute("SELECT arp FROM clusters ORDER BY name")] == [
        "relay",
        "proxy",
        "switch",
    ]
    changed = parse_config(
        text.replace("arp: switch", "arp: was").replace("arp: proxy", "arp: switch").replace("was", "proxy")
    )
    writes = store.save(changed.registry)
    assert sorted((row.name, row.arp) for row in writes.clusters_updated) == [("db", "switch"), ("web", "proxy")]
    assert writes.rows == 2
    assert RegistryStore.open(store.path).registry == changed.registry
    store.close()


MORE_ADDRESSES = """
clusters:
  - name: web
    cluster_ip: 10.0.0.100
    cluster_ips: [FD00:10:0::100, 10.0.1.100]
    members:
      - {ip: 10.0.0.11, ips: [fd00:10::11, 10.0.1.11], dpid: 1, port: 3}
      - {ip: 10.0.0.12}
  - name: v6
    cluster_ip: fd00:20::100
    cluster_mac: 03:bf:00:00:20:00
    mode: multicast
    members: [{ip: 10.0.2.11, ips: [fd00:20::11], mac: 52:54:00:00:02:0b}]
"""


def test_more_addresses_of_either_family_and_an_ipv6_primary_vip_round_trip(tmp_path):
    registry = parse_config(MORE_ADDRESSES).registry
    store = RegistryStore.create(str(tmp_path / "state.db"), registry)
    reopened = RegistryStore.open(store.path)
    assert reopened.registry == registry
    web, v6 = reopened.registry.clusters
    assert (web.vips, web.members[0].addresses, web.members[1].ips) == (
        ("10.0.0.100", "fd00:10::100", "10.0.1.100"),
        ("10.0.0.11", "fd00:10::11", "10.0.1.11"),
        (),
    )
    assert (v6.cluster_ip, v6.members[0].ips) == ("fd00:20::100", ("fd00:20::11",))
    assert sorted(store.connection.execute("SELECT name, cluster_ips FROM clusters")) == [
        ("v6", ""),
        ("web", "fd00:10::100 10.0.1.100"),
    ]
    assert sorted(store.connection.execute("SELECT ip, ips FROM members")) == [
        ("10.0.0.11", "fd00:10::11 10.0.1.11"),
        ("10.0.0.12", ""),
        ("10.0.2.11", "fd00:20::11"),
    ]
    for opened in (store, reopened):
        opened.close()


def test_changing_only_a_members_addresses_or_a_clusters_writes_its_one_row(tmp_path):
    store = RegistryStore.create(str(tmp_path / "state.db"), parse_config(MORE_ADDRESSES).registry)
    registry = update_member(store.registry, "web", "10.0.0.12", {"ips": ["fd00:10::12"]})[0]
    statements = traced_writes(store, registry)
    assert [s.split()[0] for s in statements] == ["BEGIN", "UPDATE", "COMMIT"], statements
    assert store.connection.execute("SELECT ips FROM members WHERE ip = '10.0.0.12'").fetchall() == [("fd00:10::12",)]
    registry = update_member(store.registry, "web", "10.0.0.11", {"ips": []})[0]
    writes = store.save(registry)
    assert [(row.ip, row.ips) for row in writes.members_updated] == [("10.0.0.11", "")] and writes.rows == 1
    web = replace(store.registry.clusters[0], cluster_ips=("fd00:10::100",))
    writes = store.save(Registry(clusters=(web, store.registry.clusters[1])))
    assert [(row.name, row.cluster_ips) for row in writes.clusters_updated] == [("web", "fd00:10::100")]
    assert writes.rows == 1
    assert RegistryStore.open(store.path).registry == store.registry
    store.close()


def large_registry() -> Registry:
    """100 clusters of 10 members."""
    clusters = [
        {"name": f"c{n}", "cluster_ip": f"10.200.{n}.100", "members": [{"ip": f"10.{n}.0.{m}"} for m in range(1, 11)]}
        for n in range(100)
    ]
    return registry_of(clusters)


def traced_writes(store: RegistryStore, registry: Registry) -> list[str]:
    """The SQL statements one save runs, as SQLite traces them."""
    statements: list[str] = []
    store.connection.set_trace_callback(statements.append)
    try:
        store.save(registry)
    finally:
        store.connection.set_trace_callback(None)
    return statements


def test_a_one_member_change_of_a_large_registry_writes_one_row_in_one_transaction(tmp_path):
    store = RegistryStore.create(str(tmp_path / "state.db"), large_registry())
    changes = {
        "add": lambda r: add_member(r, "c50", {"ip": "10.50.0.99"})[0],
        "update": lambda r: update_member(r, "c50", "10.50.0.3", {"dpid": 1, "port": 9})[0],
        "remove the last": lambda r: remove_member(r, "c50", "10.50.0.99")[0],
    }
    for name, change in changes.items():
        registry = change(store.registry)
        statements = traced_writes(store, registry)
        writes = [s for s in statements if s.split()[0] in ("INSERT", "UPDATE", "DELETE")]
        assert len(writes) == 1, (name, statements)
        assert statements[0] == "BEGIN IMMEDIATE" and statements[-1] == "COMMIT", (name, statements)
        assert RegistryStore.open(store.path).registry == registry


def test_removing_a_member_from_the_middle_relinks_one_neighbour_and_renumbers_nothing(tmp_path):
    store = RegistryStore.create(str(tmp_path / "state.db"), large_registry())
    registry = remove_member(store.registry, "c50", "10.50.0.2")[0]
    writes = store.save(registry)
    assert writes.members_deleted == (("c50", "10.50.0.2"),)
    assert [(row.ip, row.previous) for row in writes.members_updated] == [("10.50.0.3", "10.50.0.1")]
    assert writes.rows == 2
    assert RegistryStore.open(store.path).registry == registry


def test_removing_a_cluster_is_two_statements_and_relinks_the_next_cluster(tmp_path):
    store = RegistryStore.create(str(tmp_path / "state.db"), large_registry())
    registry = Registry(clusters=tuple(c for c in store.registry.clusters if c.name != "c0"))
    statements = traced_writes(store, registry)
    assert [s.split()[0] for s in statements] == ["BEGIN", "DELETE", "DELETE", "UPDATE", "COMMIT"], statements
    assert RegistryStore.open(store.path).registry == registry


# --- kill -9 while writing -----------------------------------------------------------------------------

SAVE_IN_A_LOOP = textwrap.dedent(
    """
    import sys
    from flows.config import config_from_data
    from flows.store import RegistryStore
    store = RegistryStore.open(sys.argv[1])
    for n in range(1, 100000):
        clusters = [{"name": "web", "cluster_ip": "10.200.0.100",
                     "members": [{"ip": f"10.0.{m // 250}.{m % 250 + 1}"} for m in range(n)]}]
        store.save(config_from_data({"clusters": clusters}, "loop").registry)
        print(n, flush=True)  # acknowledged: committed
    """
)


def killed_while_saving(program: str, path) -> int:
    """Run a program that saves in a loop (printing each committed save), kill -9 it at a moment the test
    does not choose, and return how many saves it acknowledged."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    saver = subprocess.Popen([sys.executable, "-c", program, str(path)], env=env, stdout=subprocess.PIPE, text=True)
    acknowledged = 0
    stop_after = random.Random().randrange(20, 200)
    for line in saver.stdout:
        acknowledged = int(line)
        if acknowledged >= stop_after:
            break
    saver.kill()
    saver.wait()
    for line in saver.stdout:  # what was committed and printed before the kill landed
        acknowledged = int(line)
    return acknowledged


def test_kill_9_while_saving_leaves_every_committed_change_and_nothing_half_written(tmp_path):
    path = tmp_path / "state.db"
    RegistryStore.create(str(path), registry_of([{"name": "web", "cluster_ip": "10.200.0.100"}])).close()
    acknowledged = killed_while_saving(SAVE_IN_A_LOOP, path)

    members = RegistryStore.open(str(path)).registry.cluster_named("web").members
    assert acknowledged <= len(members) <= acknowledged + 1, "every acknowledged change, at most one more"
    assert [m.ip for m in members] == [f"10.0.{m // 250}.{m % 250 + 1}" for m in range(len(members))]


KILLED_WHILE_CREATING = textwrap.dedent(
    """
    import os, signal, sys
    from flows.config import parse_config
    from flows.store import RegistryStore
    # kill -9 once the new database is complete in its temp file, just before the rename would publish it
    os.replace = lambda *args: os.kill(os.getpid(), signal.SIGKILL)
    RegistryStore.create(sys.argv[1], parse_config("clusters: [{name: new, cluster_ip: 10.9.9.9}]").registry)
    """
)


def test_a_crash_while_creating_leaves_no_state_only_a_temp_file_the_next_start_removes(tmp_path):
    path = tmp_path / "state.db"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    killed = subprocess.run([sys.executable, "-c", KILLED_WHILE_CREATING, str(path)], env=env, capture_output=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    (left,) = os.listdir(tmp_path)
    assert left.startswith(".state.db.") and left.endswith(".tmp"), left
    (tmp_path / "other.db.tmp").write_text("not ours")

    assert remove_stale_temp_files(str(path)) == [str(tmp_path / left)]
    opened = open_registry(str(path), registry_of([{"name": "web", "cluster_ip": "10.200.0.100"}]))
    assert opened.first_start, "the temp file is never the state: the config seeds the registry"
    assert sorted(os.listdir(tmp_path)) == ["other.db.tmp", "state.db", "state.db-shm", "state.db-wal"]


def test_the_databases_own_wal_and_shm_are_never_taken_for_temp_files(tmp_path):
    path = tmp_path / "state.db"
    store = RegistryStore.create(str(path), web_config().registry)
    store.save(remove_member(store.registry, "web", "10.0.0.11")[0])
    for stale in (".state.db.x1.tmp", ".state.db.x1.tmp-wal", ".state.db.x1.tmp-shm", ".state.db.x1.tmp-journal"):
        (tmp_path / stale).write_text("")
    assert len(remove_stale_temp_files(str(path))) == 4
    assert sorted(os.listdir(tmp_path)) == ["state.db", "state.db-shm", "state.db-wal"]
    assert [m.ip for m in RegistryStore.open(str(path)).registry.clusters[0].members] == ["10.0.0.12", "10.0.0.13"]


# --- which file, first start, and the import of a YAML state file ---------------------------------------


def yaml_state(registry: Registry) -> str:
    """A state file as the versions before the store wrote it (save_state): the config's `clusters:`."""
    header = "# nlbflow registry, written by the controller on every change; edit only while it is stopped.\n"
    return header + yaml.safe_dump({"clusters": [cluster_data(c) for c in registry.clusters]}, sort_keys=False)


def test_the_first_start_creates_the_database_from_the_config_and_the_next_one_reads_it(tmp_path):
    path = str(tmp_path / "state.db")
    configured = web_config(pinned=True).registry
    first = open_registry(path, configured)
    assert (first.first_start, first.config_ignored, first.store.registry) == (True, False, configured)
    first.store.save(remove_member(configured, "web", "10.0.0.12")[0])
    first.store.close()

    second = open_registry(path, configured)
    assert (second.first_start, second.config_ignored) == (False, True), "what the API removed stays removed"
    assert [m.ip for m in second.store.registry.clusters[0].members] == ["10.0.0.11", "10.0.0.13"]


def test_a_yaml_state_file_at_the_configured_path_is_imported_there_and_kept_beside_it(tmp_path):
    path = tmp_path / "state.yaml"  # a configured state_file: it keeps its name, whatever its extension
    registry = parse_config(
        "clusters:\n- {name: web, cluster_ip: 10.0.0.100, arp: relay, members: [{ip: 10.0.0.11, dpid: 1, port: 2}]}\n"
        "- {name: mc, cluster_ip: 10.0.1.100, mode: multicast, members: [{ip: 10.0.1.11, mac: '52:54:00:00:01:0b'}]}\n"
    ).registry
    text = yaml_state(registry)
    path.write_text(text)

    opened = open_registry(str(path), Registry())

    assert (opened.imported, opened.kept_as, opened.first_start) == (str(path), f"{path}.imported", False)
    assert opened.store.registry == registry
    assert Path(opened.kept_as).read_text() == text
    assert path.read_bytes()[:16] == b"SQLite format 3\x00"
    opened.store.close()
    again = open_registry(str(path), Registry())
    assert (again.imported, again.store.registry) == (None, registry), "imported once"


def test_the_old_default_yaml_state_file_is_imported_into_the_new_default_and_renamed(tmp_path):
    yaml_path, path = tmp_path / "nlbflow-state.yaml", tmp_path / "nlbflow-state.db"
    registry = web_config(pinned=True).registry
    yaml_path.write_text(yaml_state(registry))
    before = hashlib.sha256(yaml_path.read_bytes()).hexdigest()

    opened = open_registry(str(path), web_config().registry, str(yaml_path))

    assert (opened.imported, opened.kept_as) == (str(yaml_path), f"{yaml_path}.imported")
    assert opened.store.registry == registry and opened.config_ignored
    assert not yaml_path.exists()
    assert hashlib.sha256(Path(opened.kept_as).read_bytes()).hexdigest() == before
    opened.store.close()
    again = open_registry(str(path), web_config().registry, str(yaml_path))
    assert (again.imported, again.not_read, again.store.registry) == (None, None, registry)


def test_an_import_interrupted_after_the_database_was_in_place_is_finished_by_the_next_start(tmp_path):
    yaml_path, path = tmp_path / "nlbflow-state.yaml", tmp_path / "nlbflow-state.db"
    registry = web_config().registry
    yaml_path.write_text(yaml_state(registry))
    os.link(yaml_path, f"{yaml_path}.imported")  # what the import does first
    RegistryStore.create(str(path), registry).close()  # then the database; the kill lands before the unlink

    opened = open_registry(str(path), Registry(), str(yaml_path))

    assert (opened.imported, opened.not_read, opened.store.registry) == (None, None, registry)
    assert sorted(p.name for p in tmp_path.iterdir() if "state" in p.name and "-" not in p.name[14:]) == [
        "nlbflow-state.db",
        "nlbflow-state.yaml.imported",
    ]


def test_a_yaml_file_beside_the_database_that_was_not_imported_is_named_and_left_alone(tmp_path):
    yaml_path, path = tmp_path / "nlbflow-state.yaml", tmp_path / "nlbflow-state.db"
    RegistryStore.create(str(path), Registry()).close()
    yaml_path.write_text(yaml_state(web_config().registry))
    opened = open_registry(str(path), Registry(), str(yaml_path))
    assert (opened.not_read, opened.store.registry) == (str(yaml_path), Registry())
    assert yaml_path.exists()


def test_an_earlier_imported_file_is_never_overwritten(tmp_path):
    path = tmp_path / "state.yaml"
    Path(f"{path}.imported").write_text("an earlier import\n")
    path.write_text(yaml_state(web_config().registry))
    opened = open_registry(str(path), Registry())
    assert opened.kept_as == f"{path}.imported.2"
    assert Path(f"{path}.imported").read_text() == "an earlier import\n"


# --- storage refused, and left as it was -----------------------------------------------------------------


def valid_database(path: Path, clusters: int = 1) -> None:
    data = [
        {"name": f"c{n}", "cluster_ip": f"10.200.{n}.100", "members": [{"ip": f"10.{n}.0.{m}"} for m in range(1, 6)]}
        for n in range(clusters)
    ]
    RegistryStore.create(str(path), registry_of(data)).close()


def edited(path: Path, *statements: str) -> None:
    """path edited by hand, as with the sqlite3 shell."""
    valid_database(path)
    connection = sqlite3.connect(path)
    for statement in statements:
        connection.execute(statement)
    connection.commit()
    connection.close()


def truncated(path: Path) -> None:
    valid_database(path, clusters=60)
    data = path.read_bytes()
    assert len(data) > 8 * 4096, "enough pages that half of them are missing"
    path.write_bytes(data[: len(data) // 2])


def garbled(path: Path) -> None:
    valid_database(path, clusters=60)
    data = bytearray(path.read_bytes())
    data[4096 * 3 : 4096 * 5] = bytes(range(256)) * 32
    path.write_bytes(bytes(data))


CORRUPT = {
    "not-sqlite-binary": (lambda p: p.write_bytes(bytes(range(256)) * 8), "not an SQLite database"),
    "empty": (lambda p: p.write_bytes(b""), "the file is empty"),
    "short-header": (lambda p: p.write_bytes(b"SQLite for"), "not an SQLite database"),
    "truncated": (truncated, "database"),
    "garbled-pages": (garbled, "database"),
    "other-apps-database": (
        lambda p: sqlite3.connect(p).execute("CREATE TABLE t (x)").connection.commit(),
        "no such table: meta",
    ),
    "schema-version": (
        lambda p: edited(p, "UPDATE meta SET value = '7'"),
        "schema version '7'; this version of nlbflow reads 3 (and migrates 1 and 2)",
    ),
    "bad-member-ip": (
        lambda p: edited(p, "UPDATE members SET ip = '10.0.0.300' WHERE ip = '10.0.0.5'"),
        "members[cluster='c0', ip='10.0.0.300'].ip",
    ),
    "bad-mode": (lambda p: edited(p, "UPDATE clusters SET mode = 'broadcast'"), "is not a cluster mode"),
    "bad-arp": (
        lambda p: edited(p, "UPDATE clusters SET arp = 'Switch'"),
        "'Switch' is not an ARP mode (expected switch, proxy or relay)",
    ),
    "member-ip-twice": (
        lambda p: edited(p, "UPDATE clusters SET cluster_ip = '10.0.0.3'"),
        "10.0.0.3 is already the cluster IP",
    ),
    "link-local-member-address": (
        lambda p: edited(p, "UPDATE members SET ips = 'fd00::5 fe80::5' WHERE ip = '10.0.0.5'"),
        "members[cluster='c0', ip='10.0.0.5'].ips[1]: fe80::5 cannot be registered: it is a link-local address",
    ),
    "cluster-ips-a-blob": (
        lambda p: edited(p, "UPDATE clusters SET cluster_ips = X'6664'"),
        "clusters[name='c0'].cluster_ips: expected a list",
    ),
    "member-address-is-the-vip": (
        lambda p: edited(p, "UPDATE members SET ips = '10.200.0.100' WHERE ip = '10.0.0.2'"),
        "clusters[0].members[1].ips[0]: 10.200.0.100 is already the cluster IP of cluster 'c0'",
    ),
    "broken-order": (
        lambda p: edited(p, "UPDATE members SET previous = '10.0.0.1' WHERE ip = '10.0.0.4'"),
        "both after '10.0.0.1' (column previous)",
    ),
    "member-of-no-cluster": (
        lambda p: edited(p, "INSERT INTO members (cluster, ip) VALUES ('gone', '10.9.0.1')"),
        "a cluster that has no row in clusters",
    ),
    "switch-uplink-not-a-port": (
        lambda p: edited(p, "INSERT INTO switches VALUES ('0000000000000001', NULL, 'hv1', '[5, 0]')"),
        "switches[dpid='0000000000000001'].uplinks[1]: 0 is not a switch port",
    ),
    "switch-uplinks-not-json": (
        lambda p: edited(p, "INSERT INTO switches VALUES ('0000000000000001', NULL, 'hv1', '[5, ')"),
        "switches[dpid='0000000000000001'].uplinks: '[5, ' is not a JSON list",
    ),
    "switch-dpid-not-a-dpid": (
        lambda p: edited(p, "INSERT INTO switches VALUES ('1', NULL, 'hv1', '[]')"),
        "switches[dpid='1'].dpid: '1' is not a datapath id",
    ),
    "switch-dpid-upper-case": (
        lambda p: edited(p, "INSERT INTO switches VALUES ('000000000000000A', NULL, NULL, '[]')"),
        "expected 16 lower-case hex digits",
    ),
    "switch-name-twice": (
        lambda p: edited(
            p,
            "INSERT INTO switches VALUES ('0000000000000001', NULL, 'hv1', '[]')",
            "INSERT INTO switches VALUES ('0000000000000002', '0000000000000001', 'hv1', '[]')",
        ),
        "switches[1].name: the name 'hv1' is already the name of switches[0]",
    ),
    "switch-uplink-twice": (
        lambda p: edited(p, "INSERT INTO switches VALUES ('0000000000000001', NULL, NULL, '[\"a\", \"a\"]')"),
        "switches[0].uplinks[1]: the uplink 'a' is already uplinks[0]",
    ),
    "switch-order": (
        lambda p: edited(
            p,
            "INSERT INTO switches VALUES ('0000000000000001', NULL, NULL, '[]')",
            "INSERT INTO switches VALUES ('0000000000000002', NULL, NULL, '[]')",
        ),
        "are both first (column previous)",
    ),
    "member-pinned-to-an-uplink": (
        lambda p: edited(
            p,
            "UPDATE members SET dpid = '0000000000000001', port = 5 WHERE ip = '10.0.0.1'",
            "INSERT INTO switches VALUES ('0000000000000001', NULL, NULL, '[5]')",
        ),
        "switches[0].uplinks[0]: port 5 of dpid 0000000000000001 is where member 10.0.0.1 of cluster 'c0' is pinned",
    ),
    "invalid-yaml": (lambda p: p.write_text("clusters: [\n"), "invalid YAML"),
    "duplicate-key": (
        lambda p: p.write_text("clusters:\n  - name: web\n    cluster_ip: 10.0.0.100\n    name: db\n"),
        "duplicate key",
    ),
    "yaml-member-without-ip": (
        lambda p: p.write_text(
            "clusters: [{name: web, cluster_ip: 10.0.0.100, members: [{mac: '02:de:00:00:00:01'}]}]"
        ),
        "clusters[0].members[0].ip: required key is missing",
    ),
}


def fingerprint(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.mark.parametrize("make, problem", CORRUPT.values(), ids=list(CORRUPT))
def test_corrupt_storage_is_refused_naming_the_file_and_left_byte_for_byte(tmp_path, make, problem):
    path = tmp_path / "nlbflow-state.db"
    make(path)
    before = fingerprint(tmp_path)

    with pytest.raises(ConfigError) as caught:
        open_registry(str(path), web_config().registry, str(tmp_path / "nlbflow-state.yaml"))

    assert caught.value.source == str(path)
    assert problem in str(caught.value) and NEVER_REPLACED in str(caught.value), str(caught.value)
    assert fingerprint(tmp_path) == before, "the file is untouched and nothing was written beside it"


def test_a_corrupt_yaml_state_file_at_the_old_default_is_refused_and_left_as_it_is(tmp_path):
    yaml_path = tmp_path / "nlbflow-state.yaml"
    yaml_path.write_text("clusters: [{name: web}]\n")
    before = fingerprint(tmp_path)
    with pytest.raises(ConfigError, match="cluster_ip: required key is missing") as caught:
        open_registry(str(tmp_path / "nlbflow-state.db"), Registry(), str(yaml_path))
    assert caught.value.source == str(yaml_path) and NEVER_REPLACED in str(caught.value)
    assert fingerprint(tmp_path) == before


OPEN_AS_ANOTHER_USER = textwrap.dedent(
    """
    import os, sys
    from flows.config import ConfigError
    from flows.model import Registry
    from flows.store import open_registry
    if os.geteuid() == 0:
        os.setgid(65534)
        os.setuid(65534)  # nobody: root reads and writes whatever the permissions say
    try:
        open_registry(sys.argv[1], Registry())
    except ConfigError as error:
        print(error)
        sys.exit(2)
    """
)


@pytest.mark.parametrize("mode, problem", [(0o000, "cannot read the file: Permission denied"), (0o444, "readonly")])
def test_storage_the_controller_may_not_read_or_write_is_refused_and_left_as_it_is(mode, problem):
    folder = Path(tempfile_folder())
    try:
        path = folder / "nlbflow-state.db"
        valid_database(path)
        os.chmod(path, mode)
        before = fingerprint(folder)
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        done = subprocess.run(
            [sys.executable, "-c", OPEN_AS_ANOTHER_USER, str(path)], env=env, capture_output=True, text=True
        )
        assert done.returncode == 2, (done.stdout, done.stderr)
        assert done.stdout.startswith(f"{path}: ") and problem in done.stdout and NEVER_REPLACED in done.stdout
        assert fingerprint(folder) == before
    finally:
        shutil.rmtree(folder)


def tempfile_folder() -> str:
    """A folder another user may enter but not write in (pytest's tmp_path is private to its user)."""
    folder = tempfile.mkdtemp(prefix="nlbflow-store-")
    os.chmod(folder, 0o755)
    return folder


def test_a_wal_left_by_a_database_removed_without_it_stops_the_start_instead_of_reaching_a_new_one(tmp_path):
    path = tmp_path / "nlbflow-state.db"
    store = RegistryStore.create(str(path), web_config().registry)
    store.save(remove_member(store.registry, "web", "10.0.0.11")[0])
    wal = Path(f"{path}-wal").read_bytes()
    assert wal, "the change is in the WAL until a checkpoint"
    store.close()
    path.unlink()  # "remove the state file", but not SQLite's log of it
    Path(f"{path}-wal").write_bytes(wal)
    before = fingerprint(tmp_path)

    with pytest.raises(ConfigError, match="moved or removed without it") as caught:
        open_registry(str(path), web_config().registry)

    assert caught.value.source == f"{path}-wal"
    assert fingerprint(tmp_path) == before


def test_a_save_that_fails_halfway_leaves_the_last_committed_registry_and_the_store_usable(tmp_path):
    store = RegistryStore.create(str(tmp_path / "state.db"), web_config().registry)
    before = store.registry
    db = {"name": "db", "cluster_ip": "10.200.7.100", "members": [{"ip": "10.7.0.1"}]}
    bigger = registry_of([*(cluster_data(c) for c in before.clusters), db])
    store.connection.execute(  # the disk fills up at the first member row, after the cluster's row
        "CREATE TEMP TRIGGER full BEFORE INSERT ON members BEGIN SELECT RAISE(ABORT, 'disk full'); END"
    )

    with pytest.raises(sqlite3.IntegrityError, match="disk full"):
        store.save(bigger)

    assert store.registry == before
    assert RegistryStore.open(store.path).registry == before, "nothing of the failed change was committed"
    store.connection.execute("DROP TRIGGER full")
    store.save(bigger)
    assert RegistryStore.open(store.path).registry == bigger


# --- the fabric's switches -------------------------------------------------------------------------------

FABRIC = Fabric(
    switches=(
        SwitchConfig(1, "hv1", (5, "patch-core")),
        SwitchConfig(2**64 - 1, None, ("7",)),
        SwitchConfig(3, "hv3", ()),
    )
)


def switch_table(path) -> list[tuple]:
    connection = sqlite3.connect(path)
    try:
        return sorted(connection.execute("SELECT * FROM switches"))
    finally:
        connection.close()


def test_the_fabric_round_trips_in_order_with_numbers_and_names_kept_apart(tmp_path):
    path = str(tmp_path / "state.db")
    RegistryStore.create(path, web_config().registry, FABRIC).close()
    store = RegistryStore.open(path)
    assert store.fabric == FABRIC and store.registry == web_config().registry
    assert store.fabric.switch(2**64 - 1).uplinks == ("7",), "a port named 7 stays a name"
    assert ("ffffffffffffffff", "0000000000000001", None, '["7"]') in switch_table(path)
    store.close()


def test_save_fabric_writes_only_the_rows_that_changed_and_keeps_the_order(tmp_path):
    path = str(tmp_path / "state.db")
    store = RegistryStore.create(path, web_config().registry, FABRIC)
    changed = Fabric(switches=(FABRIC.switches[0], SwitchConfig(2**64 - 1, "hv2", ()), FABRIC.switches[2]))
    assert store.save_fabric(changed).rows == 1
    assert store.save_fabric(changed).rows == 0, "no change, no write"
    without_first = Fabric(switches=changed.switches[1:])
    writes = store.save_fabric(without_first)
    assert (writes.deleted, [row.dpid for row in writes.updated]) == (("0000000000000001",), ["ffffffffffffffff"])
    appended = Fabric(switches=(*without_first.switches, SwitchConfig(9, None, (1,))))
    assert store.save_fabric(appended).rows == 1
    store.close()
    reopened = RegistryStore.open(path)
    assert reopened.fabric == appended and reopened.registry == web_config().registry
    reopened.close()


VERSION_1_SCHEMA = (  # as nlbflow created its database before the fabric
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE clusters (name TEXT NOT NULL PRIMARY KEY, previous TEXT, cluster_ip TEXT NOT NULL,"
    " cluster_mac TEXT NOT NULL, mode TEXT NOT NULL, arp TEXT NOT NULL)",
    "CREATE TABLE members (cluster TEXT NOT NULL, ip TEXT NOT NULL, previous TEXT, mac TEXT, dpid TEXT,"
    " port INTEGER, PRIMARY KEY (cluster, ip))",
)
VERSION_2_SCHEMA = (  # as it did before more addresses: the switches table too
    *VERSION_1_SCHEMA,
    "CREATE TABLE switches (dpid TEXT NOT NULL PRIMARY KEY, previous TEXT, name TEXT, uplinks TEXT NOT NULL)",
)


def older_database(path: str, version: int, registry: Registry, fabric: Fabric | None = None) -> None:
    """A database as an older nlbflow wrote it: that version's tables, rows without more addresses, and
    (version 2) the fabric's switches."""
    connection = sqlite3.connect(path)
    connection.execute("PRAGMA journal_mode=WAL")
    for statement in VERSION_1_SCHEMA if version == 1 else VERSION_2_SCHEMA:
        connection.execute(statement)
    connection.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(version),))
    for index, cluster in enumerate(registry.clusters):
        assert not cluster.cluster_ips and not any(member.ips for member in cluster.members), "no such columns"
        row = cluster_row(cluster, registry.clusters[index - 1].name if index else None)
        connection.execute("INSERT INTO clusters VALUES (?, ?, ?, ?, ?, ?)", astuple(row)[:6])
        for member in member_rows(cluster):
            connection.execute("INSERT INTO members VALUES (?, ?, ?, ?, ?, ?)", astuple(member)[:6])
    if version == 2:
        connection.executemany(
            "INSERT INTO switches VALUES (?, ?, ?, ?)", map(astuple, switch_rows(fabric or Fabric()))
        )
    else:
        assert fabric is None, "a version-1 database has no switches"
    connection.commit()
    connection.close()


def version_1_database(path: str, registry: Registry) -> None:
    """A database as nlbflow wrote it before the fabric: schema version 1, no switches table."""
    older_database(path, 1, registry)


def test_a_version_1_database_is_migrated_in_place_losing_nothing_and_takes_the_configs_fabric(tmp_path):
    path = str(tmp_path / "state.db")
    registry = web_config(pinned=True).registry
    version_1_database(path, registry)
    configured = Fabric(switches=(SwitchConfig(1, "hv1", (7, "patch-core")),))

    opened = open_registry(path, registry, fabric=configured)
    assert (opened.first_start, opened.fabric_first_start, opened.fabric_ignored) == (False, True, False)
    assert (opened.store.registry, opened.store.fabric) == (registry, configured)
    opened.store.close()
    connection = sqlite3.connect(path)
    assert connection.execute("SELECT value FROM meta").fetchall() == [("3",)]
    connection.close()

    again = open_registry(path, registry, fabric=Fabric(switches=(SwitchConfig(1, "other"),)))
    assert (again.fabric_first_start, again.fabric_ignored) == (False, True), "the saved fabric wins"
    assert again.store.fabric == configured
    again.store.close()


def test_a_version_1_database_whose_registry_pins_a_member_to_a_configured_uplink_is_refused_untouched(tmp_path):
    path = tmp_path / "state.db"
    version_1_database(str(path), web_config(pinned=True).registry)
    before = fingerprint(tmp_path)
    with pytest.raises(ConfigError) as caught:
        open_registry(str(path), Registry(), fabric=Fabric(switches=(SwitchConfig(1, None, (2,)),)))
    assert "member 10.0.0.12 of cluster 'web' is pinned" in str(caught.value)
    assert "the config's fabric" in str(caught.value)
    assert fingerprint(tmp_path) == before


def test_the_first_start_stores_the_configs_fabric_and_later_starts_keep_the_saved_one(tmp_path):
    path = str(tmp_path / "state.db")
    first = open_registry(path, web_config().registry, fabric=FABRIC)
    assert (first.first_start, first.fabric_first_start, first.store.fabric) == (True, True, FABRIC)
    first.store.save_fabric(Fabric(switches=FABRIC.switches[:1]))
    first.store.close()
    second = open_registry(path, web_config().registry, fabric=FABRIC)
    assert (second.fabric_first_start, second.fabric_ignored) == (False, True)
    assert second.store.fabric == Fabric(switches=FABRIC.switches[:1]), "what the API removed stays removed"
    second.store.close()
    third = open_registry(path, web_config().registry)
    assert third.fabric_ignored is False, "a config without switches is not reported as ignored"
    third.store.close()


def test_an_imported_yaml_state_file_takes_the_configs_fabric(tmp_path):
    yaml_path = tmp_path / "nlbflow-state.yaml"
    yaml_path.write_text("clusters: [{name: web, cluster_ip: 10.0.0.100}]\n")
    opened = open_registry(str(tmp_path / "nlbflow-state.db"), Registry(), str(yaml_path), fabric=FABRIC)
    assert (opened.imported, opened.fabric_first_start, opened.store.fabric) == (str(yaml_path), True, FABRIC)
    opened.store.close()


SAVE_FABRIC_IN_A_LOOP = textwrap.dedent(
    """
    import sys
    from flows.model import Fabric, SwitchConfig
    from flows.store import RegistryStore
    store = RegistryStore.open(sys.argv[1])
    for n in range(1, 100000):
        store.save_fabric(Fabric(switches=tuple(SwitchConfig(d, f"s{d}", (n, f"p{n}")) for d in range(1, 4))))
        print(n, flush=True)  # acknowledged: committed
    """
)


def test_kill_9_while_saving_the_fabric_leaves_the_last_committed_one_whole(tmp_path):
    path = tmp_path / "state.db"
    RegistryStore.create(str(path), web_config().registry).close()
    acknowledged = killed_while_saving(SAVE_FABRIC_IN_A_LOOP, path)

    store = RegistryStore.open(str(path))
    uplinks = {switch.uplinks for switch in store.fabric.switches}
    assert len(uplinks) == 1, "the three switches of one save, never of two"
    ((n, name),) = uplinks
    assert acknowledged <= n <= acknowledged + 1 and name == f"p{n}"
    assert [switch.dpid for switch in store.fabric.switches] == [1, 2, 3]
    assert store.registry == web_config().registry
    store.close()


KILLED_WHILE_MIGRATING = textwrap.dedent(
    """
    import os, signal, sys
    from flows import store
    from flows.model import Fabric, SwitchConfig
    write = store._execute_fabric
    def write_then_die(connection, writes):  # kill -9 inside the migration's transaction, before COMMIT
        write(connection, writes)
        os.kill(os.getpid(), signal.SIGKILL)
    store._execute_fabric = write_then_die
    store.RegistryStore.open(sys.argv[1], Fabric(switches=(SwitchConfig(1, "hv1", (7,)),)))
    """
)


def test_kill_9_while_migrating_leaves_the_version_1_database_which_the_next_start_migrates(tmp_path):
    path = tmp_path / "state.db"
    registry = web_config(pinned=True).registry
    version_1_database(str(path), registry)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    killed = subprocess.run([sys.executable, "-c", KILLED_WHILE_MIGRATING, str(path)], env=env, capture_output=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    connection = sqlite3.connect(path)
    assert connection.execute("SELECT value FROM meta").fetchall() == [("1",)], "the migration is all or nothing"
    connection.close()
    configured = Fabric(switches=(SwitchConfig(1, "hv1", (7,)),))
    store = RegistryStore.open(str(path), configured)
    assert (store.migrated, store.registry, store.fabric) == (True, registry, configured)
    store.close()


def test_a_version_2_database_is_migrated_in_place_keeping_its_fabric_and_takes_more_addresses(tmp_path):
    path = str(tmp_path / "state.db")
    registry = web_config(pinned=True).registry
    older_database(path, 2, registry, FABRIC)
    before = stored_rows(sqlite3.connect(path))

    opened = open_registry(path, registry, fabric=Fabric(switches=(SwitchConfig(9, "other"),)))
    assert opened.store.migrated and (opened.first_start, opened.fabric_first_start) == (False, False)
    assert (opened.fabric_ignored, opened.store.registry, opened.store.fabric) == (True, registry, FABRIC)
    clusters, members = stored_rows(opened.store.connection)
    assert (clusters, members) == ({(*row, "") for row in before[0]}, {(*row, "") for row in before[1]})
    assert opened.store.connection.execute("SELECT value FROM meta").fetchall() == [("3",)]

    changed = update_member(opened.store.registry, "web", "10.0.0.12", {"ips": ["fd00::12"]})[0]
    assert opened.store.save(changed).rows == 1
    opened.store.close()
    again = RegistryStore.open(path)
    assert (again.migrated, again.registry, again.fabric) == (False, changed, FABRIC)
    assert again.registry.cluster_named("web").member_for_address("fd00::12").ip == "10.0.0.12"
    again.close()


def test_a_version_2_database_that_fails_validation_is_refused_and_not_migrated(tmp_path):
    path = tmp_path / "state.db"
    older_database(str(path), 2, web_config().registry)
    connection = sqlite3.connect(path)
    connection.execute("UPDATE clusters SET mode = 'broadcast'")
    connection.commit()
    connection.close()
    before = fingerprint(tmp_path)
    with pytest.raises(ConfigError, match="is not a cluster mode"):
        open_registry(str(path), Registry())
    assert fingerprint(tmp_path) == before
