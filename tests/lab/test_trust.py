"""Nobody but the member itself may say where a member is (docs/trust.md), on a real OVS with Linux members.

Forged frames come from an outsider's namespace on a port of its own; the members keep their ports, keep
reaching each other, and the controller counts and logs each forgery. A member whose NIC moves to another
port (a VM migration) is followed once its old port has stayed silent for the confirm time; a
multicast-mode member, whose ARP the app never sees, is found again by its registered NIC MAC.
"""

from __future__ import annotations

from contextlib import ExitStack

import pytest
from scapy.layers.l2 import ARP

from flows.addresses import multicast_cluster_mac
from tests.lab.appkit import RUNTIMES, VIP, dm
from tests.lab.trustkit import (
    OTHER_CLUSTER_MAC,
    UNKNOWN_TARGET,
    announce,
    cluster_delivery_ports,
    counters,
    delivery_outputs,
    forged_member_arp,
    forged_probe_answer,
    member_ports,
    move_nic,
    pinging,
    start_multicast_cluster,
    start_two_clusters,
    wait_for,
)

FORGERIES = 10
WARNINGS_ONLY = ("--default-log-level", "30")  # what the controller logs then is a warning


def asked_for_unknown(capture) -> list[str]:
    return [f.summary() for f in capture.frames if ARP in f and f[ARP].pdst == UNKNOWN_TARGET]


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_forged_frames_from_an_outsider_move_no_member_and_are_counted_and_logged(lab, runtime):
    net = start_two_clusters(lab, runtime, extra_args=WARNINGS_ONLY)
    m1, m2, _ = net.members
    outsider = net.outsider
    assert lab.ping(m2, m1.ip) and lab.ping(m1, m2.ip)
    before = counters(lab)
    forged = [
        forged_member_arp(m1, UNKNOWN_TARGET, outsider.mac),  # m1's ARP, from the outsider's port
        forged_member_arp(m1, UNKNOWN_TARGET, outsider.mac, sender_mac=OTHER_CLUSTER_MAC),  # another cluster's MAC
        forged_probe_answer(m1, outsider.mac),  # an answer to a probe the app never sent there
    ]

    with ExitStack() as stack:
        seen = [stack.enter_context(lab.capture(host, "arp")) for host in (m2, net.client)]
        replies = stack.enter_context(pinging(lab, m2, m1.ip, count=FORGERIES * 2))
        lab.send_frames(outsider, forged * FORGERIES, interval=0.1)
    assert replies == [FORGERIES * 2], "a ping between members broke during the forgeries"
    assert [asked_for_unknown(capture) for capture in seen] == [[], []], "a forged ARP reached a host"

    wanted = before["dropped_spoofed"] + 3
    assert wait_for(lambda: counters(lab)["dropped_spoofed"] >= wanted), f"not counted:\n{lab.controller_log()}"
    assert member_ports(lab, m1.ip) == [m1.ofport]
    assert delivery_outputs(lab, dm(m1)) == [f"set_field:{m1.mac}->eth_dst,output:{m1.ofport}"]
    assert lab.ping(m2, m1.ip) and lab.ping(m1, m2.ip)
    named = f"member {m1.ip} of cluster web on port {m1.ofport}: a frame claiming it from port {outsider.ofport}"
    assert named in lab.controller_log(), "the warning names both ports (only warnings are logged)"

    # the positive control: the same ARP sent by m1 itself, from its own port, reaches its peer and the client
    with ExitStack() as stack:
        seen = [stack.enter_context(lab.capture(host, "arp")) for host in (m2, net.client)]
        lab.arping(m1, UNKNOWN_TARGET, source_ip=m1.ip, timeout=1)
    assert all(asked_for_unknown(capture) for capture in seen), "the capture sees a member's own ARP"


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_member_whose_nic_moves_to_another_port_is_followed_once_its_old_port_stays_silent(lab, runtime):
    net = start_two_clusters(lab, runtime)
    m1, _, m3 = net.members
    assert lab.ping(m1, m3.ip)
    old_port, new_port = m3.ofport, 9

    moved = move_nic(lab, m3, new_port)
    announce(lab, moved, "eth1")  # as a migrated VM announces itself

    assert wait_for(lambda: member_ports(lab, m3.ip) == [new_port]), lab.controller_log()
    log = lab.controller_log()
    assert f"member {m3.ip} of cluster web moved from port {old_port} to port {new_port} (port {old_port} silent" in log
    assert delivery_outputs(lab, dm(m3)) == [f"set_field:{m3.mac}->eth_dst,output:{new_port}"]
    assert lab.ping(m1, m3.ip) and lab.ping(moved, m1.ip)
    assert counters(lab)["dropped_spoofed"] == 0


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_multicast_member_whose_nic_moves_is_found_again_by_its_nic_mac(lab, runtime):
    """Its ARP is not punted: the check of its quiet location finds the old port silent, the member is
    looked for on every port, and its answer from the new port, with its registered NIC MAC, locates it."""
    members, _ = start_multicast_cluster(lab, runtime)
    m1, _, m3 = members
    cluster_mac = multicast_cluster_mac(VIP)
    assert cluster_delivery_ports(lab, cluster_mac) == [1, 2, 3]
    old_port, new_port = m3.ofport, 9

    moved = move_nic(lab, m3, new_port)

    assert wait_for(lambda: member_ports(lab, m3.ip) == [new_port], timeout=30), lab.controller_log()
    assert f"member {m3.ip} of cluster web lost: 2 probes on port {old_port} unanswered" in lab.controller_log()
    assert cluster_delivery_ports(lab, cluster_mac) == [1, 2, new_port]
    assert lab.ping(moved, m1.ip) and lab.ping(m1, moved.ip)
