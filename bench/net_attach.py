"""Network attach cost per container: namespace file + veth pair (address, MAC, MTU, default route)
+ detach + namespace removal, on one bridge made for the run.

One run is the whole life of a container's network side as engine/net/links.py does it. The
pyroute2 import is paid once before timing (the supervisor imports it once). Prints median, p90 and
min in milliseconds, with the split into its four steps. Needs root; cleans up even when interrupted.
Usage: python bench/net_attach.py [--runs 50]
"""

from __future__ import annotations

import argparse
import itertools
import os
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.net import links

STEPS = ("create_netns", "attach", "detach", "delete_netns")


def one_run(workdir: str, bridge: str, tag: str, index: int) -> list[float]:
    """Seconds for each of the four steps of one container."""
    path = os.path.join(workdir, f"c{index}")
    veth = f"pycbv{tag}{index % 100:02d}"
    marks = [time.perf_counter()]
    links.create_netns(path)
    marks.append(time.perf_counter())
    try:
        links.attach(
            path, bridge, veth, "eth0", ["10.254.77.2/24"],
            mac="02:42:0a:fe:4d:02", mtu=1500, gateway="10.254.77.1",
        )  # fmt: skip
        marks.append(time.perf_counter())
        links.detach(veth)
        marks.append(time.perf_counter())
    finally:
        links.detach(veth)
        links.delete_netns(path)
    marks.append(time.perf_counter())
    return [b - a for a, b in itertools.pairwise(marks)]


def _ms(values: list[float]) -> str:
    ordered = sorted(values)
    p90 = ordered[int(len(ordered) * 0.9) - 1]
    return f"{statistics.median(ordered) * 1e3:7.2f} {p90 * 1e3:7.2f} {ordered[0] * 1e3:7.2f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("needs root", file=sys.stderr)
        return 2
    tag = secrets.token_hex(2)
    bridge = f"pyc-test-b{tag}"
    workdir = tempfile.mkdtemp(prefix="pyc-test-bench-net-")
    rows: list[list[float]] = []
    try:
        links.ensure_bridge(bridge, ["10.254.77.1/24"])
        one_run(workdir, bridge, tag, 0)  # warm-up: first netlink sockets, page cache
        rows = [one_run(workdir, bridge, tag, i) for i in range(args.runs)]
    finally:
        links.delete_bridge(bridge)
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"{'step':<14} {'median':>7} {'p90':>7} {'min':>7}   (ms, {args.runs} runs)")
    for i, step in enumerate(STEPS):
        print(f"{step:<14} {_ms([r[i] for r in rows])}")
    print(f"{'total':<14} {_ms([sum(r) for r in rows])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
