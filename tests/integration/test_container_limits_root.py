"""Container-level proofs through ContainerManager and the real supervisor, with the busybox image:
OOM kill at mem_limit, pids_limit against a fork loop, cpus, read-only /proc/sys, Docker's default
capabilities minus cap_drop, a private PID namespace, and stats() reporting limits and pids.

Each test has its own state root and cgroup parent `pyc-test-<hex>`. Teardown (even on failure) shuts the
supervisor down, kills any keeper/daemon of this root that survived, removes every container (mounts,
cgroups, directories) and the cgroup parent.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.containers import cgroups, records
from engine.containers.manager import ContainerManager
from engine.containers.spec import ContainerSpec, Process, Resources, Security
from engine.errors import EngineError
from engine.state.root import StateRoot

pytestmark = pytest.mark.root

if os.geteuid() != 0:
    pytest.skip("needs root", allow_module_level=True)

IMAGE = "pyc-test/busybox:1"
MIB = 1024 * 1024
# Docker's default capability set (moby oci/caps/defaults.go), as bit numbers of linux/capability.h
DOCKER_DEFAULT_CAPS = {
    "CHOWN": 0,
    "DAC_OVERRIDE": 1,
    "FOWNER": 3,
    "FSETID": 4,
    "KILL": 5,
    "SETGID": 6,
    "SETUID": 7,
    "SETPCAP": 8,
    "NET_BIND_SERVICE": 10,
    "NET_RAW": 13,
    "SYS_CHROOT": 18,
    "MKNOD": 27,
    "AUDIT_WRITE": 29,
    "SETFCAP": 31,
}


def _supervisor_processes(root: Path) -> list[int]:
    """Keeper/supervisor processes of this state root (their argv names it; nobody else's matches)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                argv = Path(f"/proc/{entry}/cmdline").read_bytes()
                if str(root).encode() in argv and b"engine.supervise" in argv:
                    found.append(int(entry))
    return found


@pytest.fixture
def mgr(tmp_path: Path, rootfs_tar: bytes) -> Iterator[ContainerManager]:
    """A manager on a fresh state root with the busybox image; everything it made goes at teardown."""
    from engine.supervise import client

    root = StateRoot.open(tmp_path / "root")
    parent = "pyc-test-" + uuid.uuid4().hex[:10]
    m = ContainerManager(root, cgroup_parent=parent)
    try:
        m.images.import_rootfs(io.BytesIO(rootfs_tar), IMAGE)
        yield m
    finally:
        try:
            with contextlib.suppress(EngineError):
                client.shutdown(root, timeout=10)
        finally:
            for pid in _supervisor_processes(root.path):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            try:
                for record in records.list_all(root.db):
                    m.remove(record["id"], force=True, volumes=True)
            finally:
                cgroups.remove_parent(parent)
                root.close()


def _start(m: ContainerManager, *args: str, **kw: Any) -> str:
    """Create and start (through the supervisor) a busybox container running `args`; returns its id."""
    image = m.images.resolve(IMAGE)
    process = Process(args=args, env=(("PATH", "/bin"),))
    spec = ContainerSpec(
        id="",
        name="pyc-test-" + uuid.uuid4().hex[:8],
        image_id=image.id,
        layer_dirs=(),
        process=process,
        image=IMAGE,
        **kw,
    )
    record = m.create(spec)
    m.start(record["id"])
    return record["id"]


def _wait_for(predicate: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _exited(m: ContainerManager, cid: str) -> dict[str, Any]:
    return _wait_for(lambda: (r := m.get(cid))["state"] == "exited" and r, what="the container to exit")


def _output(m: ContainerManager, cid: str) -> list[str]:
    """The container's stdout lines, once it has exited (the log is complete then)."""
    _exited(m, cid)
    return [r.line.rstrip("\n") for r in m.logs(cid) if r.stream == "stdout"]


def test_memory_hog_is_oom_killed(mgr: ContainerManager) -> None:
    # dd's 128 MiB block buffer is written by the read from /dev/zero: far over the 32 MiB limit
    cid = _start(
        mgr, "dd", "if=/dev/zero", "of=/dev/null", "bs=128M", "count=1", resources=Resources(memory=32 * MIB)
    )
    record = _exited(mgr, cid)
    assert record["exit_code"] == 137
    state = mgr.inspect(cid)["State"]
    assert state["OOMKilled"] is True and state["ExitCode"] == 137


def test_small_process_under_the_memory_limit_is_not_oom_killed(mgr: ContainerManager) -> None:
    cid = _start(
        mgr, "dd", "if=/dev/zero", "of=/dev/null", "bs=1M", "count=4", resources=Resources(memory=32 * MIB)
    )
    record = _exited(mgr, cid)
    assert record["exit_code"] == 0 and mgr.inspect(cid)["State"]["OOMKilled"] is False


def test_fork_loop_stops_at_pids_limit_and_the_container_survives(mgr: ContainerManager) -> None:
    limit = 16
    cid = _start(mgr, "sleep", "1000", resources=Resources(pids_limit=limit))
    loop = "i=0; while [ $i -lt 200 ]; do sleep 1000 & i=$((i+1)); done"
    with open(os.devnull, "wb") as null:  # the shell dies with "can't fork" once the cgroup is full
        mgr.exec(cid, ["sh", "-c", loop], stdio=(null.fileno(), null.fileno(), null.fileno()))
    assert mgr.get(cid)["state"] == "running"
    pids = mgr.stats(cid, interval=0.1)["PIDs"]
    processes = mgr.top(cid)["Processes"]
    assert limit - 3 <= pids <= limit  # the loop really reached the limit, and not one past it
    assert len(processes) <= limit
    mgr.stop(cid, timeout=0.5)
    assert mgr.get(cid)["state"] == "exited"


def test_cpus_half_gives_about_half_a_core(mgr: ContainerManager) -> None:
    cid = _start(mgr, "sh", "-c", "while :; do :; done", resources=Resources(cpus=0.5))
    time.sleep(0.3)
    cpu = mgr.stats(cid, interval=2.0)["CPUPerc"]
    assert 20.0 <= cpu <= 62.0, cpu  # 50 % of one core; tolerant of a busy host, never a full core
    mgr.stop(cid, timeout=0.5)


def test_writes_to_proc_sys_fail(mgr: ContainerManager) -> None:
    script = (
        "echo pyc > /proc/sys/kernel/hostname 2>/dev/null && echo wrote || echo refused;"
        " grep ' /proc/sys ' /proc/mounts | cut -d' ' -f4 | cut -d, -f1"
    )
    cid = _start(mgr, "sh", "-c", script)
    assert _output(mgr, cid) == ["refused", "ro"]


def test_capeff_is_dockers_default_minus_cap_drop(mgr: ContainerManager) -> None:
    dropped = ("NET_RAW", "CHOWN")
    cid = _start(mgr, "grep", "^Cap", "/proc/self/status", security=Security(cap_drop=dropped))
    fields = dict(line.split(":\t") for line in _output(mgr, cid))
    expected = sum(1 << bit for name, bit in DOCKER_DEFAULT_CAPS.items() if name not in dropped)
    assert int(fields["CapEff"], 16) == expected == 0xA80425FB & ~((1 << 13) | (1 << 0))
    assert int(fields["CapBnd"], 16) == expected


def test_capeff_default_matches_docker(mgr: ContainerManager) -> None:
    cid = _start(mgr, "grep", "^CapEff", "/proc/self/status")
    assert _output(mgr, cid) == ["CapEff:\t00000000a80425fb"]  # what `docker run` shows


def test_the_container_sees_only_its_processes(mgr: ContainerManager) -> None:
    # `for` and `echo` are shell builtins: the shell (PID 1) is the only process to see
    cid = _start(mgr, "sh", "-c", "echo self=$$; for p in /proc/[0-9]*; do echo ${p#/proc/}; done")
    assert _output(mgr, cid) == ["self=1", "1"]


def test_stats_reports_the_memory_limit_and_pids(mgr: ContainerManager) -> None:
    cid = _start(
        mgr, "sh", "-c", "sleep 1000 & sleep 1000 & wait", resources=Resources(memory=64 * MIB, pids_limit=50)
    )
    _wait_for(lambda: mgr.stats(cid, interval=0.05)["PIDs"] == 3, what="three processes")
    row = mgr.stats(cid, interval=0.2)
    assert row["MemLimit"] == 64 * MIB and 0 < row["MemUsage"] < 64 * MIB
    assert row["MemPerc"] == pytest.approx(row["MemUsage"] / (64 * MIB) * 100, abs=0.01)
    assert row["PIDs"] == 3 and len(mgr.top(cid)["Processes"]) == 3
    mgr.stop(cid, timeout=0.5)
