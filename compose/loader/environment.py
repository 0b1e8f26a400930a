"""Stage 10: each service's final environment, the way docker compose resolves it.

`environment:` may leave values to the caller (`- DEBUG`), `env_file:` adds whole files, and
`label_file:` does the same for labels. `config` prints the result, not the recipe, so here we read
the files and merge (compose-go `WithServicesEnvironmentResolved` / `WithServicesLabelsResolved`):

- a bare `KEY` under `environment` takes the project environment's value, else stays null;
- env files are read in order, later files win, then `environment` entries win over all of them
  (even a null one: it means "pass through from the caller", so it must not be shadowed);
- `${VAR}` inside an env file looks in the project environment, then the service's `environment`,
  then the files read before;
- `format: raw` files are read the way `docker run --env-file` reads them (no quotes, no `${}`);
- `label_file` values are overridden by `labels`;
- `build.args` without a value take the project environment's value or are dropped.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

from compose.errors import ComposeError, InvalidProjectError, Location, Path, ProjectNotFoundError
from compose.loader.plain import clone

Locate = Callable[[Path], Location] | None
Lookup = Callable[[str], str | None]


def resolve_service_environment(
    data: dict, env: Mapping[str, str], *, locate: Locate = None, discard_env_file: bool = True
) -> dict:
    """Return a copy of the project with env files, label files and bare keys resolved."""
    out = clone(data)
    for name, service in (out.get("services") or {}).items():
        if isinstance(service, dict):
            _resolve_one(name, service, env, locate, discard_env_file)
    return out


def _resolve_one(name: str, service: dict, env: Mapping[str, str], locate: Locate, discard: bool) -> None:
    """Environment, labels and build args of one service, in place."""
    base: Path = ("services", name)
    environment = _resolve_bare_keys(service.get("environment") or {}, env)
    env_files = service.get("env_file") or []
    if env_files:
        from_files = _read_env_files(env_files, environment, env, base, locate)
        environment = {**from_files, **environment}
    if environment or "environment" in service:
        service["environment"] = environment
    if discard:
        service.pop("env_file", None)
    if service.get("label_file"):
        service["labels"] = _labels_with_files(service, base, locate)
        if discard:
            service.pop("label_file", None)
    build = service.get("build")
    if isinstance(build, dict) and isinstance(build.get("args"), dict):
        build["args"] = _resolve_build_args(build["args"], env)


def _resolve_bare_keys(environment: Mapping[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    """`KEY` with no value takes the project environment's value; unset keys stay None."""
    return {key: (env.get(key) if value is None else value) for key, value in environment.items()}


def _resolve_build_args(args: Mapping[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    """Build args with no value are resolved from the environment, or dropped (compose-go keepEmpty=false)."""
    resolved: dict[str, Any] = {}
    for key, value in args.items():
        if value is not None:
            resolved[key] = value
        elif key in env:
            resolved[key] = env[key]
    return resolved


# --- env_file ------------------------------------------------------------------------------------


def _read_env_files(
    env_files: list, environment: Mapping[str, Any], env: Mapping[str, str], base: Path, locate: Locate
) -> dict[str, str]:
    """Read every env file in order into one mapping; a later file overrides an earlier one."""
    accumulated: dict[str, str] = {}

    def lookup(key: str) -> str | None:
        if key in env:
            return env[key]
        if environment.get(key) is not None:
            return str(environment[key])
        return accumulated.get(key)

    for index, entry in enumerate(env_files):
        path, required, fmt = _env_file_entry(entry)
        where = (*base, "env_file", index)
        if not os.path.exists(path):
            if required:
                raise _at(ProjectNotFoundError(f"env file {path} not found"), where, locate)
            continue
        try:
            accumulated.update(_read_one(path, fmt, lookup))
        except ComposeError as err:
            raise _at(err, where, locate) from None
    return accumulated


def _env_file_entry(entry: Any) -> tuple[str, bool, str | None]:
    """(path, required, format) from the canonical `{path, required, format}` or a plain string."""
    if isinstance(entry, str):
        return entry, True, None
    required = entry.get("required", True)
    return str(entry["path"]), required is not False, entry.get("format")


def _read_one(path: str, fmt: str | None, lookup: Lookup) -> dict[str, str]:
    """Dispatch on `format`: dotenv syntax (default) or docker's raw `--env-file` syntax."""
    if fmt in (None, "", ".env"):
        from compose.loader.dotenv import read_env_file

        return read_env_file(path, lookup=lookup)
    if fmt == "raw":
        return read_raw_env_file(path, lookup=lookup)
    raise InvalidProjectError(f'unsupported env_file format "{fmt}"')


def read_raw_env_file(path: str, *, lookup: Lookup) -> dict[str, str]:
    """`docker run --env-file` syntax: `KEY=VALUE` taken verbatim, `#` comments, bare `KEY` passes through.

    No quotes are removed and no `${}` is expanded; a bare key is kept only if the lookup knows it.
    """
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as err:
        raise ProjectNotFoundError(f"failed to read {path}: {err.strerror}") from None
    values: dict[str, str] = {}
    for line in text.removeprefix("\ufeff").splitlines():
        stripped = line.lstrip()
        if not stripped or stripped.startswith("#"):
            continue
        key, has_value, value = stripped.partition("=")
        if not key or any(ch.isspace() for ch in key):
            problem = (
                f"variable '{key}' contains whitespaces" if key else f"no variable name on line '{line}'"
            )
            raise InvalidProjectError(f"failed to parse env_file {path}: {problem}")
        if has_value:
            values[key] = value
        else:
            found = lookup(key)
            if found is not None:
                values[key] = found
    return values


# --- label_file ----------------------------------------------------------------------------------


def _labels_with_files(service: dict, base: Path, locate: Locate) -> dict[str, Any]:
    """Label files in order (later wins, `${}` sees earlier labels), then `labels` override them."""
    from compose.loader.dotenv import read_env_file

    files = service["label_file"]
    files = [files] if isinstance(files, str) else list(files)
    merged: dict[str, str] = {}
    for index, path in enumerate(files):
        where = (*base, "label_file", index)
        if not os.path.exists(path):
            raise _at(ProjectNotFoundError(f"label file {path} not found"), where, locate)
        try:
            merged.update(read_env_file(path, lookup=merged.get))
        except ComposeError as err:
            raise _at(err, where, locate) from None
    return {**merged, **(service.get("labels") or {})}


def _at(err: ComposeError, path: Path, locate: Locate) -> ComposeError:
    """Give an error its key path and, when we can, its file position."""
    return err.at(path, locate(path) if locate is not None else None)
