"""What every command gets besides its arguments: where to print, and how to warn."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import TextIO


@dataclass
class CliContext:
    stdout: TextIO = field(default_factory=lambda: sys.stdout)
    stderr: TextIO = field(default_factory=lambda: sys.stderr)

    def warn(self, message: str) -> None:
        """Warnings go to stderr, prefixed like docker compose's, so stdout stays machine-readable."""
        for line in message.splitlines() or [""]:
            self.stderr.write(f"WARN[0000] {line}\n")
