"""Who holds each name, address, cookie id and switch port of a registry, kept current change by change.

validate_registry() answers the same question by scanning everything, which a whole registry (the config,
PUT /nlb/registry) needs anyway; a single REST change only needs to look up what it adds, so its check
costs what the change costs, not what the registry holds. The refusals read as validate_registry's do.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import NamedTuple

from flows import cookies
from flows.addresses import PROBE_MAC
from flows.model import Cluster, Member, Registry


class Owner(NamedTuple):
    """What holds a value: the kind of claim, the cluster, and the member's IP for a member's claims."""

    kind: str
    cluster: str = ""
    member: str = ""

    def describe(self) -> str:
        """The owner as validate_registry() names it in its refusals."""
        member = f"member {self.member} of cluster {self.cluster!r}"
        return {
            "probe": "reserved for the app's own ARP probes",
            "cluster_ip": f"the cluster IP of cluster {self.cluster!r}",
            "vip": f"a cluster IP of cluster {self.cluster!r}",
            "cluster_mac": f"the cluster MAC of cluster {self.cluster!r}",
            "member_ip": f"the IP of a member of cluster {self.cluster!r}",
            "member_address": f"an address of {member}",
            "dedicated_mac": f"the dedicated MAC of {member}",
            "nic_mac": f"the NIC MAC of {member}",
            "location": f"where {member} is attached",
        }[self.kind]


PROBE_OWNER = Owner("probe")
WHOLE_CLUSTER_ID = 0  # a member cookie id reserved for the flows of the whole cluster


class Conflict(ValueError):
    """A value the change claims is held already: field names the entry's field, message says by whom."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass
class RegistryIndex:
    """The claims of one registry; claims() and release() keep it in step with a change in O(change)."""

    names: set[str] = field(default_factory=set)
    cluster_ids: dict[int, str] = field(default_factory=dict)  # cookie cluster id -> cluster name
    ips: dict[str, Owner] = field(default_factory=dict)
    macs: dict[str, Owner] = field(default_factory=lambda: {PROBE_MAC: PROBE_OWNER})
    locations: dict[tuple[int, int], Owner] = field(default_factory=dict)
    member_ids: dict[str, dict[int, str]] = field(default_factory=dict)  # cluster -> cookie member id -> IP

    @classmethod
    def of(cls, registry: Registry) -> RegistryIndex:
        """Index a registry validate_registry() accepts (linear, once)."""
        index = cls()
        for cluster in registry.clusters:
            index.claim_cluster(cluster)
        return index

    # --- lookups: who else holds it ------------------------------------------------------------------

    def ip_owner(self, ip: str, replacing: str = "") -> Owner | None:
        """The holder of ip, unless it is the cluster being replaced."""
        return _other(self.ips.get(ip), replacing)

    def mac_owner(self, mac: str, replacing: str = "", member: str = "") -> Owner | None:
        """The holder of mac, unless it is the cluster being replaced or that cluster's member being changed."""
        return _other(self.macs.get(mac), replacing, member)

    def location_owner(self, where: tuple[int, int], replacing: str = "", member: str = "") -> Owner | None:
        return _other(self.locations.get(where), replacing, member)

    def cluster_id_owner(self, cluster_id: int, replacing: str = "") -> str | None:
        owner = self.cluster_ids.get(cluster_id)
        return None if owner == replacing else owner

    def member_id_owner(self, cluster: str, ip: str) -> str | None:
        """The member of cluster whose cookie id ip's would be; 'reserved ...' for the whole cluster's id."""
        member_id = cookies.member_id(ip)
        if member_id == WHOLE_CLUSTER_ID:
            return "reserved for the flows of the whole cluster"
        owner = self.member_ids.get(cluster, {}).get(member_id)
        return None if owner is None else f"the cookie id of member {owner} in the same cluster"

    # --- changes: only once every check passed -------------------------------------------------------

    def claim_cluster(self, cluster: Cluster) -> None:
        self.names.add(cluster.name)
        self.cluster_ids[cookies.cluster_id(cluster.name)] = cluster.name
        self.ips[cluster.cluster_ip] = Owner("cluster_ip", cluster.name)
        for vip in cluster.cluster_ips:
            self.ips[vip] = Owner("vip", cluster.name)
        self.macs[cluster.cluster_mac] = Owner("cluster_mac", cluster.name)
        self.member_ids[cluster.name] = {}
        for member in cluster.members:
            self.claim_member(cluster.name, member)

    def release_cluster(self, cluster: Cluster) -> None:
        for member in cluster.members:
            self.release_member(cluster.name, member)
        self.names.discard(cluster.name)
        del self.cluster_ids[cookies.cluster_id(cluster.name)]
        for vip in cluster.vips:
            del self.ips[vip]
        del self.macs[cluster.cluster_mac]
        del self.member_ids[cluster.name]

    def claim_member(self, cluster: str, member: Member) -> None:
        self.ips[member.ip] = Owner("member_ip", cluster, member.ip)
        for address in member.ips:
            self.ips[address] = Owner("member_address", cluster, member.ip)
        self.member_ids[cluster][cookies.member_id(member.ip)] = member.ip
        self.macs[member.dedicated_mac] = Owner("dedicated_mac", cluster, member.ip)
        if member.own_mac is not None:
            self.macs[member.own_mac] = Owner("nic_mac", cluster, member.ip)
        if member.pinned:
            self.locations[member.dpid, member.port] = Owner("location", cluster, member.ip)

    def release_member(self, cluster: str, member: Member) -> None:
        for address in member.addresses:
            del self.ips[address]
        del self.member_ids[cluster][cookies.member_id(member.ip)]
        del self.macs[member.dedicated_mac]
        if member.own_mac is not None:
            del self.macs[member.own_mac]
        if member.pinned:
            del self.locations[member.dpid, member.port]


def _other(owner: Owner | None, replacing: str, member: str = "") -> Owner | None:
    """owner, unless the change replaces what it belongs to: the whole cluster, or one of its members."""
    if owner is None or not replacing or owner.cluster != replacing:
        return owner
    return owner if member and owner.member != member else None


def check_cluster(index: RegistryIndex, cluster: Cluster, replacing: str = "") -> None:
    """Raise Conflict if cluster, added (or replacing the cluster named replacing), clashes with the others.

    Its own fields first, then each member against the others and against its own cluster, in
    validate_registry()'s order and words; a member's field reads `members[2].ip`.
    """
    cluster_id = cookies.cluster_id(cluster.name)
    held = index.cluster_id_owner(cluster_id, replacing)
    if held is not None and held != cluster.name:
        raise Conflict(
            "name",
            f"the flow-cookie id 0x{cluster_id:04x} of {cluster.name!r} is already the cookie id of cluster {held!r}"
            "; rename one of the clusters",
        )
    for field_name, vip in _vip_fields(cluster):
        owner = index.ip_owner(vip, replacing)
        if owner is not None:
            held_by = (
                f"member {owner.member} of cluster {owner.cluster!r}" if owner.kind == "member_ip" else owner.describe()
            )
            raise Conflict(field_name, f"{vip} is already {held_by}")
    owner = index.mac_owner(cluster.cluster_mac, replacing)
    if owner is not None:
        held_by = f"the dedicated MAC of member {owner.member}" if owner.kind == "dedicated_mac" else owner.describe()
        raise Conflict("cluster_mac", f"{cluster.cluster_mac} is already {held_by}")
    own = RegistryIndex()
    for field_name, vip in _vip_fields(cluster):
        if vip in own.ips:
            raise Conflict(field_name, f"{vip} is already {own.ips[vip].describe()}")
        own.ips[vip] = Owner("cluster_ip" if field_name == "cluster_ip" else "vip", cluster.name)
    own.claim_cluster(replace(cluster, members=()))
    for position, member in enumerate(cluster.members):
        try:
            check_member(own, cluster.name, member)
            check_member(index, cluster.name, member, replacing=replacing)
        except Conflict as conflict:
            raise Conflict(f"members[{position}].{conflict.field}", conflict.message) from None
        own.claim_member(cluster.name, member)


def _vip_fields(cluster: Cluster) -> list[tuple[str, str]]:
    """Each of the cluster's addresses with the entry's field that holds it."""
    return [("cluster_ip", cluster.cluster_ip)] + [
        (f"cluster_ips[{position}]", vip) for position, vip in enumerate(cluster.cluster_ips)
    ]


def check_member(index: RegistryIndex, cluster: str, member: Member, replacing: str = "", keep: str = "") -> None:
    """Raise Conflict if member, added to cluster, clashes with what index holds.

    What the cluster named replacing holds does not count (it is being replaced whole), nor, with keep,
    what its member keep holds (that member is being changed; its IP stays). In validate_registry()'s
    order (IP, cookie id, dedicated MAC, NIC MAC, switch port) and words.
    """
    if not keep:
        owner = index.ip_owner(member.ip, replacing)
        if owner is not None:
            raise Conflict("ip", f"{member.ip} is already {owner.describe()}")
        held = None if replacing == cluster else index.member_id_owner(cluster, member.ip)
        if held is not None:
            raise Conflict(
                "ip",
                f"the flow-cookie id 0x{cookies.member_id(member.ip):04x} of {member.ip} is already {held}"
                "; their flows could not be told apart: give the member another dedicated IP",
            )
    seen: set[str] = set()
    for position, address in enumerate(member.ips):
        owner = _other(index.ips.get(address), replacing, keep)
        if address == member.ip or address in seen:
            owner = Owner("member_address" if address != member.ip else "member_ip", cluster, member.ip)
        if owner is not None:
            raise Conflict(f"ips[{position}]", f"{address} is already {owner.describe()}")
        seen.add(address)
    owner = index.mac_owner(member.dedicated_mac, replacing, keep)
    if owner is not None:
        raise Conflict("mac", f"{member.dedicated_mac} is already {owner.describe()}")
    if member.own_mac is not None:
        owner = index.mac_owner(member.own_mac, replacing, keep)
        if member.own_mac == member.dedicated_mac:
            owner = Owner("dedicated_mac", cluster, member.ip)
        if owner is not None:
            raise Conflict("mac", f"{member.own_mac} is already {owner.describe()}")
    if member.pinned:
        owner = index.location_owner((member.dpid, member.port), replacing, keep)
        if owner is not None:
            raise Conflict("port", f"dpid {member.dpid:#x} port {member.port} is already {owner.describe()}")
