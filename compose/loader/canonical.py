"""Stage 5: short syntax -> long syntax, so every later stage sees one shape per attribute.

The rules form a table keyed by glob paths ("services.*.ports"), like compose-go's
transform/canonical.go plus the value decoding its typed model does (durations, byte sizes, cpus,
mappings), so that the result is already what `docker compose config` prints. The table is compiled
into a trie and the document is walked once along it; everything off the trie is copied as is.
Errors carry the exact key path and, when a `locate` callable is given, the file position.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from compose.errors import InvalidProjectError, Location, Path
from compose.loader.paths import clean_path
from compose.loader.plain import clone
from compose.loader.syntax import (
    format_duration,
    go_string,
    nano_cpus,
    parse_bytes,
    parse_device_spec,
    parse_duration,
    parse_extra_host,
    parse_port_spec,
    parse_ulimit,
    parse_volume_spec,
    shell_split,
)
from engine.api import frozen

__all__ = ["RULES", "canonicalize"]

Locate = Callable[[Path], Location]
Warn = Callable[[str], None]


@frozen
class _Context:
    """What every rule needs besides the value: error positions and the strictness switch."""

    locate: Locate | None
    warn: Warn | None
    strict: bool

    def error(self, message: str, path: Path) -> InvalidProjectError:
        location = self.locate(path) if self.locate is not None else None
        return InvalidProjectError(message, path=path, location=location)

    def parse(self, parser: Callable[[Any], Any], raw: Any, path: Path) -> Any:
        """Run a short-syntax parser; outside strict mode an unresolved `${...}` is kept verbatim."""
        if not self.strict and _has_variable(raw):
            try:
                return parser(raw)
            except InvalidProjectError:
                return raw
        try:
            return parser(raw)
        except InvalidProjectError as exc:
            raise self.error(exc.message, path) from None


def _has_variable(raw: Any) -> bool:
    return isinstance(raw, str) and "${" in raw


Rule = Callable[[Any, Path, _Context], Any]


# --------------------------------------------------------------------------------------------- helpers


def _string_list(value: Any) -> Any:
    """String-or-list attributes always become lists."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [go_string(item) if not isinstance(item, dict | list) else item for item in value]
    return value


def _split_entries(value: list, path: Path, ctx: _Context, *, bare: Any, require_equals: bool) -> dict:
    """A list of "KEY=VALUE" strings as a dict; a bare "KEY" maps to `bare` (or is an error)."""
    mapping: dict[str, Any] = {}
    for index, entry in enumerate(value):
        key, found, item = go_string(entry).partition("=")
        if not found:
            if require_equals:
                raise ctx.error(f"invalid value {go_string(entry)}, expected key=value", (*path, index))
            mapping[key] = bare
        else:
            mapping[key] = item
    return mapping


def _mapping(bare: Any, *, null: Any, require_equals: bool = False) -> Rule:
    """A rule turning list-or-dict key/value attributes into dict[str, str | None]."""

    def rule(value: Any, path: Path, ctx: _Context) -> Any:
        if isinstance(value, list):
            return _split_entries(value, path, ctx, bare=bare, require_equals=require_equals)
        if isinstance(value, dict):
            return {str(k): (null if v is None else go_string(v)) for k, v in value.items()}
        return value

    return rule


_equals_mapping = _mapping(None, null=None)  # environment, build.args: "KEY" alone stays unresolved
_labels = _mapping("", null="")  # labels, annotations, sysctls...: "KEY" alone is an empty value
_key_value = _mapping("", null="", require_equals=True)  # build.additional_contexts


def _options(value: Any, path: Path, ctx: _Context) -> Any:
    """driver_opts / logging.options: map[string]string in compose-go, so values are strings."""
    if isinstance(value, dict):
        return {str(k): ("" if v is None else go_string(v)) for k, v in value.items()}
    return value


# --------------------------------------------------------------------------------------------- scalars
# Projects repeat the same few values ("10s", "512m", "8080:80") many times: parse each text once.


@lru_cache(maxsize=4096, typed=True)
def _duration_text(raw: Any) -> str:
    return format_duration(parse_duration(raw))


@lru_cache(maxsize=4096, typed=True)
def _bytes_text(raw: Any) -> str:
    return str(parse_bytes(raw))


_cpus_value = lru_cache(maxsize=1024, typed=True)(nano_cpus)
_split_words = lru_cache(maxsize=4096, typed=True)(lambda text: tuple(shell_split(text)))
_port_entries = lru_cache(maxsize=4096, typed=True)(parse_port_spec)
_volume_entry = lru_cache(maxsize=4096, typed=True)(parse_volume_spec)


def _duration(value: Any, path: Path, ctx: _Context) -> Any:
    if value is None:
        return None
    return ctx.parse(_duration_text, value, path)


def _bytes(value: Any, path: Path, ctx: _Context) -> Any:
    if value is None:
        return None
    return ctx.parse(_bytes_text, value, path)


def _cpus(value: Any, path: Path, ctx: _Context) -> Any:
    if value is None:
        return None
    return ctx.parse(_cpus_value, value, path)


def _to_str(value: Any, path: Path, ctx: _Context) -> Any:
    return value if value is None or isinstance(value, dict | list) else go_string(value)


def _str_list(value: Any, path: Path, ctx: _Context) -> Any:
    return _string_list(value)


def _command(value: Any, path: Path, ctx: _Context) -> Any:
    """command / entrypoint: a string is shell-split, a list keeps its words."""
    if isinstance(value, str):
        words = ctx.parse(_split_words, value, path)
        return list(words) if isinstance(words, tuple) else words
    if isinstance(value, list):
        return [go_string(item) for item in value]
    return value


def _healthcheck_test(value: Any, path: Path, ctx: _Context) -> Any:
    if isinstance(value, str):
        return ["CMD-SHELL", value]
    if isinstance(value, list):
        return [go_string(item) for item in value]
    return value


def _pull_policy(value: Any, path: Path, ctx: _Context) -> Any:
    return "missing" if value == "if_not_present" else value


# --------------------------------------------------------------------------------------------- services


def _ports(value: Any, path: Path, ctx: _Context) -> Any:
    """Each short entry may expand to several (ranges); long entries get protocol/mode defaults."""
    if not isinstance(value, list):
        return value
    ports: list[Any] = []
    for index, entry in enumerate(value):
        entry_path = (*path, index)
        if isinstance(entry, dict):
            ports.append(_long_port(entry, entry_path, ctx))
        elif isinstance(entry, str | int) and not isinstance(entry, bool):
            parsed = ctx.parse(_port_entries, entry, entry_path)
            ports.extend(clone(parsed) if isinstance(parsed, list) else [parsed])
        else:
            raise ctx.error(f"invalid type {type(entry).__name__} for port", entry_path)
    return ports


def _long_port(entry: dict, path: Path, ctx: _Context) -> dict:
    port = clone(entry)
    target = port.get("target")
    if isinstance(target, str) and target.isdigit():
        port["target"] = int(target)
    published = port.get("published")
    if published is not None and not isinstance(published, str):
        port["published"] = go_string(published)
    port.setdefault("protocol", "tcp")
    port.setdefault("mode", "ingress")
    return port


def _expose(value: Any, path: Path, ctx: _Context) -> Any:
    if isinstance(value, list):
        return [go_string(item) for item in value]
    return value


def _volume(value: Any, path: Path, ctx: _Context) -> Any:
    """Short `src:dst:mode` -> long form with the target cleaned like compose-go does."""
    if isinstance(value, str):
        parsed = clone(ctx.parse(_volume_entry, value, path))
        if isinstance(parsed, dict) and parsed.get("target"):
            parsed["target"] = clean_path(parsed["target"])
        return parsed
    if isinstance(value, dict):
        return value
    raise ctx.error(f"invalid type {type(value).__name__} for service volume mount", path)


def _volume_bind(value: Any, path: Path, ctx: _Context) -> Any:
    """A long-syntax `bind:` block creates a missing host path unless told otherwise."""
    if value is None:
        return {"create_host_path": True}
    if isinstance(value, dict):
        return {**value, "create_host_path": value.get("create_host_path", True)}
    raise ctx.error(f"invalid type {type(value).__name__} for service volume bind", path)


def _device(value: Any, path: Path, ctx: _Context) -> Any:
    if isinstance(value, str):
        return ctx.parse(parse_device_spec, value, path)
    return value


def _device_count(value: Any, path: Path, ctx: _Context) -> Any:
    """`count: all` is -1 in compose-go's model, numeric strings are numbers."""
    if isinstance(value, str):
        if value.lower() == "all":
            return -1
        try:
            return int(value, 10)
        except ValueError:
            if not ctx.strict and _has_variable(value):
                return value
            raise ctx.error(
                f"invalid string value for 'count' (the only value allowed is 'all' or a number): {value}",
                path,
            ) from None
    return value


def _device_request(value: Any, path: Path, ctx: _Context) -> Any:
    """GPU / device reservations default to every device when neither count nor device_ids is set."""
    if not isinstance(value, dict):
        return value
    if "count" in value and "device_ids" in value:
        raise ctx.error('"count" and "device_ids" attributes are exclusive', path)
    if "count" not in value and "device_ids" not in value:
        return {**value, "count": -1}
    return value


def _gpus(value: Any, path: Path, ctx: _Context) -> Any:
    if isinstance(value, str):
        return [{"count": -1}]
    return value


def _ulimit(value: Any, path: Path, ctx: _Context) -> Any:
    return ctx.parse(parse_ulimit, value, path)


def _extra_hosts(value: Any, path: Path, ctx: _Context) -> Any:
    """List or map -> sorted list of "host=ip" (ip lists split), as compose-go prints HostsList."""
    entries: list[str] = []
    if isinstance(value, list):
        for index, entry in enumerate(value):
            parsed = ctx.parse(parse_extra_host, go_string(entry), (*path, index))
            if isinstance(parsed, str):
                entries.append(parsed)
                continue
            host, ips = parsed
            entries.extend(f"{host}={ip}" for ip in ips.split(","))
    elif isinstance(value, dict):
        for host, ips in value.items():
            for ip in ips if isinstance(ips, list) else [ips]:
                text = "" if ip is None else go_string(ip)
                entries.append(ctx.parse(lambda raw, h=host: _host_entry(h, raw), text, (*path, host)))
    else:
        return value
    return sorted(entries)


def _host_entry(host: str, ip: str) -> str:
    parsed_host, parsed_ip = parse_extra_host(f"{host}={ip}")
    return f"{parsed_host}={parsed_ip}"


def _depends_on(value: Any, path: Path, ctx: _Context) -> Any:
    """List -> map with service_started/required. Map entries are left as written: an override file's
    entry that omits `required` must not reset a base `required: false`, so normalize fills the defaults
    after the merge."""
    if isinstance(value, list):
        return {go_string(name): {"condition": "service_started", "required": True} for name in value}
    if isinstance(value, dict):
        result = {}
        for name, spec in value.items():
            if spec is not None and not isinstance(spec, dict):
                raise ctx.error(f"unsupported value {go_string(spec)}", (*path, name))
            result[name] = dict(spec or {})
        return result
    raise ctx.error(f"invalid type {type(value).__name__} for depends_on", path)


def _service_networks(value: Any, path: Path, ctx: _Context) -> Any:
    if isinstance(value, list):
        return {go_string(name): None for name in value}
    return value


def _file_mount(value: Any, path: Path, ctx: _Context) -> Any:
    """Service secrets/configs: a name becomes {source}; numeric uid/gid become strings."""
    if isinstance(value, str):
        return {"source": value}
    if isinstance(value, dict):
        mount = dict(value)
        for key in ("uid", "gid"):
            if mount.get(key) is not None:
                mount[key] = go_string(mount[key])
        mode = mount.get("mode")
        if isinstance(mode, int) and not isinstance(mode, bool):
            mount["mode"] = f"0{mode:o}"
        return mount
    raise ctx.error(f"unsupported type {type(value).__name__}", path)


def _build(value: Any, path: Path, ctx: _Context) -> Any:
    if isinstance(value, str):
        return {"context": value}
    return value


def _ssh(value: Any, path: Path, ctx: _Context) -> Any:
    """build.ssh as printed by compose-go: "default" or "id: path" entries."""
    if isinstance(value, dict):
        return [key if item in (None, "") else f"{key}: {item}" for key, item in value.items()]
    if isinstance(value, list):
        keys = []
        for index, entry in enumerate(value):
            key, found, item = go_string(entry).partition("=")
            if not found and key != "default":
                raise ctx.error(f'invalid ssh key "{entry}"', (*path, index))
            keys.append(f"{key}: {item}" if found and item else key)
        return keys
    return value


def _env_file(value: Any, path: Path, ctx: _Context) -> Any:
    """str / list of str / list of {path, required, format} -> list of dicts, required default true."""
    entries = [value] if isinstance(value, str) else value
    if not isinstance(entries, list):
        raise ctx.error(f"invalid type {type(value).__name__} for env_file", path)
    result = []
    for entry in entries:
        if isinstance(entry, str):
            result.append({"path": entry, "required": True})
        elif isinstance(entry, dict):
            result.append({**entry, "required": entry.get("required", True)})
    return result


def _extends(value: Any, path: Path, ctx: _Context) -> Any:
    if isinstance(value, str):
        return {"service": value}
    return value


def _watch(value: Any, path: Path, ctx: _Context) -> Any:
    """develop.watch entries whose `path` is a list become one entry per path."""
    if not isinstance(value, list):
        return value
    result = []
    for entry in value:
        paths = entry.get("path") if isinstance(entry, dict) else None
        if isinstance(paths, list):
            result.extend({**entry, "path": one} for one in paths)
        else:
            result.append(entry)
    return result


def _service(value: Any, path: Path, ctx: _Context) -> Any:
    """A null service is an empty one."""
    return {} if value is None else value


# --------------------------------------------------------------------------------------------- top level


def _resource(value: Any, path: Path, ctx: _Context) -> Any:
    """Top-level networks/volumes/secrets/configs entries: null means defaults, i.e. {}."""
    return {} if value is None else value


def _include(value: Any, path: Path, ctx: _Context) -> Any:
    if isinstance(value, str):
        return {"path": [value]}
    return value


# --------------------------------------------------------------------------------------------- table

_SERVICE_RULES: dict[str, Rule] = {
    "": _service,
    "annotations": _labels,
    "blkio_config.device_read_bps.*.rate": _bytes,
    "blkio_config.device_write_bps.*.rate": _bytes,
    "build": _build,
    "build.additional_contexts": _key_value,
    "build.args": _equals_mapping,
    "build.extra_hosts": _extra_hosts,
    "build.labels": _labels,
    "build.secrets.*": _file_mount,
    "build.shm_size": _bytes,
    "build.ssh": _ssh,
    "build.ulimits.*": _ulimit,
    "command": _command,
    "configs.*": _file_mount,
    "cpus": _cpus,
    "depends_on": _depends_on,
    "deploy.labels": _labels,
    "deploy.resources.limits.cpus": _cpus,
    "deploy.resources.limits.memory": _bytes,
    "deploy.resources.reservations.cpus": _cpus,
    "deploy.resources.reservations.memory": _bytes,
    "deploy.resources.reservations.devices.*": _device_request,
    "deploy.resources.reservations.devices.*.count": _device_count,
    "deploy.restart_policy.delay": _duration,
    "deploy.restart_policy.window": _duration,
    "deploy.rollback_config.delay": _duration,
    "deploy.rollback_config.monitor": _duration,
    "deploy.update_config.delay": _duration,
    "deploy.update_config.monitor": _duration,
    "develop.watch": _watch,
    "develop.watch.*.ignore": _str_list,
    "develop.watch.*.include": _str_list,
    "devices.*": _device,
    "dns": _str_list,
    "dns_opt": _str_list,
    "dns_search": _str_list,
    "entrypoint": _command,
    "env_file": _env_file,
    "environment": _equals_mapping,
    "expose": _expose,
    "extends": _extends,
    "extra_hosts": _extra_hosts,
    "gpus": _gpus,
    "gpus.*": _device_request,
    "gpus.*.count": _device_count,
    "group_add": _expose,
    "healthcheck.interval": _duration,
    "healthcheck.start_interval": _duration,
    "healthcheck.start_period": _duration,
    "healthcheck.test": _healthcheck_test,
    "healthcheck.timeout": _duration,
    "label_file": _str_list,
    "labels": _labels,
    "logging.options": _options,
    "mem_limit": _bytes,
    "mem_reservation": _bytes,
    "memswap_limit": _bytes,
    "networks": _service_networks,
    "ports": _ports,
    "pull_policy": _pull_policy,
    "secrets.*": _file_mount,
    "shm_size": _bytes,
    "stop_grace_period": _duration,
    "sysctls": _labels,
    "tmpfs": _str_list,
    "ulimits.*": _ulimit,
    "volumes.*": _volume,
    "volumes.*.bind": _volume_bind,
    "volumes.*.tmpfs.size": _bytes,
}

_RESOURCE_RULES: dict[str, Rule] = {
    "": _resource,
    "labels": _labels,
    "driver_opts": _options,
}

RULES: dict[str, Rule] = {
    **{("services.*." + key).rstrip("."): rule for key, rule in _SERVICE_RULES.items()},
    **{
        (f"{kind}.*." + key).rstrip("."): rule
        for kind in ("networks", "volumes", "secrets", "configs")
        for key, rule in _RESOURCE_RULES.items()
    },
    "include.*": _include,
    "include.*.path": _str_list,
    "include.*.env_file": _str_list,
}
"""Glob path -> rule. `*` matches any mapping key or sequence index; a rule sees the value after the
rules of its parents ran, so "services.*.build.args" also applies to `build: ./dir` turned into a dict."""


@dataclass(slots=True)
class _Node:
    rule: Rule | None = None
    children: dict[str, _Node] = field(default_factory=dict)


def _compile(rules: dict[str, Rule]) -> _Node:
    root = _Node()
    for pattern, rule in rules.items():
        node = root
        for segment in pattern.split("."):
            node = node.children.setdefault(segment, _Node())
        node.rule = rule
    return root


_TRIE = _compile(RULES)


def _walk(value: Any, node: _Node, path: Path, ctx: _Context) -> Any:
    """Apply the node's rule, then descend where the trie goes on; copy everything else."""
    if node.rule is not None:
        value = node.rule(value, path, ctx)
    children = node.children
    if not children:
        return clone(value)
    if isinstance(value, dict):
        wildcard = children.get("*")
        result = {}
        for key, item in value.items():
            child = children.get(key, wildcard) if isinstance(key, str) else wildcard
            result[key] = _walk(item, child, (*path, key), ctx) if child is not None else clone(item)
        return result
    if isinstance(value, list):
        child = children.get("*")
        if child is None:
            return clone(value)
        return [_walk(item, child, (*path, index), ctx) for index, item in enumerate(value)]
    return value


def canonicalize(
    data: dict, *, locate: Locate | None = None, warn: Warn | None = None, strict: bool = True
) -> dict:
    """Return a new document in the CANONICAL FORM (see compose.loader); the input is not modified.

    strict=False (used by `config --no-interpolate`) leaves values that still hold `${...}` as they
    are instead of failing on them.
    """
    ctx = _Context(locate=locate, warn=warn, strict=strict)
    return omit_false(_walk(data, _TRIE, (), ctx))


# Boolean fields docker compose prints even when false (Go `*bool` or no `omitempty`); every other
# `false` is the zero value and is left out of the canonical form, as `docker compose config` does.
_KEEP_FALSE = {
    ("services", "*", "depends_on", "*", "required"),
    ("services", "*", "init"),
    ("services", "*", "attach"),
    ("services", "*", "env_file", "*", "required"),
    ("services", "*", "volumes", "*", "bind", "create_host_path"),
    ("networks", "*", "enable_ipv4"),
    ("networks", "*", "enable_ipv6"),
}


def omit_false(data: dict) -> dict:
    """Drop `key: false` below services and top-level resources (never inside `x-*` extensions)."""
    for section in ("services", "networks", "volumes", "secrets", "configs"):
        if isinstance(data.get(section), dict):
            _drop_false(data[section], (section,))
    return data


def _keeps_false(path: tuple) -> bool:
    return any(
        len(pattern) == len(path) and all(p in ("*", part) for p, part in zip(pattern, path, strict=True))
        for pattern in _KEEP_FALSE
    )


def _drop_false(node: Any, path: tuple) -> None:
    if isinstance(node, dict):
        for key in [k for k, v in node.items() if v is False and not _keeps_false((*path, k))]:
            del node[key]
        for key, value in node.items():
            if not (isinstance(key, str) and key.startswith("x-")):
                _drop_false(value, (*path, key))
    elif isinstance(node, list):
        for item in node:
            _drop_false(item, (*path, "*"))
