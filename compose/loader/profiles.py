"""Stage 11: drop the services whose profiles are not active.

A service without `profiles` is always on; one with profiles is on when one of them is active, or
when `*` is active. A service the user names on the command line (`up debug`) is on whatever its
profiles, and so is everything it depends on, or it could not start. Other top-level elements are
never filtered (compose-spec `15-profiles.md`).

After filtering, a kept service that requires a dropped one makes the project invalid, with
compose-go's message (`service "web" depends on undefined service "db"`); a `required: false`
dependency on a dropped service is simply removed.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

from compose.errors import InvalidProjectError, Location, Path
from compose.loader.plain import clone

Locate = Callable[[Path], Location] | None
ALL_PROFILES = "*"


def all_profiles(data: dict) -> list[str]:
    """Every profile any service mentions, sorted and unique (what `config --profiles` prints)."""
    names: set[str] = set()
    for service in (data.get("services") or {}).values():
        if isinstance(service, dict):
            names.update(str(p) for p in service.get("profiles") or [])
    return sorted(names)


def is_enabled(service: Mapping[str, Any], active: Collection[str]) -> bool:
    """compose-go HasProfile: no profiles, `*` active, or one of its profiles active."""
    profiles = service.get("profiles") or []
    if not profiles or ALL_PROFILES in active:
        return True
    return any(p in active for p in profiles)


def apply_profiles(
    data: dict, active: Collection[str], enabled_services: Sequence[str] = (), *, locate: Locate = None
) -> dict:
    """Return a copy of the project keeping only the enabled services (see module doc)."""
    out = clone(data)
    services: dict[str, Any] = out.get("services") or {}
    active = set(active)
    keep = {name for name, service in services.items() if is_enabled(service or {}, active)}
    keep |= _with_dependencies(services, enabled_services)
    kept = {name: service for name, service in services.items() if name in keep}
    for name, service in kept.items():
        if isinstance(service, dict):
            _prune_dependencies(name, service, kept, services, locate)
    if "services" in out:
        out["services"] = kept
    return out


def _with_dependencies(services: Mapping[str, Any], names: Sequence[str]) -> set[str]:
    """The named services and, transitively, every service they depend on."""
    found: set[str] = set()
    todo = [n for n in names if n in services]
    while todo:
        name = todo.pop()
        if name in found:
            continue
        found.add(name)
        depends_on = (services.get(name) or {}).get("depends_on") or {}
        todo.extend(dep for dep in depends_on if dep in services)
    return found


def _prune_dependencies(
    name: str, service: dict, kept: Mapping[str, Any], services: Mapping[str, Any], locate: Locate
) -> None:
    """Drop optional dependencies on disabled services; a required one is an error."""
    depends_on = service.get("depends_on")
    if not isinstance(depends_on, dict):
        return
    for dep in list(depends_on):
        if dep in kept or dep not in services:
            continue  # unknown services are the validator's business, with its own message
        spec = depends_on[dep] or {}
        if spec.get("required", True) is False:
            del depends_on[dep]
            continue
        path: Path = ("services", name, "depends_on", dep)
        raise InvalidProjectError(
            f'service "{name}" depends on undefined service "{dep}"',
            path=path,
            location=locate(path) if locate is not None else None,
        )
    if not depends_on:
        del service["depends_on"]
