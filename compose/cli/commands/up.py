"""`pycompose up`, `down`, `create` and `scale`: converging the project.

CONTRACT (owner: engineer R1): `add_parser` registers up, down, create, scale,
with docker compose's flags; each handler goes through compose/run (the executor) and engine.api.
Until then the names stay in parser.PLANNED_COMMANDS
("not implemented yet").
"""

from __future__ import annotations


def add_parser(subparsers) -> None:  # type: ignore[no-untyped-def]
    """Register the commands of this module."""
