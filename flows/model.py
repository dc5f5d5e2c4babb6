"""The registry: clusters and their members, as plain immutable values."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from functools import cached_property


class ClusterMode(str, Enum):
    """NLB's cluster modes; each has its own kind of cluster MAC."""

    UNICAST = "unicast"  # every NIC carries the cluster MAC: members need dedicated MACs (the method)
    MULTICAST = "multicast"  # NICs keep their own MACs and also accept the multicast 03:bf:... cluster MAC
    IGMP = "igmp"  # as multicast, with the IP-multicast-mapped 01:00:5e:7f:... cluster MAC


class ArpMode(str, Enum):
    """How a member's ARP for a peer is answered (method.md, Discovery)."""

    PROXY = "proxy"  # the controller answers with the peer's dedicated MAC (claims 1-5)
    RELAY = "relay"  # the peer answers and the fabric revises its reply (claims 12-18)
    SWITCH = "switch"  # the switch answers by flows, without the controller (claims 1-5, docs/switch-mode.md)


@dataclass(frozen=True)
class Member:
    """One host of a cluster: its dedicated IP and MAC, and where it is pinned, if it is.

    own_mac is the NIC MAC of a multicast- or IGMP-mode member (those keep their own MACs): registered,
    it is the only sender MAC the member's probe answers may carry (method.md, Trust).
    """

    ip: str
    dedicated_mac: str
    dpid: int | None = None
    port: int | None = None
    own_mac: str | None = None
    ips: tuple[str, ...] = ()  # more dedicated addresses, IPv4 or IPv6: one dedicated MAC answers for all

    @property
    def pinned(self) -> bool:
        return self.dpid is not None and self.port is not None

    @property
    def addresses(self) -> tuple[str, ...]:
        """Every dedicated address: the primary DIP (the member's key) first."""
        return (self.ip, *self.ips)


@dataclass(frozen=True)
class Cluster:
    """A cluster: members share cluster_mac; in unicast mode it is every member's NIC MAC."""

    name: str
    cluster_ip: str
    cluster_mac: str
    arp: ArpMode = ArpMode.SWITCH
    mode: ClusterMode = ClusterMode.UNICAST
    members: tuple[Member, ...] = ()
    cluster_ips: tuple[str, ...] = ()  # more VIPs, IPv4 or IPv6

    @property
    def vips(self) -> tuple[str, ...]:
        """Every cluster address: the primary VIP first."""
        return (self.cluster_ip, *self.cluster_ips)

    @property
    def unicast(self) -> bool:
        """Only in unicast mode do members need dedicated MACs, ARP hygiene and source masking."""
        return self.mode == ClusterMode.UNICAST

    def member_for_ip(self, ip: str) -> Member | None:
        """The member whose primary DIP (its key) this is."""
        return self._members_by_ip.get(ip)

    def member_for_address(self, address: str) -> Member | None:
        """The member holding this dedicated address, primary or not."""
        return self._members_by_address.get(address)

    def member_for_dedicated_mac(self, mac: str) -> Member | None:
        return self._members_by_dedicated_mac.get(mac)

    @cached_property
    def _members_by_ip(self) -> dict[str, Member]:
        """Built once per cluster value (the first member wins, as a scan would find it)."""
        by_ip: dict[str, Member] = {}
        for member in self.members:
            by_ip.setdefault(member.ip, member)
        return by_ip

    @cached_property
    def _members_by_address(self) -> dict[str, Member]:
        by_address: dict[str, Member] = {}
        for member in self.members:
            for address in member.addresses:
                by_address.setdefault(address, member)
        return by_address

    @cached_property
    def _members_by_dedicated_mac(self) -> dict[str, Member]:
        by_mac: dict[str, Member] = {}
        for member in self.members:
            by_mac.setdefault(member.dedicated_mac, member)
        return by_mac

    def entry_mac(self, member: Member) -> str | None:
        """What a member entry's `mac` names: the dedicated MAC in unicast mode, else the NIC MAC, if registered."""
        return member.dedicated_mac if self.unicast else member.own_mac


@dataclass(frozen=True)
class Registry:
    """Every registered cluster; the single source for ARP decisions and flow specs."""

    clusters: tuple[Cluster, ...] = ()

    def cluster_for_mac(self, cluster_mac: str) -> Cluster | None:
        return self._clusters_by_mac.get(cluster_mac)

    def cluster_named(self, name: str) -> Cluster | None:
        return self._clusters_by_name.get(name)

    def clusters_with_member_ip(self, ip: str) -> tuple[Cluster, ...]:
        """Clusters with a member of this primary IP, in registry order (one, in a valid registry)."""
        return self._clusters_by_member_ip.get(ip, ())

    def clusters_with_member_address(self, address: str) -> tuple[Cluster, ...]:
        """Clusters with a member holding this dedicated address, primary or not (one, in a valid registry)."""
        return self._clusters_by_member_address.get(address, ())

    def clusters_with_dedicated_mac(self, mac: str) -> tuple[Cluster, ...]:
        """Clusters with a member of this dedicated MAC, in registry order (one, in a valid registry)."""
        return self._clusters_by_dedicated_mac.get(mac, ())

    def pinned_on(self, dpid: int) -> dict[tuple[str, str], int]:
        """(cluster name, member ip) -> port of every member pinned on this switch."""
        return self._pinned_by_dpid.get(dpid, {})

    # Indexes, built once per registry value on first use: a registry is immutable, so they never go stale.

    @cached_property
    def _clusters_by_name(self) -> dict[str, Cluster]:
        by_name: dict[str, Cluster] = {}
        for cluster in self.clusters:
            by_name.setdefault(cluster.name, cluster)
        return by_name

    @cached_property
    def _clusters_by_mac(self) -> dict[str, Cluster]:
        by_mac: dict[str, Cluster] = {}
        for cluster in self.clusters:
            by_mac.setdefault(cluster.cluster_mac, cluster)
        return by_mac

    @cached_property
    def _clusters_by_member_ip(self) -> dict[str, tuple[Cluster, ...]]:
        by_ip: dict[str, tuple[Cluster, ...]] = {}
        for cluster in self.clusters:
            for ip in cluster._members_by_ip:
                by_ip[ip] = (*by_ip.get(ip, ()), cluster)
        return by_ip

    @cached_property
    def _clusters_by_member_address(self) -> dict[str, tuple[Cluster, ...]]:
        by_address: dict[str, tuple[Cluster, ...]] = {}
        for cluster in self.clusters:
            for address in cluster._members_by_address:
                by_address[address] = (*by_address.get(address, ()), cluster)
        return by_address

    @cached_property
    def _clusters_by_dedicated_mac(self) -> dict[str, tuple[Cluster, ...]]:
        by_mac: dict[str, tuple[Cluster, ...]] = {}
        for cluster in self.clusters:
            for mac in cluster._members_by_dedicated_mac:
                by_mac[mac] = (*by_mac.get(mac, ()), cluster)
        return by_mac

    @cached_property
    def _pinned_by_dpid(self) -> dict[int, dict[tuple[str, str], int]]:
        pinned: dict[int, dict[tuple[str, str], int]] = {}
        for cluster in self.clusters:
            for member in cluster.members:
                if member.pinned:
                    pinned.setdefault(member.dpid, {})[(cluster.name, member.ip)] = member.port
        return pinned


@dataclass(frozen=True)
class LocationSettings:
    """How learned member locations are confirmed and kept honest (method.md, Trust; docs/trust.md)."""

    confirm_seconds: float = 1.0  # how long a probe may take to be answered: a move's old port, a re-probe
    idle_seconds: float = 30.0  # a member not heard from this long is probed again on its port
    unanswered_probes: int = 3  # that many probes in a row unanswered and the member is unlocated again
    moves_per_minute: int = 6  # at most this many moves per member and switch in any minute


@dataclass(frozen=True)
class Settings:
    """Fabric-wide behaviour that is not part of any cluster."""

    normal_fallback: bool = True  # table-miss goes to OVS NORMAL; off when another app forwards
    source_masking: bool = True  # a member's frames leave with its dedicated MAC as source, never the cluster MAC
    punt_rate_per_port: int = 100  # packets/s one port may send the controller (flows/meters.py)
    punt_rate_total: int = 1000  # packets/s all ports together may send the controller
    slow_path_rate: int = 25000  # packets/s the switch may run through its slow path (switch-mode ARP, flows/meters.py)
    locations: LocationSettings = field(default_factory=LocationSettings)


@dataclass(frozen=True)
class ControllerSettings:
    """Where the REST API listens, who may use it and how much it reads, and where the registry is kept."""

    rest_host: str = "127.0.0.1"
    rest_port: int = 8080
    token_file: str | None = None
    state_file: str | None = None  # the registry's SQLite database; None: nlbflow-state.db beside the config
    rest_hosts: tuple[str, ...] = ()  # names the Host header may carry besides the listen address
    rest_max_body_bytes: int = 65536  # a larger request body is refused (413) unread


@dataclass(frozen=True)
class SwitchConfig:
    """One switch of the fabric: a label for status, audit and logs, and its uplinks (docs/fabric.md).

    An uplink is a port toward other switches or the rest of the layer-2 network, given as an OpenFlow port
    number or as the port's name in OVS (resolved from the switch's port description, and followed when the
    port is renumbered). Members are never located on an uplink.
    """

    dpid: int
    name: str | None = None
    uplinks: tuple[int | str, ...] = ()


@dataclass(frozen=True)
class Fabric:
    """The switches the user described; a switch not listed has no name and no uplinks."""

    switches: tuple[SwitchConfig, ...] = ()

    def switch(self, dpid: int) -> SwitchConfig | None:
        return self._by_dpid.get(dpid)

    @cached_property
    def _by_dpid(self) -> dict[int, SwitchConfig]:
        by_dpid: dict[int, SwitchConfig] = {}
        for switch in self.switches:
            by_dpid.setdefault(switch.dpid, switch)
        return by_dpid


@dataclass(frozen=True)
class Config:
    registry: Registry = field(default_factory=Registry)
    fabric: Fabric = field(default_factory=Fabric)
    settings: Settings = field(default_factory=Settings)
    controller: ControllerSettings = field(default_factory=ControllerSettings)
