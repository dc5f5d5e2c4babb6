"""A live demo of nlbflow for a newcomer: the problem on a plain learning switch, then the fix.

Run as root from the repo root: `python -m tests.demo [--runtime osken|ryu] [--arp proxy|relay]`
(`make demo` does it). Everything happens in a throw-away lab (tests/netlab.py): namespaces, a private
userspace Open vSwitch and the controller, all removed at the end, even on failure or Ctrl-C.
The exit code is 0 only if the problem was reproduced and every check of the fix passed.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from flows.addresses import dedicated_mac
from flows.cookies import Purpose, decode_cookie
from tests.lab.appkit import APP_COOKIES, VIP, cluster_yaml, write_config
from tests.netlab import CLUSTER_MAC, CLUSTER_VIP, Flow, Host, Lab, LabError

PURPOSES = {
    Purpose.NORMAL_FALLBACK: "normal fallback",
    Purpose.ARP_PUNT: "ARP to controller",
    Purpose.MEMBER_DELIVERY: "to a member",
    Purpose.CLUSTER_DELIVERY: "to all members",
}
FLOW_TIMEOUT = 30.0


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


def ping_matrix(lab: Lab, members: list[Host], count: int) -> dict[tuple[str, str], bool]:
    """Ping every peer's DIP from every member, printing one row per source as it completes."""
    print(("          " + "".join(f"to {m.name:<8}" for m in members)).rstrip())
    results: dict[tuple[str, str], bool] = {}
    for src in members:
        row = f"  from {src.name:<3} "
        for dst in members:
            if dst is src:
                row += f"{'-':<11}"
                continue
            got = lab.ping_replies(src, dst.ip, count=count)
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


def show_problem(lab: Lab, members: list[Host], checks: Checks) -> None:
    """Without the app, br0 is a plain learning switch: members cannot reach each other by DIP."""
    heading(
        "2. The problem: a plain learning switch (flow actions=NORMAL, no controller)",
        "Every member's NIC carries the cluster MAC, so a member resolves a peer's DIP to its own MAC or not at all.",
    )
    lab.add_flow("actions=NORMAL")
    results = ping_matrix(lab, members, count=1)
    checks.check(not any(results.values()), "problem: member-to-member pings should all fail without the app")
    m1 = members[0]
    table = lab.neigh(m1)
    print(f"\n  {m1.name}'s neighbour table (ip neigh) for its peers:")
    for peer in members[1:]:
        entry = table.get(peer.ip)
        mac, state = (entry.lladdr, entry.state) if entry else (None, "absent")
        print(f"    {peer.ip:<10} -> {mac or '(none)':<17}  {state:<10} {owner_of(mac, members)}".rstrip())
        checks.check(
            entry is not None and (mac == CLUSTER_MAC or state in {"FAILED", "INCOMPLETE"}),
            f"problem: {m1.name} should resolve {peer.name} to the cluster MAC or fail",
        )
    lab.del_flows()
    for host in members:
        lab.flush_neigh(host)
    print("\n  Removed the NORMAL flow and flushed the members' neighbour tables.")


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


def print_flows(flows: list[Flow]) -> None:
    print(f"  {'cookie':<18}  {'purpose':<17}  {'prio':>4}  {'match':<30}  {'actions':<44}  packets")
    for f in sorted(flows, key=lambda f: (-f.priority, f.cookie)):
        purpose = PURPOSES.get(decode_cookie(f.cookie).purpose, "?")
        print(
            f"  0x{f.cookie:016x}  {purpose:<17}  {f.priority:>4}  {f.match or '(any)':<30}  {f.actions:<44}"
            f"  {f.n_packets}"
        )
    print("  cookie 0x4e4c CCCC MMMM PP 00: 4e4c = nlbflow, CCCC = cluster id, MMMM = member id (the DIP's last")
    print("  two octets, 000b = .11), PP = purpose (01 normal fallback, 02 ARP to controller, 03 delivery to a member,")
    print("  04 cluster traffic to all members)")


def show_fix(lab: Lab, members: list[Host], client: Host, args: argparse.Namespace, checks: Checks) -> None:
    """With the app, members reach each other through dedicated MACs; the outside still sees the cluster MAC."""
    heading(
        f"3. The fix: nlbflow on {args.runtime}, ARP mode {args.arp}",
        "Each member gets a dedicated MAC (02:de:<DIP>) that exists only in the switch and its peers' ARP caches.",
    )
    # members without dpid/port: the app locates them itself
    config = write_config(lab, cluster_yaml(args.arp, tuple(m.addresses[0] for m in members)))
    print(f"  Config {config}:")
    print("".join(f"    {line}\n" for line in config.read_text().splitlines()), end="")
    lab.start_controller(args.runtime, config)
    lab.wait_connected()
    print("  The switch is connected; waiting for the app to locate every member ...", flush=True)
    wait_for_delivery_flows(lab, members)
    print("  Every member has its delivery flow.")

    print("\n  Member-to-member ping by DIP, with the app:")
    results = ping_matrix(lab, members, count=2)
    checks.check(all(results.values()), "fix: every member should ping every peer's DIP")

    src, dst = members[0], members[1]
    tcp_ok = lab.tcp_exchange(src, dst, dst.ip, 7000)
    print(f"\n  TCP {src.name} -> {dst.name} {dst.ip}:7000, bytes both ways: {'ok' if tcp_ok else 'FAIL'}")
    checks.check(tcp_ok, f"fix: TCP from {src.name} to {dst.name}")

    print("\n  Neighbour tables: members hold their peers' dedicated MACs (02:de:...), never the cluster MAC.")
    for member in members:
        table = lab.neigh(member)
        for peer in members:
            if peer is member:
                continue
            entry = table.get(peer.ip)
            mac, state = (entry.lladdr, entry.state) if entry else (None, "absent")
            print(f"    {member.name}: {peer.ip:<10} -> {mac or '(none)':<17}  {state:<10} {owner_of(mac, members)}")
            checks.check(mac == dedicated_mac(peer.ip), f"fix: {member.name} should hold {peer.name}'s dedicated MAC")

    print("\n  The app's flows in br0 (ovs-ofctl dump-flows br0 cookie=" + APP_COOKIES + "):")
    print_flows(lab.dump_flows(APP_COOKIES))

    print("\n  The client still sees the cluster the usual way: VIP and DIPs resolve to the cluster MAC")
    print("  (every member answers an ARP for the VIP, each with the cluster MAC).")
    for what, ip in (("the VIP", VIP), (f"{members[0].name}'s DIP", members[0].ip)):
        pinged = lab.ping(client, ip)
        macs = lab.arping(client, ip, count=1)
        shown = ", ".join(sorted(set(macs))) or "no reply"
        print(
            f"    {client.name} -> {what} {ip}: ping {'ok' if pinged else 'FAIL'}; ARP replies: {shown} ({len(macs)})"
        )
        checks.check(pinged, f"fix: {client.name} should ping {ip}")
        checks.check(bool(macs) and set(macs) == {CLUSTER_MAC}, f"fix: {ip} should resolve to the cluster MAC")

    arp_lines = [line.strip() for line in lab.controller_log().splitlines() if "ARP" in line]
    shown = f"{len(arp_lines)} lines" + (", the first 20" if len(arp_lines) > 20 else "")
    print(f"\n  Controller log, one line per ARP the app handled ({shown}):")
    for line in arp_lines[:20]:
        print(f"    {line}")


def run(args: argparse.Namespace, checks: Checks) -> None:
    lab = Lab()
    try:
        with lab:
            heading("1. The lab", f"Switch br0 (userspace Open vSwitch) in namespace {lab.switch_netns}; hosts:")
            members, client = lab.add_typical_cluster()
            print(f"  {'host':<5} {'role':<7} {'addresses':<28} {'MAC':<18} switch port")
            for host in [*members, client]:
                role = "member" if host in members else "client"
                port = f"{host.ofport} ({host.switch_iface})"
                print(f"  {host.name:<5} {role:<7} {', '.join(host.addresses):<28} {host.mac:<18} {port}")
            print(f"  Members are in unicast mode: NIC MAC = cluster MAC {CLUSTER_MAC}, VIP {CLUSTER_VIP} on each.")
            try:
                show_problem(lab, members, checks)
                show_fix(lab, members, client, args, checks)
            finally:
                heading("4. Teardown", "Stopping the controller and the switch, deleting the namespaces ...")
    finally:
        leftovers = lab.leftovers()
        if leftovers:
            print(f"  Left behind: {', '.join(leftovers)}")
        else:
            print(f"  Torn down: {len(lab.namespaces)} namespaces deleted, processes stopped, {lab.workdir} removed.")
        checks.check(not leftovers, "teardown: the lab should leave nothing behind")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--runtime", choices=("osken", "ryu"), default="osken", help="controller framework")
    parser.add_argument("--arp", choices=("proxy", "relay"), default="proxy", help="how the app handles ARP")
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
