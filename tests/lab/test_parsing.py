"""Punted frames the app does not handle, on a real OVS under both runtimes (docs/parsing.md): another
app's flow punts everything a client sends, including the frame that hung both frameworks' generic
parsers, and a member sends tagged and malformed ARP through the app's own punt flow. Each is counted
by its reason and dropped, nothing answers it, and the controller keeps answering members and REST."""

from __future__ import annotations

import time

import pytest
from scapy.layers.l2 import ARP, Ether

from tests.lab.appkit import RUNTIMES, api_ok, dm, start_cluster
from tests.netlab import CLUSTER_MAC, Lab
from tests.unit import framekit

PUNT_ALL_FROM = "table=1,priority=500,cookie=0x1,in_port={port},actions=CONTROLLER:65535"


def counters(lab: Lab) -> dict[str, int]:
    return api_ok(lab, "GET", "/nlb/status")["counters"]


def wait_for_counters(lab: Lab, expected: dict[str, int], timeout: float = 15.0) -> dict[str, int]:
    """Poll `nlbflow status` until each counter named in `expected` has reached its value."""
    deadline = time.monotonic() + timeout
    while True:
        now = counters(lab)
        if all(now[name] >= value for name, value in expected.items()) or time.monotonic() > deadline:
            return now
        time.sleep(0.2)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_frames_the_app_does_not_handle_are_counted_dropped_and_never_stall_it(lab, runtime):
    net = start_cluster(lab, runtime, "proxy")
    m1, m2 = net.members[0], net.members[1]
    assert lab.arping(m1, m2.ip) == [dm(m2)], "positive control: the app answers a member's ARP"
    lab.add_flow(PUNT_ALL_FROM.format(port=net.client.ofport))  # another app's flow (cookie 0x1)
    before = counters(lab)

    hostile = [bytes(build()) for build in framekit.HOSTILE.values()]
    multicast_sender = Ether(src=net.client.mac, dst="ff:ff:ff:ff:ff:ff") / ARP(
        op=1, hwsrc="01:00:5e:00:00:01", psrc=net.client.ip, pdst=m2.ip
    )
    truncated = bytes(Ether(src=net.client.mac, dst="ff:ff:ff:ff:ff:ff") / ARP(psrc=net.client.ip, pdst=m2.ip))[:30]
    request = framekit.member_arp(spa=m1.ip, tpa=m2.ip, sha=CLUSTER_MAC, eth_src=CLUSTER_MAC)
    # OVS matches one VLAN header by default (vlan-limit 1): a double-tagged ARP is punted by the catch-all
    # flow only, so the client sends it.
    double_tagged = framekit.tagged(request, 100, 10, outer_tpid=0x88A8)
    lab.send_frames(net.client, [*hostile, bytes(multicast_sender), truncated, bytes(double_tagged)], interval=0.02)

    opcode_3 = request.copy()
    opcode_3[ARP].op = 3
    member_frames = [framekit.tagged(request, 10), opcode_3]  # through the app's own punt flow (arp_sha=CM)
    with lab.capture(m1, "arp", direction="in", settle=1.0) as to_m1:
        lab.send_frames(m1, [bytes(frame) for frame in member_frames], interval=0.02)
        expected = {
            "not_arp": before["not_arp"] + len(hostile),
            "truncated": before["truncated"] + 1,
            "malformed": before["malformed"] + 2,
            "tagged": before["tagged"] + 2,
        }
        after = wait_for_counters(lab, expected)

    assert {name: after[name] for name in expected} == expected | {"not_arp": after["not_arp"]}
    assert after["not_arp"] >= expected["not_arp"]  # the client's own kernel may punt more (IPv6, ...)
    answers = [f for f in to_m1.frames if ARP in f and f[ARP].op == 2 and f[ARP].psrc == m2.ip]
    assert answers == [], "a tagged or opcode-3 request was answered"
    assert lab.controller_connected()
    assert lab.arping(m1, m2.ip) == [dm(m2)], "the app still answers members after every frame above"
    log = lab.controller_log()
    assert "Traceback" not in log and "packet-in dropped" not in log, log[-3000:]
