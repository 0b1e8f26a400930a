"""ProjectRunner: `up`, `create`, `down`, `scale`. CONTRACT (owner: engineer R1).

`up`: ensure networks (compose/plan/specs.network_specs; external ones must exist) and volumes (named:
created if missing, external must exist, a volume of another project with the same name is a warning like
docker compose's), images (pull or build per pull_policy, `--build`/`--no-build`/`--pull`; builds use
compose/build.py and run BEFORE any worker thread starts: the builder forks), check published host ports
(engine check_ports) before starting anything, then converge.plan_up and execute its generations: actions
of one generation in parallel (threads: run/parallel.py; limited by `--parallel` / COMPOSE_PARALLEL_LIMIT),
waiting for each service's depends_on conditions (service_started, service_healthy — fail clearly when the
dependency becomes unhealthy or has no healthcheck —, service_completed_successfully; required: false).
`--wait`: after starting, wait until every service is running/healthy (or exited 0 for one-shot
services) within `--wait-timeout`. Every step reports through events.Events.
`down`: reverse order stop + remove containers (orphans with --remove-orphans), remove the project's
networks (not external ones), `-v` named (not external) and anonymous volumes, `--rmi local|all`.
Never touches another project's containers (labels).

Recreate: the engine has no rename, so the old container is stopped and removed first and the new one
created under the same name (docker compose creates the new one under a temporary name and renames it).
A crash in between leaves the number free; the next `up` creates it again. Either order leaves at most
one container per number after the next `up`.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from compose.errors import ComposeError, InvalidProjectError
from compose.labels import PROJECT, ProjectIdentity
from compose.loader.pipeline import LoadedProject
from compose.model import Project, Service
from compose.plan.converge import (
    Action,
    Observed,
    Plan,
    UpOptions,
    plan_down,
    plan_scale,
    plan_up,
    project_graph,
)
from compose.run import parallel
from compose.run.events import Events
from compose.run.observe import as_observed, project_containers
from engine.api import frozen

if TYPE_CHECKING:  # compose.plan.specs is loaded by what creates containers (~20 ms a `down` skips)
    from compose.plan.specs import ImageFacts

POLL = 0.05  # seconds between two looks at a dependency's state
STARTS = ("create", "recreate", "start", "restart")

# builds generations of services given their requests (the CLI renders progress; the default builds
# in-process, one after the other)
Builder = Callable[[list[list[str]], dict[str, Any]], None]


@frozen
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


@frozen
class DownRequest:
    remove_orphans: bool = False
    volumes: bool = False
    rmi: str | None = None  # "local" | "all"
    timeout: float | None = None
    services: tuple[str, ...] = ()


@dataclass
class _Run:
    """What one plan's execution needs and learns: image facts, hashes, the containers that exist."""

    facts: dict[str, ImageFacts] = field(default_factory=dict)
    hashes: dict[str, str] = field(default_factory=dict)
    # service -> number -> (name, id) of its live (non-removed) containers
    containers: dict[str, dict[int, tuple[str, str]]] = field(default_factory=dict)
    timeout: float | None = None
    no_start: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def placed(self) -> dict[str, tuple[tuple[str, str], ...]]:
        with self.lock:
            return {s: tuple(v for _, v in sorted(n.items())) for s, n in self.containers.items()}

    def set(self, service: str, number: int, value: tuple[str, str] | None) -> None:
        with self.lock:
            numbers = self.containers.setdefault(service, {})
            if value is None:
                numbers.pop(number, None)
            else:
                numbers[number] = value


class _LockedEvents:
    """Events from worker threads, one at a time: renderers need not be thread-safe."""

    def __init__(self, events: Events) -> None:
        self._events = events
        self._lock = threading.Lock()

    def resource(self, kind: str, name: str, status: str, detail: str = "") -> None:
        with self._lock:
            self._events.resource(kind, name, status, detail)

    def warning(self, message: str) -> None:
        with self._lock:
            self._events.warning(message)

    def close(self) -> None:
        with self._lock:
            self._events.close()


def up_options(request: UpRequest, disabled: Sequence[str] = ()) -> UpOptions:
    """The planner's options for an `up` request (`disabled`: services off by profile, never orphans)."""
    return UpOptions(
        services=request.services,
        scale=request.scale,
        force_recreate=request.force_recreate,
        no_recreate=request.no_recreate,
        no_deps=request.no_deps,
        always_recreate_deps=request.always_recreate_deps,
        remove_orphans=request.remove_orphans,
        no_start=request.no_start,
        disabled=tuple(disabled),
    )


class ProjectRunner:
    def __init__(
        self,
        loaded: LoadedProject,
        engine: Any,
        events: Events,
        *,
        parallel: int | None = None,
        builder: Builder | None = None,
        disabled: Sequence[str] = (),
    ) -> None:
        self.loaded = loaded
        self.engine = engine
        self.events = _LockedEvents(events)
        self.parallel = parallel
        self.builder = builder
        # services turned off by profiles are not orphans; the loader knows them
        self.disabled = tuple(disabled) or tuple(loaded.disabled_services)

    # -- properties of the project ------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.loaded.name

    @property
    def project(self) -> Project:
        return self.loaded.model

    @property
    def identity(self) -> ProjectIdentity:
        loaded = self.loaded
        return ProjectIdentity(loaded.name, loaded.working_dir, tuple(loaded.files), tuple(loaded.env_files))

    # -- up / create / scale ------------------------------------------------------------------------

    def up(self, request: UpRequest) -> list[dict[str, Any]]:
        """Converge; returns the project's containers afterwards (records)."""
        options = up_options(request, self.disabled)
        targets = self._targets(request.services, no_deps=request.no_deps)
        run = _Run(timeout=request.timeout, no_start=request.no_start)
        self._prepare(targets, run, request)
        observed = self._observed()
        plan = plan_up(self.project, observed, run.hashes, {s: f.id for s, f in run.facts.items()}, options)
        if plan.orphans and not request.remove_orphans:
            self.events.warning(orphan_warning(self.name, plan.orphans))
        if not request.no_start:
            self._check_ports(plan)  # before any network or volume is made: a clash leaves nothing behind
        self._resources(targets)
        self._execute(plan, run, observed)
        if request.wait and not request.no_start:
            self._wait_all(targets, request.wait_timeout)
        return project_containers(self.engine, self.name)

    def create(self, request: UpRequest) -> list[dict[str, Any]]:
        """`up --no-start` (docker compose's `create`)."""
        fields = {name: getattr(request, name) for name in UpRequest.__slots__}
        return self.up(UpRequest(**{**fields, "no_start": True, "wait": False}))

    def scale(self, replicas: Sequence[tuple[str, int]], *, no_deps: bool = False) -> list[dict[str, Any]]:
        """Only the named services' replica counts change (their dependencies are started unless no_deps)."""
        wanted = dict(replicas)
        if not no_deps:
            graph = project_graph(self.project)
            names = [n for n in graph.subgraph(list(wanted)).services if n not in wanted]
            if names:
                self.up(UpRequest(services=tuple(names), no_deps=True, no_recreate=True))
        run = _Run()
        self._prepare(list(wanted), run, UpRequest())
        observed = self._observed()
        plan = plan_scale(self.project, observed, wanted)
        self._check_ports(plan)
        self._resources(list(wanted))
        self._execute(plan, run, observed)
        return project_containers(self.engine, self.name)

    # -- down ---------------------------------------------------------------------------------------

    def down(self, request: DownRequest) -> None:
        observed = self._observed(oneoff=None)
        if request.services:
            wanted = set(request.services)
            observed = [c for c in observed if c.service in wanted]
        self._execute(self._plan_down(observed, request), _Run(timeout=request.timeout), observed)
        if request.services:
            return
        self._remove_networks()
        if request.volumes:
            self._remove_volumes()
        if request.rmi:
            self._remove_images(request.rmi, observed)

    def _plan_down(self, observed: Sequence[Observed], request: DownRequest) -> Plan:
        """What `down` removes (containers of services no longer in the file are orphans: a warning)."""
        plan = plan_down(
            self.project, observed, remove_orphans=request.remove_orphans, disabled=self.disabled
        )
        if plan.orphans and not request.remove_orphans:
            self.events.warning(orphan_warning(self.name, plan.orphans))
        return plan

    # -- preparation: images, networks, volumes (single-threaded) ------------------------------------

    def _targets(self, services: Sequence[str], *, no_deps: bool) -> list[str]:
        """The services `up` converges, in start order (names plus dependencies unless no_deps)."""
        graph = project_graph(self.project)
        if not services:
            return graph.start_order()
        order = graph.subgraph(services).start_order()
        return [n for n in order if n in set(services)] if no_deps else order

    def _prepare(self, targets: Sequence[str], run: _Run, request: UpRequest) -> None:
        """Images (builds fork: no worker thread may exist yet), their facts and the config hashes."""
        if not run.no_start:
            self.engine.warm_supervisor()  # launched, not awaited: it overlaps the images, plan and creates
        self._images(targets, request)
        by_reference: dict[str, ImageFacts] = {}
        for name in targets:
            facts = image_facts(self.engine, self.project, self.project.services[name], by_reference)
            run.facts[name] = by_reference[facts.reference] = facts
            run.hashes[name] = service_hash(self.loaded, name)

    def _resources(self, targets: Sequence[str]) -> None:
        """The networks and volumes the containers need, once the plan is known to be startable."""
        self._networks(targets)
        self._volumes()

    def _images(self, targets: Sequence[str], request: UpRequest) -> None:
        from compose.build import build_order, build_request, check_sources, image_name, needs_build

        to_build: list[str] = []
        pulled: set[str] = set()
        presence: dict[str, bool] = {}  # services sharing an image look it up once
        for name in targets:
            service = self.project.services[name]
            reference = image_name(self.name, service)
            if reference not in presence:
                presence[reference] = self.engine.image_exists(reference)
            present = presence[reference]
            if needs_build(service, present=present, build=request.build, no_build=request.no_build):
                to_build.append(name)
            elif self._should_pull(service, present, request.pull):
                if reference not in pulled:
                    pulled.add(reference)
                    self._pull(reference, service)
            elif not present:
                why = "--no-build was given" if service.build is not None else "pull_policy forbids a pull"
                raise InvalidProjectError(f"no such image: {reference} ({why})", path=("services", name))
        if not to_build:
            return
        generations = build_order(self.loaded, to_build)
        requests = {n: build_request(self.loaded, self.project.services[n]) for g in generations for n in g}
        check_sources(requests)
        (self.builder or self._build_inline)(generations, requests)

    def _should_pull(self, service: Service, present: bool, override: str | None) -> bool:
        """docker compose's per-service pull decision at `up` (`--pull` overrides pull_policy)."""
        from datetime import UTC, datetime

        from compose.cli.commands.project_images import pull_decision

        policy = override or service.pull_policy or "missing"
        if policy == "build":
            return False
        if service.build is not None and policy == "missing":
            return False  # a buildable service builds what is missing
        reference = service.image or ""
        last = self.engine.last_pulled(reference) if present and reference else None
        return pull_decision(policy, present=present, last_pulled=last, now=datetime.now(UTC))[0]

    def _pull(self, reference: str, service: Service) -> None:
        self.events.resource("Image", reference, "Pulling")
        try:
            self.engine.pull_image(reference, platform=service.platform)
        except Exception as exc:
            self.events.resource("Image", reference, "Error", str(exc))
            raise
        self.events.resource("Image", reference, "Pulled")

    def _build_inline(self, generations: list[list[str]], requests: Mapping[str, Any]) -> None:
        for generation in generations:
            for name in generation:
                tag = requests[name].tags[0] if requests[name].tags else name
                self.events.resource("Image", tag, "Building")
                self.engine.build_image(requests[name])
                self.events.resource("Image", tag, "Built")

    def _networks(self, targets: Sequence[str]) -> None:
        """Create the networks the target services use; external ones must exist."""
        from compose.plan.specs import network_names, network_specs

        used = {key for name in targets for key in self.project.services[name].networks}
        names = network_names(self.project)
        existing = {n.name: n for n in self.engine.list_networks()}
        specs = network_specs(self.project, self.identity)
        for key in sorted(used):
            if key not in specs:
                if names.get(key, key) not in existing:
                    raise InvalidProjectError(
                        f"network {names.get(key, key)} declared as external, but could not be found"
                    )
                continue
            spec = specs[key]
            if spec.name in existing and not self._renew_unused(existing[spec.name]):
                continue
            self.events.resource("Network", spec.name, "Creating")
            self.engine.create_network(spec)
            self.events.resource("Network", spec.name, "Created")

    def _renew_unused(self, network: Any) -> bool:
        """Remove a network of this project that no container uses, so it is made afresh: the engine's
        create is not atomic, and a CLI killed during it leaves a recorded network without its bridge.
        True when it was removed (a network in use is kept)."""
        from engine.errors import NetworkInUse, NetworkNotFound

        if dict(network.spec.labels).get(PROJECT) != self.name:
            return False
        try:
            self.engine.remove_network(network.id)
        except NetworkInUse:
            return False
        except NetworkNotFound:
            return True
        return True

    def _volumes(self) -> None:
        """Create the project's named volumes; external ones must exist."""
        from compose.plan.specs import volume_requests
        from engine.errors import VolumeNotFound

        for request in volume_requests(self.project, self.identity).values():
            try:
                found = self.engine.inspect_volume(request.name)
            except VolumeNotFound:
                found = None
            if request.external:
                if found is None:
                    raise InvalidProjectError(f"external volume {request.name!r} not found")
                continue
            if found is not None:
                owner = (found.get("Labels") or {}).get(PROJECT)
                if owner and owner != self.name:
                    self.events.warning(
                        f'volume "{request.name}" already exists but was created for project "{owner}" '
                        f'(expected "{self.name}"). Use `external: true` to use an existing volume'
                    )
                continue
            self.events.resource("Volume", request.name, "Creating")
            self.engine.create_volume(
                request.name,
                driver=request.driver,
                driver_opts=dict(request.driver_opts),
                labels=dict(request.labels),
            )
            self.events.resource("Volume", request.name, "Created")

    def _observed(self, oneoff: bool | None = None) -> list[Observed]:
        return [as_observed(r) for r in project_containers(self.engine, self.name, oneoff=oneoff)]

    def _check_ports(self, plan: Plan) -> None:
        """Fixed host ports of the containers about to start must be free (PortInUse before any start)."""
        from compose.plan.specs import _port_binding

        bindings = [
            _port_binding(port)
            for generation in plan.generations
            for action in generation
            if action.kind in ("create", "start")
            for port in self.project.services[action.service].ports
        ]
        if bindings:
            self.engine.check_ports(bindings)

    # -- execution ----------------------------------------------------------------------------------

    def _execute(self, plan: Plan, run: _Run, observed: Iterable[Observed]) -> None:
        """Generation after generation; in one, services in parallel (threads), each after its
        dependencies; engine calls limited by --parallel across services. After a failure, actions not
        yet begun are skipped and the first failure is raised once the running ones are done."""
        for c in observed:
            if not c.oneoff:
                run.set(c.service, c.number, (c.name, c.id))
        if all(sum(a.kind != "keep" for a in g) <= 1 for g in plan.generations):
            self._one_at_a_time(plan, run)  # nothing runs side by side: no threads
            return
        gate = threading.BoundedSemaphore(parallel.thread_limit(self.parallel))
        halt = parallel.Halt()
        for generation in plan.generations:
            by_service: dict[str, list[Action]] = {}
            for action in generation:
                by_service.setdefault(action.service, []).append(action)

            def service_step(item: tuple[str, list[Action]]) -> None:
                self._service(item[0], item[1], run, gate, halt)

            parallel.run_all(list(by_service.items()), halt.guard(service_step))

    def _one_at_a_time(self, plan: Plan, run: _Run) -> None:
        """What `_execute` does when each generation holds one action at most (a stack whose services
        depend on each other in a chain, as LNMP's), in this thread."""
        for generation in plan.generations:
            for action in generation:
                if self._starts_service(action.service, [action], run):
                    self._wait_dependencies(action.service)
                self._act(action, run)

    def _service(
        self, service: str, actions: list[Action], run: _Run, gate: threading.Semaphore, halt: parallel.Halt
    ) -> None:
        """One service of a generation: its dependencies' conditions, then its actions side by side."""
        if self._starts_service(service, actions, run):
            self._wait_dependencies(service)

        def act(action: Action) -> None:
            self._act(action, run)

        parallel.run_all(actions, halt.guard(parallel.limited(gate, act)), self.parallel)

    def _starts_service(self, service: str, actions: Sequence[Action], run: _Run) -> bool:
        """Whether these actions start a container of a service of the project (it waits for its
        dependencies' conditions first)."""
        starts = any(a.kind in STARTS for a in actions) and not run.no_start
        return starts and service in self.project.services

    def _act(self, action: Action, run: _Run) -> None:
        """One action, in a worker thread: engine calls and their events."""
        do = {
            "create": self._create,
            "recreate": self._recreate,
            "start": self._start_existing,
            "restart": self._restart,
            "keep": self._keep,
            "remove": self._remove,
        }[action.kind]
        do(action, run)

    def _create(self, action: Action, run: _Run) -> None:
        from compose.plan.specs import Placement, container_spec

        service = self.project.services[action.service]
        placement = Placement(
            action.number, run.facts[action.service], run.hashes[action.service], containers=run.placed()
        )
        spec = container_spec(self.project, service, placement, self.identity)
        self.events.resource("Container", spec.name, "Creating")
        record = self.engine.create_container(spec)
        run.set(action.service, action.number, (record["name"], record["id"]))
        self.events.resource("Container", spec.name, "Created")
        if not run.no_start:
            self._start(record["name"], record["id"])

    def _recreate(self, action: Action, run: _Run) -> None:
        from compose.plan.specs import Placement, container_spec

        old = action.container
        assert old is not None
        self.events.resource("Container", old.name, "Recreate")
        if old.state in ("running", "restarting", "paused"):
            self.engine.stop_container(old.id, run.timeout)
        self.engine.remove_container(old.id, force=True)
        run.set(old.service, old.number, None)
        service = self.project.services[action.service]
        placement = Placement(
            action.number, run.facts[action.service], run.hashes[action.service], containers=run.placed()
        )
        record = self.engine.create_container(container_spec(self.project, service, placement, self.identity))
        run.set(action.service, action.number, (record["name"], record["id"]))
        self.events.resource("Container", record["name"], "Recreated")
        if not run.no_start:
            self._start(record["name"], record["id"])

    def _start_existing(self, action: Action, run: _Run) -> None:
        """A stopped container starts again, unless a CLI killed during its create or remove left only its
        row (no files, no network endpoints): that one is removed and created afresh."""
        assert action.container is not None
        if not self.engine.container_intact(action.container.id):
            self._recreate(action, run)
            return
        self._start(action.container.name, action.container.id)

    def _start(self, name: str, cid: str) -> None:
        self.events.resource("Container", name, "Starting")
        self.engine.start_container(cid)
        self.events.resource("Container", name, "Started")

    def _restart(self, action: Action, run: _Run) -> None:
        c = action.container
        assert c is not None
        self.events.resource("Container", c.name, "Restarting")
        self.engine.stop_container(c.id, run.timeout)
        self.engine.start_container(c.id)
        self.events.resource("Container", c.name, "Restarted")

    def _keep(self, action: Action, run: _Run) -> None:
        c = action.container
        assert c is not None
        status = "Running" if c.state in ("running", "restarting", "paused") else "Created"
        self.events.resource("Container", c.name, status)

    def _remove(self, action: Action, run: _Run) -> None:
        c = action.container
        assert c is not None
        if c.state in ("running", "restarting", "paused"):
            self.events.resource("Container", c.name, "Stopping")
            self.engine.stop_container(c.id, run.timeout)
            self.events.resource("Container", c.name, "Stopped")
        self.events.resource("Container", c.name, "Removing")
        self.engine.remove_container(c.id, force=True, volumes=True)
        run.set(c.service, c.number, None)
        self.events.resource("Container", c.name, "Removed")

    # -- depends_on conditions ----------------------------------------------------------------------

    def _wait_dependencies(self, service: str) -> None:
        """Block until every dependency of `service` meets its condition (compose's waitDependencies)."""
        graph = project_graph(self.project)
        for dep in graph.dependencies(service):
            edge = graph.dependency(service, dep)
            condition = edge.condition if edge is not None else "service_started"
            records = project_containers(self.engine, self.name, services=[dep])
            if not records:
                if edge is not None and not edge.required:
                    self.events.warning(f"optional dependency {dep!r} of {service!r} is not running: skipped")
                continue
            for record in records:
                wait_condition(self.engine, self.events, dep, record, condition)

    def _wait_all(self, targets: Sequence[str], timeout: float | None) -> None:
        """`--wait`: every target container running (healthy when it has a healthcheck) or exited 0."""
        deadline = None if not timeout else time.monotonic() + timeout
        for name in targets:
            for record in project_containers(self.engine, self.name, services=[name]):
                wait_ready(self.engine, self.events, name, record, deadline)

    # -- down: networks, volumes, images ------------------------------------------------------------

    def _remove_networks(self) -> None:
        """The project's networks, found by their project label (never another project's, never external)."""
        for network in self.engine.list_networks():
            if dict(network.spec.labels).get(PROJECT) != self.name:
                continue
            self.events.resource("Network", network.name, "Removing")
            self.engine.remove_network(network.id)
            self.events.resource("Network", network.name, "Removed")

    def _remove_volumes(self) -> None:
        from compose.plan.specs import volume_requests
        from engine.errors import VolumeNotFound

        for request in volume_requests(self.project, self.identity).values():
            if request.external:
                continue
            try:
                self.events.resource("Volume", request.name, "Removing")
                self.engine.remove_volume(request.name, force=True)
            except VolumeNotFound:
                continue
            self.events.resource("Volume", request.name, "Removed")

    def _remove_images(self, which: str, observed: Sequence[Observed]) -> None:
        from compose.build import image_name

        refs = {
            image_name(self.name, s) for s in self.project.services.values() if which == "all" or not s.image
        }
        self._remove_image_refs(refs)

    def _remove_image_refs(self, refs: Iterable[str]) -> None:
        from engine.errors import ImageInUse, ImageNotFound

        for ref in sorted(refs):
            try:
                self.engine.remove_image(ref)
            except ImageNotFound:
                continue
            except ImageInUse as exc:
                self.events.warning(str(exc))
                continue
            self.events.resource("Image", ref, "Removed")


class LabelsOnlyRunner(ProjectRunner):
    """`down -p NAME` with no Compose file: the project is only what its labels say (containers,
    networks, volumes of that name), as docker compose does."""

    def __init__(self, name: str, engine: Any, events: Events, *, parallel: int | None = None) -> None:
        # no LoadedProject to hand to ProjectRunner.__init__: what down needs, set here
        self.loaded = None  # type: ignore[assignment]
        self.engine, self.events, self.parallel = engine, _LockedEvents(events), parallel
        self.builder, self.disabled = None, ()
        self._name = name

    @property
    def name(self) -> str:
        return self._name

    @property
    def project(self) -> Project:
        raise InvalidProjectError(f"no Compose file for project {self._name!r}: only `down` works by name")

    def _plan_down(self, observed: Sequence[Observed], request: DownRequest) -> Plan:
        """Every container carrying the project's label goes (no file: nothing is an orphan)."""
        return plan_down(None, observed, remove_orphans=request.remove_orphans)

    def _remove_volumes(self) -> None:
        """Volumes carrying this project's label (named ones; anonymous went with their containers)."""
        from engine.errors import VolumeNotFound

        for volume in self.engine.list_volumes():
            if dict(volume.labels or {}).get(PROJECT) != self._name:
                continue
            try:
                self.events.resource("Volume", volume.name, "Removing")
                self.engine.remove_volume(volume.name, force=True)
            except VolumeNotFound:
                continue
            self.events.resource("Volume", volume.name, "Removed")

    def _remove_images(self, which: str, observed: Sequence[Observed]) -> None:
        """`--rmi all`: the images the containers ran; `local`: those named as compose names builds."""
        if which == "all":
            refs = {c.image_id for c in observed if c.image_id}
        else:
            refs = {f"{self._name}-{c.service}" for c in observed}
        self._remove_image_refs(refs)


# -- helpers (pure or engine-reading) ----------------------------------------------------------------


def orphan_warning(project: str, orphans: Sequence[Observed]) -> str:
    """docker compose's words for containers of services the file no longer has."""
    names = ", ".join(sorted({c.service for c in orphans}))
    return (
        f"Found orphan containers ([{names}]) for this project. If you removed or renamed this service "
        "in your compose file, you can run this command with the --remove-orphans flag to clean it up."
    )


def service_hash(loaded: LoadedProject, name: str) -> str:
    from compose.hashing import service_config_hash

    return service_config_hash(loaded.data["services"][name])


def image_facts(
    engine: Any, project: Project, service: Service, known: Mapping[str, ImageFacts] | None = None
) -> ImageFacts:
    """The image a service's containers run: its id and the Entrypoint/Cmd argv is resolved against
    (`known`: facts already looked up, by reference)."""
    from compose.build import image_name
    from compose.plan.specs import ImageFacts

    reference = image_name(project.name, service)
    if known and reference in known:
        return known[reference]
    image = engine.inspect_image(reference)
    config = (image.config or {}).get("config") or {}
    entrypoint, cmd = config.get("Entrypoint"), config.get("Cmd")
    return ImageFacts(
        image.id,
        reference,
        tuple(entrypoint) if entrypoint is not None else None,
        tuple(cmd) if cmd is not None else None,
    )


def health_of(record: Mapping[str, Any]) -> str | None:
    """The health status the supervisor recorded (starting/healthy/unhealthy), None without one."""
    raw = record.get("health")
    if not raw:
        return None
    return str(json.loads(raw).get("Status") or "") or None


def has_healthcheck(engine: Any, cid: str) -> bool:
    test = (engine.inspect_container(cid).get("Config") or {}).get("Healthcheck") or {}
    return bool(test.get("Test")) and test["Test"][0] != "NONE"


def wait_condition(engine: Any, events: Events, service: str, record: dict[str, Any], condition: str) -> None:
    """Block until one dependency container meets `condition`; ComposeError when it never can."""
    name = record["name"]
    if condition == "service_healthy":
        if not has_healthcheck(engine, record["id"]):
            raise ComposeError(f"dependency failed to start: container {name} has no healthcheck configured")
        events.resource("Container", name, "Waiting")
        _poll(engine, record["id"], lambda r: _healthy(name, r), None)
        events.resource("Container", name, "Healthy")
    elif condition == "service_completed_successfully":
        events.resource("Container", name, "Waiting")
        code = _poll(engine, record["id"], lambda r: _exited(service, r), None)
        events.resource("Container", name, "Exited", str(code))


def wait_ready(
    engine: Any, events: Events, service: str, record: dict[str, Any], deadline: float | None
) -> None:
    """`up --wait` for one container: healthy, running, or exited 0."""
    name = record["name"]
    events.resource("Container", name, "Waiting")
    if has_healthcheck(engine, record["id"]):
        _poll(engine, record["id"], lambda r: _healthy(name, r), deadline)
        events.resource("Container", name, "Healthy")
        return
    _poll(engine, record["id"], lambda r: _running_or_done(service, r), deadline)
    events.resource("Container", name, "Running" if _live(engine, record["id"]) else "Exited")


def _live(engine: Any, cid: str) -> bool:
    return engine.get_container(cid)["state"] in ("running", "restarting", "paused")


def _poll(engine: Any, cid: str, check: Callable[[dict[str, Any]], Any], deadline: float | None) -> Any:
    """Look at the container until `check` returns something other than None (it raises on failure)."""
    while True:
        result = check(engine.get_container(cid))
        if result is not None:
            return result
        if deadline is not None and time.monotonic() > deadline:
            record = engine.get_container(cid)
            health = health_of(record)
            state = f"{record['state']} ({health})" if health else record["state"]
            raise ComposeError(
                f"container {record['name']} is not ready after --wait-timeout (still {state}): "
                "timeout waiting for the project to be running|healthy"
            )
        time.sleep(POLL)


def _healthy(name: str, record: Mapping[str, Any]) -> bool | None:
    status = health_of(record)
    if status == "healthy":
        return True
    if status == "unhealthy":
        raise ComposeError(f"dependency failed to start: container {name} is unhealthy")
    if record["state"] in ("exited", "dead"):
        raise ComposeError(f"dependency failed to start: container {name} exited ({record['exit_code']})")
    return None


def _exited(service: str, record: Mapping[str, Any]) -> int | None:
    if record["state"] not in ("exited", "dead"):
        return None
    code = record["exit_code"] or 0
    if code != 0:
        raise ComposeError(f'service "{service}" didn\'t complete successfully: exit {code}')
    return code


def _running_or_done(service: str, record: Mapping[str, Any]) -> bool | None:
    if record["state"] == "running":
        return True
    if record["state"] in ("exited", "dead"):
        return _exited(service, record) is not None
    return None
