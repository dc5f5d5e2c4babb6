"""The registry: clusters and their members, as plain immutable values."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class ClusterMode(str, Enum):
    """NLB's cluster modes; each has its own kind of cluster MAC."""

    UNICAST = "unicast"  # every NIC carries the cluster MAC: members need dedicated MACs (the method)
    MULTICAST = "multicast"  # NICs keep their own MACs and also accept the multicast 03:bf:... cluster MAC
    IGMP = "igmp"  # as multicast, with the IP-multicast-mapped 01:00:5e:7f:... cluster MAC


class ArpMode(str, Enum):
    """How a member's ARP for a peer is answered (method.md, Discovery)."""

    PROXY = "proxy"  # the controller answers with the peer's dedicated MAC (claims 1-5)
    RELAY = "relay"  # the peer answers and the fabric revises its reply (claims 12-18)


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

    @property
    def pinned(self) -> bool:
        return self.dpid is not None and self.port is not None


@dataclass(frozen=True)
class Cluster:
    """A cluster: members share cluster_mac; in unicast mode it is every member's NIC MAC."""

    name: str
    cluster_ip: str
    cluster_mac: str
    arp: ArpMode = ArpMode.PROXY
    mode: ClusterMode = ClusterMode.UNICAST
    members: tuple[Member, ...] = ()

    @property
    def unicast(self) -> bool:
        """Only in unicast mode do members need dedicated MACs, ARP hygiene and source masking."""
        return self.mode == ClusterMode.UNICAST

    def member_for_ip(self, ip: str) -> Member | None:
        return next((member for member in self.members if member.ip == ip), None)

    def member_for_dedicated_mac(self, mac: str) -> Member | None:
        return next((member for member in self.members if member.dedicated_mac == mac), None)

    def entry_mac(self, member: Member) -> str | None:
        """What a member entry's `mac` names: the dedicated MAC in unicast mode, else the NIC MAC, if registered."""
        return member.dedicated_mac if self.unicast else member.own_mac


@dataclass(frozen=True)
class Registry:
    """Every registered cluster; the single source for ARP decisions and flow specs."""

    clusters: tuple[Cluster, ...] = ()

    def cluster_for_mac(self, cluster_mac: str) -> Cluster | None:
        return next((cluster for cluster in self.clusters if cluster.cluster_mac == cluster_mac), None)

    def cluster_named(self, name: str) -> Cluster | None:
        return next((cluster for cluster in self.clusters if cluster.name == name), None)


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
class Config:
    registry: Registry = field(default_factory=Registry)
    settings: Settings = field(default_factory=Settings)
    controller: ControllerSettings = field(default_factory=ControllerSettings)
