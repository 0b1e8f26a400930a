"""Which Compose files make up the project, which directory it lives in, and what it is called.

These are the rules docker compose applies before reading any YAML: `-f` files, else `COMPOSE_FILE`, else
the first of the default names found in the working directory or one of its parents, plus the matching
`.override` file next to it. The project name comes from `-p`, `COMPOSE_PROJECT_NAME`, the top-level
`name:`, or the directory's base name, in that order.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from compose.errors import InvalidProjectError, ProjectNotFoundError

DEFAULT_FILENAMES = ("compose.yaml", "compose.yml", "docker-compose.yml", "docker-compose.yaml")
STDIN = "-"

_VALID_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


def override_candidates(path: Path) -> list[Path]:
    """`compose.yaml` -> `compose.override.yaml`, `compose.override.yml` (the first that exists is used)."""
    stem = path.name.rsplit(".", 1)[0]
    return [path.with_name(f"{stem}.override{ext}") for ext in (".yaml", ".yml")]


def find_default_files(start: Path, warn: Callable[[str], None] | None = None) -> list[Path]:
    """Search `start` and its parents for a default Compose file; return it and its override, if any."""
    directory = start.resolve()
    while True:
        found = [directory / name for name in DEFAULT_FILENAMES if (directory / name).is_file()]
        if found:
            if len(found) > 1 and warn is not None:
                names = ", ".join(str(p) for p in found)
                warn(f"Found multiple config files with supported names: {names}\nUsing {found[0]}")
            chosen = found[0]
            overrides = [p for p in override_candidates(chosen) if p.is_file()]
            return [chosen, *overrides[:1]]
        if directory.parent == directory:
            raise ProjectNotFoundError(
                f"no configuration file provided: not found (looked for {', '.join(DEFAULT_FILENAMES)} "
                f"in {start} and its parents)"
            )
        directory = directory.parent


def files_from_environment(environ: Mapping[str, str], base: Path) -> list[str] | None:
    """`COMPOSE_FILE`, split on `COMPOSE_PATH_SEPARATOR` (default: the OS path separator)."""
    value = environ.get("COMPOSE_FILE")
    if not value:
        return None
    separator = environ.get("COMPOSE_PATH_SEPARATOR") or os.pathsep
    return [str(base / item) if not os.path.isabs(item) else item for item in value.split(separator) if item]


def normalize_project_name(name: str) -> str:
    """Lowercase, keep only `a-z0-9_-`, drop leading `_`/`-`: what docker compose does to a directory name."""
    lowered = re.sub(r"[^a-z0-9_-]", "", name.lower())
    return lowered.lstrip("_-")


def check_project_name(name: str, source: str) -> str:
    """An explicitly given name must already be valid; docker compose does not fix it silently."""
    if not _VALID_NAME.match(name):
        raise InvalidProjectError(
            f"invalid project name {name!r} (from {source}): must contain only lowercase letters, digits, "
            "dashes and underscores, and start with a letter or digit"
        )
    return name


def choose_project_name(
    *,
    flag: str | None,
    environ: Mapping[str, str],
    from_file: str | None,
    working_dir: Path,
) -> str:
    """Apply the precedence -p > COMPOSE_PROJECT_NAME > `name:` > directory name."""
    if flag:
        return check_project_name(flag, "-p/--project-name")
    env_name = environ.get("COMPOSE_PROJECT_NAME")
    if env_name:
        return check_project_name(env_name, "COMPOSE_PROJECT_NAME")
    source, raw = (
        ("the top-level name: attribute", from_file)
        if from_file
        else (f"directory {working_dir}", working_dir.name)
    )
    derived = normalize_project_name(raw)
    if not derived:
        raise InvalidProjectError(
            f"invalid project name {raw!r} (from {source}): nothing is left after keeping only lowercase "
            "letters, digits, dashes and underscores; set one with -p or a top-level name:"
        )
    return derived


def resolve_file_arguments(files: Sequence[str], cwd: Path) -> list[str]:
    """Make `-f` paths absolute (stdin `-` stays) and check they exist."""
    resolved = []
    for item in files:
        if item == STDIN:
            resolved.append(STDIN)
            continue
        path = Path(item) if os.path.isabs(item) else cwd / item
        if path.is_dir():
            path = find_default_files(path)[0]
        if not path.is_file():
            raise ProjectNotFoundError(f"open {path}: no such file or directory")
        resolved.append(str(Path(os.path.normpath(path))))
    return resolved
