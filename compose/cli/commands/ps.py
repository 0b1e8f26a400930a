"""`pycompose ps` and `pycompose ls`: a project's containers, and the projects.

CONTRACT (owner: engineer R3): `add_parser` registers ps, ls,
with docker compose's flags; each handler goes through compose/run (the executor) and engine.api.
Until then the names stay in parser.PLANNED_COMMANDS
("not implemented yet").
"""

from __future__ import annotations


def add_parser(subparsers) -> None:  # type: ignore[no-untyped-def]
    """Register the commands of this module."""
