"""Storms for the lab: one host sends a prebuilt frame at a paced rate, from its own namespace.

The sender is a few lines of Python (an AF_PACKET raw socket) run with sys.executable inside the host's
namespace. It ends by itself after its duration (signal.alarm), whatever happens to the test, and stop()
ends it earlier by its pid. It prints how many frames it sent.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from scapy.layers.l2 import ARP, Ether

from tests.netlab import Host, Lab

STORM_RATE = 10_000  # frames per second: four times what the controller answered flat out (issue 7)

# argv: interface, frames per second, seconds, frame as hex. Sends in small batches to keep the pace.
_STORM_SENDER = r"""
import signal, socket, sys, time
iface, rate, seconds, frame = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), bytes.fromhex(sys.argv[4])
def finish(signum, stack):
    raise SystemExit(0)
signal.signal(signal.SIGTERM, finish)
signal.signal(signal.SIGALRM, finish)
signal.alarm(seconds)
sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
sock.bind((iface, 0))
sent = 0
start = time.monotonic()
try:
    while True:
        due = int((time.monotonic() - start) * rate)
        while sent < due:
            try:
                sock.send(frame)
                sent += 1
            except OSError:  # the veth's queue is full: that frame is lost, as on a wire
                due -= 1
        time.sleep(0.0005)
finally:
    print(sent, flush=True)
"""


@dataclass
class Storm:
    """A running sender; stop() ends it by pid and returns how many frames it sent."""

    proc: subprocess.Popen
    started: float  # time.time() when it started, to compare with capture timestamps
    stopped: float | None = None  # time.time() when it was told to stop
    sent: int | None = None

    def stop(self) -> int:
        if self.sent is None:
            self.stopped = time.time()
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
            out, _ = self.proc.communicate(timeout=15)
            self.sent = int(out.strip() or 0)
        return self.sent


@contextmanager
def storm(lab: Lab, host: Host, frame: bytes, rate: int = STORM_RATE, seconds: int = 30) -> Iterator[Storm]:
    """Send `frame` out of the host's eth0 at `rate` frames/s while the block runs (at most `seconds`)."""
    argv = [sys.executable, "-c", _STORM_SENDER, "eth0", str(rate), str(seconds), frame.hex()]
    proc = lab._spawn(host.netns, argv, f"storm from {host.name}", stdout=subprocess.PIPE)
    running = Storm(proc, time.time())
    try:
        yield running
    finally:
        running.stop()


def arp_request(eth_src: str, sha: str, spa: str, tpa: str) -> bytes:
    """A broadcast ARP request, as bytes for the sender."""
    return bytes(Ether(src=eth_src, dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, hwsrc=sha, psrc=spa, pdst=tpa))
