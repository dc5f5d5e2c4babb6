"""A live demo of nlbflow for a newcomer: the problem on a plain learning switch, the fix, a load-balanced cluster.

Run as root from the repo root: `python -m tests.demo [--runtime osken|ryu] [--arp switch|proxy|relay]`
(`make demo` does it). Everything happens in a throw-away lab (tests/netlab.py): namespaces, a private
userspace Open vSwitch and the controller, all removed at the end, even on failure or Ctrl-C.
The members are dual-stack, so the problem and the fix are shown for IPv4 and IPv6 side by side (issue 11).
The exit code is 0 only if the problem was reproduced and every check of the fix passed. A last section
puts members on two OVS bridges joined by a Linux bridge, one app driving both (issue 9).
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import threading
import time

from flows.addresses import dedicated_mac
from flows.cookies import Purpose, decode_cookie
from tests.lab.appkit import (
    APP_COOKIES,
    CLIENT_SOURCES,
    HTTP_PORT,
    OUTSIDER_ADDRESS,
    OUTSIDER_MAC,
    VIP,
    cluster_yaml,
    serve_load_balanced,
    write_config,
)
from tests.lab.fabrickit import build_topology_a, members_in_status, start_fabric
from tests.netlab import BRIDGE, CLUSTER_MAC, CLUSTER_VIP, CLUSTER_VIP6, Flow, Host, Lab, LabError

PURPOSES = {
    Purpose.NORMAL_FALLBACK: "normal fallback",
    Purpose.ARP_PUNT: "ARP to controller",
    Purpose.MEMBER_DELIVERY: "to a member",
    Purpose.CLUSTER_DELIVERY: "to all members",
    Purpose.SOURCE_MASKING: "source masking",
    Purpose.INGRESS: "on to table 1",
    Purpose.PROBE_ANSWER: "probe answers",
    Purpose.PUNT_PORT: "punt meter of a port",
    Purpose.PUNT_TOTAL: "punt meter of the switch",
    Purpose.MEMBER_TRANSIT: "to a member on another switch",
    Purpose.ARP_SENDER: "member ARP recognised",
    Purpose.ARP_ANSWER: "ARP answered by the switch",
    Purpose.ARP_SPREAD: "member ARP spread",
    Purpose.ARP_FLOOD: "flood to edge ports",
    Purpose.ND_PUNT: "ND to controller",
}
FLOW_TIMEOUT = 30.0
HTTP_REQUESTS = 210  # one connection each, cycling through the client's CLIENT_SOURCES: about 10 s
PEER_PINGS = 40  # m1 -> m2 during the HTTP burst, one every 0.2 s


class DemoError(RuntimeError):
    """The demo cannot go on (e.g. the app never installed its flows)."""


class Checks:
    """Records every check, so that the demo goes on after a failure and sums up at the end."""

    def __init__(self) -> None:
        self.failed: list[str] = []
        self.count = 0

    def check(self, ok: bool, what: str) -> bool:
        self.count += 1
        if not ok:
            self.failed.append(what)
            print(f"  CHECK FAILED: {what}")
        return ok


def heading(title: str, explanation: str) -> None:
    print(f"\n== {title} ==\n{explanation}", flush=True)


def ping_matrix(lab: Lab, members: list[Host], count: int, ipv6: bool = False) -> dict[tuple[str, str], bool]:
    """Ping every peer's DIP (IPv4, or the IPv6 DIP) from every member, printing one row per source as it completes."""
    family = "IPv6" if ipv6 else "IPv4"
    print((f"  {family}    " + "".join(f"to {m.name:<8}" for m in members)).rstrip())
    results: dict[tuple[str, str], bool] = {}
    for src in members:
        row = f"  from {src.name:<3} "
        for dst in members:
            if dst is src:
                row += f"{'-':<11}"
                continue
            got = lab.ping_replies(src, dst.ip6 if ipv6 else dst.ip, count=count)
            results[(src.name, dst.name)] = got == count
            row += f"{'ok' if got == count else f'FAIL {got}/{count}':<11}"
        print(row.rstrip(), flush=True)
    return results


def owner_of(mac: str | None, members: list[Host]) -> str:
    """A short note on whose MAC this is, for the neighbour tables."""
    if mac == CLUSTER_MAC:
        return "the cluster MAC (its own MAC!)"
    names = [m.name for m in members if dedicated_mac(m.ip) == mac]
    return f"dedicated MAC of {names[0]}" if names else ""


def neighbour_row(lab: Lab, host: Host, address: str, members: list[Host]) -> tuple[str | None, str, str]:
    """(MAC, state, the row to print) for one address in the host's neighbour table (`ip neigh`, `ip -6 neigh`)."""
    entry = (lab.neigh6(host) if ":" in address else lab.neigh(host)).get(address)
    mac, state = (entry.lladdr, entry.state) if entry else (None, "absent")
    client_note = "the cluster MAC" if mac == CLUSTER_MAC else ""
    note = owner_of(mac, members) if host in members else client_note
    return mac, state, f"{host.name}: {address:<12} -> {mac or '(none)':<17}  {state:<10} {note}"


def show_problem(lab: Lab, members: list[Host], checks: Checks) -> None:
    """Without the app, br0 is a plain learning switch: members cannot reach each other by DIP."""
    heading(
        "2. The problem: a plain learning switch (flow actions=NORMAL, no controller)",
        "Every member's NIC carries the cluster MAC, so a member resolves a peer's DIP to its own MAC or not at all.",
    )
    lab.add_flow("actions=NORMAL")
    for ipv6 in (False, True):
        results = ping_matrix(lab, members, count=1, ipv6=ipv6)
        family = "IPv6" if ipv6 else "IPv4"
        checks.check(
            not any(results.values()), f"problem: member-to-member {family} pings should all fail without the app"
        )
    m1 = members[0]
    print(f"\n  {m1.name}'s neighbour tables (ip neigh, ip -6 neigh) for its peers:")
    for peer in members[1:]:
        for address in (peer.ip, peer.ip6):
            mac, state, row = neighbour_row(lab, m1, address, members)
            print(f"    {row}".rstrip())
            checks.check(
                state != "absent" and (mac == CLUSTER_MAC or state in {"FAILED", "INCOMPLETE"}),
                f"problem: {m1.name} should resolve {peer.name}'s {address} to the cluster MAC or fail",
            )
    ports = sorted(port for port, mac in lab.fdb() if mac == CLUSTER_MAC)
    if ports:
        print(f"\n  br0's MAC table (ovs-appctl fdb/show) holds the cluster MAC on port {ports[0]}, the member that")
        print("  sent last: a learning switch sends all the cluster's traffic to that one member.")
    lab.del_flows()
    lab.appctl("fdb/flush", BRIDGE)
    for host in members:
        lab.flush_neigh(host)
    print("\n  Removed the NORMAL flow, flushed br0's MAC table and the members' neighbour tables (both families).")


def wait_for_delivery_flows(lab: Lab, members: list[Host]) -> list[Flow]:
    """The app locates members by probing them; wait until each has its priority-200 delivery flow."""
    wanted = {dedicated_mac(m.ip) for m in members}
    deadline = time.monotonic() + FLOW_TIMEOUT
    while True:
        flows = lab.dump_flows(APP_COOKIES)
        missing = {mac for mac in wanted if not any(f.priority == 200 and mac in f.match for f in flows)}
        if not missing:
            return flows
        if time.monotonic() > deadline:
            tail = "\n".join(lab.controller_log().splitlines()[-15:])
            raise DemoError(
                f"the app installed no delivery flow for {', '.join(sorted(missing))} within {FLOW_TIMEOUT:.0f} s\n"
                f"controller log, last lines:\n{tail}"
            )
        time.sleep(0.5)


def purpose_of(flow: Flow) -> Purpose:
    return decode_cookie(flow.cookie).purpose


def print_flows(flows: list[Flow]) -> None:
    rows = [("cookie", "table", "prio", "purpose", "match", "actions", "packets")]
    for f in sorted(flows, key=lambda f: (f.table, -f.priority, f.cookie)):
        purpose = PURPOSES.get(purpose_of(f), "?")
        match = f.match or "(any)"
        rows.append((f"0x{f.cookie:016x}", str(f.table), str(f.priority), purpose, match, f.actions, str(f.n_packets)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    right = {1, 2, 6}  # numbers
    for row in rows:
        cells = [cell.rjust(w) if i in right else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths))]
        print(("  " + "  ".join(cells)).rstrip())
    print("  Table 0 masks a member's source MAC (see 4.) and goes on to table 1, which forwards.")
    print("  cookie 0x4e4c CCCC MMMM PP 00: 4e4c = nlbflow, CCCC = cluster id, MMMM = member id (the DIP's last")
    print("  two octets, 000b = .11), PP = purpose (01 normal fallback, 02 ARP to controller, 03 delivery to a member,")
    print("  04 cluster traffic to all members, 05 source masking, 06 table 0 to 1, 07 answers to the app's probes;")
    print("  in switch mode 0b a member's ARP recognised, 0c answered by the switch, 0d spread, 0e flooded;")
    print("  0f a member's Neighbor Discovery to the app, the last byte its ICMPv6 type: 85 RS, 86 RA, 87 NS, 88 NA)")


def show_fix(lab: Lab, members: list[Host], client: Host, args: argparse.Namespace, checks: Checks) -> None:
    """With the app, members reach each other through dedicated MACs; the outside still sees the cluster MAC."""
    heading(
        f"3. The fix: nlbflow on {args.runtime}, ARP mode {args.arp}",
        "Each member gets a dedicated MAC (02:de:<DIP>) that lives only in the switch and its peers' neighbour caches.",
    )
    # members without dpid/port: the app locates them itself
    config = write_config(lab, cluster_yaml(args.arp, tuple(m.addresses[0] for m in members), ipv6=True))
    print(f"  Config {config}:")
    print("".join(f"    {line}\n" for line in config.read_text().splitlines()), end="")
    lab.start_controller(args.runtime, config)
    lab.wait_connected()
    print("  The switch is connected; waiting for the app to locate every member ...", flush=True)
    wait_for_delivery_flows(lab, members)
    print("  Every member has its delivery flow.")

    print("\n  Member-to-member ping by DIP, with the app, IPv4 and IPv6:")
    for ipv6 in (False, True):
        results = ping_matrix(lab, members, count=2, ipv6=ipv6)
        family = "IPv6" if ipv6 else "IPv4"
        checks.check(all(results.values()), f"fix: every member should ping every peer's {family} DIP")

    src, dst = members[0], members[1]
    for port, address in ((7000, dst.ip), (7001, dst.ip6)):
        tcp_ok = lab.tcp_exchange(src, dst, address, port)
        shown = f"[{address}]" if ":" in address else address
        print(f"  TCP {src.name} -> {dst.name} {shown}:{port}, bytes both ways: {'ok' if tcp_ok else 'FAIL'}")
        checks.check(tcp_ok, f"fix: TCP from {src.name} to {dst.name} {address}")

    print("\n  Neighbour tables: members hold their peers' dedicated MACs (02:de:...), never the cluster MAC,")
    print("  for IPv4 (ARP) and IPv6 (Neighbor Discovery) alike: one dedicated MAC per member, whatever the address.")
    for member in members:
        for peer in members:
            if peer is member:
                continue
            for address in (peer.ip, peer.ip6):
                mac, _, row = neighbour_row(lab, member, address, members)
                print(f"    {row}")
                checks.check(
                    mac == dedicated_mac(peer.ip),
                    f"fix: {member.name} should hold {peer.name}'s dedicated MAC for {address}",
                )

    print("\n  The app's flows in br0 (ovs-ofctl dump-flows br0 cookie=" + APP_COOKIES + "):")
    print_flows(lab.dump_flows(APP_COOKIES))

    print("\n  The client still sees the cluster the usual way: the VIP and every DIP resolve to the cluster MAC")
    print(f"  (every member answers an ARP or a Neighbor Solicitation for the VIP). {client.name}'s neighbour tables,")
    print("  flushed, then after a ping:")
    lab.flush_neigh(client)
    m1 = members[0]
    targets = (
        ("the VIP", VIP),
        (f"{m1.name}'s DIP", m1.ip),
        ("the IPv6 VIP", CLUSTER_VIP6.split("/")[0]),
        (f"{m1.name}'s IPv6 DIP", m1.ip6),
    )
    for what, address in targets:
        pinged = lab.ping(client, address)
        mac, _, row = neighbour_row(lab, client, address, members)
        print(f"    {row:<66} ping {what}: {'ok' if pinged else 'FAIL'}")
        checks.check(pinged, f"fix: {client.name} should ping {what} {address}")
        checks.check(mac == CLUSTER_MAC, f"fix: {client.name} should resolve {what} {address} to the cluster MAC")

    handled = [line.strip() for line in lab.controller_log().splitlines() if " ARP " in line or " ND " in line]
    shown = f"{len(handled)} lines" + (", the first 20" if len(handled) > 20 else "")
    print(
        f"\n  Controller log, a line per ARP or ND frame that changed the app's flows, e.g. located a member ({shown}):"
    )
    for line in handled[:20]:
        print(f"    {line}")
    flows = lab.dump_flows(APP_COOKIES)
    if args.arp == "switch":
        answered = sum(f.n_packets for f in flows if purpose_of(f) == Purpose.ARP_ANSWER)
        print(f"\n  ARP answers the switch gave by its own flows (n_packets of the 0c flows): {answered}")
        checks.check(answered > 0, "fix: in switch mode the switch should have answered the members' ARP")
    nd_punted = sum(f.n_packets for f in flows if purpose_of(f) == Purpose.ND_PUNT)
    print(f"  Members' Neighbor Discovery frames the switch gave the app (n_packets of the 0f flows): {nd_punted}")
    print("  The app answers them, or relays them revised, with dedicated MACs as the link-layer addresses.")
    checks.check(nd_punted > 0, "fix: the members' Neighbor Discovery should have reached the app")


def show_load_balancing(lab: Lab, members: list[Host], client: Host, outsider: Host, checks: Checks) -> None:
    """Members that filter by hash serve every connection once, while they reach each other by DIP."""
    heading(
        "4. A load-balanced cluster",
        "Every member receives every client frame for the cluster MAC; NLB's filter keeps one. Linux has had no\n"
        "such filter since CLUSTERIP left the kernel in 6.3, so each member drops the clients' packets for the VIP\n"
        f"whose source address hashes to another member: nftables `jhash ip saddr mod {len(members)}`.",
    )
    m1, m2 = members[0], members[1]
    serve_load_balanced(lab, members, client)
    ruleset = lab.run(m1, "nft", "list", "ruleset").stdout
    others = ", ".join(f"{m.name} keeps hash {i}" for i, m in enumerate(members) if m is not m1)
    print(f"  {m1.name}'s ruleset, which keeps hash 0 (nft list ruleset; {others}):")
    print("".join(f"    {line.expandtabs(4)}\n" for line in ruleset.rstrip().splitlines()), end="")
    c1, o1, last = client.name, outsider.name, CLIENT_SOURCES[-1].rsplit(".", 1)[1]
    addresses = f"{len(CLIENT_SOURCES)} addresses, {CLIENT_SOURCES[0]} to .{last}"
    print(f"  Each member serves HTTP on {VIP}:{HTTP_PORT}, answering with its name; {c1} now has {addresses}.")
    print(f"\n  {c1} makes {HTTP_REQUESTS} HTTP requests to the VIP, a new connection each from its addresses in turn,")
    pinging = f"{m1.name} pings {m2.name} by DIP ({PEER_PINGS} pings)"
    print(f"  while {pinging} and {o1} captures any frame for the cluster MAC ...", flush=True)
    peer_pings: list[int] = []
    pinger = threading.Thread(target=lambda: peer_pings.append(lab.ping_replies(m1, m2.ip, PEER_PINGS, timeout=2)))
    with lab.capture(outsider, f"ether dst {CLUSTER_MAC}", direction="in") as outsider_view:
        pinger.start()
        try:
            results = lab.http_requests(client, VIP, HTTP_PORT, CLIENT_SOURCES, count=HTTP_REQUESTS)
        finally:
            pinger.join()

    answered = [r for r in results if r.get("status") == 200]
    errors = [r for r in results if "error" in r]
    served = collections.Counter(r["body"] for r in answered)
    spread = ", ".join(f"{m.name} {served[m.name]}" for m in members)
    print(f"  Served: {spread} ({len(answered)} of {HTTP_REQUESTS} answered 200 OK)")
    checks.check(len(answered) == HTTP_REQUESTS, f"load balancing: all {HTTP_REQUESTS} requests answered 200 OK")
    checks.check(all(served[m.name] for m in members), "load balancing: every member serves some requests")
    served_by: dict[str, set[str]] = collections.defaultdict(set)
    for r in answered:
        served_by[r["source"]].add(r["body"])
    print("  Client address -> member (the hash decides; the same member every time):")
    for m in members:
        mine = [source for source in CLIENT_SOURCES if served_by[source] == {m.name}]
        print(f"    {m.name}: {' '.join('.' + source.rsplit('.', 1)[1] for source in mine) or '(none)'}")
    checks.check(
        all(len(served_by[source]) == 1 for source in CLIENT_SOURCES),
        "load balancing: each client address is always served by the same one member",
    )
    print(f"  Errors (resets, timeouts: two members answered, or none): {len(errors)}")
    for r in errors[:5]:
        print(f"    from {r['source']}: {r['error']}")
    checks.check(not errors, "load balancing: no request should be reset or time out")

    got = peer_pings[0] if peer_pings else 0
    print(f"  {m1.name} -> {m2.name} by DIP during the burst: {got} of {PEER_PINGS} pings answered")
    checks.check(got == PEER_PINGS, f"load balancing: {m1.name} should reach {m2.name} during the burst")
    print(f"  Frames for the cluster MAC that reached {outsider.name} (not a member): {len(outsider_view.frames)}")
    checks.check(not outsider_view.frames, f"load balancing: {outsider.name} should see no cluster frame")

    names = {h.ofport: h.name for h in [*members, client, outsider]}
    fdb = sorted(lab.fdb())
    print(f"\n  br0's MAC table (ovs-appctl fdb/show {BRIDGE}):")
    for port, mac in fdb:
        note = "the cluster MAC!" if mac == CLUSTER_MAC else owner_of(mac, members) or f"{names.get(port, '?')}'s MAC"
        print(f"    port {port}  {mac}  {note}")
    print("  No cluster MAC: table 0 rewrites a member's source MAC to its dedicated MAC as its frames enter br0")
    print("  (source masking, NLB's MaskSourceMAC), so no switch learns the cluster MAC on one port.")
    checks.check(
        bool(fdb) and CLUSTER_MAC not in {mac for _, mac in fdb}, "load balancing: br0's MAC table has no cluster MAC"
    )


def show_fabric(args: argparse.Namespace, checks: Checks) -> None:
    """Members on two switches, joined by a plain learning switch: one app drives both OVS bridges."""
    heading(
        "6. Several switches",
        "Two OVS bridges, hv1 and hv2 (two hypervisors), each its own OpenFlow switch with its own connection\n"
        "to the one controller, and each with an uplink into a Linux bridge, an ordinary learning switch that\n"
        "also holds the client. Two members on each hypervisor:",
    )
    lab = Lab(dpid=None)
    try:
        with lab:
            fabric = build_topology_a(lab)
            print(f"  {'host':<5} {'role':<7} {'addresses':<28} {'MAC':<18} switch port")
            for host in [*fabric.members, fabric.client, *fabric.others]:
                role = "member" if host in fabric.members else "client" if host is fabric.client else "other"
                where = fabric.switch_of(host) or "lb (Linux bridge)"
                port = f"{where} {host.ofport}" if host.ofport is not None else where
                print(f"  {host.name:<5} {role:<7} {', '.join(host.addresses):<28} {host.mac:<18} {port}")
            for label in fabric.switches:
                print(f"  {label}'s uplink: port {fabric.uplink_port(label)} ({fabric.uplinks[label].ends[0].iface})")
            start_fabric(fabric, args.runtime, args.arp)
            print(f"\n  Config {fabric.config_path} (hv1's uplink by port name, hv2's by port number):")
            print("".join(f"    {line}\n" for line in fabric.config_path.read_text().splitlines()), end="")
            print("\n  The app located every member on its own switch (GET /nlb/status):")
            for label in fabric.switches:
                located = ", ".join(f"{ip} on port {port}" for ip, port in members_in_status(fabric, label))
                print(f"    {label}: {located}")

            print("\n  Member-to-member ping by DIP, across the switches and the Linux bridge:")
            results = ping_matrix(lab, fabric.members, count=2)
            checks.check(all(results.values()), "fabric: every member should ping every peer's DIP")
            print("\n  Neighbour tables: the peers' dedicated MACs, on this switch and on the other.")
            for member in fabric.members:
                table = lab.neigh(member)
                for peer in fabric.members:
                    if peer is member:
                        continue
                    entry = table.get(peer.ip)
                    mac, state = (entry.lladdr, entry.state) if entry else (None, "absent")
                    here = "same switch" if fabric.switch_of(peer) == fabric.switch_of(member) else "other switch"
                    note = f"{owner_of(mac, fabric.members)}, {here}"
                    print(f"    {member.name}: {peer.ip:<10} -> {mac or '(none)':<17}  {state:<10} {note}")
                    checks.check(
                        mac == dedicated_mac(peer.ip), f"fabric: {member.name} should hold {peer.name}'s dedicated MAC"
                    )
            client = fabric.client
            pinged = lab.ping(client, VIP)
            print(
                f"\n  {client.name} pings the VIP {VIP} (every member gets each request): {'ok' if pinged else 'FAIL'}"
            )
            checks.check(pinged, f"fabric: {client.name} should ping the VIP")
            learned = [e for e in lab.linux_fdb(fabric.linux_bridge) if not e.permanent]
            names = {fabric.uplinks[label].ends[1].iface: f"uplink of {label}" for label in fabric.switches}
            names.update({h.switch_iface: h.name for h in [client, *fabric.others]})
            print(f"\n  The Linux bridge's table (bridge fdb show br {fabric.linux_bridge}), learned entries:")
            for entry in sorted(learned, key=lambda e: (e.iface, e.mac)):
                port = names.get(entry.iface, "?")
                note = owner_of(entry.mac, fabric.members) or f"{port}'s MAC"
                print(f"    {entry.mac}  on {entry.iface:<12} ({port}): {note}")
            print("  Members' frames cross it with their dedicated MACs, so it never learns the cluster MAC and floods")
            print("  frames for it to both hypervisors, where each switch hands them to its own members only.")
            checks.check(
                bool(learned) and CLUSTER_MAC not in {e.mac for e in learned},
                "fabric: the Linux bridge should never learn the cluster MAC",
            )
    finally:
        leftovers = lab.leftovers()
        print(f"  Left behind: {', '.join(leftovers)}" if leftovers else "  Torn down the multi-switch lab.")
        checks.check(not leftovers, "teardown: the multi-switch lab should leave nothing behind")


def run(args: argparse.Namespace, checks: Checks) -> None:
    lab = Lab()
    try:
        with lab:
            heading("1. The lab", f"Switch br0 (userspace Open vSwitch) in namespace {lab.switch_netns}; hosts:")
            members, client = lab.add_typical_cluster(ipv6=True)
            outsider = lab.add_host("o1", OUTSIDER_MAC, [OUTSIDER_ADDRESS], ofport=client.ofport + 1)
            print(f"  {'host':<5} {'role':<7} {'addresses':<28} {'MAC':<18} switch port")
            for host in [*members, client, outsider]:
                role = "member" if host in members else "client" if host is client else "other"
                port = f"{host.ofport} ({host.switch_iface})"
                print(f"  {host.name:<5} {role:<7} {', '.join(host.addresses):<28} {host.mac:<18} {port}")
                if host.ipv6:
                    print(f"  {'':<13} {', '.join(host.ipv6)}")
            print(f"  Members are in unicast mode: NIC MAC = cluster MAC {CLUSTER_MAC}, VIPs {CLUSTER_VIP} and")
            print(
                f"  {CLUSTER_VIP6} on each. Their IPv6 link-local addresses are random (addrgenmode random): from one"
            )
            print("  shared MAC, EUI-64 would give every member the same one, and DAD would refuse it (docs/ipv6.md).")
            try:
                show_problem(lab, members, checks)
                show_fix(lab, members, client, args, checks)
                show_load_balancing(lab, members, client, outsider, checks)
            finally:
                heading("5. Teardown", "Stopping the controller and the switch, deleting the namespaces ...")
    finally:
        leftovers = lab.leftovers()
        if leftovers:
            print(f"  Left behind: {', '.join(leftovers)}")
        else:
            print(f"  Torn down: {len(lab.namespaces)} namespaces deleted, processes stopped, {lab.workdir} removed.")
        checks.check(not leftovers, "teardown: the lab should leave nothing behind")
    show_fabric(args, checks)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--runtime", choices=("osken", "ryu"), default="osken", help="controller framework")
    parser.add_argument(
        "--arp", choices=("switch", "proxy", "relay"), default="switch", help="how the app handles ARP (default switch)"
    )
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("demo: needs root (network namespaces and Open vSwitch)", file=sys.stderr)
        return 2
    checks = Checks()
    try:
        run(args, checks)
    except KeyboardInterrupt:
        print("\ndemo: interrupted")
        return 130
    except (LabError, DemoError) as error:
        print(f"\nERROR: {error}")
        checks.failed.append(f"demo stopped: {str(error).splitlines()[0]}")
    if checks.failed:
        count = f"{len(checks.failed)} check{'s' if len(checks.failed) > 1 else ''}"
        print(f"\ndemo: {count} failed: {'; '.join(checks.failed)}")
        return 1
    print(f"\ndemo: all {checks.count} checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
