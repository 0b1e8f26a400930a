"""The argument grammar of `pycompose`: global flags, then a subcommand and its flags.

argparse errors become `UsageError` instead of exiting, so the CLI's single error handler prints them.
"""

from __future__ import annotations

import argparse
import re

from compose.errors import UsageError

TYPE_CHECKING = False  # `import typing` costs start-up time; type checkers treat this alike
if TYPE_CHECKING:
    from typing import NoReturn

_INVALID_CHOICE = re.compile(r"argument COMMAND: invalid choice: '([^']*)'")

# docker compose commands later issues implement; naming one today gives a clear "not yet" instead of
# "unknown command".
PLANNED_COMMANDS = (
    "attach",
    "cp",
    "create",
    "down",
    "events",
    "exec",
    "kill",
    "logs",
    "ls",
    "pause",
    "ps",
    "restart",
    "rm",
    "run",
    "scale",
    "start",
    "stop",
    "unpause",
    "up",
    "wait",
    "watch",
)


class ArgumentParser(argparse.ArgumentParser):
    """argparse that raises UsageError (exit 2 via the CLI) instead of printing and exiting itself."""

    def error(self, message: str) -> NoReturn:
        match = _INVALID_CHOICE.search(message)
        if match:
            message = f"unknown command {match.group(1)!r}"
        raise UsageError(f"{message}\nSee '{self.prog} --help'.")


def build_parser() -> ArgumentParser:
    from compose.cli.commands import (
        build,
        config,
        container,
        image,
        lifecycle,
        logs,
        network,
        port,
        project_containers,
        project_images,
        ps,
        run,
        up,
        version,
        volume,
    )

    parser = ArgumentParser(
        prog="pycompose",
        description="Define and run multi-container applications, daemonless.",
        allow_abbrev=False,
    )
    parser.add_argument(
        "-f",
        "--file",
        dest="files",
        action="append",
        default=[],
        metavar="FILE",
        help="Compose configuration files ('-' reads standard input); repeatable",
    )
    parser.add_argument("-p", "--project-name", metavar="NAME", help="project name")
    parser.add_argument(
        "--project-directory",
        metavar="DIR",
        help="alternate working directory (default: the directory of the first file)",
    )
    parser.add_argument(
        "--env-file",
        dest="env_files",
        action="append",
        default=[],
        metavar="FILE",
        help="environment file(s) for interpolation; repeatable",
    )
    parser.add_argument(
        "--profile",
        dest="profiles",
        action="append",
        default=[],
        metavar="PROFILE",
        help="profile to enable; repeatable",
    )
    parser.add_argument(
        "--ansi",
        choices=("never", "always", "auto"),
        default="auto",
        help="control when to print ANSI control characters",
    )
    parser.add_argument(
        "--progress",
        choices=("auto", "tty", "plain", "json", "quiet"),
        default="auto",
        help="type of progress output",
    )
    parser.add_argument(
        "--parallel", type=int, default=-1, metavar="N", help="maximum parallelism, -1 for unlimited"
    )
    parser.add_argument("--dry-run", action="store_true", help="execute command in dry run mode")
    parser.add_argument(
        "--root",
        metavar="DIR",
        help="state root of the engine (default: $PYCOMPOSE_ROOT or /var/lib/pycompose)",
    )
    parser.add_argument("-v", "--version", action="store_true", help="show the pycompose version and exit")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=ArgumentParser)
    build.add_parser(subparsers)
    config.add_parser(subparsers)
    container.add_parser(subparsers)
    image.add_parser(subparsers)
    network.add_parser(subparsers)
    port.add_parser(subparsers)
    project_images.add_parser(subparsers)
    project_containers.add_parser(subparsers)
    version.add_parser(subparsers)
    volume.add_parser(subparsers)
    for module in (up, lifecycle, ps, logs, run):
        module.add_parser(subparsers)
    for name in PLANNED_COMMANDS:
        if name in subparsers.choices:  # implemented by one of the modules above
            continue
        planned = subparsers.add_parser(name, add_help=False, prefix_chars="\0")
        planned.add_argument("rest", nargs=argparse.REMAINDER)
        planned.set_defaults(handler=_not_yet)
    help_parser = subparsers.add_parser("help", help="show help for a command")
    help_parser.add_argument("topic", nargs="?", metavar="COMMAND")
    return parser


def _not_yet(args, context) -> int:
    from compose.errors import ComposeError

    raise ComposeError(f"'{args.command}' is not implemented yet in this version of pycompose")
