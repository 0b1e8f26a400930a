"""The argument grammar of `pycompose`: global flags, then a subcommand and its flags.

argparse errors become `UsageError` instead of exiting, so the CLI's single error handler prints them.

Start-up: importing every command module and registering ~40 subparsers costs 50-70 ms, more than the
rest of `pycompose version`. `build_parser(command)` registers only the module that implements the
command found by `command_of(argv)`; the whole grammar is built for help, for no or an unknown command.
A unit test keeps COMMAND_MODULES equal to what the modules register.
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
PLANNED_COMMANDS = ("watch",)


class ArgumentParser(argparse.ArgumentParser):
    """argparse that raises UsageError (exit 2 via the CLI) instead of printing and exiting itself."""

    def error(self, message: str) -> NoReturn:
        match = _INVALID_CHOICE.search(message)
        if match:
            message = f"unknown command {match.group(1)!r}"
        raise UsageError(f"{message}\nSee '{self.prog} --help'.")


COMMAND_MODULES: dict[str, str] = {
    "build": "build",
    "config": "config",
    "container": "container",
    "image": "image",
    "network": "network",
    "port": "port",
    "images": "project_images",
    "pull": "project_images",
    "push": "project_images",
    "stats": "project_containers",
    "top": "project_containers",
    "version": "version",
    "volume": "volume",
    "create": "up",
    "down": "up",
    "scale": "up",
    "up": "up",
    "kill": "lifecycle",
    "pause": "lifecycle",
    "restart": "lifecycle",
    "rm": "lifecycle",
    "start": "lifecycle",
    "stop": "lifecycle",
    "unpause": "lifecycle",
    "ls": "ps",
    "ps": "ps",
    "events": "logs",
    "logs": "logs",
    "wait": "logs",
    "attach": "run",
    "cp": "run",
    "exec": "run",
    "run": "run",
}
"""Command -> the module under compose.cli.commands whose `add_parser` registers it."""

MODULES = tuple(dict.fromkeys(COMMAND_MODULES.values()))
"""Every command module, in registration order (the order `--help` lists commands in)."""

VALUE_FLAGS = frozenset(
    {"-f", "--file", "-p", "--project-name", "--project-directory", "--env-file", "--profile"}
    | {"--ansi", "--progress", "--parallel", "--root"}
)
"""Global flags whose value is the next argument (`--file=x` and `-fx` are one argument)."""


def command_of(argv: list[str]) -> str | None:
    """The subcommand argparse will see: the first argument that is neither a global flag nor its value."""
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg in VALUE_FLAGS:
            skip = True
        elif not arg.startswith("-"):
            return arg
    return None


def build_parser(command: str | None = None) -> ArgumentParser:
    """The grammar; with a known `command`, only that command's module is imported and registered."""
    from importlib import import_module

    names = (COMMAND_MODULES[command],) if command in COMMAND_MODULES else MODULES
    modules = [import_module(f"compose.cli.commands.{name}") for name in names]

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
    for module in modules:
        module.add_parser(subparsers)
    for name in PLANNED_COMMANDS:
        planned = subparsers.add_parser(name, add_help=False, prefix_chars="\0")
        planned.add_argument("rest", nargs=argparse.REMAINDER)
        planned.set_defaults(handler=_not_yet)
    help_parser = subparsers.add_parser("help", help="show help for a command")
    help_parser.add_argument("topic", nargs="?", metavar="COMMAND")
    return parser


def _not_yet(args, context) -> int:
    from compose.errors import ComposeError

    raise ComposeError(f"'{args.command}' is not implemented yet in this version of pycompose")
