"""What `up`, `down` and `scale` must do. CONTRACT (owner: engineer C2). Pure.

docker compose's convergence (pkg/compose/convergence.go, create.go, down.go), decided up front:
- per service, the wanted replica count (`scale`, `deploy.replicas`, `--scale`, 0 for a service whose
  profile is inactive is not a service at all);
- existing containers of the service (by labels) are kept when their config hash and image id match,
  recreated when either differs (or `--force-recreate`; never with `--no-recreate`), started when stopped;
  missing numbers are created (the lowest free numbers first); surplus replicas removed, highest numbers
  first; containers whose dependency is recreated are recreated with `--always-recreate-deps`;
- `--no-deps` limits the plan to the named services; otherwise named services pull in their dependencies;
- orphans (project containers of services no longer in the file) are listed, and removed only with
  `--remove-orphans`; one-off (`run`) containers are never orphans of `up`;
- generations: services in dependency order (compose/graph.py), each generation's actions can run in
  parallel; `down` is the reverse order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from compose.model import Project


@dataclass(frozen=True, slots=True)
class Observed:
    """A container of the project as the engine lists it."""

    id: str
    name: str
    service: str
    number: int
    config_hash: str
    image_id: str
    state: str  # created | running | paused | restarting | exited | dead
    oneoff: bool = False


@dataclass(frozen=True, slots=True)
class Action:
    kind: str  # "create" | "recreate" | "start" | "keep" | "stop" | "remove"
    service: str
    number: int
    container: Observed | None = None  # the existing one (recreate, start, keep, stop, remove)
    reason: str = ""  # "config changed", "image changed", "forced", "scaled down", "orphan", ...


@dataclass(frozen=True, slots=True)
class UpOptions:
    services: tuple[str, ...] = ()  # empty = all
    scale: tuple[tuple[str, int], ...] = ()
    force_recreate: bool = False
    no_recreate: bool = False
    no_deps: bool = False
    always_recreate_deps: bool = False
    remove_orphans: bool = False
    no_start: bool = False


@dataclass(frozen=True, slots=True)
class Plan:
    generations: tuple[tuple[Action, ...], ...]  # dependency order; each one's actions independent
    orphans: tuple[Observed, ...]


def plan_up(
    project: Project,
    observed: Sequence[Observed],
    hashes: Mapping[str, str],
    images: Mapping[str, str],
    options: UpOptions = UpOptions(),
) -> Plan:
    """`hashes`/`images`: per service, the config hash and image id a container must have to be kept."""
    raise NotImplementedError


def plan_down(project: Project | None, observed: Sequence[Observed], *, remove_orphans: bool = False) -> Plan:
    """Stop and remove in reverse dependency order (project None: only what the labels say, as `down -p`)."""
    raise NotImplementedError


def plan_scale(project: Project, observed: Sequence[Observed], scale: Mapping[str, int]) -> Plan:
    """`pycompose scale svc=N`: only those services' replica counts change."""
    raise NotImplementedError
