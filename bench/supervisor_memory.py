"""Bench: memory of supervising N containers from ONE asyncio process, and the alternatives.

PROTOTYPE, used only by this bench: the supervisor below is a stand-in shaped like the real one
(engine/supervise/DESIGN.md): it holds each child's stdout/stderr pipe, reads it line by line into a
json-file style log written with unbuffered fds, waits for exits on pidfds and keeps a per-container
record plus one timer (the health probe slot). It is NOT the engine's supervisor.

Measured (PSS from /proc/<pid>/smaps_rollup, fresh interpreters, never forked from this process):
- the supervisor with N=0 and N=n children -> added PSS per container;
- the same code as one process per container (k processes, one child each) -> PSS per container;
- a bare "keeper" (holds 2 pipe read ends and a pidfd per container, nothing else) with N=0 and N=n;
- two kernel facts the design relies on: a pipe's read end can be re-acquired by opening
  /proc/<pid>/fd/<n> of the writer, and with pidfd_getfd(2) from a holder process.

Run as root or not: `.venv/bin/python bench/supervisor_memory.py [--n 100] [--k 10] [--repeat 3]`.
Everything it starts is killed and reaped before it exits, even on error.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time

CHILD = ["/bin/sh", "-c", "echo started; echo warming >&2; exec sleep 3600"]
SYS_PIDFD_GETFD = 438  # x86_64 and aarch64 share the number


def _supervisor_role(n: int, logdir: str) -> None:
    """PROTOTYPE supervisor: spawn n children, hold their pipes, log their lines, wait on pidfds."""
    import asyncio
    import collections

    class Watched:
        __slots__ = ("err", "exit_status", "health", "log", "out", "partial", "pid", "pidfd", "timer")

    async def main() -> None:
        loop = asyncio.get_running_loop()
        watched: dict[int, Watched] = {}

        def on_line(w: Watched, stream: str, data: bytes) -> None:
            rec = {"log": data.decode("utf-8", "replace"), "stream": stream, "time": time.time()}
            os.write(w.log, (json.dumps(rec) + "\n").encode())

        def on_output(w: Watched, fd: int, stream: str) -> None:
            chunk = os.read(fd, 65536)
            if not chunk:
                loop.remove_reader(fd)
                return
            buf = w.partial + chunk
            *lines, w.partial = buf.split(b"\n")
            for line in lines:
                on_line(w, stream, line + b"\n")

        def on_exit(w: Watched) -> None:
            loop.remove_reader(w.pidfd)
            w.exit_status = os.waitid(os.P_PIDFD, w.pidfd, os.WEXITED)

        def probe_slot(w: Watched) -> None:
            """A health probe slot: the timer plus the 5 last results docker keeps (short outputs)."""
            w.timer = loop.call_later(30.0, probe_slot, w)
            now = time.time()
            w.health.append((now, now + 0.01, 0, "ok " * 60))

        for i in range(n):
            out_r, out_w = os.pipe2(os.O_CLOEXEC)
            err_r, err_w = os.pipe2(os.O_CLOEXEC)
            actions = [(os.POSIX_SPAWN_DUP2, out_w, 1), (os.POSIX_SPAWN_DUP2, err_w, 2)]
            pid = os.posix_spawn(CHILD[0], CHILD, {}, file_actions=actions)
            os.close(out_w)
            os.close(err_w)
            w = Watched()
            w.pid, w.out, w.err, w.partial, w.exit_status = pid, out_r, err_r, b"", None
            w.health = collections.deque(maxlen=5)
            w.pidfd = os.pidfd_open(pid)
            flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC
            w.log = os.open(os.path.join(logdir, f"c{i}.log"), flags, 0o600)
            loop.add_reader(out_r, on_output, w, out_r, "stdout")
            loop.add_reader(err_r, on_output, w, err_r, "stderr")
            loop.add_reader(w.pidfd, on_exit, w)
            for _ in range(5):
                probe_slot(w)
                w.timer.cancel()
            probe_slot(w)
            watched[pid] = w
        await asyncio.sleep(0.5)  # let every child print its two lines
        import gc

        gc.collect()
        print(json.dumps({"ready": True, "children": sorted(watched)}), flush=True)
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        for w in watched.values():
            loop.remove_reader(w.pidfd)
            os.kill(w.pid, signal.SIGKILL)
        for w in watched.values():
            if w.exit_status is None:
                os.waitid(os.P_PIDFD, w.pidfd, os.WEXITED)

    asyncio.run(main())


def _keeper_role(n: int) -> None:
    """A bare holder: 2 pipe read ends and a pidfd per child, no event loop, no reading."""
    kept: list[tuple[int, int, int, int]] = []
    for _ in range(n):
        out_r, out_w = os.pipe2(os.O_CLOEXEC)
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        actions = [(os.POSIX_SPAWN_DUP2, out_w, 1), (os.POSIX_SPAWN_DUP2, err_w, 2)]
        pid = os.posix_spawn(CHILD[0], CHILD, {}, file_actions=actions)
        os.close(out_w)
        os.close(err_w)
        kept.append((pid, os.pidfd_open(pid), out_r, err_r))
    print(json.dumps({"ready": True, "children": [k[0] for k in kept]}), flush=True)
    signal.sigwait({signal.SIGTERM})
    for pid, *_ in kept:
        os.kill(pid, signal.SIGKILL)
    for pid, *_ in kept:
        os.waitpid(pid, 0)


def smaps_rollup(pid: int) -> dict[str, int]:
    """Pss/Rss/Private_* of a process, in kB."""
    fields: dict[str, int] = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3 and parts[2] == "kB":
                fields[parts[0].rstrip(":")] = int(parts[1])
    return fields


class Role:
    """A fresh interpreter running one role; killed with its children on exit."""

    def __init__(self, role: str, n: int) -> None:
        self.logdir = tempfile.mkdtemp(prefix="pyc-bench-")
        cmd = [sys.executable, "-I", os.path.abspath(__file__), "--role", role, "--n", str(n)]
        cmd += ["--logdir", self.logdir]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, start_new_session=True)
        self.children: list[int] = []

    def __enter__(self) -> Role:
        line = self.proc.stdout.readline() if self.proc.stdout else b""
        if not line:
            raise RuntimeError(f"role exited early: {self.proc.wait()}")
        self.children = json.loads(line)["children"]
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)  # the role leads its own session/group
            self.proc.wait()
        finally:
            for pid in self.children:  # belt and braces: nothing may survive the bench
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            for name in os.listdir(self.logdir):
                os.unlink(os.path.join(self.logdir, name))
            os.rmdir(self.logdir)


def measure(role: str, n: int) -> dict[str, int]:
    """smaps_rollup of one role process running n children, once they are all up."""
    with Role(role, n) as r:
        time.sleep(0.2)
        return smaps_rollup(r.proc.pid)


def measure_per_process(k: int) -> dict[str, int]:
    """Sum of k one-child supervisors: the cost of a Python process per container."""
    roles = []
    try:
        for _ in range(k):
            roles.append(Role("supervisor", 1).__enter__())
        time.sleep(0.2)
        totals: dict[str, int] = {}
        for r in roles:
            for key, val in smaps_rollup(r.proc.pid).items():
                totals[key] = totals.get(key, 0) + val
        return totals
    finally:
        for r in roles:
            r.__exit__(None, None, None)


def pipe_reacquire_facts() -> dict[str, bool]:
    """Can a pipe's read end be re-opened via /proc/<pid>/fd, and copied with pidfd_getfd(2)?"""
    facts = {}
    r, w = os.pipe()
    writer = subprocess.Popen(["/bin/sh", "-c", "sleep 0.3; echo via-proc"], stdout=w)
    os.close(w)
    try:
        reopened = os.open(f"/proc/{writer.pid}/fd/1", os.O_RDONLY)
        os.close(r)  # the original read end is gone: only the re-opened one remains
        facts["proc_fd_reopen_reads_pipe"] = os.read(reopened, 100) == b"via-proc\n"
        os.close(reopened)
    finally:
        writer.wait()
    libc = ctypes.CDLL(None, use_errno=True)
    r, w = os.pipe()
    holder = subprocess.Popen(["sleep", "5"], pass_fds=(r,))
    try:
        pidfd = os.pidfd_open(holder.pid)
        got = libc.syscall(SYS_PIDFD_GETFD, pidfd, r, 0)
        os.close(r)
        os.write(w, b"x")
        facts["pidfd_getfd_copies_read_end"] = got >= 0 and os.read(got, 1) == b"x"
        if got >= 0:
            os.close(got)
        os.close(pidfd)
    finally:
        holder.kill()
        holder.wait()
        os.close(w)
    return facts


def measure_real(n: int) -> dict[str, object]:
    """The REAL keeper + supervisor (engine/supervise) on a temp state root with n busybox `sleep`s.

    Root only. PSS of keeper + daemon with 0 containers (after one start/stop so code paths are loaded),
    then with n running; everything is shut down, its cgroups and directories removed, even on error.
    """
    import secrets
    import shutil
    from pathlib import Path

    repo = Path(__file__).resolve().parent.parent
    sys.path[:0] = [str(repo), str(repo / "tests" / "integration")]
    from rootfs_fixture import busybox_rootfs

    from engine.containers import records, spawn
    from engine.containers.cgroups import remove_parent
    from engine.containers.spec import ContainerSpec, Process
    from engine.state.root import StateRoot
    from engine.supervise import client

    tmp = tempfile.mkdtemp(prefix="pyc-bench-")
    root = StateRoot.open(Path(tmp) / "root")
    parent = f"pyc-bench-{os.getpid()}-{secrets.token_hex(3)}"
    image = "sha256:" + "cd" * 32
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    root.db.execute(
        "INSERT INTO images (id, manifest_digest, manifest_media_type, size, os, architecture, added)"
        " VALUES (?, ?, 'application/vnd.oci.image.manifest.v1+json', 0, 'linux', 'amd64', ?)",
        (image, image, stamp),
    )
    layer = str(busybox_rootfs())
    ids: list[str] = []

    def create() -> str:
        cid = f"pyc-bench-{secrets.token_hex(8)}"
        spec = ContainerSpec(cid, cid, image, (layer,), Process(("sleep", "3600")), log_driver="json-file")
        text = spec.to_json()
        records.insert(root.db, id=cid, name=cid, image_id=image, spec_json=text, labels={}, created=stamp)
        ids.append(cid)
        return cid

    def pss() -> tuple[int, list[int]]:
        pids = [int(p) for p in os.listdir("/proc") if p.isdigit() and _names_root(int(p), tmp)]
        return sum(smaps_rollup(p)["Pss"] for p in pids), pids

    try:
        client.ensure_supervisor(root, cgroup_parent=parent)
        warm = create()
        client.request(root, "start", id=warm)
        client.request(root, "stop", id=warm, timeout=0)
        time.sleep(1.0)
        base, procs = pss()
        began = time.monotonic()
        for _ in range(n):
            client.request(root, "start", id=create())
        start_s = time.monotonic() - began
        time.sleep(2.0)
        full, _ = pss()
        return {
            "real_processes": len(procs),
            "real_pss_kb_n0": base,
            f"real_pss_kb_n{n}": full,
            "real_pss_kb_per_container": round((full - base) / n, 1),
            "real_start_ms_per_container": round(1000 * start_s / n, 1),
        }
    finally:
        try:
            client.shutdown(root, timeout=30)
        finally:
            for pid in [int(p) for p in os.listdir("/proc") if p.isdigit() and _names_root(int(p), tmp)]:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            for cid in ids:
                spawn.cleanup(root, cid)
            remove_parent(parent)
            root.close()
            shutil.rmtree(tmp, ignore_errors=True)


def _names_root(pid: int, tmp: str) -> bool:
    """A keeper/daemon process started for this bench (its argv names the temp root)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return tmp.encode() in f.read()
    except OSError:
        return False


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--role", choices=["supervisor", "keeper"])
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--k", type=int, default=10, help="processes for the per-process comparison")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--logdir")
    ap.add_argument("--real", action="store_true", help="measure the real keeper+supervisor (root)")
    args = ap.parse_args()
    if args.real:
        print(json.dumps({"n": args.n, **measure_real(args.n)}, indent=2))
        return None
    if args.role == "supervisor":
        return _supervisor_role(args.n, args.logdir)
    if args.role == "keeper":
        return _keeper_role(args.n)

    def median(role: str, n: int, key: str) -> float:
        return statistics.median(measure(role, n)[key] for _ in range(args.repeat))

    report: dict[str, object] = {"n": args.n, "k": args.k, "repeat": args.repeat}
    for role in ("supervisor", "keeper"):
        for key in ("Pss", "Rss", "Private_Dirty"):
            base, full = median(role, 0, key), median(role, args.n, key)
            report[f"{role}_{key.lower()}_kb_n0"] = base
            report[f"{role}_{key.lower()}_kb_n{args.n}"] = full
            report[f"{role}_{key.lower()}_kb_per_container"] = round((full - base) / args.n, 1)
    per_proc = measure_per_process(args.k)
    report["per_process_pss_kb_per_container"] = round(per_proc["Pss"] / args.k, 1)
    report["per_process_rss_kb_per_container"] = round(per_proc["Rss"] / args.k, 1)
    report.update(pipe_reacquire_facts())
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
