"""One module per command (or command group); each exposes `add_parser(subparsers)`.

Every leaf parser sets `handler`, the function `main` calls with `(args, context)`; a command group
(`image`, `container`, `volume`) registers its subcommands through `subcommand`.
"""

from __future__ import annotations


def subcommand(commands, name: str, handler, help: str, aliases=()):  # type: ignore[no-untyped-def]
    """Add `name` to a command group's subparsers, with the function that runs it."""
    parser = commands.add_parser(name, help=help, aliases=list(aliases))
    parser.set_defaults(handler=handler)
    return parser
