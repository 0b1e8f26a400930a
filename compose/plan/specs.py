"""Compose service -> engine ContainerSpec (and network/volume specs). CONTRACT (owner: engineer C1). Pure.

Every field of a service that a container needs is translated exactly as docker compose does
(compose's `pkg/compose/create.go` getCreateConfigs/getHostConfig, and compose-go's types): names
(`<project>-<service>-<n>`, `container_name`), hostname/domainname, user, working_dir, environment
(already resolved by the loader), entrypoint/command (None = image's; [] = empty; the engine merges with
the image config), tty/stdin_open/init, labels (compose/labels.py), restart and deploy.restart_policy,
healthcheck (disable/NONE), logging, stop_signal/stop_grace_period, resources (mem_limit, memswap_limit,
mem_reservation, cpus, cpu_shares, cpu_quota/period, cpuset, pids_limit, deploy.resources limits and
reservations, shm_size), security (privileged, cap_add/drop, security_opt: no-new-privileges, seccomp,
label/apparmor accepted; read_only, ulimits, sysctls, oom_score_adj), mounts (volumes long syntax:
volume/bind/tmpfs with their options, anonymous volumes, named volumes mapped to their engine names,
`tmpfs:` entries, volumes_from -> container ids), networking (network_mode: bridge with the service's
networks in priority order and aliases = [service name, *aliases], ipv4/ipv6/mac/link_local; host; none;
service:NAME / container:NAME -> "container:<id>"), ports (long syntax -> PortBinding, ranges expanded),
expose, extra_hosts, dns/dns_search/dns_opt, links (-> (container name of the target's first replica,
alias)), group_add.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from compose.labels import ProjectIdentity
from compose.model import Project, Service
from engine.api import ContainerSpec, NetworkSpec


@dataclass(frozen=True, slots=True)
class ImageFacts:
    """The image a container runs, as the engine knows it."""

    id: str
    reference: str  # what the service asked for (or `<project>-<service>` for a build)


@dataclass(frozen=True, slots=True)
class Placement:
    """What only the executor knows when it creates container `number` of a service."""

    number: int
    image: ImageFacts
    config_hash: str
    oneoff: bool = False
    # service name -> container name / id of its replicas that exist (links, volumes_from, service: modes)
    containers: Mapping[str, tuple[tuple[str, str], ...]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class VolumeRequest:
    """A top-level volume as the engine must create it (or find it, when external)."""

    key: str
    name: str
    driver: str = "local"
    driver_opts: tuple[tuple[str, str], ...] = ()
    labels: tuple[tuple[str, str], ...] = ()
    external: bool = False


def container_name(project: Project, service: Service, number: int, *, oneoff_slug: str | None = None) -> str:
    """`container_name`, else `<project>-<service>-<number>` (one-off: `<project>-<service>-run-<slug>`)."""
    raise NotImplementedError


def network_names(project: Project) -> dict[str, str]:
    """Network key -> engine name: `name:` if set, else `<project>_<key>` (external: `name` or the key)."""
    raise NotImplementedError


def network_specs(project: Project, identity: ProjectIdentity) -> dict[str, NetworkSpec]:
    """The networks `up` creates (external ones left out), with Compose's labels."""
    raise NotImplementedError


def volume_requests(project: Project, identity: ProjectIdentity) -> dict[str, VolumeRequest]:
    raise NotImplementedError


def container_spec(
    project: Project, service: Service, placement: Placement, identity: ProjectIdentity
) -> ContainerSpec:
    """The engine spec of container `placement.number` of `service` (id left empty: the engine assigns)."""
    raise NotImplementedError
