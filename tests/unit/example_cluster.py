"""The example cluster of the unit tests: three members on one switch.

Ports 1-3 are the members, 4 a client, 5 another host: the same layout as the lab.
"""

from __future__ import annotations

from flows.addresses import dedicated_mac, unicast_cluster_mac
from flows.arp import ARP_REPLY, ARP_REQUEST, ArpFrame
from flows.model import ArpMode, Cluster, Config, Member, Registry

CLUSTER_IP = "10.0.0.100"
CM = unicast_cluster_mac(CLUSTER_IP)
MEMBER_IPS = ("10.0.0.11", "10.0.0.12", "10.0.0.13")
DM = {ip: dedicated_mac(ip) for ip in MEMBER_IPS}
MEMBER_PORT = {ip: port for port, ip in enumerate(MEMBER_IPS, start=1)}
CLIENT_IP, CLIENT_MAC, CLIENT_PORT = "10.0.0.50", "52:54:00:00:00:50", 4
OTHER_PORT = 5
SWITCH_PORTS = (1, 2, 3, 4, 5)
BROADCAST = "ff:ff:ff:ff:ff:ff"
ZERO_MAC = "00:00:00:00:00:00"


def web_cluster(arp: ArpMode = ArpMode.PROXY, pinned: bool = False) -> Cluster:
    members = tuple(
        Member(ip=ip, dedicated_mac=DM[ip], dpid=1 if pinned else None, port=MEMBER_PORT[ip] if pinned else None)
        for ip in MEMBER_IPS
    )
    return Cluster(name="web", cluster_ip=CLUSTER_IP, cluster_mac=CM, arp=arp, members=members)


def web_config(arp: ArpMode = ArpMode.PROXY, pinned: bool = False) -> Config:
    return Config(registry=Registry(clusters=(web_cluster(arp, pinned),)))


def request(spa: str, tpa: str, sha: str = CM, eth_src: str = CM, eth_dst: str = BROADCAST) -> ArpFrame:
    return ArpFrame(eth_src=eth_src, eth_dst=eth_dst, op=ARP_REQUEST, sha=sha, spa=spa, tha=ZERO_MAC, tpa=tpa)


def reply(spa: str, tpa: str, tha: str, eth_dst: str, sha: str = CM, eth_src: str = CM) -> ArpFrame:
    return ArpFrame(eth_src=eth_src, eth_dst=eth_dst, op=ARP_REPLY, sha=sha, spa=spa, tha=tha, tpa=tpa)


def located_ports() -> dict[tuple[str, str], int]:
    return {("web", ip): port for ip, port in MEMBER_PORT.items()}
