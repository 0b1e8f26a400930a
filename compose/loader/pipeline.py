"""Runs the loader stages in order (see `compose.loader`) and keeps track of where things came from.

This module owns the order of the stages and the bookkeeping between them (which files, which
environment, which project name, which positions); each stage's rules live in its own module.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path as FsPath
from typing import TYPE_CHECKING, Any

from compose.errors import (
    ComposeError,
    IncludeError,
    InvalidProjectError,
    Location,
    Path,
    ProjectNotFoundError,
    SchemaError,
    YamlError,
)
from compose.loader import discovery
from compose.loader.yamlparse import ParsedDocument, parse_yaml

if TYPE_CHECKING:
    from compose.model import Project

Warn = Callable[[str], None]
RESOURCE_SECTIONS = ("services", "networks", "volumes", "secrets", "configs", "models")
_TRUTHY = {"1", "true", "yes", "on", "y"}


@dataclass(frozen=True)
class ProjectOptions:
    """What the user said on the command line and in the environment about where the project is."""

    files: Sequence[str] = ()
    project_name: str | None = None
    project_directory: str | None = None
    env_files: Sequence[str] = ()
    profiles: Sequence[str] = ()
    environ: Mapping[str, str] | None = None
    cwd: str | None = None
    read_stdin: Callable[[], str] | None = None


@dataclass(frozen=True)
class LoadSettings:
    """Which stages to run: the `config --no-*` flags switch them off."""

    interpolate: bool = True
    normalize: bool = True
    resolve_paths: bool = True
    resolve_environment: bool = True
    consistency: bool = True
    discard_env_file: bool = True
    services: Sequence[str] = ()
    # Named on the command line (`run SVC`, `up SVC`): on even when their profile is not active, with
    # their dependencies, as docker compose does; unlike `services`, nothing else is dropped.
    enable: Sequence[str] = ()


@dataclass
class LoadedProject:
    """The loader's result: the canonical project dict and what was used to make it."""

    name: str
    working_dir: str
    files: list[str]
    environment: dict[str, str]
    data: dict[str, Any]
    profiles: tuple[str, ...] = ()
    env_files: list[str] = field(default_factory=list)
    disabled_services: tuple[str, ...] = ()
    """Services of the files that inactive profiles turned off, sorted. Not in `data`, yet not orphans:
    `up --remove-orphans` must keep their containers, as docker compose does."""

    @cached_property
    def model(self) -> Project:
        """The typed, immutable model; built on first use so `config -q` does not pay for it."""
        from compose.model import Project

        return Project.from_dict(self.data)


class Locator:
    """Finds the file position of a key path across every document that was loaded.

    The document holding the longest prefix of the path wins; among equals, the later file (the one
    whose value won the merge).
    """

    def __init__(self) -> None:
        self.documents: list[ParsedDocument] = []

    def add(self, document: ParsedDocument) -> None:
        self.documents.append(document)

    def __call__(self, path: Path) -> Location | None:
        best: tuple[int, ParsedDocument] | None = None
        for document in self.documents:
            depth = len(path)
            while depth > 0 and tuple(path[:depth]) not in document.marks:
                depth -= 1
            if depth and (best is None or depth >= best[0]):
                best = (depth, document)
        if best is None:
            return Location(self.documents[0].filename) if self.documents else None
        line, column = best[1].marks[tuple(path[: best[0]])]
        return Location(best[1].filename, line, column)


def _split_list(value: str | None, separator: str = ",") -> list[str]:
    return [item.strip() for item in (value or "").split(separator) if item.strip()]


def _env_file_arguments(
    options: ProjectOptions, environ: Mapping[str, str], directory: FsPath, cwd: FsPath
) -> list[str]:
    """`--env-file` (or COMPOSE_ENV_FILES), else `<dir>/.env` when it exists and is not disabled."""
    given = list(options.env_files) or _split_list(environ.get("COMPOSE_ENV_FILES"))
    if given:
        resolved = [str(cwd / item) if not os.path.isabs(item) else item for item in given]
        for item in resolved:
            if not os.path.isfile(item):
                raise ProjectNotFoundError(f"couldn't find env file: {item}")
        return resolved
    if environ.get("COMPOSE_DISABLE_ENV_FILE", "").lower() in _TRUTHY:
        return []
    default = directory / ".env"
    return [str(default)] if default.is_file() else []


class _Loader:
    """One load of one project (an `include` makes a nested one); holds the shared caches."""

    def __init__(
        self,
        settings: LoadSettings,
        warn: Warn,
        locator: Locator,
        *,
        working_dir: str,
        stack: tuple[str, ...] = (),
    ) -> None:
        self.settings = settings
        self.warn = warn
        self.locator = locator
        self.working_dir = working_dir  # relative `extends.file` in any -f file is read from here
        self.stack = stack
        self._file_cache: dict[str, dict[str, Any]] = {}

    # -- one file -------------------------------------------------------------------------------

    def read_documents(self, filename: str, text: str) -> list[ParsedDocument]:
        documents = parse_yaml(text, filename)
        for document in documents:
            self.locator.add(document)
        return documents

    def prepare(
        self, document: ParsedDocument, env: Mapping[str, str], *, complete: bool = True
    ) -> dict[str, Any]:
        """Stages 2-5 for one document: interpolate, schema, canonical. Returns canonical data.

        `complete` is False for override files and `extends` sources: they may hold fragments (a
        depends_on entry without its condition) that only the merge completes, so required
        properties are not demanded of them.
        """
        data = document.data
        if data is None:  # docker compose refuses an empty file rather than loading nothing
            raise InvalidProjectError("empty compose file", location=Location(document.filename))
        if not isinstance(data, dict):
            raise SchemaError("top-level object must be a mapping", location=document.locate(()))
        if "version" in data:
            self.warn(
                f"{document.filename}: the attribute `version` is obsolete, it will be ignored, "
                "please remove it to avoid potential confusion"
            )
            data = {k: v for k, v in data.items() if k != "version"}
        if self.settings.interpolate:
            from compose.loader.interpolate import interpolate

            data = interpolate(data, env, locate=document.locate, warn=self.warn)
            from compose.loader.schema import validate

            validate(data, locate=document.locate, require=complete)
        from compose.loader.canonical import canonicalize

        return canonicalize(data, locate=document.locate, warn=self.warn, strict=self.settings.interpolate)

    def load_other_file(self, env: Mapping[str, str]) -> Callable[[str], dict[str, Any]]:
        """The callback `extends` uses to read another file (its first document, fully prepared)."""

        def load(path: str) -> dict[str, Any]:
            path = os.path.normpath(path)
            if path not in self._file_cache:
                try:
                    text = FsPath(path).read_text(encoding="utf-8")
                except OSError as exc:
                    raise ProjectNotFoundError(f"cannot read {path}: {exc.strerror}") from None
                document = self.read_documents(path, text)[0]
                self._file_cache[path] = self.prepare(document, env, complete=False)
            return self._file_cache[path]

        return load

    # -- a set of files -------------------------------------------------------------------------

    def merge_files(self, documents: Sequence[ParsedDocument], env: Mapping[str, str]) -> dict[str, Any]:
        """Stages 2-7 over every parsed document in order; returns the merged canonical data."""
        from compose.loader.extends import apply_extends
        from compose.loader.merge import merge_documents

        merged: dict[str, Any] = {}
        for index, document in enumerate(documents):
            data = self.prepare(document, env, complete=index == 0)
            data.pop("name", None)
            data = self.apply_include(data, env, document.locate)
            data = apply_extends(
                data,
                filename=document.filename,
                load_file=self.load_other_file(env),
                locate=document.locate,
                tags=document.tags,
                working_dir=self.working_dir,
            )
            merged = merge_documents(merged, data, tags=document.tags, locate=document.locate)
        return merged

    def apply_include(
        self, data: dict[str, Any], env: Mapping[str, str], locate: Callable[[Path], Location]
    ) -> dict[str, Any]:
        """Load each `include` entry as its own project and add its resources; conflicts are errors.

        As in docker compose, include paths, `project_directory` and `env_file` are relative to the
        including project's directory, and the including project's environment wins over the
        included `env_file` values.
        """
        entries = data.pop("include", None) or []
        if not entries:
            return data
        base_dir = FsPath(self.working_dir)
        for index, entry in enumerate(entries):
            entry_path: Path = ("include", index)
            if isinstance(entry, str):
                entry = {"path": entry}
            paths = entry.get("path")
            paths = [paths] if isinstance(paths, str) else list(paths or [])
            files = [str(base_dir / p) if not os.path.isabs(p) else p for p in paths]
            if not files:  # `include: [{}]` or `path: []`: compose requires at least one file
                raise IncludeError("include requires a path", path=entry_path, location=locate(entry_path))
            for item in files:
                if not os.path.isfile(item):
                    raise IncludeError(
                        f"included file {item} not found", path=entry_path, location=locate(entry_path)
                    )
                if os.path.normpath(item) in self.stack:
                    raise IncludeError(
                        "include cycle: " + " -> ".join([*self.stack, item]),
                        path=entry_path,
                        location=locate(entry_path),
                    )
            project_dir = entry.get("project_directory")
            project_dir = FsPath(base_dir / project_dir if project_dir else FsPath(files[0]).parent)
            env_files = entry.get("env_file")
            env_files = [env_files] if isinstance(env_files, str) else list(env_files or [])
            env_files = [str(base_dir / e) for e in env_files] or (
                [str(project_dir / ".env")] if (project_dir / ".env").is_file() else []
            )
            from compose.loader.dotenv import build_project_environment

            sub_env = build_project_environment(env, env_files)
            nested = _Loader(
                self.settings,
                self.warn,
                self.locator,
                working_dir=str(project_dir),
                stack=(*self.stack, *map(os.path.normpath, files)),
            )
            documents = [
                doc
                for item, text in _read_files(files, ProjectOptions())
                for doc in nested.read_documents(item, text)
            ]
            included = nested.merge_files(documents, sub_env)
            if self.settings.resolve_paths:
                from compose.loader.paths import resolve_paths

                included = resolve_paths(included, str(project_dir))
            for section in RESOURCE_SECTIONS:
                for key, value in (included.get(section) or {}).items():
                    existing = (data.get(section) or {}).get(key)
                    if existing is not None and existing != value:
                        where = (section, key)
                        raise IncludeError(
                            f"conflicts with imported resource from {files[0]}",
                            path=where,
                            location=locate(where),
                        )
                    data.setdefault(section, {})[key] = value
        return data


def _read_files(files: Sequence[str], options: ProjectOptions) -> list[tuple[str, str]]:
    out = []
    for item in files:
        if item == discovery.STDIN:
            reader = options.read_stdin or sys.stdin.read
            out.append((discovery.STDIN, reader()))
            continue
        try:
            out.append((item, FsPath(item).read_text(encoding="utf-8")))
        except UnicodeDecodeError as exc:
            raise YamlError(f"not UTF-8 text: {exc.reason}", location=Location(item)) from None
        except OSError as exc:
            raise ProjectNotFoundError(f"cannot read {item}: {exc.strerror}") from None
    return out


def _name_from_documents(
    documents: Sequence[ParsedDocument], loader: _Loader, env: Mapping[str, str]
) -> str | None:
    """The top-level `name:` (last file wins), interpolated: it can use ${VARS} from .env."""
    name = None
    for document in documents:
        if isinstance(document.data, dict) and isinstance(document.data.get("name"), str):
            name = document.data["name"]
            if loader.settings.interpolate:
                from compose.loader.interpolate import substitute

                name = substitute(
                    name, env.get, path=("name",), location=document.locate(("name",)), warn=loader.warn
                )
    return name or None


def load_project(
    options: ProjectOptions, settings: LoadSettings | None = None, *, warn: Warn | None = None
) -> LoadedProject:
    """Find, read, merge, normalise and check a project. Raises a ComposeError subclass on bad input."""
    settings = settings or LoadSettings()
    warn = warn or (lambda _message: None)
    environ = dict(os.environ if options.environ is None else options.environ)
    cwd = FsPath(options.cwd or os.getcwd())
    project_dir = (
        FsPath(os.path.abspath(cwd / options.project_directory)) if options.project_directory else None
    )

    # .env is read once before the files are known (it may set COMPOSE_FILE), again once the directory is.
    early_env_files = _env_file_arguments(options, environ, project_dir or cwd, cwd)
    from compose.loader.dotenv import build_project_environment

    early_env = build_project_environment(environ, early_env_files)

    if options.files:
        files = discovery.resolve_file_arguments(options.files, cwd)
    else:
        files = discovery.files_from_environment(early_env, project_dir or cwd)
        if files:
            files = discovery.resolve_file_arguments(files, cwd)
        else:
            files = [str(p) for p in discovery.find_default_files(project_dir or cwd, warn)]
    first = files[0]
    working_dir = project_dir or (FsPath(first).parent if first != discovery.STDIN else cwd)

    env_files = early_env_files
    if working_dir != (project_dir or cwd) and not options.env_files:
        env_files = _env_file_arguments(options, environ, working_dir, cwd)
    env = build_project_environment(environ, env_files) if env_files != early_env_files else early_env

    locator = Locator()
    loader = _Loader(
        settings,
        warn,
        locator,
        working_dir=str(working_dir),
        stack=tuple(f for f in files if f != discovery.STDIN),
    )
    documents = [
        doc for filename, text in _read_files(files, options) for doc in loader.read_documents(filename, text)
    ]
    name = discovery.choose_project_name(
        flag=options.project_name,
        environ=env,
        from_file=_name_from_documents(documents, loader, env),
        working_dir=working_dir,
    )
    env = {**env, "COMPOSE_PROJECT_NAME": name}
    data = loader.merge_files(documents, env)
    data, disabled = _finish(
        data,
        name=name,
        working_dir=str(working_dir),
        env=env,
        options=options,
        settings=settings,
        warn=warn,
        locator=locator,
    )
    profiles = tuple(options.profiles) or tuple(_split_list(env.get("COMPOSE_PROFILES")))
    return LoadedProject(
        name=name,
        working_dir=str(working_dir),
        files=files,
        environment=env,
        data=data,
        profiles=profiles,
        env_files=env_files,
        disabled_services=disabled,
    )


def _finish(
    data: dict[str, Any],
    *,
    name: str,
    working_dir: str,
    env: Mapping[str, str],
    options: ProjectOptions,
    settings: LoadSettings,
    warn: Warn,
    locator: Locator,
) -> tuple[dict[str, Any], tuple[str, ...]]:
    """Stages 8-12 over the merged project; also the services the profiles stage turned off."""
    data.setdefault("services", {})
    if settings.normalize:
        from compose.loader.normalize import normalize

        data = normalize(data, project_name=name, warn=warn, locate=locator)
    else:
        data = {"name": name, **data}
    if settings.resolve_paths:
        from compose.loader.paths import resolve_paths

        data = resolve_paths(data, working_dir)
    if not settings.interpolate:
        if settings.services:
            warn("service filtering is not applied when --no-interpolate is set")
        return data, ()
    if settings.resolve_environment:
        from compose.loader.environment import resolve_service_environment

        data = resolve_service_environment(
            data, env, locate=locator, discard_env_file=settings.discard_env_file
        )
    from compose.loader.profiles import apply_profiles

    active = list(options.profiles) or _split_list(env.get("COMPOSE_PROFILES"))
    unknown = [s for s in settings.services if s not in data.get("services", {})]
    if unknown:
        raise ComposeError(f"no such service: {unknown[0]}")
    declared = data.get("services") or {}
    data = apply_profiles(data, active, [*settings.services, *settings.enable], locate=locator)
    disabled = tuple(sorted(set(declared) - set(data.get("services") or {})))
    if settings.services:
        data = _select_services(data, settings.services)
    if settings.consistency:
        from compose.loader.validate import check_project

        check_project(data, locate=locator, warn=warn)
    return data, disabled


def _select_services(data: dict[str, Any], wanted: Sequence[str]) -> dict[str, Any]:
    """Keep the named services and everything they depend on (what `config web` prints)."""
    services = data.get("services", {})
    keep: set[str] = set()
    todo = list(wanted)
    while todo:
        current = todo.pop()
        if current in keep or current not in services:
            continue
        keep.add(current)
        todo.extend((services[current].get("depends_on") or {}).keys())
    return {**data, "services": {k: v for k, v in services.items() if k in keep}}
