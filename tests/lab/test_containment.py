"""Cluster traffic without flooding, source masking, port state, and a cluster that really balances load.

Real Open vSwitch, Linux members; frames are counted with captures on every port that matters.
"""

from __future__ import annotations

import collections
import threading
import time
from contextlib import ExitStack

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import ARP, Ether

from flows.addresses import igmp_cluster_mac, multicast_cluster_mac
from tests.lab.appkit import (
    APP_COOKIES,
    CLIENT_SOURCES,
    HTTP_PORT,
    OUTSIDER_ADDRESS,
    OUTSIDER_MAC,
    RUNTIMES,
    VIP,
    api,
    dm,
    expected_table,
    serve_load_balanced,
    start_cluster,
    wait_for_table,
    write_config,
)
from tests.netlab import CLUSTER_MAC, CLUSTER_VIP, MEMBER_DIPS, Host, Lab

BURST = 40
MODE_MACS = {"unicast": CLUSTER_MAC, "multicast": multicast_cluster_mac(VIP), "igmp": igmp_cluster_mac(VIP)}


def multicast_mode_cluster(lab: Lab, mode: str) -> tuple[list[Host], Host, Host]:
    """Members that keep their own MACs (multicast and IGMP modes), a client and an outsider."""
    members = [
        lab.add_host(f"m{i}", f"02:00:0a:00:00:{10 + i:02x}", [dip, CLUSTER_VIP], ofport=i)
        for i, dip in enumerate(MEMBER_DIPS, start=1)
    ]
    client = lab.add_host("c1", "02:00:0a:00:00:32", ["10.0.0.50/24"], ofport=4)
    outsider = lab.add_host("o1", OUTSIDER_MAC, [OUTSIDER_ADDRESS], ofport=5)
    members_yaml = "".join(f"      - ip: {m.ip}\n" for m in members)
    text = f"clusters:\n  - name: web\n    cluster_ip: {VIP}\n    mode: {mode}\n    members:\n{members_yaml}"
    config = write_config(lab, text)
    lab.start_controller("osken", config)
    lab.wait_connected()
    expected = expected_table(config, members)
    assert sorted(wait_for_table(lab, expected)) == sorted(expected), lab.controller_log()
    return members, client, outsider


def burst_to(cluster_mac: str, client: Host) -> list[bytes]:
    frame = Ether(src=client.mac, dst=cluster_mac) / IP(src=client.ip, dst=VIP) / UDP(sport=5000, dport=9999)
    return [bytes(frame / f"frame {n}".encode()) for n in range(BURST)]


@pytest.mark.parametrize("mode", ["unicast", "multicast", "igmp"])
def test_frames_for_the_cluster_mac_reach_every_member_port_and_no_other(lab, mode):
    cluster_mac = MODE_MACS[mode]
    if mode == "unicast":
        net = start_cluster(lab, "osken", "proxy")
        members, client, outsider = net.members, net.client, net.outsider
    else:
        members, client, outsider = multicast_mode_cluster(lab, mode)
    burst_filter = f"ether dst {cluster_mac} and udp dst port 9999"
    with ExitStack() as stack:
        seen = {m.name: stack.enter_context(lab.capture(m, burst_filter, direction="in")) for m in members}
        for host in (client, outsider):  # any frame for the cluster MAC at all
            seen[host.name] = stack.enter_context(lab.capture(host, f"ether dst {cluster_mac}", direction="in"))
        lab.send_frames(client, burst_to(cluster_mac, client), interval=0.005)  # a burst a busy CI box can carry
    counts = {name: len(capture.frames) for name, capture in seen.items()}
    assert counts == {**{m.name: BURST for m in members}, client.name: 0, outsider.name: 0}


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_with_masking_no_switch_table_holds_the_cluster_mac_and_clients_still_resolve_the_vip_to_it(lab, runtime):
    net = start_cluster(lab, runtime, "proxy")
    client = net.client
    with lab.capture(client, "arp or icmp", direction="in") as seen:
        for member in net.members:
            assert lab.ping(member, client.ip, count=2)
            for peer in net.members:
                if peer is not member:
                    assert lab.ping(member, peer.ip, count=1)
        lab.flush_neigh(client)
        assert lab.ping(client, VIP)
    assert CLUSTER_MAC not in {mac for _, mac in lab.fdb()}
    assert {mac for port, mac in lab.fdb() if port <= len(net.members)} <= {dm(m) for m in net.members}
    assert lab.neigh(client)[VIP].lladdr == CLUSTER_MAC
    sources = {f[Ether].src for f in seen.frames if IP in f and f[IP].src in {m.ip for m in net.members}}
    assert sources == {dm(m) for m in net.members}, "members' frames reach the client from their dedicated MACs"
    arp_replies = [f for f in seen.frames if ARP in f and f[ARP].op == 2 and f[ARP].psrc == VIP]
    assert arp_replies and {f[ARP].hwsrc for f in arp_replies} == {CLUSTER_MAC}


def test_a_load_balanced_cluster_serves_each_connection_exactly_once_by_the_member_its_hash_names(lab):
    net = start_cluster(lab, "osken", "proxy")
    serve_load_balanced(lab, net.members, net.client)
    peer_pings: list[int] = []
    m1, m2 = net.members[0], net.members[1]
    pinger = threading.Thread(target=lambda: peer_pings.append(lab.ping_replies(m1, m2.ip, count=40, timeout=2)))
    with lab.capture(net.outsider, f"ether dst {CLUSTER_MAC}", direction="in") as outsider_view:
        pinger.start()
        results = lab.http_requests(net.client, VIP, HTTP_PORT, CLIENT_SOURCES, count=210)
        pinger.join()
    assert [r for r in results if "error" in r] == [], "a reset or a timeout: two members, or none, answered"
    assert all(r["status"] == 200 for r in results) and len(results) == 210
    served_by = collections.Counter(r["body"] for r in results)
    assert set(served_by) == {m.name for m in net.members}, f"every member serves some: {served_by}"
    member_of_source = {(r["source"], r["body"]) for r in results}
    assert len(member_of_source) == len(CLIENT_SOURCES), "each client address is always served by one member"
    assert peer_pings == [40], "member-to-member traffic runs at the same time"
    assert outsider_view.frames == [], "a non-member port saw cluster frames"


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_member_port_that_goes_down_gets_no_frames_and_is_reached_again_when_up(lab, runtime):
    net = start_cluster(lab, runtime, "proxy")
    m1, m2, m3 = net.members
    lab.set_switch_port(m3, up=False)
    m3_down = expected_table(net.config_path, net.members, down=(m3,))
    assert sorted(wait_for_table(lab, m3_down)) == sorted(m3_down), lab.controller_log()
    status = api(lab, "GET", "/nlb/status")[1]
    m3_status = next(m for m in status["clusters"][0]["members"] if m["ip"] == m3.ip)
    assert [(spot["port"], spot["how"], spot["port_up"]) for spot in m3_status["located"]] == [
        (m3.ofport, "probe", False)
    ]

    sent_before = lab.port_tx_packets(m3)
    assert lab.ping(net.client, VIP, count=5)
    assert lab.ping(m1, m2.ip, count=3)
    assert lab.tcp_exchange(net.client, m2, m2.ip, 7600)
    assert lab.tcp_exchange(m2, m1, m1.ip, 7601)
    assert lab.port_tx_packets(m3) == sent_before, "frames went out of a port that is down"

    lab.set_switch_port(m3, up=True)
    everything = expected_table(net.config_path, net.members)
    assert sorted(wait_for_table(lab, everything)) == sorted(everything), lab.controller_log()
    assert lab.ping(m1, m3.ip, count=3, timeout=2)
    assert lab.tcp_exchange(net.client, m3, m3.ip, 7602)


def test_a_controller_restart_drops_no_cluster_frame_in_multicast_mode(lab):
    """Multicast-mode members leave no member flow behind; the cluster flow must survive the restart."""
    cluster_mac = MODE_MACS["multicast"]
    members, client, outsider = multicast_mode_cluster(lab, "multicast")
    burst = [bytes(frame) for frame in burst_to(cluster_mac, client)] * 4  # 160 frames over about 8 s
    sender = threading.Thread(target=lambda: lab.send_frames(client, burst, interval=0.05))
    burst_filter = f"ether dst {cluster_mac} and udp dst port 9999"
    with ExitStack() as stack:
        seen = {m.name: stack.enter_context(lab.capture(m, burst_filter, direction="in")) for m in members}
        seen[outsider.name] = stack.enter_context(lab.capture(outsider, f"ether dst {cluster_mac}", direction="in"))
        sender.start()
        age_before = next(f.duration for f in lab.dump_flows(APP_COOKIES) if cluster_mac in f.match)
        measured_at = time.monotonic()
        lab.restart_controller()
        lab.wait_connected()
        sender.join()
    counts = {name: len(capture.frames) for name, capture in seen.items()}
    assert counts == {**{m.name: len(burst) for m in members}, outsider.name: 0}
    delivery = [f for f in lab.dump_flows(APP_COOKIES) if f.match == f"dl_dst={cluster_mac}"]
    assert [len(f.actions.split(",")) for f in delivery] == [len(members)]
    expected_age = age_before + time.monotonic() - measured_at
    assert delivery[0].duration >= expected_age - 1, "the cluster flow was replaced during the restart"
