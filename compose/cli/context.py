"""What every command gets besides its arguments: where to print, and how to warn."""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # `import typing` costs the CLI ~8 ms of start-up; type checkers treat this alike

if TYPE_CHECKING:
    from typing import TextIO


class CliContext:
    """Output streams of one CLI run (a plain class: `dataclasses` costs start-up time)."""

    def __init__(self, stdout: TextIO | None = None, stderr: TextIO | None = None) -> None:
        self.stdout = stdout or sys.stdout
        self.stderr = stderr or sys.stderr

    def warn(self, message: str) -> None:
        """Warnings go to stderr, prefixed like docker compose's, so stdout stays machine-readable."""
        for line in message.splitlines() or [""]:
            self.stderr.write(f"WARN[0000] {line}\n")
