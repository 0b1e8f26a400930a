"""The typed description of one container, as the Compose half hands it to the engine.

Everything Compose-specific (service names, config hashes) has already been turned into plain values
and labels; the engine only sees what to run and how to isolate it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, field
from typing import Any

from engine.frozen import frozen

# deploy.restart_policy: (condition, delay seconds, max_attempts, window seconds); None = not set
RestartPolicy = tuple[str, float | None, int | None, float | None]
# healthcheck: (test, interval, timeout, start_period, start_interval, retries); seconds, None = default
Healthcheck = tuple[tuple[str, ...], float | None, float | None, float | None, float | None, int | None]


@frozen
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


@frozen
class NetworkAttachment:
    """One network the container joins (bridge mode), in priority order: the first gives the default route."""

    network: str  # the engine network's name or id (compose: "<project>_default")
    aliases: tuple[str, ...] = ()  # DNS names in this network (compose puts the service name first)
    ipv4_address: str | None = None  # static address; None = allocated from the network's range
    ipv6_address: str | None = None
    mac_address: str | None = None
    link_local_ips: tuple[str, ...] = ()
    priority: int = 0


@frozen
class PortBinding:
    """One published port (compose expands ranges into one binding per container port)."""

    container_port: int
    protocol: str = "tcp"  # "tcp" | "udp" | "sctp"
    host_ip: str = ""  # "" = every address of the host (0.0.0.0, and :: where IPv6 is on)
    host_port: int = 0  # 0 = a random free port from the host's ephemeral range
    host_port_end: int = 0  # "8000-8010:80": the first free port in [host_port, host_port_end]


@frozen
class NetworkSetup:
    """What the network side prepared for one start (engine/net): spawn joins it, rootfs writes it out.

    Not part of the spec (it is runtime state): the addresses are allocated when the container starts.
    """

    netns_path: str  # a bind-mounted network namespace file (or /proc/<pid>/ns/net for container:)
    hosts: tuple[tuple[str, str], ...] = ()  # (address, "name alias ...") lines added to /etc/hosts
    nameservers: tuple[str, ...] = ()  # our DNS responder's addresses; empty = the host's resolvers


@frozen
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


@frozen
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


@frozen
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


@frozen
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
    network_mode: str = "none"  # "none" | "host" | "bridge" | "container:<id or name>"
    networks: tuple[NetworkAttachment, ...] = ()  # bridge mode: the networks joined, in priority order
    ports: tuple[PortBinding, ...] = ()
    expose: tuple[str, ...] = ()  # recorded only ("80/tcp")
    links: tuple[tuple[str, str], ...] = ()  # (container name, alias): the alias resolves to that container
    shm_size: int = 64 * 1024 * 1024
    stop_signal: str = "SIGTERM"
    stop_grace_period: float = 10.0
    extra_hosts: tuple[tuple[str, str], ...] = ()
    dns: tuple[str, ...] = ()
    dns_search: tuple[str, ...] = ()
    dns_options: tuple[str, ...] = ()
    labels: tuple[tuple[str, str], ...] = ()
    image: str | None = None  # the reference the user asked for ("busybox:latest"), for inspect and ls
    log_driver: str = "json-file"
    log_options: tuple[tuple[str, str], ...] = ()
    restart: str = "no"  # docker's policy: no | always | unless-stopped | on-failure[:N]
    restart_policy: RestartPolicy | None = None
    healthcheck: Healthcheck | None = None
    # (container id or name, "ro" | "rw"): manager.create copies that container's volume and bind mounts
    volumes_from: tuple[tuple[str, str], ...] = ()

    def to_json(self) -> str:
        """Stable JSON for the `containers.spec` column (tuples become lists, keys sorted)."""
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> ContainerSpec:
        """The inverse of to_json; unknown keys (from a newer pycompose) are refused, not dropped."""
        data = json.loads(text)
        data["process"] = Process(**_tuples(data["process"]))
        data["resources"] = Resources(**data.get("resources", {}))
        data["security"] = Security(**_tuples(data.get("security", {})))
        data["mounts"] = tuple(Mount(**_tuples(m)) for m in data.get("mounts", ()))
        data["networks"] = tuple(NetworkAttachment(**_tuples(n)) for n in data.get("networks", ()))
        data["ports"] = tuple(PortBinding(**_tuples(b)) for b in data.get("ports", ()))
        rest = {k: _tuples(v) for k, v in data.items() if k not in _NESTED}
        return cls(**{k: data[k] for k in _NESTED}, **rest)


_NESTED = ("process", "resources", "security", "mounts", "networks", "ports")


def _tuples(value: Any) -> Any:
    """JSON lists back to the tuples the frozen (hashable) dataclasses hold, at every depth."""
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    if isinstance(value, dict):
        return {k: _tuples(v) for k, v in value.items()}
    return value
