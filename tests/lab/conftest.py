"""Lab tests run real namespaces and Open vSwitch: they need root, OVS and `ip netns`.

Where those are missing the tests skip, unless NLBFLOW_REQUIRE_LAB=1 (CI) makes them fail instead, so a
CI machine that lost its lab cannot pass by skipping. Every lab test must leave nothing behind.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator

import pytest

from tests.netlab import LABS, Lab

REQUIRED_COMMANDS = (
    *("ovsdb-tool", "ovsdb-server", "ovs-vswitchd", "ovs-vsctl", "ovs-ofctl", "ovs-appctl"),
    *("ip", "ss", "ethtool", "tcpdump", "arping", "ping", "nft"),
)


def missing_lab_requirement() -> str | None:
    """Why this machine cannot run the lab, or None if it can."""
    if os.geteuid() != 0:
        return "lab tests need root"
    missing = [command for command in REQUIRED_COMMANDS if shutil.which(command) is None]
    if missing:
        return f"lab tests need {', '.join(missing)} (run `make install`)"
    if subprocess.run(["ip", "netns", "list"], capture_output=True).returncode != 0:
        return "lab tests need network namespaces (`ip netns list` failed)"
    return None


@pytest.fixture(scope="session")
def lab_available() -> None:
    reason = missing_lab_requirement()
    if reason is None:
        return
    if os.environ.get("NLBFLOW_REQUIRE_LAB") == "1":
        pytest.fail(f"NLBFLOW_REQUIRE_LAB=1 but {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(autouse=True)
def nothing_left_behind(lab_available: None) -> Iterator[None]:
    """Every lab a test builds must be closed by the test and leave no namespace, link, process or file.

    Checked per lab (by its prefix and pids), so labs of other test runs on the same machine do not count.
    """
    first = len(LABS)
    yield
    problems = []
    for lab in LABS[first:]:
        if not lab.closed:
            problems.append(f"lab {lab.prefix} was not closed")
            lab.close()
        problems += [f"lab {lab.prefix}: {item}" for item in lab.leftovers()]
    assert not problems, "; ".join(problems)


@pytest.fixture
def lab(lab_available: None) -> Iterator[Lab]:
    """A started lab (switch only: tests add their hosts), closed even if the test fails."""
    with Lab() as started:
        yield started
