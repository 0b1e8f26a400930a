"""start, stop, restart, pause, unpause, kill, rm of a project's existing containers. CONTRACT (owner: R5).

docker compose's semantics: `start` starts existing (stopped) containers of the services in dependency
order (and their dependencies' containers first); `stop`/`kill` in reverse order; `restart` = stop then
start, honouring `depends_on.restart: true` (dependents restarted too); `pause`/`unpause`; `rm` removes
stopped containers (`-f` without asking, `-s` stops first, `-v` anonymous volumes); one-off containers
only where docker compose includes them. Operations on one generation run in parallel (threads: engine
calls only, no forks). Each container reports through events (Stopping/Stopped, Starting/Started, ...).
A service with no container is an error for start ("no containers to start") as docker compose's.

Which containers each command sees, as docker compose (pkg/compose) does: one-off (`run`) containers
only for `kill`; containers of services no longer in the file (orphans) only for `kill
--remove-orphans`. Containers are found by Compose's labels, never by name.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from compose import labels as L
from compose.errors import ComposeError, InvalidProjectError
from compose.graph import Dependency, ServiceGraph
from compose.loader.pipeline import LoadedProject
from compose.run.events import Events
from compose.run.parallel import run_all

Record = dict[str, Any]
ACTIVE = ("running", "paused", "restarting")
"""States docker reports as `Running` (a paused container is still running): stop/kill act on them."""
POLL_SECONDS = 0.1


# -- public commands ------------------------------------------------------------------------------------


def start(
    loaded: LoadedProject,
    engine: Any,
    events: Events,
    services: Sequence[str] = (),
    *,
    parallel: int | None = None,
) -> None:
    """Start the stopped containers of `services` and of what they depend on, dependencies first; each
    service waits for its dependencies' conditions (healthy, completed) as `docker compose start`."""
    graph = _graph(loaded)
    selected = set(graph.subgraph(services).services) if services else set(graph.services)
    found = _by_service(_lookup(engine, loaded.name))
    for name in graph.start_order():
        if name in selected and not found.get(name) and _scale(loaded, name) != 0:
            raise ComposeError(f'service "{name}" has no container to start')

    def start_service(name: str) -> None:
        _wait_dependencies(engine, events, graph, name, found)
        stopped = [r for r in found.get(name, ()) if r["state"] not in ("running", "restarting")]
        broken = [r for r in stopped if not engine.container_intact(r["id"])]
        if broken:
            _recreate_half_made(loaded, engine, events, name, broken)
            return
        for record in stopped:
            _act(events, record, "Starting", "Started", lambda r: engine.start_container(r["id"]))

    for generation in graph.start_generations():
        run_all([n for n in generation if n in selected], start_service, parallel)


def stop(
    loaded: LoadedProject,
    engine: Any,
    events: Events,
    services: Sequence[str] = (),
    timeout: float | None = None,
    *,
    parallel: int | None = None,
) -> None:
    """Stop the containers of `services` (all when none; not their dependencies), dependents first."""
    graph = _graph(loaded)
    selected = _named(graph, services)
    found = _by_service(_lookup(engine, loaded.name))
    for generation in graph.stop_generations():
        records = [r for name in generation if name in selected for r in found.get(name, ())]
        run_all(records, lambda r: _stop_one(engine, events, r, timeout), parallel)


def restart(
    loaded: LoadedProject,
    engine: Any,
    events: Events,
    services: Sequence[str] = (),
    timeout: float | None = None,
    *,
    no_deps: bool = False,
    parallel: int | None = None,
) -> None:
    """Restart (stop, then start) the containers of `services` and, unless `no_deps`, of the services
    that depend on them with `restart: true`; in dependency order over those edges only (docker
    compose drops the other depends_on edges for a restart). Stopped containers are started too."""
    graph = _graph(loaded)
    _named(graph, services)
    edges = [dep for dep in graph.dependency_edges() if dep.restart]
    selected = restart_selection(graph.services, edges, services, no_deps=no_deps)
    found = _by_service(_lookup(engine, loaded.name))

    def restart_one(record: Record) -> None:
        def act(r: Record) -> None:
            engine.stop_container(r["id"], timeout)
            engine.start_container(r["id"])

        _act(events, record, "Restarting", "Started", act)

    def restart_service(name: str) -> None:
        _wait_dependencies(engine, events, graph, name, found, only=edges)
        run_all(found.get(name, []), restart_one, parallel)

    for generation in generations(selected, edges):
        run_all(generation, restart_service, parallel)


def pause(
    loaded: LoadedProject,
    engine: Any,
    events: Events,
    services: Sequence[str] = (),
    *,
    parallel: int | None = None,
) -> None:
    """Freeze the running containers of `services` (all when none), all at once; paused ones are left."""
    _each_in_state(loaded, engine, events, services, "running", "Paused", engine.pause_container, parallel)


def unpause(
    loaded: LoadedProject,
    engine: Any,
    events: Events,
    services: Sequence[str] = (),
    *,
    parallel: int | None = None,
) -> None:
    """Thaw the paused containers of `services` (all when none)."""
    _each_in_state(loaded, engine, events, services, "paused", "Unpaused", engine.unpause_container, parallel)


def _each_in_state(loaded, engine, events, services, state, status, action, parallel) -> None:  # type: ignore[no-untyped-def]
    """`action(id)` on every container of `services` in `state`, all at once, each reported as `status`."""
    selected = _named(_graph(loaded), services)
    records = [r for r in _lookup(engine, loaded.name, selected) if r["state"] == state]
    run_all(records, lambda r: _done(events, r, status, lambda: action(r["id"])), parallel)


def kill(
    loaded: LoadedProject,
    engine: Any,
    events: Events,
    services: Sequence[str] = (),
    signal: str = "SIGKILL",
    *,
    remove_orphans: bool = False,
    parallel: int | None = None,
) -> list[str]:
    """Send `signal` to the running containers of `services` (one-off ones included, orphans only with
    `remove_orphans`), dependents first. Returns the names signalled (the CLI says when there are none)."""
    graph = _graph(loaded)
    selected = _named(graph, services)
    records = [r for r in _lookup(engine, loaded.name, oneoff=None) if r["state"] in ACTIVE]
    records = [r for r in records if _service(r) in selected or (remove_orphans and _service(r) not in graph)]
    order = [[r for r in records if _service(r) not in graph]]
    order += [[r for r in records if _service(r) in gen] for gen in graph.stop_generations()]
    act = lambda r: _act(events, r, "Killing", "Killed", lambda c: engine.kill_container(c["id"], signal))  # noqa: E731
    for batch in order:
        run_all(batch, act, parallel)
    return [r["name"] for r in records]


def rm(
    loaded: LoadedProject,
    engine: Any,
    events: Events,
    services: Sequence[str] = (),
    *,
    stop_first: bool = False,
    volumes: bool = False,
    force: bool = False,
    timeout: float | None = None,
    confirm: Callable[[list[str]], bool] | None = None,
    parallel: int | None = None,
) -> list[str]:
    """Returns the names removed (the CLI asks for confirmation before, unless -f).

    `stop_first` stops the services first (as `stop`); then the stopped containers of `services` (all
    when none; one-offs and orphans excluded, as docker compose) are offered to `confirm` (not called
    when there are none), and removed in parallel if it agrees; `volumes` drops their anonymous volumes.
    """
    selected = _named(_graph(loaded), services)
    if stop_first:
        stop(loaded, engine, events, services, timeout, parallel=parallel)
    records = [r for r in _lookup(engine, loaded.name, selected) if r["state"] not in ACTIVE]
    names = [r["name"] for r in records]
    if not records or (confirm is not None and not confirm(names)):
        return []

    def remove(record: Record) -> None:
        call = lambda r: engine.remove_container(r["id"], force=force, volumes=volumes)  # noqa: E731
        _act(events, record, "Removing", "Removed", call)

    run_all(records, remove, parallel)
    return names


# -- ordering (pure) ------------------------------------------------------------------------------------


def restart_selection(
    services: Iterable[str], edges: Sequence[Dependency], named: Sequence[str], *, no_deps: bool = False
) -> set[str]:
    """What a restart of `named` touches: them and, through `restart: true` edges, every service that
    depends on them (transitively); all services when none is named."""
    if not named:
        return set(services)
    selected = set(named)
    if no_deps:
        return selected
    grew = True
    while grew:
        more = {dep.service for dep in edges if dep.restart and dep.depends_on in selected} - selected
        selected |= more
        grew = bool(more)
    return selected


def generations(nodes: Iterable[str], edges: Sequence[Dependency]) -> list[list[str]]:
    """Kahn's layers of `nodes` over the edges among them: each layer after what it depends on."""
    pending = set(nodes)
    needs: dict[str, set[str]] = {name: set() for name in pending}
    for dep in edges:
        if dep.service in pending and dep.depends_on in pending:
            needs[dep.service].add(dep.depends_on)
    layers: list[list[str]] = []
    while pending:
        ready = sorted(name for name in pending if not needs[name] & pending)
        if not ready:  # the loader rejects cycles; never spin on one
            raise InvalidProjectError(f"dependency cycle among {', '.join(sorted(pending))}")
        layers.append(ready)
        pending -= set(ready)
    return layers


# -- which containers -----------------------------------------------------------------------------------


def _graph(loaded: LoadedProject) -> ServiceGraph:
    return ServiceGraph(loaded.data.get("services") or {})


def _named(graph: ServiceGraph, services: Sequence[str]) -> set[str]:
    """The named services (all when none); an unknown name is docker compose's `no such service`."""
    for name in services:
        if name not in graph:
            raise InvalidProjectError(f"no such service: {name}")
    return set(services) if services else set(graph.services)


def _lookup(
    engine: Any, project: str, services: Iterable[str] | None = None, *, oneoff: bool | None = False
) -> list[Record]:
    """The project's containers (stopped ones too) by Compose's labels, of `services` when given, sorted
    by service then number."""
    from compose.run.observe import project_containers

    found = project_containers(engine, project, all=True, oneoff=oneoff)
    wanted = None if services is None else set(services)
    return [r for r in found if wanted is None or _service(r) in wanted]


def _by_service(records: Iterable[Record]) -> dict[str, list[Record]]:
    grouped: dict[str, list[Record]] = {}
    for record in records:
        grouped.setdefault(_service(record), []).append(record)
    return grouped


def _service(record: Record) -> str:
    return (record.get("labels") or {}).get(L.SERVICE, "")


def _scale(loaded: LoadedProject, name: str) -> int | None:
    """The replicas the file asks for (`scale`, else `deploy.replicas`), None when unsaid."""
    service = (loaded.data.get("services") or {}).get(name) or {}
    value = service.get("scale")
    if value is None:
        value = (service.get("deploy") or {}).get("replicas")
    return None if value is None else int(value)


# -- acting ---------------------------------------------------------------------------------------------


def _act(events: Events, record: Record, working: str, final: str, call: Callable[[Record], Any]) -> None:
    """One container's step with its two events; an engine failure is reported, then raised."""
    events.resource("Container", record["name"], working)
    try:
        call(record)
    except Exception as exc:
        events.resource("Container", record["name"], "Error", str(exc))
        raise
    events.resource("Container", record["name"], final)


def _done(events: Events, record: Record, final: str, call: Callable[[], Any]) -> None:
    """A step docker compose reports with its final state only (pause, unpause)."""
    try:
        call()
    except Exception as exc:
        events.resource("Container", record["name"], "Error", str(exc))
        raise
    events.resource("Container", record["name"], final)


def _recreate_half_made(
    loaded: LoadedProject, engine: Any, events: Events, service: str, broken: Sequence[Record]
) -> None:
    """A CLI killed during a create or a remove leaves a row with no files: it cannot start. As `up` does,
    remove it and let the executor create it afresh (and start the service's other stopped containers);
    `no_recreate` keeps every intact container as it is. Nothing is created when the row is still there
    (a --dry-run engine removes nothing)."""
    from compose.run.executor import ProjectRunner, UpRequest

    for record in broken:
        events.resource("Container", record["name"], "Recreate")
        engine.remove_container(record["id"], force=True)
    if any(_exists(engine, r["id"]) for r in broken):
        return
    runner = ProjectRunner(loaded, engine, events)
    runner.up(UpRequest(services=(service,), no_deps=True, no_recreate=True))


def _exists(engine: Any, ref: str) -> bool:
    from engine.errors import ContainerNotFound

    try:
        engine.get_container(ref)
    except ContainerNotFound:
        return False
    return True


def _stop_one(engine: Any, events: Events, record: Record, timeout: float | None) -> None:
    _act(events, record, "Stopping", "Stopped", lambda r: engine.stop_container(r["id"], timeout))


# -- depends_on conditions ------------------------------------------------------------------------------


def _wait_dependencies(
    engine: Any,
    events: Events,
    graph: ServiceGraph,
    name: str,
    found: Mapping[str, list[Record]],
    *,
    only: Sequence[Dependency] | None = None,
) -> None:
    """Block until every dependency of `name` meets its condition (docker compose's waitDependencies):
    service_healthy waits for `healthy` (fails when unhealthy or without a healthcheck),
    service_completed_successfully for an exit 0; service_started needs nothing more here."""
    for target in graph.dependencies(name):
        dep = graph.dependency(name, target)
        if dep is None or (only is not None and dep not in only):
            continue
        for record in found.get(target, ()):
            if dep.condition == "service_healthy":
                _wait_healthy(engine, events, record)
            elif dep.condition == "service_completed_successfully":
                _wait_completed(engine, events, record, target)


def _wait_healthy(engine: Any, events: Events, record: Record) -> None:
    events.resource("Container", record["name"], "Waiting")
    while True:
        doc = engine.inspect_container(record["id"])
        if not doc.get("Config", {}).get("Healthcheck"):
            raise ComposeError(f"container {record['name']} has no healthcheck configured")
        status = (doc["State"].get("Health") or {}).get("Status")
        if status == "healthy":
            events.resource("Container", record["name"], "Healthy")
            return
        if status == "unhealthy" or doc["State"]["Status"] in ("exited", "dead"):
            events.resource("Container", record["name"], "Error", "unhealthy")
            raise ComposeError(f"dependency failed to start: container {record['name']} is unhealthy")
        time.sleep(POLL_SECONDS)


def _wait_completed(engine: Any, events: Events, record: Record, service: str) -> None:
    events.resource("Container", record["name"], "Waiting")
    while True:
        current = engine.get_container(record["id"])
        if current["state"] in ("exited", "dead"):
            code = current.get("exit_code") or 0
            if code != 0:
                events.resource("Container", record["name"], "Error", f"exit {code}")
                raise ComposeError(f'service "{service}" didn\'t complete successfully: exit {code}')
            events.resource("Container", record["name"], "Exited")
            return
        time.sleep(POLL_SECONDS)
