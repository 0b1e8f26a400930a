"""clone(2) with vfork semantics for spawn: a new process without copying the caller's memory.

Why: `os.fork()` of a 25-35 MB Python process copies its page tables (1-2 ms), the child then pays a copy
for every page it writes (refcounts), and its `execve` tears the copied address space down again (~2 ms):
most of a container start. `clone(CLONE_VM|CLONE_VFORK)` shares the address space instead; the calling
thread sleeps in the kernel until the child has exec'd or exited, as with vfork(2).

How the child may run Python code in the shared memory (read before changing anything here):
- The clone is made by a throwaway thread T, through `ctypes.PyDLL` so T keeps the GIL. The child enters
  Python through a ctypes callback on a stack of its own; `PyGILState_Ensure` finds T's thread state
  (the child shares T's thread-local storage) and sees T holding the GIL, so the child runs as if it were
  T. Whatever it leaves behind (frames never popped, T's frame pointer aimed at the child's stack) belongs
  to T's thread state, which is discarded when T ends right after the clone returns; T runs no Python
  code in between but storing the pid. The objects the child's unfinished frames hold are leaked (a few
  KB per start; the supervisor starts containers from short-lived helpers).
- The child must end in `execve` or `os._exit`, never return; `entry` is wrapped to guarantee that.
- Signals: the calling thread blocks every signal around the clone, T and the child inherit that mask,
  and the child resets dispositions with libc (`reset_signals`), never `signal.signal`, which would
  rewrite the parent's Python handler table. So no signal handler of the parent ever runs in the child.
- Per-process kernel state is the child's own (no CLONE_FS/FILES/SIGHAND/THREAD): root, cwd, umask,
  namespaces, fds, credentials, seccomp, rlimits, oom_score_adj (the kernel skips vfork children when it
  propagates it). One exception: a uid change marks the shared mm non-dumpable; T restores it.
- Residual risk: if someone SIGKILLs the child in the middle of its setup (it is reachable only through
  its cgroup before `start()` returns), the GIL can be left in a state the parent cannot repair.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import signal
import threading
from collections.abc import Callable

from engine.containers import syscalls as sc

CLONE_VM = 0x00000100
CLONE_VFORK = 0x00004000
STACK_SIZE = 8 << 20  # like a thread's default; pages are only allocated when touched
PAGE = mmap.PAGESIZE
PROT_NONE = 0
PR_GET_DUMPABLE = 3
PR_SET_DUMPABLE = 4
CHILD_FAILED = 125  # exit status if `entry` ever returns

_pylibc = ctypes.PyDLL(None, use_errno=True)  # keeps the GIL; the process's symbols, libc's among them
_libc = ctypes.CDLL(None, use_errno=True)  # (not ctypes.util.find_library: it runs `ldconfig -p`)
_ENTRY = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p)
_pylibc.clone.argtypes = [_ENTRY, ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p]
_pylibc.clone.restype = ctypes.c_int
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
_libc.signal.argtypes = [ctypes.c_int, ctypes.c_void_p]
_libc.signal.restype = ctypes.c_void_p
_libc.sigprocmask.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
_libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]

_lock = threading.Lock()  # one child stack, so one clone at a time
_stack: mmap.mmap | None = None
_stack_top = 0


def clone_vfork(entry: Callable[[], None], flags: int, *, pid_ns_fd: int | None = None) -> int:
    """Run `entry` in a new process sharing our memory until it execs; returns its pid once it has.

    `flags` adds namespace flags (CLONE_NEW*); SIGCHLD is the exit signal, so `os.waitpid` reaps it.
    `pid_ns_fd` puts the child in that PID namespace (the clone thread joins it for its children only).
    `entry` runs in the child and must exec; if it returns or raises, the child exits CHILD_FAILED.
    """
    result: list[int | BaseException] = []

    def child(_arg: int | None) -> int:
        try:
            entry()
        finally:
            os._exit(CHILD_FAILED)

    callback = _ENTRY(child)
    with _lock:
        top = _child_stack()
        thread = threading.Thread(
            target=_clone_thread, args=(callback, top, flags, pid_ns_fd, result), name="pyc-clone"
        )
        old = signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
        try:
            thread.start()
            thread.join()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)
    outcome = result[0] if result else OSError("clone thread failed")
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome


def _clone_thread(callback, top: int, flags: int, pid_ns_fd: int | None, result: list) -> None:  # type: ignore[no-untyped-def]
    """Thread T: join the PID namespace for children, clone, restore the mm's dumpable flag."""
    try:
        if pid_ns_fd is not None:
            sc.setns(pid_ns_fd, sc.CLONE_NEWPID)
        dumpable = _libc.prctl(PR_GET_DUMPABLE, 0, 0, 0, 0)
    except BaseException as exc:
        result.append(exc)
        return
    pid = _pylibc.clone(callback, top, CLONE_VM | CLONE_VFORK | signal.SIGCHLD | flags, None)
    # From here until T ends, T's thread state still points at the child's frames: no calls into
    # Python code (see the module docstring), only C.
    if pid < 0:
        err = ctypes.get_errno()
        result.append(OSError(err, os.strerror(err), f"clone({flags:#x})"))
        return
    if dumpable > 0:
        _libc.prctl(PR_SET_DUMPABLE, dumpable, 0, 0, 0)
    result.append(pid)


def _child_stack() -> int:
    """The top of the child's stack: one mapping, reused, with a guard page at its low end."""
    global _stack, _stack_top
    if _stack is None:
        stack = mmap.mmap(-1, STACK_SIZE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        base = ctypes.addressof(ctypes.c_char.from_buffer(stack))
        if _libc.mprotect(base, PAGE, PROT_NONE) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), "mprotect(guard page)")
        _stack, _stack_top = stack, (base + STACK_SIZE - 64) & ~0xF
    return _stack_top


def reset_signals() -> None:
    """In the child before exec: every disposition to default and nothing blocked, through libc only.

    (An inherited SIG_IGN would survive exec, so `trap ... HUP` in the container would do nothing;
    `signal.signal` must not be used here, it writes the parent's Python handler table.)
    """
    for signum in range(1, signal.NSIG):
        if signum not in (signal.SIGKILL, signal.SIGSTOP):
            _libc.signal(signum, None)  # SIG_DFL is 0; libc refuses its own reserved signals, fine
    empty = ctypes.create_string_buffer(128)
    _libc.sigprocmask(signal.SIG_SETMASK, empty, None)
