"""Changes to the registry as the REST API asks for them: pure functions from one registry to the next.

Each returns the new registry and the object it touched, or raises RegistryError with the HTTP status
the refusal deserves. The same validators as the YAML config check every field, so a cluster accepted
through REST is one the config file would accept too.
"""

from __future__ import annotations

from dataclasses import replace

from flows.config import ConfigError, cluster_from_data, member_from_data, validate_registry
from flows.model import Cluster, Member, Registry

SOURCE = "request"
CLUSTER_FIELDS = ("name", "cluster_ip", "cluster_mac", "mode", "arp")
MEMBER_FIELDS = ("ip", "mac", "dpid", "port")
MEMBER_PATCH_FIELDS = ("mac", "dpid", "port")
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
    if registry.cluster_named(cluster.name) is not None:
        raise RegistryError(409, f"name: a cluster named {cluster.name!r} exists already")
    for other in registry.clusters:  # the registry check would blame the registered member, not this field
        for member in other.members:
            if cluster.cluster_ip == member.ip:
                raise RegistryError(
                    409, f"cluster_ip: {member.ip} is already member {member.ip} of cluster {other.name!r}"
                )
            if cluster.cluster_mac == member.dedicated_mac:
                raise RegistryError(
                    409, f"cluster_mac: {member.dedicated_mac} is already the dedicated MAC of member {member.ip}"
                )
    return _checked(replace(registry, clusters=(*registry.clusters, cluster))), cluster


def remove_cluster(registry: Registry, name: str) -> tuple[Registry, Cluster]:
    cluster = find_cluster(registry, name)
    return replace(registry, clusters=tuple(c for c in registry.clusters if c.name != name)), cluster


def add_member(registry: Registry, name: str, data: object) -> tuple[Registry, Member]:
    cluster = find_cluster(registry, name)
    _only(data, MEMBER_FIELDS)
    member = _bad_field(lambda: member_from_data(data, "", SOURCE, cluster.mode))
    if cluster.member_for_ip(member.ip) is not None:
        raise RegistryError(409, f"ip: {member.ip} is already a member of cluster {name!r}")
    return _checked(_with_members(registry, cluster, (*cluster.members, member))), member


def update_member(registry: Registry, name: str, ip: str, data: object) -> tuple[Registry, Member]:
    """Move a member (pin it, or unpin it with dpid and port null) or change its dedicated MAC."""
    member = find_member(registry, name, ip)
    cluster = find_cluster(registry, name)
    _only(data, MEMBER_PATCH_FIELDS)
    nulls = sorted(key for key, value in data.items() if value is None and key not in UNPIN_FIELDS)
    if nulls:
        raise RegistryError(400, f"{nulls[0]}: null is not allowed; only dpid and port may be null (to unpin)")
    merged: dict = {"ip": member.ip, "mac": cluster.entry_mac(member)}
    if member.pinned:
        merged.update(dpid=member.dpid, port=member.port)
    merged.update(data)
    merged = {key: value for key, value in merged.items() if value is not None}
    updated = _bad_field(lambda: member_from_data(merged, "", SOURCE, cluster.mode))
    members = tuple(updated if m.ip == ip else m for m in cluster.members)
    return _checked(_with_members(registry, cluster, members)), updated


def remove_member(registry: Registry, name: str, ip: str) -> tuple[Registry, Member]:
    member = find_member(registry, name, ip)
    cluster = find_cluster(registry, name)
    return _with_members(registry, cluster, tuple(m for m in cluster.members if m.ip != ip)), member


def _with_members(registry: Registry, cluster: Cluster, members: tuple[Member, ...]) -> Registry:
    updated = replace(cluster, members=members)
    return replace(registry, clusters=tuple(updated if c.name == cluster.name else c for c in registry.clusters))


def _only(data: object, fields: tuple[str, ...]) -> None:
    if not isinstance(data, dict):
        raise RegistryError(400, "the body must be a JSON object")
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise RegistryError(400, f"{unknown[0]}: unknown field (known fields: {', '.join(fields)})")


def _bad_field(build):
    try:
        return build()
    except ConfigError as error:
        raise RegistryError(400, _message(error)) from None


def _checked(registry: Registry) -> Registry:
    """Anything claimed twice across the registry is a conflict with what is registered already."""
    try:
        validate_registry(registry, SOURCE)
    except ConfigError as error:
        raise RegistryError(409, _message(error)) from None
    return registry


def _message(error: ConfigError) -> str:
    """The field's own name, not its path in a config file: `ip: ...`, `cluster_mac: ...`."""
    field = error.key.rsplit(".", 1)[-1]
    return f"{field}: {error.problem}" if field else error.problem
