"""Changes to the registry as the REST API asks for them: pure functions from one registry to the next.

Each returns the new registry and the object it touched, or raises RegistryError with the HTTP status
the refusal deserves. The same validators as the YAML config check every field, so a cluster accepted
through REST is one the config file would accept too. A single cluster's or member's change is checked
against an index of what is registered (flows/registry_index.py), in time proportional to the change;
a whole registry (PUT /nlb/registry) is checked whole, as the config is.
"""

from __future__ import annotations

from dataclasses import replace

from flows.config import ConfigError, cluster_from_data, member_from_data, registry_from_data, validate_registry
from flows.model import Cluster, Member, Registry
from flows.registry_diff import RegistryDiff, diff_clusters, diff_registries
from flows.registry_index import Conflict, RegistryIndex, check_cluster, check_member

SOURCE = "request"
CLUSTER_FIELDS = ("name", "cluster_ip", "cluster_ips", "cluster_mac", "mode", "arp")
MEMBER_FIELDS = ("ip", "ips", "mac", "dpid", "port")
MEMBER_PATCH_FIELDS = ("ips", "mac", "dpid", "port")
UNPIN_FIELDS = ("dpid", "port")  # null in a PATCH: the member is no longer pinned


class RegistryError(ValueError):
    """A refused change; status is the HTTP status (400 bad field, 404 unknown, 409 conflict)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def find_cluster(registry: Registry, name: str) -> Cluster:
    cluster = registry.cluster_named(name)
    if cluster is None:
        raise RegistryError(404, f"name: no cluster named {name!r}")
    return cluster


def find_member(registry: Registry, name: str, ip: str) -> Member:
    member = find_cluster(registry, name).member_for_ip(ip)
    if member is None:
        raise RegistryError(404, f"ip: cluster {name!r} has no member {ip}")
    return member


def add_cluster(registry: Registry, data: object) -> tuple[Registry, Cluster]:
    _only(data, CLUSTER_FIELDS)
    cluster = _bad_field(lambda: cluster_from_data(data, "", SOURCE))
    index = _index(registry)
    if cluster.name in index.names:
        raise RegistryError(409, f"name: a cluster named {cluster.name!r} exists already")
    _conflict(lambda: check_cluster(index, cluster))
    index.claim_cluster(cluster)
    return _indexed(replace(registry, clusters=(*registry.clusters, cluster)), index), cluster


def remove_cluster(registry: Registry, name: str) -> tuple[Registry, Cluster]:
    cluster = find_cluster(registry, name)
    index = _index(registry)
    index.release_cluster(cluster)
    return _indexed(replace(registry, clusters=tuple(c for c in registry.clusters if c.name != name)), index), cluster


def cluster_for_put(name: str, data: object) -> Cluster:
    """The body of PUT /nlb/clusters/{name}: the whole cluster, its members as POST .../members takes them.

    Its fields alone (400); what it clashes with in the registry is put_cluster's to find (409).
    """
    _only(data, (*CLUSTER_FIELDS, "members"))
    if "name" in data and data["name"] != name:
        raise RegistryError(400, f"name: {data['name']!r} is not the cluster the path names ({name!r})")
    members = data.get("members", [])
    if isinstance(members, list):
        for position, member in enumerate(members):
            _only(member, MEMBER_FIELDS, f"members[{position}].")
    return _bad_field(lambda: cluster_from_data({**data, "name": name}, "", SOURCE))


def put_cluster(registry: Registry, cluster: Cluster) -> tuple[Registry, tuple[bool, RegistryDiff]]:
    """Create cluster, or replace its namesake whole, in place; (created, what changed). An equal cluster
    leaves the very same registry, so nothing is pushed."""
    old = registry.cluster_named(cluster.name)
    change = diff_clusters((old,) if old else (), (cluster,))
    if old == cluster:
        return registry, (False, change)
    index = _index(registry)
    _conflict(lambda: check_cluster(index, cluster, replacing=cluster.name))
    if old is None:
        clusters = (*registry.clusters, cluster)
    else:
        index.release_cluster(old)
        clusters = tuple(cluster if c.name == cluster.name else c for c in registry.clusters)
    index.claim_cluster(cluster)
    return _indexed(replace(registry, clusters=clusters), index), (old is None, change)


def registry_for_put(data: object) -> Registry:
    """The body of PUT /nlb/registry, `{"clusters": [...]}` as the config's `clusters:` list, checked whole:
    a bad field is a 400, anything claimed twice a 409, each naming its entry (`clusters[3].members[2].ip`)."""
    if not isinstance(data, dict):
        raise RegistryError(400, "the body must be a JSON object")
    if "clusters" not in data:
        raise RegistryError(400, "clusters: required key is missing (an empty list removes every cluster)")
    _only(data, ("clusters",))
    try:
        clusters = tuple(registry_from_data(data["clusters"], SOURCE, validate=False).clusters)
    except ConfigError as error:
        raise RegistryError(400, _entry_message(error)) from None
    registry = Registry(clusters=clusters)
    try:
        validate_registry(registry, SOURCE)
    except ConfigError as error:
        raise RegistryError(409, _entry_message(error)) from None
    return registry


def put_registry(registry: Registry, wanted: Registry) -> tuple[Registry, RegistryDiff]:
    """Replace the whole registry with wanted (checked by registry_for_put); what changed. No change
    leaves the very same registry, so nothing is pushed."""
    change = diff_registries(registry, wanted)
    if wanted == registry:
        return registry, change
    return _indexed(wanted, RegistryIndex.of(wanted)), change


def add_member(registry: Registry, name: str, data: object) -> tuple[Registry, Member]:
    cluster = find_cluster(registry, name)
    _only(data, MEMBER_FIELDS)
    member = _bad_field(lambda: member_from_data(data, "", SOURCE, cluster.mode))
    index = _index(registry)
    owner = index.ip_owner(member.ip)
    if owner is not None and owner.kind == "member_ip" and owner.cluster == name:
        raise RegistryError(409, f"ip: {member.ip} is already a member of cluster {name!r}")
    _conflict(lambda: check_member(index, name, member))
    index.claim_member(name, member)
    return _indexed(_with_members(registry, cluster, (*cluster.members, member)), index), member


def update_member(registry: Registry, name: str, ip: str, data: object) -> tuple[Registry, Member]:
    """Move a member (pin it, or unpin it with dpid and port null) or change its dedicated MAC."""
    member = find_member(registry, name, ip)
    cluster = find_cluster(registry, name)
    _only(data, MEMBER_PATCH_FIELDS)
    nulls = sorted(key for key, value in data.items() if value is None and key not in UNPIN_FIELDS)
    if nulls:
        raise RegistryError(400, f"{nulls[0]}: null is not allowed; only dpid and port may be null (to unpin)")
    merged: dict = {"ip": member.ip, "ips": list(member.ips), "mac": cluster.entry_mac(member)}
    if member.pinned:
        merged.update(dpid=member.dpid, port=member.port)
    merged.update(data)
    merged = {key: value for key, value in merged.items() if value is not None}
    updated = _bad_field(lambda: member_from_data(merged, "", SOURCE, cluster.mode))
    index = _index(registry)
    _conflict(lambda: check_member(index, name, updated, replacing=name, keep=ip))
    index.release_member(name, member)
    index.claim_member(name, updated)
    members = tuple(updated if m.ip == ip else m for m in cluster.members)
    return _indexed(_with_members(registry, cluster, members), index), updated


def remove_member(registry: Registry, name: str, ip: str) -> tuple[Registry, Member]:
    member = find_member(registry, name, ip)
    cluster = find_cluster(registry, name)
    index = _index(registry)
    index.release_member(name, member)
    return _indexed(_with_members(registry, cluster, tuple(m for m in cluster.members if m.ip != ip)), index), member


class _LastIndex:
    """The index of the registry the last change produced. The service hands that very registry to the
    next change, whose check then costs what it changes; any other registry (the first, one a failed
    write left in place) is indexed afresh, in one linear pass."""

    registry: Registry | None = None
    index: RegistryIndex | None = None


def _index(registry: Registry) -> RegistryIndex:
    """The index of registry, for one change to update: taken from the cache, so a refused change must
    raise before it updates it (every check comes first)."""
    if _LastIndex.registry is registry and _LastIndex.index is not None:
        return _LastIndex.index
    _LastIndex.registry, _LastIndex.index = None, None
    return RegistryIndex.of(registry)


def _indexed(registry: Registry, index: RegistryIndex) -> Registry:
    _LastIndex.registry, _LastIndex.index = registry, index
    return registry


def _with_members(registry: Registry, cluster: Cluster, members: tuple[Member, ...]) -> Registry:
    updated = replace(cluster, members=members)
    return replace(registry, clusters=tuple(updated if c.name == cluster.name else c for c in registry.clusters))


def _only(data: object, fields: tuple[str, ...], prefix: str = "") -> None:
    if not isinstance(data, dict):
        raise RegistryError(
            400, f"{prefix[:-1]}: expected a JSON object" if prefix else "the body must be a JSON object"
        )
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise RegistryError(400, f"{prefix}{unknown[0]}: unknown field (known fields: {', '.join(fields)})")


def _bad_field(build):
    try:
        return build()
    except ConfigError as error:
        raise RegistryError(400, _message(error)) from None


def _conflict(check) -> None:
    """Anything claimed twice is a conflict with what is registered already."""
    try:
        check()
    except Conflict as conflict:
        raise RegistryError(409, str(conflict)) from None


def _message(error: ConfigError) -> str:
    """The field's own name, not its path in a config file: `ip: ...`, `cluster_mac: ...`; inside a
    cluster's member list, the member's too: `members[2].ip: ...`."""
    field = error.key.rsplit(".", 1)[-1]
    if error.key.startswith("members["):
        field = error.key
    return f"{field}: {error.problem}" if field else error.problem


def _entry_message(error: ConfigError) -> str:
    """A whole registry's refusal names the entry: `clusters[3].members[2].ip: ...`."""
    return f"{error.key}: {error.problem}" if error.key else error.problem
