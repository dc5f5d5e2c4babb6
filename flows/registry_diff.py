"""What replacing clusters changes, in the terms of the config's `clusters:` list: the answer of
PUT /nlb/registry (and its dry run) and of PUT /nlb/clusters/{name}, and what `nlbflow apply` prints.

Clusters are matched by name and members by IP, so a renamed cluster or a member with a new IP reads as
one removed and one added: that is what happens to their flows too.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from flows.model import Cluster, Registry
from flows.state import cluster_data

CLUSTER_FIELDS = ("cluster_ip", "cluster_ips", "cluster_mac", "mode", "arp")
MEMBER_FIELDS = ("ips", "mac", "dpid", "port")  # absent from an entry: None (no more addresses, no NIC MAC, not pinned)


@dataclass(frozen=True)
class FieldChange:
    name: str
    old: object
    new: object

    def data(self) -> dict:
        return {"field": self.name, "from": self.old, "to": self.new}


@dataclass(frozen=True)
class MemberChange:
    ip: str
    fields: tuple[FieldChange, ...]

    def data(self) -> dict:
        return {"ip": self.ip, "fields": [change.data() for change in self.fields]}


@dataclass(frozen=True)
class ClusterChange:
    """One cluster in both registries, and what differs: its own fields, then its members (as entries)."""

    name: str
    fields: tuple[FieldChange, ...]
    members_added: tuple[dict, ...]
    members_removed: tuple[dict, ...]
    members_changed: tuple[MemberChange, ...]

    @property
    def differs(self) -> bool:
        return bool(self.fields or self.members_added or self.members_removed or self.members_changed)

    def data(self) -> dict:
        return {
            "name": self.name,
            "fields": [change.data() for change in self.fields],
            "members": {
                "added": list(self.members_added),
                "removed": list(self.members_removed),
                "changed": [change.data() for change in self.members_changed],
            },
        }


@dataclass(frozen=True)
class RegistryDiff:
    """Clusters added and removed (as config entries), changed (what changed), and how many are equal."""

    added: tuple[dict, ...] = ()
    removed: tuple[dict, ...] = ()
    changed: tuple[ClusterChange, ...] = ()
    unchanged: int = 0

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed)

    def data(self) -> dict:
        return {
            "added": list(self.added),
            "removed": list(self.removed),
            "changed": [change.data() for change in self.changed],
            "unchanged": self.unchanged,
        }


def diff_registries(old: Registry, new: Registry) -> RegistryDiff:
    return diff_clusters(old.clusters, new.clusters)


def diff_clusters(old: Iterable[Cluster], new: Iterable[Cluster]) -> RegistryDiff:
    """What turning the clusters old into new changes; linear in both."""
    before = {cluster.name: cluster for cluster in old}
    after = {cluster.name: cluster for cluster in new}
    changed, unchanged = [], 0
    for name, cluster in after.items():
        if name not in before:
            continue
        change = None if before[name] == cluster else _cluster_change(before[name], cluster)
        if change is not None and change.differs:
            changed.append(change)
        else:  # equal, or its members in another order only: the same flows
            unchanged += 1
    return RegistryDiff(
        added=tuple(cluster_data(c) for name, c in after.items() if name not in before),
        removed=tuple(cluster_data(c) for name, c in before.items() if name not in after),
        changed=tuple(changed),
        unchanged=unchanged,
    )


def _cluster_change(old: Cluster, new: Cluster) -> ClusterChange:
    old_entry, new_entry = cluster_data(old), cluster_data(new)
    old_members = {entry["ip"]: entry for entry in old_entry["members"]}
    new_members = {entry["ip"]: entry for entry in new_entry["members"]}
    members_changed = []
    for ip, entry in new_members.items():
        fields = _field_changes(old_members.get(ip), entry, MEMBER_FIELDS)
        if ip in old_members and fields:
            members_changed.append(MemberChange(ip, fields))
    return ClusterChange(
        name=new.name,
        fields=_field_changes(old_entry, new_entry, CLUSTER_FIELDS),
        members_added=tuple(entry for ip, entry in new_members.items() if ip not in old_members),
        members_removed=tuple(entry for ip, entry in old_members.items() if ip not in new_members),
        members_changed=tuple(members_changed),
    )


def _field_changes(old: dict | None, new: dict, names: tuple[str, ...]) -> tuple[FieldChange, ...]:
    if old is None:
        return ()
    return tuple(FieldChange(name, old.get(name), new.get(name)) for name in names if old.get(name) != new.get(name))
