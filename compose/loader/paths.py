"""Stage 9: relative paths made absolute, the way docker compose resolves them.

A Compose file names host paths relative to the project directory (or, for a service pulled in by
`extends`, to the directory of the file it came from). `config` prints them absolute, and every
later layer wants absolute paths, so we resolve them once here. Only fields that *are* host paths
are touched: remote build contexts (git, http), `service:` contexts and named volumes are not.

Rules follow compose-go `paths/` : `~` is replaced by the home directory (`~x` -> `$HOME/x`), a
relative path is joined to the base directory and cleaned, an absolute path is kept as written.
"""

from __future__ import annotations

import os
import posixpath
import re
from collections.abc import Callable
from typing import Any

from compose.errors import InvalidProjectError
from compose.loader.plain import clone

REMOTE_PREFIXES = ("https://", "http://", "git://", "ssh://", "github.com/", "git@")
SERVICE_PREFIX = "service:"
_WINDOWS_ABS = re.compile(r"^([A-Za-z]:[\\/]|\\\\)")


def clean_path(path: str) -> str:
    """Go's path.Clean: collapse `//`, `.` and `..`; never leaves a trailing slash or a `//` root."""
    if not path:
        return "."
    cleaned = posixpath.normpath(path)
    if cleaned.startswith("//"):
        cleaned = "/" + cleaned.lstrip("/")
    return cleaned


def default_home() -> str:
    """The home directory compose-go uses (os.UserHomeDir: $HOME)."""
    return os.environ.get("HOME") or os.path.expanduser("~")


def expand_user(path: str, home: str | None) -> str:
    """compose-go ExpandUser: a leading `~` is the home directory, joined to the rest."""
    if not path.startswith("~"):
        return path
    return _join(home if home is not None else default_home(), path[1:])


def abs_path(path: str, base_dir: str, home: str | None = None) -> str:
    """Make a host path absolute: expand `~`, keep absolute paths, join relative ones to base_dir."""
    if not path:
        return path
    path = expand_user(path, home)
    if posixpath.isabs(path):
        return path
    return _join(base_dir, path)


def maybe_unix_path(path: str, base_dir: str, home: str | None = None) -> str:
    """Like abs_path, but a Windows absolute path (`C:\\x`, `\\\\server`) is also kept as written."""
    if not path:
        return path
    expanded = expand_user(path, home)
    if _WINDOWS_ABS.match(expanded):
        return expanded
    return abs_path(expanded, base_dir, home)


def is_remote_context(value: str) -> bool:
    """A build context buildkit fetches itself: a URL, a git remote, a `service:`/scheme reference."""
    return "://" in value or value.startswith(SERVICE_PREFIX) or value.startswith(REMOTE_PREFIXES)


def _join(base: str, rest: str) -> str:
    """Go filepath.Join: join then clean; an empty part is ignored."""
    if not rest:
        return clean_path(base)
    if not base:
        return clean_path(rest)
    return clean_path(base + "/" + rest)


# --- one service ---------------------------------------------------------------------------------


def resolve_service_paths(service: dict, base_dir: str, *, home: str | None = None) -> dict:
    """Return a copy of one service with its host paths absolute against base_dir."""
    out = clone(service)

    def resolve(path: Any) -> Any:
        return abs_path(path, base_dir, home) if isinstance(path, str) else path

    def resolve_unix(path: Any) -> Any:
        return maybe_unix_path(path, base_dir, home) if isinstance(path, str) else path

    if isinstance(out.get("build"), dict):
        _resolve_build(out["build"], resolve, resolve_unix)
    elif isinstance(out.get("build"), str) and not is_remote_context(out["build"]):
        out["build"] = resolve(out["build"])
    if "env_file" in out:
        out["env_file"] = _resolve_env_files(out["env_file"], resolve)
    if "label_file" in out:
        out["label_file"] = _map_str_or_list(out["label_file"], resolve)
    extends = out.get("extends")
    if _is_local_file(extends):
        extends["file"] = resolve(extends["file"])
    for watch in (out.get("develop") or {}).get("watch") or []:
        if isinstance(watch, dict) and "path" in watch:
            watch["path"] = _map_str_or_list(watch["path"], resolve)
    for index, volume in enumerate(out.get("volumes") or []):
        if isinstance(volume, dict) and volume.get("type") == "bind":
            if not volume.get("source"):
                raise InvalidProjectError(
                    'invalid mount config for type "bind": field Source must not be empty',
                    path=("volumes", index),
                )
            volume["source"] = resolve_unix(volume["source"])
    return out


def _is_local_file(extends: Any) -> bool:
    """extends.file that names a local file (remote loaders fetch git/oci references themselves)."""
    return (
        isinstance(extends, dict)
        and isinstance(extends.get("file"), str)
        and not is_remote_context(extends["file"])
    )


def _resolve_build(build: dict, resolve: Callable, resolve_unix: Callable) -> None:
    """Local contexts and additional contexts become absolute; remote ones stay; ssh key paths too."""
    context = build.get("context")
    if isinstance(context, str) and not is_remote_context(context):
        build["context"] = resolve(context)
    extra = build.get("additional_contexts")
    if isinstance(extra, dict):
        for key, value in extra.items():
            if isinstance(value, str) and not is_remote_context(value):
                extra[key] = resolve(value)
    ssh = build.get("ssh")
    if isinstance(ssh, dict):
        for key, value in ssh.items():
            ssh[key] = resolve_unix(value) if value else value
    elif isinstance(ssh, list):
        build["ssh"] = [_resolve_ssh_entry(entry, resolve_unix) for entry in ssh]


def _resolve_ssh_entry(entry: Any, resolve_unix: Callable) -> Any:
    """`id=path` entries have their path resolved; a bare `default` is left alone."""
    if not isinstance(entry, str) or "=" not in entry:
        return entry
    key, _, value = entry.partition("=")
    return f"{key}={resolve_unix(value)}"


def _resolve_env_files(env_files: Any, resolve: Callable) -> Any:
    """env_file entries are `{path, required, format}` in canonical form; strings also accepted."""
    if isinstance(env_files, str):
        return resolve(env_files)
    if not isinstance(env_files, list):
        return env_files
    out = []
    for entry in env_files:
        if isinstance(entry, dict) and isinstance(entry.get("path"), str):
            entry = {**entry, "path": resolve(entry["path"])}
        elif isinstance(entry, str):
            entry = resolve(entry)
        out.append(entry)
    return out


def _map_str_or_list(value: Any, resolve: Callable) -> Any:
    """Apply resolve to a string, or to each string of a list."""
    if isinstance(value, list):
        return [resolve(item) for item in value]
    return resolve(value)


# --- the whole project ---------------------------------------------------------------------------


def resolve_paths(data: dict, project_dir: str, *, home: str | None = None) -> dict:
    """Return a copy of the project with every host path absolute against project_dir."""
    out = clone(data)
    services = out.get("services")
    if isinstance(services, dict):
        for name, service in services.items():
            if isinstance(service, dict):
                services[name] = _resolve_one(name, service, project_dir, home)
    for kind in ("secrets", "configs"):
        for resource in (out.get(kind) or {}).values():
            if isinstance(resource, dict) and isinstance(resource.get("file"), str):
                resource["file"] = maybe_unix_path(resource["file"], project_dir, home)
    for volume in (out.get("volumes") or {}).values():
        _resolve_bind_volume_device(volume, project_dir, home)
    if isinstance(out.get("include"), list):
        out["include"] = [_resolve_include(entry, project_dir, home) for entry in out["include"]]
    return out


def _resolve_one(name: str, service: dict, project_dir: str, home: str | None) -> dict:
    """resolve_service_paths, with errors re-pathed under services.<name>."""
    try:
        return resolve_service_paths(service, project_dir, home=home)
    except InvalidProjectError as err:
        if err.path is not None:
            err.path = ("services", name, *err.path)
        raise


def _resolve_bind_volume_device(volume: Any, project_dir: str, home: str | None) -> None:
    """A `local` volume with `o: bind` is a bind mount in disguise: its device is a host path."""
    if not isinstance(volume, dict) or volume.get("driver") != "local":
        return
    opts = volume.get("driver_opts")
    if not isinstance(opts, dict) or opts.get("o") != "bind":
        return
    if isinstance(opts.get("device"), str):
        opts["device"] = maybe_unix_path(opts["device"], project_dir, home)


def _resolve_include(entry: Any, project_dir: str, home: str | None) -> Any:
    """include path / project_directory / env_file (string or list) become absolute."""
    if isinstance(entry, str):
        return abs_path(entry, project_dir, home)
    if not isinstance(entry, dict):
        return entry
    entry = dict(entry)

    def resolve(path: Any) -> Any:
        return abs_path(path, project_dir, home) if isinstance(path, str) else path

    for key in ("path", "project_directory", "env_file"):
        if key in entry:
            entry[key] = _map_str_or_list(entry[key], resolve)
    return entry
