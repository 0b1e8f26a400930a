"""Fold one canonical Compose document into another, the way docker compose merges `-f` files.

Inputs are already in the CANONICAL FORM (see `compose.loader`), so most "merge as a sequence of KEY=VALUE"
rules of compose-go collapse into "merge two dicts, later key wins". The rules are tables keyed by glob
paths ("services.*.ports"), checked against compose-go `override/merge.go` and `override/uncity.go`:

- mappings merge key by key, later wins; a null override keeps the base value (except in key/value maps
  such as `environment`, where `KEY: null` unsets the earlier value);
- sequences are appended, then made unique by the key of their path (`_UNIQUE`), a later entry replacing
  an earlier one in place;
- `command`, `entrypoint`, `healthcheck.test`, each `ulimits.*` entry replace;
- `logging` with a different driver drops the old options; `networks.*.ipam.config` merges by subnet;
  `extra_hosts` drops exact duplicates only (one host may map to several addresses).

`!reset` / `!override` tags of the override document remove the tagged path from the base before merging,
so a reset key disappears and an overridden value replaces the base wholesale (compose-go `loader/reset.go`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from compose.errors import InvalidProjectError, Location, Path, format_path
from compose.loader.plain import clone

Locate = Callable[[Path], Location]
Merger = Callable[[Any, Any, Path], Any]
Indexer = Callable[[Any], str]


# ---------------------------------------------------------------------------------------------------------
# Public entry points


def merge_documents(
    base: dict,
    override: dict,
    *,
    tags: Mapping[Path, str] | None = None,
    locate: Locate | None = None,
) -> dict:
    """Merge `override` (a later file) into `base` (what came before); neither input is modified."""
    work = clone(base) if base else {}
    _apply_tags(work, tags or {}, ())
    try:
        merged = _merge(work, override or {}, ())
    except InvalidProjectError as exc:
        raise _located(exc, locate) from None
    return enforce_unicity(merged)


def merge_service(
    base: dict,
    override: dict,
    *,
    tags: Mapping[Path, str] | None = None,
    prefix: Path = (),
    locate: Locate | None = None,
) -> dict:
    """Merge one service definition into another (used by `extends`), with the service-level rules.

    `prefix` is the service's path (("services", "web")); tag paths are matched under it. With an empty
    prefix, tag paths are taken as relative to the service.
    """
    root = tuple(prefix) if len(prefix) == 2 and prefix[0] == "services" else ("services", "")
    work = clone(base) if base else {}
    _apply_tags(work, tags or {}, tuple(prefix))
    try:
        merged = _merge(work, override or {}, root)
    except InvalidProjectError as exc:
        raise _located(exc, locate) from None
    return enforce_unicity(merged, root=root)


def enforce_unicity(data: Any, *, root: Path = ()) -> Any:
    """Drop redefinitions in the sequences that have a uniqueness key; the later entry takes the slot.

    Public because compose-go runs it again after canonicalization (port ranges can reveal duplicates).
    """
    return _unique(data, tuple(root))


# ---------------------------------------------------------------------------------------------------------
# Path patterns


def _parse(pattern: str) -> tuple[str, ...]:
    return tuple(pattern.split("."))


def _matches(path: Path, pattern: tuple[str, ...]) -> bool:
    """True when `path` has the pattern's length and every part equals it or the pattern says `*`."""
    if len(path) != len(pattern):
        return False
    return all(p == "*" or p == str(part) for part, p in zip(path, pattern, strict=True))


def _lookup(table: list[tuple[tuple[str, ...], Any]], path: Path) -> Any:
    for pattern, value in table:
        if _matches(path, pattern):
            return value
    return None


# ---------------------------------------------------------------------------------------------------------
# !reset / !override


def _apply_tags(base: dict, tags: Mapping[Path, str], prefix: Path) -> None:
    """Remove from `base` every path tagged in the override document (in place on a private copy).

    Paths through a sequence index are ignored, like compose-go (it cannot remove sequence items).
    """
    for tagged, kind in tags.items():
        if kind not in ("reset", "override"):
            continue
        tagged = tuple(tagged)
        if tagged[: len(prefix)] != prefix:
            continue
        _delete_path(base, tagged[len(prefix) :])


def _delete_path(node: Any, path: Path) -> None:
    if not path or any(isinstance(part, int) for part in path):
        return
    for part in path[:-1]:
        if not isinstance(node, dict) or part not in node:
            return
        node = node[part]
    if isinstance(node, dict):
        node.pop(path[-1], None)


# ---------------------------------------------------------------------------------------------------------
# Merging


def _merge(base: Any, override: Any, path: Path) -> Any:
    """Merge two values found at `path`, dispatching on the special rules first."""
    special = _lookup(_MERGERS, path)
    if special is not None:
        return special(base, override, path)
    return _merge_default(base, override, path)


def _merge_default(base: Any, override: Any, path: Path) -> Any:
    if override is None:
        return clone(base)
    if isinstance(base, dict):
        if not isinstance(override, dict):
            raise _mismatch(path, base, override)
        return _merge_mappings(base, override, path)
    if isinstance(base, list):
        if not isinstance(override, list):
            raise _mismatch(path, base, override)
        return clone(base) + clone(override)
    return clone(override)


def _merge_mappings(base: dict, override: dict, path: Path) -> dict:
    out = clone(base)
    for key, value in override.items():
        out[key] = _merge(base[key], value, (*path, key)) if key in base else clone(value)
    return out


def _mismatch(path: Path, base: Any, override: Any) -> InvalidProjectError:
    kinds = {dict: "a mapping", list: "a sequence"}
    was = kinds.get(type(base), "a scalar")
    now = kinds.get(type(override), "a scalar")
    message = f"cannot override {format_path(path)}: {was} cannot be merged with {now}"
    return InvalidProjectError(message, path=path)


def _replace(_base: Any, override: Any, _path: Path) -> Any:
    """command, entrypoint, healthcheck.test, ulimits.*: the later file wins wholesale."""
    return clone(override)


def _merge_key_values(base: Any, override: Any, path: Path) -> Any:
    """environment, labels, ...: later key wins, and `KEY: null` unsets the earlier value."""
    if override is None:
        return clone(base)
    if base is None:
        return clone(override)
    left, right = _as_key_values(base), _as_key_values(override)
    if left is None or right is None:
        raise _mismatch(path, base, override)
    return {**clone(left), **clone(right)}


def _as_key_values(value: Any) -> dict | None:
    """A canonical dict as is; a stray `KEY=VALUE` list (non-canonical input) as a dict."""
    if isinstance(value, dict):
        return value
    if isinstance(value, list):
        out: dict[str, Any] = {}
        for item in value:
            key, sep, val = str(item).partition("=")
            out[key] = val if sep else None
        return out
    return None


def _merge_logging(base: Any, override: Any, path: Path) -> Any:
    """Options are kept only when both files name the same driver (or one names none)."""
    both = isinstance(base, dict) and isinstance(override, dict)
    if both and "driver" in base and "driver" in override and base["driver"] != override["driver"]:
        return clone(override)
    return _merge_default(base, override, path)


def _merge_build(base: Any, override: Any, path: Path) -> Any:
    """`build: ./dir` is `{context: ./dir}`; then an ordinary mapping merge."""
    return _merge_default(_as_build(base), _as_build(override), path)


def _as_build(value: Any) -> Any:
    return {"context": value} if isinstance(value, str) else value


def _merge_depends_on(base: Any, override: Any, path: Path) -> Any:
    """List syntax (non-canonical input) gets compose-go's defaults before the mapping merge."""
    default = {"condition": "service_started", "required": True}
    return _merge_default(_as_mapping(base, default), _as_mapping(override, default), path)


def _merge_networks(base: Any, override: Any, path: Path) -> Any:
    return _merge_default(_as_mapping(base, None), _as_mapping(override, None), path)


def _as_mapping(value: Any, default: dict | None) -> Any:
    if isinstance(value, list):
        return {str(item): clone(default) for item in value}
    return value


def _merge_extra_hosts(base: Any, override: Any, path: Path) -> Any:
    """Append, skipping entries already present verbatim; `host=ip1` and `host=ip2` both stay."""
    if override is None:
        return clone(base)
    if isinstance(base, list) and isinstance(override, list):
        seen = {_host_entry(item) for item in base}
        return clone(base) + [clone(item) for item in override if _host_entry(item) not in seen]
    return _merge_default(base, override, path)


def _host_entry(item: Any) -> str:
    text = str(item)
    if "=" not in text and ":" in text:  # legacy `host:ip` spelling of the same entry
        host, _, addr = text.partition(":")
        return f"{host}={addr}"
    return text


def _merge_ipam_config(base: Any, override: Any, path: Path) -> Any:
    """Pools are keyed by subnet: same subnet merges in place, a new subnet is appended."""
    if override is None:
        return clone(base)
    if not isinstance(base, list) or not isinstance(override, list):
        return _merge_default(base, override, path)
    out = clone(base)
    for index, pool in enumerate(override):
        subnet = pool.get("subnet") if isinstance(pool, dict) else None
        slot = next((i for i, old in enumerate(out) if subnet and _subnet(old) == subnet), None)
        if slot is None:
            out.append(clone(pool))
        else:
            out[slot] = _merge_default(out[slot], pool, (*path, index))
    return out


def _subnet(pool: Any) -> Any:
    return pool.get("subnet") if isinstance(pool, dict) else None


_KEY_VALUE_MAPS = (
    "services.*.annotations",
    "services.*.build.additional_contexts",
    "services.*.build.args",
    "services.*.build.labels",
    "services.*.deploy.labels",
    "services.*.environment",
    "services.*.labels",
    "services.*.sysctls",
    "services.*.volumes.*.volume.labels",
    "networks.*.labels",
    "volumes.*.labels",
)

_MERGERS: list[tuple[tuple[str, ...], Merger]] = [
    (_parse("services.*.command"), _replace),
    (_parse("services.*.entrypoint"), _replace),
    (_parse("services.*.healthcheck.test"), _replace),
    (_parse("services.*.ulimits.*"), _replace),
    (_parse("services.*.logging"), _merge_logging),
    (_parse("services.*.build"), _merge_build),
    (_parse("services.*.depends_on"), _merge_depends_on),
    (_parse("services.*.networks"), _merge_networks),
    (_parse("services.*.models"), _merge_networks),
    (_parse("services.*.extra_hosts"), _merge_extra_hosts),
    (_parse("services.*.build.extra_hosts"), _merge_extra_hosts),
    (_parse("networks.*.ipam.config"), _merge_ipam_config),
    *((_parse(p), _merge_key_values) for p in _KEY_VALUE_MAPS),
]


# ---------------------------------------------------------------------------------------------------------
# Uniqueness


def _unique(value: Any, path: Path) -> Any:
    """Walk mappings only (compose-go never looks inside sequence items for these rules)."""
    if isinstance(value, dict):
        return {k: _unique(v, (*path, k)) for k, v in value.items()}
    if isinstance(value, list):
        indexer = _lookup(_UNIQUE, path)
        if indexer is not None:
            return _dedupe(value, indexer)
    return value


def _dedupe(items: list, indexer: Indexer) -> list:
    out: list = []
    slots: dict[str, int] = {}
    for item in items:
        key = indexer(item)
        if key in slots:
            out[slots[key]] = item
        else:
            slots[key] = len(out)
            out.append(item)
    return out


def _by_value(item: Any) -> str:
    """Plain values and `KEY=VALUE` strings: the part before `=`."""
    return str(item).partition("=")[0] if isinstance(item, str) else repr(item)


def _by_port(item: Any) -> str:
    if isinstance(item, dict):
        host = item.get("host_ip") or "0.0.0.0"
        protocol = item.get("protocol") or "tcp"
        return f"{host}:{item.get('published')}:{item.get('target')}/{protocol}"
    return str(item)


def _by_target(item: Any) -> str:
    if isinstance(item, dict):
        return str(item.get("target"))
    parts = str(item).split(":")
    return parts[1] if len(parts) > 1 else parts[0]


def _by_mount(default_dir: str) -> Indexer:
    def index(item: Any) -> str:
        if isinstance(item, dict):
            if item.get("target") is not None:
                return str(item["target"])
            return f"{default_dir}/{item.get('source')}"
        return f"{default_dir}/{item}"

    return index


def _by_env_file(item: Any) -> str:
    return str(item.get("path")) if isinstance(item, dict) else str(item)


def _by_string(item: Any) -> str:
    return str(item)


_UNIQUE: list[tuple[tuple[str, ...], Indexer]] = [
    (_parse("services.*.ports"), _by_port),
    (_parse("services.*.volumes"), _by_target),
    (_parse("services.*.devices"), _by_target),
    (_parse("services.*.secrets"), _by_mount("/run/secrets")),
    (_parse("services.*.configs"), _by_mount("")),
    (_parse("services.*.env_file"), _by_env_file),
    (_parse("services.*.expose"), _by_string),
    *(
        (_parse(p), _by_value)
        for p in (
            "services.*.build.tags",
            "services.*.cap_add",
            "services.*.cap_drop",
            "services.*.dns",
            "services.*.dns_opt",
            "services.*.dns_search",
            "services.*.links",
            "services.*.networks.*.aliases",
            "services.*.networks.*.link_local_ips",
            "services.*.profiles",
            "services.*.tmpfs",
        )
    ),
    # key/value maps arrive as mappings from canonical; as lists (--no-interpolate keeps some raw) they
    # are unique by value
    *((_parse(p), _by_value) for p in _KEY_VALUE_MAPS),
]


def _located(exc: InvalidProjectError, locate: Locate | None) -> InvalidProjectError:
    if locate is not None and exc.path is not None and exc.location is None:
        exc.location = locate(exc.path)
    return exc
