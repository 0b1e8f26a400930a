"""Process security of a container: what its main process may do, applied just before exec.

Two halves, so that mistakes surface in the parent as clear errors and the child only runs syscalls:
- `plan_security(security)` (parent): effective capabilities, the compiled seccomp filter, ulimits
  checked against the host's hard limits, sysctls checked to be namespaced, oom_score_adj range.
- `apply_plan(plan)` (child, after the mounts and the user switch are prepared, right before exec).

Order in the child, as runc does it, and why:
1. rlimits        raising a hard limit needs CAP_SYS_RESOURCE, which the container usually loses;
2. oom_score_adj  lowering it needs CAP_SYS_RESOURCE as well;
3. no_new_privs   if asked for; it lets an unprivileged process install seccomp;
4. seccomp (without no_new_privs): installing a filter then needs CAP_SYS_ADMIN, so it goes in while
   we still hold every capability; the default profile allows the capset/prctl calls that follow;
5. capabilities   bounding set, [the user switch, with keep-caps], then permitted/effective
                  (inheritable and ambient empty);
6. seccomp (with no_new_privs): as late as possible, so the filter sees nothing but the exec.
Sysctls are separate (`apply_sysctls`): they are written to the container's /proc/sys by the rootfs step
before /proc/sys is made read-only.
"""

from __future__ import annotations

import os
import resource
from collections.abc import Callable, Iterable, Sequence
from dataclasses import field

from engine.containers import capabilities, seccomp
from engine.containers.spec import Security
from engine.errors import SecurityError
from engine.frozen import frozen

# Docker's ulimit names (`docker run --ulimit`, compose `ulimits:`) -> RLIMIT_* numbers of
# asm-generic/resource.h (x86_64 and aarch64 use them; Python's resource module lacks RLIMIT_LOCKS).
ULIMITS: dict[str, int] = {
    "cpu": 0,
    "fsize": 1,
    "data": 2,
    "stack": 3,
    "core": 4,
    "rss": 5,
    "nproc": 6,
    "nofile": 7,
    "memlock": 8,
    "as": 9,
    "locks": 10,
    "sigpending": 11,
    "msgqueue": 12,
    "nice": 13,
    "rtprio": 14,
    "rttime": 15,
}

# Sysctls that live in a namespace the container owns (the list docker/runc accept), by namespace.
IPC_SYSCTLS = frozenset(
    {"kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall", "kernel.shmmax"}
    | {"kernel.shmmni", "kernel.shm_rmid_forced"}
)
IPC_SYSCTL_PREFIXES = ("fs.mqueue.",)
NET_SYSCTL_PREFIXES = ("net.",)


@frozen
class Rlimit:
    """One resource limit to set: RLIMIT_* number, soft and hard (RLIM_INFINITY for unlimited)."""

    name: str
    resource: int
    soft: int
    hard: int


@frozen
class SecurityPlan:
    """Everything the child applies, computed and checked in the parent."""

    caps: frozenset[str]
    rlimits: tuple[Rlimit, ...] = ()
    oom_score_adj: int | None = None
    no_new_privs: bool = False
    seccomp: seccomp.Filter | None = None
    sysctls: tuple[tuple[str, str], ...] = field(default=())


def _limit(value: int) -> int:
    """Docker writes -1 for unlimited."""
    return resource.RLIM_INFINITY if value < 0 else value


def _above(value: int, ceiling: int) -> bool:
    if ceiling == resource.RLIM_INFINITY:
        return False
    return value == resource.RLIM_INFINITY or value > ceiling


def check_ulimits(ulimits: Iterable[tuple[str, int, int]]) -> tuple[Rlimit, ...]:
    """Validated rlimits: known names, soft <= hard, hard never above this host's hard limit."""
    checked: dict[str, Rlimit] = {}
    for name, soft, hard in ulimits:
        key = name.strip().lower()
        if key not in ULIMITS:
            raise SecurityError(
                f"unknown ulimit {name!r} (known: {', '.join(sorted(ULIMITS))})", subject="ulimits"
            )
        number = ULIMITS[key]
        soft_v, hard_v = _limit(soft), _limit(hard)
        if _above(soft_v, hard_v):
            raise SecurityError(f"{key}: soft limit {soft} is above the hard limit {hard}", subject="ulimits")
        host_hard = resource.getrlimit(number)[1]
        if _above(hard_v, host_hard):
            raise SecurityError(
                f"{key}: hard limit {hard} is above the host's hard limit {host_hard}",
                subject="ulimits",
            )
        checked[key] = Rlimit(key, number, soft_v, hard_v)
    return tuple(checked.values())


def sysctl_namespace(name: str) -> str | None:
    """'ipc' or 'net' for a sysctl a container may set, None for a host-wide one."""
    if name in IPC_SYSCTLS or name.startswith(IPC_SYSCTL_PREFIXES):
        return "ipc"
    if name.startswith(NET_SYSCTL_PREFIXES):
        return "net"
    return None


def check_sysctls(
    sysctls: Iterable[tuple[str, str]], *, host_network: bool = False, host_ipc: bool = False
) -> tuple[tuple[str, str], ...]:
    """Refuse what would change the host, as docker does: non-namespaced names, or a shared namespace."""
    checked = []
    for raw_name, value in sysctls:
        name = raw_name.strip().replace("/", ".")
        namespace = sysctl_namespace(name)
        if namespace is None:
            raise SecurityError(
                f"sysctl {raw_name!r} is not namespaced"
                " (allowed: net.*, kernel.shm*, kernel.msg*, kernel.sem, fs.mqueue.*)",
                subject="sysctls",
            )
        if (namespace == "net" and host_network) or (namespace == "ipc" and host_ipc):
            raise SecurityError(
                f"sysctl {raw_name!r} would change the host: the container shares its {namespace} namespace",
                subject="sysctls",
            )
        checked.append((name, str(value)))
    return tuple(checked)


def check_oom_score_adj(value: int | None) -> int | None:
    """The kernel accepts -1000..1000."""
    if value is not None and not -1000 <= value <= 1000:
        raise SecurityError(f"oom_score_adj {value} is outside -1000..1000", subject="oom_score_adj")
    return value


def plan_security(security: Security, *, host_network: bool = False, host_ipc: bool = False) -> SecurityPlan:
    """Check and compile a container's security settings (in the parent: errors come out here)."""
    caps = capabilities.effective_caps(security.cap_add, security.cap_drop, privileged=security.privileged)
    caps &= capabilities.bounding_caps()  # `privileged` or `ALL` on a host that withholds some: what we hold
    return SecurityPlan(
        caps=caps,
        rlimits=check_ulimits(security.ulimits),
        oom_score_adj=check_oom_score_adj(security.oom_score_adj),
        no_new_privs=security.no_new_privileges,
        seccomp=seccomp.filter_for(security.seccomp_profile, caps, privileged=security.privileged),
        sysctls=check_sysctls(security.sysctls, host_network=host_network, host_ipc=host_ipc),
    )


def apply_rlimits(rlimits: Sequence[Rlimit]) -> None:
    """setrlimit for each limit (this process; exec keeps them)."""
    for limit in rlimits:
        try:
            resource.setrlimit(limit.resource, (limit.soft, limit.hard))
        except (OSError, ValueError) as exc:
            raise SecurityError(f"cannot set ulimit {limit.name}: {exc}", subject="ulimits") from exc


def apply_oom_score_adj(value: int, pid: int | str = "self") -> None:
    """Write /proc/<pid>/oom_score_adj (children inherit it)."""
    try:
        with open(f"/proc/{pid}/oom_score_adj", "w") as handle:
            handle.write(str(value))
    except OSError as exc:
        raise SecurityError(
            f"cannot set oom_score_adj {value}: {exc.strerror}", subject="oom_score_adj"
        ) from exc


def _reset_oom_score_adj(wanted: int | None) -> None:
    """The spec's value, else Docker's 0: never the supervisor's own -500/-999 inherited through fork.

    Without a value of its own the reset is best effort: lowering a score needs CAP_SYS_RESOURCE, which a
    sandboxed host may withhold, and a container must not fail to start over a default.
    """
    if wanted is not None:
        apply_oom_score_adj(wanted)
        return
    try:
        with open("/proc/self/oom_score_adj") as handle:
            current = int(handle.read())
        if current != 0:
            apply_oom_score_adj(0)
    except (OSError, ValueError, SecurityError):
        pass


def apply_sysctls(sysctls: Iterable[tuple[str, str]], proc: str = "/proc") -> None:
    """Write checked sysctls under `proc`/sys, from inside the container's namespaces."""
    for name, value in sysctls:
        path = os.path.join(proc, "sys", *name.split("."))
        try:
            with open(path, "w") as handle:
                handle.write(value)
        except OSError as exc:
            raise SecurityError(
                f"cannot set sysctl {name}={value}: {exc.strerror}", subject="sysctls"
            ) from exc


def apply_plan(plan: SecurityPlan, *, switch_user: Callable[[], None] | None = None) -> None:
    """Apply a plan to this process, in runc's order (see the module docstring); call right before exec.

    `switch_user` (setgroups/setgid/setuid) runs after the bounding set is cut and before capset, with
    PR_SET_KEEPCAPS on, as runc does: so a container without CAP_SETUID can still start as its user, and
    a non-root user still ends with no effective capabilities after exec (its ambient set is empty).
    """
    apply_rlimits(plan.rlimits)
    _reset_oom_score_adj(plan.oom_score_adj)
    if plan.no_new_privs:
        seccomp.set_no_new_privs()
    if plan.seccomp is not None and not plan.no_new_privs:
        seccomp.install(plan.seccomp)
    capabilities.drop_bounding(plan.caps)
    if switch_user is not None:
        capabilities.set_keep_caps(True)
        switch_user()
        capabilities.set_keep_caps(False)
    capabilities.set_caps(plan.caps)
    if plan.seccomp is not None and plan.no_new_privs:
        seccomp.install(plan.seccomp)


def apply_process_security(security: Security) -> None:
    """Plan and apply in one go (for callers that have not planned in the parent; sysctls not included)."""
    apply_plan(plan_security(security))
