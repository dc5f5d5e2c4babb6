"""The `nlbflow` client against a fake REST API on 127.0.0.1: each command sends the request
docs/rest-api.md describes and prints the answer readably; errors are one line and exit 1."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from flows.config import ConfigError, load_config, read_token_file
from ryu_apps import cli

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config" / "example.yaml"

PINNED = {
    "ip": "10.0.0.11",
    "mac": "02:de:0a:00:00:0b",
    "dpid": 1,
    "port": 1,
    "located": [{"dpid": 1, "port": 1, "how": "pinned", "port_up": True}],
}
PINNED_AT = "0000000000000001 port 1 (pinned)"
UNLOCATED = {"ip": "10.0.0.12", "mac": "02:de:0a:00:00:0c", "dpid": None, "port": None, "located": []}
CLUSTER = {
    "name": "web",
    "cluster_ip": "10.0.0.100",
    "cluster_mac": "02:bf:0a:00:00:64",
    "mode": "unicast",
    "arp": "proxy",
    "members": [PINNED, UNLOCATED],
}
FLOW = {
    "cookie": "0x4e4c4e1b000b0300",
    "cluster": "web",
    "member": "10.0.0.11",
    "purpose": "member_delivery",
    "claims": "54-58 (dedicated MAC -> cluster MAC, on the member's port)",
    "table_id": 1,
    "priority": 200,
    "match": {"eth_dst": "02:de:0a:00:00:0b"},
    "actions": ["set_field:02:bf:0a:00:00:64->eth_dst", "output:1"],
    "packets": 7,
    "bytes": 686,
}
MISSING_FLOW = {
    "cookie": "0x4e4c4e1b000c0300",
    "cluster": "web",
    "member": "10.0.0.12",
    "purpose": "member_delivery",
    "claims": "54-58 (dedicated MAC -> cluster MAC, on the member's port)",
    "table_id": 1,
    "priority": 200,
    "match": {"eth_dst": "02:de:0a:00:00:0c"},
    "actions": ["set_field:02:bf:0a:00:00:64->eth_dst", "output:2"],
}
STALE_FLOW = {**FLOW, "cookie": "0x4e4c4e1b00630300", "member": "10.0.0.99", "packets": 0, "bytes": 0}
AUDIT = {
    "switches": {
        "0000000000000001": {
            "dpid": 1,
            "flows": [FLOW, STALE_FLOW],
            "missing": [MISSING_FLOW],
            "unexpected": [STALE_FLOW],
            "other_apps_flows": 3,
        }
    }
}
REPAIRED = {
    "switches": {
        "0000000000000001": {
            "dpid": 1,
            "flows": [FLOW, {**MISSING_FLOW, "packets": 0, "bytes": 0}],
            "missing": [],
            "unexpected": [],
            "other_apps_flows": 3,
            "repaired": {"added": 1, "deleted": 1},
        }
    }
}
STATUS = {
    "runtime": "os-ken",
    "switches": [{"dpid": 1, "ports": [1, 2, 3, 4]}],
    "clusters": [
        {
            "name": "web",
            "members": [{"ip": "10.0.0.11", "located": PINNED["located"]}, {"ip": "10.0.0.12", "located": []}],
        }
    ],
    "counters": {"answered": 6, "relayed": 0, "forwarded": 3, "dropped_spoofed": 2},
}


class Seen(NamedTuple):
    method: str
    path: str
    body: Any
    authorization: str | None


class FakeApi:
    """Records every request; answers with what a test set for (method, path), else a 404 as the API would."""

    def __init__(self) -> None:
        self.requests: list[Seen] = []
        self.answers: dict[tuple[str, str], tuple[int, bytes]] = {}
        api = self

        class Handler(BaseHTTPRequestHandler):
            def handle_any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                body = json.loads(raw) if raw else None
                api.requests.append(Seen(self.command, self.path, body, self.headers.get("Authorization")))
                status, payload = api.answers.get(
                    (self.command, self.path), (404, json.dumps({"error": f"no such path: {self.path}"}).encode())
                )
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = handle_any

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def answer(self, method: str, path: str, status: int, body: object) -> None:
        self.answers[(method, path)] = (status, json.dumps(body).encode())

    def answer_raw(self, method: str, path: str, status: int, payload: bytes) -> None:
        self.answers[(method, path)] = (status, payload)

    @property
    def last(self) -> Seen:
        assert self.requests, "the CLI sent no request"
        return self.requests[-1]


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeApi]:
    monkeypatch.delenv("NLBFLOW_URL", raising=False)
    monkeypatch.delenv("NLBFLOW_TOKEN_FILE", raising=False)
    fake = FakeApi()
    thread = threading.Thread(target=fake.server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    yield fake
    fake.server.shutdown()
    fake.server.server_close()
    thread.join()


def run(api: FakeApi, *argv: str) -> int:
    return cli.main(["--url", api.url, *argv])


def columns(line: str) -> list[str]:
    """A table row's cells: columns are two or more spaces apart, words within a cell one."""
    return re.split(r"\s{2,}", line.strip())


# Clusters


def test_cluster_add_posts_name_and_ip_and_prints_the_derived_fields(api, capsys):
    api.answer("POST", "/nlb/clusters", 201, {**CLUSTER, "members": []})
    assert run(api, "cluster", "add", "web", "10.0.0.100") == 0
    assert api.last == Seen("POST", "/nlb/clusters", {"name": "web", "cluster_ip": "10.0.0.100"}, None)
    out = capsys.readouterr().out
    assert "web" in out
    assert "02:bf:0a:00:00:64" in out
    assert "proxy" in out


def test_cluster_add_takes_arp_switch_and_lists_and_shows_it(api, capsys):
    api.answer("POST", "/nlb/clusters", 201, {**CLUSTER, "arp": "switch", "members": []})
    assert run(api, "cluster", "add", "web", "10.0.0.100", "--arp", "switch") == 0
    assert api.last.body == {"name": "web", "cluster_ip": "10.0.0.100", "arp": "switch"}
    assert "switch" in capsys.readouterr().out
    api.answer("GET", "/nlb/clusters", 200, {"clusters": [{**CLUSTER, "arp": "switch", "members": []}]})
    assert run(api, "cluster", "list") == 0
    rows = [columns(line) for line in capsys.readouterr().out.splitlines()]
    assert rows[0][4] == "ARP" and rows[1][4] == "switch"


def test_cluster_add_refuses_an_arp_mode_that_is_none(api, capsys):
    with pytest.raises(SystemExit):
        run(api, "cluster", "add", "web", "10.0.0.100", "--arp", "flows")
    assert "choose from 'proxy', 'relay', 'switch'" in capsys.readouterr().err


def test_cluster_add_sends_every_option_given(api):
    api.answer("POST", "/nlb/clusters", 201, {**CLUSTER, "arp": "relay", "members": []})
    argv = ("cluster", "add", "web", "10.0.0.100", "--cluster-mac", "02:bf:0a:00:00:64", "--mode", "unicast")
    assert run(api, *argv, "--arp", "relay") == 0
    assert api.last.body == {
        "name": "web",
        "cluster_ip": "10.0.0.100",
        "cluster_mac": "02:bf:0a:00:00:64",
        "mode": "unicast",
        "arp": "relay",
    }


def test_cluster_list_prints_a_row_per_cluster_with_its_member_count(api, capsys):
    other = {**CLUSTER, "name": "api", "cluster_ip": "10.0.1.100", "cluster_mac": "02:bf:0a:00:01:64", "members": []}
    api.answer("GET", "/nlb/clusters", 200, {"clusters": [CLUSTER, {**other, "arp": "relay"}]})
    assert run(api, "cluster", "list") == 0
    assert api.last[:3] == ("GET", "/nlb/clusters", None)
    lines = capsys.readouterr().out.splitlines()
    assert columns(lines[0]) == ["NAME", "CLUSTER IP", "CLUSTER MAC", "MODE", "ARP", "MEMBERS"]
    assert lines[1].split() == ["web", "10.0.0.100", "02:bf:0a:00:00:64", "unicast", "proxy", "2"]
    assert lines[2].split() == ["api", "10.0.1.100", "02:bf:0a:00:01:64", "unicast", "relay", "0"]


def test_cluster_list_says_so_when_there_is_none(api, capsys):
    api.answer("GET", "/nlb/clusters", 200, {"clusters": []})
    assert run(api, "cluster", "list") == 0
    assert capsys.readouterr().out.strip() == "no clusters"


def test_cluster_show_prints_the_fields_and_a_members_table(api, capsys):
    api.answer("GET", "/nlb/clusters/web", 200, CLUSTER)
    assert run(api, "cluster", "show", "web") == 0
    assert api.last.method == "GET"
    out = capsys.readouterr().out
    for text in ("10.0.0.100", "02:bf:0a:00:00:64", "unicast", "proxy", "DEDICATED MAC"):
        assert text in out
    rows = {line.split()[0]: line for line in out.splitlines() if line.startswith("10.0.0.1")}
    assert "02:de:0a:00:00:0b" in rows["10.0.0.11"]
    assert PINNED_AT in rows["10.0.0.11"]
    assert "unlocated" in rows["10.0.0.12"]


def test_cluster_remove_sends_delete_and_names_what_went(api, capsys):
    api.answer("DELETE", "/nlb/clusters/web", 200, CLUSTER)
    assert run(api, "cluster", "remove", "web") == 0
    assert api.last[:3] == ("DELETE", "/nlb/clusters/web", None)
    assert capsys.readouterr().out.strip() == "removed cluster web (10.0.0.100, 2 members)"


# Members


@pytest.mark.parametrize(
    ("typed", "sent"),
    [
        pytest.param("1", 1, id="decimal"),
        pytest.param("0", 0, id="zero"),
        pytest.param("18446744073709551615", 18446744073709551615, id="largest-decimal"),
        pytest.param("0000000000000001", "0000000000000001", id="ovs-form"),
        pytest.param("0000000000000010", "0000000000000010", id="ovs-form-all-decimal-digits"),
        pytest.param("1000000000000000", "1000000000000000", id="ovs-form-without-leading-zero"),
        pytest.param("00000000000000ab", "00000000000000ab", id="ovs-form-with-hex-letters"),
        pytest.param("0x1", "0x1", id="0x-hex"),
        pytest.param("01", "01", id="leading-zero"),
    ],
)
def test_a_dpid_is_sent_as_an_integer_only_when_typed_as_plain_decimal(typed, sent):
    assert cli.dpid_value(typed) == sent
    assert type(cli.dpid_value(typed)) is type(sent)


def test_member_add_posts_ip_mac_and_pin(api, capsys):
    api.answer("POST", "/nlb/clusters/web/members", 201, PINNED)
    argv = ("member", "add", "web", "10.0.0.11", "--mac", "02:de:0a:00:00:0b", "--dpid", "0000000000000001")
    assert run(api, *argv, "--port", "1") == 0
    assert api.last[:3] == (
        "POST",
        "/nlb/clusters/web/members",
        {"ip": "10.0.0.11", "mac": "02:de:0a:00:00:0b", "dpid": "0000000000000001", "port": 1},
    )
    out = capsys.readouterr().out
    assert "02:de:0a:00:00:0b" in out
    assert "0000000000000001 port 1" in out


def test_member_add_without_options_sends_the_ip_alone(api):
    api.answer("POST", "/nlb/clusters/web/members", 201, UNLOCATED)
    assert run(api, "member", "add", "web", "10.0.0.12", "--dpid", "5", "--port", "2") == 0
    assert api.last.body == {"ip": "10.0.0.12", "dpid": 5, "port": 2}
    assert run(api, "member", "add", "web", "10.0.0.12") == 0
    assert api.last.body == {"ip": "10.0.0.12"}


def test_member_add_refuses_a_dpid_without_a_port_before_sending(api, capsys):
    with pytest.raises(SystemExit) as exited:
        run(api, "member", "add", "web", "10.0.0.11", "--dpid", "1")
    assert exited.value.code == 2
    assert "--dpid and --port go together" in capsys.readouterr().err
    assert api.requests == []


def test_member_list_prints_where_each_member_is(api, capsys):
    api.answer("GET", "/nlb/clusters/web/members", 200, {"members": [PINNED, UNLOCATED]})
    assert run(api, "member", "list", "web") == 0
    assert api.last[:3] == ("GET", "/nlb/clusters/web/members", None)
    lines = capsys.readouterr().out.splitlines()
    assert columns(lines[0]) == ["IP", "DEDICATED MAC", "PINNED", "LOCATED"]
    assert columns(lines[1]) == ["10.0.0.11", "02:de:0a:00:00:0b", "0000000000000001 port 1", PINNED_AT]
    assert columns(lines[2]) == ["10.0.0.12", "02:de:0a:00:00:0c", "-", "unlocated"]


def test_member_show_prints_the_member(api, capsys):
    learned = {**UNLOCATED, "located": [{"dpid": 2, "port": 7, "how": "learned"}]}
    api.answer("GET", "/nlb/clusters/web/members/10.0.0.12", 200, learned)
    assert run(api, "member", "show", "web", "10.0.0.12") == 0
    out = capsys.readouterr().out
    assert "02:de:0a:00:00:0c" in out
    assert "0000000000000002 port 7 (learned)" in out


def test_member_remove_sends_delete(api, capsys):
    api.answer("DELETE", "/nlb/clusters/web/members/10.0.0.11", 200, PINNED)
    assert run(api, "member", "remove", "web", "10.0.0.11") == 0
    assert api.last[:3] == ("DELETE", "/nlb/clusters/web/members/10.0.0.11", None)
    assert capsys.readouterr().out.strip() == "removed member 10.0.0.11 (02:de:0a:00:00:0b) from cluster web"


@pytest.mark.parametrize(
    ("options", "body"),
    [
        pytest.param(("--dpid", "0000000000000002", "--port", "3"), {"dpid": "0000000000000002", "port": 3}, id="pin"),
        pytest.param(("--unpin",), {"dpid": None, "port": None}, id="unpin-sends-nulls"),
        pytest.param(("--mac", "02:de:00:00:00:01"), {"mac": "02:de:00:00:00:01"}, id="mac-alone"),
        pytest.param(
            ("--unpin", "--mac", "02:de:00:00:00:01"),
            {"dpid": None, "port": None, "mac": "02:de:00:00:00:01"},
            id="unpin-and-mac",
        ),
        pytest.param(
            ("--ip", "fd00:10::11", "--ip", "10.0.1.11"), {"ips": ["fd00:10::11", "10.0.1.11"]}, id="replace-ips"
        ),
        pytest.param(("--no-ips",), {"ips": []}, id="no-ips-sends-an-empty-list"),
    ],
)
def test_member_move_patches_the_member(api, options, body):
    api.answer("PATCH", "/nlb/clusters/web/members/10.0.0.11", 200, PINNED)
    assert run(api, "member", "move", "web", "10.0.0.11", *options) == 0
    assert api.last[:3] == ("PATCH", "/nlb/clusters/web/members/10.0.0.11", body)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        pytest.param((), "nothing to change", id="nothing"),
        pytest.param(("--unpin", "--dpid", "1", "--port", "1"), "--unpin cannot go with", id="unpin-and-pin"),
        pytest.param(("--port", "1"), "--dpid and --port go together", id="port-alone"),
        pytest.param(("--ip", "fd00::11", "--no-ips"), "--ip cannot go with --no-ips", id="ips-and-no-ips"),
    ],
)
def test_member_move_refuses_contradictory_or_empty_options_before_sending(api, capsys, options, message):
    with pytest.raises(SystemExit) as exited:
        run(api, "member", "move", "web", "10.0.0.11", *options)
    assert exited.value.code == 2
    assert message in capsys.readouterr().err
    assert api.requests == []


# More addresses: a cluster's cluster_ips, a member's ips

WITH_MORE = {
    **CLUSTER,
    "cluster_ips": ["fd00:10::100", "10.0.1.100"],
    "members": [{**PINNED, "ips": ["fd00:10::11"]}, UNLOCATED],
}


def test_cluster_add_sends_each_more_cluster_ip_and_prints_them(api, capsys):
    api.answer("POST", "/nlb/clusters", 201, {**WITH_MORE, "members": []})
    argv = ("cluster", "add", "web", "10.0.0.100", "--cluster-ip", "fd00:10::100", "--cluster-ip", "10.0.1.100")
    assert run(api, *argv) == 0
    assert api.last.body == {"name": "web", "cluster_ip": "10.0.0.100", "cluster_ips": ["fd00:10::100", "10.0.1.100"]}
    lines = capsys.readouterr().out.splitlines()
    assert columns(next(line for line in lines if line.startswith("more cluster IPs"))) == [
        "more cluster IPs",
        "fd00:10::100, 10.0.1.100",
    ]


def test_member_add_sends_each_more_address(api, capsys):
    api.answer("POST", "/nlb/clusters/web/members", 201, {**UNLOCATED, "ips": ["fd00:10::12", "10.0.1.12"]})
    assert run(api, "member", "add", "web", "10.0.0.12", "--ip", "fd00:10::12", "--ip", "10.0.1.12") == 0
    assert api.last.body == {"ip": "10.0.0.12", "ips": ["fd00:10::12", "10.0.1.12"]}
    lines = capsys.readouterr().out.splitlines()
    assert columns(next(line for line in lines if line.startswith("more IPs"))) == [
        "more IPs",
        "fd00:10::12, 10.0.1.12",
    ]


def test_cluster_list_and_show_print_every_vip_and_each_members_addresses(api, capsys):
    other = {**CLUSTER, "name": "api", "cluster_ip": "10.0.2.100", "cluster_mac": "02:bf:0a:00:02:64", "members": []}
    api.answer("GET", "/nlb/clusters", 200, {"clusters": [WITH_MORE, other]})
    assert run(api, "cluster", "list") == 0
    lines = capsys.readouterr().out.splitlines()
    assert columns(lines[0]) == ["NAME", "CLUSTER IP", "MORE CLUSTER IPS", "CLUSTER MAC", "MODE", "ARP", "MEMBERS"]
    vips = "fd00:10::100, 10.0.1.100"
    assert columns(lines[1]) == ["web", "10.0.0.100", vips, "02:bf:0a:00:00:64", "unicast", "proxy", "2"]
    assert columns(lines[2])[:3] == ["api", "10.0.2.100", "-"]

    api.answer("GET", "/nlb/clusters/web", 200, WITH_MORE)
    assert run(api, "cluster", "show", "web") == 0
    out = capsys.readouterr().out
    assert "more cluster IPs  fd00:10::100, 10.0.1.100" in out
    table = out.split("\n\n")[1].splitlines()
    assert columns(table[0]) == ["IP", "MORE IPS", "DEDICATED MAC", "PINNED", "LOCATED"]
    assert columns(table[1]) == ["10.0.0.11", "fd00:10::11", "02:de:0a:00:00:0b", "0000000000000001 port 1", PINNED_AT]
    assert columns(table[2]) == ["10.0.0.12", "-", "02:de:0a:00:00:0c", "-", "unlocated"]


def test_member_show_prints_its_more_addresses_and_none_when_it_has_none(api, capsys):
    api.answer("GET", "/nlb/clusters/web/members/10.0.0.11", 200, {**PINNED, "ips": ["fd00:10::11"]})
    assert run(api, "member", "show", "web", "10.0.0.11") == 0
    assert [columns(line) for line in capsys.readouterr().out.splitlines()[:3]] == [
        ["ip", "10.0.0.11"],
        ["more IPs", "fd00:10::11"],
        ["dedicated MAC", "02:de:0a:00:00:0b"],
    ]
    api.answer("GET", "/nlb/clusters/web/members/10.0.0.12", 200, UNLOCATED)
    assert run(api, "member", "show", "web", "10.0.0.12") == 0
    assert "more IPs" not in capsys.readouterr().out


def test_the_diff_shows_more_addresses_added_and_changed():
    added = {
        **WITH_MORE,
        "name": "new",
        "members": [{"ip": "10.0.0.11", "ips": ["fd00:10::11"], "mac": "02:de:0a:00:00:0b"}],
    }
    changed = {
        "name": "web",
        "fields": [{"field": "cluster_ips", "from": None, "to": ["fd00:20::100", "10.0.3.100"]}],
        "members": {
            "added": [],
            "removed": [],
            "changed": [{"ip": "10.0.0.12", "fields": [{"field": "ips", "from": ["fd00:20::12"], "to": None}]}],
        },
    }
    text = cli.format_diff({"dry_run": True, "added": [added], "removed": [], "changed": [changed], "unchanged": 0})
    assert text.splitlines()[1:] == [
        "+ cluster new (10.0.0.100 02:bf:0a:00:00:64, also fd00:10::100, 10.0.1.100, unicast, arp proxy, 1 member)",
        "    + member 10.0.0.11 02:de:0a:00:00:0b also fd00:10::11",
        "~ cluster web: cluster_ips - -> [fd00:20::100, 10.0.3.100]",
        "    ~ member 10.0.0.12: ips [fd00:20::12] -> -",
    ]


def test_check_config_lists_each_clusters_more_cluster_ips(tmp_path, capsys):
    path = tmp_path / "more.yaml"
    path.write_text(
        "clusters:\n"
        "  - {name: web, cluster_ip: 10.0.0.100, cluster_ips: ['FD00:10::100'],"
        " members: [{ip: 10.0.0.11, ips: ['fd00:10::11']}]}\n"
        "  - {name: api, cluster_ip: 10.0.1.100}\n"
    )
    assert cli.main(["check-config", str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert columns(lines[1])[:3] == ["NAME", "CLUSTER IP", "MORE CLUSTER IPS"]
    assert columns(lines[2])[:3] == ["web", "10.0.0.100", "fd00:10::100"]
    assert columns(lines[3])[:3] == ["api", "10.0.1.100", "-"]


def test_more_addresses_through_the_cli_against_the_real_api(live_api, capsys):
    url, controller = live_api

    def nlbflow(*argv: str) -> int:
        return cli.main(["--url", url, *argv])

    assert nlbflow("cluster", "add", "api", "10.0.1.100", "--cluster-ip", "FD00:10::100") == 0
    assert nlbflow("member", "add", "api", "10.0.1.11", "--ip", "fd00:10::11") == 0
    capsys.readouterr()
    assert nlbflow("member", "move", "api", "10.0.1.11", "--ip", "fd00:10::12", "--ip", "10.0.1.12") == 0
    assert "more IPs       fd00:10::12, 10.0.1.12" in capsys.readouterr().out
    cluster = controller.registry.cluster_named("api")
    assert (cluster.cluster_ips, cluster.members[0].ips) == (("fd00:10::100",), ("fd00:10::12", "10.0.1.12"))

    assert nlbflow("member", "add", "web", "10.0.0.20", "--ip", "fd00:10::12") == 1
    assert capsys.readouterr().err == (
        "nlbflow: 409: ips[0]: fd00:10::12 is already an address of member 10.0.1.11 of cluster 'api'\n"
    )
    assert nlbflow("member", "add", "web", "10.0.0.20", "--ip", "fe80::20") == 1
    assert "nlbflow: 400: ips[0]: fe80::20 cannot be registered: it is a link-local address" in capsys.readouterr().err
    assert nlbflow("member", "move", "api", "10.0.1.11", "--no-ips") == 0
    assert "more IPs" not in capsys.readouterr().out
    assert controller.registry.cluster_named("api").members[0].ips == ()


# Flows and status


def test_flows_prints_each_flow_then_missing_unexpected_and_other_apps(api, capsys):
    api.answer("GET", "/nlb/flows", 200, AUDIT)
    assert run(api, "flows") == 0
    assert api.last[:3] == ("GET", "/nlb/flows", None)
    out = capsys.readouterr().out
    assert out.startswith("switch 0000000000000001 (dpid 1): 2 flows of nlbflow\n")
    row = next(line for line in out.splitlines() if FLOW["cookie"] in line).split()
    assert row == [
        "0x4e4c4e1b000b0300",
        "web",
        "10.0.0.11",
        "member_delivery",
        "200",
        "eth_dst=02:de:0a:00:00:0b",
        "set_field:02:bf:0a:00:00:64->eth_dst,output:1",
        "7",
        "686",
    ]
    missing = out.split("missing: 1\n")[1].split("unexpected:")[0]
    assert MISSING_FLOW["cookie"] in missing
    assert missing.splitlines()[1].split()[-2:] == ["-", "-"]  # no counters for a flow the switch lacks
    assert STALE_FLOW["cookie"] in out.split("unexpected: 1\n")[1]
    assert out.rstrip().endswith("flows of other apps: 3")


def test_flows_says_none_when_nothing_is_missing_or_unexpected(api, capsys):
    clean = {
        "switches": {"0000000000000001": {**AUDIT["switches"]["0000000000000001"], "missing": [], "unexpected": []}}
    }
    api.answer("GET", "/nlb/flows", 200, clean)
    assert run(api, "flows") == 0
    out = capsys.readouterr().out
    assert "missing: none" in out
    assert "unexpected: none" in out


def test_flows_without_switches_says_none_is_connected():
    assert cli.format_flows({"switches": {}}) == "no switches connected"


@pytest.mark.parametrize("where", ["before", "after"])
def test_json_prints_the_answer_as_it_is_before_or_after_the_command(api, capsys, where):
    api.answer("GET", "/nlb/flows", 200, AUDIT)
    argv = ["--json", "flows"] if where == "before" else ["flows", "--json"]
    assert run(api, *argv) == 0
    assert json.loads(capsys.readouterr().out) == AUDIT


def test_flows_reconcile_posts_and_prints_what_was_repaired(api, capsys):
    api.answer("POST", "/nlb/flows/reconcile", 200, REPAIRED)
    assert run(api, "flows", "reconcile") == 0
    assert api.last[:3] == ("POST", "/nlb/flows/reconcile", None)
    assert capsys.readouterr().out.strip() == "switch 0000000000000001: 1 flow added, 1 deleted"


def test_flows_reconcile_shows_what_is_still_missing_after_repair():
    still = {**REPAIRED["switches"]["0000000000000001"], "missing": [MISSING_FLOW]}
    still["repaired"] = {"added": 0, "deleted": 0}
    text = cli.format_reconcile({"switches": {"0000000000000001": still}})
    assert text.startswith("switch 0000000000000001: in step, nothing to repair\nstill missing: 1\n")
    assert MISSING_FLOW["cookie"] in text


def test_flows_reconcile_of_a_switch_without_repaired_says_nothing_was_repaired():
    """A switch that connected between the repair and the audit has no "repaired" in the answer."""
    late = {key: value for key, value in REPAIRED["switches"]["0000000000000001"].items() if key != "repaired"}
    switches = {"0000000000000001": REPAIRED["switches"]["0000000000000001"], "0000000000000002": late}
    text = cli.format_reconcile({"switches": switches})
    assert text.splitlines() == [
        "switch 0000000000000001: 1 flow added, 1 deleted",
        "switch 0000000000000002: in step, nothing to repair",
    ]


def test_status_shows_how_each_location_was_found_its_last_confirmation_spoofs_and_shared_ports(api, capsys):
    learned = {"dpid": 1, "port": 2, "how": "arp", "port_up": True, "confirmed_ago": 3.5, "checking": True}
    learned.update(spoof_attempts=2, last_spoof_port=5)
    member = {"ip": "10.0.0.12", "located": [learned]}
    shared = {"port": 2, "members": [{"cluster": "web", "ip": "10.0.0.12"}], "other_sources": ["52:54:00:00:00:09"]}
    status = {
        **STATUS,
        "switches": [{"dpid": 1, "ports": [1, 2], "shared_ports": [shared]}],
        "clusters": [{"name": "web", "members": [member]}],
    }
    api.answer("GET", "/nlb/status", 200, status)
    assert run(api, "status") == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if "10.0.0.12" in line and "port 2" in line and "arp" in line)
    assert row.split("  ")[-1].strip() == "2, last from port 5"
    assert "3.5 s ago (checking)" in row
    assert "warning: 0000000000000001 port 2 is shared by members 10.0.0.12 and other hosts (52:54:00:00:00:09)" in out


def test_status_prints_switches_located_members_and_counters(api, capsys):
    api.answer("GET", "/nlb/status", 200, STATUS)
    assert run(api, "status") == 0
    assert api.last[:3] == ("GET", "/nlb/status", None)
    out = capsys.readouterr().out
    assert "runtime: os-ken" in out
    assert "0000000000000001  ports 1, 2, 3, 4" in out
    assert "members located: 1 of 2" in out
    assert "10.0.0.12  unlocated" in out
    assert [line.split() for line in out.split("counters:\n")[1].splitlines()] == [
        ["answered", "6"],
        ["relayed", "0"],
        ["forwarded", "3"],
        ["dropped_spoofed", "2"],
    ]


# Connection, token and errors


def test_token_file_sends_its_stripped_content_as_bearer_token(api, tmp_path):
    token = tmp_path / "token"
    token.write_text("s3cret\n", encoding="utf-8")
    api.answer("GET", "/nlb/status", 200, STATUS)
    assert run(api, "--token-file", str(token), "status") == 0
    assert api.last.authorization == "Bearer s3cret"
    assert run(api, "status") == 0
    assert api.last.authorization is None


def test_url_and_token_file_default_to_the_environment(api, tmp_path, monkeypatch):
    token = tmp_path / "token"
    token.write_text("  from-env  ", encoding="utf-8")
    monkeypatch.setenv("NLBFLOW_URL", api.url + "/")
    monkeypatch.setenv("NLBFLOW_TOKEN_FILE", str(token))
    api.answer("GET", "/nlb/clusters", 200, {"clusters": []})
    assert cli.main(["cluster", "list"]) == 0
    assert api.last[:2] == ("GET", "/nlb/clusters")
    assert api.last.authorization == "Bearer from-env"


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        pytest.param(None, "cannot read the token file", id="missing"),
        pytest.param("\n", "the token file is empty", id="empty"),
    ],
)
def test_an_unusable_token_file_is_one_line_and_exit_1(api, tmp_path, capsys, content, problem):
    token = tmp_path / "token"
    if content is not None:
        token.write_text(content, encoding="utf-8")
    assert run(api, "--token-file", str(token), "status") == 1
    err = capsys.readouterr().err
    assert err.startswith("nlbflow: ")
    assert problem in err
    assert str(token) in err
    assert api.requests == []
    with pytest.raises(ConfigError) as caught:  # the server's own rule and words
        read_token_file(str(token))
    assert err == f"nlbflow: {caught.value}\n"


def test_a_token_with_white_space_inside_is_sent_as_the_server_reads_it(api, tmp_path):
    """The server accepts any non-empty content once stripped, so the CLI does too."""
    token = tmp_path / "token"
    token.write_text("  two words\n", encoding="utf-8")
    api.answer("GET", "/nlb/status", 200, STATUS)
    assert run(api, "--token-file", str(token), "status") == 0
    assert api.last.authorization == f"Bearer {read_token_file(str(token))}" == "Bearer two words"


def test_an_api_error_prints_its_message_and_exits_1(api, capsys):
    message = "ip: 10.0.0.11 is already the IP of a member of cluster 'web'"
    api.answer("POST", "/nlb/clusters/web/members", 409, {"error": message})
    assert run(api, "member", "add", "web", "10.0.0.11") == 1
    captured = capsys.readouterr()
    assert captured.err == f"nlbflow: 409: {message}\n"
    assert captured.out == ""


def test_an_unknown_cluster_prints_the_api_404(api, capsys):
    assert run(api, "cluster", "show", "nope") == 1
    assert capsys.readouterr().err == "nlbflow: 404: no such path: /nlb/clusters/nope\n"


def test_a_server_that_does_not_answer_json_is_one_line_and_exit_1(api, capsys):
    api.answer_raw("GET", "/nlb/status", 502, b"<html>Bad Gateway</html>")
    assert run(api, "status") == 1
    err = capsys.readouterr().err
    assert err.startswith(f"nlbflow: {api.url} answered GET /nlb/status with status 502 and no JSON")


def test_connection_refused_names_the_url_and_exits_1(capsys):
    with socket.socket() as bound:  # bound, never listening: connections to it are refused
        bound.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{bound.getsockname()[1]}"
        assert cli.main(["--url", url, "status"]) == 1
    captured = capsys.readouterr()
    assert captured.err == f"nlbflow: cannot reach the nlbflow API at {url}: Connection refused\n"
    assert "Traceback" not in captured.err


def test_a_url_without_scheme_is_refused_without_traceback(capsys):
    assert cli.main(["--url", "127.0.0.1:8080", "status"]) == 1
    assert capsys.readouterr().err == "nlbflow: '127.0.0.1:8080' is not an http:// or https:// URL\n"


# Offline: check-config, help, imports


def test_check_config_accepts_the_example_and_summarises_it(capsys):
    assert cli.main(["check-config", str(EXAMPLE)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{EXAMPLE}: valid, 3 clusters, 6 members\n")
    assert "web    10.0.0.100  02:bf:0a:00:00:64  unicast    switch  2" in out
    assert "media  10.0.2.100  03:bf:0a:00:02:64  multicast  switch  2" in out


def test_check_config_rejects_a_bad_file_with_the_controllers_message(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("clusters:\n  - name: web\n    cluster_ip: 10.0.0.300\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(str(bad))
    assert cli.main(["check-config", str(bad)]) == 1
    captured = capsys.readouterr()
    assert captured.err == f"nlbflow: bad config: {caught.value}\n"
    assert "clusters[0].cluster_ip" in captured.err
    assert captured.out == ""


def test_check_config_of_a_missing_file_says_it_cannot_read_it(tmp_path, capsys):
    assert cli.main(["check-config", str(tmp_path / "nope.yaml")]) == 1
    assert "cannot read the file" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "listed"),
    [
        pytest.param(
            [], ("cluster", "member", "flows", "status", "apply", "export", "check-config", "--url"), id="top"
        ),
        pytest.param(["apply"], ("FILE", "--dry-run", "--token-file"), id="apply"),
        pytest.param(["cluster"], ("add", "list", "show", "remove"), id="cluster"),
        pytest.param(["member"], ("add", "list", "show", "remove", "move"), id="member"),
        pytest.param(
            ["cluster", "add"], ("--cluster-mac", "--mode", "02:bf:", "03:bf:", "01:00:5e:7f:"), id="cluster-add"
        ),
        pytest.param(
            ["member", "move"], ("--dpid", "--port", "--unpin", "--mac", "--ip", "--no-ips"), id="member-move"
        ),
        pytest.param(["member", "add"], ("--ip ADDRESS", "IPv4 or IPv6", "repeat"), id="member-add"),
        pytest.param(["cluster", "add"], ("--cluster-ip ADDRESS", "IPv4 or IPv6"), id="cluster-add-more-ips"),
        pytest.param(["flows"], ("reconcile", "--json"), id="flows"),
    ],
)
def test_help_lists_the_commands_and_options(capsys, argv, listed):
    with pytest.raises(SystemExit) as exited:
        cli.main([*argv, "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    for word in listed:
        assert word in out


def test_a_missing_command_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exited:
        cli.main(["member"])
    assert exited.value.code == 2
    assert "ACTION" in capsys.readouterr().err


def test_importing_the_cli_loads_no_sdn_framework_nor_yaml():
    code = (
        "import sys, ryu_apps.cli; "
        "loaded = [m for m in ('ryu', 'os_ken', 'ryu_apps.compat', 'eventlet', 'yaml', 'flows.config') "
        "if m in sys.modules]; "
        "print(loaded)"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_flows_names_each_flow_the_switch_keeps_refusing_with_its_error():
    refused = {**MISSING_FLOW, "command": "add", "error_type": 5, "error_code": 1, "refusals": 3}
    switch = {**AUDIT["switches"]["0000000000000001"], "refused": [refused]}
    out = cli.format_flows({"switches": {"0000000000000001": switch}})
    (line,) = [line for line in out.splitlines() if line.startswith("refused by the switch")]
    assert f"add {MISSING_FLOW['cookie']} table {MISSING_FLOW['table_id']}" in line
    assert "error type 5 code 1, 3 times" in line


def test_member_add_names_the_switches_the_change_is_still_pending_on(api, capsys):
    api.answer("POST", "/nlb/clusters/web/members", 201, {**UNLOCATED, "pending_switches": ["0000000000000001"]})
    assert run(api, "member", "add", "web", UNLOCATED["ip"]) == 0
    out = capsys.readouterr().out
    assert "pending on switches (they get it when they reconnect): 0000000000000001" in out


# Bulk: apply and export

REGISTRY_FILE = """\
clusters:
  - name: web
    cluster_ip: 10.0.0.100
    members:
      - {ip: 10.0.0.11, dpid: "0000000000000001", port: 1}
      - {ip: 10.0.0.12}
"""
DIFF = {
    "dry_run": True,
    "added": [
        {
            "name": "new",
            "cluster_ip": "10.0.2.100",
            "cluster_mac": "03:bf:0a:00:02:64",
            "mode": "multicast",
            "arp": "proxy",
            "members": [{"ip": "10.0.2.11"}],
        }
    ],
    "removed": [{**CLUSTER, "name": "old", "members": [{"ip": "10.0.3.11", "mac": "02:de:0a:00:03:0b"}]}],
    "changed": [
        {
            "name": "web",
            "fields": [{"field": "arp", "from": "proxy", "to": "relay"}],
            "members": {
                "added": [{"ip": "10.0.0.13", "mac": "02:de:0a:00:00:0d", "dpid": 1, "port": 3}],
                "removed": [{"ip": "10.0.0.11", "mac": "02:de:0a:00:00:0b"}],
                "changed": [{"ip": "10.0.0.12", "fields": [{"field": "port", "from": None, "to": 2}]}],
            },
        }
    ],
    "unchanged": 4,
    "pending_switches": [],
}


def test_apply_puts_the_files_clusters_as_written_and_prints_the_diff(api, tmp_path, capsys):
    path = tmp_path / "registry.yaml"
    path.write_text(REGISTRY_FILE)
    api.answer("PUT", "/nlb/registry?dry_run=1", 200, DIFF)
    api.answer("PUT", "/nlb/registry", 200, {**DIFF, "dry_run": False})
    assert run(api, "apply", str(path), "--dry-run") == 0
    sent = {
        "clusters": [
            {
                "name": "web",
                "cluster_ip": "10.0.0.100",
                "members": [{"ip": "10.0.0.11", "dpid": "0000000000000001", "port": 1}, {"ip": "10.0.0.12"}],
            }
        ]
    }
    assert api.last == Seen("PUT", "/nlb/registry?dry_run=1", sent, None)
    assert capsys.readouterr().out.splitlines() == [
        "dry run, nothing changed: clusters 1 added, 1 removed, 1 changed, 4 unchanged",
        "+ cluster new (10.0.2.100 03:bf:0a:00:02:64, multicast, arp proxy, 1 member)",
        "    + member 10.0.2.11",
        "- cluster old (10.0.0.100 02:bf:0a:00:00:64, unicast, arp proxy, 1 member)",
        "~ cluster web: arp proxy -> relay",
        "    + member 10.0.0.13 02:de:0a:00:00:0d pinned 0000000000000001 port 3",
        "    - member 10.0.0.11 02:de:0a:00:00:0b",
        "    ~ member 10.0.0.12: port - -> 2",
    ]
    assert run(api, "apply", str(path)) == 0
    assert api.last.path == "/nlb/registry"
    assert capsys.readouterr().out.startswith("applied: clusters 1 added, 1 removed, 1 changed, 4 unchanged\n")


def test_apply_of_nothing_new_says_so(api, tmp_path, capsys):
    path = tmp_path / "registry.yaml"
    path.write_text(REGISTRY_FILE)
    empty = {"dry_run": True, "added": [], "removed": [], "changed": [], "unchanged": 1, "pending_switches": []}
    api.answer("PUT", "/nlb/registry?dry_run=1", 200, empty)
    assert run(api, "apply", "--dry-run", str(path)) == 0
    assert capsys.readouterr().out == "dry run: no change: 1 cluster as registered\n"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        pytest.param(
            REGISTRY_FILE + "clusters: []\n", "clusters: duplicate key on line 7 (first on line 1)", id="duplicate-key"
        ),
        pytest.param(
            REGISTRY_FILE.replace("{ip: 10.0.0.12}", "{ip: 10.0.0.12, ip: 10.0.0.13}"),
            "clusters[0].members[1].ip: duplicate key",
            id="duplicate-member-key",
        ),
        pytest.param(
            REGISTRY_FILE.replace("10.0.0.12", "10.0.0.300"),
            "clusters[0].members[1].ip: '10.0.0.300' is not an IPv4 address",
            id="bad-field",
        ),
        pytest.param(
            REGISTRY_FILE.replace("10.0.0.12", "10.0.0.11"),
            "clusters[0].members[1].ip: 10.0.0.11 is already",
            id="conflict",
        ),
        pytest.param("fabric: {}\n" + REGISTRY_FILE, "fabric: unknown key (known keys: clusters)", id="a-config"),
        pytest.param("- web\n", "expected a mapping", id="not-a-mapping"),
        pytest.param("{}\n", "clusters: required key is missing", id="no-clusters"),
    ],
)
def test_apply_refuses_a_bad_file_naming_file_and_key_before_sending(api, tmp_path, capsys, text, problem):
    path = tmp_path / "registry.yaml"
    path.write_text(text)
    assert run(api, "apply", str(path)) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"nlbflow: bad registry file: {path}: {problem}"), err
    assert api.requests == []


def test_apply_of_a_missing_file_is_one_line_and_exit_1(api, tmp_path, capsys):
    assert run(api, "apply", str(tmp_path / "nope.yaml")) == 1
    assert "cannot read the file" in capsys.readouterr().err
    assert api.requests == []


def test_apply_prints_the_api_refusal_and_exits_1(api, tmp_path, capsys):
    path = tmp_path / "registry.yaml"
    path.write_text(REGISTRY_FILE)
    message = "clusters[0].cluster_ip: 10.0.0.100 is already the cluster IP of cluster 'x'"
    api.answer("PUT", "/nlb/registry", 409, {"error": message})
    assert run(api, "apply", str(path)) == 1
    assert capsys.readouterr().err == f"nlbflow: 409: {message}\n"


def test_export_prints_the_registry_as_a_file_apply_takes_back(api, tmp_path, capsys):
    registry = {
        "clusters": [{**CLUSTER, "members": [{"ip": "10.0.0.11", "mac": "02:de:0a:00:00:0b", "dpid": 1, "port": 1}]}]
    }
    api.answer("GET", "/nlb/registry", 200, registry)
    assert run(api, "export") == 0
    out = capsys.readouterr().out
    assert out.startswith(f"# nlbflow registry from {api.url}")
    assert "dpid: '0000000000000001'" in out, "dpids as OVS prints them"
    path = tmp_path / "exported.yaml"
    path.write_text(out)
    from flows.config import load_registry_file

    assert load_registry_file(str(path)) == [
        {**CLUSTER, "members": [{"ip": "10.0.0.11", "mac": "02:de:0a:00:00:0b", "dpid": "0000000000000001", "port": 1}]}
    ]


@pytest.fixture
def live_api(tmp_path) -> Iterator[tuple[str, Any]]:
    """The real REST app (test_rest.py's stand-in controller behind it) on 127.0.0.1, for round trips."""
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    from ryu_apps.rest import RestApi
    from tests.unit.test_rest import StandInController

    class Quiet(WSGIRequestHandler):
        def get_environ(self) -> dict:
            environ = super().get_environ()
            if self.headers.get("Content-Type") is None:  # wsgiref says text/plain; the controller's server does not
                environ.pop("CONTENT_TYPE", None)
            return environ

        def log_message(self, format: str, *args: object) -> None:
            pass

    started: dict[str, Any] = {}
    ready = threading.Event()

    def serve() -> None:  # the store's SQLite connection belongs to the thread that serves the requests
        started["controller"] = StandInController(str(tmp_path / "state.db"))
        started["server"] = make_server("127.0.0.1", 0, RestApi(started["controller"]), handler_class=Quiet)
        ready.set()
        started["server"].serve_forever(poll_interval=0.01)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert ready.wait(10), "the test server did not start"
    server = started["server"]
    yield f"http://127.0.0.1:{server.server_address[1]}", started["controller"]
    server.shutdown()
    server.server_close()
    thread.join()


def test_export_then_apply_dry_run_shows_no_change_and_an_edit_shows_just_that(live_api, tmp_path, capsys):
    url, controller = live_api
    before = controller.registry
    assert cli.main(["--url", url, "export"]) == 0
    path = tmp_path / "exported.yaml"
    path.write_text(capsys.readouterr().out)
    assert cli.main(["--url", url, "apply", str(path), "--dry-run"]) == 0
    assert capsys.readouterr().out == "dry run: no change: 1 cluster as registered\n"
    path.write_text(path.read_text().replace("arp: proxy", "arp: relay"))
    assert cli.main(["--url", url, "apply", str(path), "--dry-run"]) == 0
    assert capsys.readouterr().out.splitlines()[1:] == ["~ cluster web: arp proxy -> relay"]
    assert controller.registry is before, "a dry run changes nothing"
    assert cli.main(["--url", url, "apply", str(path)]) == 0
    assert capsys.readouterr().out.startswith("applied: clusters 0 added, 0 removed, 1 changed, 0 unchanged")
    assert controller.registry.cluster_named("web").arp.value == "relay"


# Switches

HV1 = {
    "dpid": 1,
    "name": "hv1",
    "connected": True,
    "uplinks": [{"uplink": 5, "port": 5}, {"uplink": "patch-core", "port": None}],
    "members": [{"cluster": "web", "ip": "10.0.0.11", "port": 1}],
    "loops": 0,
}
HV2 = {"dpid": 2, "name": None, "connected": False, "uplinks": [], "members": [], "loops": 3}


def test_switch_list_prints_a_row_per_switch(api, capsys):
    api.answer("GET", "/nlb/switches", 200, {"switches": [HV1, HV2]})
    assert run(api, "switch", "list") == 0
    lines = capsys.readouterr().out.splitlines()
    assert columns(lines[0]) == ["DPID", "NAME", "CONNECTED", "UPLINKS", "MEMBERS", "LOOPS"]
    assert columns(lines[1]) == ["0000000000000001", "hv1", "yes", "5 -> port 5, patch-core -> unresolved", "1", "0"]
    assert columns(lines[2]) == ["0000000000000002", "-", "no", "none", "0", "3"]


def test_switch_list_says_so_when_there_is_none(api, capsys):
    api.answer("GET", "/nlb/switches", 200, {"switches": []})
    assert run(api, "switch", "list") == 0
    assert capsys.readouterr().out == "no switches configured or connected\n"


def test_switch_show_prints_its_uplinks_and_members(api, capsys):
    api.answer("GET", "/nlb/switches/0x1", 200, HV1)
    assert run(api, "switch", "show", "0x1") == 0
    out = capsys.readouterr().out
    assert "uplinks    5 -> port 5, patch-core -> unresolved" in out
    assert "members    web 10.0.0.11 port 1" in out
    assert "name       hv1" in out and "connected  yes" in out


@pytest.mark.parametrize(
    ("options", "body"),
    [
        (["--name", "hv9"], {"name": "hv9", "uplinks": [5, "patch-core"]}),
        (["--uplink", "7"], {"name": "hv1", "uplinks": [7]}),
        (
            ["--uplink", "7", "--uplink", "patch-core", "--uplink", "0x5"],
            {"name": "hv1", "uplinks": [7, "patch-core", "0x5"]},
        ),
        (["--no-uplinks"], {"name": "hv1", "uplinks": []}),
        (["--no-name", "--uplink", "eth1"], {"name": None, "uplinks": ["eth1"]}),
    ],
)
def test_switch_set_replaces_what_is_given_and_keeps_the_rest(api, capsys, options, body):
    api.answer("GET", "/nlb/switches/0000000000000001", 200, HV1)
    api.answer("PUT", "/nlb/switches/0000000000000001", 200, {**HV1, "pending_switches": []})
    assert run(api, "switch", "set", "0000000000000001", *options) == 0
    assert [request.method for request in api.requests] == ["GET", "PUT"]
    assert api.last.body == body
    assert capsys.readouterr().out.startswith("configured switch\nswitch     0000000000000001\n")


def test_switch_set_of_a_switch_not_configured_yet_sends_only_what_is_given(api):
    api.answer("PUT", "/nlb/switches/3", 200, {**HV2, "dpid": 3, "name": "hv3", "pending_switches": []})
    assert run(api, "switch", "set", "3", "--name", "hv3") == 0
    assert api.last[:3] == ("PUT", "/nlb/switches/3", {"name": "hv3", "uplinks": []})


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ([], "nothing to set"),
        (["--name", "a", "--no-name"], "--name cannot go with --no-name"),
        (["--uplink", "5", "--no-uplinks"], "--uplink cannot go with --no-uplinks"),
    ],
)
def test_switch_set_refuses_contradictory_or_empty_options_before_sending(api, capsys, options, message):
    with pytest.raises(SystemExit) as exited:
        run(api, "switch", "set", "1", *options)
    assert exited.value.code == 2
    assert message in capsys.readouterr().err
    assert api.requests == []


def test_switch_remove_sends_delete_and_names_what_went(api, capsys):
    api.answer("DELETE", "/nlb/switches/1", 200, {"dpid": 1, "name": "hv1", "uplinks": [5, "patch-core"]})
    assert run(api, "switch", "remove", "1") == 0
    assert api.last[:2] == ("DELETE", "/nlb/switches/1")
    assert (
        capsys.readouterr().out == "removed the configuration of switch 0000000000000001 (hv1), uplinks 5, patch-core\n"
    )


def test_status_shows_each_switch_with_its_name_uplinks_members_and_loops(api, capsys):
    status = {**STATUS, "switches": [{**HV1, "ports": [1, 5]}, {**HV2, "ports": []}]}
    api.answer("GET", "/nlb/status", 200, status)
    assert run(api, "status") == 0
    out = capsys.readouterr().out
    assert "  0000000000000001 hv1 (connected)  ports 1, 5\n" in out
    assert (
        "    uplinks: 5 -> port 5, patch-core -> unresolved\n    members: web 10.0.0.11 port 1\n    loops: 0\n" in out
    )
    assert "  0000000000000002 (not connected)  ports none\n" in out
    assert "    loops: 3 (frames of nlbflow came back: a loop in the uplinks?)" in out


def test_check_config_lists_the_configured_switches(tmp_path, capsys):
    path = tmp_path / "config.yaml"
    path.write_text("fabric:\n  switches:\n    - {dpid: 1, name: hv1, uplinks: [5, patch-core]}\n    - {dpid: 2}\n")
    assert cli.main(["check-config", str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"{path}: valid, 0 clusters, 0 members, 2 switches"
    assert [columns(line) for line in lines[1:]] == [
        ["SWITCH", "NAME", "UPLINKS"],
        ["0000000000000001", "hv1", "5, patch-core"],
        ["0000000000000002", "-", "-"],
    ]


@pytest.mark.parametrize(
    ("switches", "problem"),
    [
        ("[{dpid: 1}, {dpid: 1}]", "fabric.switches[1].dpid: dpid 0000000000000001 is already"),
        ("[{dpid: 1, name: a}, {dpid: 2, name: a}]", "fabric.switches[1].name: the name 'a' is already"),
        ("[{dpid: 1, uplinks: [5, 5]}]", "fabric.switches[0].uplinks[1]: the uplink 5 is already"),
        ("[{dpid: 1, uplinks: [2]}]", "fabric.switches[0].uplinks[0]: port 2 of dpid 0000000000000001 is where member"),
        ("[{dpid: 1x}]", "fabric.switches[0].dpid: '1x' is not a datapath id"),
    ],
)
def test_check_config_refuses_bad_switches_naming_the_key(tmp_path, capsys, switches, problem):
    path = tmp_path / "config.yaml"
    path.write_text(
        f"fabric:\n  switches: {switches}\n"
        "clusters: [{name: web, cluster_ip: 10.0.0.100, members: [{ip: 10.0.0.11, dpid: 1, port: 2}]}]\n"
    )
    assert cli.main(["check-config", str(path)]) == 1
    assert problem in capsys.readouterr().err


def test_switch_set_show_and_remove_against_the_real_api(live_api, capsys):
    url, controller = live_api
    assert cli.main(["--url", url, "switch", "set", "0000000000000001", "--name", "hv1b"]) == 0
    assert "uplinks    5 -> port 5, patch-core -> port 4" in capsys.readouterr().out, "the uplinks are kept"
    assert controller.fabric.switch(1).uplinks == (5, "patch-core")
    assert cli.main(["--url", url, "switch", "set", "1", "--uplink", "6", "--uplink", "trunk"]) == 0
    capsys.readouterr()
    assert controller.fabric.switch(1).name == "hv1b" and controller.fabric.switch(1).uplinks == (6, "trunk")
    assert cli.main(["--url", url, "switch", "list"]) == 0
    assert "6 -> port 6, trunk -> port 5" in capsys.readouterr().out
    assert cli.main(["--url", url, "switch", "remove", "1"]) == 0
    assert capsys.readouterr().out.startswith("removed the configuration of switch 0000000000000001 (hv1b)")
    assert controller.fabric.switches == ()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["switch", "show", "1g"], "400: dpid: '1g' is not a datapath id"),
        (["switch", "set", "0x", "--name", "x"], "400: dpid: '0x' is not a datapath id"),
        (["switch", "remove", "12345678901234567890123"], "400: dpid: '12345678901234567890123'"),
        (["switch", "remove", "2"], "404: dpid: no switch 0000000000000002 is configured"),
        (["switch", "set", "1", "--uplink", "6", "--uplink", "6"], "400: uplinks[1]: the uplink 6 is already"),
        (["switch", "set", "1", "--uplink", "t", "--uplink", "t"], "400: uplinks[1]: the uplink 't' is already"),
        (["switch", "set", "1", "--uplink", "0"], "400: uplinks[0]: 0 is not a switch port"),
        (["switch", "set", "1", "--uplink", "a b"], "400: uplinks[0]: 'a b' is not a port name"),
        (["switch", "set", "1", "--name", "a b"], "400: name: 'a b' is not a valid name"),
        (["switch", "set", "2", "--name", "hv1"], "409: name: 'hv1' is already the name of switch 0000000000000001"),
        (["switch", "set", "1", "--uplink", "2"], "409: uplinks[0]: port 2 of dpid 0000000000000001 is where member"),
        (["switch", "set", "1", "--uplink", "3"], "409: uplinks: port 3 of switch 0000000000000001 is where member"),
        (["switch", "set", "1", "--uplink", "vm3"], "409: uplinks: port 3 of switch 0000000000000001 is where"),
        (
            ["member", "move", "web", "10.0.0.11", "--dpid", "1", "--port", "5"],
            "409: port 5 of dpid 0000000000000001 is where member 10.0.0.11 of cluster 'web' is pinned",
        ),
    ],
)
def test_every_switch_refusal_through_the_cli_is_one_line_and_changes_nothing(live_api, capsys, argv, message):
    url, controller = live_api
    before = (controller.fabric, controller.registry)
    assert cli.main(["--url", url, *argv]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"nlbflow: {message}"), err
    assert err.count("\n") == 1
    assert (controller.fabric, controller.registry) == before
    from tests.unit.test_rest import load_fabric

    assert load_fabric(controller.state_file) == before[0]
