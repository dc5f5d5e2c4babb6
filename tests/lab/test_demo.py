"""`make demo` is the main job a newcomer runs: it must pass, in both runtimes, and clean up."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.netlab import REPO_ROOT, list_netns


@pytest.mark.parametrize(("runtime", "arp"), [("osken", "switch"), ("ryu", "relay")])
def test_the_demo_reproduces_the_problem_shows_the_fix_and_leaves_nothing_behind(runtime, arp):
    before = set(list_netns())
    demo = subprocess.run(
        [sys.executable, "-m", "tests.demo", "--runtime", runtime, "--arp", arp],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "FAIL 0/1" in demo.stdout  # the problem, shown without the app
    assert demo.stdout.rstrip().endswith("checks passed")
    assert set(list_netns()) <= before
