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


def run() -> None:
    """The `pycompose` command: main(), then exit without the interpreter's teardown.

    Freeing a loaded project, the schema and a hundred modules object by object took ~40 ms after every
    command had finished its work. Nothing of ours needs it: non-daemon threads are joined, exit
    handlers run and both streams flushed here, as a normal exit would; then the process just ends.
    """
    exit_now(main())


def exit_now(code: int | None) -> None:
    """As `sys.exit(code)` at the end of the program (None is 0), minus the teardown."""
    import atexit
    import os
    import threading

    current = threading.current_thread()
    for thread in threading.enumerate():
        if thread is not current and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (BrokenPipeError, ValueError):  # a closed pipe (`| head`) or stream: nothing to keep
            pass
    os._exit(code or 0)


if __name__ == "__main__":  # pragma: no cover
    run()
