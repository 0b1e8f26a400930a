"""One-off containers (`run`) and finding a service's container (`exec`, `cp`, `attach`).

A one-off is the service's container spec (compose/plan/specs.container_spec with Placement(oneoff=True,
slug)) with docker compose run's changes: the command (and --entrypoint) replaces the service's; -e, -u,
-w, -l, -v are added; no published ports unless --service-ports (and -p adds its own); no restart policy;
the name `<project>-<service>-run-<slug>` unless --name. Its dependencies are started first unless
--no-deps, through ProjectRunner.up (which awaits their depends_on conditions).

Attached, the engine starts it under a waiter process of the CLI (engine.api run_container_attached: the
terminal is its stdio); detached (-d), the supervisor starts it like any container. All through engine.api.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shlex
from collections.abc import Sequence
from dataclasses import field
from typing import Any

from compose.errors import ComposeError, UsageError
from compose.labels import PROJECT, SERVICE, ProjectIdentity, project_filter
from compose.loader.pipeline import LoadedProject
from compose.model import Service
from compose.plan.specs import (
    ImageFacts,
    Placement,
    container_spec,
    network_specs,
    volume_name,
    volume_requests,
)
from compose.run.observe import container_number
from engine.api import ContainerSpec, Mount, PortBinding, frozen


@frozen
class RunRequest:
    """`pycompose run`'s options, as docker compose names them."""

    service: str
    command: tuple[str, ...] = ()
    entrypoint: str | None = None
    detach: bool = False
    remove: bool = False
    no_deps: bool = False
    service_ports: bool = False
    use_aliases: bool = False
    interactive: bool = True
    tty: bool = False
    env: tuple[str, ...] = ()
    volumes: tuple[str, ...] = ()
    publish: tuple[str, ...] = ()
    name: str | None = None
    user: str | None = None
    workdir: str | None = None
    labels: tuple[str, ...] = ()
    slug: str = field(default_factory=lambda: os.urandom(6).hex())


# -- the one-off's spec (pure, unit tested) -------------------------------------------------------------


def oneoff_service(service: Service, request: RunRequest) -> Service:
    """The service as `run` changes it before its spec is made: command, entrypoint, user, workdir, env,
    labels, tty/stdin; ports only with --service-ports; never a restart policy."""
    changes: dict[str, Any] = {"restart": "no", "tty": request.tty, "stdin_open": request.interactive}
    if request.command:
        changes["command"] = tuple(request.command)
    if request.entrypoint is not None:
        changes["entrypoint"] = tuple(shlex.split(request.entrypoint))
        if not request.command:
            changes["command"] = None  # docker: a new entrypoint drops the image's and service's command
    if request.user is not None:
        changes["user"] = request.user
    if request.workdir is not None:
        changes["working_dir"] = request.workdir
    if request.env:
        changes["environment"] = {**service.environment, **parse_env(request.env)}
    if request.labels:
        changes["labels"] = {**service.labels, **parse_labels(request.labels)}
    if not request.service_ports:
        changes["ports"] = ()
    return dataclasses.replace(service, **changes)


def parse_env(items: Sequence[str]) -> dict[str, str | None]:
    """`KEY=VALUE`, or `KEY` alone: the CLI's own environment value (unset when it has none)."""
    result: dict[str, str | None] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not key:
            raise UsageError(f"invalid environment variable: {item!r}")
        result[key] = value if sep else os.environ.get(key)
    return result


def parse_labels(items: Sequence[str]) -> dict[str, str]:
    result = {}
    for item in items:
        key, _, value = item.partition("=")
        if not key:
            raise UsageError(f"invalid label: {item!r}")
        result[key] = value
    return result


def parse_publish(text: str) -> list[PortBinding]:
    """`-p [ip:][host[-end]:]container[-end][/proto]` as docker's short syntax, one binding per port."""
    body, _, protocol = text.partition("/")
    parts = body.rsplit(":", 2)
    ip, host, container = ("", "", parts[0])
    if len(parts) == 2:
        host, container = parts
    elif len(parts) == 3:
        ip, host, container = parts
    try:
        first, last = _port_range(container)
        host_first, host_last = _port_range(host) if host else (0, 0)
    except ValueError:
        raise UsageError(f"invalid port specification: {text!r}") from None
    bindings = []
    for offset, port in enumerate(range(first, last + 1)):
        if host and host_last - host_first == last - first:
            host_port, host_end = host_first + offset, 0
        else:
            host_port, host_end = host_first, (host_last if host_last != host_first else 0)
        bindings.append(PortBinding(port, protocol or "tcp", ip.strip("[]"), host_port, host_end))
    return bindings


def _port_range(text: str) -> tuple[int, int]:
    low, _, high = text.partition("-")
    first = int(low)
    last = int(high) if high else first
    if not (0 < first <= last < 65536):
        raise ValueError(text)
    return first, last


def parse_volume(project: Any, text: str, working_dir: str) -> Mount:
    """`-v SRC:DST[:ro|rw]` (a path: bind, a name: the project's volume or a named one) or `-v DST`."""
    parts = text.split(":")
    mode = parts.pop() if len(parts) == 3 else ""
    if len(parts) == 1:
        return Mount(type="volume", target=parts[0])  # anonymous
    source, target = parts
    read_only = mode == "ro"
    if source.startswith((".", "/", "~")):
        path = os.path.expanduser(source)
        path = path if os.path.isabs(path) else os.path.normpath(os.path.join(working_dir, path))
        return Mount(type="bind", target=target, source=path, read_only=read_only)
    name = volume_name(project, source) if source in project.volumes else source
    return Mount(type="volume", target=target, source=name, read_only=read_only)


def oneoff_spec(
    loaded: LoadedProject, request: RunRequest, image: ImageFacts, containers: dict[str, Any] | None = None
) -> ContainerSpec:
    """The engine spec of the one-off (the engine gives it an id)."""
    project = loaded.model
    service = _service(loaded, request.service)
    changed = oneoff_service(service, request)
    placement = Placement(
        number=1,
        image=image,
        config_hash=_config_hash(loaded, request.service),
        oneoff=True,
        containers=containers or {},
        slug=request.slug,
        use_aliases=request.use_aliases,
    )
    spec = container_spec(project, changed, placement, identity(loaded))
    extra_ports = tuple(b for text in request.publish for b in parse_publish(text))
    extra_mounts = tuple(parse_volume(project, v, loaded.working_dir) for v in request.volumes)
    kept = tuple(m for m in spec.mounts if m.target not in {e.target for e in extra_mounts})
    return dataclasses.replace(
        spec,
        name=request.name or spec.name,
        ports=spec.ports + extra_ports,
        mounts=kept + extra_mounts,
        restart="no",
        restart_policy=None,
    )


def identity(loaded: LoadedProject) -> ProjectIdentity:
    return ProjectIdentity(
        loaded.name, loaded.working_dir, tuple(loaded.files), tuple(getattr(loaded, "env_files", ()) or ())
    )


def _config_hash(loaded: LoadedProject, name: str) -> str:
    from compose.hashing import service_config_hash

    return service_config_hash(dict((loaded.data.get("services") or {})[name]))


def _service(loaded: LoadedProject, name: str) -> Service:
    try:
        return loaded.model.services[name]
    except KeyError:
        raise ComposeError(f"no such service: {name}") from None


# -- images ----------------------------------------------------------------------------------------------


def image_facts(loaded: LoadedProject, engine: Any, name: str) -> ImageFacts:
    """The service's image as the engine has it; pulled when missing and not built by the project."""
    from compose.cli.commands.project_images import service_image
    from engine.errors import ImageNotFound

    service = _service(loaded, name)
    ref = service_image(loaded, service)
    try:
        image = engine.inspect_image(ref)
    except ImageNotFound:
        if service.build is not None:
            raise ComposeError(f"service {name!r} has no image {ref}: run `pycompose build {name}`") from None
        image = engine.pull_image(ref)
    config = image.config.get("config") or {}
    entrypoint, cmd = config.get("Entrypoint"), config.get("Cmd")
    return ImageFacts(image.id, ref, tuple(entrypoint) if entrypoint else None, tuple(cmd) if cmd else None)


# -- run ---------------------------------------------------------------------------------------------------


def run_oneoff(
    loaded: LoadedProject, engine: Any, request: RunRequest, *, stdio: tuple[int, int, int] = (0, 1, 2)
) -> tuple[dict[str, Any], int | None]:
    """Dependencies, then create the one-off; detached: start it through the supervisor and return
    (record, None); attached: run it on `stdio` and return (record, exit code), removed with --rm."""
    _service(loaded, request.service)
    if not request.no_deps:
        start_dependencies(loaded, engine, request.service)
    ensure_project_resources(loaded, engine)
    facts = image_facts(loaded, engine, request.service)
    spec = oneoff_spec(loaded, request, facts, service_containers(loaded, engine))
    record = engine.create_container(spec)
    if request.detach:
        try:
            return engine.start_container(record["id"]), None
        except BaseException:
            _remove_quietly(engine, record["id"])
            raise
    try:
        code = engine.run_container_attached(
            record["id"], stdio=stdio, tty=request.tty, remove=request.remove
        )
    except BaseException:
        if request.remove:  # the start failed: nothing waits to remove it
            _remove_quietly(engine, record["id"])
        raise
    return record, code


def _remove_quietly(engine: Any, cid: str) -> None:
    from engine.errors import EngineError

    try:
        engine.remove_container(cid, force=True, volumes=True)
    except EngineError:
        pass


def service_containers(loaded: LoadedProject, engine: Any) -> dict[str, tuple[tuple[str, str], ...]]:
    """service -> ((name, id), ...) of the project's service containers (links, volumes_from, `service:`)."""
    found: dict[str, list[tuple[str, str]]] = {}
    for record in engine.list_containers(all=True, labels=project_filter(loaded.name, oneoff=False)):
        service = (record.get("labels") or {}).get(SERVICE, "")
        found.setdefault(service, []).append((record["name"], record["id"]))
    return {k: tuple(sorted(v)) for k, v in found.items()}


# -- dependencies ------------------------------------------------------------------------------------------


def dependencies_of(loaded: LoadedProject, name: str) -> list[str]:
    """Every service `name` depends on (transitively, required ones), in start order."""
    from compose.cli.commands.project_images import selected_services

    order = selected_services(loaded, [name], include_deps=True)
    return [s for s in order if s != name]


def start_dependencies(loaded: LoadedProject, engine: Any, name: str) -> None:
    """The service's dependencies up (docker compose run starts them, not the service itself)."""
    deps = dependencies_of(loaded, name)
    if not deps:
        return
    from compose.run.events import NullEvents
    from compose.run.executor import ProjectRunner, UpRequest

    ProjectRunner(loaded, engine, NullEvents()).up(UpRequest(services=tuple(deps), detach=True))


def ensure_project_resources(loaded: LoadedProject, engine: Any) -> None:
    """The project's networks and named volumes, created when missing (external ones must exist)."""
    from engine.errors import NetworkExists, NetworkNotFound, VolumeNotFound

    project, ident = loaded.model, identity(loaded)
    for spec in network_specs(project, ident).values():
        try:
            engine.get_network(spec.name)
        except NetworkNotFound:
            with contextlib.suppress(NetworkExists):  # another CLI made it meanwhile
                engine.create_network(spec)
    for request in volume_requests(project, ident).values():
        try:
            engine.inspect_volume(request.name)
        except VolumeNotFound:
            if request.external:
                raise ComposeError(f"external volume {request.name!r} not found") from None
            options = {"driver_opts": dict(request.driver_opts), "labels": dict(request.labels)}
            engine.create_volume(request.name, driver=request.driver, **options)


# -- a service's container (exec, cp, attach) ------------------------------------------------------------


def find_container(engine: Any, project: str, service: str, index: int | None = None) -> dict[str, Any]:
    """Container `index` (default: the first) of the service, running or not; docker compose's messages."""
    found = engine.list_containers(all=True, labels={PROJECT: project, SERVICE: service})
    services = [r for r in found if (r.get("labels") or {}).get("com.docker.compose.oneoff") != "True"]
    if index is not None:
        for record in services:
            if container_number(record) == index:
                return record
        raise ComposeError(f"service {service!r} is not running container #{index}")
    if not services:
        raise ComposeError(f"service {service!r} is not running")
    return sorted(services, key=container_number)[0]
