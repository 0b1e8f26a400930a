"""The service dependency graph: who must start before whom.

Two layers, so that `config -q` stays fast:
- `find_cycle` and `service_dependencies` are plain Python (no networkx), used by `loader.validate`.
- `ServiceGraph` answers the planner (generations, reverse order, closures) from two adjacency dicts and
  the standard library's `graphlib`. networkx is kept only behind `as_networkx()`, for analyses no command
  runs: importing it costs 75-200 ms on this VM (`python -X importtime`), and importing just
  `networkx.algorithms.dag` is no cheaper, because every networkx submodule first imports the whole
  package. graphlib costs well under 1 ms. Tests compare both paths on random graphs.

Edges come from `depends_on` plus the implicit dependencies docker compose derives (compose-go
`normalize.go`): `links`, `network_mode`/`ipc`/`pid`/`uts`/`cgroup` "service:x" (restart: true) and
`volumes_from` "x" (restart: false). After normalize they are already in `depends_on`; reading them again
here keeps the graph right when normalization was skipped (`config --no-normalize`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from compose.errors import DependencyCycleError, InvalidProjectError
from engine.api import frozen

if TYPE_CHECKING:  # pragma: no cover - typing only
    import networkx

SERVICE_PREFIX = "service:"
CONTAINER_PREFIX = "container:"
NAMESPACE_KEYS = ("network_mode", "ipc", "pid", "uts", "cgroup")
"""Service attributes whose "service:x" value joins a namespace of x, so x must run first."""

DEFAULT_CONDITION = "service_started"


@frozen
class Dependency:
    """One edge: `service` needs `depends_on` to be in state `condition` before it starts."""

    service: str
    depends_on: str
    condition: str = DEFAULT_CONDITION
    required: bool = True
    restart: bool = False
    origin: tuple[str | int, ...] = ()
    """Where the edge is written inside the service, e.g. ("links", 0) or ("network_mode",); empty for
    `depends_on`. normalize copies links & co. into depends_on, so an implicit origin wins: it is
    the text the user actually wrote."""

    @property
    def source(self) -> str:
        """The attribute that declares the edge: depends_on, links, network_mode, volumes_from..."""
        return str(self.origin[0]) if self.origin else "depends_on"

    @property
    def path(self) -> tuple[str | int, ...]:
        """The key path of the declaration, for error messages."""
        return ("services", self.service, *(self.origin or ("depends_on", self.depends_on)))


# --- plain helpers (no networkx) -------------------------------------------------------------------


def link_target(link: str) -> str:
    """`links` entries are "svc" or "svc:alias"; the service is the part before the colon."""
    return link.split(":", 1)[0]


def volumes_from_target(entry: str) -> str | None:
    """`volumes_from` entries are "svc[:ro|rw]" or "container:name[:mode]"; only the former is a service."""
    if entry.startswith(CONTAINER_PREFIX):
        return None
    return entry.split(":", 1)[0] or None


def namespace_target(value: Any) -> str | None:
    """The service named by a "service:x" namespace value, else None."""
    if isinstance(value, str) and value.startswith(SERVICE_PREFIX):
        return value[len(SERVICE_PREFIX) :] or None
    return None


def implicit_dependencies(service: Mapping[str, Any]) -> Iterator[tuple[str, tuple[str | int, ...], bool]]:
    """Yield (target, origin inside the service, restart) for dependencies implied by other attributes."""
    for i, link in enumerate(service.get("links") or ()):
        if isinstance(link, str) and link:
            yield link_target(link), ("links", i), True
    for key in NAMESPACE_KEYS:
        target = namespace_target(service.get(key))
        if target:
            yield target, (key,), True
    for i, entry in enumerate(service.get("volumes_from") or ()):
        target = volumes_from_target(entry) if isinstance(entry, str) else None
        if target:
            yield target, ("volumes_from", i), False


def service_dependencies(name: str, service: Mapping[str, Any]) -> dict[str, Dependency]:
    """All dependencies of one service, explicit first; implicit ones only fill gaps (as normalize does)."""
    implicit: dict[str, tuple[tuple[str | int, ...], bool]] = {}
    for target, origin, restart in implicit_dependencies(service):
        implicit.setdefault(target, (origin, restart))
    deps: dict[str, Dependency] = {}
    depends_on = service.get("depends_on") or {}
    if isinstance(depends_on, list):  # not canonicalized: plain list of names
        depends_on = {dep: {} for dep in depends_on}
    for target, spec in depends_on.items():
        spec = spec or {}
        deps[target] = Dependency(
            service=name,
            depends_on=target,
            condition=spec.get("condition", DEFAULT_CONDITION),
            required=bool(spec.get("required", True)),
            restart=bool(spec.get("restart", False)),
            origin=implicit.get(target, ((), False))[0],
        )
    for target, (origin, restart) in implicit.items():
        if target not in deps:
            deps[target] = Dependency(name, target, restart=restart, origin=origin)
    return deps


def find_cycle(edges: Mapping[str, Iterable[str]]) -> list[str] | None:
    """The first dependency cycle, as [a, b, ..., a], or None.

    Deterministic like compose-go's `graph.CheckCycle`: start nodes and children are visited in name
    order, so the same file always reports the same cycle. Iterative DFS with three colours, so it is
    linear in the graph size and safe from Python's recursion limit. Targets without their own entry
    in `edges` are leaves.
    """
    children = {node: sorted(set(targets)) for node, targets in edges.items()}
    done: set[str] = set()
    for start in sorted(children):
        if start in done:
            continue
        path = [start]
        on_path = {start: 0}
        stack = [iter(children.get(start, ()))]
        while stack:
            child = next(stack[-1], None)
            if child is None:
                stack.pop()
                finished = path.pop()
                del on_path[finished]
                done.add(finished)
                continue
            if child in on_path:
                return [*path[on_path[child] :], child]
            if child in done:
                continue
            on_path[child] = len(path)
            path.append(child)
            stack.append(iter(children.get(child, ())))
    return None


def dependency_map(services: Mapping[str, Mapping[str, Any]]) -> dict[tuple[str, str], Dependency]:
    """(service, dependency) -> edge, for every dependency on a service that exists in `services`."""
    return {
        (name, target): dep
        for name, svc in services.items()
        for target, dep in service_dependencies(name, svc or {}).items()
        if target in services
    }


def cycle_error(cycle: list[str], deps: Mapping[tuple[str, str], Dependency]) -> DependencyCycleError:
    """The error for `cycle`, pointing at the attribute that declared its first edge."""
    dep = deps.get((cycle[0], cycle[1])) or Dependency(cycle[0], cycle[1])
    return DependencyCycleError(cycle, path=dep.path)


def check_cycles(services: Mapping[str, Mapping[str, Any]]) -> None:
    """Raise DependencyCycleError if the services depend on each other in a circle."""
    deps = dependency_map(services)
    edges: dict[str, list[str]] = {name: [] for name in services}
    for service, target in deps:
        edges[service].append(target)
    cycle = find_cycle(edges)
    if cycle:
        raise cycle_error(cycle, deps)


# --- the graph the planner uses --------------------------------------------------------------------


class ServiceGraph:
    """Services and their dependency edges; answers ordering and closure questions for the planner.

    Edges to services that are not in the project are dropped when `required: false` (docker compose
    does the same) and are an InvalidProjectError otherwise. Cycles raise DependencyCycleError.
    Stored as two adjacency dicts (needs / needed-by); `as_networkx` builds a networkx copy on demand.
    """

    def __init__(self, services: Mapping[str, Mapping[str, Any]]) -> None:
        deps: dict[tuple[str, str], Dependency] = {}
        for name, svc in services.items():
            for target, dep in service_dependencies(name, svc or {}).items():
                if target in services:
                    deps[(name, target)] = dep
                elif dep.required:
                    raise InvalidProjectError(
                        f'service "{name}" depends on undefined service "{target}"', path=dep.path
                    )
        self._init(list(services), deps)

    @classmethod
    def _from_parts(cls, nodes: Iterable[str], deps: Mapping[tuple[str, str], Dependency]) -> ServiceGraph:
        """Build without re-reading service dicts (used by `subgraph`)."""
        graph = cls.__new__(cls)
        graph._init(list(nodes), dict(deps))
        return graph

    def _init(self, nodes: list[str], deps: dict[tuple[str, str], Dependency]) -> None:
        """Check for cycles (cheap, deterministic), then index the edges both ways."""
        needs: dict[str, set[str]] = {node: set() for node in nodes}
        needed_by: dict[str, set[str]] = {node: set() for node in nodes}
        for service, target in deps:
            needs[service].add(target)
            needed_by[target].add(service)
        cycle = find_cycle(needs)
        if cycle:
            raise cycle_error(cycle, deps)
        self._deps = deps
        self._needs = needs
        self._needed_by = needed_by

    # -- basic queries --

    @property
    def services(self) -> list[str]:
        """All service names, sorted."""
        return sorted(self._needs)

    def __contains__(self, name: object) -> bool:
        return name in self._needs

    def __len__(self) -> int:
        return len(self._needs)

    def _require(self, name: str) -> None:
        if name not in self._needs:
            raise InvalidProjectError(f"no such service: {name}")

    def dependencies(self, name: str, *, transitive: bool = False) -> list[str]:
        """What `name` needs started first (direct, or the whole closure), sorted."""
        self._require(name)
        return sorted(_reachable(self._needs, name) if transitive else self._needs[name])

    def dependents(self, name: str, *, transitive: bool = False) -> list[str]:
        """What needs `name` (direct, or the whole closure), sorted; these stop before `name`."""
        self._require(name)
        return sorted(_reachable(self._needed_by, name) if transitive else self._needed_by[name])

    def dependency(self, service: str, depends_on: str) -> Dependency | None:
        """The edge `service` -> `depends_on` with its condition/required/restart, if any."""
        return self._deps.get((service, depends_on))

    def dependency_edges(self) -> list[Dependency]:
        """Every edge, sorted by (service, depends_on)."""
        return [self._deps[key] for key in sorted(self._deps)]

    # -- ordering --

    def start_generations(self) -> list[list[str]]:
        """Topological generations: each list can start in parallel once the previous ones are up."""
        from graphlib import TopologicalSorter

        sorter = TopologicalSorter(self._needs)
        sorter.prepare()  # the graph is acyclic: _init checked
        generations: list[list[str]] = []
        while sorter.is_active():
            ready = sorter.get_ready()
            generations.append(sorted(ready))
            sorter.done(*ready)  # the whole generation at once, so the next one is exactly its dependents
        return generations

    def stop_generations(self) -> list[list[str]]:
        """Dependents stop before what they depend on: the start generations reversed."""
        return list(reversed(self.start_generations()))

    def start_order(self) -> list[str]:
        """One valid sequential start order (generations flattened)."""
        return [name for gen in self.start_generations() for name in gen]

    # -- selection --

    def subgraph(self, services: Iterable[str]) -> ServiceGraph:
        """These services and everything they need, transitively (what `up web` starts)."""
        keep: set[str] = set()
        for name in services:
            self._require(name)
            keep.add(name)
            keep |= _reachable(self._needs, name)
        nodes = [node for node in self._needs if node in keep]
        deps = {key: dep for key, dep in self._deps.items() if key[0] in keep and key[1] in keep}
        return ServiceGraph._from_parts(nodes, deps)

    def as_networkx(self) -> networkx.DiGraph:
        """A networkx copy (edges dependency -> dependent, attribute `dependency`), for rare analyses.

        The only place networkx is imported: building it costs its ~150 ms import, which no command pays.
        """
        import networkx as nx

        graph: networkx.DiGraph = nx.DiGraph()
        graph.add_nodes_from(self._needs)
        for (service, target), dep in self._deps.items():
            graph.add_edge(target, service, dependency=dep)
        return graph


def _reachable(adjacency: Mapping[str, Iterable[str]], start: str) -> set[str]:
    """Every node reachable from `start` (not `start` itself, the graph being acyclic)."""
    found: set[str] = set()
    todo = list(adjacency[start])
    while todo:
        node = todo.pop()
        if node not in found:
            found.add(node)
            todo.extend(adjacency[node])
    return found
