"""Resolve `extends`: a service starts from another service's definition and overrides it.

Behaviour follows compose-go `loader/extends.go` (docker compose >= 2.33):
- `extends: base`, `{service: base}` (same file) and `{file: other.yaml, service: base}`; a relative
  `file` is taken against the directory of the file that holds the `extends`;
- chains are followed across files; a service seen twice in one chain is a cycle;
- a service taken from another file gets its relative paths made absolute against that file's directory
  (`paths.resolve_service_paths`), so they keep pointing where its author meant;
- the extending service's own keys are merged over the base with the ordinary merge rules
  (`merge.merge_service`), after its file's `!reset` / `!override` tags have cleared the base;
- every key is inherited, `depends_on`, `volumes_from` and `links` included (compose-go briefly dropped
  `depends_on`/`volumes_from` in 2.32 and restored them in 2.33); `extends` itself never reaches the output.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

from compose.errors import ComposeError, ExtendsError, Location, Path, ProjectNotFoundError
from compose.loader.merge import merge_service
from compose.loader.plain import clone

Locate = Callable[[Path], Location]
LoadFile = Callable[[str], Any]
Key = tuple[str, str]
"""(absolute file name, service name)"""


def apply_extends(
    data: dict,
    *,
    filename: str,
    load_file: LoadFile,
    locate: Locate | None = None,
    tags: Mapping[Path, str] | None = None,
    working_dir: str | None = None,
) -> dict:
    """Return a copy of `data` where every service's `extends` is resolved and removed.

    `load_file(abs_path)` returns another file's canonical data, or `(data, tags)` when it knows that
    file's `!reset`/`!override` tags; it must not resolve `extends` itself (chains are followed here, so
    cycles across files are seen). `working_dir` is the directory relative `extends.file` values of this
    document are read from; it defaults to the directory of `filename`.
    """
    services = (data or {}).get("services")
    if not isinstance(services, dict) or not any(_has_extends(s) for s in services.values()):
        return data
    resolver = _Resolver(filename, services, load_file, locate, tags or {}, working_dir)
    out = dict(data)
    out["services"] = {name: resolver.resolve(filename, name, ()) for name in services}
    return out


def _has_extends(service: Any) -> bool:
    return isinstance(service, dict) and "extends" in service


class _Resolver:
    """Holds the files read so far and the services already resolved, so each is merged once."""

    def __init__(
        self,
        filename: str,
        services: dict,
        load_file: LoadFile,
        locate: Locate | None,
        tags: Mapping[Path, str],
        working_dir: str | None,
    ) -> None:
        self.root = filename
        self.load_file = load_file
        self.locate = locate
        self.files: dict[str, dict] = {filename: services}
        self.tags: dict[str, Mapping[Path, str]] = {filename: tags}
        self.dirs: dict[str, str] = {filename: working_dir or os.path.dirname(filename)}
        self.done: dict[Key, dict] = {}

    def resolve(self, file: str, name: str, chain: tuple[Key, ...]) -> Any:
        """The service `name` of `file` with its whole `extends` chain applied."""
        key = (file, name)
        if key in self.done:
            return clone(self.done[key])
        if key in chain:
            raise self.error(f"circular extends: {self.describe((*chain, key))}", chain, first=True)
        service = self.files[file].get(name)
        if not _has_extends(service):
            result = clone(service)
        else:
            chain = (*chain, key)
            base_file, base_name = self.target(file, name, service["extends"], chain)
            base = self.resolve(base_file, base_name, chain)
            own = {k: v for k, v in service.items() if k != "extends"}
            locate = self.locate if file == self.root else None
            prefix = ("services", name)
            result = merge_service(base, own, tags=self.tags.get(file), prefix=prefix, locate=locate)
            result.pop("extends", None)
        self.done[key] = result
        return clone(result)

    def target(self, file: str, name: str, extends: Any, chain: tuple[Key, ...]) -> Key:
        """Which (file, service) `extends` points at; loads the file and checks the service exists."""
        ref, ref_file = _parse_extends(extends)
        if not ref:
            raise self.error(f"service {name!r}: extends.service is required", chain)
        if ref_file is None:
            if ref not in self.files[file]:
                raise self.error(f"cannot extend service {name!r}: service {ref!r} not found", chain)
            return file, ref
        target = os.path.normpath(os.path.join(self.dirs[file], ref_file))
        services = self.read(target, name, chain)
        if ref not in services:
            raise self.error(f"cannot extend service {name!r}: service {ref!r} not found in {target}", chain)
        return target, ref

    def read(self, path: str, name: str, chain: tuple[Key, ...]) -> dict:
        """Another file's services, each with its relative paths made absolute against that file."""
        if path in self.files:
            return self.files[path]
        try:
            loaded = self.load_file(path)
        except (ProjectNotFoundError, OSError) as exc:
            if isinstance(exc, ComposeError):
                detail = exc.message
            else:
                detail = f"cannot read {path}: {exc.strerror or exc}"
            raise self.error(f"cannot extend service {name!r}: {detail}", chain) from None
        data, tags = _split_loaded(loaded)
        services = (data or {}).get("services")
        if not isinstance(services, dict):
            raise self.error(f"cannot extend service {name!r}: {path} has no services section", chain)
        from compose.loader.paths import resolve_service_paths

        directory = os.path.dirname(path)
        self.files[path] = {
            svc: resolve_service_paths(body, directory) if isinstance(body, dict) else body
            for svc, body in services.items()
        }
        self.tags[path] = tags
        self.dirs[path] = directory
        return self.files[path]

    def describe(self, chain: tuple[Key, ...]) -> str:
        """`web -> base -> web`; services of other files carry their file name."""
        return " -> ".join(n if f == self.root else f"{n} ({os.path.basename(f)})" for f, n in chain)

    def error(self, message: str, chain: tuple[Key, ...], *, first: bool = False) -> ExtendsError:
        """Point at the failing `extends` (or, for a cycle, the first) of the file being loaded.

        A failure inside another file is reported at the service of this file that led there.
        """
        names = [n for f, n in chain if f == self.root] or [chain[0][1]]
        path: Path = ("services", names[0] if first else names[-1], "extends")
        return ExtendsError(message, path=path, location=self.locate(path) if self.locate else None)


def _parse_extends(extends: Any) -> tuple[str | None, str | None]:
    """`"base"` or `{service: base, file: x.yaml}` -> (service, file or None)."""
    if isinstance(extends, str):
        return extends, None
    if isinstance(extends, dict):
        service, file = extends.get("service"), extends.get("file")
        return (service if isinstance(service, str) else None), (file if isinstance(file, str) else None)
    return None, None


def _split_loaded(loaded: Any) -> tuple[Any, Mapping[Path, str]]:
    """Accept what `load_file` may give: data, (data, tags), or an object with `.data` and `.tags`."""
    if isinstance(loaded, tuple) and len(loaded) == 2:
        return loaded[0], loaded[1] or {}
    if hasattr(loaded, "data") and hasattr(loaded, "tags"):
        return loaded.data, loaded.tags or {}
    return loaded, {}
