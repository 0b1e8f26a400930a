"""The one exception family of the Compose half.

Every error raised while loading, validating or planning a project is a `ComposeError`. It carries where
the problem is (file, line, column, key path) as data; only the CLI turns it into text and an exit code.
"""

from __future__ import annotations

TYPE_CHECKING = False  # `import typing` costs the CLI ~8 ms of start-up; type checkers treat this alike

if TYPE_CHECKING:
    from collections.abc import Iterable

Path = tuple[str | int, ...]
"""A key path into a Compose document: ("services", "web", "ports", 0)."""


def format_path(path: Iterable[str | int]) -> str:
    """Render a key path the way users read it: services.web.ports[0]."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


class Location:
    """A place in a source file; line and column are 1-based. (Plain class: importing `dataclasses`
    would cost the CLI start-up several milliseconds.)"""

    __slots__ = ("column", "file", "line")

    def __init__(self, file: str, line: int | None = None, column: int | None = None) -> None:
        self.file = file
        self.line = line
        self.column = column

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Location):
            return NotImplemented
        return (self.file, self.line, self.column) == (other.file, other.line, other.column)

    def __hash__(self) -> int:
        return hash((self.file, self.line, self.column))

    def __repr__(self) -> str:
        return f"Location({self.file!r}, {self.line!r}, {self.column!r})"

    def __str__(self) -> str:
        text = self.file
        if self.line is not None:
            text += f":{self.line}"
            if self.column is not None:
                text += f":{self.column}"
        return text


class ComposeError(Exception):
    """Root of every error the Compose half raises."""

    exit_code = 1

    def __init__(self, message: str, *, path: Path | None = None, location: Location | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.path = tuple(path) if path is not None else None
        self.location = location

    def __str__(self) -> str:
        parts = []
        if self.location is not None:
            parts.append(str(self.location))
        if self.path:
            parts.append(format_path(self.path))
        parts.append(self.message)
        return ": ".join(parts)

    def at(self, path: Path | None = None, location: Location | None = None) -> ComposeError:
        """Fill in a path or location the raiser did not know; keeps what is already set."""
        if self.path is None and path is not None:
            self.path = tuple(path)
        if self.location is None and location is not None:
            self.location = location
        return self


class UsageError(ComposeError):
    """The command line itself is wrong (unknown command or flag, bad argument)."""

    exit_code = 2


class ProjectNotFoundError(ComposeError):
    """No Compose file was found, or a named file does not exist."""


class YamlError(ComposeError):
    """A file is not valid YAML, has a duplicate key or an unknown tag."""


class InterpolationError(ComposeError):
    """A `${VAR:?msg}` was unset, or a `${...}` expression is malformed."""


class SchemaError(ComposeError):
    """The document does not match the Compose Specification schema."""


class InvalidProjectError(ComposeError):
    """A semantic rule is broken: unknown reference, bad short syntax, conflicting ports, bad name..."""


class DependencyCycleError(InvalidProjectError):
    """Services depend on each other in a circle; `cycle` lists it, first name repeated at the end."""

    def __init__(self, cycle: list[str], **kwargs) -> None:
        self.cycle = cycle
        super().__init__("dependency cycle detected: " + " -> ".join(cycle), **kwargs)


class ExtendsError(InvalidProjectError):
    """`extends` names a missing service or file, or extends itself in a loop."""


class IncludeError(InvalidProjectError):
    """An `include` cannot be loaded or conflicts with the including project."""


class BuildFailed(ComposeError):
    """A service's image did not build; exit 17 as docker compose's failed solve."""

    exit_code = 17
