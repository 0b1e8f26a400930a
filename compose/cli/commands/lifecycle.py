"""`pycompose start|stop|restart|pause|unpause|kill|rm` of a project's services.

CONTRACT (owner: engineer R5): `add_parser` registers start, stop, restart, pause, unpause, kill, rm,
with docker compose's flags; each handler goes through compose/run (the executor) and engine.api.

The work is compose/run/lifecycle's; this module parses flags, opens the engine, picks the progress
renderer (compose/cli/progress) and talks to the user (rm's confirmation, "No stopped containers",
"no container to kill").
Global `--dry-run` runs the same walk on an engine that only reads, so the events show what would happen.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # `import typing` costs start-up time; type checkers treat this alike

if TYPE_CHECKING:
    from typing import Any

RM_QUESTION = "Are you sure? [yN] "
MUTATIONS = (
    "start_container",
    "stop_container",
    "kill_container",
    "pause_container",
    "unpause_container",
    "remove_container",
)


def add_parser(subparsers) -> None:  # type: ignore[no-untyped-def]
    """Register the commands of this module."""
    start = _command(subparsers, "start", "start existing containers of the services")
    start.set_defaults(handler=_start)

    stop = _command(subparsers, "stop", "stop the services' containers without removing them")
    _timeout(stop)
    stop.set_defaults(handler=_stop)

    restart = _command(subparsers, "restart", "restart the services' containers")
    _timeout(restart)
    restart.add_argument("--no-deps", action="store_true", help="don't restart dependent services")
    restart.set_defaults(handler=_restart)

    _command(subparsers, "pause", "pause the services' containers").set_defaults(handler=_pause)
    _command(subparsers, "unpause", "unpause the services' containers").set_defaults(handler=_unpause)

    kill = _command(subparsers, "kill", "force the services' containers to stop")
    kill.add_argument("-s", "--signal", default="SIGKILL", help="signal to send (default SIGKILL)")
    kill.add_argument(
        "--remove-orphans", action="store_true", help="also kill containers of services not in the file"
    )
    kill.set_defaults(handler=_kill)

    rm = _command(subparsers, "rm", "remove stopped service containers")
    rm.add_argument("-f", "--force", action="store_true", help="don't ask to confirm removal")
    rm.add_argument("-s", "--stop", action="store_true", help="stop the containers first if required")
    rm.add_argument(
        "-v", "--volumes", action="store_true", help="remove anonymous volumes attached to containers"
    )
    rm.set_defaults(handler=_rm)


def _command(subparsers, name: str, text: str):  # type: ignore[no-untyped-def]
    parser = subparsers.add_parser(name, help=text)
    parser.add_argument("services", nargs="*", metavar="SERVICE")
    return parser


def _timeout(parser) -> None:  # type: ignore[no-untyped-def]
    parser.add_argument(
        "-t",
        "--timeout",
        type=int,
        metavar="SECONDS",
        help="shutdown timeout in seconds (default: stop_grace_period)",
    )


# -- handlers -------------------------------------------------------------------------------------------


def _start(args, context) -> int:
    from compose.run import lifecycle

    _run(args, context, lambda loaded, engine, events, n: lifecycle.start(
        loaded, engine, events, args.services, parallel=n))  # fmt: skip
    return 0


def _stop(args, context) -> int:
    from compose.run import lifecycle

    _run(args, context, lambda loaded, engine, events, n: lifecycle.stop(
        loaded, engine, events, args.services, args.timeout, parallel=n))  # fmt: skip
    return 0


def _restart(args, context) -> int:
    from compose.run import lifecycle

    _run(args, context, lambda loaded, engine, events, n: lifecycle.restart(
        loaded, engine, events, args.services, args.timeout, no_deps=args.no_deps, parallel=n))  # fmt: skip
    return 0


def _pause(args, context) -> int:
    from compose.run import lifecycle

    _run(args, context, lambda loaded, engine, events, n: lifecycle.pause(
        loaded, engine, events, args.services, parallel=n))  # fmt: skip
    return 0


def _unpause(args, context) -> int:
    from compose.run import lifecycle

    _run(args, context, lambda loaded, engine, events, n: lifecycle.unpause(
        loaded, engine, events, args.services, parallel=n))  # fmt: skip
    return 0


def _kill(args, context) -> int:
    from compose.run import lifecycle

    killed = _run(args, context, lambda loaded, engine, events, n: lifecycle.kill(
        loaded, engine, events, args.services, args.signal, remove_orphans=args.remove_orphans,
        parallel=n))  # fmt: skip
    if not killed:
        context.stderr.write("no container to kill\n")
    return 0


def _rm(args, context) -> int:
    from compose.run import lifecycle

    asked: list[list[str]] = []

    def confirm(names: list[str]) -> bool:
        asked.append(names)
        return confirm_removal(names, context.stdout, sys.stdin, force=args.force)

    _run(args, context, lambda loaded, engine, events, n: lifecycle.rm(
        loaded, engine, events, args.services, stop_first=args.stop, volumes=args.volumes,
        force=args.force, confirm=confirm, parallel=n))  # fmt: skip
    if not asked:
        context.stderr.write("No stopped containers\n")
    return 0


def _run(args, context, work) -> Any:  # type: ignore[no-untyped-def]
    """Load the project, open the engine, run `work(loaded, engine, events, parallel)`, close the events
    (also on failure, so the terminal is left clean before the error is printed)."""
    import os

    from compose.cli.commands.build import parallel_limit
    from compose.cli.commands.image import open_engine
    from compose.cli.commands.project_images import load
    from compose.cli.progress import for_args

    loaded = load(args, context)
    events = for_args(args, context)
    try:
        with open_engine(args) as engine:
            target = DryRunEngine(engine) if getattr(args, "dry_run", False) else engine
            return work(loaded, target, events, parallel_limit(getattr(args, "parallel", -1), os.environ))
    finally:
        events.close()


# -- user interaction (pure enough to unit-test) --------------------------------------------------------


def confirm_removal(names: list[str], out, answers, *, force: bool) -> bool:  # type: ignore[no-untyped-def]
    """docker compose's rm question: "Going to remove a, b" then "Are you sure? [yN] "; only y/yes
    agrees (end of input is no). With -f the list is printed and nothing asked."""
    out.write(f"Going to remove {', '.join(names)}\n")
    if force:
        out.flush()
        return True
    out.write(RM_QUESTION)
    out.flush()
    answer = answers.readline()
    return answer.strip().lower() in ("y", "yes")


class DryRunEngine:
    """engine.api.Engine that reads but changes nothing (`--dry-run`): mutations become no-ops."""

    def __init__(self, engine) -> None:  # type: ignore[no-untyped-def]
        self._engine = engine

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        if name in MUTATIONS:
            return lambda *args, **kwargs: None
        return getattr(self._engine, name)
