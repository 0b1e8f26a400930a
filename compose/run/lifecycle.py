"""start, stop, restart, pause, unpause, kill, rm of a project's existing containers. CONTRACT (owner: R5).

docker compose's semantics: `start` starts existing (stopped) containers of the services in dependency
order (and their dependencies' containers first); `stop`/`kill` in reverse order; `restart` = stop then
start, honouring `depends_on.restart: true` (dependents restarted too); `pause`/`unpause`; `rm` removes
stopped containers (`-f` without asking, `-s` stops first, `-v` anonymous volumes); one-off containers
only where docker compose includes them. Operations on one generation run in parallel (threads: engine
calls only, no forks). Each container reports through events (Stopping/Stopped, Starting/Started, ...).
A service with no container is an error for start ("no containers to start") as docker compose's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from compose.loader.pipeline import LoadedProject
from compose.run.events import Events


def start(loaded: LoadedProject, engine: Any, events: Events, services: Sequence[str] = ()) -> None:
    raise NotImplementedError


def stop(
    loaded: LoadedProject,
    engine: Any,
    events: Events,
    services: Sequence[str] = (),
    timeout: float | None = None,
) -> None:
    raise NotImplementedError


def restart(
    loaded: LoadedProject,
    engine: Any,
    events: Events,
    services: Sequence[str] = (),
    timeout: float | None = None,
) -> None:
    raise NotImplementedError


def pause(loaded: LoadedProject, engine: Any, events: Events, services: Sequence[str] = ()) -> None:
    raise NotImplementedError


def unpause(loaded: LoadedProject, engine: Any, events: Events, services: Sequence[str] = ()) -> None:
    raise NotImplementedError


def kill(
    loaded: LoadedProject, engine: Any, events: Events, services: Sequence[str] = (), signal: str = "SIGKILL"
) -> None:
    raise NotImplementedError


def rm(
    loaded: LoadedProject,
    engine: Any,
    events: Events,
    services: Sequence[str] = (),
    *,
    stop_first: bool = False,
    volumes: bool = False,
) -> list[str]:
    """Returns the names removed (the CLI asks for confirmation before, unless -f)."""
    raise NotImplementedError
