"""Entry point of the `pycompose` console script.

Keeps imports lazy: `pycompose version` must start in well under 50 ms, so nothing heavy (jsonschema,
networkx, rich) is imported here.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Parse, dispatch, and turn every ComposeError into a message on stderr and an exit code."""
    from compose.cli.context import CliContext
    from compose.errors import ComposeError
    from engine.errors import EngineError

    context = CliContext()
    try:
        return _dispatch(list(sys.argv[1:] if argv is None else argv), context)
    except (ComposeError, EngineError) as exc:
        context.stderr.write(f"{exc}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


def _dispatch(argv: list[str], context) -> int:
    from compose.cli.parser import build_parser, command_of
    from compose.errors import UsageError

    parser = build_parser(command_of(argv))
    try:
        args, extra = parser.parse_known_args(argv)
    except SystemExit as exc:  # --help and friends print, then ask to exit
        return exc.code if isinstance(exc.code, int) else 0
    if extra:
        raise UsageError(
            f"unknown flag: {extra[0]}\nSee 'pycompose {args.command or ''} --help'.".replace("  ", " ")
        )
    if args.version:
        from compose.cli.commands import version

        args.short, args.format = False, "pretty"
        return version.run(args, context)
    if args.command is None:
        parser.print_help(context.stdout)
        return 0
    if args.command == "help":
        if args.topic:
            return _dispatch([args.topic, "--help"], context)
        parser.print_help(context.stdout)
        return 0
    return args.handler(args, context)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
