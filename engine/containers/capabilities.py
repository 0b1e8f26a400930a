"""Linux capabilities: the name table, Docker's default set, and applying a set to this process.

The set a container gets is computed in the parent (`effective_caps`, pure) and applied in the child
just before exec (`apply_caps`). Like Docker, the same set goes to the bounding, permitted and effective
sets; inheritable and ambient stay empty (moby cleared inheritable after CVE-2022-24769), so a process
that runs as a non-root user ends up with no effective capabilities after exec unless a file grants some.

ctypes module for this concern: this one (capset(2) and the capability prctls).
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Iterable

from engine.errors import SecurityError

# Number -> name, from linux/capability.h (CAP_CHECKPOINT_RESTORE, 40, is the last as of Linux 6.x).
CAPABILITIES: dict[str, int] = {
    "CAP_CHOWN": 0,
    "CAP_DAC_OVERRIDE": 1,
    "CAP_DAC_READ_SEARCH": 2,
    "CAP_FOWNER": 3,
    "CAP_FSETID": 4,
    "CAP_KILL": 5,
    "CAP_SETGID": 6,
    "CAP_SETUID": 7,
    "CAP_SETPCAP": 8,
    "CAP_LINUX_IMMUTABLE": 9,
    "CAP_NET_BIND_SERVICE": 10,
    "CAP_NET_BROADCAST": 11,
    "CAP_NET_ADMIN": 12,
    "CAP_NET_RAW": 13,
    "CAP_IPC_LOCK": 14,
    "CAP_IPC_OWNER": 15,
    "CAP_SYS_MODULE": 16,
    "CAP_SYS_RAWIO": 17,
    "CAP_SYS_CHROOT": 18,
    "CAP_SYS_PTRACE": 19,
    "CAP_SYS_PACCT": 20,
    "CAP_SYS_ADMIN": 21,
    "CAP_SYS_BOOT": 22,
    "CAP_SYS_NICE": 23,
    "CAP_SYS_RESOURCE": 24,
    "CAP_SYS_TIME": 25,
    "CAP_SYS_TTY_CONFIG": 26,
    "CAP_MKNOD": 27,
    "CAP_LEASE": 28,
    "CAP_AUDIT_WRITE": 29,
    "CAP_AUDIT_CONTROL": 30,
    "CAP_SETFCAP": 31,
    "CAP_MAC_OVERRIDE": 32,
    "CAP_MAC_ADMIN": 33,
    "CAP_SYSLOG": 34,
    "CAP_WAKE_ALARM": 35,
    "CAP_BLOCK_SUSPEND": 36,
    "CAP_AUDIT_READ": 37,
    "CAP_PERFMON": 38,
    "CAP_BPF": 39,
    "CAP_CHECKPOINT_RESTORE": 40,
}
CAP_NAMES: dict[int, str] = {number: name for name, number in CAPABILITIES.items()}
LAST_CAP = max(CAP_NAMES)

# What `docker run` grants without cap_add (moby's default capability list).
DEFAULT_CAPS: frozenset[str] = frozenset(
    {
        "CAP_CHOWN",
        "CAP_DAC_OVERRIDE",
        "CAP_FSETID",
        "CAP_FOWNER",
        "CAP_MKNOD",
        "CAP_NET_RAW",
        "CAP_SETGID",
        "CAP_SETUID",
        "CAP_SETFCAP",
        "CAP_SETPCAP",
        "CAP_NET_BIND_SERVICE",
        "CAP_SYS_CHROOT",
        "CAP_KILL",
        "CAP_AUDIT_WRITE",
    }
)
ALL_CAPS: frozenset[str] = frozenset(CAPABILITIES)


def normalize_cap(name: str) -> str:
    """`net_admin`, `NET_ADMIN` and `CAP_NET_ADMIN` all name the same capability; unknown ones are refused."""
    upper = name.strip().upper()
    full = upper if upper.startswith("CAP_") else f"CAP_{upper}"
    if full not in CAPABILITIES:
        raise SecurityError(f"unknown capability: {name!r}", subject="capabilities")
    return full


def _names(items: Iterable[str]) -> tuple[bool, set[str]]:
    """(mentions ALL, the normalised names) of a cap_add or cap_drop list."""
    wants_all = False
    names: set[str] = set()
    for item in items:
        if item.strip().upper() in ("ALL", "CAP_ALL"):
            wants_all = True
        else:
            names.add(normalize_cap(item))
    return wants_all, names


def effective_caps(
    cap_add: Iterable[str] = (), cap_drop: Iterable[str] = (), *, privileged: bool = False
) -> frozenset[str]:
    """The set Docker gives (moby's TweakCapabilities rules, so compose files behave the same here).

    privileged: every capability. `ALL` in cap_add: every capability but the dropped ones. `ALL` in
    cap_drop: exactly the added ones. Otherwise the default set minus cap_drop plus cap_add (an add wins
    over a drop of the same name). Names are checked even when privileged makes them moot.
    """
    add_all, added = _names(cap_add)
    drop_all, dropped = _names(cap_drop)
    if privileged:
        return ALL_CAPS
    if add_all:
        return frozenset(ALL_CAPS - dropped)
    if drop_all:
        return frozenset(added)
    return frozenset((DEFAULT_CAPS - dropped) | added)


def caps_mask(caps: Iterable[str]) -> int:
    """The 64-bit mask /proc/<pid>/status shows (CapEff, CapBnd) for a set of names."""
    mask = 0
    for name in caps:
        mask |= 1 << CAPABILITIES[normalize_cap(name)]
    return mask


def mask_caps(mask: int) -> frozenset[str]:
    """The names in a mask (bits above the table are ignored)."""
    return frozenset(name for number, name in CAP_NAMES.items() if mask >> number & 1)


# --- applying (ctypes: capset(2), prctl) -------------------------------------------------------------

_PR_CAPBSET_READ = 23
_PR_CAPBSET_DROP = 24
_PR_CAP_AMBIENT = 47
_PR_SET_KEEPCAPS = 8
_PR_CAP_AMBIENT_CLEAR_ALL = 4
_LINUX_CAPABILITY_VERSION_3 = 0x20080522


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


_libc = ctypes.CDLL(None, use_errno=True)
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
_libc.prctl.restype = ctypes.c_int


def _prctl(option: int, arg2: int = 0, arg3: int = 0) -> int:
    """prctl(2) that raises SecurityError with errno text on failure."""
    result = _libc.prctl(option, arg2, arg3, 0, 0)
    if result < 0:
        err = ctypes.get_errno()
        raise SecurityError(f"prctl({option}): {os.strerror(err)}", subject="capabilities")
    return result


def kernel_last_cap() -> int:
    """The highest capability this kernel knows (newer kernels may know more than our table)."""
    try:
        with open("/proc/sys/kernel/cap_last_cap") as handle:
            return int(handle.read())
    except OSError:
        return LAST_CAP


def bounding_caps() -> frozenset[str]:
    """The capabilities this process may still hand on (its bounding set, `CapBnd`).

    A container can never get more; asking for more (privileged, `cap_add: ALL`) on a host or sandbox that
    withholds some would make capset fail with EPERM, so the plan is cut to this set first.
    """
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("CapBnd:"):
                    return mask_caps(int(line.split()[1], 16))
    except OSError:
        pass
    return ALL_CAPS


def _drop_bounding(keep_mask: int, last: int) -> None:
    """Drop every capability not kept from the bounding set (needs CAP_SETPCAP, so do it first)."""
    for number in range(last + 1):
        if keep_mask >> number & 1:
            continue
        if _libc.prctl(_PR_CAPBSET_READ, number, 0, 0, 0) == 1:
            _prctl(_PR_CAPBSET_DROP, number)


def _capset(effective: int, permitted: int, inheritable: int) -> None:
    """capset(2) with the two 32-bit halves of each 64-bit set (version 3 ABI)."""
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    for half in (0, 1):
        shift = 32 * half
        data[half].effective = (effective >> shift) & 0xFFFFFFFF
        data[half].permitted = (permitted >> shift) & 0xFFFFFFFF
        data[half].inheritable = (inheritable >> shift) & 0xFFFFFFFF
    if _libc.capset(ctypes.byref(header), data) != 0:
        err = ctypes.get_errno()
        raise SecurityError(f"capset: {os.strerror(err)}", subject="capabilities")


def drop_bounding(caps: Iterable[str]) -> None:
    """Step 1 of `apply_caps`: the bounding set (needs CAP_SETPCAP, so before anything else)."""
    _drop_bounding(caps_mask(caps), kernel_last_cap())


def set_caps(caps: Iterable[str]) -> None:
    """Step 2 of `apply_caps`: ambient cleared, permitted = effective = caps, inheritable empty."""
    mask = caps_mask(caps)
    _prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL)
    _capset(mask, mask, 0)


def set_keep_caps(keep: bool) -> None:
    """PR_SET_KEEPCAPS: keep the permitted set across a setuid away from root (runc does the same)."""
    _prctl(_PR_SET_KEEPCAPS, int(keep))


def apply_caps(caps: Iterable[str]) -> None:
    """Limit this process (about to exec) to `caps`, the way runc does for Docker.

    Order: bounding set first (the drop needs CAP_SETPCAP, which capset may remove), then ambient cleared,
    then permitted = effective = caps with an empty inheritable set.
    """
    drop_bounding(caps)
    set_caps(caps)
