"""The REST API of a running controller (docs/rest-api.md), live in the lab under both runtimes.

Every change answers only once it holds in the switch, so each test acts through the API and checks the
switch, the members' traffic and the API's own views right after the answer. The API listens on loopback
in the switch namespace and is reached only from there (appkit.api, appkit.nlbflow_cli).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from contextlib import ExitStack
from itertools import permutations
from pathlib import Path

import pytest
from scapy.layers.l2 import ARP, Ether

from flows.config import load_config, parse_config
from flows.cookies import member_id
from flows.store import RegistryStore
from tests.lab.appkit import (
    APP_COOKIES,
    NLBFLOW_CLI,
    RUNTIMES,
    VIP,
    api,
    api_call,
    api_ok,
    app_table,
    cluster_yaml,
    dm,
    expected_table,
    located,
    nlbflow_cli,
    saved_registry,
    start_cluster,
    state_file,
    wait_for_api,
    wait_for_table,
    write_config,
)
from tests.netlab import CLUSTER_MAC, Host, Lab

EMPTY_CONFIG = "clusters: []\n"
FOREIGN_FLOW = "cookie=0x1234,priority=50,dl_dst=02:00:00:00:00:99,actions=drop"
STALE_APP_FLOW = "cookie=0x4e4c4e1b00630300,priority=200,dl_dst=02:de:0a:00:00:63,actions=output:4"
WARNINGS_ONLY = ("--default-log-level", "30")  # the manager logs WARNING and up: what remains is a warning
DPID = "0000000000000001"  # the lab bridge's datapath id, as OVS prints it


def start_empty(
    lab: Lab, runtime: str, config: str = EMPTY_CONFIG, extra_args: tuple[str, ...] = ()
) -> tuple[list[Host], Host, Path]:
    """The typical cluster's hosts, and a controller that knows no cluster yet."""
    members, client = lab.add_typical_cluster()
    config_path = write_config(lab, config)
    lab.start_controller(runtime, config_path, extra_args)
    lab.wait_connected()
    wait_for_api(lab)
    expected = expected_table(config_path, members)
    assert sorted(wait_for_table(lab, expected)) == sorted(expected), "the switch was never synced"
    return members, client, config_path


def register(lab: Lab, members: list[Host], token: str | None = None) -> None:
    """POST the typical cluster and its members; each must be answered 201."""
    for path, body in [
        ("/nlb/clusters", {"name": "web", "cluster_ip": VIP}),
        *(("/nlb/clusters/web/members", {"ip": member.ip}) for member in members),
    ]:
        status, answer = api(lab, "POST", path, body, token=token)
        assert status == 201, f"POST {path} {body}: {status} {answer}\n{lab.controller_log()}"


def registry_yaml(lab: Lab, members: list[Host]) -> Path:
    """The registry the tests build through the API, as a config file: expected_table() computes from it. The
    cluster is POSTed without `arp`, so it is in the default mode, switch."""
    dips = tuple(m.addresses[0] for m in members)
    return write_config(lab, cluster_yaml("switch", member_dips=dips), "expected.yaml")


def cookies_of_member(lab: Lab, ip: str) -> list[int]:
    return [f.cookie for f in lab.dump_flows(APP_COOKIES) if (f.cookie >> 16) & 0xFFFF == member_id(ip)]


def mentions(lab: Lab, mac: str) -> list[str]:
    """Every flow of the switch that matches on or writes `mac`."""
    return [f"{f.match} {f.actions}" for f in lab.dump_flows() if mac in f.match or mac in f.actions]


# --- registration, removal, moves ------------------------------------------------------------------------


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_registering_a_cluster_through_rest_makes_member_traffic_work_at_once_without_a_restart(lab, runtime):
    members, _, config_path = start_empty(lab, runtime)
    assert sorted(app_table(lab)) == sorted(expected_table(config_path, members)), "the normal fallback only"
    for src, dst in zip(members, members[1:] + members[:1]):
        assert lab.ping_replies(src, dst.ip, count=1) == 0, "members of an unregistered cluster reach each other"

    register(lab, members)

    # No sleep: the 201s mean the switch holds the flows; finding members is the app's job.
    failed = [(s.name, d.name) for s, d in permutations(members, 2) if not lab.ping(s, d.ip, count=3)]
    assert failed == [], lab.controller_log()
    for port, (src, dst) in enumerate(permutations(members, 2), start=7600):
        assert lab.tcp_exchange(src, dst, dst.ip, port, source_ip=src.ip), f"TCP {src.name} -> {dst.name}"
    expected = expected_table(registry_yaml(lab, members), members)
    table = wait_for_table(lab, expected)
    assert sorted(table) == sorted(expected)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_deleting_a_member_removes_its_flows_and_reachability_and_deleting_the_cluster_all_its_flows(lab, runtime):
    members, _, config_path = start_empty(lab, runtime)
    register(lab, members)
    m1, m2, m3 = members
    for src, dst in permutations(members, 2):
        assert lab.ping(src, dst.ip), f"{src.name} -> {dst.name} before the removal"
    assert cookies_of_member(lab, m3.ip), "m3 has flows before its removal"

    removed = api_ok(lab, "DELETE", f"/nlb/clusters/web/members/{m3.ip}")

    assert (removed["ip"], removed["mac"]) == (m3.ip, dm(m3))
    assert mentions(lab, dm(m3)) == []
    assert cookies_of_member(lab, m3.ip) == []
    assert [m["ip"] for m in api_ok(lab, "GET", "/nlb/clusters/web/members")["members"]] == [m1.ip, m2.ip]
    expected = expected_table(registry_yaml(lab, [m1, m2]), [m1, m2])
    assert sorted(app_table(lab)) == sorted(expected)
    assert lab.ping_replies(m1, m3.ip, count=2) == 0, "a removed member is still reached by its peers"
    assert lab.ping_replies(m2, m3.ip, count=2) == 0, "a removed member is still reached by its peers"
    assert lab.ping(m1, m2.ip) and lab.ping(m2, m1.ip), "the remaining members lost each other"

    gone = api_ok(lab, "DELETE", "/nlb/clusters/web")

    assert gone["name"] == "web" and [m["ip"] for m in gone["members"]] == [m1.ip, m2.ip]
    assert api_ok(lab, "GET", "/nlb/clusters") == {"clusters": []}
    assert sorted(app_table(lab)) == sorted(expected_table(config_path, members)), "only the fallback remains"
    remaining = sorted(f.actions for f in lab.dump_flows(APP_COOKIES) if f.table < 2)  # 2, 3: the punt meters
    assert remaining == ["NORMAL", "goto_table:1", "goto_table:2"]


def forged_arp(sender_ip: str, target_ip: str, src_mac: str) -> bytes:
    """An ARP request that claims to come from a member: arp_sha = the cluster MAC, arp_spa = its DIP."""
    return bytes(
        Ether(src=src_mac, dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, hwsrc=CLUSTER_MAC, psrc=sender_ip, pdst=target_ip)
    )


def spoofed_count(lab: Lab) -> int:
    return api_ok(lab, "GET", "/nlb/status")["counters"]["dropped_spoofed"]


def where_and_how(lab: Lab, ip: str) -> list[tuple[int, str]]:
    return [(spot["port"], spot["how"]) for spot in located(lab, "web", ip)]


def wait_for_port(lab: Lab, ip: str, port: int, timeout: float = 10.0) -> list[tuple[int, str]]:
    """Wait until the member is located on `port` (found by its ARP or by the app's probe)."""
    deadline = time.monotonic() + timeout
    while True:
        now = where_and_how(lab, ip)
        if [spot for spot, _ in now] == [port] or time.monotonic() > deadline:
            return now
        time.sleep(0.2)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_member_cannot_be_impersonated_from_another_port_pinned_or_not(lab, runtime):
    members, client, _ = start_empty(lab, runtime, extra_args=WARNINGS_ONLY)
    register(lab, members)
    m1, m2, m3 = members
    assert lab.ping(m2, m1.ip) and lab.ping(m3, m1.ip)

    pinned = api_ok(lab, "PATCH", f"/nlb/clusters/web/members/{m1.ip}", {"dpid": DPID, "port": m1.ofport})

    assert (pinned["dpid"], pinned["port"]) == (1, m1.ofport)
    assert [(spot["port"], spot["how"], spot["port_up"]) for spot in pinned["located"]] == [(m1.ofport, "pinned", True)]
    before = spoofed_count(lab)
    with ExitStack() as stack:
        seen = [stack.enter_context(lab.capture(peer, "arp")) for peer in (m2, m3)]
        lab.send_frames(client, [forged_arp(m1.ip, m2.ip, client.mac), forged_arp(m1.ip, m3.ip, client.mac)])
    assert spoofed_count(lab) == before + 2, "each forgery is counted"
    warned = [line for line in lab.controller_log().splitlines() if "dropped_spoofed" in line]
    assert len(warned) == 1, "one warning a minute for forgeries of one member from one port"
    assert f"on port {m1.ofport}: a frame claiming it from port {client.ofport}" in warned[0]
    assert "nlbflow on" not in lab.controller_log(), "only warnings are logged: the drop is logged as one"
    from_m1 = [f.summary() for capture in seen for f in capture.frames if ARP in f and f[ARP].psrc == m1.ip]
    assert from_m1 == [], "a forged ARP from another port reached a peer"
    assert where_and_how(lab, m1.ip) == [(m1.ofport, "pinned")]
    assert lab.ping(m2, m1.ip) and lab.ping(m1, m3.ip), "the pinned member must still be reached at its port"

    unpinned = api_ok(lab, "PATCH", f"/nlb/clusters/web/members/{m1.ip}", {"dpid": None, "port": None})

    assert (unpinned["dpid"], unpinned["port"]) == (None, None)
    lab.arping(m1, m2.ip, source_ip=m1.ip)  # found again by its ARP, or by the app's probe if that came first
    assert wait_for_port(lab, m1.ip, m1.ofport) in ([(m1.ofport, "arp")], [(m1.ofport, "probe")])
    lab.send_frames(client, [forged_arp(m1.ip, m2.ip, client.mac)])
    deadline = time.monotonic() + 10
    while spoofed_count(lab) < before + 3 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert spoofed_count(lab) == before + 3, "m1 answered on its own port: the claim from the client's port is a spoof"
    assert [port for port, _ in where_and_how(lab, m1.ip)] == [m1.ofport], "a forged ARP moves no unpinned member"
    assert lab.ping(m2, m1.ip)


# --- the audit and its repair ------------------------------------------------------------------------------


def wait_for_member_packets(lab: Lab, timeout: float = 15.0) -> dict:
    """The audited switch once every member-delivery flow shows traffic (OVS updates counters lazily)."""
    deadline = time.monotonic() + timeout
    while True:
        switch = api_ok(lab, "GET", "/nlb/flows")["switches"][DPID]
        delivery = [f for f in switch["flows"] if f["purpose"] == "member_delivery"]
        if (delivery and all(f["packets"] > 0 and f["bytes"] > 0 for f in delivery)) or time.monotonic() > deadline:
            return switch
        time.sleep(0.3)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_the_audit_reads_the_switch_and_reconcile_repairs_exactly_what_is_missing_or_unexpected(lab, runtime):
    net = start_cluster(lab, runtime, "proxy")
    m1, m2, m3 = net.members
    expected = expected_table(net.config_path, net.members)
    for src, dst in permutations(net.members, 2):
        assert lab.ping(src, dst.ip, count=1)
    lab.add_flow(FOREIGN_FLOW)

    audit = api_ok(lab, "GET", "/nlb/flows")
    switch = wait_for_member_packets(lab)

    assert list(audit["switches"]) == [DPID] and switch["dpid"] == 1
    dumped = {f.cookie: f for f in lab.dump_flows(APP_COOKIES)}
    assert sorted(int(f["cookie"], 16) for f in switch["flows"]) == sorted(dumped), "exactly the app's flows"
    decoded = {(f["table_id"], f["cluster"], f["member"], f["purpose"], f["priority"]) for f in switch["flows"]}
    assert decoded == {
        (0, None, None, "ingress", 0),
        *((0, "web", m.ip, "source_masking", 100) for m in net.members),
        (1, None, None, "probe_answer", 400),
        (1, None, None, "normal_fallback", 0),
        (1, "web", None, "arp_punt", 300),
        (1, "web", None, "nd_punt", 300),  # NS and NA (docs/ipv6.md)
        (0, "web", None, "nd_punt", 150),  # RS and RA
        *((1, "web", m.ip, "member_delivery", 200) for m in net.members),
        (1, "web", None, "cluster_delivery", 100),
        (2, None, None, "punt_port", 100),  # one per port (docs/storms.md)
        (3, None, None, "punt_total", 0),
    }
    for flow in switch["flows"]:
        assert ",".join(flow["actions"]) == dumped[int(flow["cookie"], 16)].actions
        assert flow["claims"]
        assert isinstance(flow["packets"], int) and isinstance(flow["bytes"], int)
        if flow["purpose"] == "member_delivery":
            member = next(m for m in net.members if m.ip == flow["member"])
            assert flow["match"] == {"eth_dst": dm(member)}
            assert flow["actions"] == [f"set_field:{CLUSTER_MAC}->eth_dst", f"output:{member.ofport}"]
            assert flow["packets"] > 0
    assert (switch["missing"], switch["unexpected"], switch["other_apps_flows"]) == ([], [], 1)

    m2_cookie = next(f["cookie"] for f in switch["flows"] if (f["member"], f["purpose"]) == (m2.ip, "member_delivery"))
    lab.del_flows(f"cookie={m2_cookie}/-1")
    lab.add_flow(STALE_APP_FLOW)
    switch = api_ok(lab, "GET", "/nlb/flows")["switches"][DPID]

    assert [(f["cookie"], f["member"], f["purpose"], f["match"]) for f in switch["missing"]] == [
        (m2_cookie, m2.ip, "member_delivery", {"eth_dst": dm(m2)})
    ]
    assert "packets" not in switch["missing"][0], "a missing flow has no counters"
    assert [(f["cookie"], f["cluster"], f["member"], f["match"], f["actions"]) for f in switch["unexpected"]] == [
        ("0x4e4c4e1b00630300", "web", None, {"eth_dst": "02:de:0a:00:00:63"}, ["output:4"])
    ]
    assert m2_cookie not in [f["cookie"] for f in switch["flows"]]
    assert switch["other_apps_flows"] == 1

    repaired = api_ok(lab, "POST", "/nlb/flows/reconcile")["switches"][DPID]

    assert repaired["repaired"] == {"added": 1, "deleted": 1}
    assert (repaired["missing"], repaired["unexpected"]) == ([], [])
    assert sorted(app_table(lab)) == sorted(expected)
    foreign = [(f.priority, f.match, f.actions) for f in lab.dump_flows() if f.cookie == 0x1234]
    assert foreign == [(50, "dl_dst=02:00:00:00:00:99", "drop")]
    assert lab.ping(m1, m2.ip) and lab.ping(m3, m2.ip)
    again = api_ok(lab, "POST", "/nlb/flows/reconcile")["switches"][DPID]
    assert again["repaired"] == {"added": 0, "deleted": 0}


# --- refusals ----------------------------------------------------------------------------------------------


def snapshot(lab: Lab, config_path: Path) -> tuple:
    """What a refused request must leave alone: the registry, the app's flows and the saved registry."""
    return (
        api_ok(lab, "GET", "/nlb/clusters"),
        sorted(app_table(lab)),
        saved_registry(state_file(config_path)),
    )


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_every_refused_request_answers_its_status_and_an_error_naming_the_field_and_changes_nothing(lab, runtime):
    net = start_cluster(lab, runtime, "proxy")
    before = snapshot(lab, net.config_path)
    assert [m["ip"] for m in before[0]["clusters"][0]["members"]] == [m.ip for m in net.members]
    cases = [
        ("POST", "/nlb/clusters", {"raw": '{"name": "db", '}, 400, r"^body: malformed JSON"),
        ("POST", "/nlb/clusters/web/members", {"body": [1, 2]}, 400, r"body must be a JSON object"),
        ("POST", "/nlb/clusters/web/members", {"body": {"ip": "10.0.0.300"}}, 400, r"^ip: .*10\.0\.0\.300"),
        (
            "POST",
            "/nlb/clusters",
            {"body": {"name": "db", "cluster_ip": "10.0.0.300"}},
            400,
            r"^cluster_ip: .*10\.0\.0\.300",
        ),
        ("POST", "/nlb/clusters/web/members", {"body": {"ip": "10.0.0.21", "colour": "red"}}, 400, r"^colour: "),
        ("GET", "/nlb/clusters/nope", {}, 404, r"^name: .*'nope'"),
        ("POST", "/nlb/clusters/nope/members", {"body": {"ip": "10.0.0.21"}}, 404, r"^name: .*'nope'"),
        ("DELETE", "/nlb/clusters/web/members/10.0.0.99", {}, 404, r"^ip: .*10\.0\.0\.99"),
        ("GET", "/nlb/nothing", {}, 404, r"^path: "),
        ("POST", "/nlb/clusters/web/members", {"body": {"ip": "10.0.0.11"}}, 409, r"^ip: 10\.0\.0\.11 is already"),
        (
            "POST",
            "/nlb/clusters",
            {"body": {"name": "db", "cluster_ip": "10.0.0.200", "cluster_mac": CLUSTER_MAC}},
            409,
            rf"^cluster_mac: {CLUSTER_MAC} is already the cluster MAC of cluster 'web'",
        ),
        ("POST", "/nlb/clusters", {"body": {"name": "web", "cluster_ip": "10.0.0.200"}}, 409, r"^name: .*'web'"),
        ("DELETE", "/nlb/clusters", {}, 405, r"^DELETE is not allowed on /nlb/clusters \(allowed: GET, POST\)"),
        ("PATCH", "/nlb/clusters/web", {"body": {}}, 405, r"^PATCH is not allowed"),
        ("PUT", "/nlb/clusters/web", {"body": {}}, 400, r"^cluster_ip: required key is missing"),
        ("PUT", "/nlb/registry", {"body": {"clusters": [{"name": "web"}]}}, 400, r"^clusters\[0\]\.cluster_ip: "),
    ]
    wrong = []
    for method, path, payload, status, error in cases:
        answer = api_call(lab, method, path, payload.get("body"), raw=payload.get("raw"))
        message = answer.body.get("error", "") if isinstance(answer.body, dict) else ""
        if answer.status != status or list(answer.body) != ["error"] or not re.search(error, message):
            wrong.append(f"{method} {path} {payload}: {answer.status} {answer.body}")
        if status == 405 and "allow" not in answer.headers:
            wrong.append(f"{method} {path}: 405 without an Allow header: {answer.headers}")
        if snapshot(lab, net.config_path) != before:
            wrong.append(f"{method} {path} {payload} changed the registry, the flows or the state file")
    assert wrong == []
    assert lab.ping(net.members[0], net.members[1].ip)


# --- what a web page could forge, and clients that never finish their request ------------------------------


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_post_a_web_page_could_forge_is_refused_and_changes_nothing(lab, runtime):
    _, _, config_path = start_empty(lab, runtime)
    before = snapshot(lab, config_path)
    cluster = {"name": "web", "cluster_ip": VIP}
    text_plain = {"Content-Type": "text/plain"}
    foreign_origin = {"Origin": "http://evil.example"}
    rebound_host = {"Host": "evil.example:8080"}  # DNS rebinding: the attacker's name, now on 127.0.0.1

    refused = {
        "text/plain": api_call(lab, "POST", "/nlb/clusters", raw=json.dumps(cluster), headers=text_plain),
        "foreign Origin": api_call(lab, "POST", "/nlb/clusters", cluster, headers=foreign_origin),
        "rebound Host": api_call(lab, "POST", "/nlb/clusters", cluster, headers=rebound_host),
        "all three": api_call(
            lab,
            "POST",
            "/nlb/clusters",
            raw=json.dumps(cluster),
            headers={**text_plain, **foreign_origin, **rebound_host},
        ),
    }

    got = {case: (answer.status, list(answer.body)) for case, answer in refused.items()}
    assert got == {
        "text/plain": (415, ["error"]),
        "foreign Origin": (403, ["error"]),
        "rebound Host": (421, ["error"]),
        "all three": (421, ["error"]),
    }
    assert snapshot(lab, config_path) == before, "a refused request changed the registry, the flows or the state"
    created = api_call(lab, "POST", "/nlb/clusters", cluster)
    assert created.status == 201, "the same POST as JSON from the API's own client is taken"
    assert [c.name for c in saved_registry(state_file(config_path)).clusters] == ["web"]


# Run in the switch namespace: holds IDLE connections that each sent half a request, asks for the status on
# a new one, sends low-level garbage, then reports what came back. Prints JSON.
_IDLE_CLIENTS = r"""
import json, socket, sys
idle_count = int(sys.argv[1])
address = ("127.0.0.1", 8080)
HOST = b"Host: 127.0.0.1:8080\r\n"

def exchange(data):
    client = socket.create_connection(address, timeout=60)
    client.sendall(data)
    received = b""
    while True:
        chunk = client.recv(65536)
        if not chunk:
            break
        received += chunk
    client.close()
    return received.decode("latin-1")

idle = []
for _ in range(idle_count):
    client = socket.create_connection(address, timeout=60)
    client.sendall(b"POST /nlb/clusters HTTP/1.1\r\n" + HOST)  # the headers never end
    idle.append(client)
status = exchange(b"GET /nlb/status HTTP/1.1\r\n" + HOST + b"\r\n")
held, closed = 0, []
for client in idle:
    client.setblocking(False)
    try:
        closed.append(client.recv(65536).decode("latin-1"))
    except BlockingIOError:
        held += 1
    client.close()
print(json.dumps({
    "status": status,
    "held": held,
    "closed": closed,
    "too_long": exchange(b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n" + HOST + b"\r\n"),
    "malformed": exchange(b"NONSENSE\r\n\r\n"),
    "header_too_long": exchange(b"GET /nlb/status HTTP/1.1\r\n" + HOST + b"X: " + b"a" * 9000 + b"\r\n\r\n"),
    "bad_length": exchange(b"POST /nlb/clusters HTTP/1.1\r\n" + HOST + b"Content-Length: x\r\n\r\n"),
}))
"""


def parse_answer(raw: str) -> tuple[int, str, object]:
    """(status, Content-Type, JSON body) of a raw HTTP response; the body must be JSON."""
    head, _, body = raw.partition("\r\n\r\n")
    status_line, *lines = head.split("\r\n")
    headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    try:
        parsed = json.loads(body)
    except ValueError:
        raise AssertionError(f"not JSON: {raw!r}") from None
    return int(status_line.split()[1]), headers.get("content-type", ""), parsed


IDLE_CONNECTIONS = 1000


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_thousand_unfinished_requests_do_not_stop_the_api_and_its_low_level_refusals_are_json(lab, runtime):
    members, _, config_path = start_empty(lab, runtime)
    before = snapshot(lab, config_path)

    done = lab.run(None, sys.executable, "-c", _IDLE_CLIENTS, str(IDLE_CONNECTIONS), timeout=120)
    report = json.loads(done.stdout)

    status, content_type, body = parse_answer(report["status"])
    assert (status, content_type, body["runtime"]) == (200, "application/json", runtime.replace("osken", "os-ken"))
    assert 0 < report["held"] < IDLE_CONNECTIONS, "the server holds some unfinished requests, never all"
    assert report["held"] + len(report["closed"]) == IDLE_CONNECTIONS
    dropped = [parse_answer(raw) for raw in report["closed"]]
    assert {(s, t, b["error"].split(",")[0]) for s, t, b in dropped} == {
        (408, "application/json", "request: not complete")
    }, "every connection the server let go was told why, in JSON"
    low_level = {key: parse_answer(report[key]) for key in ("too_long", "malformed", "header_too_long", "bad_length")}
    assert {key: (s, t, list(b)) for key, (s, t, b) in low_level.items()} == {
        "too_long": (414, "application/json", ["error"]),
        "malformed": (400, "application/json", ["error"]),
        "header_too_long": (431, "application/json", ["error"]),
        "bad_length": (400, "application/json", ["error"]),
    }
    assert snapshot(lab, config_path) == before
    register(lab, members)
    assert lab.ping(members[0], members[1].ip), "the API still changes the fabric"


# --- the state file's temp files --------------------------------------------------------------------------


def test_the_temp_file_of_a_write_a_crash_interrupted_is_removed_at_start_and_never_read(lab):
    """A kill -9 while a new database is built leaves `.nlbflow-state.db.<random>.tmp`."""
    members, _ = lab.add_typical_cluster()
    config_path = write_config(lab, cluster_yaml())
    RegistryStore.create(str(state_file(config_path)), load_config(str(config_path)).registry).close()
    stale = config_path.parent / f".{state_file(config_path).name}.k9x2q1.tmp"
    ghost = "clusters:\n  - name: ghost\n    cluster_ip: 10.0.0.200\n"
    RegistryStore.create(str(stale), parse_config(ghost).registry).close()  # whole, but never published
    other = config_path.parent / ".other.yaml.k9x2q1.tmp"
    other.write_text("not ours\n")

    lab.start_controller("osken", config_path)
    lab.wait_connected()
    wait_for_api(lab)

    assert [c["name"] for c in api_ok(lab, "GET", "/nlb/clusters")["clusters"]] == ["web"]
    assert not stale.exists(), "the start removes the stale temp file"
    assert other.exists(), "a temp file of another file is left alone"
    assert f"removed {stale}" in lab.controller_log()
    assert [c.name for c in saved_registry(state_file(config_path)).clusters] == ["web"]
    assert lab.ping(members[0], members[1].ip)


# --- the token and the listen address ------------------------------------------------------------------------

TOKEN = "n1bfl0w-test-token-5f3a"


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_with_a_token_file_only_requests_bearing_the_token_are_served_and_the_others_change_nothing(lab, runtime):
    token_path = lab.workdir / "rest-token"
    token_path.write_text(TOKEN + "\n")
    config = f"controller:\n  rest:\n    token_file: {token_path}\nclusters: []\n"
    members, _ = lab.add_typical_cluster()
    config_path = write_config(lab, config)
    lab.start_controller(runtime, config_path)
    lab.wait_connected()
    wait_for_api(lab, token=TOKEN)
    empty = sorted(expected_table(config_path, members))
    assert sorted(wait_for_table(lab, empty)) == empty
    cluster = {"name": "web", "cluster_ip": VIP}

    refused = [
        api_call(lab, "GET", "/nlb/clusters"),
        api_call(lab, "POST", "/nlb/clusters", cluster),
        api_call(lab, "POST", "/nlb/clusters", cluster, token="wrong-token"),
        api_call(lab, "POST", "/nlb/clusters", cluster, headers={"Authorization": f"Basic {TOKEN}"}),
        api_call(lab, "POST", "/nlb/clusters", cluster, headers={"Authorization": TOKEN}),
        api_call(lab, "GET", "/nlb/status", token=TOKEN + "x"),
        api_call(lab, "GET", "/nlb/nothing"),
    ]

    assert [(a.status, list(a.body)) for a in refused] == [(401, ["error"])] * len(refused)
    assert all("Authorization" in a.body["error"] and a.headers.get("www-authenticate") for a in refused)
    assert api(lab, "GET", "/nlb/clusters", token=TOKEN) == (200, {"clusters": []})
    assert sorted(app_table(lab)) == empty
    assert saved_registry(state_file(config_path)).clusters == ()

    register(lab, members, token=TOKEN)
    status, answer = api(lab, "GET", "/nlb/clusters", token=TOKEN)
    assert status == 200 and [m["ip"] for m in answer["clusters"][0]["members"]] == [m.ip for m in members]
    assert api(lab, "DELETE", "/nlb/clusters/web", token="wrong-token")[0] == 401
    assert api(lab, "GET", "/nlb/clusters/web", token=TOKEN)[0] == 200
    assert lab.ping(members[0], members[1].ip)

    listed = nlbflow_cli(lab, "--token-file", str(token_path), "member", "list", "web")
    assert listed.returncode == 0, listed.stderr
    assert all(m.ip in listed.stdout and dm(m) in listed.stdout for m in members)
    without = nlbflow_cli(lab, "member", "list", "web")
    assert without.returncode == 1 and "401" in without.stderr and "Authorization" in without.stderr


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_non_loopback_listen_address_without_a_token_stops_the_start(lab, runtime):
    lab.add_typical_cluster()
    config_path = write_config(lab, 'controller:\n  rest:\n    listen: "0.0.0.0:8080"\n' + cluster_yaml())
    process = lab.start_controller(runtime, config_path)
    assert process.wait(timeout=60) != 0
    log = lab.controller_log()
    assert f"{config_path}: controller.rest.listen: 0.0.0.0 is not a loopback address" in log, log
    assert "set controller.rest.token_file" in log
    assert app_table(lab) == []
    assert lab.run(None, "ss", "-Htln", "( sport = :8080 )").stdout.strip() == "", "nothing listens on 8080"


# --- the command-line client ------------------------------------------------------------------------------


def cli_ok(lab: Lab, *args: str) -> str:
    done = nlbflow_cli(lab, *args)
    assert done.returncode == 0, f"nlbflow {' '.join(args)}: exit {done.returncode}\n{done.stdout}{done.stderr}"
    return done.stdout


def test_the_cli_drives_a_live_controller_and_reports_the_apis_refusals(lab):
    assert NLBFLOW_CLI.exists(), f"{NLBFLOW_CLI} is missing: the console script of ryu_apps.cli (make install)"
    members, _, config_path = start_empty(lab, "osken")
    m1, m2, m3 = members

    assert "added cluster" in cli_ok(lab, "cluster", "add", "web", VIP)
    for member in members:
        assert dm(member) in cli_ok(lab, "member", "add", "web", member.ip)
    listed = cli_ok(lab, "member", "list", "web")
    assert [line.split()[:2] for line in listed.splitlines()[1:]] == [[m.ip, dm(m)] for m in members]
    assert "web" in cli_ok(lab, "cluster", "list") and VIP in cli_ok(lab, "cluster", "show", "web")
    assert all(lab.ping(src, dst.ip) for src, dst in permutations(members, 2))

    moved = cli_ok(lab, "member", "move", "web", m1.ip, "--dpid", DPID, "--port", str(m1.ofport))
    assert f"{DPID} port {m1.ofport} (pinned)" in moved
    assert where_and_how(lab, m1.ip) == [(m1.ofport, "pinned")]
    flows = cli_ok(lab, "flows")
    assert all(dm(m) in flows for m in members)
    assert "missing: none" in flows and "unexpected: none" in flows
    assert "in step, nothing to repair" in cli_ok(lab, "flows", "reconcile")
    status = cli_ok(lab, "status")
    assert "runtime: os-ken" in status and "members located: 3 of 3" in status and "dropped_spoofed" in status

    duplicate = nlbflow_cli(lab, "member", "add", "web", m2.ip)
    assert duplicate.returncode == 1 and duplicate.stdout == ""
    assert f"409: ip: {m2.ip} is already a member of cluster 'web'" in duplicate.stderr
    unknown = nlbflow_cli(lab, "member", "show", "web", "10.0.0.99")
    assert unknown.returncode == 1 and "404: ip: " in unknown.stderr

    assert f"removed member {m3.ip}" in cli_ok(lab, "member", "remove", "web", m3.ip)
    assert mentions(lab, dm(m3)) == []
    assert "removed cluster web" in cli_ok(lab, "cluster", "remove", "web")
    assert sorted(app_table(lab)) == sorted(expected_table(config_path, members))
    assert "no clusters" in cli_ok(lab, "cluster", "list")

    unreachable = nlbflow_cli(lab, "status", url="http://127.0.0.1:8081")
    assert unreachable.returncode == 1 and "cannot reach the nlbflow API" in unreachable.stderr


def test_check_config_accepts_a_good_file_and_names_file_key_and_problem_of_a_bad_one(tmp_path):
    """Offline: no controller, no network; the verdict is the controller's own loader's."""
    assert NLBFLOW_CLI.exists(), f"{NLBFLOW_CLI} is missing: the console script of ryu_apps.cli (make install)"
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text(cluster_yaml())
    bad.write_text(cluster_yaml(member_dips=("10.0.0.11/24", "10.0.0.300/24")))

    accepted = subprocess.run([str(NLBFLOW_CLI), "check-config", str(good)], capture_output=True, text=True)
    refused = subprocess.run([str(NLBFLOW_CLI), "check-config", str(bad)], capture_output=True, text=True)

    assert accepted.returncode == 0, accepted.stderr
    assert f"{good}: valid, 1 cluster, 3 members" in accepted.stdout
    assert refused.returncode == 1 and refused.stdout == ""
    assert f"{bad}: clusters[0].members[1].ip: '10.0.0.300' is not an IPv4 address" in refused.stderr
