"""What lab tests of the app share: its config, starting it, and the flow table it must produce.

The expected table is computed by the app's own pure core from the same config and the members' switch
ports, then written the way `ovs-ofctl dump-flows` prints it, so a test compares what a user would see.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flows.addresses import dedicated_mac
from flows.config import load_config
from flows.flowspec import Action, FlowSpec, Move, OutputReg, SetField, action_text, expected_flows
from flows.model import Registry
from flows.state import STATE_FILE_NAME
from flows.store import RegistryStore
from tests.netlab import CLUSTER_VIP, CLUSTER_VIP6, LABS, MEMBER_DIPS, REPO_ROOT, Host, Lab, ipv6_dip

RUNTIMES = ("osken", "ryu")
ARP_MODES = ("switch", "proxy", "relay")
APP_COOKIES = "0x4e4c000000000000/0xffff000000000000"
VIP = CLUSTER_VIP.split("/")[0]
OUTSIDER_MAC, OUTSIDER_ADDRESS = "02:00:0a:00:00:5a", "10.0.0.90/24"
CLIENT_SOURCES = tuple(f"10.0.0.{host}" for host in range(50, 62))  # c1's address and 11 more
HTTP_PORT = 80


def cluster_yaml(arp: str = "proxy", member_dips: tuple[str, ...] = MEMBER_DIPS, ipv6: bool = False) -> str:
    """The typical cluster as config. Its mode is always written out: proxy unless a test names another, for
    the tests of the controller's own path (punt meters, trust, the control path), where every member ARP
    must reach the controller; the app's default, switch, is run by the tests over ARP_MODES.
    ipv6: dual-stack as Lab.add_typical_cluster(ipv6=True) builds it, the IPv6 VIP and DIPs registered too."""
    members = "".join(member_yaml(dip.split("/")[0], ipv6_dip(dip) if ipv6 else None) for dip in member_dips)
    vips = IPV6_VIP_YAML if ipv6 else ""
    return f"clusters:\n  - name: web\n    cluster_ip: {VIP}\n{vips}    arp: {arp}\n    members:\n{members}"


IPV6_VIP_YAML = f"    cluster_ips: ['{CLUSTER_VIP6.split('/')[0]}']\n"  # the lab's IPv6 VIP, in a cluster's YAML


def member_yaml(ip: str, ipv6: str | None = None) -> str:
    """One member of a cluster's YAML: its DIP, and its IPv6 DIP where it has one."""
    return f"      - {{ip: {ip}, ips: ['{ipv6}']}}\n" if ipv6 else f"      - ip: {ip}\n"


def write_config(lab: Lab, text: str, name: str = "nlbflow.yaml") -> Path:
    path = lab.workdir / name
    path.write_text(text)
    return path


def dm(host: Host) -> str:
    """The dedicated MAC nlbflow gives a member (02:de:<DIP>)."""
    return dedicated_mac(host.ip)


FlowRow = tuple[int, int, int, str, str]
"""(table, cookie, priority, match, actions): a flow as ovs-ofctl prints it, the match's fields sorted
(OVS prints them in an order of its own)."""

_OVS_FIELD_NAMES = {
    "eth_dst": "dl_dst",
    "eth_src": "dl_src",
    "icmpv6_type": "icmp_type",
    "ipv6_nd_sll": "nd_sll",
    "ipv6_nd_tll": "nd_tll",
}
_PROTOCOLS = {(0x0806, None): "arp", (0x86DD, 58): "icmp6"}  # what ovs-ofctl prints for eth_type (and ip_proto)
_HEX_FIELDS = ("metadata", "reg0")  # ovs-ofctl prints these in hex, in a match and in set_field
_OVS_HEADERS = {  # a field as ovs-ofctl names it in a move or a register output, and its width in bits
    "arp_spa": ("NXM_OF_ARP_SPA", 32),
    "arp_tpa": ("NXM_OF_ARP_TPA", 32),
    "eth_src": ("NXM_OF_ETH_SRC", 48),
    "eth_dst": ("NXM_OF_ETH_DST", 48),
    "arp_sha": ("NXM_NX_ARP_SHA", 48),
    "arp_tha": ("NXM_NX_ARP_THA", 48),
    "metadata": ("OXM_OF_METADATA", 64),
    "reg0": ("NXM_NX_REG0", 32),
}


def _sorted_match(fields: list[str]) -> str:
    return ",".join(sorted(fields))


def _ovs_value(field: str, value: object) -> str:
    """A match value as ovs-ofctl prints it: value/mask for a masked one."""
    if isinstance(value, tuple):
        return "/".join(_ovs_value(field, part) for part in value)
    return f"{value:#x}" if field in _HEX_FIELDS and isinstance(value, int) else str(value)


def _ovs_bits(field: str, n_bits: int) -> str:
    """NXM_OF_ARP_SPA[] for the whole field, OXM_OF_METADATA[0..47] for its low bits."""
    header, width = _OVS_HEADERS[field]
    return f"{header}[]" if n_bits == width else f"{header}[0..{n_bits - 1}]"


def _ovs_action(action: Action) -> str:
    if isinstance(action, Move):
        return f"move:{_ovs_bits(action.src, action.n_bits)}->{_ovs_bits(action.dst, action.n_bits)}"
    if isinstance(action, OutputReg):
        return f"output:{_ovs_bits(action.field, _OVS_HEADERS[action.field][1])}"
    if isinstance(action, SetField):
        return f"set_field:{_ovs_value(action.field, action.value)}->{action.field}"
    return action_text(action)  # IN_PORT, resubmit(,N), write_metadata:0x..., goto_table:N as ovs-ofctl prints them


def ovs_text(flow: FlowSpec) -> FlowRow:
    """A flow the app computes, written as ovs-ofctl -O OpenFlow13 dump-flows prints it."""
    match = dict(flow.match)
    protocol = _PROTOCOLS.get((match.get("eth_type"), match.get("ip_proto")))
    fields = [protocol] if protocol else []
    shorthand = ("eth_type", "ip_proto") if protocol else ()
    fields += [f"{_OVS_FIELD_NAMES.get(k, k)}={_ovs_value(k, v)}" for k, v in flow.match if k not in shorthand]
    actions = ",".join(_ovs_action(action) for action in flow.actions) or "drop"
    return (flow.table_id, flow.cookie, flow.priority, _sorted_match(fields), actions)


def switch_ports(lab: Lab) -> set[int]:
    """br0's numbered ports as `ovs-ofctl dump-ports-desc` lists them (LOCAL is no port the app meters)."""
    return {int(number) for number in re.findall(r"^ *(\d+)\(", lab.ofctl("dump-ports-desc"), re.MULTILINE)}


def expected_table(config_path: Path, members: list[Host], down: tuple[Host, ...] = ()) -> set[FlowRow]:
    """The app's flows for the config, with `members` located on their ports and the `down` ones' ports down,
    on the switch of the lab whose work folder holds the config (each port gets its punt meter flow)."""
    config = load_config(str(config_path))
    ports = {(cluster.name, member.ip): member.ofport for cluster in config.registry.clusters for member in members}
    down_ports = {host.ofport for host in down}
    lab = next(lab for lab in LABS if not lab.closed and Path(config_path).parent == lab.workdir)
    flows = expected_flows(config.registry, config.settings, ports, down_ports, switch_ports=switch_ports(lab))
    return {ovs_text(flow) for flow in flows}


def app_table(lab: Lab) -> list[FlowRow]:
    """The app's flows in the switch, as a list: a duplicate would show twice."""
    return [
        (f.table, f.cookie, f.priority, _sorted_match(f.match.split(",") if f.match else []), f.actions)
        for f in lab.dump_flows(APP_COOKIES)
    ]


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


def start_cluster(lab: Lab, runtime: str, arp: str, fabric_yaml: str = "") -> ClusterLab:
    """The typical cluster on br0, the app running and its flows in place; fabric_yaml: a `fabric:` section
    put before the clusters."""
    members, client = lab.add_typical_cluster()
    outsider = lab.add_host("o1", OUTSIDER_MAC, [OUTSIDER_ADDRESS], ofport=len(members) + 2)
    config_path = write_config(lab, fabric_yaml + cluster_yaml(arp))
    lab.start_controller(runtime, config_path)
    lab.wait_connected()
    expected = expected_table(config_path, members)
    table = wait_for_table(lab, expected)
    assert sorted(table) == sorted(expected), f"app flows never became the expected set:\n{lab.controller_log()}"
    return ClusterLab(lab, members, client, outsider, runtime, arp, config_path)


# --- the REST API and its CLI, reached only from inside the switch namespace ---------------------------

API_URL = "http://127.0.0.1:8080"
NLBFLOW_CLI = REPO_ROOT / ".venv" / "bin" / "nlbflow"

# A tiny urllib client run with sys.executable in the switch namespace, where the API listens on loopback.
# argv: method, url, has-body ("0"/"1"), body, headers as JSON. Prints {"status", "headers", "body"}.
_API_CLIENT = r"""
import json, sys, urllib.error, urllib.request
method, url, has_body, body, headers = sys.argv[1], sys.argv[2], sys.argv[3] == "1", sys.argv[4], sys.argv[5]
request = urllib.request.Request(
    url, data=body.encode() if has_body else None, headers=json.loads(headers), method=method
)
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
try:
    with opener.open(request, timeout=60) as response:
        status, got_headers, raw = response.status, dict(response.headers), response.read()
except urllib.error.HTTPError as error:
    status, got_headers, raw = error.code, dict(error.headers), error.read()
print(json.dumps({"status": status, "headers": got_headers, "body": raw.decode("utf-8", "replace")}))
"""


@dataclass(frozen=True)
class ApiAnswer:
    """An answer of the REST API; header names in lower case (servers differ in their case)."""

    status: int
    body: Any
    headers: dict[str, str]


def api_call(
    lab: Lab,
    method: str,
    path: str,
    body: object = None,
    *,
    token: str | None = None,
    raw: str | None = None,
    headers: dict[str, str] | None = None,
) -> ApiAnswer:
    """One request to the app's REST API from the switch namespace; the answer's body must be JSON.

    `body` is sent as JSON; `raw` is sent as it is (e.g. malformed JSON); `token` adds a bearer token;
    `headers` adds or overrides headers (e.g. a wrong Authorization scheme).
    """
    sent = {"Accept": "application/json"}
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    text = raw if raw is not None else (None if body is None else json.dumps(body))
    if text is not None:
        sent["Content-Type"] = "application/json"
    sent.update(headers or {})
    argv = [sys.executable, "-c", _API_CLIENT, method, API_URL + path, "0" if text is None else "1", text or ""]
    done = lab.run(None, *argv, json.dumps(sent), timeout=90)
    answer = json.loads(done.stdout)
    try:
        parsed = json.loads(answer["body"])
    except ValueError:
        raise AssertionError(f"{method} {path}: status {answer['status']}, not JSON: {answer['body']!r}") from None
    return ApiAnswer(answer["status"], parsed, {name.lower(): value for name, value in answer["headers"].items()})


def api(
    lab: Lab, method: str, path: str, body: object = None, token: str | None = None, raw: str | None = None
) -> tuple[int, Any]:
    """(status, JSON body) of one request to the app's REST API, sent from the switch namespace."""
    answer = api_call(lab, method, path, body, token=token, raw=raw)
    return answer.status, answer.body


def api_ok(lab: Lab, method: str, path: str, body: object = None, token: str | None = None) -> Any:
    """The JSON body of a request that must succeed (2xx); otherwise fail showing the answer and the log."""
    status, answer = api(lab, method, path, body, token)
    assert 200 <= status < 300, f"{method} {path} {body}: {status} {answer}\n{lab.controller_log()}"
    return answer


def wait_for_api(lab: Lab, token: str | None = None, timeout: float = 20.0) -> None:
    """Wait until the controller's REST API answers GET /nlb/status (with `token`, if one is set)."""
    deadline = time.monotonic() + timeout
    probe = [sys.executable, "-c", _API_CLIENT, "GET", API_URL + "/nlb/status", "0", "", "{}"]
    if token is not None:
        probe[-1] = json.dumps({"Authorization": f"Bearer {token}"})
    while True:
        done = lab.run(None, *probe, check=False)
        if done.returncode == 0 and json.loads(done.stdout)["status"] == 200:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"the REST API never answered:\n{done.stderr}\n{lab.controller_log()}")
        time.sleep(0.2)


def located(lab: Lab, cluster: str, ip: str) -> list[dict]:
    """Where the switches see a member now, as GET /nlb/clusters/{cluster}/members/{ip} reports it."""
    return api_ok(lab, "GET", f"/nlb/clusters/{cluster}/members/{ip}")["located"]


def nlbflow_cli(lab: Lab, *args: str, url: str | None = API_URL) -> subprocess.CompletedProcess:
    """Run the `nlbflow` command (the console script of ryu_apps.cli) in the switch namespace."""
    argv = [str(NLBFLOW_CLI), *(["--url", url] if url else []), *args]
    return lab.run(None, *argv, check=False, timeout=90)


def state_file(config_path: Path) -> Path:
    """The controller's state file when the config sets none: beside the config file."""
    return config_path.parent / STATE_FILE_NAME


def saved_registry(path: Path) -> Registry:
    """The registry the store at path holds (read and validated through a connection of its own)."""
    store = RegistryStore.open(str(path))
    store.close()
    return store.registry


def nlb_filter_ruleset(vip: str, index: int, count: int) -> str:
    """The Linux NLB filter of member `index` of `count` (docs/linux-members.md): of the clients' packets
    for the VIP, accept those whose source address hashes to this member, drop the others."""
    return f"""table ip nlbflow {{
    chain prerouting {{
        type filter hook prerouting priority raw; policy accept;
        ip daddr {vip} jhash ip saddr mod {count} seed 0x0 != {index} drop
    }}
}}
"""


def serve_load_balanced(lab: Lab, members: list[Host], client: Host) -> None:
    """Each member filters by hash and serves HTTP on the VIP; the client gets its extra source addresses."""
    for index, member in enumerate(members):
        lab.nft(member, nlb_filter_ruleset(VIP, index, len(members)))
        lab.start_http_server(member, VIP, HTTP_PORT, member.name)
    for address in CLIENT_SOURCES:
        if address != client.ip:
            lab.run(client, "ip", "address", "add", f"{address}/24", "dev", "eth0")
