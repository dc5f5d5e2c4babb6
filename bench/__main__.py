"""Every benchmark in turn (`make bench`), each in a process of its own so that one lab's end never
touches the next; exits non-zero, naming them, if any benchmark failed (CI runs the short mode to prove
they still run; no figure is judged).

    python -m bench [--short] [--runtime osken|ryu] [--only NAME ...] [options of the chosen benchmarks]
    (as root; NLBFLOW_BENCH_SHORT=1 is --short)
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

# In the order they run. Every one takes --short; all but the OFFLINE ones take --runtime.
BENCHMARKS = ("storm", "arp", "switch_mode", "core", "readback", "throughput", "registration")
OFFLINE = frozenset({"core", "readback"})  # no controller (readback: the installed framework's parser): no --runtime


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], epilog="Other options go to every benchmark run."
    )
    parser.add_argument("--short", action="store_true", default=os.environ.get("NLBFLOW_BENCH_SHORT") == "1")
    parser.add_argument("--runtime", action="append", default=[])
    parser.add_argument("--only", action="append", choices=BENCHMARKS, help="run only this benchmark (repeatable)")
    args, rest = parser.parse_known_args(argv)
    failed = []
    for name in args.only or BENCHMARKS:
        runtimes = [] if name in OFFLINE else [f"--runtime={runtime}" for runtime in args.runtime]
        passed = (["--short"] if args.short else []) + runtimes + rest
        print(f"\n#### bench.{name} {' '.join(passed)}", flush=True)
        started = time.monotonic()
        code = subprocess.call([sys.executable, "-m", f"bench.{name}", *passed])
        outcome = "done" if code == 0 else f"FAILED (exit {code})"
        print(f"#### bench.{name}: {outcome} in {time.monotonic() - started:.0f} s", flush=True)
        if code != 0:
            failed.append(name)
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
