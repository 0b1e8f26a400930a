"""ProjectRunner: `up`, `create`, `down`, `scale`. CONTRACT (owner: engineer R1).

`up`: ensure networks (compose/plan/specs.network_specs; external ones must exist) and volumes (named:
created if missing, external must exist, a volume of another project with the same name is a warning like
docker compose's), images (pull or build per pull_policy, `--build`/`--no-build`/`--pull`; builds use
compose/build.py and run BEFORE any worker thread starts: the builder forks), check published host ports
(engine check_ports) before starting anything, then converge.plan_up and execute its generations: actions
of one generation in parallel (anyio, limited by `--parallel` / COMPOSE_PARALLEL_LIMIT), waiting for each
service's depends_on conditions (service_started, service_healthy — fail clearly when the dependency
becomes unhealthy or has no healthcheck —, service_completed_successfully; required: false). A recreate
creates the new container under a temporary name, stops and removes the old one, renames the new one
(docker compose's order), so a crash leaves at most one extra container the next `up` removes.
`--wait`: after starting, wait until every service is running/healthy (or exited 0 for one-shot
services) within `--wait-timeout`. Every step reports through events.Events.
`down`: reverse order stop + remove containers (orphans with --remove-orphans), remove the project's
networks (not external ones), `-v` named (not external) and anonymous volumes, `--rmi local|all`.
Never touches another project's containers (labels).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from compose.loader.pipeline import LoadedProject
from compose.run.events import Events


@dataclass(frozen=True, slots=True)
class UpRequest:
    services: tuple[str, ...] = ()
    detach: bool = True
    build: bool = False
    no_build: bool = False
    pull: str | None = None  # "always" | "missing" | "never" | None (pull_policy)
    force_recreate: bool = False
    no_recreate: bool = False
    no_deps: bool = False
    no_start: bool = False
    scale: tuple[tuple[str, int], ...] = ()
    remove_orphans: bool = False
    renew_anon_volumes: bool = False
    always_recreate_deps: bool = False
    wait: bool = False
    wait_timeout: float | None = None
    timeout: float | None = None  # stop timeout for recreated containers
    quiet_pull: bool = False


@dataclass(frozen=True, slots=True)
class DownRequest:
    remove_orphans: bool = False
    volumes: bool = False
    rmi: str | None = None  # "local" | "all"
    timeout: float | None = None
    services: tuple[str, ...] = ()


class ProjectRunner:
    def __init__(
        self, loaded: LoadedProject, engine: Any, events: Events, *, parallel: int | None = None
    ) -> None:
        self.loaded = loaded
        self.engine = engine
        self.events = events
        self.parallel = parallel

    def up(self, request: UpRequest) -> list[dict[str, Any]]:
        """Converge; returns the project's containers afterwards (records)."""
        raise NotImplementedError

    def create(self, request: UpRequest) -> list[dict[str, Any]]:
        """`up --no-start` (docker compose's `create`)."""
        raise NotImplementedError

    def down(self, request: DownRequest) -> None:
        raise NotImplementedError

    def scale(self, replicas: Sequence[tuple[str, int]], *, no_deps: bool = False) -> list[dict[str, Any]]:
        raise NotImplementedError
