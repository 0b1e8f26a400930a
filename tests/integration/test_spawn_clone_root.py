"""The clone(CLONE_VM|CLONE_VFORK) start shares our memory with the child: it must leave the parent as it was.

Checks what the child could corrupt in the parent: Python signal handlers (the child resets its own with
libc), the mm's dumpable flag (a uid switch clears it), the thread state's frames and recursion budget
(many starts in a row, then a deep recursion and a traceback), and the signal mask of the caller.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import traceback
import uuid
from pathlib import Path

import pytest
from rootfs_fixture import busybox_rootfs

from engine.containers import spawn
from engine.containers.spec import ContainerSpec, Process
from engine.state.root import StateRoot

pytestmark = pytest.mark.root

if os.geteuid() != 0:
    pytest.skip("needs root", allow_module_level=True)


def spec_of(*args: str, user: str | None = None) -> ContainerSpec:
    cid = "pyc-test-" + uuid.uuid4().hex[:12]
    process = Process(args=args, user=user)
    return ContainerSpec(cid, cid, "sha256:test", (str(busybox_rootfs()),), process)


def run(spec: ContainerSpec, root: StateRoot) -> tuple[int, str]:
    """Start with stdout on a pipe, read it, reap; always clean up."""
    r, w = os.pipe()
    null = os.open("/dev/null", os.O_RDONLY)
    pid = None
    try:
        pid = spawn.start(spec, root, stdio=(null, w, w))
        os.close(w)
        w = -1
        out = b""
        while chunk := os.read(r, 65536):
            out += chunk
        code = spawn.wait(pid)
        pid = None
        return code, out.decode()
    finally:
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        for fd in (r, w, null):
            if fd >= 0:
                os.close(fd)
        spawn.cleanup(root, spec.id)


@pytest.fixture
def root(tmp_path: Path):  # type: ignore[no-untyped-def]
    state = StateRoot.open(tmp_path / "root")
    try:
        yield state
    finally:
        state.close()


def test_parent_handlers_and_mask_survive_and_child_gets_defaults(root):
    seen: list[int] = []
    old_usr1 = signal.signal(signal.SIGUSR1, lambda s, f: seen.append(s))
    old_hup = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    try:
        # the container's PID 1: nothing ignored (our SIG_IGN HUP must not leak), nothing blocked
        code, out = run(spec_of("/bin/grep", "-E", "^Sig(Ign|Blk)", "/proc/self/status"), root)
        assert code == 0
        assert "SigIgn:\t0000000000000000" in out and "SigBlk:\t0000000000000000" in out
        assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
        assert signal.pthread_sigmask(signal.SIG_BLOCK, []) == mask
        os.kill(os.getpid(), signal.SIGUSR1)  # our Python handler is still installed and runs
        assert seen == [signal.SIGUSR1]
    finally:
        signal.signal(signal.SIGUSR1, old_usr1)
        signal.signal(signal.SIGHUP, old_hup)


def test_user_switch_in_the_child_leaves_us_dumpable(root):
    libc = ctypes.CDLL(None)
    before = libc.prctl(3, 0, 0, 0, 0)  # PR_GET_DUMPABLE
    code, out = run(spec_of("/bin/id", "-u", user="app"), root)
    assert (code, out.strip()) == (0, "1000")
    assert libc.prctl(3, 0, 0, 0, 0) == before == 1


def test_many_starts_leave_frames_and_recursion_budget_intact(root):
    for _ in range(60):
        assert run(spec_of("/bin/true"), root)[0] == 0
    depth = 0
    frame = sys._getframe()
    while frame is not None:
        depth += 1
        frame = frame.f_back
    assert depth < 100  # the stack seen from here is pytest's, not the children's

    def recurse(n: int) -> int:
        return 0 if n == 0 else 1 + recurse(n - 1)

    assert recurse(sys.getrecursionlimit() - depth - 50) > 0
    try:
        raise ValueError("x")
    except ValueError:
        assert "test_spawn_clone_root.py" in traceback.format_exc()


def _children() -> set[int]:
    """Our child processes (other tests of the session may have left some running: compare, not count)."""
    found: set[int] = set()
    for task in Path("/proc/self/task").iterdir():
        found.update(int(pid) for pid in (task / "children").read_text().split())
    return found


def test_failed_start_reports_and_reaps(root):
    before = _children()
    with pytest.raises(Exception, match="no-such-binary"):
        run(spec_of("/no-such-binary"), root)
    assert _children() <= before  # the failed child was reaped, not left as a zombie
