"""What lab tests of the app share: its config, starting it, and the flow table it must produce.

The expected table is computed by the app's own pure core from the same config and the members' switch
ports, then written the way `ovs-ofctl dump-flows` prints it, so a test compares what a user would see.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from flows.addresses import dedicated_mac
from flows.config import load_config
from flows.flowspec import FlowSpec, action_text, expected_flows
from tests.netlab import CLUSTER_VIP, MEMBER_DIPS, Host, Lab

RUNTIMES = ("osken", "ryu")
ARP_MODES = ("proxy", "relay")
APP_COOKIES = "0x4e4c000000000000/0xffff000000000000"
VIP = CLUSTER_VIP.split("/")[0]
OUTSIDER_MAC, OUTSIDER_ADDRESS = "02:00:0a:00:00:3c", "10.0.0.60/24"


def cluster_yaml(arp: str = "proxy", member_dips: tuple[str, ...] = MEMBER_DIPS) -> str:
    members = "".join(f"      - ip: {dip.split('/')[0]}\n" for dip in member_dips)
    return f"clusters:\n  - name: web\n    cluster_ip: {VIP}\n    arp: {arp}\n    members:\n{members}"


def write_config(lab: Lab, text: str, name: str = "nlbflow.yaml") -> Path:
    path = lab.workdir / name
    path.write_text(text)
    return path


def dm(host: Host) -> str:
    """The dedicated MAC nlbflow gives a member (02:de:<DIP>)."""
    return dedicated_mac(host.ip)


def ovs_text(flow: FlowSpec) -> tuple[int, int, str, str]:
    """(cookie, priority, match, actions) as ovs-ofctl -O OpenFlow13 dump-flows prints them."""
    names = {"eth_dst": "dl_dst", "eth_type": None}
    match = dict(flow.match)
    parts = ["arp"] if match.get("eth_type") == 0x0806 else []
    parts += [f"{names.get(field, field)}={value}" for field, value in flow.match if names.get(field, field)]
    return (flow.cookie, flow.priority, ",".join(parts), ",".join(action_text(a) for a in flow.actions))


def expected_table(config_path: Path, members: list[Host]) -> set[tuple[int, int, str, str]]:
    config = load_config(str(config_path))
    ports = {(cluster.name, member.ip): member.ofport for cluster in config.registry.clusters for member in members}
    return {ovs_text(flow) for flow in expected_flows(config.registry, config.settings, ports)}


def app_table(lab: Lab) -> list[tuple[int, int, str, str]]:
    """The app's flows in the switch, as a list: a duplicate would show twice."""
    return [(f.cookie, f.priority, f.match, f.actions) for f in lab.dump_flows(APP_COOKIES)]


def wait_for_table(lab: Lab, expected: set, timeout: float = 20.0) -> list:
    """Wait until the switch holds exactly the expected app flows; return the last table read."""
    deadline = time.monotonic() + timeout
    while True:
        table = app_table(lab)
        if sorted(table) == sorted(expected) or time.monotonic() > deadline:
            return table
        time.sleep(0.2)


@dataclass
class ClusterLab:
    """A running lab: three members, a client and an outsider, br0 driven by the app."""

    lab: Lab
    members: list[Host]
    client: Host
    outsider: Host
    runtime: str
    arp: str
    config_path: Path


def start_cluster(lab: Lab, runtime: str, arp: str) -> ClusterLab:
    members, client = lab.add_typical_cluster()
    outsider = lab.add_host("o1", OUTSIDER_MAC, [OUTSIDER_ADDRESS], ofport=len(members) + 2)
    config_path = write_config(lab, cluster_yaml(arp))
    lab.start_controller(runtime, config_path)
    lab.wait_connected()
    expected = expected_table(config_path, members)
    table = wait_for_table(lab, expected)
    assert sorted(table) == sorted(expected), f"app flows never became the expected set:\n{lab.controller_log()}"
    return ClusterLab(lab, members, client, outsider, runtime, arp, config_path)
