"""A throw-away network lab: Open vSwitch bridges and hosts, each host in a network namespace of its own.

The lab exists so that lab tests see real Linux stacks (ARP cache, probes, TCP) behind a real switch.
Everything lives in namespaces the lab creates and deletes: a *switch namespace* holds a private
ovsdb-server and a userspace (`netdev`) ovs-vswitchd, the switch ends of the veths and the controller,
and every host gets a namespace with its veth end as `eth0`. No lab namespace has a default route, so
lab traffic cannot leave the lab. Teardown stops every process the lab started by its pid and deletes
its namespaces, even if setup failed halfway, the test raised or the process got SIGTERM.

By default the lab has one OVS bridge, br0. A multi-switch lab adds more OVS bridges to the same
ovs-vswitchd (each its own OpenFlow switch with its own dpid and controller connection), Linux bridges
(plain learning switches) and links between them; hosts attach to any of them.

The lab is IPv4 only: IPv6 is off in its namespaces so that captures hold no router solicitations.
Standard library and scapy only; runs under Python 3.9 (Ryu) and 3.11 (os-ken).
"""

from __future__ import annotations

import atexit
import json
import os
import queue
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import scapy.layers.inet  # noqa: F401 - registers Ether, ARP, IP, TCP and UDP, so that rdpcap dissects them
from scapy.packet import Packet
from scapy.utils import rdpcap

REPO_ROOT = Path(__file__).resolve().parent.parent
OVS_SCHEMA = Path("/usr/share/openvswitch/vswitch.ovsschema")
BRIDGE = "br0"
CONTROLLER_PORT = 6653
CONTROLLER_TARGET = f"tcp:127.0.0.1:{CONTROLLER_PORT}"
MANAGERS = {
    "osken": REPO_ROOT / ".venv" / "bin" / "osken-manager",
    "ryu": REPO_ROOT / ".venv-ryu" / "bin" / "ryu-manager",
}
DEFAULT_APP = "ryu_apps/nlbflow.py"

# The typical cluster of the lab tests (method.md): unicast mode, NIC MAC = cluster MAC on every member.
CLUSTER_MAC = "02:bf:0a:00:00:64"
CLUSTER_VIP = "10.0.0.100/32"
MEMBER_DIPS = ("10.0.0.11/24", "10.0.0.12/24", "10.0.0.13/24")
CLIENT_MAC = "02:00:0a:00:00:32"
CLIENT_ADDRESS = "10.0.0.50/24"
IPV6_PREFIX = "fd00:10::"  # the lab's IPv6 subnet, fd00:10::/64: a member's IPv6 DIP ends as its IPv4 DIP does
CLUSTER_VIP6 = IPV6_PREFIX + "100/128"
CLIENT_ADDRESS6 = IPV6_PREFIX + "50/64"

_NAME_RE = re.compile(r"^[a-z0-9]+$")
_IFNAMSIZ = 15
_OFCTL_STATS = re.compile(
    r"^(cookie|duration|table|n_packets|n_bytes|idle_timeout|hard_timeout|importance|idle_age|hard_age)="
)
_FLOW_FLAGS = ("send_flow_rem", "check_overlap", "reset_counts", "no_packet_counts", "no_byte_counts")

# Small programs run with sys.executable inside a namespace. Each ends by itself (signal.alarm) so that
# nothing outlives a lab even if teardown never ran.
_ECHO_SERVER = r"""
import signal, socket, sys, threading
proto, ip, port, lifetime = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
signal.alarm(lifetime)
kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
srv = socket.socket(socket.AF_INET6 if ":" in ip else socket.AF_INET, kind)
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((ip, port))
if proto == "udp":
    print("ready", flush=True)
    while True:
        data, peer = srv.recvfrom(65535)
        srv.sendto(data, peer)
srv.listen()
print("ready", flush=True)
def echo(conn):
    with conn:
        while True:
            data = conn.recv(65536)
            if not data:
                return
            conn.sendall(data)
while True:
    conn, _ = srv.accept()
    threading.Thread(target=echo, args=(conn,), daemon=True).start()
"""

_TCP_CLIENT = r"""
import signal, socket, sys
ip, port, source, lifetime, timeout = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), float(sys.argv[5])
signal.alarm(lifetime)
sock = socket.socket(socket.AF_INET6 if ":" in ip else socket.AF_INET)
sock.settimeout(timeout)
try:
    if source:
        sock.bind((source, 0))
    sock.connect((ip, port))
except OSError as exc:
    print("error", exc, flush=True)
    sys.exit(1)
print("connected", flush=True)
for line in sys.stdin:
    data = line.encode()
    got = b""
    try:
        sock.sendall(data)
        while len(got) < len(data):
            chunk = sock.recv(len(data) - len(got))
            if not chunk:
                raise OSError("connection closed by peer")
            got += chunk
    except OSError as exc:
        print("error", exc, flush=True)
        sys.exit(1)
    print("ok" if got == data else "mismatch", flush=True)
"""

_UDP_CLIENT = r"""
import socket, sys
ip, port, source, timeout = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
payload = sys.argv[5].encode()
sock = socket.socket(socket.AF_INET6 if ":" in ip else socket.AF_INET, socket.SOCK_DGRAM)
sock.settimeout(timeout)
if source:
    sock.bind((source, 0))
sock.sendto(payload, (ip, port))
try:
    sys.exit(0 if sock.recv(65535) == payload else 1)
except OSError:
    sys.exit(1)
"""

_SEND_FRAMES = r"""
import socket, sys, time
sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
sock.bind((sys.argv[1], 0))
interval = float(sys.argv[2])
for frame in sys.argv[3:]:
    sock.send(bytes.fromhex(frame))
    time.sleep(interval)
"""


_HTTP_SERVER = r"""
import signal, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
ip, port, name, lifetime = sys.argv[1], int(sys.argv[2]), sys.argv[3].encode(), int(sys.argv[4])
signal.alarm(lifetime)
class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", str(len(name)))
        self.end_headers()
        self.wfile.write(name)
    def log_message(self, *args):
        pass
server = ThreadingHTTPServer((ip, port), Handler)
server.daemon_threads = True
print("ready", flush=True)
server.serve_forever()
"""

_HTTP_CLIENT = r"""
import http.client, json, signal, sys
ip, port, count, timeout = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
sources = sys.argv[5].split(",")
signal.alarm(int(count * timeout) + 30)
results = []
for i in range(count):
    source = sources[i % len(sources)]
    conn = http.client.HTTPConnection(ip, port, timeout=timeout, source_address=(source, 0))
    try:
        conn.request("GET", "/")
        response = conn.getresponse()
        results.append({"source": source, "status": response.status, "body": response.read().decode()})
    except Exception as exc:
        results.append({"source": source, "error": f"{type(exc).__name__}: {exc}"})
    finally:
        conn.close()
print(json.dumps(results))
"""


LABS: list[Lab] = []  # every Lab built in this process, so that a test harness can check each left nothing


class LabError(RuntimeError):
    """A lab command failed; the message carries the command and its output."""


def ipv6_dip(dip: str) -> str:
    """The IPv6 DIP the lab gives a member: IPV6_PREFIX and the IPv4 DIP's last octet (10.0.0.11/24 -> fd00:10::11)."""
    return IPV6_PREFIX + dip.split("/")[0].rsplit(".", 1)[1]


@dataclass(frozen=True)
class Host:
    """A host namespace whose `eth0` is plugged into `bridge` (at `ofport`) through `switch_iface`."""

    name: str
    netns: str
    mac: str
    addresses: tuple[str, ...]  # "ip/prefix", in the order they were added
    ofport: int | None  # None on a Linux bridge, which numbers no ports
    switch_iface: str
    bridge: str = BRIDGE
    ipv6: tuple[str, ...] = ()  # "ip/prefix", IPv6 turned on only where there are some

    @property
    def ip(self) -> str:
        """The first address without its prefix: a member's DIP, a client's only address."""
        return self.addresses[0].split("/")[0]

    @property
    def ip6(self) -> str:
        """The first IPv6 address without its prefix: a member's IPv6 DIP (IndexError for an IPv4-only host)."""
        return self.ipv6[0].split("/")[0]


@dataclass(frozen=True)
class OvsBridge:
    """An OVS bridge of the lab: an OpenFlow switch of its own, connected to the lab's controller."""

    name: str
    dpid: int


@dataclass(frozen=True)
class LinkEnd:
    """One end of a link between two bridges: the interface (or patch port) on `bridge`."""

    bridge: str
    iface: str
    ofport: int | None  # None on a Linux bridge


@dataclass(frozen=True)
class Link:
    """A cable between two bridges of the switch namespace: a veth pair, or two OVS patch ports."""

    name: str
    kind: str  # "veth" or "patch"
    ends: tuple[LinkEnd, LinkEnd]

    def end_on(self, bridge: str) -> LinkEnd:
        """The link's end on `bridge`."""
        for end in self.ends:
            if end.bridge == bridge:
                return end
        raise LabError(f"link {self.name} has no end on {bridge}")


@dataclass(frozen=True)
class FdbEntry:
    """One entry of a Linux bridge's forwarding table (`bridge fdb show`): where it learned `mac`."""

    mac: str
    iface: str
    permanent: bool  # the bridge's own addresses and its ports' MACs, not learned from traffic


@dataclass(frozen=True)
class Flow:
    """One line of `ovs-ofctl dump-flows`, with the parts tests compare."""

    cookie: int
    table: int
    priority: int
    match: str
    actions: str
    n_packets: int
    n_bytes: int
    duration: float = 0.0  # seconds since the flow was added; a replaced flow starts again from 0


@dataclass(frozen=True)
class Neigh:
    """One IPv4 neighbour entry; `lladdr` is None while unresolved (INCOMPLETE, FAILED)."""

    ip: str
    lladdr: str | None
    state: str


@dataclass(frozen=True)
class ProcessRecord:
    """A process the lab started. The start time tells our process from a later one that reuses the pid."""

    pid: int
    start_time: str
    what: str

    @classmethod
    def of(cls, pid: int, what: str) -> ProcessRecord:
        stat = _proc_stat(pid)
        return cls(pid, stat[19] if stat else "", what)

    def alive(self) -> bool:
        """True while the process runs (a zombie counts as gone); never true for a reused pid."""
        stat = _proc_stat(self.pid)
        return stat is not None and stat[0] != "Z" and stat[19] == self.start_time


@dataclass
class Capture:
    """Frames seen by one tcpdump; `frames` is filled when the capture's with-block exits."""

    path: Path
    frames: list[Packet] = field(default_factory=list)
    dropped: int = 0  # frames the filter passed that tcpdump never got (its "dropped by kernel/interface")


class TcpSession:
    """A TCP connection held open across events: echo() sends a line and tells whether it came back.

    The client runs in the client's namespace and reads lines from its stdin; the echo server runs in the
    server's. After one failed echo the session is finished (the connection may hold stray bytes).
    """

    def __init__(self, server: subprocess.Popen, client: subprocess.Popen, timeout: float) -> None:
        self._server = server
        self._client = client
        self._timeout = timeout
        self._lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=_pump_lines, args=(client.stdout, self._lines), daemon=True).start()
        first = self._next_line(timeout + 2.0)
        self.connected = first == "connected"
        self.error = None if self.connected else first
        self._usable = self.connected

    def echo(self, message: str = "hello") -> bool:
        """Send `message` and return True if the same bytes come back within the session's timeout."""
        if "\n" in message:
            raise ValueError("an echo message is one line")
        if not self._usable:
            return False
        try:
            self._client.stdin.write(message + "\n")
            self._client.stdin.flush()
        except OSError as exc:
            self._usable, self.error = False, str(exc)
            return False
        answer = self._next_line(self._timeout + 2.0)
        if answer != "ok":
            self._usable, self.error = False, answer
        return self._usable

    def close(self) -> None:
        """Stop the client and the server, by pid."""
        _stop_process(self._client)
        _stop_process(self._server)

    def __enter__(self) -> TcpSession:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _next_line(self, timeout: float) -> str:
        try:
            return self._lines.get(timeout=timeout)
        except queue.Empty:
            return "timeout"


class Lab:
    """An OVS bridge (br0, OpenFlow 1.3, fail_mode secure) in a switch namespace, and hosts around it.

    Use as a context manager, or call close(). The bridge's controller is tcp:127.0.0.1:6653 inside the
    switch namespace from the start: adding or removing a bridge's first controller later makes OVS
    flush the bridge's flows. With `dpid=None` the lab starts without br0, for a multi-switch lab that
    names its bridges itself (add_ovs_bridge, add_linux_bridge, add_link).
    """

    def __init__(self, prefix: str | None = None, dpid: int | None = 1) -> None:
        self.prefix = prefix or _unused_prefix()
        if not _NAME_RE.match(self.prefix) or len(self.prefix) > 8:
            raise ValueError(f"lab prefix {self.prefix!r}: up to 8 lower-case letters and digits")
        LABS.append(self)
        self.dpid = dpid
        self.switch_netns = f"{self.prefix}-sw"
        self.hosts: dict[str, Host] = {}
        self.ovs_bridges: dict[str, OvsBridge] = {}
        self.linux_bridges: list[str] = []
        self.links: dict[str, Link] = {}
        self.namespaces: list[str] = []
        self.processes: list[ProcessRecord] = []
        self._popens: list[subprocess.Popen] = []
        self._controller: subprocess.Popen | None = None
        self._controller_args: tuple[str, str | None, tuple[str, ...], str] | None = None
        self._controller_log: Path | None = None
        self._controller_starts = 0
        self.closed = False
        self.workdir = Path(tempfile.mkdtemp(prefix=f"nlbflow-{self.prefix}-"))
        self._ovs_env = {**os.environ, "OVS_RUNDIR": str(self.workdir), "OVS_DBDIR": str(self.workdir)}
        self._ovs_env.update(OVS_LOGDIR=str(self.workdir), OVS_SYSCONFDIR=str(self.workdir))
        atexit.register(self.close)
        _exit_on_sigterm()
        try:
            self._start_switch()
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- building ---------------------------------------------------------------------------------

    def _start_switch(self) -> None:
        """ovsdb-server and a userspace ovs-vswitchd with a private run directory, as OVS's own tests do."""
        self._add_netns(None)
        db = self.workdir / "conf.db"
        self.run(None, "ovsdb-tool", "create", str(db), str(OVS_SCHEMA), env=self._ovs_env)
        remote = f"--remote=punix:{self.workdir / 'db.sock'}"
        self.run(None, "ovsdb-server", str(db), remote, "--pidfile", "--detach", "--log-file", env=self._ovs_env)
        self._record_pidfile("ovsdb-server")
        self.vsctl("--no-wait", "init")
        self.run(None, "ovs-vswitchd", "--disable-system", "--pidfile", "--detach", "--log-file", env=self._ovs_env)
        self._record_pidfile("ovs-vswitchd")
        if self.dpid is not None:
            self._add_ovs_bridge(BRIDGE, self.dpid)

    def _add_ovs_bridge(self, bridge: str, dpid: int) -> OvsBridge:
        if bridge in self.ovs_bridges or any(b.dpid == dpid for b in self.ovs_bridges.values()):
            raise ValueError(f"bridge {bridge!r} or dpid {dpid:016x} already in the lab")
        # Out-of-band: the controller is on loopback, never reached through a bridge.
        self.vsctl(
            *("add-br", bridge),
            *("--", "set", "bridge", bridge, "datapath_type=netdev", "protocols=OpenFlow13", "fail_mode=secure"),
            *("--", "set", "bridge", bridge, f"other-config:datapath-id={dpid:016x}"),
            *("--", "set-controller", bridge, CONTROLLER_TARGET),
            *("--", "set", "controller", bridge, "connection-mode=out-of-band"),
        )
        self.ovs_bridges[bridge] = OvsBridge(bridge, dpid)
        return self.ovs_bridges[bridge]

    def add_ovs_bridge(self, name: str, dpid: int) -> OvsBridge:
        """Another OVS bridge `<prefix><name>` in the lab's ovs-vswitchd: its own OpenFlow switch (`dpid`),
        set up as br0 is, with its own connection to the lab's controller."""
        return self._add_ovs_bridge(self._switch_name(name, "bridge"), dpid)

    def add_linux_bridge(self, name: str) -> str:
        """A Linux bridge `<prefix><name>` in the switch namespace: a plain learning switch; returns its name.

        No STP (ports forward at once, as on an edge switch) and no multicast snooping (multicast floods,
        as on a switch that knows no IGMP); MAC entries age after 300 s, the usual default.
        """
        bridge = self._switch_name(name, "bridge")
        if bridge in self.linux_bridges or bridge in self.ovs_bridges:
            raise ValueError(f"bridge {bridge!r} already in the lab")
        self.run(
            None,
            *("ip", "link", "add", bridge, "type", "bridge"),
            *("stp_state", "0", "mcast_snooping", "0", "ageing_time", "30000"),
        )
        self.run(None, "ip", "link", "set", bridge, "up")
        self.linux_bridges.append(bridge)
        return bridge

    def _switch_name(self, name: str, what: str, suffix: str = "") -> str:
        """`<prefix><name><suffix>`, checked: a name in the switch namespace must fit IFNAMSIZ."""
        full = self.prefix + name + suffix
        if not _NAME_RE.match(name) or len(full) > _IFNAMSIZ:
            raise ValueError(f"{what} name {name!r}: lower-case letters and digits, at most {_IFNAMSIZ} with prefix")
        return full

    def _record_pidfile(self, daemon: str) -> None:
        pid = int((self.workdir / f"{daemon}.pid").read_text().strip())
        self.processes.append(ProcessRecord.of(pid, daemon))

    def _add_netns(self, host: Host | None, ipv6: bool = False) -> None:
        """The host's (None: the switch's) namespace, loopback up, IPv6 off (no solicitations in captures)
        unless asked for. With IPv6, interfaces made later get random link-local addresses: members share one
        MAC, and EUI-64 would give them one link-local address, which DAD refuses (docs/ipv6.md)."""
        netns = self._netns(host)
        _host_cmd("ip", "netns", "add", netns)
        self.namespaces.append(netns)
        self.run(host, "ip", "link", "set", "lo", "up")
        if ipv6:
            self.run(
                host,
                *("sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=0", "net.ipv6.conf.default.disable_ipv6=0"),
                "net.ipv6.conf.default.addr_gen_mode=3",
            )
        elif Path("/proc/sys/net/ipv6").exists():
            self.run(
                host, "sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"
            )

    def add_host(
        self,
        name: str,
        mac: str,
        addresses: Sequence[str],
        ofport: int | None = None,
        bridge: str = BRIDGE,
        ipv6: Sequence[str] = (),
    ) -> Host:
        """A namespace `<prefix>-<name>` whose eth0 (`mac`, `addresses`) is plugged into `bridge`.

        On an OVS bridge the switch end is port `ofport` (None: the number OVS picks); on a Linux bridge
        `ofport` must be None. ipv6: IPv6 addresses ("fd00:10::11/64", "fd00:10::100/128 nodad"), which turn
        IPv6 on in the namespace; each passed DAD (or was added nodad) when this returns.
        """
        switch_iface = self._switch_name(name, "host")
        if name in self.hosts:
            raise ValueError(f"host {name!r} already in the lab")
        self._check_free_port(bridge, ofport)
        host = Host(
            name,
            f"{self.prefix}-{name}",
            mac.lower(),
            tuple(addresses),
            ofport,
            switch_iface,
            bridge,
            tuple(address.split()[0] for address in ipv6),
        )
        self._add_netns(host, ipv6=bool(ipv6))
        _host_cmd(
            *f"ip link add eth0 netns {host.netns} type veth peer name {switch_iface} netns {self.switch_netns}".split()
        )
        self.run(host, "ip", "link", "set", "eth0", "address", host.mac)
        if ipv6:
            self.run(host, "ip", "link", "set", "eth0", "addrgenmode", "random")  # while down
        for address in host.addresses:
            self.run(host, "ip", "addr", "add", address, "dev", "eth0")
        for address in ipv6:
            self.run(host, "ip", "addr", "add", *address.split(), "dev", "eth0")
        self.run(host, "ip", "link", "set", "eth0", "up")
        # Mandatory: with TX offload on, TCP through the userspace datapath hangs (method.md, lab facts).
        self.run(host, "ethtool", "-K", "eth0", "tx", "off")
        self.run(None, "ip", "link", "set", switch_iface, "up")
        host = replace(host, ofport=self._attach(switch_iface, bridge, ofport))
        self.hosts[name] = host
        if ipv6:
            self.wait_for_dad(host)
        return host

    def wait_for_dad(self, host: Host, timeout: float = 15.0) -> None:
        """Until no IPv6 address of the host is tentative; one whose DAD failed is a LabError."""
        deadline = time.monotonic() + timeout
        while True:
            failed = self.run(host, "ip", "-6", "addr", "show", "dev", "eth0", "dadfailed").stdout.strip()
            if failed:
                raise LabError(f"{host.name}: duplicate address detection failed:\n{failed}")
            if not self.run(host, "ip", "-6", "addr", "show", "dev", "eth0", "tentative").stdout.strip():
                return
            if time.monotonic() > deadline:
                raise LabError(f"{host.name}: IPv6 addresses still tentative after {timeout} s")
            time.sleep(0.2)

    def _check_free_port(self, bridge: str, ofport: int | None) -> None:
        """`bridge` is one of the lab's, and `ofport` (if any) is free on it (Linux bridges number nothing)."""
        if bridge in self.linux_bridges:
            if ofport is not None:
                raise ValueError(f"{bridge} is a Linux bridge: it has no OpenFlow port {ofport}")
            return
        if bridge not in self.ovs_bridges:
            raise ValueError(f"no bridge {bridge!r} in the lab")
        ends = [(h.bridge, h.ofport) for h in self.hosts.values()]
        ends += [(end.bridge, end.ofport) for link in self.links.values() for end in link.ends]
        if ofport is not None and (bridge, ofport) in ends:
            raise ValueError(f"ofport {ofport} of {bridge} already in use")

    def _attach(self, iface: str, bridge: str, ofport: int | None, detach: Sequence[str] = ()) -> int | None:
        """Make `iface` a port of `bridge`, after the `detach` vsctl commands (one transaction with the
        attach on OVS); returns its OpenFlow port number (None on a Linux bridge)."""
        if bridge in self.linux_bridges:
            if detach:
                self.vsctl(*detach)
            self.run(None, "ip", "link", "set", iface, "master", bridge)
            return None
        self.vsctl(*detach, *("--", "add-port", bridge, iface), *_port_request(iface, ofport))
        return self._ofport(iface, ofport)

    def _ofport(self, iface: str, wanted: int | None) -> int:
        """The OpenFlow port number OVS gave `iface`; it must be `wanted`, if that was asked for."""
        got = self.vsctl("get", "interface", iface, "ofport").strip()
        if not got.isdigit() or int(got) <= 0 or (wanted is not None and int(got) != wanted):
            raise LabError(f"{iface} got ofport {got}, not {wanted or 'a port number'}")
        return int(got)

    def move_host(self, host: Host, bridge: str, ofport: int | None = None) -> Host:
        """Move the switch end of the host's veth to `bridge` (port `ofport`), as a VM migration does:
        the host keeps its namespace, MAC, addresses and neighbour table. Returns the host as it is now
        (also in `hosts`)."""
        if bridge == host.bridge:
            raise ValueError(f"{host.name} is on {bridge} already")
        self._check_free_port(bridge, ofport)
        if host.bridge in self.linux_bridges:
            self.run(None, "ip", "link", "set", host.switch_iface, "nomaster")
            detach: tuple[str, ...] = ()
        else:
            detach = ("--", "del-port", host.bridge, host.switch_iface)
        moved = replace(host, bridge=bridge, ofport=self._attach(host.switch_iface, bridge, ofport, detach))
        self.hosts[host.name] = moved
        return moved

    def add_link(
        self,
        name: str,
        a: str,
        b: str,
        *,
        ofport_a: int | None = None,
        ofport_b: int | None = None,
        kind: str = "veth",
    ) -> Link:
        """A cable between bridges `a` and `b` (OVS or Linux): a veth pair `<prefix><name>a` on a and
        `<prefix><name>b` on b, or (`kind="patch"`, OVS bridges only) two OVS patch ports of those names."""
        iface_a, iface_b = self._switch_name(name, "link", "a"), self._switch_name(name, "link", "b")
        if name in self.links or a == b:
            raise ValueError(f"link {name!r} already in the lab, or a loop on {a}")
        self._check_free_port(a, ofport_a)
        self._check_free_port(b, ofport_b)
        if kind == "patch":
            if a not in self.ovs_bridges or b not in self.ovs_bridges:
                raise ValueError("patch ports join two OVS bridges")
            ends = self._add_patch_ports((LinkEnd(a, iface_a, ofport_a), LinkEnd(b, iface_b, ofport_b)))
            ports = [end.ofport for end in ends]
        elif kind == "veth":
            self.run(None, "ip", "link", "add", iface_a, "type", "veth", "peer", "name", iface_b)
            for iface in (iface_a, iface_b):
                # As on host ends: offloads would hand the userspace datapath frames it cannot send on.
                self.run(None, "ethtool", "-K", iface, "tx", "off")
                self.run(None, "ip", "link", "set", iface, "up")
            ports = [self._attach(iface_a, a, ofport_a), self._attach(iface_b, b, ofport_b)]
        else:
            raise ValueError(f"link kind {kind!r}: veth or patch")
        link = Link(name, kind, (LinkEnd(a, iface_a, ports[0]), LinkEnd(b, iface_b, ports[1])))
        self.links[name] = link
        return link

    def _add_patch_ports(self, ends: tuple[LinkEnd, LinkEnd]) -> tuple[LinkEnd, LinkEnd]:
        """Two OVS patch ports, each the other's peer, in one transaction (a patch port whose peer does not
        exist yet does not come up); returns the ends with the port numbers OVS gave them."""
        commands: list[str] = []
        for end, peer in zip(ends, reversed(ends)):
            commands += ["--", "add-port", end.bridge, end.iface, "--", "set", "interface", end.iface, "type=patch"]
            commands += [f"options:peer={peer.iface}"]
            commands += [f"ofport_request={end.ofport}"] if end.ofport is not None else []
        self.vsctl(*commands)
        first, second = (replace(end, ofport=self._ofport(end.iface, end.ofport)) for end in ends)
        return first, second

    def set_link(self, link: Link, up: bool) -> None:
        """Take a link down or up, as a cable pulled or plugged in. A veth pair: its b end goes down, so
        the a end loses its carrier (on an OVS bridge, the port's link goes down). Patch ports have no
        carrier and ignore `ovs-ofctl mod-port down`: both are deleted, and added again with the same
        names and port numbers."""
        if link.kind == "veth":
            self.run(None, "ip", "link", "set", link.ends[1].iface, "up" if up else "down")
        elif up:
            self._add_patch_ports(link.ends)
        else:
            self.vsctl(*(word for end in link.ends for word in ("--", "del-port", end.bridge, end.iface)))

    def renumber_link(self, link: Link, bridge: str, ofport: int) -> Link:
        """Give the link's end on `bridge` another OpenFlow port number (OVS deletes the port and adds it
        again under the new number, same name); returns the link as it is now (also in `links`)."""
        end = link.end_on(bridge)
        self._check_free_port(bridge, ofport)
        self.vsctl("set", "interface", end.iface, f"ofport_request={ofport}")
        moved = replace(end, ofport=self._ofport(end.iface, ofport))
        first, second = link.ends
        renumbered = replace(link, ends=(moved, second) if first == end else (first, moved))
        self.links[link.name] = renumbered
        return renumbered

    def add_member(
        self,
        name: str,
        dip: str,
        ofport: int | None,
        vip: str = CLUSTER_VIP,
        cluster_mac: str = CLUSTER_MAC,
        bridge: str = BRIDGE,
        ipv6: bool = False,
    ) -> Host:
        """An NLB member in unicast mode: NIC MAC = cluster MAC, DIP (with prefix) then VIP/32 on eth0.

        ipv6: dual-stack, with the IPv6 DIP ipv6_dip(dip)/64 and the VIP CLUSTER_VIP6 as well. The VIP is added
        nodad, as every member holds it, and preferred_lft 0, so that Linux never picks it as the source of its
        own connections: a peer drops a packet from its own VIP (docs/ipv6.md)."""
        v6 = [f"{ipv6_dip(dip)}/64", f"{CLUSTER_VIP6} nodad preferred_lft 0"] if ipv6 else []
        return self.add_host(name, cluster_mac, [dip, vip], ofport, bridge, ipv6=v6)

    def add_typical_cluster(self, ipv6: bool = False) -> tuple[list[Host], Host]:
        """Members m1..m3 (MEMBER_DIPS) on ofports 1..3 and client c1 (CLIENT_ADDRESS) on ofport 4;
        ipv6: dual-stack, the client with CLIENT_ADDRESS6 (add_member)."""
        members = [self.add_member(f"m{i}", dip, ofport=i, ipv6=ipv6) for i, dip in enumerate(MEMBER_DIPS, start=1)]
        client_v6 = [CLIENT_ADDRESS6] if ipv6 else []
        client = self.add_host("c1", CLIENT_MAC, [CLIENT_ADDRESS], ofport=len(members) + 1, ipv6=client_v6)
        return members, client

    # --- commands ---------------------------------------------------------------------------------

    def run(
        self,
        host: Host | None,
        *argv: str,
        check: bool = True,
        timeout: float = 30.0,
        env: dict[str, str] | None = None,
        stdin: str | None = None,
    ) -> subprocess.CompletedProcess:
        """Run `argv` in the host's namespace (None: the switch namespace) and return its output as text."""
        netns = self._netns(host)
        return _host_cmd("ip", "netns", "exec", netns, *argv, check=check, timeout=timeout, env=env, stdin=stdin)

    def _netns(self, host: Host | None) -> str:
        return self.switch_netns if host is None else host.netns

    def vsctl(self, *args: str) -> str:
        """`ovs-vsctl` against the lab's ovsdb-server; returns stdout."""
        return self.run(None, "ovs-vsctl", "--timeout=10", *args, env=self._ovs_env).stdout

    def ofctl(self, command: str, *args: str, check: bool = True, bridge: str = BRIDGE) -> str:
        """`ovs-ofctl -O OpenFlow13 <command> <bridge> <args>`; returns stdout."""
        return self.run(
            None, "ovs-ofctl", "-O", "OpenFlow13", command, bridge, *args, check=check, env=self._ovs_env
        ).stdout

    def appctl(self, *args: str) -> str:
        """`ovs-appctl <args>` (ovs-vswitchd unless `-t` says otherwise); returns stdout."""
        return self.run(None, "ovs-appctl", *args, env=self._ovs_env).stdout

    def add_flow(self, flow: str, bridge: str = BRIDGE) -> None:
        """Add one flow in ovs-ofctl syntax, e.g. "actions=NORMAL"."""
        self.ofctl("add-flow", flow, bridge=bridge)

    def del_flows(self, match: str = "", bridge: str = BRIDGE) -> None:
        """Delete the flows `match` selects (all of them by default)."""
        self.ofctl("del-flows", *([match] if match else []), bridge=bridge)

    def dump_flows(self, cookie_mask: str | None = None, table: int | None = None, bridge: str = BRIDGE) -> list[Flow]:
        """A bridge's flows, optionally only those whose cookie matches "0xC/0xM" or of one table."""
        selector = []
        if cookie_mask:
            selector.append(f"cookie={cookie_mask}")
        if table is not None:
            selector.append(f"table={table}")
        text = self.ofctl("dump-flows", *([",".join(selector)] if selector else []), bridge=bridge)
        return [parse_flow(line) for line in text.splitlines() if " actions=" in line]

    # --- hosts: reachability ----------------------------------------------------------------------

    def ping_replies(self, src: Host, dst_ip: str, count: int = 3, timeout: float = 1.0, interval: float = 0.2) -> int:
        """How many of `count` echo requests from `src` to `dst_ip` were answered (each waits `timeout` s)."""
        argv = f"ping -n -c {count} -i {interval} -W {timeout} {dst_ip}".split()
        out = self.run(src, *argv, check=False, timeout=count * (interval + timeout) + 10).stdout
        found = re.search(r"(\d+) received", out)
        return int(found.group(1)) if found else 0

    def ping(self, src: Host, dst_ip: str, count: int = 3, timeout: float = 1.0) -> bool:
        """True only if every one of `count` echo requests was answered."""
        return self.ping_replies(src, dst_ip, count, timeout) == count

    def tcp_session(
        self,
        client: Host,
        server: Host,
        server_ip: str,
        port: int,
        *,
        source_ip: str | None = None,
        timeout: float = 5.0,
        lifetime: int = 300,
    ) -> TcpSession:
        """Open a TCP connection from `client` to an echo server on `server_ip:port` in `server`.

        Check `.connected`; call `.echo()` whenever the test wants to know whether the connection still
        works, and `.close()` (or use it as a context manager) when done. Both ends exit by themselves
        after `lifetime` seconds.
        """
        srv = self._start_echo_server("tcp", server, server_ip, port, lifetime)
        cli = self._spawn(
            client.netns,
            [sys.executable, "-c", _TCP_CLIENT, server_ip, str(port), source_ip or "", str(lifetime), str(timeout)],
            "tcp client",
            stdin=subprocess.PIPE,
        )
        return TcpSession(srv, cli, timeout)

    def tcp_exchange(
        self,
        client: Host,
        server: Host,
        server_ip: str,
        port: int,
        *,
        source_ip: str | None = None,
        timeout: float = 5.0,
    ) -> bool:
        """True if a fresh TCP connection from `client` to `server_ip:port` carries bytes both ways."""
        with self.tcp_session(client, server, server_ip, port, source_ip=source_ip, timeout=timeout, lifetime=60) as s:
            return s.connected and s.echo("nlbflow")

    def udp_exchange(
        self,
        client: Host,
        server: Host,
        server_ip: str,
        port: int,
        *,
        source_ip: str | None = None,
        timeout: float = 3.0,
    ) -> bool:
        """True if one UDP datagram from `client` to `server_ip:port` is echoed back by `server`."""
        srv = self._start_echo_server("udp", server, server_ip, port, lifetime=60)
        try:
            argv = [sys.executable, "-c", _UDP_CLIENT, server_ip, str(port), source_ip or "", str(timeout), "nlbflow"]
            return self.run(client, *argv, check=False, timeout=timeout + 10).returncode == 0
        finally:
            _stop_process(srv)

    def _start_echo_server(self, proto: str, host: Host, ip: str, port: int, lifetime: int) -> subprocess.Popen:
        args = (proto, ip, str(port), str(lifetime))
        return self._start_server(host, _ECHO_SERVER, args, f"{proto} echo server", f"{ip}:{port}")

    def start_http_server(self, host: Host, ip: str, port: int, body: str, lifetime: int = 300) -> subprocess.Popen:
        """An HTTP server on ip:port in the host's namespace that answers every GET with `body`."""
        return self._start_server(
            host, _HTTP_SERVER, (ip, str(port), body, str(lifetime)), "http server", f"{ip}:{port}"
        )

    def _start_server(self, host: Host, program: str, args: Sequence[str], what: str, where: str) -> subprocess.Popen:
        """Start one of the small server programs and wait for its "ready" line."""
        proc = self._spawn(host.netns, [sys.executable, "-c", program, *args], what)
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=_pump_lines, args=(proc.stdout, lines), daemon=True).start()
        try:
            ready = lines.get(timeout=10)
        except queue.Empty:
            ready = "no answer"
        if ready != "ready":
            _stop_process(proc)
            raise LabError(f"{what} on {host.name} {where} did not start: {ready}")
        return proc

    def http_requests(
        self, client: Host, server_ip: str, port: int, source_ips: Sequence[str], count: int, timeout: float = 3.0
    ) -> list[dict]:
        """`count` HTTP GETs one after another, each a new connection from the next of `source_ips`.

        Each result is {"source", "status", "body"} or {"source", "error"} (a reset, a timeout, ...).
        """
        argv = [
            sys.executable,
            "-c",
            _HTTP_CLIENT,
            server_ip,
            str(port),
            str(count),
            str(timeout),
            ",".join(source_ips),
        ]
        return json.loads(self.run(client, *argv, timeout=count * timeout + 60).stdout)

    # --- hosts: packet filter ---------------------------------------------------------------------

    def nft(self, host: Host, ruleset: str) -> None:
        """Load an nftables ruleset (`nft -f` syntax) into the host's namespace."""
        self.run(host, "nft", "-f", "-", stdin=ruleset)

    # --- hosts: ARP and neighbours ----------------------------------------------------------------

    def neigh(self, host: Host) -> dict[str, Neigh]:
        """The host's IPv4 neighbour table on eth0, by IP."""
        entries = json.loads(self.run(host, "ip", "-j", "-4", "neigh", "show", "dev", "eth0").stdout or "[]")
        return {e["dst"]: Neigh(e["dst"], e.get("lladdr"), (e.get("state") or [""])[0]) for e in entries}

    def neigh6(self, host: Host) -> dict[str, Neigh]:
        """The host's IPv6 neighbour table on eth0, by address (routers' and link-local entries included)."""
        entries = json.loads(self.run(host, "ip", "-j", "-6", "neigh", "show", "dev", "eth0").stdout or "[]")
        return {e["dst"]: Neigh(e["dst"], e.get("lladdr"), (e.get("state") or [""])[0]) for e in entries}

    def flush_neigh(self, host: Host) -> None:
        """Forget every dynamic neighbour entry on eth0."""
        self.run(host, "ip", "neigh", "flush", "dev", "eth0")

    def set_neigh(self, host: Host, ip: str, mac: str, nud: str = "stale") -> None:
        """Create or overwrite a neighbour entry, e.g. to plant the cluster MAC for a peer."""
        self.run(host, "ip", "neigh", "replace", ip, "lladdr", mac, "dev", "eth0", "nud", nud)

    def set_neigh_stale(self, host: Host, ip: str) -> None:
        """Make an entry STALE, keeping its MAC, so the next packet to `ip` makes Linux probe it (unicast)."""
        entry = self.neigh(host).get(ip)
        if entry is None or entry.lladdr is None:
            raise LabError(f"{host.name} has no resolved neighbour entry for {ip}: {entry}")
        self.set_neigh(host, ip, entry.lladdr, "stale")

    def arping(
        self,
        host: Host,
        target_ip: str,
        *,
        count: int = 1,
        timeout: float = 2.0,
        target_mac: str | None = None,
        source_ip: str | None = None,
    ) -> list[str]:
        """ARP request(s) for `target_ip` from eth0; returns the MAC of each reply (empty: none came).

        `target_mac` sends the request unicast to that MAC (as Linux probes a stale entry); `source_ip`
        sets the sender IP (`arp_spa`).
        """
        argv = ["arping", "-i", "eth0", "-c", str(count), "-w", str(timeout)]
        argv += ["-t", target_mac] if target_mac else []
        argv += ["-S", source_ip] if source_ip else []
        out = self.run(host, *argv, target_ip, check=False, timeout=timeout + count + 10).stdout
        return re.findall(r"bytes from ([0-9a-f:]{17}) ", out)

    def gratuitous_arp(self, host: Host, ip: str, *, reply: bool = False, count: int = 1) -> None:
        """Broadcast a gratuitous ARP for `ip`: a request (`arp_spa` = `arp_tpa` = ip), or a reply with `reply`.

        Debian's arping (Thomas Habets' 2.x) puts ff:ff:ff:ff:ff:ff in `arp_tha` of both. `-S` is needed:
        left to itself it may pick the VIP as sender IP.
        """
        argv = ["arping", "-U", *(["-P"] if reply else []), "-S", ip, "-i", "eth0", "-c", str(count), "-w", "1", ip]
        self.run(host, *argv, check=False, timeout=count + 10)

    def dad_probe(self, host: Host, ip: str, timeout: float = 1.0) -> list[str]:
        """A duplicate-address probe (`arp_spa` 0.0.0.0, `arp_tpa` ip); returns the MACs that claimed `ip`."""
        out = self.run(
            host, "arping", "-0", "-i", "eth0", "-c", "1", "-w", str(timeout), ip, check=False, timeout=timeout + 10
        ).stdout
        return re.findall(r"bytes from ([0-9a-f:]{17}) ", out)

    def send_frames(self, host: Host, frames: Sequence[bytes], interval: float = 0.0) -> None:
        """Send raw Ethernet frames out of the host's eth0, e.g. ones built with scapy (`bytes(Ether()/ARP())`)."""
        self.run(host, sys.executable, "-c", _SEND_FRAMES, "eth0", str(interval), *(frame.hex() for frame in frames))

    # --- switch: ports and MAC table ---------------------------------------------------------------

    def set_switch_port(self, host: Host, up: bool) -> None:
        """Take the switch end of a host's veth down or up, as a cable pulled or plugged in."""
        self.run(None, "ip", "link", "set", host.switch_iface, "up" if up else "down")

    def port_tx_packets(self, host: Host) -> int:
        """Frames the host's OVS bridge has sent out of its port (ovs-ofctl dump-ports)."""
        out = self.ofctl("dump-ports", str(host.ofport), bridge=host.bridge)
        found = re.search(r"tx pkts=(\d+)", out)
        if found is None:
            raise LabError(f"no tx counter for port {host.ofport} in:\n{out}")
        return int(found.group(1))

    def fdb(self, bridge: str = BRIDGE) -> list[tuple[int, str]]:
        """OVS's MAC learning table (`ovs-appctl fdb/show <bridge>`) as (port, MAC) pairs."""
        rows = self.appctl("fdb/show", bridge).splitlines()[1:]
        return [(int(row.split()[0]), row.split()[2]) for row in rows if row.split() and row.split()[0].isdigit()]

    def linux_fdb(self, bridge: str) -> list[FdbEntry]:
        """A Linux bridge's forwarding table (`bridge fdb show br <bridge>`): the entries the bridge holds
        (learned, and its ports' own MACs), not the multicast lists of its ports' devices ("self")."""
        entries = json.loads(self.run(None, "bridge", "-j", "fdb", "show", "br", bridge).stdout or "[]")
        return [FdbEntry(e["mac"], e["ifname"], e.get("state") == "permanent") for e in entries if "master" in e]

    # --- capture ----------------------------------------------------------------------------------

    @contextmanager
    def capture(
        self,
        where: Host | str,
        bpf_filter: str = "",
        *,
        direction: str | None = None,
        settle: float = 0.3,
        buffer_kib: int | None = None,
    ) -> Iterator[Capture]:
        """Capture frames while the with-block runs; `.frames` holds them (scapy packets) afterwards.

        `where` is a host (its eth0) or the name of a switch-side interface such as `host.switch_iface`.
        `direction` is tcpdump's -Q ("in" or "out", seen from that interface). The capture is running
        when the block starts, and keeps running `settle` seconds after it ends for frames in flight.
        -Q is applied by libpcap after the kernel's filter: for a busy interface, say `inbound` in the
        filter instead, so the other direction never fills the kernel's buffer (`buffer_kib`, tcpdump's -B).
        `.dropped` counts the frames the filter passed that the capture lost (a busy machine, a small buffer).
        """
        netns, iface = (where.netns, "eth0") if isinstance(where, Host) else (self.switch_netns, where)
        cap = Capture(self.workdir / f"capture-{secrets.token_hex(4)}.pcap")
        errlog = cap.path.with_suffix(".err")
        # Immediate mode: otherwise frames wait in the kernel's ring for up to a second and are lost when
        # tcpdump is stopped. -Z root: tcpdump would drop privileges and then could not write the file.
        argv = ["tcpdump", "-n", "--immediate-mode", "-U", "-Z", "root", "-i", iface, "-w", str(cap.path)]
        argv += ["-Q", direction] if direction else []
        argv += ["-B", str(buffer_kib)] if buffer_kib else []
        argv += [bpf_filter] if bpf_filter else []
        with errlog.open("w") as err:
            proc = self._spawn(netns, argv, f"tcpdump on {iface}", stdout=subprocess.DEVNULL, stderr=err)
        deadline = time.monotonic() + 10
        while "listening on" not in errlog.read_text():
            if proc.poll() is not None or time.monotonic() > deadline:
                _stop_process(proc)
                raise LabError(f"tcpdump on {iface} in {netns} did not start: {errlog.read_text().strip()}")
            time.sleep(0.05)
        try:
            yield cap
        finally:
            time.sleep(settle)
            _stop_process(proc)
            if cap.path.exists() and cap.path.stat().st_size > 0:
                cap.frames = list(rdpcap(str(cap.path)))
            cap.dropped = sum(int(n) for n in re.findall(r"^(\d+) packets dropped by", errlog.read_text(), re.M))

    # --- controller -------------------------------------------------------------------------------

    def start_controller(
        self,
        runtime: str = "osken",
        config_path: str | os.PathLike | None = None,
        extra_args: Sequence[str] = (),
        app: str = DEFAULT_APP,
    ) -> subprocess.Popen:
        """Run osken-manager or ryu-manager with `app` in the switch namespace, listening on 127.0.0.1:6653.

        cwd is the repo root, NLBFLOW_CONFIG is `config_path` (if given), output goes to a log file
        (controller_log()). `extra_args` come before `app` (options, or more apps); `app` may also be a
        module name. Returns without waiting for the switch to connect: see wait_connected().
        """
        if self._controller is not None and self._controller.poll() is None:
            raise LabError("a controller is already running in this lab")
        if runtime not in MANAGERS:
            raise ValueError(f"runtime {runtime!r}: one of {', '.join(MANAGERS)}")
        manager = MANAGERS[runtime]
        if not manager.exists():
            raise LabError(f"{manager} is missing: run `make install`")
        env = dict(os.environ)
        if config_path is not None:
            env["NLBFLOW_CONFIG"] = str(config_path)
        argv = [
            *(str(manager), "--ofp-listen-host", "127.0.0.1", "--ofp-tcp-listen-port", str(CONTROLLER_PORT)),
            *extra_args,
            app,
        ]
        self._controller_starts += 1
        self._controller_log = self.workdir / f"controller-{self._controller_starts}.log"
        with self._controller_log.open("w") as log:
            self._controller = self._spawn(
                self.switch_netns,
                argv,
                f"controller {runtime}",
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=REPO_ROOT,
            )
        self._controller_args = (runtime, None if config_path is None else str(config_path), tuple(extra_args), app)
        return self._controller

    def stop_controller(self, kill9: bool = False) -> None:
        """Stop the controller by pid: SIGTERM (SIGKILL if it lingers), or SIGKILL at once with `kill9`."""
        if self._controller is not None:
            _stop_process(self._controller, kill9=kill9)

    def restart_controller(self, kill9: bool = False) -> subprocess.Popen:
        """Stop the controller and start it again with the same arguments (a fresh log file)."""
        if self._controller_args is None:
            raise LabError("no controller was started in this lab")
        self.stop_controller(kill9=kill9)
        runtime, config_path, extra_args, app = self._controller_args
        return self.start_controller(runtime, config_path, extra_args, app)

    def controller_connections(self) -> int:
        """How many TCP connections ovs-vswitchd holds to the controller port right now: one per OVS bridge
        that is connected. The sockets, not the Controller table: OVS refreshes `is_connected` there only
        every 5 s or so."""
        sockets = self.run(None, "ss", "-Htn", "state", "established", f"( dport = :{CONTROLLER_PORT} )").stdout
        return len(sockets.strip().splitlines())

    def controller_connected(self) -> bool:
        """Whether every OVS bridge of the lab is connected to the controller right now."""
        return self.controller_connections() >= max(len(self.ovs_bridges), 1)

    def wait_connected(self, timeout: float = 30.0) -> None:
        """Wait until every OVS bridge is connected to the controller; raise LabError (with the log) if not.

        OVS retries a lost controller after 1, 2, 4, then every 8 s, so a restart can take that long.
        """
        self._wait_connection(True, timeout)

    def wait_disconnected(self, timeout: float = 15.0) -> None:
        """Wait until every OVS bridge has noticed that its controller is gone."""
        self._wait_connection(False, timeout)

    def _wait_connection(self, connected: bool, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while (not self.controller_connected()) if connected else self.controller_connections() > 0:
            if connected and self._controller is not None and self._controller.poll() is not None:
                raise LabError(f"controller exited with {self._controller.returncode}:\n{self.controller_log()}")
            if time.monotonic() > deadline:
                state = "connect to" if connected else "lose"
                bridges = ", ".join(self.ovs_bridges) or "no bridge"
                raise LabError(f"{bridges} did not {state} the controller in {timeout} s:\n{self.controller_log()}")
            time.sleep(0.1)

    def controller_log(self) -> str:
        """The output of the controller started last (empty if none was)."""
        if self._controller_log is None or not self._controller_log.exists():
            return ""
        return self._controller_log.read_text(errors="replace")

    def ovs_log(self) -> str:
        """ovs-vswitchd's log, for failure messages."""
        path = self.workdir / "ovs-vswitchd.log"
        return path.read_text(errors="replace") if path.exists() else ""

    # --- processes and teardown -------------------------------------------------------------------

    def _spawn(
        self,
        netns: str,
        argv: Sequence[str],
        what: str,
        *,
        stdin: int | None = None,
        stdout: object = subprocess.PIPE,
        stderr: object = subprocess.DEVNULL,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> subprocess.Popen:
        """Start a long-running process in `netns` and record it, so that close() stops it by pid."""
        # `ip netns exec` execs the command, so the Popen pid is the command's own.
        proc = subprocess.Popen(
            ["ip", "netns", "exec", netns, *argv],
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            env=env,
            cwd=cwd,
            text=True,
            bufsize=1,
        )
        self._popens.append(proc)
        self.processes.append(ProcessRecord.of(proc.pid, what))
        return proc

    def close(self) -> None:
        """Stop every process the lab started (by pid), delete its namespaces and its temp dir.

        Every step runs even if an earlier one failed; the failures are raised together at the end.
        """
        if self.closed:
            return
        self.closed = True
        atexit.unregister(self.close)
        errors: list[str] = []

        def attempt(step: str, action: Callable[..., object], *args: object) -> None:
            try:
                action(*args)
            except Exception as exc:  # teardown must go on
                errors.append(f"{step}: {exc}")

        for proc in reversed(self._popens):
            attempt(f"stop pid {proc.pid}", _stop_process, proc)
        # The daemons detached from us: stop them through their recorded pid, switch before database.
        for record in reversed(self.processes):
            attempt(f"stop {record.what}", _terminate, record)
        # Anything still inside a lab namespace was started by the lab (e.g. a command whose `ip netns exec`
        # parent was killed by a timeout): stop it by pid, or the namespace would outlive its name.
        for netns in self.namespaces:
            attempt(f"sweep {netns}", self._sweep_netns, netns)
        for netns in reversed(self.namespaces):
            attempt(f"delete {netns}", _host_cmd, "ip", "netns", "delete", netns)
        attempt("remove workdir", shutil.rmtree, self.workdir)
        if errors:
            raise LabError(f"lab {self.prefix} teardown: " + "; ".join(errors))

    def _sweep_netns(self, netns: str) -> None:
        pids = _host_cmd("ip", "netns", "pids", netns, check=False).stdout.split()
        for pid in pids:
            record = ProcessRecord.of(int(pid), f"leftover in {netns}")
            self.processes.append(record)
            _terminate(record)

    def leftovers(self) -> list[str]:
        """What of this lab still exists: namespaces, root-namespace links, processes, the temp dir."""
        found = [f"namespace {name}" for name in list_netns() if name.startswith(f"{self.prefix}-")]
        links = [line.split(":")[1].strip() for line in _host_cmd("ip", "-o", "link", "show").stdout.splitlines()]
        found += [f"link {name}" for name in links if name.startswith(self.prefix)]
        found += [f"process {r.pid} ({r.what})" for r in self.processes if r.alive()]
        found += [f"directory {self.workdir}"] if self.workdir.exists() else []
        return found


def parse_flow(line: str) -> Flow:
    """Parse one `ovs-ofctl dump-flows` line (stats, then "priority=N,match", then " actions=...")."""
    head, actions = line.strip().split(" actions=", 1)
    stats: dict[str, str] = {}
    match = ""
    for item in head.rstrip(",").split(", "):
        if _OFCTL_STATS.match(item):
            key, value = item.split("=", 1)
            stats[key] = value
        else:
            match = item
    words = match.split(" ")
    match = " ".join(word for word in words if word not in _FLOW_FLAGS)
    priority = 32768  # OpenFlow's default, which ovs-ofctl does not print
    found = re.match(r"priority=(\d+),?", match)
    if found:
        priority, match = int(found.group(1)), match[found.end() :]
    return Flow(
        cookie=int(stats.get("cookie", "0"), 16),
        table=int(stats.get("table", "0")),
        priority=priority,
        match=match,
        actions=actions,
        n_packets=int(stats.get("n_packets", "0")),
        n_bytes=int(stats.get("n_bytes", "0")),
        duration=float(stats.get("duration", "0s").rstrip("s")),
    )


def _port_request(iface: str, ofport: int | None) -> tuple[str, ...]:
    """The vsctl command that asks OVS for a port number, if one is wanted."""
    return () if ofport is None else ("--", "set", "interface", iface, f"ofport_request={ofport}")


def list_netns() -> list[str]:
    """Names of all network namespaces (`ip netns list`)."""
    return [line.split()[0] for line in _host_cmd("ip", "netns", "list").stdout.splitlines() if line.strip()]


def _unused_prefix() -> str:
    """A short random prefix that no namespace on the machine uses yet (other labs may be running)."""
    taken = list_netns()
    while True:
        prefix = "nf" + secrets.token_hex(2)
        if not any(name.startswith(f"{prefix}-") for name in taken):
            return prefix


def _host_cmd(
    *argv: str, check: bool = True, timeout: float = 30.0, env: dict[str, str] | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess:
    """Run a command to completion; with `check`, a failure raises LabError showing its output."""
    try:
        done = subprocess.run(list(argv), input=stdin, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"timed out after {timeout} s: {' '.join(argv)}") from exc
    if check and done.returncode != 0:
        raise LabError(f"exit {done.returncode}: {' '.join(argv)}\n{done.stdout}{done.stderr}".rstrip())
    return done


def _proc_stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat from the state on (the command name may hold spaces), or None."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()


def _stop_process(proc: subprocess.Popen, kill9: bool = False, grace: float = 10.0) -> None:
    """Stop a child by its pid: SIGTERM (SIGKILL if it lingers past `grace`), or SIGKILL at once."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL if kill9 else signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(grace)
    if proc.stdin is not None:
        proc.stdin.close()  # output pipes are closed by the threads that read them (_pump_lines)


def _terminate(record: ProcessRecord, grace: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after `grace` seconds; only ever signals the very process recorded."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if not record.alive():
            return
        os.kill(record.pid, sig)
        deadline = time.monotonic() + grace
        while record.alive() and time.monotonic() < deadline:
            time.sleep(0.05)
    if record.alive():
        raise LabError(f"pid {record.pid} ({record.what}) survived SIGKILL")


def _pump_lines(pipe, lines: queue.Queue[str]) -> None:
    """Move a child's output lines to a queue, so that readers can wait with a timeout."""
    with pipe:
        for line in pipe:
            lines.put(line.strip())
    lines.put("eof")


def _exit_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit, so that with-blocks and atexit tear labs down; only if nobody else
    handles SIGTERM, and only from the main thread (where Python delivers signals)."""
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _raise_system_exit)


def _raise_system_exit(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)
