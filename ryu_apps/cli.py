"""`nlbflow`: the command-line client of the controller's REST API (docs/rest-api.md).

No SDN framework import, so it runs wherever Python does, including hosts without Ryu or os-ken. The
API commands need the standard library only; the controller's own rules in flows.config (which needs
PyYAML) are imported where they are used: by check-config, to read a --token-file the way the server
reads it, and by apply and export, to read and write a registry file. Each command builds one request;
a pure format_* function turns the answer into text, so the output is testable without a server.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Sequence
from typing import Any, Callable, NamedTuple

from flows.model import ArpMode, Config  # standard library only, unlike flows.config

DEFAULT_URL = "http://127.0.0.1:8080"
TIMEOUT = 60.0  # seconds; a change waits for every switch's barrier before the API answers
_PLAIN_DECIMAL_RE = re.compile(r"0|[1-9][0-9]*")
_OVS_DPID_LENGTH = 16


class CliError(Exception):
    """An expected failure (API error, unreachable API, unreadable token): one line, exit 1."""


class UsageError(Exception):
    """Options that argparse cannot check on its own, reported like argparse's own errors."""


class Client:
    """The controller's REST API: JSON in, (status, JSON) out."""

    def __init__(self, base_url: str, token: str | None = None, timeout: float = TIMEOUT) -> None:
        parts = urllib.parse.urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise CliError(f"{base_url!r} is not an http:// or https:// URL")
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout
        # Straight to the controller: a proxy from the environment would see the bearer token.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def request(self, method: str, path: str, body: object = None) -> tuple[int, Any]:
        """Send one request; an error status is returned, not raised, so callers see the API's message."""
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        if self.token is not None:
            headers["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(self.base_url + path, data=data, headers=headers, method=method)
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as error:
            with error:
                status, raw = error.code, error.read()
        except (OSError, http.client.HTTPException) as error:
            raise CliError(f"cannot reach the nlbflow API at {self.base_url}: {_reason(error)}") from None
        try:
            return status, json.loads(raw.decode("utf-8"))
        except ValueError:
            raise CliError(
                f"{self.base_url} answered {method} {path} with status {status} and no JSON: is it the nlbflow API?"
            ) from None


def _reason(error: BaseException) -> str:
    """The socket's own words ("Connection refused"), not urllib's wrapping of them."""
    reason = getattr(error, "reason", error)
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    return str(reason) or type(reason).__name__


def read_token(path: str) -> str:
    """The bearer token, read by the server's own rule (flows.config.read_token_file): the file's content
    without surrounding white space, never empty."""
    from flows.config import ConfigError, read_token_file

    try:
        return read_token_file(path)
    except ConfigError as error:
        raise CliError(str(error)) from None


def dpid_value(text: str) -> int | str:
    """A dpid as the API reads it: an int for a plain decimal, else the string as typed.

    Sixteen digits are the form OVS prints, hex even when every digit is decimal (0000000000000010
    is 16), so they stay a string; so do 0x hex and anything the API should judge itself.
    """
    if len(text) != _OVS_DPID_LENGTH and _PLAIN_DECIMAL_RE.fullmatch(text):
        return int(text)
    return text


# Formatting: JSON in, text out.


def _cell(value: object) -> str:
    return "-" if value is None else str(value)


def _table(headers: Sequence[str], rows: Iterable[Sequence[object]], indent: str = "") -> str:
    cells = [list(headers)] + [[_cell(value) for value in row] for row in rows]
    widths = [max(len(row[column]) for row in cells) for column in range(len(headers))]
    return "\n".join(
        (indent + "  ".join(cell.ljust(width) for cell, width in zip(row, widths))).rstrip() for row in cells
    )


def _pairs(pairs: Sequence[tuple[str, object]], indent: str = "") -> str:
    width = max(len(name) for name, _ in pairs)
    return "\n".join(f"{indent}{name.ljust(width)}  {_cell(value)}" for name, value in pairs)


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def _dpid(value: object) -> str:
    """Dpids shown as OVS prints them, so they can be matched against ovs-ofctl output."""
    return f"{value:016x}" if isinstance(value, int) else str(value)


def _where(dpid: object, port: object) -> str:
    return f"{_dpid(dpid)} port {port}"


def _pinned(member: dict) -> str | None:
    return None if member["dpid"] is None else _where(member["dpid"], member["port"])


def _located(located: list) -> str:
    return ", ".join(f"{_where(spot['dpid'], spot['port'])} ({spot['how']})" for spot in located) or "unlocated"


def _addresses(addresses: Sequence[str]) -> str | None:
    """More addresses (a cluster's cluster_ips, a member's ips) in one cell; None (shown '-') for none."""
    return ", ".join(addresses) or None


def _cluster_rows(rows: list[tuple], more: list[Sequence[str]]) -> str:
    """The clusters' table: NAME, CLUSTER IP, ... and, only when a cluster has some, its MORE CLUSTER IPS
    after its primary one."""
    headers = ("NAME", "CLUSTER IP", "CLUSTER MAC", "MODE", "ARP", "MEMBERS")
    if not any(more):
        return _table(headers, rows)
    return _table(
        (*headers[:2], "MORE CLUSTER IPS", *headers[2:]),
        [(*row[:2], _addresses(vips), *row[2:]) for row, vips in zip(rows, more)],
    )


def format_clusters(data: dict) -> str:
    """GET /nlb/clusters as a table, one row per cluster."""
    clusters = data["clusters"]
    if not clusters:
        return "no clusters"
    return _cluster_rows(
        [(c["name"], c["cluster_ip"], c["cluster_mac"], c["mode"], c["arp"], len(c["members"])) for c in clusters],
        [c.get("cluster_ips", []) for c in clusters],
    )


def format_members(members: list) -> str:
    """Members as a table: their more addresses (a column only when one has some), where each is pinned and
    where the switches see it now."""
    if not members:
        return "no members"
    if not any(m.get("ips") for m in members):
        return _table(
            ("IP", "DEDICATED MAC", "PINNED", "LOCATED"),
            [(m["ip"], m["mac"], _pinned(m), _located(m["located"])) for m in members],
        )
    return _table(
        ("IP", "MORE IPS", "DEDICATED MAC", "PINNED", "LOCATED"),
        [(m["ip"], _addresses(m.get("ips", [])), m["mac"], _pinned(m), _located(m["located"])) for m in members],
    )


def format_cluster(cluster: dict) -> str:
    """One cluster: its fields, then its members."""
    fields = _pairs(
        [
            ("cluster", cluster["name"]),
            ("cluster IP", cluster["cluster_ip"]),
            *([("more cluster IPs", _addresses(cluster["cluster_ips"]))] if cluster.get("cluster_ips") else []),
            ("cluster MAC", cluster["cluster_mac"]),
            ("mode", cluster["mode"]),
            ("arp", cluster["arp"]),
            ("members", len(cluster["members"])),
        ]
    )
    fields = "\n".join([fields, *_pending(cluster)])
    return f"{fields}\n\n{format_members(cluster['members'])}" if cluster["members"] else fields


def format_member(member: dict) -> str:
    """One member: its more addresses, its dedicated MAC, where it is pinned and where it is seen."""
    fields = [
        ("ip", member["ip"]),
        *([("more IPs", _addresses(member["ips"]))] if member.get("ips") else []),
        ("dedicated MAC", member["mac"]),
        ("pinned", _pinned(member)),
        ("located", _located(member["located"])),
    ]
    return "\n".join([_pairs(fields), *_pending(member)])


def _flow_table(flows: list) -> str:
    """Flows as in the audit; a missing flow has no counters and shows '-' for them."""
    return _table(
        ("COOKIE", "CLUSTER", "MEMBER", "PURPOSE", "PRIORITY", "MATCH", "ACTIONS", "PACKETS", "BYTES"),
        [
            (
                flow["cookie"],
                flow.get("cluster"),
                flow.get("member"),
                flow.get("purpose"),
                flow["priority"],
                ",".join(f"{field}={value}" for field, value in flow["match"].items()) or "*",
                ",".join(flow["actions"]) or "drop",
                flow.get("packets"),
                flow.get("bytes"),
            )
            for flow in flows
        ],
        indent="  ",
    )


def _flow_section(label: str, flows: list) -> str:
    return f"{label}: {len(flows)}\n{_flow_table(flows)}" if flows else f"{label}: none"


def format_flows(audit: dict) -> str:
    """GET /nlb/flows: per switch, the app's flows, then what is missing or unexpected."""
    switches = audit["switches"]
    if not switches:
        return "no switches connected"
    blocks = []
    for key in sorted(switches):
        switch = switches[key]
        blocks.append(
            "\n".join(
                [
                    f"switch {key} (dpid {switch['dpid']}): {_count(len(switch['flows']), 'flow')} of nlbflow",
                    *([_flow_table(switch["flows"])] if switch["flows"] else []),
                    _flow_section("missing", switch["missing"]),
                    _flow_section("unexpected", switch["unexpected"]),
                    *[_refused_line(flow) for flow in switch.get("refused", [])],
                    f"flows of other apps: {switch['other_apps_flows']}",
                    *(_shared_port(switch["dpid"], shared).strip() for shared in switch.get("shared_ports", [])),
                ]
            )
        )
    return "\n\n".join(blocks)


def _refused_line(flow: dict) -> str:
    """A flow change the switch kept refusing, with its OpenFlow error; `flows reconcile` retries it."""
    return (
        f"refused by the switch: {flow['command']} {flow['cookie']} table {flow['table_id']}"
        f" priority {flow['priority']} (error type {flow['error_type']} code {flow['error_code']},"
        f" {flow['refusals']} times; `nlbflow flows reconcile` retries)"
    )


def _pending(answer: dict) -> list[str]:
    """A change's answer names the switches it still waits for (they get it when they reconnect)."""
    pending = answer.get("pending_switches") or []
    return [f"pending on switches (they get it when they reconnect): {', '.join(pending)}"] if pending else []


def format_reconcile(result: dict) -> str:
    """POST /nlb/flows/reconcile: what each switch got repaired, and anything still off."""
    switches = result["switches"]
    if not switches:
        return "no switches connected: nothing to reconcile"
    lines = []
    for key in sorted(switches):
        switch = switches[key]
        # A switch that connected between the repair and the audit has no "repaired": nothing was done to it.
        repaired = switch.get("repaired", {"added": 0, "deleted": 0})
        added, deleted = repaired["added"], repaired["deleted"]
        done = f"{_count(added, 'flow')} added, {deleted} deleted" if added or deleted else "in step, nothing to repair"
        lines.append(f"switch {key}: {done}")
        lines += [
            _flow_section(f"still {label}", switch[label]) for label in ("missing", "unexpected") if switch[label]
        ]
    return "\n".join(lines)


def format_status(status: dict) -> str:
    """GET /nlb/status: the switches and their punt meters, which members are located, the ARP counters."""
    switches = status["switches"]
    members = [(cluster["name"], member) for cluster in status["clusters"] for member in cluster["members"]]
    located = sum(1 for _, member in members if member["located"])
    lines = [f"runtime: {status['runtime']}", f"switches: {len(switches)}"]
    for switch in switches:
        ports = ", ".join(str(port) for port in switch.get("ports", [])) or "none"
        lines.append(f"  {_switch_title(switch)}  ports {ports}")
        lines += [f"    {line}" for line in _switch_lines(switch)]
        lines += _meter_lines(switch.get("meters", []))
    lines += [_shared_port(s["dpid"], shared) for s in switches for shared in s.get("shared_ports", [])]
    lines.append(f"members located: {located} of {len(members)}")
    if members:
        rows = [
            (name, member["ip"], *_location_columns(spot))
            for name, member in members
            for spot in member["located"] or [None]
        ]
        lines.append(_table(("CLUSTER", "MEMBER", "LOCATED", "HOW", "CONFIRMED", "SPOOF ATTEMPTS"), rows, indent="  "))
    counters = status["counters"]
    lines.append("counters:")
    if counters:
        lines.append(_pairs(list(counters.items()), indent="  "))
    return "\n".join(lines)


def _switch_title(switch: dict) -> str:
    """The dpid as OVS prints it, its configured name, and whether it is connected (a status from a
    controller without fabrics has neither: the dpid alone)."""
    title = _dpid(switch["dpid"]) + (f" {switch['name']}" if switch.get("name") else "")
    if "connected" in switch:
        title += " (connected)" if switch["connected"] else " (not connected)"
    return title


def _uplinks(switch: dict) -> str:
    """Each configured uplink and the port it is now: `5 -> port 5`, `patch-core -> unresolved`."""
    shown = [
        f"{uplink['uplink']} -> " + ("unresolved" if uplink["port"] is None else f"port {uplink['port']}")
        for uplink in switch.get("uplinks", [])
    ]
    return ", ".join(shown) or "none"


def _switch_members(switch: dict) -> str:
    return ", ".join(f"{m['cluster']} {m['ip']} port {m['port']}" for m in switch.get("members", [])) or "none"


def _switch_lines(switch: dict) -> list[str]:
    """A switch's uplinks, the members located on it and its loop count, where the status has them."""
    if "uplinks" not in switch:
        return []
    loops = switch.get("loops", 0)
    warning = " (frames of nlbflow came back: a loop in the uplinks?)" if loops else ""
    return [f"uplinks: {_uplinks(switch)}", f"members: {_switch_members(switch)}", f"loops: {loops}{warning}"]


def format_switches(data: dict) -> str:
    """GET /nlb/switches as a table, one row per switch configured or connected."""
    switches = data["switches"]
    if not switches:
        return "no switches configured or connected"
    return _table(
        ("DPID", "NAME", "CONNECTED", "UPLINKS", "MEMBERS", "LOOPS"),
        [
            (
                _dpid(s["dpid"]),
                s["name"],
                "yes" if s["connected"] else "no",
                _uplinks(s),
                len(s["members"]),
                s["loops"],
            )
            for s in switches
        ],
    )


def format_switch(switch: dict) -> str:
    """One switch: its name, whether it is connected, its uplinks and where they are, its members."""
    fields = [
        ("switch", _dpid(switch["dpid"])),
        ("name", switch["name"]),
        ("connected", "yes" if switch["connected"] else "no"),
        ("uplinks", _uplinks(switch)),
        ("members", _switch_members(switch)),
        ("loops", switch["loops"]),
    ]
    return "\n".join([_pairs(fields), *_pending(switch)])


def _meter_lines(meters: list) -> list[str]:
    """The punt meters of one switch, with what the switch counted (passed and dropped)."""
    if not meters:
        return []
    rows = [(f"{m['meter_id']:#x}", m["applies_to"], f"{m['rate_pps']}/s", m["packets"], m["dropped"]) for m in meters]
    return ["    punt meters:", _table(("METER", "APPLIES TO", "RATE", "PACKETS", "DROPPED"), rows, indent="      ")]


def _location_columns(spot: dict | None) -> tuple:
    """Where, how it was found, when last confirmed (or that a check is under way), spoofs seen against it."""
    if spot is None:
        return ("unlocated", None, None, None)
    ago = spot.get("confirmed_ago")
    confirmed = "never" if ago is None else f"{ago:g} s ago"
    if spot.get("checking"):
        confirmed += " (checking)"
    count = spot.get("spoof_attempts", 0)
    spoofs = f"{count}, last from port {spot['last_spoof_port']}" if count else "0"
    return (_where(spot["dpid"], spot["port"]), spot["how"], confirmed, spoofs)


def _shared_port(dpid: int, shared: dict) -> str:
    members = ", ".join(member["ip"] for member in shared["members"])
    others = f" and other hosts ({', '.join(shared['other_sources'])})" if shared["other_sources"] else ""
    return (
        f"  warning: {_where(dpid, shared['port'])} is shared by members {members}{others}: "
        "they cannot be served correctly; give each member its own edge port (docs/trust.md)"
    )


def format_config(path: str, config: Config) -> str:
    """A valid config in brief: how many clusters and members, one line per cluster."""
    clusters = config.registry.clusters
    members = sum(len(cluster.members) for cluster in clusters)
    switches = config.fabric.switches
    summary = f"{path}: valid, {_count(len(clusters), 'cluster')}, {_count(members, 'member')}"
    if switches:
        summary += f", {len(switches)} {'switch' if len(switches) == 1 else 'switches'}"
    blocks = [summary]
    if clusters:
        rows = [(c.name, c.cluster_ip, c.cluster_mac, c.mode.value, c.arp.value, len(c.members)) for c in clusters]
        blocks.append(_cluster_rows(rows, [c.cluster_ips for c in clusters]))
    if switches:
        rows = [(_dpid(s.dpid), s.name, ", ".join(map(str, s.uplinks)) or None) for s in switches]
        blocks.append(_table(("SWITCH", "NAME", "UPLINKS"), rows))
    return "\n".join(blocks)


def _entry(member: dict) -> str:
    """A member entry of the config's `clusters:` list, in one line."""
    parts = [member["ip"], *([member["mac"]] if member.get("mac") else [])]
    if member.get("dpid") is not None:
        parts.append(f"pinned {_where(member['dpid'], member['port'])}")
    if member.get("ips"):
        parts.append(f"also {_addresses(member['ips'])}")
    return " ".join(parts)


def _summary(cluster: dict) -> str:
    more = f", also {_addresses(cluster['cluster_ips'])}" if cluster.get("cluster_ips") else ""
    return (
        f"{cluster['name']} ({cluster['cluster_ip']} {cluster['cluster_mac']}{more}, {cluster['mode']}, arp"
        f" {cluster['arp']}, {_count(len(cluster['members']), 'member')})"
    )


def _changed_value(value: object) -> str:
    """A field's value in a diff: a list of addresses (cluster_ips, ips) in brackets, none as '-'."""
    return f"[{', '.join(map(str, value))}]" if isinstance(value, list) else _cell(value)


def _field_changes(changes: list) -> str:
    return ", ".join(
        f"{change['field']} {_changed_value(change['from'])} -> {_changed_value(change['to'])}" for change in changes
    )


def format_diff(answer: dict) -> str:
    """PUT /nlb/registry's answer (or its dry run): + added, - removed, ~ changed, by cluster and member."""
    added, removed, changed, unchanged = answer["added"], answer["removed"], answer["changed"], answer["unchanged"]
    if not (added or removed or changed):
        head = f"no change: {_count(unchanged, 'cluster')} as registered"
        return "\n".join([f"dry run: {head}" if answer.get("dry_run") else head, *_pending(answer)])
    counts = f"{len(added)} added, {len(removed)} removed, {len(changed)} changed, {unchanged} unchanged"
    lines = [f"dry run, nothing changed: clusters {counts}" if answer.get("dry_run") else f"applied: clusters {counts}"]
    for cluster in added:
        lines.append(f"+ cluster {_summary(cluster)}")
        lines += [f"    + member {_entry(member)}" for member in cluster["members"]]
    for cluster in removed:
        lines.append(f"- cluster {_summary(cluster)}")
    for cluster in changed:
        lines.append(
            f"~ cluster {cluster['name']}" + (f": {_field_changes(cluster['fields'])}" if cluster["fields"] else "")
        )
        members = cluster["members"]
        lines += [f"    + member {_entry(member)}" for member in members["added"]]
        lines += [f"    - member {_entry(member)}" for member in members["removed"]]
        lines += [f"    ~ member {member['ip']}: {_field_changes(member['fields'])}" for member in members["changed"]]
    return "\n".join([*lines, *_pending(answer)])


def format_registry_yaml(registry: dict, source: str) -> str:
    """GET /nlb/registry as a registry file (`nlbflow apply` takes it back); dpids as OVS prints them."""
    import yaml

    clusters = [
        {**cluster, "members": [_ovs_dpid(member) for member in cluster["members"]]} for cluster in registry["clusters"]
    ]
    header = f"# nlbflow registry from {source}; `nlbflow apply FILE` applies it (docs/rest-api.md)\n"
    return header + yaml.safe_dump({"clusters": clusters}, sort_keys=False, default_flow_style=False).rstrip("\n")


def _ovs_dpid(member: dict) -> dict:
    return {**member, "dpid": _dpid(member["dpid"])} if member.get("dpid") is not None else member


# Commands: each turns parsed arguments into one API call and the way to show its answer.


class Call(NamedTuple):
    """One API request, and how to print its answer when it succeeds.

    With `before`, a GET of that path comes first and body is a function of its answer (None for a 404):
    a change that keeps what the command line leaves out (`switch set`)."""

    method: str
    path: str
    body: dict | Callable[[dict | None], dict] | None
    render: Callable[[Any], str]
    before: str | None = None


def _segment(text: str) -> str:
    return urllib.parse.quote(text, safe="")


def _cluster_path(name: str) -> str:
    return f"/nlb/clusters/{_segment(name)}"


def _member_path(cluster: str, ip: str) -> str:
    return f"{_cluster_path(cluster)}/members/{_segment(ip)}"


def _pin(args: argparse.Namespace) -> dict:
    if (args.dpid is None) != (args.port is None):
        raise UsageError("--dpid and --port go together: a member is pinned to one switch port")
    return {} if args.dpid is None else {"dpid": dpid_value(args.dpid), "port": args.port}


def cluster_add(args: argparse.Namespace) -> Call:
    options = {"cluster_mac": args.cluster_mac, "mode": args.mode, "arp": args.arp}
    body = {
        "name": args.name,
        "cluster_ip": args.cluster_ip,
        **({"cluster_ips": args.cluster_ips} if args.cluster_ips else {}),
    }
    body.update((key, value) for key, value in options.items() if value is not None)
    return Call("POST", "/nlb/clusters", body, lambda cluster: f"added cluster\n{format_cluster(cluster)}")


def cluster_list(args: argparse.Namespace) -> Call:
    return Call("GET", "/nlb/clusters", None, format_clusters)


def cluster_show(args: argparse.Namespace) -> Call:
    return Call("GET", _cluster_path(args.name), None, format_cluster)


def cluster_remove(args: argparse.Namespace) -> Call:
    def render(cluster: dict) -> str:
        return (
            f"removed cluster {cluster['name']} ({cluster['cluster_ip']}, {_count(len(cluster['members']), 'member')})"
        )

    return Call("DELETE", _cluster_path(args.name), None, render)


def member_add(args: argparse.Namespace) -> Call:
    body = {
        "ip": args.ip,
        **({"ips": args.ips} if args.ips else {}),
        **({"mac": args.mac} if args.mac is not None else {}),
        **_pin(args),
    }
    return Call(
        "POST",
        f"{_cluster_path(args.cluster)}/members",
        body,
        lambda member: f"added member to cluster {args.cluster}\n{format_member(member)}",
    )


def member_list(args: argparse.Namespace) -> Call:
    return Call("GET", f"{_cluster_path(args.cluster)}/members", None, lambda data: format_members(data["members"]))


def member_show(args: argparse.Namespace) -> Call:
    return Call("GET", _member_path(args.cluster, args.ip), None, format_member)


def member_remove(args: argparse.Namespace) -> Call:
    return Call(
        "DELETE",
        _member_path(args.cluster, args.ip),
        None,
        lambda member: f"removed member {member['ip']} ({member['mac']}) from cluster {args.cluster}",
    )


def member_move(args: argparse.Namespace) -> Call:
    if args.unpin and (args.dpid is not None or args.port is not None):
        raise UsageError("--unpin cannot go with --dpid or --port")
    if args.ips and args.no_ips:
        raise UsageError("--ip cannot go with --no-ips")
    body = {"dpid": None, "port": None} if args.unpin else _pin(args)
    if args.mac is not None:
        body["mac"] = args.mac
    if args.ips or args.no_ips:
        body["ips"] = args.ips
    if not body:
        raise UsageError("nothing to change: give --dpid and --port, --unpin, --mac, --ip or --no-ips")
    return Call(
        "PATCH",
        _member_path(args.cluster, args.ip),
        body,
        lambda member: f"updated member of cluster {args.cluster}\n{format_member(member)}",
    )


def _switch_path(dpid: str) -> str:
    return f"/nlb/switches/{_segment(dpid)}"


def uplink_value(text: str) -> int | str:
    """An --uplink: all digits is a port number, anything else a port name (the API judges both)."""
    return int(text) if text.isascii() and text.isdigit() else text


def switch_list(args: argparse.Namespace) -> Call:
    return Call("GET", "/nlb/switches", None, format_switches)


def switch_show(args: argparse.Namespace) -> Call:
    return Call("GET", _switch_path(args.dpid), None, format_switch)


def switch_set(args: argparse.Namespace) -> Call:
    """PUT the switch's name and uplinks: what is not given is kept from the switch's configuration now
    (read first), so `--name` alone renames and `--uplink` alone replaces the uplinks."""
    if args.name is not None and args.no_name:
        raise UsageError("--name cannot go with --no-name")
    if args.uplinks and args.no_uplinks:
        raise UsageError("--uplink cannot go with --no-uplinks")
    if args.name is None and not args.no_name and not args.uplinks and not args.no_uplinks:
        raise UsageError("nothing to set: give --name, --no-name, --uplink or --no-uplinks")

    def body(current: dict | None) -> dict:
        name = None if args.no_name else args.name if args.name is not None else (current or {}).get("name")
        if args.no_uplinks:
            uplinks: list = []
        elif args.uplinks:
            uplinks = [uplink_value(text) for text in args.uplinks]
        else:
            uplinks = [uplink["uplink"] for uplink in (current or {}).get("uplinks", [])]
        return {"name": name, "uplinks": uplinks}

    path = _switch_path(args.dpid)
    return Call("PUT", path, body, lambda switch: f"configured switch\n{format_switch(switch)}", before=path)


def switch_remove(args: argparse.Namespace) -> Call:
    def render(switch: dict) -> str:
        name = f" ({switch['name']})" if switch["name"] else ""
        uplinks = ", ".join(map(str, switch["uplinks"])) or "none"
        return f"removed the configuration of switch {_dpid(switch['dpid'])}{name}, uplinks {uplinks}"

    return Call("DELETE", _switch_path(args.dpid), None, render)


def flows_audit(args: argparse.Namespace) -> Call:
    if args.action == "reconcile":
        return Call("POST", "/nlb/flows/reconcile", None, format_reconcile)
    return Call("GET", "/nlb/flows", None, format_flows)


def status_show(args: argparse.Namespace) -> Call:
    return Call("GET", "/nlb/status", None, format_status)


def registry_apply(args: argparse.Namespace) -> Call:
    """The file is read and checked here by the controller's own rules, so a duplicate key or a bad field
    names the file and the key before anything is sent; the controller checks it again, against itself."""
    from flows.config import ConfigError, load_registry_file

    try:
        clusters = load_registry_file(args.file)
    except ConfigError as error:
        raise CliError(f"bad registry file: {error}") from None
    path = "/nlb/registry?dry_run=1" if args.dry_run else "/nlb/registry"
    return Call("PUT", path, {"clusters": clusters}, format_diff)


def registry_export(args: argparse.Namespace) -> Call:
    return Call("GET", "/nlb/registry", None, lambda registry: format_registry_yaml(registry, args.url))


def check_config(path: str) -> int:
    """Validate a config offline with the controller's own loader, so the verdict is the controller's."""
    from flows.config import ConfigError, load_config

    try:
        config = load_config(path)
    except ConfigError as error:
        print(f"nlbflow: bad config: {error}", file=sys.stderr)
        return 1
    print(format_config(path, config))
    return 0


# The command line.


def _connection_options(parser: argparse.ArgumentParser, with_defaults: bool) -> None:
    """On the main parser with defaults, and on every API command without, so they go before or after it."""

    def default(value: object) -> object:
        return value if with_defaults else argparse.SUPPRESS

    parser.add_argument(
        "--url",
        default=default(os.environ.get("NLBFLOW_URL") or DEFAULT_URL),
        help=f"the controller's REST API (default: $NLBFLOW_URL, else {DEFAULT_URL})",
    )
    parser.add_argument(
        "--token-file",
        metavar="FILE",
        default=default(os.environ.get("NLBFLOW_TOKEN_FILE") or None),
        help="send 'Authorization: Bearer <the file's content>' (default: $NLBFLOW_TOKEN_FILE, else no token)",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        default=default(False),
        help="print the API's JSON answer as it is, instead of tables",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nlbflow",
        description="Manage the NLB clusters of a running nlbflow controller through its REST API.",
        epilog="Exit status: 0 on success, 1 when the API refuses or cannot be reached, 2 on a usage error.",
    )
    _connection_options(parser, with_defaults=True)
    connection = argparse.ArgumentParser(add_help=False)
    _connection_options(connection, with_defaults=False)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def leaf(group: Any, name: str, help_text: str, call: Callable[[argparse.Namespace], Call]) -> Any:
        sub = group.add_parser(name, help=help_text, description=help_text, parents=[connection])
        sub.set_defaults(call=call, parser=sub)
        return sub

    cluster = commands.add_parser("cluster", help="add, list, show or remove clusters")
    cluster_actions = cluster.add_subparsers(dest="action", metavar="ACTION", required=True)
    sub = leaf(cluster_actions, "add", "register a cluster (POST /nlb/clusters)", cluster_add)
    sub.add_argument("name", metavar="NAME", help="1-63 letters, digits, '_', '.', '-'")
    sub.add_argument(
        "cluster_ip", metavar="CLUSTER_IP", help="the primary cluster IP (VIP), IPv4 or IPv6 (IPv6 needs --cluster-mac)"
    )
    sub.add_argument(
        "--cluster-ip",
        dest="cluster_ips",
        action="append",
        default=[],
        metavar="ADDRESS",
        help="one more cluster IP (VIP), IPv4 or IPv6; repeat for several",
    )
    sub.add_argument(
        "--cluster-mac",
        metavar="MAC",
        help="default by --mode, as Windows NLB derives it: 02:bf:<cluster IP> (unicast), 03:bf:<cluster IP>"
        " (multicast), 01:00:5e:7f:<last two octets> (igmp)",
    )
    sub.add_argument(
        "--mode",
        choices=("unicast", "multicast", "igmp"),
        help="NLB cluster mode (default unicast); the multicast modes get flood containment only",
    )
    sub.add_argument(
        "--arp",
        choices=[mode.value for mode in ArpMode],
        help="proxy: the controller answers; relay: the peer does; switch: the switch answers by flows"
        " (docs/switch-mode.md; default switch)",
    )
    leaf(cluster_actions, "list", "list the clusters", cluster_list)
    sub = leaf(cluster_actions, "show", "show a cluster and its members", cluster_show)
    sub.add_argument("name", metavar="NAME")
    sub = leaf(cluster_actions, "remove", "remove a cluster, its members and their flows", cluster_remove)
    sub.add_argument("name", metavar="NAME")

    member = commands.add_parser("member", help="add, list, show, move or remove cluster members")
    member_actions = member.add_subparsers(dest="action", metavar="ACTION", required=True)
    dpid_help = "the switch: a decimal integer, or the 16 hex digits OVS prints (0000000000000001)"
    sub = leaf(member_actions, "add", "add a member to a cluster", member_add)
    sub.add_argument("cluster", metavar="CLUSTER")
    sub.add_argument("ip", metavar="IP", help="the member's dedicated IP (DIP), IPv4: its key")
    more_ips = "one more dedicated address, IPv4 or IPv6 (never link-local); repeat for several"
    sub.add_argument("--ip", dest="ips", action="append", default=[], metavar="ADDRESS", help=more_ips)
    sub.add_argument("--mac", help="its dedicated MAC (default 02:de:<IP>), one for all its addresses")
    sub.add_argument("--dpid", help=dpid_help + "; with --port, pins the member (default: the app locates it)")
    sub.add_argument("--port", type=int, help="the switch port the member is attached to")
    sub = leaf(member_actions, "list", "list a cluster's members and where they are", member_list)
    sub.add_argument("cluster", metavar="CLUSTER")
    sub = leaf(member_actions, "show", "show one member", member_show)
    sub.add_argument("cluster", metavar="CLUSTER")
    sub.add_argument("ip", metavar="IP")
    sub = leaf(member_actions, "remove", "remove a member and its flows", member_remove)
    sub.add_argument("cluster", metavar="CLUSTER")
    sub.add_argument("ip", metavar="IP")
    sub = leaf(
        member_actions,
        "move",
        "pin a member to a switch port (--dpid and --port), unpin it (--unpin), and/or change its MAC (--mac)"
        " or its more addresses (--ip, --no-ips)",
        member_move,
    )
    sub.add_argument("cluster", metavar="CLUSTER")
    sub.add_argument("ip", metavar="IP")
    sub.add_argument("--dpid", help=dpid_help)
    sub.add_argument("--port", type=int, help="the switch port")
    sub.add_argument("--unpin", action="store_true", help="let the app locate the member itself")
    sub.add_argument("--mac", help="a new dedicated MAC")
    sub.add_argument(
        "--ip",
        dest="ips",
        action="append",
        default=[],
        metavar="ADDRESS",
        help=more_ips + "; replaces its more addresses",
    )
    sub.add_argument("--no-ips", action="store_true", help="remove the member's more addresses")

    switch = commands.add_parser("switch", help="list, show, set or remove the switches' names and uplinks")
    switch_actions = switch.add_subparsers(dest="action", metavar="ACTION", required=True)
    switch_dpid = "the switch: 16 hex digits as OVS prints it (0000000000000001), 0x hex, or a decimal integer"
    leaf(switch_actions, "list", "list the switches configured or connected", switch_list)
    sub = leaf(switch_actions, "show", "show a switch: its name, uplinks and the members on it", switch_show)
    sub.add_argument("dpid", metavar="DPID", help=switch_dpid)
    sub = leaf(
        switch_actions,
        "set",
        "configure a switch's name and uplinks (PUT /nlb/switches/DPID); what is not given is kept",
        switch_set,
    )
    sub.add_argument("dpid", metavar="DPID", help=switch_dpid)
    sub.add_argument("--name", help="a label shown in status, audit and logs (1-63 letters, digits, '_', '.', '-')")
    sub.add_argument("--no-name", action="store_true", help="remove the switch's name")
    sub.add_argument(
        "--uplink",
        dest="uplinks",
        action="append",
        default=[],
        metavar="PORT",
        help="a port toward other switches: an OpenFlow port number (all digits) or an OVS port name;"
        " repeat for several; replaces the uplinks",
    )
    sub.add_argument("--no-uplinks", action="store_true", help="the switch has no uplinks")
    sub = leaf(
        switch_actions, "remove", "remove a switch's name and uplinks (the switch stays connected)", switch_remove
    )
    sub.add_argument("dpid", metavar="DPID", help=switch_dpid)

    sub = leaf(
        commands,
        "flows",
        "audit the app's flows in every switch; 'flows reconcile' repairs what is missing or unexpected",
        flows_audit,
    )
    sub.add_argument(
        "action",
        nargs="?",
        choices=("reconcile",),
        metavar="reconcile",
        help="add the missing flows and delete the unexpected ones, then show what was repaired",
    )
    leaf(commands, "status", "show the switches, where members are located and the ARP counters", status_show)

    sub = leaf(
        commands,
        "apply",
        "make the registry exactly what a file's `clusters:` list says, in one change (PUT /nlb/registry):"
        " clusters not in it are removed",
        registry_apply,
    )
    sub.add_argument("file", metavar="FILE", help="YAML with a top-level `clusters:` list, as in the config")
    sub.add_argument("--dry-run", action="store_true", help="only show what would change")
    leaf(commands, "export", "print the registry as a file `nlbflow apply` takes (GET /nlb/registry)", registry_export)

    sub = commands.add_parser(
        "check-config",
        help="validate a config file offline, as the controller would",
        description="Validate a YAML config offline with the controller's own rules; no controller needed.",
    )
    sub.add_argument("file", metavar="FILE")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "check-config":
        return check_config(args.file)
    try:
        call = args.call(args)
    except UsageError as error:
        args.parser.error(str(error))
    except CliError as error:
        print(f"nlbflow: {error}", file=sys.stderr)
        return 1
    try:
        client = Client(args.url, read_token(args.token_file) if args.token_file else None)
        body = call.body
        if call.before is not None:
            code, current = client.request("GET", call.before)
            if code >= 400 and code != 404:
                return _refused(code, current)
            body = call.body(current if code < 400 else None)
        code, data = client.request(call.method, call.path, body)
    except CliError as error:
        print(f"nlbflow: {error}", file=sys.stderr)
        return 1
    if code >= 400:
        return _refused(code, data)
    print(json.dumps(data, indent=2) if args.json else call.render(data))
    return 0


def _refused(code: int, data: Any) -> int:
    """An error answer: the API's message on one line, exit 1."""
    message = data.get("error") if isinstance(data, dict) else None
    print(f"nlbflow: {code}: {message or json.dumps(data)}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
