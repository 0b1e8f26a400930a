"""The few Linux syscalls Python 3.11's stdlib lacks, via ctypes: mount, umount2, pivot_root, unshare,
setns, setdomainname (and sethostname, for symmetry). The only ctypes module of the spawn/rootfs concern.

Each wrapper raises OSError with errno and the path/name involved, like the os module does, so callers
can turn it into an engine error naming the step.
"""

from __future__ import annotations

import ctypes
import os

# The process's own symbols, libc's among them (as seccomp.py and capabilities.py do): ctypes.util's
# find_library("c") runs `ldconfig -p` in a subprocess, 15-30 ms of every CLI run that loads this module.
_libc = ctypes.CDLL(None, use_errno=True)

# mount(2) flags (linux/mount.h)
MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_NOATIME = 0x400
MS_BIND = 0x1000
MS_MOVE = 0x2000
MS_REC = 0x4000
MS_SILENT = 0x8000
MS_UNBINDABLE = 1 << 17
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20
MS_RELATIME = 1 << 21
MS_STRICTATIME = 1 << 24

# umount2(2) flags
MNT_FORCE = 1
MNT_DETACH = 2

# clone(2) / unshare(2) / setns(2) namespace flags (linux/sched.h)
CLONE_PARENT = 0x00008000  # the child's parent is the caller's parent (spawn.start(sibling=True))
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

_SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}.get(os.uname().machine, 155)

_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.unshare.argtypes = [ctypes.c_int]
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
_libc.sethostname.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
_libc.setdomainname.argtypes = [ctypes.c_char_p, ctypes.c_size_t]


def _check(result: int, *names: str | None) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), *[n for n in names if n][:2])


def _b(text: str | None) -> bytes | None:
    return None if text is None else os.fsencode(text)


def mount(
    source: str | None, target: str, fstype: str | None, flags: int = 0, data: str | None = None
) -> None:
    """mount(2)."""
    _check(_libc.mount(_b(source), _b(target), _b(fstype), flags, _b(data)), target)


def umount2(target: str, flags: int = 0) -> None:
    """umount2(2)."""
    _check(_libc.umount2(_b(target), flags), target)


def pivot_root(new_root: str, put_old: str) -> None:
    """pivot_root(2) (no libc wrapper, so by syscall number)."""
    _check(_libc.syscall(_SYS_PIVOT_ROOT, _b(new_root), _b(put_old)), new_root, put_old)


def unshare(flags: int) -> None:
    """unshare(2)."""
    _check(_libc.unshare(flags), f"unshare({flags:#x})")


def setns(fd: int, nstype: int = 0) -> None:
    """setns(2) on an open /proc/<pid>/ns/* file descriptor."""
    _check(_libc.setns(fd, nstype), f"setns({nstype:#x})")


CLOSE_RANGE_CLOEXEC = 1 << 2
_close_range = getattr(_libc, "close_range", None)  # glibc 2.34+
if _close_range is not None:
    _close_range.argtypes = [ctypes.c_uint, ctypes.c_uint, ctypes.c_int]


def cloexec_from(first: int) -> bool:
    """Mark every descriptor from `first` up close-on-exec in one call (close_range(2), Linux 5.11);
    False where the kernel or libc lacks it (the caller then walks /proc/self/fd itself)."""
    return _close_range is not None and _close_range(first, 0xFFFFFFFF, CLOSE_RANGE_CLOEXEC) == 0


def sethostname(name: str) -> None:
    """sethostname(2) in the current UTS namespace."""
    raw = name.encode()
    _check(_libc.sethostname(raw, len(raw)), name)


def setdomainname(name: str) -> None:
    """setdomainname(2) in the current UTS namespace."""
    raw = name.encode()
    _check(_libc.setdomainname(raw, len(raw)), name)
