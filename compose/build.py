"""A service's `build:` section -> the engine's BuildRequest, and which services `build`/`up` build.

Compose decides everything here (the image name `<project>-<service>`, args from the environment, the
labels docker compose puts on built images, the platform, the order); the engine only builds what it is
handed. Everything is pure, so each rule is unit-tested without root.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from compose import __version__, labels
from compose.errors import InvalidProjectError
from engine.api import frozen

if TYPE_CHECKING:
    from compose.loader.pipeline import LoadedProject
    from compose.model import BuildConfig, Service
    from engine.api import BuildRequest

NETWORKS = ("default", "host", "none")
"""The build networks the engine offers (docker's `bridge` is our `default`)."""

_REMOTE_PREFIXES = ("git://", "git@", "github.com/", "ssh://", "http://", "https://")


@frozen
class BuildOptions:
    """What the command line adds on top of every service's `build:` (`--no-cache`, `--pull`,
    `--build-arg`); a `None` arg value is taken from the project environment (dropped when unset)."""

    no_cache: bool = False
    pull: bool = False
    args: tuple[tuple[str, str | None], ...] = ()


# -- naming and selection ---------------------------------------------------------------------------------


def image_name(project_name: str, service: Service) -> str:
    """The image a service runs and a build is tagged with: `image:`, else `<project>-<service>`."""
    return service.image or f"{project_name}-{service.name}"


def has_build(service: Service) -> bool:
    return service.build is not None


def build_order(
    loaded: LoadedProject, names: Sequence[str] = (), *, with_dependencies: bool = False
) -> list[list[str]]:
    """The services to build, in generations: each generation only after the ones before it, services
    of one generation independent of each other (so they may build in parallel).

    No names: every service with a `build:`. Names: those (an unknown one is an error), plus the
    buildable services they depend on with `with_dependencies`. Two services building the same image
    name are built once (the first in order), as docker compose keys builds by image name.
    """
    from compose.graph import ServiceGraph

    services = loaded.model.services
    graph = ServiceGraph(loaded.data.get("services") or {})
    if names:
        graph = graph.subgraph(names)  # raises "no such service" for an unknown name
        wanted = set(graph.services) if with_dependencies else set(names)
    else:
        wanted = set(graph.services)
    seen: set[str] = set()
    generations: list[list[str]] = []
    for generation in graph.start_generations():
        batch = []
        for name in sorted(generation):
            service = services[name]
            image = image_name(loaded.name, service)
            if name in wanted and has_build(service) and image not in seen:
                seen.add(image)
                batch.append(name)
        if batch:
            generations.append(batch)
    return generations


def needs_build(service: Service, *, present: bool, build: bool = False, no_build: bool = False) -> bool:
    """Whether `up`/`create`/`run` build a service's image before creating its containers.

    `--build` builds every buildable service; `--no-build` none (a missing image is then an error for the
    caller); `pull_policy: build` always builds; otherwise a missing image is built.
    """
    if not has_build(service) or no_build:
        return False
    if build or service.pull_policy == "build":
        return True
    return not present


# -- the request ------------------------------------------------------------------------------------------


def build_request(
    loaded: LoadedProject, service: Service, options: BuildOptions | None = None
) -> BuildRequest:
    """The engine request that builds `service` as `docker compose build` would."""
    from engine.api import BuildRequest

    config = service.build
    if config is None:
        raise InvalidProjectError("service has no build section", path=("services", service.name))
    options = options or BuildOptions()
    path = ("services", service.name, "build")
    context = resolve_context(config.context, loaded.working_dir, path)
    return BuildRequest(
        context=context,
        dockerfile=config.dockerfile or "Dockerfile",
        dockerfile_inline=config.dockerfile_inline,
        args=tuple(sorted(build_args(config, loaded.environment, options).items())),
        target=config.target,
        labels=tuple(sorted(image_labels(loaded.name, service).items())),
        tags=image_tags(loaded.name, service),
        network=build_network(config.network, path),
        extra_hosts=extra_hosts(config.extra_hosts, path),
        shm_size=shm_size(config.shm_size, path),
        no_cache=config.no_cache or options.no_cache,
        pull=config.pull or options.pull,
        platform=build_platform(service, loaded.environment),
    )


def check_sources(requests: Mapping[str, BuildRequest]) -> None:
    """Every context directory and Dockerfile exists (requests by service name). Run before the first
    build starts, so a typo is reported at once, not after the builds ordered before it."""
    for name, request in requests.items():
        path = ("services", name, "build")
        if not os.path.isdir(request.context):
            why = "is not a directory" if os.path.exists(request.context) else "not found"
            raise InvalidProjectError(f"build context {request.context} {why}", path=(*path, "context"))
        if request.dockerfile_inline is not None:
            continue
        file = os.path.join(request.context, request.dockerfile)  # an absolute one stays absolute
        if not os.path.isfile(file):
            raise InvalidProjectError(f"Dockerfile {file} not found", path=(*path, "dockerfile"))


def is_remote_context(context: str) -> bool:
    """A git repository or URL context (docker's urlutil rules), which this builder cannot fetch."""
    return context.startswith(_REMOTE_PREFIXES)


def resolve_context(context: str | None, working_dir: str, path: tuple[str, ...] = ()) -> str:
    """The context directory: relative to the project directory; remote contexts are refused."""
    context = context or "."
    if is_remote_context(context):
        raise InvalidProjectError(
            f"build context {context!r}: git and URL contexts are not supported; "
            "clone or download it and use a local directory",
            path=(*path, "context"),
        )
    return os.path.normpath(os.path.join(working_dir, os.path.expanduser(context)))


def build_args(config: BuildConfig, environment: Mapping[str, str], options: BuildOptions) -> dict[str, str]:
    """`build.args` overridden by `--build-arg`; a key without a value comes from the project
    environment and is left out when the environment does not set it (compose's `Resolve`)."""
    merged: dict[str, str] = {}
    for key, value in [*config.args.items(), *options.args]:
        if value is None:
            value = environment.get(key)
        if value is not None:  # an unset `--build-arg K` leaves the file's value alone
            merged[key] = str(value)
    return merged


def image_labels(project_name: str, service: Service) -> dict[str, str]:
    """`build.labels` plus the three labels docker compose stamps on images it builds."""
    assert service.build is not None
    out = dict(service.build.labels)
    out[labels.VERSION] = __version__
    out[labels.PROJECT] = project_name
    out[labels.SERVICE] = service.name
    return out


def image_tags(project_name: str, service: Service) -> tuple[str, ...]:
    """The image name first (what containers run), then `build.tags`, without repeats."""
    assert service.build is not None
    return tuple(dict.fromkeys([image_name(project_name, service), *service.build.tags]))


def build_network(network: str | None, path: tuple[str, ...] = ()) -> str:
    """`build.network` as the engine names it; docker's `bridge`/`default` are our default network."""
    if network in (None, "", "bridge", "default"):
        return "default"
    if network in NETWORKS:
        return network
    raise InvalidProjectError(
        f"build network {network!r} is not supported: want one of {', '.join(NETWORKS)}",
        path=(*path, "network"),
    )


def extra_hosts(entries: Iterable[str], path: tuple[str, ...] = ()) -> tuple[tuple[str, str], ...]:
    """`host=ip` / `host:ip` entries -> (host, ip) pairs; a comma list of ips gives one pair each."""
    from compose.loader.syntax import parse_extra_host

    pairs: list[tuple[str, str]] = []
    for index, entry in enumerate(entries):
        try:
            host, ips = parse_extra_host(entry)
        except InvalidProjectError as exc:
            raise exc.at((*path, "extra_hosts", index)) from None
        pairs.extend((host, ip) for ip in ips.split(","))
    return tuple(pairs)


def shm_size(value: Any, path: tuple[str, ...] = ()) -> int | None:
    """`build.shm_size` in bytes (the loader gives a string of digits; raw models may say `2gb`)."""
    if value in (None, ""):
        return None
    from compose.loader.syntax import parse_bytes

    try:
        return parse_bytes(value)
    except (InvalidProjectError, ValueError) as exc:
        raise InvalidProjectError(f"invalid shm_size {value!r}", path=(*path, "shm_size")) from exc


def build_platform(service: Service, environment: Mapping[str, str]) -> str | None:
    """The one platform to build for, as compose picks it: DOCKER_DEFAULT_PLATFORM, else the service's
    `platform`, else a single `build.platforms` entry; either must be one of `build.platforms` when that
    is set. Several platforms need a multi-platform builder, which this engine is not."""
    assert service.build is not None
    platforms = service.build.platforms
    path = ("services", service.name, "build", "platforms")
    for source, chosen in (
        ("DOCKER_DEFAULT_PLATFORM", environment.get("DOCKER_DEFAULT_PLATFORM")),
        ("service.platform", service.platform),
    ):
        if chosen:
            if platforms and chosen not in platforms:
                raise InvalidProjectError(
                    f"the {source} {chosen!r} should be part of the service.build.platforms: "
                    f"{list(platforms)}",
                    path=path,
                )
            return chosen
    if len(platforms) > 1:
        raise InvalidProjectError(
            "multi-platform builds are not supported: set one entry in build.platforms "
            "(or pick one with DOCKER_DEFAULT_PLATFORM)",
            path=path,
        )
    return platforms[0] if platforms else None


def parse_build_args(values: Iterable[str]) -> tuple[tuple[str, str | None], ...]:
    """`--build-arg K=V` (repeatable); `K` alone takes its value from the environment."""
    out: list[tuple[str, str | None]] = []
    for item in values:
        key, found, value = item.partition("=")
        if not key:
            from compose.errors import UsageError

            raise UsageError(f"invalid build arg {item!r}: want KEY=VALUE or KEY")
        out.append((key, value if found else None))
    return tuple(out)
