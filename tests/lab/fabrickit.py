"""The multi-switch lab of the fabric tests (issue 9): two OVS bridges, each its own OpenFlow switch.

Both topologies are drawn in docs/lab.md. Topology A, the usual hypervisor fabric: hv1 (m1, m2) and hv2
(m3, m4 and o2, a host of no cluster), each with an uplink (a veth, port 10 and port 20) into a Linux
bridge, a plain learning switch, which also holds the client c1 and another non-member, o1. Topology B:
hv1 (m1, m2, the client c1 on port 3) and hv2 (m3, m4, o2 on port 3) joined directly by two OVS patch
ports, port 30 on each.

The config names hv1's uplink by its OVS port name and hv2's by its OpenFlow port number, so both ways
of naming an uplink are exercised.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import permutations
from pathlib import Path

from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from tests.lab.appkit import (
    APP_COOKIES,
    IPV6_VIP_YAML,
    OUTSIDER_ADDRESS,
    OUTSIDER_MAC,
    VIP,
    api_ok,
    dm,
    member_yaml,
    wait_for_api,
    write_config,
)
from tests.netlab import (
    CLIENT_ADDRESS,
    CLIENT_MAC,
    CLUSTER_MAC,
    Capture,
    Host,
    Lab,
    Link,
    OvsBridge,
    ipv6_dip,
)

FABRIC_DIPS = ("10.0.0.11/24", "10.0.0.12/24", "10.0.0.13/24", "10.0.0.14/24")
OTHER_MAC, OTHER_ADDRESS = "02:00:0a:00:00:5c", "10.0.0.92/24"  # the non-member on hv2
# Members with MACs of their own instead of the cluster MAC: the control that the topology switches at all.
OWN_MACS = ("02:00:0a:00:00:0b", "02:00:0a:00:00:0c", "02:00:0a:00:00:0d", "02:00:0a:00:00:0e")
UPLINK_PORTS = {"hv1": 10, "hv2": 20}  # topology A
PATCH_PORT = 30  # topology B, on both bridges
SETTLE_TIMEOUT = 45.0


@dataclass
class FabricLab:
    """A built topology: its switches by label (hv1, hv2), hosts, and the links between the switches."""

    lab: Lab
    switches: dict[str, OvsBridge]
    members: list[Host]
    client: Host
    others: list[Host]  # hosts of no cluster
    uplinks: dict[str, Link]  # the link each switch's uplink belongs to, by switch label
    linux_bridge: str | None = None
    runtime: str = ""
    arp: str = ""
    config_path: Path | None = None

    def switch_of(self, host: Host) -> str:
        """The label (hv1, hv2) of the OVS bridge a host is on now; "" for the Linux bridge."""
        host = self.lab.hosts[host.name]
        return next((label for label, bridge in self.switches.items() if bridge.name == host.bridge), "")

    def members_on(self, label: str) -> list[Host]:
        return [m for m in self.current(self.members) if self.switch_of(m) == label]

    def current(self, hosts: Sequence[Host]) -> list[Host]:
        """The hosts as they are now (a moved host has a new bridge and port)."""
        return [self.lab.hosts[h.name] for h in hosts]

    def uplink_port(self, label: str) -> int:
        """The OpenFlow port number of a switch's uplink."""
        end = self.uplinks[label].end_on(self.switches[label].name)
        assert end.ofport is not None
        return end.ofport


def build_topology_a(lab: Lab, member_macs: Sequence[str] | None = None, ipv6: bool = False) -> FabricLab:
    """Topology A (see the module's docstring), not yet controlled; `member_macs` replaces the cluster MAC.
    ipv6: every host dual-stack (Lab.add_member's IPv6 DIP and VIP, an IPv6 address for each non-member)."""
    switches = {"hv1": lab.add_ovs_bridge("hv1", 1), "hv2": lab.add_ovs_bridge("hv2", 2)}
    bridge = lab.add_linux_bridge("lb")
    uplinks = {
        label: lab.add_link(f"up{label[-1]}", switches[label].name, bridge, ofport_a=UPLINK_PORTS[label])
        for label in switches
    }
    members = _add_members(lab, switches, member_macs, ipv6)

    def v6(address: str) -> list[str]:
        return [f"{ipv6_dip(address)}/64"] if ipv6 else []

    hv2 = switches["hv2"].name
    other = lab.add_host("o2", OTHER_MAC, [OTHER_ADDRESS], ofport=3, bridge=hv2, ipv6=v6(OTHER_ADDRESS))
    client = lab.add_host("c1", CLIENT_MAC, [CLIENT_ADDRESS], bridge=bridge, ipv6=v6(CLIENT_ADDRESS))
    outsider = lab.add_host("o1", OUTSIDER_MAC, [OUTSIDER_ADDRESS], bridge=bridge, ipv6=v6(OUTSIDER_ADDRESS))
    return FabricLab(lab, switches, members, client, [outsider, other], uplinks, bridge)


def build_topology_b(lab: Lab, member_macs: Sequence[str] | None = None) -> FabricLab:
    """Topology B: hv1 and hv2 joined by patch ports; the client on hv1, a non-member on hv2."""
    switches = {"hv1": lab.add_ovs_bridge("hv1", 1), "hv2": lab.add_ovs_bridge("hv2", 2)}
    patch = lab.add_link(
        "pt", switches["hv1"].name, switches["hv2"].name, ofport_a=PATCH_PORT, ofport_b=PATCH_PORT, kind="patch"
    )
    members = _add_members(lab, switches, member_macs)
    client = lab.add_host("c1", CLIENT_MAC, [CLIENT_ADDRESS], ofport=3, bridge=switches["hv1"].name)
    other = lab.add_host("o2", OTHER_MAC, [OTHER_ADDRESS], ofport=3, bridge=switches["hv2"].name)
    return FabricLab(lab, switches, members, client, [other], {"hv1": patch, "hv2": patch})


def _add_members(
    lab: Lab, switches: dict[str, OvsBridge], macs: Sequence[str] | None, ipv6: bool = False
) -> list[Host]:
    """m1, m2 on hv1 and m3, m4 on hv2, at ports 1 and 2 of each."""
    members = []
    for index, dip in enumerate(FABRIC_DIPS):
        bridge = switches["hv1" if index < 2 else "hv2"].name
        mac = CLUSTER_MAC if macs is None else macs[index]
        port = index % 2 + 1
        members.append(lab.add_member(f"m{index + 1}", dip, ofport=port, cluster_mac=mac, bridge=bridge, ipv6=ipv6))
    return members


def fabric_yaml(fabric: FabricLab, arp: str) -> str:
    """The cluster, and the fabric's switches with their uplinks: hv1's by port name, hv2's by number.
    Dual-stack members have their IPv6 DIPs registered, and the cluster its IPv6 VIP."""
    members = "".join(member_yaml(m.ip, m.ip6 if m.ipv6 else None) for m in fabric.members)
    vips = IPV6_VIP_YAML if any(m.ipv6 for m in fabric.members) else ""
    hv1_uplink = fabric.uplinks["hv1"].end_on(fabric.switches["hv1"].name).iface
    return (
        "fabric:\n  switches:\n"
        f'    - {{dpid: "{fabric.switches["hv1"].dpid:016x}", name: hv1, uplinks: [{hv1_uplink}]}}\n'
        f'    - {{dpid: "{fabric.switches["hv2"].dpid:016x}", name: hv2, uplinks: [{fabric.uplink_port("hv2")}]}}\n'
        f"clusters:\n  - name: web\n    cluster_ip: {VIP}\n{vips}    arp: {arp}\n    members:\n{members}"
    )


def start_fabric(fabric: FabricLab, runtime: str, arp: str) -> FabricLab:
    """Run the app on the fabric and wait until every member is located on its own switch and port."""
    fabric.runtime, fabric.arp = runtime, arp
    fabric.config_path = write_config(fabric.lab, fabric_yaml(fabric, arp))
    fabric.lab.start_controller(runtime, fabric.config_path)
    fabric.lab.wait_connected()
    wait_for_api(fabric.lab)
    wait_located(fabric, fabric.members)
    return fabric


def normal_only(fabric: FabricLab) -> None:
    """Every OVS bridge does NORMAL only, as a learning switch without a controller would."""
    for bridge in fabric.switches.values():
        fabric.lab.add_flow("actions=NORMAL", bridge=bridge.name)


# --- what the controller says --------------------------------------------------------------------------


def where_located(fabric: FabricLab, member: Host) -> list[tuple[int, int]]:
    """(dpid, port) of every place the app sees a member now (the REST member view)."""
    views = api_ok(fabric.lab, "GET", f"/nlb/clusters/web/members/{member.ip}")["located"]
    return sorted((view["dpid"], view["port"]) for view in views)


def expected_place(fabric: FabricLab, member: Host) -> tuple[int, int]:
    member = fabric.lab.hosts[member.name]
    assert member.ofport is not None
    return fabric.switches[fabric.switch_of(member)].dpid, member.ofport


def wait_located(fabric: FabricLab, members: Sequence[Host], timeout: float = SETTLE_TIMEOUT) -> None:
    """Wait until the app sees each member at its own switch and port, and nowhere else, and the flows
    of every switch have stopped changing."""
    deadline = time.monotonic() + timeout
    while True:
        seen = {m.name: where_located(fabric, m) for m in members}
        wanted = {m.name: [expected_place(fabric, m)] for m in members}
        if seen == wanted:
            break
        if time.monotonic() > deadline:
            raise AssertionError(f"members located at {seen}, not {wanted}:\n{log_tail(fabric.lab)}")
        time.sleep(0.3)
    wait_flows_settled(fabric)


def switch_status(fabric: FabricLab, label: str) -> dict:
    """The status entry (GET /nlb/status) of one switch."""
    dpid = fabric.switches[label].dpid
    return next(s for s in api_ok(fabric.lab, "GET", "/nlb/status")["switches"] if s["dpid"] == dpid)


def members_in_status(fabric: FabricLab, label: str) -> list[tuple[str, int]]:
    """(ip, port) of the members the status shows located on a switch."""
    return sorted((m["ip"], m["port"]) for m in switch_status(fabric, label)["members"])


def log_tail(lab: Lab, lines: int = 60) -> str:
    return "controller log, last lines:\n" + "\n".join(lab.controller_log().splitlines()[-lines:])


# --- the switches' flows ---------------------------------------------------------------------------


FlowKey = tuple[int, int, int, str, str]  # (table, cookie, priority, match, actions)


def app_flows(fabric: FabricLab, label: str) -> dict[FlowKey, float]:
    """The app's flows on one switch, each with its age in seconds (a replaced flow starts again from 0)."""
    flows = fabric.lab.dump_flows(APP_COOKIES, bridge=fabric.switches[label].name)
    keys = [(f.table, f.cookie, f.priority, ",".join(sorted(f.match.split(","))), f.actions) for f in flows]
    assert len(keys) == len(set(keys)), f"duplicate flows on {label}"
    return {key: f.duration for key, f in zip(keys, flows)}


def wait_flows_settled(fabric: FabricLab, quiet: float = 1.0, timeout: float = 20.0) -> None:
    """Wait until no switch's app flows have changed for `quiet` seconds."""
    deadline = time.monotonic() + timeout
    last = {label: set(app_flows(fabric, label)) for label in fabric.switches}
    stable_since = time.monotonic()
    while time.monotonic() - stable_since < quiet:
        if time.monotonic() > deadline:
            raise AssertionError(f"the app's flows kept changing for {timeout} s:\n{log_tail(fabric.lab)}")
        time.sleep(0.25)
        now = {label: set(app_flows(fabric, label)) for label in fabric.switches}
        if now != last:
            last, stable_since = now, time.monotonic()


# --- traffic ---------------------------------------------------------------------------------------


def unreachable_pairs(fabric: FabricLab, pairs: Sequence[tuple[Host, Host]], count: int = 2) -> list[tuple[str, str]]:
    """The (source, target) pairs whose pings by DIP were not all answered."""
    return [(s.name, d.name) for s, d in pairs if not fabric.lab.ping(s, d.ip, count=count)]


def answered_pairs(fabric: FabricLab, pairs: Sequence[tuple[Host, Host]], count: int = 2) -> list[tuple[str, str]]:
    """The (source, target) pairs of which any ping by DIP was answered."""
    return [(s.name, d.name) for s, d in pairs if fabric.lab.ping_replies(s, d.ip, count=count) > 0]


def wait_reachable(
    fabric: FabricLab, pairs: Sequence[tuple[Host, Host]], timeout: float = 20.0
) -> list[tuple[str, str]]:
    """Ping each pair until one echo is answered, up to `timeout` in all; the pairs that never were."""
    deadline = time.monotonic() + timeout
    missing = list(pairs)
    while missing and time.monotonic() < deadline:
        missing = [(s, d) for s, d in missing if fabric.lab.ping_replies(s, d.ip, count=1) == 0]
    return [(s.name, d.name) for s, d in missing]


def member_pairs(fabric: FabricLab) -> list[tuple[Host, Host]]:
    return list(permutations(fabric.current(fabric.members), 2))


def cross_pairs(fabric: FabricLab) -> list[tuple[Host, Host]]:
    """Ordered member pairs on different switches."""
    return [(s, d) for s, d in member_pairs(fabric) if fabric.switch_of(s) != fabric.switch_of(d)]


def peer_entries(fabric: FabricLab, member: Host) -> dict[str, str | None]:
    """What a member's neighbour table holds for each of its peers (None: no entry, or unresolved)."""
    table = fabric.lab.neigh(member)
    peers = [p for p in fabric.members if p.name != member.name]
    return {p.name: table[p.ip].lladdr if p.ip in table else None for p in peers}


def dedicated_macs_of_peers(fabric: FabricLab, member: Host) -> dict[str, str | None]:
    return {p.name: dm(p) for p in fabric.members if p.name != member.name}


# --- a burst of client frames for the cluster MAC ---------------------------------------------------

BURST_PORT = 9999
BURST_SIZE = 20


def burst_frames(client: Host, dst_mac: str, tag: str, count: int = 1) -> list[bytes]:
    """UDP datagrams from the client to the VIP in frames for `dst_mac`, payload `<tag> <seq>`."""
    return [
        bytes(
            Ether(src=client.mac, dst=dst_mac)
            / IP(src=client.ip, dst=VIP)
            / UDP(sport=40000, dport=BURST_PORT)
            / Raw(f"{tag} {seq}".encode())
        )
        for seq in range(count)
    ]


def burst_view(capture: Capture) -> list[tuple[str, str, str, str, int, str]]:
    """Each captured burst frame, field by field: (eth_src, eth_dst, ip_src, ip_dst, udp_dport, payload)."""
    return [
        (f[Ether].src, f[Ether].dst, f[IP].src, f[IP].dst, f[UDP].dport, bytes(f[UDP].payload).decode())
        for f in capture.frames
        if UDP in f
    ]


def expected_burst(client: Host, dst_mac: str, tag: str, count: int = 1) -> list[tuple[str, str, str, str, int, str]]:
    return [(client.mac, dst_mac, client.ip, VIP, BURST_PORT, f"{tag} {seq}") for seq in range(count)]
