"""What the trust lab tests share (docs/trust.md): a cluster beside a second cluster, forged frames from an
outsider, and a member whose NIC moves to another switch port as a migrated VM's would.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

from scapy.layers.l2 import ARP, Ether

from flows.addresses import PROBE_MAC, unicast_cluster_mac
from tests.lab.appkit import (
    OUTSIDER_ADDRESS,
    OUTSIDER_MAC,
    VIP,
    ClusterLab,
    api_ok,
    cluster_yaml,
    expected_table,
    wait_for_table,
    write_config,
)
from tests.netlab import BRIDGE, CLUSTER_MAC, CLUSTER_VIP, MEMBER_DIPS, Host, Lab

OTHER_VIP = "10.0.0.200"
OTHER_CLUSTER_MAC = unicast_cluster_mac(OTHER_VIP)
UNKNOWN_TARGET = "10.0.0.77"  # no host has it: a frame asking for it is told apart from any other ARP


def start_two_clusters(lab: Lab, runtime: str, extra_args: tuple[str, ...] = ()) -> ClusterLab:
    """The typical cluster `web` (members m1..m3 on ports 1-3, client c1 on 4, outsider o1 on 5) and a
    second cluster `app` without members, whose cluster MAC a forger can use; every member located."""
    members, client = lab.add_typical_cluster()
    outsider = lab.add_host("o1", OUTSIDER_MAC, [OUTSIDER_ADDRESS], ofport=len(members) + 2)
    text = cluster_yaml() + f"  - name: app\n    cluster_ip: {OTHER_VIP}\n    arp: proxy\n"
    config_path = write_config(lab, text)
    lab.start_controller(runtime, config_path, extra_args)
    lab.wait_connected()
    expected = expected_table(config_path, members)
    table = wait_for_table(lab, expected)
    assert sorted(table) == sorted(expected), f"app flows never became the expected set:\n{lab.controller_log()}"
    return ClusterLab(lab, members, client, outsider, runtime, "proxy", config_path)


QUICK_CHECKS = (  # fabric.locations for a lab: quiet members are checked, and given up, within seconds
    "fabric:\n  locations: {confirm_seconds: 0.5, idle_seconds: 2, unanswered_probes: 2}\n"
)


def start_multicast_cluster(lab: Lab, runtime: str) -> tuple[list[Host], Host]:
    """A multicast-mode cluster whose members (own NIC MACs, registered as their `mac`) sit on ports 1-3,
    an outsider on 5, quick location checks; every member located."""
    members = [
        lab.add_host(f"m{i}", f"02:00:0a:00:00:{10 + i:02x}", [dip, CLUSTER_VIP], ofport=i)
        for i, dip in enumerate(MEMBER_DIPS, start=1)
    ]
    outsider = lab.add_host("o1", OUTSIDER_MAC, [OUTSIDER_ADDRESS], ofport=5)
    members_yaml = "".join(f"      - {{ip: {m.ip}, mac: '{m.mac}'}}\n" for m in members)
    text = f"{QUICK_CHECKS}clusters:\n  - name: web\n    cluster_ip: {VIP}\n    mode: multicast\n"
    config_path = write_config(lab, text + f"    members:\n{members_yaml}")
    lab.start_controller(runtime, config_path)
    lab.wait_connected()
    expected = expected_table(config_path, members)
    assert sorted(wait_for_table(lab, expected)) == sorted(expected), lab.controller_log()
    return members, outsider


def cluster_delivery_ports(lab: Lab, cluster_mac: str) -> list[int]:
    """The ports the cluster's delivery flow sends its frames to (ovs-ofctl dump-flows)."""
    flows = [flow for flow in lab.dump_flows() if flow.match == f"dl_dst={cluster_mac}"]
    return sorted(
        int(action.split(":")[1])
        for flow in flows
        for action in flow.actions.split(",")
        if action.startswith("output:")
    )


def forged_member_arp(member: Host, target_ip: str, src_mac: str, sender_mac: str = CLUSTER_MAC) -> bytes:
    """An ARP request that claims to come from `member`: arp_spa = its DIP, arp_sha = a cluster MAC."""
    arp = ARP(op=1, hwsrc=sender_mac, psrc=member.ip, hwdst="00:00:00:00:00:00", pdst=target_ip)
    return bytes(Ether(src=src_mac, dst="ff:ff:ff:ff:ff:ff") / arp)


def forged_probe_answer(member: Host, src_mac: str) -> bytes:
    """An answer to the app's probe (to its probe MAC) that claims to come from `member`."""
    arp = ARP(op=2, hwsrc=CLUSTER_MAC, psrc=member.ip, hwdst=PROBE_MAC, pdst="0.0.0.0")
    return bytes(Ether(src=src_mac, dst=PROBE_MAC) / arp)


def counters(lab: Lab) -> dict:
    return api_ok(lab, "GET", "/nlb/status")["counters"]


def wait_for(condition, timeout: float = 15.0, step: float = 0.2):
    """Poll until condition() is true; return its last value (a test then asserts on it)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(step)


def member_ports(lab: Lab, ip: str) -> list[int]:
    """The ports the switch sees the member on, as GET /nlb/clusters/web/members/{ip} reports them."""
    return [spot["port"] for spot in api_ok(lab, "GET", f"/nlb/clusters/web/members/{ip}")["located"]]


def delivery_outputs(lab: Lab, dedicated_mac: str) -> list[str]:
    """The actions of the member's delivery flow in the switch (ovs-ofctl dump-flows)."""
    return [flow.actions for flow in lab.dump_flows() if f"dl_dst={dedicated_mac}" in flow.match]


@contextmanager
def pinging(lab: Lab, src: Host, dst_ip: str, count: int) -> Iterator[list[int]]:
    """A ping running while the with-block runs; afterwards the list holds how many replies came."""
    replies: list[int] = []
    worker = threading.Thread(target=lambda: replies.append(lab.ping_replies(src, dst_ip, count=count)))
    worker.start()
    try:
        yield replies
    finally:
        worker.join()


def move_nic(lab: Lab, member: Host, ofport: int) -> Host:
    """Migrate a member to another switch port, as a VM moved to another host: a new veth on `ofport` takes
    its MAC and addresses, and the old NIC stays plugged in but silent (no address, ARP off), so the old
    port is neither down nor answering. Returns the member as now plugged in (its NIC is eth1)."""
    switch_iface = member.switch_iface + "b"
    lab.run(None, *f"ip link add {switch_iface} type veth peer name eth1 netns {member.netns}".split())
    lab.run(member, "ip", "link", "set", "eth1", "address", member.mac)
    lab.run(member, "ethtool", "-K", "eth1", "tx", "off")
    lab.run(None, "ip", "link", "set", switch_iface, "up")
    lab.vsctl("add-port", BRIDGE, switch_iface, "--", "set", "interface", switch_iface, f"ofport_request={ofport}")
    lab.run(member, "ip", "address", "flush", "dev", "eth0")
    lab.run(member, "ip", "link", "set", "eth0", "arp", "off")
    for address in member.addresses:
        lab.run(member, "ip", "address", "add", address, "dev", "eth1")
    lab.run(member, "ip", "link", "set", "eth1", "up")
    return replace(member, ofport=ofport, switch_iface=switch_iface)


def announce(lab: Lab, host: Host, iface: str) -> None:
    """A gratuitous ARP for the host's own address out of `iface` (Lab.gratuitous_arp uses eth0)."""
    argv = ["arping", "-U", "-S", host.ip, "-i", iface, "-c", "1", "-w", "1", host.ip]
    lab.run(host, *argv, check=False, timeout=15)
