"""Advisory file locks that exclude other pycompose processes (and other threads of this one).

`flock(2)` locks belong to an open file description, so each `FileLock` object opens its own: two
`FileLock`s on one path exclude each other even inside one process, and the kernel drops the lock when
the holder dies, so a crashed process never leaves a lock behind. Lock files are never deleted while
anyone may use them (deleting a lock file lets a second process lock a new inode of the same name).
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path
from types import EllipsisType, TracebackType

from engine.errors import LockTimeout, StateError

# A timed wait polls at a short FIXED interval: growing pauses made waiters sleep through the moments the
# lock was free (16 threads behind one lock formed a convoy). After a while the interval widens, so a long
# wait (a layer being downloaded elsewhere) costs little CPU.
_POLL = 0.002
_SLOW_POLL = 0.02
_SLOW_AFTER = 1.0


class FileLock:
    """One lock on one file: shared (many readers) or exclusive (one writer), with an optional timeout.

    `timeout=None` waits for ever (Ctrl-C still interrupts), `0` tries once. Not for sharing between
    threads: give each thread its own object.
    """

    def __init__(self, path: str | os.PathLike[str], *, shared: bool = False, timeout: float | None = None):
        self.path = Path(path)
        self.shared = shared
        self.timeout = timeout
        self._fd: int | None = None

    @property
    def name(self) -> str:
        """The lock's name as users see it in errors: the file name without `.lock`."""
        return self.path.name.removesuffix(".lock")

    @property
    def locked(self) -> bool:
        return self._fd is not None

    def acquire(self, timeout: float | EllipsisType | None = ..., *, shared: bool | None = None) -> FileLock:
        """Take the lock or raise LockTimeout naming it; `timeout`/`shared` override the constructor's."""
        if self._fd is not None:
            raise RuntimeError(f"lock {self.name!r} is already held by this object")
        wait = self.timeout if isinstance(timeout, EllipsisType) else timeout
        if shared is not None:
            self.shared = shared
        mode = fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX
        fd = self._open()
        try:
            _flock(fd, mode, wait, self)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return self

    def release(self) -> None:
        """Drop the lock (closing the descriptor releases it); releasing an unheld lock does nothing."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def _open(self) -> int:
        try:
            return os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise StateError(f"cannot open lock file: {exc.strerror}", subject=str(self.path)) from exc

    def __enter__(self) -> FileLock:
        return self.acquire()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()

    def __del__(self) -> None:
        self.release()

    def __repr__(self) -> str:
        state = "held" if self.locked else "free"
        return f"<FileLock {self.path} {'shared' if self.shared else 'exclusive'} {state}>"


def _flock(fd: int, mode: int, timeout: float | None, lock: FileLock) -> None:
    """flock with a deadline. Without one, the kernel's blocking call (it releases the GIL, and the kernel
    hands the lock over at once); with one, non-blocking tries at a short fixed interval (the kernel call
    has no timeout, and interrupting it would need signals, which threads cannot own)."""
    if timeout is None:
        fcntl.flock(fd, mode)
    elif not flock_within(fd, mode, timeout):
        raise _timeout_error(fd, lock, timeout)


def flock_within(fd: int, mode: int, timeout: float) -> bool:
    """flock `fd` (any open file or directory) within `timeout` s; False if it is still held then."""
    start = time.monotonic()
    deadline = start + timeout
    while True:
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            now = time.monotonic()
            if now >= deadline:
                return False
            pause = _POLL if now - start < _SLOW_AFTER else _SLOW_POLL
            time.sleep(min(pause, deadline - now))


def _timeout_error(fd: int, lock: FileLock, timeout: float) -> LockTimeout:
    holders = _holders(fd)
    who = f"pid {', '.join(map(str, holders))}" if holders else "another process"
    kind = "shared" if lock.shared else "exclusive"
    message = f"still held by {who} after waiting {timeout:g} s ({kind})"
    return LockTimeout(message, subject=f"lock {lock.name}")


def _holders(fd: int) -> list[int]:
    """Best effort: which processes hold a flock on this file, from /proc/locks (for the error message)."""
    st = os.fstat(fd)
    wanted = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    pids: list[int] = []
    try:
        with open("/proc/locks", encoding="ascii", errors="replace") as table:
            for line in table:
                fields = line.split()
                # "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF"; blocked waiters carry a "->" field.
                if "->" in fields or len(fields) < 6 or fields[1] != "FLOCK" or fields[5] != wanted:
                    continue
                pid = int(fields[4])
                if pid != os.getpid() and pid not in pids:
                    pids.append(pid)
    except (OSError, ValueError):
        return []
    return pids
