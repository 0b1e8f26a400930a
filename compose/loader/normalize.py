"""Stage 8: defaults and implied structure, the way docker compose's `Normalize` adds them.

The merged document says less than the project means: a service with no `networks` is on the
project's `default` network, `links: [db]` means "start db first", a volume with no `name` is
called `<project>_<key>`. `config` prints all of that explicitly, so we add it here, once, on plain
data. Input and output are in the CANONICAL FORM (see `compose.loader`); the input is not changed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from compose.errors import InvalidProjectError, Location, Path
from compose.loader.paths import clean_path
from compose.loader.plain import clone

Warn = Callable[[str], None] | None
Locate = Callable[[Path], Location] | None

RESOURCE_KINDS = ("networks", "volumes", "secrets", "configs")


def normalize(data: dict, *, project_name: str, warn: Warn = None, locate: Locate = None) -> dict:
    """Return a copy of `data` with every default docker compose makes explicit filled in."""
    out = clone(data)
    out = _with_name_first(out, project_name)
    try:
        for kind in RESOURCE_KINDS:
            _relocate_external_names(out, kind, warn)
        _normalize_networks(out)
        services = out.get("services") or {}
        for name, service in services.items():
            if isinstance(service, dict):
                _normalize_service(name, service)
    except InvalidProjectError as err:
        if locate is not None and err.path is not None and err.location is None:
            err.at(location=locate(err.path))
        raise
    for kind in RESOURCE_KINDS:
        _set_names_from_keys(out, kind, project_name)
    return out


def _with_name_first(data: dict, project_name: str) -> dict:
    """`name` is the first key docker compose prints; put it there."""
    rest = {k: v for k, v in data.items() if k != "name"}
    return {"name": project_name, **rest}


# --- top-level resources -------------------------------------------------------------------------


def _relocate_external_names(data: dict, kind: str, warn: Warn) -> None:
    """Legacy `external: {name: x}` becomes `name: x` + `external: true` (compose-go warns)."""
    resources = data.get(kind)
    if not isinstance(resources, dict):
        return
    for key, resource in resources.items():
        if not isinstance(resource, dict):
            continue
        external = resource.get("external")
        if not isinstance(external, dict):
            continue
        resource["external"] = True
        if "name" not in external:
            continue
        legacy = external["name"]
        if warn is not None:
            warn(f"{kind}.{key}: external.name is deprecated. Please set name and external: true")
        if resource.get("name") is None:
            resource["name"] = legacy
        elif resource["name"] != legacy:
            raise InvalidProjectError(
                f"{kind}.{key}: name and external.name conflict; only use name", path=(kind, key, "name")
            )


def _set_names_from_keys(data: dict, kind: str, project_name: str) -> None:
    """Unnamed resources are `<project>_<key>`; unnamed external ones are just `<key>`."""
    resources = data.get(kind)
    if not isinstance(resources, dict):
        return
    for key in list(resources):
        resource = resources[key]
        if resource is None:
            resource = resources[key] = {}
        if not isinstance(resource, dict) or resource.get("name") is not None:
            continue
        resource["name"] = key if _is_true(resource.get("external")) else f"{project_name}_{key}"


def _is_true(value: Any) -> bool:
    """Go's strconv.ParseBool on the printed value: true, "true", "1", "t", "TRUE"..."""
    if isinstance(value, bool):
        return value
    return str(value) in {"1", "t", "T", "true", "TRUE", "True"}


# --- networks ------------------------------------------------------------------------------------


def _normalize_networks(data: dict) -> None:
    """Attach network-less services to `default`, and declare `default` only if someone uses it."""
    uses_default = False
    for service in (data.get("services") or {}).values():
        if not isinstance(service, dict) or "provider" in service or "network_mode" in service:
            continue
        networks = service.get("networks")
        if not networks:
            service["networks"] = {"default": None}
            uses_default = True
        elif "default" in networks:
            uses_default = True
    if not uses_default:
        return
    networks = data.get("networks")
    if not isinstance(networks, dict):
        networks = {}
    if "default" not in networks:
        networks["default"] = {}
    data["networks"] = networks


# --- services ------------------------------------------------------------------------------------


def _normalize_service(name: str, service: dict) -> None:
    """Per-service defaults; each helper is one compose-go rule."""
    if service.get("pull_policy") == "if_not_present":
        service["pull_policy"] = "missing"
    _default_build(service)
    _clean_volume_targets(service)
    _default_secret_targets(service)
    _default_bind_options(service)
    _default_device_requests(service)
    _default_dependencies(service)
    _add_implicit_dependencies(service)
    _relocate_scale(name, service)


def _default_dependencies(service: dict) -> None:
    """`depends_on: {db: {}}` means started and required (filled after the merge, see canonical)."""
    depends_on = service.get("depends_on")
    if isinstance(depends_on, dict):
        for name, spec in depends_on.items():
            spec = depends_on[name] = spec if isinstance(spec, dict) else {}
            spec.setdefault("condition", "service_started")
            spec.setdefault("required", True)


def _default_build(service: dict) -> None:
    """`context: .` and `dockerfile: Dockerfile` unless an inline Dockerfile is given."""
    build = service.get("build")
    if isinstance(build, str):
        build = service["build"] = {"context": build}
    if not isinstance(build, dict):
        return
    if build.get("context") is None:
        build["context"] = "."
    if build.get("dockerfile") is None and build.get("dockerfile_inline") is None:
        build["dockerfile"] = "Dockerfile"


def _clean_volume_targets(service: dict) -> None:
    """Container paths are compared by target, so `/data/` and `/data` must be one path."""
    for volume in service.get("volumes") or []:
        if isinstance(volume, dict) and isinstance(volume.get("target"), str) and volume["target"]:
            volume["target"] = clean_path(volume["target"])


def _default_secret_targets(service: dict) -> None:
    """A secret without target is mounted at /run/secrets/<source> (compose-go defaultSecretMount).

    Configs get no default target in the model (docker compose mounts them at /<source> at run
    time but does not print it), so we leave them alone.
    """
    for secret in service.get("secrets") or []:
        if isinstance(secret, dict) and "target" not in secret:
            secret["target"] = f"/run/secrets/{secret.get('source')}"


def _default_bind_options(service: dict) -> None:
    """An explicit `bind:` block gets `create_host_path: true` (compose-go defaultVolumeBind)."""
    for volume in service.get("volumes") or []:
        if isinstance(volume, dict) and isinstance(volume.get("bind"), dict):
            volume["bind"].setdefault("create_host_path", True)


def _default_device_requests(service: dict) -> None:
    """A GPU/device request with neither `count` nor `device_ids` asks for all (-1)."""
    requests = list(service.get("gpus") or [])
    deploy = service.get("deploy")
    if isinstance(deploy, dict):
        reservations = (deploy.get("resources") or {}).get("reservations") or {}
        requests += list(reservations.get("devices") or [])
    for request in requests:
        if not isinstance(request, dict):
            continue
        if request.get("count") == "all":
            request["count"] = -1
        if "count" not in request and "device_ids" not in request:
            request["count"] = -1


def _add_implicit_dependencies(service: dict) -> None:
    """links, `service:x` namespaces and volumes_from imply depends_on entries (never overriding)."""
    from compose.graph import implicit_dependencies

    implied = list(implicit_dependencies(service))
    if not implied:
        return
    depends_on = service.get("depends_on")
    if not isinstance(depends_on, dict):
        depends_on = {}
    for target, _origin, restart in implied:
        if target not in depends_on:
            entry = {"condition": "service_started", "required": True}
            if restart:  # `restart: false` is the default and docker compose does not print it
                entry["restart"] = True
            depends_on[target] = entry
    service["depends_on"] = depends_on


def _relocate_scale(name: str, service: dict) -> None:
    """With a `deploy` block, `scale` is copied to `deploy.replicas`; two different values clash."""
    scale = service.get("scale")
    deploy = service.get("deploy")
    if scale is None or not isinstance(deploy, dict):
        return
    replicas = deploy.get("replicas")
    if replicas is not None and replicas != scale:
        path: Path = ("services", name, "scale")
        raise InvalidProjectError(
            f"services.{name}: can't set distinct values on 'scale' and 'deploy.replicas'", path=path
        )
    deploy["replicas"] = scale
