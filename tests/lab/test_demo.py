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
    problem, fix = demo.stdout.split("== 3. The fix", 1)
    fix = fix.split("== 4.", 1)[0]
    for family in ("IPv4", "IPv6"):  # the problem without the app, then the fix, in both families
        assert f"  {family}    to m1" in problem and f"  {family}    to m1" in fix, family
    assert "FAIL 0/1" in problem.split("  IPv6    to m1")[0]
    assert "FAIL 0/1" in problem.split("  IPv6    to m1")[1]
    assert "FAIL" not in fix
    assert "m1 -> m2 [fd00:10::12]:7001, bytes both ways: ok" in fix
    assert "m1: fd00:10::12  -> 02:de:0a:00:00:0c  REACHABLE  dedicated MAC of m2" in fix
    assert "c1: fd00:10::100 -> 02:bf:0a:00:00:64" in fix  # a client resolves the IPv6 VIP to the cluster MAC
    assert demo.stdout.rstrip().endswith("checks passed")
    assert set(list_netns()) <= before
