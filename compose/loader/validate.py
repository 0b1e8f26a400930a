"""Stage 12: semantic rules the JSON Schema cannot express.

Input is the normalized project in CANONICAL FORM (see `compose.loader`). The rules mirror compose-go's
consistency check (`loader/validate.go` checkConsistency, `Project.CheckContainerNameUnicity`,
`graph.CheckCycle`), with the same message texts, minus the `: invalid compose project` suffix compose-go's
`errdefs.ErrInvalid` adds and the `services.x:` prefix (our errors carry the key path
already). Three compose-go slips are fixed rather than copied: the
container_name/replicas message has its arguments swapped there ("services.deploy.replicas: can't set
container_name and web ..."), "mutualy" is misspelled, and the unicity message ends in a stray quote.

One rule is ours: two services publishing the same host address/port/protocol. docker compose only
fails at `up` ("port is already allocated"); at load time we can name both services. Situations that
docker compose accepts at load time but that cannot work (ports under network_mode host or
service:x, a fixed host port with several replicas) are warnings, so `config` stays a drop-in.

Problems are produced lazily in document order (services in file order, each service's attributes in
file order, then top-level secrets, then cycles) so `check_project` reports the first one and stops.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from compose.errors import InvalidProjectError, Location, Path
from compose.graph import (
    NAMESPACE_KEYS,
    check_cycles,
    implicit_dependencies,
    link_target,
    namespace_target,
    volumes_from_target,
)
from engine.api import frozen

Locate = Callable[[Path], Location]
Warn = Callable[[str], None]


HEALTHCHECK_KINDS = ("CMD", "CMD-SHELL", "NONE")


def check_project(
    data: Mapping[str, Any],
    *,
    locate: Locate | None = None,
    warn: Warn | None = None,
    disabled: Mapping[str, Mapping[str, Any]] | None = None,
) -> None:
    """Raise the first semantic problem of the project; if there is none, emit the warnings.

    `disabled` is the services the profiles stage removed (name -> service dict), if the caller kept
    them: a `depends_on` on one of them is fine when `required: false` and gets compose-go's "is
    required by ... but is disabled" message otherwise.
    """
    ctx = _Context.of(data, disabled)
    for problem in _problems(ctx):
        if locate is not None and problem.path is not None:
            problem.at(location=locate(problem.path))
        raise problem
    if warn is not None:
        for message in ctx.warnings:
            warn(message)


def iter_problems(
    data: Mapping[str, Any], *, disabled: Mapping[str, Mapping[str, Any]] | None = None
) -> Iterator[InvalidProjectError]:
    """Every problem, in document order, without locations (for tests and a future `--all`)."""
    return _problems(_Context.of(data, disabled))


def _problems(ctx: _Context) -> Iterator[InvalidProjectError]:
    """Services in order, then top-level secrets, then the dependency cycle check (as compose-go)."""
    for name, service in ctx.services.items():
        yield from _check_service(ctx, name, service or {})
    yield from _check_secret_definitions(ctx)
    try:
        check_cycles(ctx.services)
    except InvalidProjectError as cycle:
        yield cycle


# --- context -----------------------------------------------------------------------------------------


@frozen
class _Binding:
    """A host port a service publishes: where, which port, which protocol, and who owns it."""

    host_ip: str
    port: int
    protocol: str
    target: Any
    service: str


@dataclass
class _Context:
    """What the per-attribute checks need to know about the rest of the project."""

    services: Mapping[str, Any]
    networks: Mapping[str, Any]
    volumes: Mapping[str, Any]
    secrets: Mapping[str, Any]
    configs: Mapping[str, Any]
    models: Mapping[str, Any]
    disabled: Mapping[str, Any] | None
    container_names: dict[str, str] = field(default_factory=dict)
    bindings: dict[tuple[int, str], list[_Binding]] = field(default_factory=dict)
    """Host bindings seen so far, by (port, protocol), so a clash check only scans its own port."""
    warnings: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, data: Mapping[str, Any], disabled: Mapping[str, Any] | None) -> _Context:
        """Read the top-level sections, treating a missing or null section as empty."""
        return cls(
            services=data.get("services") or {},
            networks=data.get("networks") or {},
            volumes=data.get("volumes") or {},
            secrets=data.get("secrets") or {},
            configs=data.get("configs") or {},
            models=data.get("models") or {},
            disabled=disabled,
        )


def _invalid(path: Path, message: str) -> InvalidProjectError:
    """An InvalidProjectError worded like docker compose; the CLI prints the path in front."""
    return InvalidProjectError(message, path=path)


# --- per service ---------------------------------------------------------------------------------------

Check = Callable[[_Context, str, Mapping[str, Any], str], Iterator[InvalidProjectError]]


def _check_service(ctx: _Context, name: str, svc: Mapping[str, Any]) -> Iterator[InvalidProjectError]:
    """Service-wide rules first, then each attribute's rules in the order the attributes appear."""
    if not svc.get("image") and svc.get("build") is None and svc.get("provider") is None:
        yield _invalid(
            ("services", name), f'service "{name}" has neither an image nor a build context specified'
        )
    for key in svc:
        check = _SERVICE_CHECKS.get(key)
        if check is not None:
            yield from check(ctx, name, svc, key)


def _check_build(ctx: _Context, name: str, svc: Mapping[str, Any], key: str) -> Iterator[InvalidProjectError]:
    """dockerfile vs dockerfile_inline, platform listed in build.platforms, build secrets defined."""
    build = svc.get(key)
    if not isinstance(build, Mapping):
        return
    base: Path = ("services", name, "build")
    if build.get("dockerfile") and build.get("dockerfile_inline"):
        yield _invalid(
            (*base, "dockerfile_inline"),
            f'service "{name}" declares mutually exclusive dockerfile and dockerfile_inline',
        )
    platforms = build.get("platforms") or []
    platform = svc.get("platform")
    if platforms and platform and platform not in platforms:
        yield _invalid(
            (*base, "platforms"), f'service.build.platforms MUST include service.platform "{platform}"'
        )
    for i, secret in enumerate(build.get("secrets") or []):
        source = _source_of(secret)
        if source is not None and source not in ctx.secrets:
            yield _invalid(
                (*base, "secrets", i), f'service "{name}" refers to undefined build secret {source}'
            )


def _check_networks(
    ctx: _Context, name: str, svc: Mapping[str, Any], key: str
) -> Iterator[InvalidProjectError]:
    """networks excludes network_mode; every key names a top-level network."""
    networks = svc.get(key) or {}
    if networks and svc.get("network_mode"):
        yield _invalid(
            ("services", name, "network_mode"),
            f"service {name} declares mutually exclusive `network_mode` and `networks`",
        )
    for network in networks:
        if network not in ctx.networks:
            yield _invalid(
                ("services", name, key, network), f'service "{name}" refers to undefined network {network}'
            )


def _check_healthcheck(
    ctx: _Context, name: str, svc: Mapping[str, Any], key: str
) -> Iterator[InvalidProjectError]:
    """healthcheck.test must be an exec form docker understands."""
    test = (svc.get(key) or {}).get("test")
    if isinstance(test, list) and test and test[0] not in HEALTHCHECK_KINDS:
        yield _invalid(
            ("services", name, key, "test"),
            'healthcheck.test must start either by "CMD", "CMD-SHELL" or "NONE"',
        )


def _check_depends_on(
    ctx: _Context, name: str, svc: Mapping[str, Any], key: str
) -> Iterator[InvalidProjectError]:
    """Each depends_on target exists (implicit entries are reported at links/volumes_from/...)."""
    depends_on = svc.get(key) or {}
    if isinstance(depends_on, list):
        depends_on = {dep: {} for dep in depends_on}
    implicit = {target for target, _, _ in implicit_dependencies(svc)}
    for target, spec in depends_on.items():
        if target in ctx.services or target in implicit:
            continue
        required = (spec or {}).get("required", True) is not False
        yield from _missing_service(ctx, name, target, required, ("services", name, key, target))


def _missing_service(
    ctx: _Context, name: str, target: str, required: bool, path: Path
) -> Iterator[InvalidProjectError]:
    """A dependency on a service that is not in the project: excused only if disabled and optional."""
    disabled = ctx.disabled or {}
    if target in disabled:
        if required:
            profiles = " ".join(str(p) for p in (disabled[target] or {}).get("profiles") or [])
            yield _invalid(
                path,
                f'service "{target}" is required by "{name}" but is disabled. '
                f"Can be enabled by profiles [{profiles}]",
            )
        return
    # Like compose-go, `required: false` only excuses a service that profiles disabled: the profiles
    # stage already removed such entries, so an optional dependency still here names a service that
    # exists nowhere, which is a typo worth reporting.
    yield _invalid(path, f'service "{name}" depends on undefined service "{target}"')


def _check_links(ctx: _Context, name: str, svc: Mapping[str, Any], key: str) -> Iterator[InvalidProjectError]:
    """links name services of this project (external_links are not checked)."""
    for i, link in enumerate(svc.get(key) or []):
        target = link_target(str(link))
        if target not in ctx.services:
            yield from _missing_service(ctx, name, target, True, ("services", name, key, i))


def _check_volumes_from(
    ctx: _Context, name: str, svc: Mapping[str, Any], key: str
) -> Iterator[InvalidProjectError]:
    """volumes_from "svc[:mode]" names a service; "container:x" is left to the engine."""
    for i, entry in enumerate(svc.get(key) or []):
        target = volumes_from_target(str(entry))
        if target is not None and target not in ctx.services:
            yield from _missing_service(ctx, name, target, True, ("services", name, key, i))


def _check_namespace(
    ctx: _Context, name: str, svc: Mapping[str, Any], key: str
) -> Iterator[InvalidProjectError]:
    """network_mode/ipc/pid/uts/cgroup "service:x" names a service of this project."""
    target = namespace_target(svc.get(key))
    if target is None or target in ctx.services:
        return
    path: Path = ("services", name, key)
    if key == "network_mode" and target not in (ctx.disabled or {}):
        yield _invalid(path, f"service \"{target}\" not found for network_mode 'service:{target}'")
        return
    yield from _missing_service(ctx, name, target, True, path)


def _check_volumes(
    ctx: _Context, name: str, svc: Mapping[str, Any], key: str
) -> Iterator[InvalidProjectError]:
    """Named volumes (type volume with a source) must be declared at top level."""
    for i, volume in enumerate(svc.get(key) or []):
        if not isinstance(volume, Mapping) or volume.get("type") != "volume":
            continue
        source = volume.get("source")
        if source and source not in ctx.volumes:
            yield _invalid(
                ("services", name, key, i), f'service "{name}" refers to undefined volume {source}'
            )


def _reference_check(section: str, noun: str) -> Check:
    """A check that every entry of a service list (secrets, configs, models) names a top-level one."""

    def check(ctx: _Context, name: str, svc: Mapping[str, Any], key: str) -> Iterator[InvalidProjectError]:
        defined = getattr(ctx, section)
        entries = svc.get(key) or []
        items = entries.items() if isinstance(entries, Mapping) else enumerate(entries)
        for where, entry in items:
            source = where if isinstance(entries, Mapping) else _source_of(entry)
            if source is not None and source not in defined:
                yield _invalid(
                    ("services", name, key, where), f'service "{name}" refers to undefined {noun} {source}'
                )

    check.__doc__ = f"Every service {section} entry names a top-level {noun}."
    return check


def _check_scale(ctx: _Context, name: str, svc: Mapping[str, Any], key: str) -> Iterator[InvalidProjectError]:
    """scale and deploy.replicas may both be set only to the same value."""
    scale = _as_int(svc.get(key))
    replicas = _as_int((svc.get("deploy") or {}).get("replicas"))
    if scale is not None and replicas is not None and scale != replicas:
        yield _invalid(
            ("services", name, key),
            "can't set distinct values on 'scale' and 'deploy.replicas'",
        )


_LIMIT_PAIRS = (
    # (service attribute, deploy.resources path, parser)
    ("cpus", ("limits", "cpus"), float),
    ("mem_limit", ("limits", "memory"), int),
    ("mem_reservation", ("reservations", "memory"), int),
    ("pids_limit", ("limits", "pids"), int),
)


def _check_deploy(
    ctx: _Context, name: str, svc: Mapping[str, Any], key: str
) -> Iterator[InvalidProjectError]:
    """A service-level resource attribute must equal its twin in a declared deploy.resources section.

    compose-go compares as soon as the section (`limits` or `reservations`) exists, with a missing
    twin counting as 0: `cpus: 1.5` next to `limits: {memory: 1G}` is rejected too (docker compose
    v5.5 does so). An attribute that is unset or 0 is never compared.
    """
    resources = (svc.get(key) or {}).get("resources") or {}
    for attr, (section, field_name), parse in _LIMIT_PAIRS:
        mine = _as_number(svc.get(attr), parse)
        block = resources.get(section)
        if not mine or not isinstance(block, Mapping):
            continue
        raw = block.get(field_name)
        theirs = 0 if raw is None else _as_number(raw, parse)
        if theirs is None or theirs == mine:
            continue  # equal, or not in canonical form (nothing sound to compare)
        path: Path = ("services", name, key, "resources", section)
        yield _invalid(
            (*path, field_name) if raw is not None else path,
            f"can't set distinct values on '{attr}' and 'deploy.resources.{section}.{field_name}'",
        )


def _check_container_name(
    ctx: _Context, name: str, svc: Mapping[str, Any], key: str
) -> Iterator[InvalidProjectError]:
    """A fixed container name allows one replica and must not be reused by another service."""
    container_name = svc.get(key)
    if not container_name:
        return
    path: Path = ("services", name, key)
    if _replicas(svc) > 1:
        attr = "scale" if svc.get("scale") is not None else "deploy.replicas"
        yield _invalid(path, f"can't set container_name and {attr} as container name must be unique")
    owner = ctx.container_names.setdefault(container_name, name)
    if owner != name:
        yield InvalidProjectError(
            f'container name "{container_name}" is already in use by service {owner}',
            path=path,
        )


def _check_develop(
    ctx: _Context, name: str, svc: Mapping[str, Any], key: str
) -> Iterator[InvalidProjectError]:
    """develop.watch rules other than rebuild copy files, so they need a target."""
    for i, rule in enumerate((svc.get(key) or {}).get("watch") or []):
        if isinstance(rule, Mapping) and rule.get("action") != "rebuild" and not rule.get("target"):
            yield _invalid(
                ("services", name, key, "watch", i),
                "target is required for non-rebuild actions",
            )


def _check_ports(ctx: _Context, name: str, svc: Mapping[str, Any], key: str) -> Iterator[InvalidProjectError]:
    """No two published ports may bind the same host address, port and protocol.

    docker compose only fails at `up` ("port is already allocated"); catching it at load time names
    both services. Services sharing another namespace (network_mode host/service:/container:) do not
    publish anything, so they are only warned about.
    """
    ports = svc.get(key) or []
    mode = svc.get("network_mode") or ""
    if ports and (mode == "host" or mode.startswith(("service:", "container:"))):
        ctx.warnings.append(_ignored_ports_message(name, mode))
        return
    replicas = _replicas(svc)
    for i, port in enumerate(ports):
        binding = _binding_of(port, name)
        if binding is None:
            continue
        if replicas > 1:
            ctx.warnings.append(
                f'service "{name}" publishes fixed host port {binding.port} but has {replicas} replicas: '
                "only one of them can bind it"
            )
        same_port = ctx.bindings.setdefault((binding.port, binding.protocol), [])
        clash = next((b for b in same_port if _same_binding(b, binding)), None)
        if clash is not None:
            where = f"{binding.host_ip}:{binding.port}" if binding.host_ip else str(binding.port)
            by = "itself" if clash.service == name else f'service "{clash.service}"'
            yield _invalid(
                ("services", name, key, i),
                f'service "{name}" publishes host port {where}/{binding.protocol} already published by {by}',
            )
        same_port.append(binding)


def _ignored_ports_message(name: str, mode: str) -> str:
    """Why a service's ports have no effect under its network_mode."""
    if mode == "host":
        return f'service "{name}": published ports are discarded when using network_mode "host"'
    return f'service "{name}": ports cannot be published with network_mode "{mode}", the engine refuses them'


_SERVICE_CHECKS: dict[str, Check] = {
    "build": _check_build,
    "configs": _reference_check("configs", "config"),
    "container_name": _check_container_name,
    "depends_on": _check_depends_on,
    "deploy": _check_deploy,
    "develop": _check_develop,
    "healthcheck": _check_healthcheck,
    "links": _check_links,
    "models": _reference_check("models", "model"),
    "networks": _check_networks,
    "ports": _check_ports,
    "scale": _check_scale,
    "secrets": _reference_check("secrets", "secret"),
    "volumes": _check_volumes,
    "volumes_from": _check_volumes_from,
    **{key: _check_namespace for key in NAMESPACE_KEYS},
}


# --- top level -------------------------------------------------------------------------------------------


def _check_secret_definitions(ctx: _Context) -> Iterator[InvalidProjectError]:
    """A secret that is not external needs a source (file or environment variable)."""
    for name, spec in ctx.secrets.items():
        spec = spec or {}
        if spec.get("external") or spec.get("file") or spec.get("environment"):
            continue
        yield _invalid(("secrets", name), f'secret "{name}" must declare either `file` or `environment`')


# --- small helpers ---------------------------------------------------------------------------------------


def _source_of(entry: Any) -> str | None:
    """A secrets/configs entry is {source: ...} in canonical form, or a bare name before it."""
    if isinstance(entry, str):
        return entry
    if isinstance(entry, Mapping):
        source = entry.get("source")
        return str(source) if source is not None else None
    return None


def _as_int(value: Any) -> int | None:
    """Replica counts arrive as int (cast by interpolation) or, unusually, as a numeric string."""
    return _as_number(value, int)


def _as_number(value: Any, parse: Callable[[Any], Any]) -> Any:
    """Parse a canonical number (int/float or its string form); None when absent or not numeric."""
    if value is None or isinstance(value, bool):
        return None
    try:
        return parse(value)
    except (TypeError, ValueError):
        return None


def _replicas(svc: Mapping[str, Any]) -> int:
    """How many containers the service runs: scale, else deploy.replicas, else 1."""
    scale = _as_int(svc.get("scale"))
    if scale is not None:
        return scale
    replicas = _as_int((svc.get("deploy") or {}).get("replicas"))
    return 1 if replicas is None else replicas


def _binding_of(port: Any, service: str) -> _Binding | None:
    """The fixed host binding of a canonical port entry; None for ephemeral or ranged host ports."""
    if not isinstance(port, Mapping):
        return None
    published = port.get("published")
    if published is None or published == "":
        return None
    try:
        number = int(str(published))
    except ValueError:
        return None  # a host range "8000-8010": the engine picks any free port in it
    if number == 0:
        return None
    host_ip = str(port.get("host_ip") or "").strip("[]")
    protocol = str(port.get("protocol") or "tcp").lower()
    return _Binding(host_ip, number, protocol, port.get("target"), service)


def _same_binding(a: _Binding, b: _Binding) -> bool:
    """Both bind the same host port; an exact duplicate entry of one service is not a clash."""
    if a.port != b.port or a.protocol != b.protocol or not _ips_overlap(a.host_ip, b.host_ip):
        return False
    return not (a.service == b.service and a.host_ip == b.host_ip and a.target == b.target)


def _ips_overlap(a: str, b: str) -> bool:
    """Whether binding both addresses on one port conflicts.

    "" means every address (docker binds 0.0.0.0 and ::); 0.0.0.0 covers every IPv4 address and ::
    every IPv6 address; otherwise only equal addresses conflict.
    """
    if not a or not b:
        return True
    ip_a, ip_b = _parse_ip(a), _parse_ip(b)
    if ip_a is None or ip_b is None:
        return a == b
    if ip_a.version != ip_b.version:
        return False
    return ip_a == ip_b or ip_a.is_unspecified or ip_b.is_unspecified


def _parse_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An IP address, or None for something else (a hostname the engine will reject anyway)."""
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


__all__ = ["check_project", "iter_problems"]
