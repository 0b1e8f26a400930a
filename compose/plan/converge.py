"""What `up`, `down` and `scale` must do, decided up front. Pure: no engine, no clock, no randomness.

The rules are docker compose's (pkg/compose/convergence.go `ensureService`/`mustRecreate`, create.go,
down.go, scale.go; cmd/compose/up.go recreate strategies), restated here as what this module does:

Selection
- `up` with no service names converges every service; with names, those plus their dependencies
  (transitively; a `required: false` dependency on an absent service is dropped by ServiceGraph), or
  only the names with `--no-deps`. Services outside the selection are not touched at all.
- Replicas: `--scale svc=N` (last one wins), else `deploy.replicas`, else `scale`, else 1
  (`Service.replicas`). `container_name` with more than one replica is an error, as in docker compose.

Recreate strategy per service (docker's Recreate / RecreateDependencies)
- named services (all of them when none is named): `never` with `--no-recreate`, `force` with
  `--force-recreate`, else `diverged`;
- dependencies pulled in by the names: `never` with `--no-recreate`, `force` with
  `--always-recreate-deps`, else `diverged`.
- `diverged` recreates a container whose config hash or image id differs from the wanted one.

Per service (its non-one-off containers only; one-off `run` containers are never replicas)
- containers are ranked: up-to-date before obsolete, then by number (then running first, then id);
  one container per number is a candidate (other holders of a number - left by a crash between
  create and rename - are removed, reason "duplicate number");
- the first N candidates stay; the rest are removed ("scaled down"): obsolete ones first, then the
  highest numbers, as docker compose does;
- a staying container is recreated (same number) when obsolete; `dead` is always obsolete, even with
  `--no-recreate`, because a dead container cannot be started (docker would try and fail);
- otherwise: `running` and `restarting` (the supervisor is at it) are kept; `paused` is kept paused
  (docker compose would try to start it and fail; compose v1 left it alone too); `created` and
  `exited` are started, or kept with `--no-start`;
- missing replicas are created with the lowest free numbers (docker compose uses max+1: we differ on
  purpose so that numbers stay dense, `up --scale 3` after a crash fills 1..3 again).

Across services (decided in dependency order)
- a service that joins another's namespace (`network_mode`/`ipc`/`pid`/`uts`/`cgroup: service:X`) or
  mounts its volumes (`volumes_from: X`) uses X's lowest-numbered container; when that container is new
  (created or recreated) the joiner is recreated too. docker compose gets the same effect because the
  resolved container id goes into the joiner's config hash; our hashes are of the file, so we say it.
- `depends_on: {X: {restart: true}}`: when X has a container recreated, the dependent's kept running
  (or paused/restarting) containers get a `restart` action (docker stops them, then its start phase
  starts them again). Not with `--no-start` (we leave them running rather than stopped).

Orphans
- project containers (not one-off) of services absent from the file and not `disabled` (services the
  file has but profiles turned off: docker compose does not count them as orphans either) are listed;
  with `--remove-orphans` they are removed in a first generation, before anything is created.

Down
- every non-one-off container of the project's services is removed, in reverse dependency order;
  `--remove-orphans` also removes one-off containers and orphans (last generation). Without a project
  (`down -p NAME`) all containers named by the labels go, in one generation (no dependency data).

Action kinds: create, recreate, start, restart, keep, remove. `remove` means stop (if needed) then
remove; `recreate` means create the replacement, stop and remove the old one, give it the number's name.
Each generation's actions touch different containers and may run in parallel.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace

from compose.errors import InvalidProjectError, UsageError
from compose.graph import NAMESPACE_KEYS, ServiceGraph, namespace_target, volumes_from_target
from compose.model import Project, Service
from engine.api import frozen

NEVER, DIVERGED, FORCE = "never", "diverged", "force"
_RUNNING_RANK = {"running": 0, "restarting": 1, "paused": 2, "created": 3, "exited": 4, "dead": 5}
_LIVE = ("running", "restarting", "paused")


@frozen
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


@frozen
class Action:
    kind: str  # "create" | "recreate" | "start" | "restart" | "keep" | "stop" | "remove"
    service: str
    number: int
    container: Observed | None = None  # the existing one (recreate, start, keep, stop, remove)
    reason: str = ""  # "config changed", "image changed", "forced", "scaled down", "orphan", ...


@frozen
class UpOptions:
    services: tuple[str, ...] = ()  # empty = all
    scale: tuple[tuple[str, int], ...] = ()
    force_recreate: bool = False
    no_recreate: bool = False
    no_deps: bool = False
    always_recreate_deps: bool = False
    remove_orphans: bool = False
    no_start: bool = False
    disabled: tuple[str, ...] = ()  # services of the file turned off by profiles: not orphans


@frozen
class Plan:
    generations: tuple[tuple[Action, ...], ...]  # dependency order; each one's actions independent
    orphans: tuple[Observed, ...]


@frozen
class _Target:
    """What one service must end up as."""

    name: str
    count: int
    strategy: str
    config_hash: str | None
    image_id: str | None
    no_start: bool


# --- entry points ----------------------------------------------------------------------------------

_PLAIN_UP = UpOptions()  # `up` without flags


def plan_up(
    project: Project,
    observed: Sequence[Observed],
    hashes: Mapping[str, str],
    images: Mapping[str, str],
    options: UpOptions = _PLAIN_UP,
) -> Plan:
    """`hashes`/`images`: per service, the config hash and image id a container must have to be kept
    (a service missing from either is not compared on that point)."""
    if options.force_recreate and options.no_recreate:
        raise UsageError("--force-recreate and --no-recreate are incompatible")
    graph = project_graph(project)
    named = _check_names(graph, options.services) or tuple(graph.services)
    targets = set(named) if options.no_deps else set(graph.subgraph(named).services)
    counts = _counts(project, targets, options.scale)
    wanted = {
        name: _Target(
            name,
            counts[name],
            _strategy(options, dependency=name not in named),
            hashes.get(name),
            images.get(name),
            options.no_start,
        )
        for name in targets
    }
    per_service = _converge_all(project, graph, wanted, _by_service(observed), no_start=options.no_start)
    orphans = _orphans(project, observed, options.disabled)
    first = tuple(_orphan_removals(orphans)) if options.remove_orphans else ()
    generations = [first, *_ordered(graph.start_generations(), per_service)]
    return Plan(_nonempty(generations), orphans)


def plan_down(
    project: Project | None,
    observed: Sequence[Observed],
    *,
    remove_orphans: bool = False,
    disabled: Iterable[str] = (),
) -> Plan:
    """Stop and remove in reverse dependency order (project None: only what the labels say, as `down -p`)."""
    mine = [c for c in observed if remove_orphans or not c.oneoff]
    if project is None:
        removals = [_remove(c, "down") for c in sorted(mine, key=_container_key)]
        return Plan(_nonempty([tuple(removals)]), ())
    graph = project_graph(project)
    per_service: dict[str, list[Action]] = {}
    for c in mine:
        if c.service in project.services:
            per_service.setdefault(c.service, []).append(_remove(c, "down"))
    orphans = _orphans(project, observed, tuple(disabled))
    last = ()
    if remove_orphans:
        known = set(project.services) | set(disabled)
        leftovers = [c for c in mine if c.oneoff and c.service not in known]
        last = tuple(_orphan_removals([*orphans, *leftovers]))
    generations = [*_ordered(graph.stop_generations(), per_service), last]
    return Plan(_nonempty(generations), orphans)


def plan_scale(project: Project, observed: Sequence[Observed], scale: Mapping[str, int]) -> Plan:
    """`pycompose scale svc=N`: only those services' replica counts change.

    No hashes are given, so nothing is recreated for its config (only dead containers, which cannot
    start); stopped replicas within the count are started; dependencies are not touched.
    """
    graph = project_graph(project)
    names = _check_names(graph, tuple(scale))
    counts = _counts(project, set(names), tuple(scale.items()))
    wanted = {n: _Target(n, counts[n], NEVER, None, None, no_start=False) for n in names}
    per_service = _converge_all(project, graph, wanted, _by_service(observed), no_start=False)
    return Plan(_nonempty(_ordered(graph.start_generations(), per_service)), ())


def project_graph(project: Project) -> ServiceGraph:
    """The dependency graph of the project's services (the canonical dicts are what ServiceGraph reads).

    The last project's graph is kept: an `up` asks once per service (each waits for its dependencies),
    and making the dicts of every service each time cost ~5 ms per ask with 20 services."""
    cached = _LAST_GRAPH.get("project")
    if cached is not None and cached[0] is project:
        return cached[1]
    graph = ServiceGraph({name: svc.to_dict() for name, svc in project.services.items()})
    _LAST_GRAPH["project"] = (project, graph)
    return graph


_LAST_GRAPH: dict[str, tuple[Project, ServiceGraph]] = {}


# --- selection and counts --------------------------------------------------------------------------


def _check_names(graph: ServiceGraph, names: Iterable[str]) -> tuple[str, ...]:
    """The names, each checked against the project (docker compose: `no such service: x`)."""
    names = tuple(dict.fromkeys(names))
    for name in names:
        if name not in graph:
            raise InvalidProjectError(f"no such service: {name}")
    return names


def _counts(project: Project, targets: set[str], scale: Iterable[tuple[str, int]]) -> dict[str, int]:
    """Wanted replicas per target: --scale (last wins) over the file's replicas."""
    override: dict[str, int] = {}
    for name, count in scale:
        if name not in project.services:
            raise InvalidProjectError(f"no such service: {name}")
        if count < 0:
            raise UsageError(f"invalid scale for service {name}: {count} (must be 0 or more)")
        override[name] = count
    counts = {name: override.get(name, project.services[name].replicas) for name in targets}
    for name, count in counts.items():
        _check_container_name(project.services[name], count)
    return counts


def _check_container_name(service: Service, count: int) -> None:
    """A fixed container name cannot be given to two containers."""
    if count > 1 and service.container_name:
        raise InvalidProjectError(
            f'the "{service.name}" service uses the custom container name "{service.container_name}"; '
            "a container name must be unique: remove the custom name to scale the service",
            path=("services", service.name, "container_name"),
        )


def _strategy(options: UpOptions, *, dependency: bool) -> str:
    """docker compose's recreateStrategy / dependenciesRecreateStrategy."""
    if options.no_recreate:
        return NEVER
    if options.always_recreate_deps if dependency else options.force_recreate:
        return FORCE
    return DIVERGED


# --- one service -----------------------------------------------------------------------------------


def _obsolete(c: Observed, target: _Target) -> str:
    """Why `c` must be replaced under the target's strategy, or "" when it can stay."""
    if c.state == "dead":
        return "dead"
    if target.strategy == NEVER:
        return ""
    if target.strategy == FORCE:
        return "forced"
    if target.config_hash is not None and c.config_hash != target.config_hash:
        return "config changed"
    if target.image_id is not None and c.image_id != target.image_id:
        return "image changed"
    return ""


def _lowest_free(used: set[int], count: int) -> list[int]:
    """The `count` smallest positive numbers not in `used`."""
    free, n = [], 1
    while len(free) < count:
        if n not in used:
            free.append(n)
        n += 1
    return free


def converge_service(target: _Target, containers: Sequence[Observed]) -> list[Action]:
    """The actions that turn one service's containers into `target.count` up-to-date replicas."""
    reasons = {c.id: _obsolete(c, target) for c in containers}
    ranked = sorted(
        containers,
        key=lambda c: (bool(reasons[c.id]), c.number, _RUNNING_RANK.get(c.state, 9), c.id),
    )
    actions: list[Action] = []
    candidates: list[Observed] = []
    seen: set[int] = set()
    for c in ranked:
        if c.number in seen or c.number < 1:
            actions.append(_remove(c, "duplicate number"))
        else:
            seen.add(c.number)
            candidates.append(c)
    for c in candidates[target.count :]:
        actions.append(_remove(c, "scaled down"))
    staying = candidates[: target.count]
    actions.extend(_stay(c, reasons[c.id], target.no_start) for c in staying)
    used = {c.number for c in staying}
    for number in _lowest_free(used, target.count - len(staying)):
        actions.append(Action("create", target.name, number, reason="missing"))
    return actions


def _stay(c: Observed, obsolete: str, no_start: bool) -> Action:
    """A container that stays: recreated, started, or left as it is."""
    if obsolete:
        return Action("recreate", c.service, c.number, c, obsolete)
    if c.state in ("created", "exited") and not no_start:
        return Action("start", c.service, c.number, c, c.state)
    return Action("keep", c.service, c.number, c, c.state)


def _remove(c: Observed, reason: str) -> Action:
    return Action("remove", c.service, c.number, c, reason)


# --- across services -------------------------------------------------------------------------------


def _converge_all(
    project: Project,
    graph: ServiceGraph,
    wanted: Mapping[str, _Target],
    observed: Mapping[str, list[Observed]],
    *,
    no_start: bool,
) -> dict[str, list[Action]]:
    """Every target's actions, decided in start order so joiners and restarts see their dependencies'."""
    done: dict[str, list[Action]] = {}
    for name in graph.start_order():
        if name not in wanted:
            continue
        actions = converge_service(wanted[name], observed.get(name, ()))
        actions = _follow_joined(project.services[name], actions, done)
        if not no_start:
            actions = _follow_restarts(graph, name, actions, done)
        done[name] = actions
    return done


def joined_services(service: Service) -> list[str]:
    """Services whose container this one joins: namespace `service:X` modes and `volumes_from: X`."""
    joined = [namespace_target(getattr(service, key)) for key in NAMESPACE_KEYS]
    joined += [volumes_from_target(entry) for entry in service.volumes_from]
    return list(dict.fromkeys(j for j in joined if j))


def _joined_is_new(name: str, done: Mapping[str, list[Action]]) -> bool:
    """Is X's lowest-numbered container (the one joiners use) new after this plan?

    X outside the plan keeps what it has; X planned with no container left cannot be joined."""
    if name not in done:
        return False
    final = [a for a in done[name] if a.kind != "remove"]
    if not final:
        raise InvalidProjectError(f"cannot share the namespace of service {name}: it has no container")
    return min(final, key=lambda a: a.number).kind in ("create", "recreate")


def _follow_joined(
    service: Service,
    actions: list[Action],
    done: Mapping[str, list[Action]],
) -> list[Action]:
    """Recreate a joiner whose joined container is new (its namespace or volumes went with the old one)."""
    if not any(a.kind != "remove" for a in actions):
        return actions
    new = [x for x in joined_services(service) if _joined_is_new(x, done)]
    if not new:
        return actions
    reason = f"{new[0]} recreated"
    return [
        replace(a, kind="recreate", reason=reason) if a.kind in ("keep", "start", "restart") else a
        for a in actions
    ]


def _follow_restarts(
    graph: ServiceGraph, name: str, actions: list[Action], done: Mapping[str, list[Action]]
) -> list[Action]:
    """`restart: true` dependencies that get a container recreated restart this service's live ones."""
    recreated = [
        dep
        for dep in graph.dependencies(name)
        if dep in done
        and (edge := graph.dependency(name, dep)) is not None
        and edge.restart
        and any(a.kind == "recreate" for a in done[dep])
    ]
    if not recreated:
        return actions
    reason = f"{recreated[0]} recreated"
    return [
        replace(a, kind="restart", reason=reason)
        if a.kind == "keep" and a.container is not None and a.container.state in _LIVE
        else a
        for a in actions
    ]


# --- orphans, grouping, ordering -------------------------------------------------------------------


def _orphans(project: Project, observed: Sequence[Observed], disabled: Iterable[str]) -> tuple[Observed, ...]:
    """Non-one-off project containers of services the file does not have (disabled ones excepted)."""
    known = set(project.services) | set(disabled)
    return tuple(sorted((c for c in observed if not c.oneoff and c.service not in known), key=_container_key))


def _orphan_removals(containers: Iterable[Observed]) -> list[Action]:
    return [_remove(c, "orphan") for c in sorted(containers, key=_container_key)]


def _by_service(observed: Sequence[Observed]) -> dict[str, list[Observed]]:
    """Non-one-off containers grouped by service: one-off `run` containers are never replicas."""
    groups: dict[str, list[Observed]] = {}
    for c in observed:
        if not c.oneoff:
            groups.setdefault(c.service, []).append(c)
    return groups


def _container_key(c: Observed) -> tuple[str, int, str]:
    return (c.service, c.number, c.id)


def _action_key(a: Action) -> tuple[str, int, str, str]:
    return (a.service, a.number, a.kind, a.container.id if a.container else "")


def _ordered(
    generations: Iterable[Iterable[str]], per_service: Mapping[str, list[Action]]
) -> list[tuple[Action, ...]]:
    """Actions grouped by the graph's generations, sorted inside each for a stable plan."""
    out = []
    for generation in generations:
        actions = [a for name in generation for a in per_service.get(name, ())]
        out.append(tuple(sorted(actions, key=_action_key)))
    return out


def _nonempty(generations: Iterable[tuple[Action, ...]]) -> tuple[tuple[Action, ...], ...]:
    return tuple(g for g in generations if g)
