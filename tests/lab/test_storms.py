"""Storms on a real Open vSwitch, under both runtimes: a flood of ARP from one port spends only that
port's punt meter, so the other members are still answered, the REST API still answers, the meter's drops
show in `nlbflow status`, and nothing the storm caused arrives once a short grace period after it is over.
And a member's reply to a client reaches the client's port only, as a learning switch delivers it.

One lab per runtime serves the tests of this module (proxy mode: the controller answers each request).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack

import pytest
from scapy.layers.l2 import ARP

from tests.lab.appkit import (
    OUTSIDER_ADDRESS,
    RUNTIMES,
    VIP,
    ClusterLab,
    api_call,
    dm,
    expected_table,
    nlbflow_cli,
    start_cluster,
    wait_for_table,
)
from tests.lab.stormkit import STORM_RATE, arp_request, storm
from tests.netlab import CLUSTER_MAC, Host, Lab

STORM_SECONDS = 3.0  # at least; the checks during the storm may take longer
GRACE_SECONDS = 2.0  # after the storm: what the controller still sends then is a backlog (issue target < 1 s)
LISTEN_AFTER_SECONDS = GRACE_SECONDS + 3.0
OUTSIDER_IP = OUTSIDER_ADDRESS.split("/")[0]


@pytest.fixture(scope="module", params=RUNTIMES)
def net(request, lab_available) -> Iterator[ClusterLab]:
    with Lab() as lab:
        yield start_cluster(lab, request.param, "proxy")
    assert lab.leftovers() == []


def meter_rows(lab: Lab) -> dict[str, dict]:
    """The punt meters as GET /nlb/status reports them, by what they apply to ("port 1", "total")."""
    answer = api_call(lab, "GET", "/nlb/status")
    assert answer.status == 200, answer
    return {m["applies_to"]: m for m in answer.body["switches"][0]["meters"]}


def wait_for_drops(lab: Lab, target: str, above: int, timeout: float = 15.0) -> int:
    deadline = time.monotonic() + timeout
    while True:
        dropped = meter_rows(lab)[target]["dropped"]
        if dropped > above or time.monotonic() > deadline:
            return dropped
        time.sleep(0.3)


def assert_others_still_resolve_their_peers(net: ClusterLab, others: list[Host]) -> None:
    """Forget every neighbour, then ping a peer: the member's ARP must be answered during the storm."""
    for src, dst in zip(others, others[1:] + others[:1]):
        net.lab.flush_neigh(src)
        assert net.lab.ping(src, dst.ip, count=1, timeout=3), f"{src.name} -> {dst.name} during the storm"
        assert net.lab.neigh(src)[dst.ip].lladdr == dm(dst), "answered by the app, with the peer's dedicated MAC"


def wait_for_log(lab: Lab, pattern: str, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while not re.search(pattern, lab.controller_log()):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.3)
    return True


def assert_storm_is_contained(
    net: ClusterLab, stormer: Host, frame: bytes, caused_at: Host, caused: Callable[[object], bool]
) -> None:
    """Storm from `stormer`; what the controller sends because of it (`caused`) arrives at `caused_at`."""
    lab = net.lab
    target = f"port {stormer.ofport}"
    warning = rf"meter 0x{0x10000 + stormer.ofport:x} \({target}\) is dropping"
    sender_ip = ARP(frame[14:]).psrc
    others = [member for member in net.members if member is not stormer]
    before = meter_rows(lab)[target]["dropped"]
    with lab.capture(caused_at, "arp", direction="in", settle=LISTEN_AFTER_SECONDS) as seen:
        with storm(lab, stormer, frame) as running:
            during = wait_for_drops(lab, target, before)
            assert during > before, f"the {target} meter never dropped:\n{lab.controller_log()}"
            assert_others_still_resolve_their_peers(net, others)
            status = api_call(lab, "GET", "/nlb/clusters")
            assert status.status == 200, "the REST API must keep answering during the storm"
            assert meter_rows(lab)[target]["dropped"] > during, "the drops keep rising while the storm lasts"
            assert wait_for_log(lab, warning), f"no warning that the meter drops:\n{lab.controller_log()[-2000:]}"
            time.sleep(max(0.0, running.started + STORM_SECONDS - time.time()))
        sent = running.stop()
    assert sent > STORM_RATE, f"positive control: the storm sent only {sent} frames in {STORM_SECONDS} s or more"
    arrived = [float(frame.time) for frame in seen.frames if ARP in frame and caused(frame)]
    while_storming = [t for t in arrived if t <= running.stopped]
    late = [round(t - running.stopped, 3) for t in arrived if t > running.stopped + GRACE_SECONDS]
    assert while_storming, "positive control: the capture saw what the storm caused while it lasted"
    assert late == [], f"answers arrived seconds after the storm (s after its end): {late[:10]}"
    assert meter_rows(lab)["total"]["dropped"] == 0, "one port's storm never reaches the total ceiling"
    per_frame = [line for line in lab.controller_log().splitlines() if f"ARP request {sender_ip} " in line]
    assert per_frame == [], "per-frame decisions are logged at DEBUG, not at the default level"


def test_the_punt_pipeline_and_its_meters_are_in_the_switch_as_a_user_sees_them(net):
    meters = net.lab.ofctl("dump-meters")
    listed = dict(re.findall(r"meter=(\d+) pktps burst stats bands=\s+type=drop rate=(\d+) burst_size=\d+", meters))
    ports = [host.ofport for host in [*net.members, net.client, net.outsider]]
    assert listed == {"65536": "1000", **{str(0x10000 + port): "100" for port in ports}}, meters
    per_port = {(f.match, f.actions) for f in net.lab.dump_flows(table=2)}
    assert per_port == {(f"in_port={port}", f"meter:{0x10000 + port},goto_table:3") for port in ports}
    assert [(f.match, f.actions) for f in net.lab.dump_flows(table=3)] == [("", "meter:65536,CONTROLLER:65535")]
    punts = [f for f in net.lab.dump_flows(table=1) if "arp" in f.match and f.actions == "goto_table:2"]
    assert len(punts) == 2, "the member's ARP and the answers to the app's probes go through the meters"
    shown = nlbflow_cli(net.lab, "status")
    assert shown.returncode == 0 and "punt meters:" in shown.stdout, shown.stdout + shown.stderr
    assert re.search(r"0x10000\s+total\s+1000/s", shown.stdout), shown.stdout


def test_a_storm_from_a_member_port_starves_no_one_and_no_answer_arrives_late(net):
    m1, m2, _ = net.members
    frame = arp_request(CLUSTER_MAC, CLUSTER_MAC, m1.ip, m2.ip)  # m1 asking for m2, flat out
    assert_storm_is_contained(
        net, m1, frame, m1, lambda f: f[ARP].op == 2 and f[ARP].psrc == m2.ip and f[ARP].pdst == m1.ip
    )


def test_a_storm_from_a_non_member_port_with_the_cluster_mac_starves_no_one(net):
    """The outsider claims the cluster MAC as arp_sha for its own IP and asks for the client's: each frame
    the meter lets through is forwarded unchanged to the other non-member port, the client's."""
    outsider, client = net.outsider, net.client
    frame = arp_request(outsider.mac, CLUSTER_MAC, OUTSIDER_IP, client.ip)
    assert_storm_is_contained(net, outsider, frame, client, lambda f: f[ARP].op == 1 and f[ARP].psrc == OUTSIDER_IP)


@pytest.mark.parametrize("asked", ["vip", "dip"])
def test_a_members_reply_to_a_client_reaches_the_clients_port_only(net, asked):
    lab, client, outsider = net.lab, net.client, net.outsider
    target = VIP if asked == "vip" else net.members[0].ip
    lab.flush_neigh(client)
    with ExitStack() as stack:
        at_outsider = stack.enter_context(lab.capture(outsider, "arp", direction="in"))
        at_client = stack.enter_context(lab.capture(client, "arp", direction="in"))
        lab.arping(client, target, count=1, timeout=2)
    replies = [f for f in at_client.frames if ARP in f and f[ARP].op == 2 and f[ARP].psrc == target]
    assert replies and all(f[ARP].hwsrc == CLUSTER_MAC and f[ARP].pdst == client.ip for f in replies)
    assert len(replies) == (len(net.members) if asked == "vip" else 1), [f.summary() for f in replies]
    seen_by_outsider = [f for f in at_outsider.frames if ARP in f]
    assert any(f[ARP].op == 1 and f[ARP].psrc == client.ip for f in seen_by_outsider), (
        "positive control: the outsider's capture saw the client's broadcast request"
    )
    assert [f.summary() for f in seen_by_outsider if f[ARP].op == 2] == [], "a reply for the client reached o1"
    assert CLUSTER_MAC not in {mac for _, mac in lab.fdb()}, "the switch must never learn the cluster MAC"


def test_a_port_added_later_gets_its_meter_and_punt_flow_and_loses_both_when_deleted(net):
    lab = net.lab
    late = lab.add_host("x6", "02:00:0a:00:00:5b", ["10.0.0.91/24"], ofport=6)
    expected = expected_table(net.config_path, net.members)
    assert sorted(wait_for_table(lab, expected)) == sorted(expected), lab.controller_log()[-3000:]
    assert ("in_port=6", "meter:65542,goto_table:3") in {(f.match, f.actions) for f in lab.dump_flows(table=2)}
    assert "meter=65542 pktps burst stats" in lab.ofctl("dump-meters")
    assert lab.arping(net.members[0], late.ip, source_ip=net.members[0].ip) == [late.mac], "the new port works"

    lab.vsctl("del-port", "br0", late.switch_iface)
    expected = expected_table(net.config_path, net.members)
    assert sorted(wait_for_table(lab, expected)) == sorted(expected), lab.controller_log()[-3000:]
    assert "meter=65542 " not in lab.ofctl("dump-meters"), "a deleted port's meter goes with it"
    assert "meter=65541 pktps" in lab.ofctl("dump-meters"), "positive control: the other ports' meters stay"


def test_on_reconnect_meters_are_reconciled_by_difference_and_other_meters_are_left_alone(net):
    lab = net.lab
    lab.ofctl("add-meter", "meter=7,pktps,band=type=drop,rate=5")  # another application's
    lab.ofctl("add-meter", "meter=65600,pktps,band=type=drop,rate=5")  # stale, in the app's range
    lab.ofctl("mod-meter", "meter=65537,pktps,burst,stats,band=type=drop,rate=5,burst_size=5")  # drifted
    lab.restart_controller()
    lab.wait_connected()
    expected = expected_table(net.config_path, net.members)
    assert sorted(wait_for_table(lab, expected)) == sorted(expected), lab.controller_log()[-3000:]
    deadline = time.monotonic() + 15
    while "meter=65600 " in lab.ofctl("dump-meters") and time.monotonic() < deadline:
        time.sleep(0.2)
    meters = dict(re.findall(r"meter=(\d+) [a-z ]*bands=\s+type=drop rate=(\d+)", lab.ofctl("dump-meters")))
    assert "65600" not in meters, "a stale meter in the app's range is deleted"
    assert (meters["7"], meters["65537"], meters["65536"]) == ("5", "100", "1000"), meters
    assert lab.ping(net.members[0], net.members[1].ip), "the members still reach each other"
