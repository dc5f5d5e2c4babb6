"""Lab helpers for the control path: a flow table that refuses, a tap on what the controller sends, and
a switch connection cut in the middle of a change.

Everything acts on the lab's own OVS (private run directory, switch namespace) and on processes the lab
started, by pid.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

from tests.lab.appkit import ApiAnswer, api_call, saved_registry
from tests.netlab import BRIDGE, CONTROLLER_PORT, Lab


def limit_flow_table(lab: Lab, table_id: int, flow_limit: int) -> None:
    """Make `table_id` of br0 hold at most `flow_limit` flows and refuse more (OFPFMFC_TABLE_FULL)."""
    lab.vsctl(
        *("--", "--id=@t", "create", "Flow_Table", f"flow_limit={flow_limit}", "overflow_policy=refuse"),
        *("--", "set", "Bridge", BRIDGE, f"flow_tables:{table_id}=@t"),
    )


class Snoop:
    """`ovs-ofctl snoop br0`: every OpenFlow message between br0 and its controller, decoded, in a file.

    It attaches to the bridge's snoop socket in the lab's OVS_RUNDIR, so the switch reports what it
    received, whatever the controller believes it sent.
    """

    def __init__(self, lab: Lab) -> None:
        self.path = lab.workdir / "snoop.txt"
        with self.path.open("w") as out:
            self.process = lab._spawn(
                lab.switch_netns,
                ["ovs-ofctl", "-O", "OpenFlow13", "snoop", BRIDGE],
                "ovs-ofctl snoop",
                stdout=out,
                stderr=subprocess.STDOUT,
                env=lab._ovs_env,
            )
        wait_until(lambda: (lab.workdir / f"{BRIDGE}.snoop").exists(), "br0's snoop socket")
        time.sleep(0.5)  # let snoop connect before the controller does

    def text(self) -> str:
        return self.path.read_text(errors="replace")

    def flow_mods(self, containing: str = "") -> int:
        """How many flow-mods br0 received so far (only those whose decoded line contains `containing`).

        An OFPT_ERROR is followed by the start of the message it refused, decoded: that copy is no
        second flow-mod and is not counted.
        """
        lines = self.text().splitlines()
        return sum(
            1
            for previous, line in zip(["", *lines], lines)
            if "OFPT_FLOW_MOD" in line and containing in line and "OFPT_ERROR" not in previous
        )

    def errors(self) -> list[str]:
        return [line for line in self.text().splitlines() if "OFPT_ERROR" in line]


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not seen in {timeout} s")
        time.sleep(0.2)


def vswitchd_pid(lab: Lab) -> int:
    return int((lab.workdir / "ovs-vswitchd.pid").read_text().strip())


def pause_switch(lab: Lab) -> None:
    """Freeze ovs-vswitchd (SIGSTOP): it answers nothing, not even a barrier, until resume_switch()."""
    os.kill(vswitchd_pid(lab), signal.SIGSTOP)


def resume_switch(lab: Lab) -> None:
    os.kill(vswitchd_pid(lab), signal.SIGCONT)


def cut_controller_connection(lab: Lab) -> None:
    """Destroy both ends of br0's controller TCP connection (`ss -K`), as a broken link would; OVS then
    reconnects on its own (after 1 s, then backing off)."""
    lab.run(
        None, "ss", "-K", "-tn", "state", "established", f"( dport = :{CONTROLLER_PORT} or sport = :{CONTROLLER_PORT} )"
    )


def controller_sockets(lab: Lab) -> int:
    out = lab.run(None, "ss", "-Htn", "state", "established", f"( dport = :{CONTROLLER_PORT} )").stdout
    return len(out.strip().splitlines())


class BackgroundCall:
    """One REST request run in a thread, so a test can act on the switch while the request waits."""

    def __init__(self, lab: Lab, method: str, path: str, body: object = None) -> None:
        self.answer: ApiAnswer | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(lab, method, path, body), daemon=True)
        self.thread.start()

    def _run(self, lab: Lab, method: str, path: str, body: object) -> None:
        try:
            self.answer = api_call(lab, method, path, body)
        except BaseException as error:  # handed to the test by result()
            self.error = error

    def done(self) -> bool:
        return not self.thread.is_alive()

    def result(self, timeout: float = 60.0) -> ApiAnswer:
        self.thread.join(timeout)
        if self.error is not None:
            raise self.error
        assert self.answer is not None, "the REST request did not finish"
        return self.answer


def saved_member_ips(state_file: Path) -> list[str]:
    """The member IPs the controller's state file holds (it is written before a change is pushed)."""
    registry = saved_registry(state_file) if state_file.exists() else None
    return [member.ip for cluster in registry.clusters for member in cluster.members] if registry else []
