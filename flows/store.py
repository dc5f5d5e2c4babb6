"""The registry across restarts: an SQLite database (Python's own sqlite3), one transaction per change.

Each cluster is a row of `clusters`, each member a row of `members`, so a change writes the rows it
changes and no others (plan_writes). The order of the registry is kept as links: each row names the row
before it (`previous`, NULL for the first), so adding, removing or changing one member never renumbers its
neighbours. WAL and `synchronous=FULL`: a change is committed, and on disk, before it is answered, and a
`kill -9` at any instant leaves the last committed registry. The -wal and -shm files beside the database
are SQLite's own: never remove them while anything may still need them.

What is read at the start is checked with the config's own validators (flows/config.py), so a database
edited by hand is held to the rules of a config file. A file that cannot be opened, read or validated
stops the start and is never replaced: the message names the file and the problem. An older version's
YAML state file is imported once, in one transaction, and kept beside it (`<name>.imported`).

The fabric's switches (the config's `fabric.switches:`) are kept in the same database, one row of `switches`
each, ordered by `previous` links too. A cluster's more addresses (`cluster_ips`) and a member's
(`ips`) are a column each, the canonical addresses separated by spaces ('' for none).

An older database is migrated in place at the start, in one transaction, once it is read and validated:
version 1 (from before the fabric) gets the switches table, and versions 1 and 2 (from before more
addresses) the two address columns, empty; no row is otherwise touched.
"""

from __future__ import annotations

import json
import os
import sqlite3
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields, replace
from urllib.parse import quote

from flows.config import (
    ConfigError,
    cluster_from_data,
    load_config,
    member_from_data,
    switch_from_data,
    validate_fabric,
    validate_registry,
)
from flows.model import Cluster, Fabric, Member, Registry, SwitchConfig
from flows.state import startup_registry

TEMP_SUFFIXES = (".tmp", ".tmp-wal", ".tmp-shm", ".tmp-journal")  # a temp file, and SQLite's files of it
SCHEMA_VERSION = 3  # 2: the switches table; 3: cluster_ips and members' ips (1 and 2 are migrated in place)
MIGRATED_VERSIONS = (1, 2)
SQLITE_MAGIC = b"SQLite format 3\x00"  # the first 16 bytes of every SQLite database file
NEVER_REPLACED = "the state file is never replaced silently: repair or remove it"
SCHEMA = (
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE clusters (name TEXT NOT NULL PRIMARY KEY, previous TEXT, cluster_ip TEXT NOT NULL,"
    " cluster_mac TEXT NOT NULL, mode TEXT NOT NULL, arp TEXT NOT NULL, cluster_ips TEXT NOT NULL DEFAULT '')",
    "CREATE TABLE members (cluster TEXT NOT NULL, ip TEXT NOT NULL, previous TEXT, mac TEXT, dpid TEXT,"
    " port INTEGER, ips TEXT NOT NULL DEFAULT '', PRIMARY KEY (cluster, ip))",
)
ADDRESS_COLUMNS = (  # version 3: at the end of their tables, in a new database as in a migrated one
    "ALTER TABLE clusters ADD COLUMN cluster_ips TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE members ADD COLUMN ips TEXT NOT NULL DEFAULT ''",
)
SWITCHES_TABLE = (
    "CREATE TABLE switches (dpid TEXT NOT NULL PRIMARY KEY, previous TEXT, name TEXT, uplinks TEXT NOT NULL)"
)
CLUSTER_COLUMNS = ("name", "previous", "cluster_ip", "cluster_mac", "mode", "arp", "cluster_ips")
MEMBER_COLUMNS = ("cluster", "ip", "previous", "mac", "dpid", "port", "ips")
SWITCH_COLUMNS = ("dpid", "previous", "name", "uplinks")


# --- the rows and the writes a change needs (pure) --------------------------------------------------------


@dataclass(frozen=True)
class ClusterRow:
    """A cluster's own fields as stored: the fields of the config's cluster entry, and its place."""

    name: str
    previous: str | None  # the name of the cluster before it; None for the first
    cluster_ip: str
    cluster_mac: str
    mode: str
    arp: str
    cluster_ips: str  # the more VIPs, canonical and separated by spaces; '' for none


@dataclass(frozen=True)
class MemberRow:
    """A member as stored: its config entry (`mac` means what it means there) and its place in its cluster."""

    cluster: str
    ip: str
    previous: str | None  # the IP of the member before it in its cluster; None for the first
    mac: str | None
    dpid: str | None  # 16 hex digits, as OVS prints it: a dpid may not fit SQLite's signed 64-bit integer
    port: int | None
    ips: str  # the more dedicated addresses, canonical and separated by spaces; '' for none


@dataclass(frozen=True)
class Writes:
    """The rows one change inserts, updates and deletes; deleting a cluster deletes its members with it."""

    clusters_deleted: tuple[str, ...] = ()
    clusters_inserted: tuple[ClusterRow, ...] = ()
    clusters_updated: tuple[ClusterRow, ...] = ()
    members_deleted: tuple[tuple[str, str], ...] = ()  # (cluster, ip)
    members_inserted: tuple[MemberRow, ...] = ()
    members_updated: tuple[MemberRow, ...] = ()

    @property
    def rows(self) -> int:
        """Rows written, counting a deleted cluster as one (its members go in the same statement)."""
        return sum(len(getattr(self, field.name)) for field in fields(self))


def cluster_row(cluster: Cluster, previous: str | None) -> ClusterRow:
    return ClusterRow(
        cluster.name,
        previous,
        cluster.cluster_ip,
        cluster.cluster_mac,
        cluster.mode.value,
        cluster.arp.value,
        " ".join(cluster.cluster_ips),
    )


def member_row(cluster: Cluster, member: Member, previous: str | None) -> MemberRow:
    dpid = f"{member.dpid:016x}" if member.pinned else None
    return MemberRow(
        cluster.name, member.ip, previous, cluster.entry_mac(member), dpid, member.port, " ".join(member.ips)
    )


def member_rows(cluster: Cluster) -> list[MemberRow]:
    previous = [None, *(member.ip for member in cluster.members)]
    return [member_row(cluster, member, previous[index]) for index, member in enumerate(cluster.members)]


def plan_writes(old: Registry, new: Registry) -> Writes:
    """The rows that turn the stored `old` into `new`: clusters by name, members by IP.

    A cluster object that is the same (or equal) in both, in the same place, costs one comparison: the
    rows written grow with the change, not with the registry.
    """
    old_clusters = {cluster.name: (cluster, _before(old.clusters, index)) for index, cluster in enumerate(old.clusters)}
    new_names = {cluster.name for cluster in new.clusters}
    deleted = tuple(name for name in old_clusters if name not in new_names)
    inserted: list[ClusterRow] = []
    updated: list[ClusterRow] = []
    members_deleted: list[tuple[str, str]] = []
    members_inserted: list[MemberRow] = []
    members_updated: list[MemberRow] = []
    for index, cluster in enumerate(new.clusters):
        previous = _before(new.clusters, index)
        if cluster.name not in old_clusters:
            inserted.append(cluster_row(cluster, previous))
            members_inserted += member_rows(cluster)
            continue
        old_cluster, old_previous = old_clusters[cluster.name]
        if old_cluster is cluster or old_cluster == cluster:
            if old_previous != previous:
                updated.append(cluster_row(cluster, previous))
            continue
        row = cluster_row(cluster, previous)
        if row != cluster_row(old_cluster, old_previous):
            updated.append(row)
        old_rows = {stored.ip: stored for stored in member_rows(old_cluster)}
        for wanted in member_rows(cluster):
            stored = old_rows.pop(wanted.ip, None)
            if stored is None:
                members_inserted.append(wanted)
            elif stored != wanted:
                members_updated.append(wanted)
        members_deleted += [(cluster.name, ip) for ip in old_rows]
    return Writes(
        deleted,
        tuple(inserted),
        tuple(updated),
        tuple(members_deleted),
        tuple(members_inserted),
        tuple(members_updated),
    )


def _before(clusters: tuple[Cluster, ...], index: int) -> str | None:
    return clusters[index - 1].name if index else None


@dataclass(frozen=True)
class SwitchRow:
    """A configured switch as stored: its dpid (16 hex digits), its place, its name, its uplinks as JSON."""

    dpid: str
    previous: str | None  # the dpid of the switch before it; None for the first
    name: str | None
    uplinks: str  # a JSON list of port numbers and port names, as configured


@dataclass(frozen=True)
class FabricWrites:
    """The rows of `switches` one change of the fabric deletes, inserts and updates."""

    deleted: tuple[str, ...] = ()
    inserted: tuple[SwitchRow, ...] = ()
    updated: tuple[SwitchRow, ...] = ()

    @property
    def rows(self) -> int:
        return len(self.deleted) + len(self.inserted) + len(self.updated)


def switch_rows(fabric: Fabric) -> list[SwitchRow]:
    previous = [None, *(f"{switch.dpid:016x}" for switch in fabric.switches)]
    return [
        SwitchRow(f"{switch.dpid:016x}", previous[index], switch.name, json.dumps(list(switch.uplinks)))
        for index, switch in enumerate(fabric.switches)
    ]


def plan_fabric_writes(old: Fabric, new: Fabric) -> FabricWrites:
    """The rows that turn the stored `old` into `new`, by dpid: a fabric is a few rows, compared whole."""
    stored = {row.dpid: row for row in switch_rows(old)}
    inserted: list[SwitchRow] = []
    updated: list[SwitchRow] = []
    for row in switch_rows(new):
        before = stored.pop(row.dpid, None)
        if before is None:
            inserted.append(row)
        elif before != row:
            updated.append(row)
    return FabricWrites(tuple(stored), tuple(inserted), tuple(updated))


# --- the database ----------------------------------------------------------------------------------------


class RegistryStore:
    """The registry and the fabric in one SQLite database: `registry` and `fabric` are what is committed;
    save() and save_fabric() commit new ones."""

    def __init__(
        self,
        path: str,
        connection: sqlite3.Connection,
        registry: Registry,
        fabric: Fabric,
        migrated: bool = False,
        fabric_seeded: bool = False,
    ) -> None:
        self.path = path
        self.connection = connection
        self.registry = registry
        self.fabric = fabric
        self.migrated = migrated  # an older database was migrated when it was opened
        self.fabric_seeded = fabric_seeded  # that database was version 1: seed_fabric was stored as its fabric

    @classmethod
    def open(cls, path: str, seed_fabric: Fabric | None = None) -> RegistryStore:
        """The database at path, read and validated; ConfigError, with the connection closed, if it is not
        one this version can use. An older database is migrated in one transaction: a version-1 database
        gets the switches table, filled with seed_fabric (the config's, as at a first start), and versions 1
        and 2 the address columns."""
        try:
            uri = f"file:{quote(os.path.abspath(path))}?mode=rw"
            connection = sqlite3.connect(uri, uri=True, isolation_level=None)
        except sqlite3.Error as error:
            raise _refused(path, "", f"cannot open the database: {error}") from None
        try:
            version = _version(path, connection)
            seed = (seed_fabric or Fabric()) if version == 1 else None
            registry, fabric = _read_state(path, connection, seed, version)
            _writable(path, connection)
            migrated = version != SCHEMA_VERSION
            if migrated:
                _migrate(path, connection, version, fabric)
        except BaseException:
            connection.close()
            raise
        return cls(path, connection, registry, fabric, migrated, fabric_seeded=version == 1)

    @classmethod
    def create(cls, path: str, registry: Registry, fabric: Fabric | None = None) -> RegistryStore:
        """A new database holding registry, whole or not at all: built as a temp file, then renamed to path.

        A -wal or -journal already at path belongs to a database that was moved or removed without it:
        SQLite would apply it to the new one, so that stops the start instead."""
        for orphan in (path + "-wal", path + "-journal"):
            if os.path.exists(orphan):
                raise ConfigError(
                    orphan,
                    "",
                    f"SQLite's log of a database at {path} that is not there (moved or removed without it):"
                    f" move the database back beside it, or remove {orphan} (and {path}-shm) too",
                )
        folder = os.path.dirname(os.path.abspath(path))
        prefix, suffix = temp_affixes(path)
        fd, temp_path = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=folder)
        os.close(fd)
        try:
            connection = sqlite3.connect(temp_path, isolation_level=None)
            try:
                _configure(connection)
                with _transaction(connection):
                    for statement in (*SCHEMA, SWITCHES_TABLE):
                        connection.execute(statement)
                    connection.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
                    _execute(connection, plan_writes(Registry(), registry))
                    _execute_fabric(connection, plan_fabric_writes(Fabric(), fabric or Fabric()))
            finally:
                connection.close()  # checkpoints the WAL into the file and removes it
            os.replace(temp_path, path)
        except BaseException:
            if os.path.exists(temp_path):
                os.unlink(temp_path)
            raise
        fsync_folder(folder)
        return cls.open(path)

    def save(self, registry: Registry) -> Writes:
        """Commit registry in one transaction, writing only the rows that differ from the committed one."""
        writes = plan_writes(self.registry, registry)
        with _transaction(self.connection):
            _execute(self.connection, writes)
        self.registry = registry
        return writes

    def save_fabric(self, fabric: Fabric) -> FabricWrites:
        """Commit fabric in one transaction, writing only the switches' rows that differ."""
        writes = plan_fabric_writes(self.fabric, fabric)
        with _transaction(self.connection):
            _execute_fabric(self.connection, writes)
        self.fabric = fabric
        return writes

    def close(self) -> None:
        self.connection.close()


def _configure(connection: sqlite3.Connection) -> None:
    mode = connection.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    if mode != "wal":
        raise sqlite3.OperationalError(f"cannot use write-ahead logging (journal mode {mode})")
    connection.execute("PRAGMA synchronous=FULL")


@contextmanager
def _transaction(connection: sqlite3.Connection) -> Iterator[None]:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on any error (a failed COMMIT too): all or nothing."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        yield
        connection.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise


def _execute(connection: sqlite3.Connection, writes: Writes) -> None:
    for name in writes.clusters_deleted:
        connection.execute("DELETE FROM members WHERE cluster = ?", (name,))
        connection.execute("DELETE FROM clusters WHERE name = ?", (name,))
    connection.executemany("DELETE FROM members WHERE cluster = ? AND ip = ?", writes.members_deleted)
    connection.executemany(
        f"INSERT INTO clusters ({', '.join(CLUSTER_COLUMNS)}) VALUES ({_placeholders(CLUSTER_COLUMNS)})",
        [_values(row) for row in writes.clusters_inserted],
    )
    connection.executemany(
        f"UPDATE clusters SET {_assignments(CLUSTER_COLUMNS[1:])} WHERE name = ?",
        [(*_values(row)[1:], row.name) for row in writes.clusters_updated],
    )
    connection.executemany(
        f"INSERT INTO members ({', '.join(MEMBER_COLUMNS)}) VALUES ({_placeholders(MEMBER_COLUMNS)})",
        [_values(row) for row in writes.members_inserted],
    )
    connection.executemany(
        f"UPDATE members SET {_assignments(MEMBER_COLUMNS[2:])} WHERE cluster = ? AND ip = ?",
        [(*_values(row)[2:], row.cluster, row.ip) for row in writes.members_updated],
    )


def _placeholders(columns: tuple[str, ...]) -> str:
    return ", ".join("?" for _ in columns)


def _assignments(columns: tuple[str, ...]) -> str:
    """`previous = ?, mac = ?, ...`: the columns an UPDATE sets, in the order of the row's fields."""
    return ", ".join(f"{column} = ?" for column in columns)


def _execute_fabric(connection: sqlite3.Connection, writes: FabricWrites) -> None:
    connection.executemany("DELETE FROM switches WHERE dpid = ?", [(dpid,) for dpid in writes.deleted])
    connection.executemany(
        f"INSERT INTO switches ({', '.join(SWITCH_COLUMNS)}) VALUES (?, ?, ?, ?)",
        [_values(row) for row in writes.inserted],
    )
    connection.executemany(
        "UPDATE switches SET previous = ?, name = ?, uplinks = ? WHERE dpid = ?",
        [(*_values(row)[1:], row.dpid) for row in writes.updated],
    )


def _values(row: ClusterRow | MemberRow | SwitchRow) -> tuple:
    return tuple(getattr(row, field.name) for field in fields(row))


def _writable(path: str, connection: sqlite3.Connection) -> None:
    """WAL on, and a write lock taken and given back: a database that cannot be written stops the start,
    not the first change."""
    try:
        _configure(connection)
        connection.execute("BEGIN IMMEDIATE")
        connection.execute("ROLLBACK")
    except sqlite3.Error as error:
        raise _refused(path, "", f"the database cannot be written: {error}") from None


def _version(path: str, connection: sqlite3.Connection) -> int:
    """The SQLite pages checked, then the schema version: this one, or an older one that is migrated once
    it is read (MIGRATED_VERSIONS)."""
    try:
        check = connection.execute("PRAGMA quick_check").fetchall()
        if check != [("ok",)]:
            raise _refused(path, "", f"the database is damaged: {'; '.join(str(row[0]) for row in check[:3])}")
        version = connection.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchall()
    except sqlite3.Error as error:
        raise _refused(path, "", f"not a readable nlbflow database: {error}") from None
    if version not in [[(str(known),)] for known in (SCHEMA_VERSION, *MIGRATED_VERSIONS)]:
        found = repr(version[0][0]) if version else "none"
        older = " and ".join(str(known) for known in MIGRATED_VERSIONS)
        raise _refused(
            path,
            "meta",
            f"schema version {found}; this version of nlbflow reads {SCHEMA_VERSION} (and migrates {older})",
        )
    return int(version[0][0])


def _migrate(path: str, connection: sqlite3.Connection, version: int, fabric: Fabric) -> None:
    """An older database to this version, in one transaction: a version-1 one (from before the fabric) gets
    the switches table, holding fabric; versions 1 and 2 (from before more addresses) get the address
    columns, empty for every row; then the new version number. No other row is touched."""
    try:
        with _transaction(connection):
            if version == 1:
                connection.execute(SWITCHES_TABLE)
                _execute_fabric(connection, plan_fabric_writes(Fabric(), fabric))
            for statement in ADDRESS_COLUMNS:
                connection.execute(statement)
            connection.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),))
    except sqlite3.Error as error:
        raise _refused(path, "", f"cannot migrate the database from schema version {version}: {error}") from None


def _read_state(
    path: str, connection: sqlite3.Connection, seed: Fabric | None, version: int = SCHEMA_VERSION
) -> tuple[Registry, Fabric]:
    """Every row, checked like a config file: each field, the links that order the rows, what spans
    clusters and members (validate_registry), and what spans switches and pins (validate_fabric). A
    version-1 database has no switches: seed (the config's) is checked against its registry instead. A
    database older than version 3 has no address columns: its clusters and members have no more addresses."""
    try:
        cluster_rows = connection.execute(f"SELECT {_selected(CLUSTER_COLUMNS, version)} FROM clusters").fetchall()
        member_rows_ = connection.execute(f"SELECT {_selected(MEMBER_COLUMNS, version)} FROM members").fetchall()
        switch_rows_ = (
            connection.execute(f"SELECT {', '.join(SWITCH_COLUMNS)} FROM switches").fetchall() if seed is None else []
        )
    except sqlite3.Error as error:
        raise _refused(path, "", f"not a readable nlbflow database: {error}") from None
    members_of: dict[object, list[MemberRow]] = {}
    for values in member_rows_:
        row = MemberRow(*values)
        members_of.setdefault(row.cluster, []).append(row)
    ordered = [
        (row, _chain(members_of.pop(row.name, []), "ip", path, f"members[cluster={row.name!r}]"))
        for row in _chain([ClusterRow(*values) for values in cluster_rows], "name", path, "clusters")
    ]
    if members_of:
        cluster = sorted(map(repr, members_of))[0]
        raise _refused(path, f"members[cluster={cluster}]", "the member of a cluster that has no row in clusters")
    try:
        registry = Registry(clusters=tuple(_cluster(path, row, members) for row, members in ordered))
        validate_registry(registry, path)
    except ConfigError as error:
        raise _refused(path, error.key, error.problem) from None
    if seed is not None:
        try:
            validate_fabric(seed, registry, path)
        except ConfigError as error:
            problem = f"{error.problem} (the config's fabric, to be stored as this version-1 database is migrated)"
            raise ConfigError(path, error.key, problem) from None
        return registry, seed
    switches = _chain([SwitchRow(*values) for values in switch_rows_], "dpid", path, "switches")
    try:
        fabric = Fabric(switches=tuple(_switch(path, row) for row in switches))
        validate_fabric(fabric, registry, path, key="switches")
    except ConfigError as error:
        raise _refused(path, error.key, error.problem) from None
    return registry, fabric


def _selected(columns: tuple[str, ...], version: int) -> str:
    """The columns to SELECT; a database older than version 3 reads '' (no more addresses) for the
    address columns it has not got yet."""
    added = ("cluster_ips", "ips") if version < 3 else ()
    return ", ".join(f"'' AS {column}" if column in added else column for column in columns)


def _switch(path: str, row: SwitchRow) -> SwitchConfig:
    """A switch from its row, through the validator of a config's switch entry."""
    key = f"switches[dpid={row.dpid!r}]"
    try:
        uplinks = json.loads(row.uplinks) if isinstance(row.uplinks, str) else None
    except ValueError:
        uplinks = None
    if not isinstance(uplinks, list):
        raise ConfigError(path, f"{key}.uplinks", f"{row.uplinks!r} is not a JSON list of port numbers and names")
    data = {"dpid": row.dpid, "uplinks": uplinks, **({"name": row.name} if row.name is not None else {})}
    switch = switch_from_data(data, key, path)
    if row.dpid != f"{switch.dpid:016x}":  # the key the next write looks the row up by
        raise ConfigError(path, f"{key}.dpid", "expected 16 lower-case hex digits, as nlbflow writes it")
    return switch


def _cluster(path: str, row: ClusterRow, members: list[MemberRow]) -> Cluster:
    """A cluster from its rows, through the validators of a config's cluster and member entries."""
    cluster = cluster_from_data(_cluster_fields(row), f"clusters[name={row.name!r}]", path)
    key = f"members[cluster={row.name!r}, ip={{!r}}]"
    return replace(
        cluster,
        members=tuple(
            member_from_data(_member_fields(member), key.format(member.ip), path, cluster.mode) for member in members
        ),
    )


def _chain(rows: list, key: str, path: str, table: str) -> list:
    """The rows in the order their `previous` links give: one first row, each row followed by at most one."""
    following: dict[object, object] = {}
    for row in rows:
        if row.previous in following:
            other = getattr(following[row.previous], key)
            where = "first" if row.previous is None else f"after {row.previous!r}"
            raise _refused(path, table, f"{getattr(row, key)!r} and {other!r} are both {where} (column previous)")
        following[row.previous] = row
    ordered = []
    row = following.get(None)
    while row is not None and len(ordered) < len(rows):  # a NULL key (a table made by hand) would loop
        ordered.append(row)
        row = following.get(getattr(row, key))
    if len(ordered) != len(rows):
        reached = {getattr(row, key) for row in ordered}
        lost = sorted(repr(getattr(row, key)) for row in rows if getattr(row, key) not in reached)
        raise _refused(
            path, table, f"{lost[0]} is not reached from the first row by the links of column previous (or loops)"
        )
    return ordered


def _cluster_fields(row: ClusterRow) -> dict:
    fields = {name: getattr(row, name) for name in ("name", "cluster_ip", "cluster_mac", "mode", "arp")}
    return {**fields, **_address_list("cluster_ips", row.cluster_ips)}


def _member_fields(row: MemberRow) -> dict:
    fields = {"ip": row.ip, **_address_list("ips", row.ips), "mac": row.mac, "dpid": row.dpid, "port": row.port}
    return {name: value for name, value in fields.items() if value is not None}


def _address_list(name: str, value: object) -> dict:
    """An address column as the entry's list: {} for '' (none); anything but text is left for the config's
    validator to refuse (it expects a list)."""
    if not isinstance(value, str):
        return {name: value}
    return {name: value.split()} if value.split() else {}


def _refused(path: str, key: str, problem: str) -> ConfigError:
    return ConfigError(path, key, f"{problem}; {NEVER_REPLACED}")


# --- which file holds the registry, and the import of an older version's YAML ---------------------------


@dataclass(frozen=True)
class Opened:
    """The store the controller runs on, and what its registry came from (for the start's log)."""

    store: RegistryStore
    first_start: bool  # nothing was saved: the config seeded the registry
    config_ignored: bool  # the config names clusters that the saved registry does not hold as such
    imported: str | None = None  # the YAML state file the registry was imported from
    kept_as: str | None = None  # where that YAML file is kept now
    not_read: str | None = None  # an older version's default YAML state file that is left unread
    fabric_first_start: bool = False  # nothing held switches (a first start, an import, a version-1 database):
    # the config's fabric.switches seeded the store's
    fabric_ignored: bool = False  # the config names switches that the saved fabric does not hold as such


def open_registry(
    path: str, configured: Registry, yaml_path: str | None = None, fabric: Fabric | None = None
) -> Opened:
    """Open the registry at path, importing a YAML state file once, or create it from the config.

    path is an SQLite database, or a YAML state file an older version wrote there (imported, then kept as
    `<path>.imported`). With no file at path, yaml_path (the older default name, when the config names no
    state file) is imported if it exists; with neither, this is the first start and the config seeds it.
    fabric (the config's fabric.switches) is taken the same way: stored where nothing held switches before
    (the first start, an import, a version-1 database), else the saved fabric wins.
    """
    configured_fabric = fabric or Fabric()
    kind = _kind(path)
    if kind == "sqlite":
        store = RegistryStore.open(path, configured_fabric)
        leftover = yaml_path if yaml_path and os.path.exists(yaml_path) else None
        try:
            if leftover and _finish_import(leftover):
                leftover = None
        except OSError as error:
            store.close()
            raise ConfigError(
                leftover, "", f"cannot remove this name of {imported_name(leftover)}: {_reason(error)}"
            ) from None
        return Opened(
            store,
            False,
            startup_registry(configured, store.registry)[1],
            not_read=leftover,
            **_fabric_flags(configured_fabric, store),
        )
    if kind == "yaml":
        source: str | None = path
    else:
        source = yaml_path if yaml_path and os.path.exists(yaml_path) else None
    if source is None:
        store = _created(path, configured, configured_fabric)
        return Opened(store, True, False, fabric_first_start=True)
    saved = load_yaml_state(source)
    try:
        validate_fabric(configured_fabric, saved, source)
    except ConfigError as error:
        problem = f"{error.problem} (the config's fabric, checked against the registry of this YAML state file)"
        raise ConfigError(source, error.key, problem) from None
    try:
        kept_as = _keep(source)
        store = RegistryStore.create(path, saved, configured_fabric)
        if source != path:
            os.unlink(source)  # the file stays, as kept_as
            fsync_folder(os.path.dirname(os.path.abspath(source)))
    except (OSError, sqlite3.Error) as error:
        raise ConfigError(source, "", f"cannot import it into {path}: {_reason(error)}") from None
    return Opened(
        store,
        False,
        startup_registry(configured, saved)[1],
        imported=source,
        kept_as=kept_as,
        fabric_first_start=True,
    )


def _fabric_flags(configured: Fabric, store: RegistryStore) -> dict:
    """Whether the config's fabric was stored now (a migrated version-1 database) or is not applied."""
    if store.fabric_seeded:
        return {"fabric_first_start": True}
    return {"fabric_ignored": bool(configured.switches) and configured != store.fabric}


def _created(path: str, registry: Registry, fabric: Fabric) -> RegistryStore:
    try:
        return RegistryStore.create(path, registry, fabric)
    except (OSError, sqlite3.Error) as error:
        raise ConfigError(path, "", f"cannot create the database: {_reason(error)}") from None


def _reason(error: Exception) -> str:
    return getattr(error, "strerror", None) or str(error)


def _kind(path: str) -> str | None:
    """'sqlite', 'yaml' (anything else: an older version's state file, or not a state file at all), or None."""
    try:
        with open(path, "rb") as file:
            head = file.read(len(SQLITE_MAGIC))
    except FileNotFoundError:
        return None
    except OSError as error:
        raise _refused(path, "", f"cannot read the file: {error.strerror}") from None
    if head == SQLITE_MAGIC:
        return "sqlite"
    if not head:
        raise _refused(path, "", "the file is empty: it is neither an SQLite database nor a YAML state file")
    return "yaml"


def load_yaml_state(path: str) -> Registry:
    """An older version's YAML state file (the config's `clusters:` format), checked like a config."""
    try:
        return load_config(path).registry
    except ConfigError as error:
        problem = f"{error.problem} (read as a YAML state file of an older version: it is not an SQLite database)"
        raise _refused(path, error.key, problem) from None


def imported_name(yaml_path: str) -> str:
    """Where an imported YAML state file is kept: `<name>.imported`, or `.imported.2`, ... if that is taken
    by another file."""
    number = 1
    while True:
        candidate = yaml_path + ".imported" + (f".{number}" if number > 1 else "")
        if not os.path.exists(candidate) or os.path.samefile(candidate, yaml_path):
            return candidate
        number += 1


def _keep(yaml_path: str) -> str:
    """A second name for the YAML file (a hard link) before anything replaces or removes the first."""
    kept_as = imported_name(yaml_path)
    if not os.path.exists(kept_as):
        os.link(yaml_path, kept_as)
        fsync_folder(os.path.dirname(os.path.abspath(yaml_path)))
    return kept_as


def _finish_import(yaml_path: str) -> bool:
    """An import interrupted after the database was in place and before the YAML file's old name was
    removed: remove that name now (the file stays as `.imported`). False if the file is something else."""
    kept_as = imported_name(yaml_path)
    if not (os.path.exists(kept_as) and os.path.samefile(kept_as, yaml_path)):
        return False
    os.unlink(yaml_path)
    return True


def temp_affixes(path: str) -> tuple[str, str]:
    """Prefix and suffix of the state file's temp files: they sit beside it, and no other file matches."""
    return f".{os.path.basename(path)}.", TEMP_SUFFIXES[0]


def remove_stale_temp_files(path: str) -> list[str]:
    """Remove the temp files a write interrupted by a crash left beside the state file; return their paths.

    Only for the start: a running controller may be writing one. The state file's own -wal and -shm are
    not temp files: they may hold committed changes."""
    folder = os.path.dirname(os.path.abspath(path))
    prefix, _ = temp_affixes(path)
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return []
    stale = [
        os.path.join(folder, name)
        for name in sorted(names)
        if name.startswith(prefix)
        and any(name.endswith(suffix) and len(name) > len(prefix) + len(suffix) for suffix in TEMP_SUFFIXES)
    ]
    for stale_path in stale:
        os.unlink(stale_path)
    return stale


def fsync_folder(folder: str) -> None:
    """Make a rename or an unlink in folder durable."""
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
