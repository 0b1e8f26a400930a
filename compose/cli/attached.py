"""Attached `up`: stream every container's logs with prefixes, stop the project on Ctrl-C.

CONTRACT (owner: engineer P3). `attached_up(runner, containers, args, context) -> int` is called by
`pycompose up` (without -d) once the project is up; it returns the CLI's exit code.
"""

from __future__ import annotations


def attached_up(runner, containers, args, context) -> int:  # type: ignore[no-untyped-def]
    """Until it is written: behave like `up -d` (the containers keep running)."""
    return 0
