"""`pycompose start|stop|restart|pause|unpause|kill|rm` of a project's services.

CONTRACT (owner: engineer R5): `add_parser` registers start, stop, restart, pause, unpause, kill, rm,
with docker compose's flags; each handler goes through compose/run (the executor) and engine.api.
Until then the names stay in parser.PLANNED_COMMANDS
("not implemented yet").
"""

from __future__ import annotations


def add_parser(subparsers) -> None:  # type: ignore[no-untyped-def]
    """Register the commands of this module."""
