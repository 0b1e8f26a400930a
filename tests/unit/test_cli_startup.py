"""CLI start-up: the parser built for one command must parse exactly like the whole grammar, and the
hot commands must not import what they do not use (networkx, rich, anyio, httpx, pyroute2...)."""

from __future__ import annotations

import argparse
import subprocess
import sys
from importlib import import_module
from pathlib import Path

import pytest

from compose.cli.parser import (
    COMMAND_MODULES,
    MODULES,
    VALUE_FLAGS,
    ArgumentParser,
    build_parser,
    command_of,
)
from compose.errors import UsageError

HEAVY = ("networkx", "rich", "anyio", "httpx", "pyroute2", "jsonschema", "zstandard")


def _registered(module: str) -> set[str]:
    parser = ArgumentParser(prog="t")
    subparsers = parser.add_subparsers(dest="command", parser_class=ArgumentParser)
    import_module(f"compose.cli.commands.{module}").add_parser(subparsers)
    return set(subparsers.choices)


@pytest.mark.parametrize("module", MODULES)
def test_the_table_names_every_command_a_module_registers(module: str) -> None:
    assert _registered(module) == {c for c, m in COMMAND_MODULES.items() if m == module}


def test_value_flags_are_the_global_options_that_take_a_value() -> None:
    parser = build_parser()
    taking = {
        flag
        for action in parser._actions
        if action.option_strings and action.nargs != 0 and not isinstance(action, argparse._SubParsersAction)
        for flag in action.option_strings
    }
    assert taking == VALUE_FLAGS


@pytest.mark.parametrize(
    "argv, command",
    [
        ([], None),
        (["version"], "version"),
        (["-f", "up", "ps"], "ps"),  # a file named "up"
        (["--file=x.yaml", "-pdemo", "--dry-run", "up", "-d"], "up"),
        (["--profile", "debug", "--root", "/tmp/r", "logs", "-f", "web"], "logs"),
        (["--ansi", "never", "--progress", "plain", "--parallel", "2"], None),
        (["-v"], None),
    ],
)
def test_command_of(argv: list[str], command: str | None) -> None:
    assert command_of(argv) == command


ARGVS = [
    ["version", "--short"],
    ["-f", "a.yaml", "-f", "b.yaml", "--profile", "x", "config", "-q"],
    ["-p", "demo", "--dry-run", "up", "-d", "--remove-orphans", "--scale", "web=3", "web"],
    ["--progress", "quiet", "down", "-v", "-t", "1"],
    ["--env-file", "e", "ps", "-a", "--format", "json"],
    ["logs", "-f", "--tail", "5", "web"],
    ["exec", "-T", "web", "sh", "-c", "exit 3"],
    ["run", "--rm", "-e", "A=1", "web", "echo", "hi"],
    ["stop", "-t", "2", "db"],
    ["image", "ls"],
    ["pull", "--include-deps", "web"],
    ["top", "web"],
    ["-f", "up", "scale", "web=2"],
    ["--root", "/r", "wait", "web"],
]


@pytest.mark.parametrize("argv", ARGVS, ids=lambda a: " ".join(a))
def test_one_command_parser_parses_like_the_whole_grammar(argv: list[str]) -> None:
    whole, extra_whole = build_parser().parse_known_args(argv)
    one, extra_one = build_parser(command_of(argv)).parse_known_args(argv)
    assert extra_one == extra_whole
    assert vars(one) == vars(whole)


def test_an_unknown_command_still_gets_the_whole_grammar_and_its_message() -> None:
    with pytest.raises(UsageError, match="unknown command 'bogus'"):
        build_parser(command_of(["bogus"])).parse_known_args(["bogus"])
    assert "watch" in build_parser("watch")._subparsers._group_actions[0].choices  # planned: "not yet"


def _imported(args: list[str], cwd: Path) -> set[str]:
    """Top-level packages loaded by one in-process CLI run, which must succeed."""
    code = (
        "import sys; from compose.cli.main import main; code = main(sys.argv[1:]); "
        "print(code, ' '.join(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=cwd)
    code, _, modules = out.stdout.splitlines()[-1].partition(" ")
    assert code == "0", out.stderr
    return set(modules.split())


def test_version_imports_no_command_module_but_its_own(tmp_path: Path) -> None:
    code = "import sys; from compose.cli.main import main; main(['version']); print(sorted(sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path
    )
    modules = out.stdout.splitlines()[-1]
    assert "compose.cli.commands.version" in modules
    for other in ("compose.cli.commands.up", "compose.cli.commands.port", "compose.labels", "yaml"):
        assert f"'{other}'" not in modules


def test_config_and_ps_import_nothing_heavy(tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text(
        "services:\n  web:\n    image: busybox\n    depends_on: [db]\n  db:\n    image: busybox\n"
    )
    assert not _imported(["config", "-q"], tmp_path) & set(HEAVY)
    root = tmp_path / "pyct-root"
    assert not _imported(["--root", str(root), "ps"], tmp_path) & set(HEAVY)


def test_the_command_exits_without_teardown_but_like_sys_exit() -> None:
    """`pycompose` ends with os._exit (the interpreter's teardown cost ~40 ms after every command): its
    threads are still joined, exit handlers run and output flushed first, and the code is kept."""
    code = (
        "import atexit, threading, time\n"
        "from compose.cli.main import exit_now\n"
        "atexit.register(lambda: print('handler ran'))\n"
        "threading.Thread(target=lambda: (time.sleep(0.2), print('thread done'))).start()\n"
        "print('buffered', end='')\n"
        "exit_now(3)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert result.returncode == 3
    assert result.stdout == "bufferedthread done\nhandler ran\n"
    none = subprocess.run([sys.executable, "-c", "from compose.cli.main import exit_now; exit_now(None)"])
    assert none.returncode == 0
