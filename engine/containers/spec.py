"""The typed description of one container, as the Compose half hands it to the engine.

Everything Compose-specific (service names, config hashes) has already been turned into plain values
and labels; the engine only sees what to run and how to isolate it.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Mount:
    """One mount inside the container, in the order they are applied."""

    type: str  # "bind" | "volume" | "tmpfs"
    target: str
    source: str | None = None  # host path (bind), volume name (volume)
    read_only: bool = False
    options: tuple[str, ...] = ()  # e.g. ("rprivate",) for bind propagation, ("size=64m", "mode=1777")
    subpath: str | None = None
    nocopy: bool = False
    create_host_path: bool = True


@dataclass(frozen=True, slots=True)
class Resources:
    """Limits; None means unlimited / not set. Sizes in bytes, CPU as in docker (cpus = cores)."""

    memory: int | None = None
    memory_swap: int | None = None  # total memory+swap, -1 = unlimited swap
    memory_reservation: int | None = None
    cpus: float | None = None
    cpu_shares: int | None = None
    cpu_quota: int | None = None
    cpu_period: int | None = None
    cpuset_cpus: str | None = None
    cpuset_mems: str | None = None
    pids_limit: int | None = None


@dataclass(frozen=True, slots=True)
class Security:
    """Privileges of the container's processes."""

    privileged: bool = False
    cap_add: tuple[str, ...] = ()
    cap_drop: tuple[str, ...] = ()
    no_new_privileges: bool = False
    seccomp_profile: str | None = None  # None = default filter, "unconfined", or a JSON profile path
    read_only_rootfs: bool = False
    ulimits: tuple[tuple[str, int, int], ...] = ()  # (name, soft, hard)
    sysctls: tuple[tuple[str, str], ...] = ()
    oom_score_adj: int | None = None


@dataclass(frozen=True, slots=True)
class Process:
    """What runs as the container's main process (already resolved: entrypoint + command)."""

    args: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()
    user: str | None = None  # "name", "uid", "uid:gid", "name:group" — resolved in the container
    group_add: tuple[str, ...] = ()
    working_dir: str | None = None
    tty: bool = False
    stdin_open: bool = False
    init: bool = False


@dataclass(frozen=True, slots=True)
class ContainerSpec:
    """One container: image layers, process, isolation, mounts and identity."""

    id: str
    name: str
    image_id: str
    layer_dirs: tuple[str, ...]  # overlayfs lower dirs, top layer first
    process: Process
    hostname: str | None = None
    domainname: str | None = None
    mounts: tuple[Mount, ...] = ()
    resources: Resources = field(default_factory=Resources)
    security: Security = field(default_factory=Security)
    network_mode: str = "none"  # "none" | "host" (a later issue adds bridge networks)
    shm_size: int = 64 * 1024 * 1024
    stop_signal: str = "SIGTERM"
    stop_grace_period: float = 10.0
    extra_hosts: tuple[tuple[str, str], ...] = ()
    dns: tuple[str, ...] = ()
    dns_search: tuple[str, ...] = ()
    dns_options: tuple[str, ...] = ()
    labels: tuple[tuple[str, str], ...] = ()
