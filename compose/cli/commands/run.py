"""`pycompose run`, `exec`, `cp` and `attach`: one-off containers and getting inside running ones.

CONTRACT (owner: engineer R4): `add_parser` registers run, exec, cp, attach,
with docker compose's flags; each handler goes through compose/run (the executor) and engine.api.
Until then the names stay in parser.PLANNED_COMMANDS
("not implemented yet").
"""

from __future__ import annotations


def add_parser(subparsers) -> None:  # type: ignore[no-untyped-def]
    """Register the commands of this module."""
