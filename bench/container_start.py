"""Container create+start latency: from the decision to start to the reaped exit of busybox /bin/true.

Each run is the whole sequence: prepare the container's directories and /etc files, fork into new
namespaces, overlay + /proc /sys /dev + pivot_root, security plan applied, exec /bin/true, reap, remove
the directories (and, with --cgroup, create the cgroup, add the pid, remove it). Prints median, p90 and
min in milliseconds. Needs root; the root filesystem is the busybox one the integration tests build.
Usage: python bench/container_start.py [--runs 50] [--cgroup]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "integration"))

from rootfs_fixture import busybox_rootfs

from engine.containers import spawn
from engine.containers.spec import ContainerSpec, Process
from engine.state.root import StateRoot

BENCH_PARENT = f"pyc-test-bench-{os.getpid()}"


def one_run(layer: str, root: StateRoot, index: int, use_cgroup: bool, null: int) -> float:
    """Seconds for one create+start+exit+teardown."""
    cid = f"pyc-test-bench-{os.getpid()}-{index}"
    spec = ContainerSpec(cid, cid, "sha256:bench", (layer,), Process(args=("/bin/true",)))
    started = time.perf_counter()
    group = None
    if use_cgroup:
        from engine.containers.cgroups import Cgroup

        group = Cgroup.create(cid, parent=BENCH_PARENT)
    try:
        pid = spawn.start(spec, root, stdio=(null, null, null), cgroup=group)
        code = spawn.wait(pid)
    finally:
        spawn.cleanup(root, cid)
        if group is not None:
            group.remove()
    elapsed = time.perf_counter() - started
    if code != 0:
        raise SystemExit(f"/bin/true exited {code}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--cgroup", action="store_true", help="create, join and remove a cgroup per run")
    args = parser.parse_args()
    layer = str(busybox_rootfs())
    null = os.open("/dev/null", os.O_RDWR)
    try:
        with tempfile.TemporaryDirectory(prefix="pyc-test-bench-") as tmp, StateRoot.open(Path(tmp)) as root:
            one_run(layer, root, -1, args.cgroup, null)  # warm-up (imports, page cache)
            times = [one_run(layer, root, i, args.cgroup, null) * 1000 for i in range(args.runs)]
    finally:
        if args.cgroup:
            from engine.containers.cgroups import remove_parent

            remove_parent(BENCH_PARENT)
    times.sort()
    p90 = times[int(len(times) * 0.9) - 1]
    label = "with cgroup" if args.cgroup else "no cgroup"
    print(
        f"container start ({label}), {args.runs} runs: median {statistics.median(times):.2f} ms, "
        f"p90 {p90:.2f} ms, min {times[0]:.2f} ms (target: median < 15 ms)"
    )


if __name__ == "__main__":
    main()
