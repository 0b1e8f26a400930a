"""The typed, immutable project model every layer after the loader consumes.

Why a model and not the dict: planners and runtimes need typed values (seconds, bytes, tuples) and
must not be able to mutate a shared project by accident. Every object is a frozen, slotted dataclass;
collections are tuples and read-only mappings (`types.MappingProxyType`).

Nothing is lost: keys a class does not model land in `extras` (for `Project`: `extensions`), and
`Project.from_dict(d).to_dict() == d` for any canonical project. Typed values that are parsed from
text (durations, byte sizes, cpus) remember their source text and print it back unchanged unless the
value was replaced; keys that were present with an empty/default value are printed back as well.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import field
from types import MappingProxyType
from typing import Any, ClassVar

from compose.loader import syntax as _syntax
from engine.api import frozen

__all__ = [
    "BuildConfig",
    "Dependency",
    "Deploy",
    "FileObject",
    "FileRef",
    "Healthcheck",
    "Logging",
    "Network",
    "PortConfig",
    "Project",
    "ResourceSpec",
    "Resources",
    "RestartPolicy",
    "Service",
    "ServiceNetwork",
    "Volume",
    "VolumeMount",
    "format_duration",
    "parse_bytes",
    "parse_duration",
]

EMPTY: Mapping[str, Any] = MappingProxyType({})


def _empty() -> Any:
    """A dataclass default of the shared empty read-only mapping."""
    return field(default_factory=lambda: EMPTY)


# --------------------------------------------------------------------------------------------------
# Plain-data helpers
# --------------------------------------------------------------------------------------------------


def _freeze(value: Any) -> Any:
    """Deep read-only copy: dicts become mapping proxies, lists become tuples."""
    if isinstance(value, dict):
        return MappingProxyType({k: _freeze(v) for k, v in value.items()})
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value


def _thaw(value: Any) -> Any:
    """Back to plain data (dict / list), the inverse of `_freeze`."""
    if isinstance(value, Mapping):
        return {k: _thaw(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [_thaw(v) for v in value]
    if isinstance(value, _Node):
        return value.to_dict()
    return value


def parse_duration(text: str | float | int) -> float:
    """Seconds in a canonical Go duration string ("1m30s", "500ms"); a bare number is seconds already.

    The grammar lives in `compose.loader.syntax`; this only changes the unit the model works in.
    """
    if isinstance(text, int | float):
        return float(text)
    return _syntax.parse_duration(text) / 1e9


def format_duration(seconds: float) -> str:
    """Go's `time.Duration.String()` for a number of seconds (nanosecond resolution)."""
    return _syntax.format_duration(round(seconds * 1e9))


def parse_bytes(value: str | int | float) -> int:
    """Bytes in a size; canonical sizes are already integer strings, units (k, m, g...) are 1024-based."""
    if isinstance(value, int | float):
        return int(value)
    return _syntax.parse_bytes(value)


# --------------------------------------------------------------------------------------------------
# Field kinds: how one canonical value becomes a typed attribute and back
# --------------------------------------------------------------------------------------------------

_LOSSY = {"duration", "bytes", "float"}


def _value_in(kind: Any, value: Any) -> Any:
    if value is None:
        return None
    if isinstance(kind, tuple):
        shape, cls = kind
        if shape == "obj":
            return cls._from(value) if isinstance(value, dict) else _freeze(value)
        if shape == "objlist":
            return tuple(cls._from(v) if isinstance(v, dict) else _freeze(v) for v in value)
        return MappingProxyType(
            {k: cls._from(v) if isinstance(v, dict) else _freeze(v) for k, v in value.items()}
        )
    if kind == "duration":
        return parse_duration(value)
    if kind == "bytes":
        return parse_bytes(value)
    if kind == "float":
        return float(value)
    return _freeze(value)


def _value_out(kind: Any, value: Any, raw: Any) -> Any:
    if kind in _LOSSY and raw is not None:
        try:
            if _value_in(kind, raw) == value:
                return raw
        except (ValueError, TypeError):
            pass
    if value is None:
        return None
    if kind == "duration":
        return format_duration(value)
    if kind == "bytes":
        return str(value)
    return _thaw(value)


@frozen
class _Node:
    """Shared from/to dict logic; subclasses list their fields in `_FIELDS` as (attr, key, kind)."""

    _FIELDS: ClassVar[tuple[tuple[str, str, Any], ...]] = ()
    _EXTRAS: ClassVar[str] = "extras"

    given_keys: frozenset[str] = field(default=frozenset(), repr=False, compare=False)
    """Keys the source dict had, so present-but-empty values are printed back."""
    given_text: Mapping[str, Any] = field(default_factory=lambda: EMPTY, repr=False, compare=False)
    """Source text of parsed values (durations, sizes, cpus), printed back when the value is unchanged."""

    @classmethod
    def _from(cls, data: Mapping[str, Any], **extra: Any) -> Any:
        kwargs: dict[str, Any] = dict(extra)
        known = set()
        raw = {}
        for attr, key, kind in cls._FIELDS:
            known.add(key)
            if key in data:
                kwargs[attr] = _value_in(kind, data[key])
                if kind in _LOSSY:
                    raw[key] = data[key]
        kwargs[cls._EXTRAS] = MappingProxyType({k: _freeze(v) for k, v in data.items() if k not in known})
        return cls(
            given_keys=frozenset(k for k in data if k in known), given_text=MappingProxyType(raw), **kwargs
        )

    def to_dict(self) -> dict[str, Any]:
        """The canonical dict this object stands for (plain, mutable data)."""
        out: dict[str, Any] = {}
        defaults = _DEFAULTS[type(self)]
        for attr, key, kind in self._FIELDS:
            value = getattr(self, attr)
            if key in self.given_keys or value != defaults[attr]:
                out[key] = _value_out(kind, value, self.given_text.get(key))
        for key, value in getattr(self, self._EXTRAS).items():
            out[key] = _thaw(value)
        return out


_DEFAULTS: dict[type, dict[str, Any]] = {}


def _register(cls: type[_Node]) -> type[_Node]:
    """Record each field's default so `to_dict` can skip untouched absent keys."""
    from dataclasses import MISSING, fields

    defaults = {}
    for f in fields(cls):
        if f.default is not MISSING:
            defaults[f.name] = f.default
        elif f.default_factory is not MISSING:
            defaults[f.name] = f.default_factory()
    _DEFAULTS[cls] = defaults
    return cls


def _spec(names: str, kind: Any = None) -> tuple[tuple[str, str, Any], ...]:
    return tuple((n, n, kind) for n in names.split())


# --------------------------------------------------------------------------------------------------
# Service parts
# --------------------------------------------------------------------------------------------------


@_register
@frozen
class FileRef(_Node):
    """A service's use of a secret or config."""

    _FIELDS = _spec("source target uid gid mode")
    source: str | None = None
    target: str | None = None
    uid: str | None = None
    gid: str | None = None
    mode: str | int | None = None
    extras: Mapping[str, Any] = _empty()


@_register
@frozen
class BuildConfig(_Node):
    """How to build the service image."""

    _FIELDS = (
        *_spec(
            "context dockerfile dockerfile_inline target network shm_size isolation no_cache pull privileged"
        ),
        *_spec("args labels additional_contexts ssh"),
        *_spec("cache_from cache_to tags platforms extra_hosts entitlements"),
        ("secrets", "secrets", ("objlist", FileRef)),
    )
    context: str | None = None
    dockerfile: str | None = None
    dockerfile_inline: str | None = None
    target: str | None = None
    network: str | None = None
    shm_size: str | int | None = None
    isolation: str | None = None
    no_cache: bool = False
    pull: bool = False
    privileged: bool = False
    args: Mapping[str, str | None] = _empty()
    labels: Mapping[str, str] = _empty()
    additional_contexts: Mapping[str, str] = _empty()
    ssh: Any = None
    cache_from: tuple[str, ...] = ()
    cache_to: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    platforms: tuple[str, ...] = ()
    extra_hosts: tuple[str, ...] = ()
    entitlements: tuple[str, ...] = ()
    secrets: tuple[FileRef, ...] = ()
    extras: Mapping[str, Any] = _empty()


@_register
@frozen
class PortConfig(_Node):
    """One published or exposed port (ranges are already expanded)."""

    _FIELDS = _spec("name mode host_ip target published protocol app_protocol")
    name: str | None = None
    mode: str | None = None
    host_ip: str | None = None
    target: int | None = None
    published: str | None = None
    protocol: str | None = None
    app_protocol: str | None = None
    extras: Mapping[str, Any] = _empty()


@_register
@frozen
class VolumeMount(_Node):
    """A mount in a service: bind, named or anonymous volume, tmpfs, image, npipe."""

    _FIELDS = _spec("type source target read_only consistency bind volume tmpfs image")
    type: str | None = None
    source: str | None = None
    target: str | None = None
    read_only: bool = False
    consistency: str | None = None
    bind: Mapping[str, Any] | None = None
    volume: Mapping[str, Any] | None = None
    tmpfs: Mapping[str, Any] | None = None
    image: Mapping[str, Any] | None = None
    extras: Mapping[str, Any] = _empty()


@_register
@frozen
class ServiceNetwork(_Node):
    """A service's attachment to one network."""

    _FIELDS = _spec(
        "aliases ipv4_address ipv6_address link_local_ips mac_address priority gw_priority driver_opts "
        "interface_name"
    )
    aliases: tuple[str, ...] = ()
    ipv4_address: str | None = None
    ipv6_address: str | None = None
    link_local_ips: tuple[str, ...] = ()
    mac_address: str | None = None
    priority: int | None = None
    gw_priority: int | None = None
    driver_opts: Mapping[str, str] = _empty()
    interface_name: str | None = None
    extras: Mapping[str, Any] = _empty()


@_register
@frozen
class Dependency(_Node):
    """One `depends_on` entry."""

    _FIELDS = _spec("condition required restart")
    condition: str = "service_started"
    required: bool = True
    restart: bool = False
    extras: Mapping[str, Any] = _empty()


@_register
@frozen
class Healthcheck(_Node):
    """The container health check; durations in seconds."""

    _FIELDS = (
        *_spec("test retries disable"),
        *_spec("interval timeout start_period start_interval", "duration"),
    )
    test: tuple[str, ...] | None = None
    retries: int | None = None
    disable: bool = False
    interval: float | None = None
    timeout: float | None = None
    start_period: float | None = None
    start_interval: float | None = None
    extras: Mapping[str, Any] = _empty()


@_register
@frozen
class ResourceSpec(_Node):
    """Limits or reservations: cpus as a float, memory in bytes."""

    _FIELDS = (("cpus", "cpus", "float"), ("memory", "memory", "bytes"), *_spec("pids devices"))
    cpus: float | None = None
    memory: int | None = None
    pids: int | None = None
    devices: tuple[Any, ...] = ()
    extras: Mapping[str, Any] = _empty()


@_register
@frozen
class Resources(_Node):
    """`deploy.resources`."""

    _FIELDS = (
        ("limits", "limits", ("obj", ResourceSpec)),
        ("reservations", "reservations", ("obj", ResourceSpec)),
    )
    limits: ResourceSpec | None = None
    reservations: ResourceSpec | None = None
    extras: Mapping[str, Any] = _empty()


@_register
@frozen
class RestartPolicy(_Node):
    """`deploy.restart_policy`; delay and window in seconds."""

    _FIELDS = (*_spec("condition max_attempts"), *_spec("delay window", "duration"))
    condition: str | None = None
    max_attempts: int | None = None
    delay: float | None = None
    window: float | None = None
    extras: Mapping[str, Any] = _empty()


@_register
@frozen
class Deploy(_Node):
    """`deploy`: the parts a single-host runtime uses are typed, the rest stays as data."""

    _FIELDS = (
        *_spec("mode replicas labels placement update_config rollback_config endpoint_mode"),
        ("resources", "resources", ("obj", Resources)),
        ("restart_policy", "restart_policy", ("obj", RestartPolicy)),
    )
    mode: str | None = None
    replicas: int | None = None
    labels: Mapping[str, str] = _empty()
    placement: Any = None
    update_config: Any = None
    rollback_config: Any = None
    endpoint_mode: str | None = None
    resources: Resources | None = None
    restart_policy: RestartPolicy | None = None
    extras: Mapping[str, Any] = _empty()


@_register
@frozen
class Logging(_Node):
    """The log driver and its options."""

    _FIELDS = _spec("driver options")
    driver: str | None = None
    options: Mapping[str, str] | None = None
    extras: Mapping[str, Any] = _empty()


_SERVICE_SCALARS = (
    "image container_name hostname domainname user working_dir restart network_mode ipc pid uts "
    "cgroup cgroup_parent stop_signal platform pull_policy runtime userns_mode mac_address isolation "
    "scale pids_limit oom_score_adj cpu_shares cpuset"
)
_SERVICE_BOOLS = "privileged read_only tty stdin_open oom_kill_disable"
_SERVICE_LISTS = (
    "profiles cap_add cap_drop expose extra_hosts dns dns_search dns_opt tmpfs security_opt group_add "
    "links external_links volumes_from devices device_cgroup_rules env_file label_file"
)
_SERVICE_MAPS = "environment labels annotations sysctls ulimits storage_opt"


@_register
@frozen
class Service(_Node):
    """One service, as a runtime needs it; everything not modelled is kept in `extras`."""

    _FIELDS = (
        *_spec(_SERVICE_SCALARS),
        *_spec(_SERVICE_BOOLS),
        *_spec(_SERVICE_LISTS),
        *_spec(_SERVICE_MAPS),
        *_spec("command entrypoint init"),
        ("build", "build", ("obj", BuildConfig)),
        ("ports", "ports", ("objlist", PortConfig)),
        ("volumes", "volumes", ("objlist", VolumeMount)),
        ("networks", "networks", ("objmap", ServiceNetwork)),
        ("depends_on", "depends_on", ("objmap", Dependency)),
        ("healthcheck", "healthcheck", ("obj", Healthcheck)),
        ("deploy", "deploy", ("obj", Deploy)),
        ("logging", "logging", ("obj", Logging)),
        ("secrets", "secrets", ("objlist", FileRef)),
        ("configs", "configs", ("objlist", FileRef)),
        ("stop_grace_period", "stop_grace_period", "duration"),
        ("mem_limit", "mem_limit", "bytes"),
        ("mem_reservation", "mem_reservation", "bytes"),
        ("memswap_limit", "memswap_limit", "bytes"),
        ("shm_size", "shm_size", "bytes"),
        ("cpus", "cpus", "float"),
    )

    name: str = ""
    """The key under `services` (not part of `to_dict`)."""
    image: str | None = None
    container_name: str | None = None
    hostname: str | None = None
    domainname: str | None = None
    user: str | None = None
    working_dir: str | None = None
    restart: str | None = None
    network_mode: str | None = None
    ipc: str | None = None
    pid: str | None = None
    uts: str | None = None
    cgroup: str | None = None
    cgroup_parent: str | None = None
    stop_signal: str | None = None
    platform: str | None = None
    pull_policy: str | None = None
    runtime: str | None = None
    userns_mode: str | None = None
    mac_address: str | None = None
    isolation: str | None = None
    scale: int | None = None
    pids_limit: int | None = None
    oom_score_adj: int | None = None
    cpu_shares: int | None = None
    cpuset: str | None = None
    privileged: bool = False
    read_only: bool = False
    tty: bool = False
    stdin_open: bool = False
    oom_kill_disable: bool = False
    init: bool | None = None
    profiles: tuple[str, ...] = ()
    cap_add: tuple[str, ...] = ()
    cap_drop: tuple[str, ...] = ()
    expose: tuple[str, ...] = ()
    extra_hosts: tuple[str, ...] = ()
    dns: tuple[str, ...] = ()
    dns_search: tuple[str, ...] = ()
    dns_opt: tuple[str, ...] = ()
    tmpfs: tuple[str, ...] = ()
    security_opt: tuple[str, ...] = ()
    group_add: tuple[str, ...] = ()
    links: tuple[str, ...] = ()
    external_links: tuple[str, ...] = ()
    volumes_from: tuple[str, ...] = ()
    devices: tuple[Any, ...] = ()
    device_cgroup_rules: tuple[str, ...] = ()
    env_file: tuple[Any, ...] = ()
    label_file: tuple[str, ...] = ()
    environment: Mapping[str, str | None] = _empty()
    labels: Mapping[str, str] = _empty()
    annotations: Mapping[str, str] = _empty()
    sysctls: Mapping[str, str] = _empty()
    ulimits: Mapping[str, Any] = _empty()
    storage_opt: Mapping[str, str] = _empty()
    command: tuple[str, ...] | None = None
    entrypoint: tuple[str, ...] | None = None
    build: BuildConfig | None = None
    ports: tuple[PortConfig, ...] = ()
    volumes: tuple[VolumeMount, ...] = ()
    networks: Mapping[str, ServiceNetwork | None] = _empty()
    depends_on: Mapping[str, Dependency] = _empty()
    healthcheck: Healthcheck | None = None
    deploy: Deploy | None = None
    logging: Logging | None = None
    secrets: tuple[FileRef, ...] = ()
    configs: tuple[FileRef, ...] = ()
    stop_grace_period: float | None = None
    mem_limit: int | None = None
    mem_reservation: int | None = None
    memswap_limit: int | None = None
    shm_size: int | None = None
    cpus: float | None = None
    extras: Mapping[str, Any] = _empty()

    @property
    def replicas(self) -> int:
        """How many containers to run: deploy.replicas, else scale, else 1."""
        if self.deploy is not None and self.deploy.replicas is not None:
            return self.deploy.replicas
        return self.scale if self.scale is not None else 1

    @classmethod
    def from_dict(cls, name: str, data: Mapping[str, Any]) -> Service:
        """Build one service from its canonical dict."""
        return cls._from(data, name=name)


# --------------------------------------------------------------------------------------------------
# Top-level resources and the project
# --------------------------------------------------------------------------------------------------


@_register
@frozen
class Network(_Node):
    """A top-level network."""

    _FIELDS = _spec(
        "name driver driver_opts ipam external internal attachable labels enable_ipv4 enable_ipv6"
    )
    name: str | None = None
    driver: str | None = None
    driver_opts: Mapping[str, str] = _empty()
    ipam: Mapping[str, Any] | None = None
    external: bool = False
    internal: bool = False
    attachable: bool = False
    labels: Mapping[str, str] = _empty()
    enable_ipv4: bool | None = None
    enable_ipv6: bool | None = None
    extras: Mapping[str, Any] = _empty()


@_register
@frozen
class Volume(_Node):
    """A top-level named volume."""

    _FIELDS = _spec("name driver driver_opts external labels")
    name: str | None = None
    driver: str | None = None
    driver_opts: Mapping[str, str] = _empty()
    external: bool = False
    labels: Mapping[str, str] = _empty()
    extras: Mapping[str, Any] = _empty()


@_register
@frozen
class FileObject(_Node):
    """A top-level secret or config."""

    _FIELDS = _spec("name file environment content external labels driver driver_opts template_driver")
    name: str | None = None
    file: str | None = None
    environment: str | None = None
    content: str | None = None
    external: bool = False
    labels: Mapping[str, str] = _empty()
    driver: str | None = None
    driver_opts: Mapping[str, str] = _empty()
    template_driver: str | None = None
    extras: Mapping[str, Any] = _empty()


@_register
@frozen
class Project(_Node):
    """A loaded project; `extensions` holds top-level `x-*` (and any other unmodelled key)."""

    _FIELDS = (
        ("name", "name", None),
        ("services", "services", ("objmap", Service)),
        ("networks", "networks", ("objmap", Network)),
        ("volumes", "volumes", ("objmap", Volume)),
        ("secrets", "secrets", ("objmap", FileObject)),
        ("configs", "configs", ("objmap", FileObject)),
        ("models", "models", None),
    )
    _EXTRAS = "extensions"

    name: str = ""
    services: Mapping[str, Service] = _empty()
    networks: Mapping[str, Network | None] = _empty()
    volumes: Mapping[str, Volume | None] = _empty()
    secrets: Mapping[str, FileObject | None] = _empty()
    configs: Mapping[str, FileObject | None] = _empty()
    models: Mapping[str, Any] = _empty()
    extensions: Mapping[str, Any] = _empty()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Project:
        """The model of a canonical project dict (the loader's final output)."""
        services = data.get("services")
        if isinstance(services, dict):
            typed = MappingProxyType({n: Service.from_dict(n, s or {}) for n, s in services.items()})
            project = cls._from({k: v for k, v in data.items() if k != "services"})
            present = project.given_keys | {"services"}
            return _replace(project, services=typed, given_keys=present)
        return cls._from(data)

    def service_names(self) -> tuple[str, ...]:
        """Service names, sorted (the order `config --services` lists them)."""
        return tuple(sorted(self.services))


def _replace(obj: Any, **changes: Any) -> Any:
    from dataclasses import replace

    return replace(obj, **changes)
