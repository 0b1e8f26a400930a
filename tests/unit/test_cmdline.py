"""Docker's entrypoint/command merge, case by case (image values, service values, resets)."""

from __future__ import annotations

import pytest

from engine.containers.cmdline import merge, resolve_args, shell_form
from engine.errors import InvalidCommand

IMG_EP = ["/docker-entrypoint.sh"]
IMG_CMD = ["nginx", "-g", "daemon off;"]


@pytest.mark.parametrize(
    ("entrypoint", "command", "expected"),
    [
        (None, None, ("/docker-entrypoint.sh", "nginx", "-g", "daemon off;")),
        (None, ["sh"], ("/docker-entrypoint.sh", "sh")),
        (["/bin/env"], None, ("/bin/env",)),  # a new entrypoint drops the image CMD
        (["/bin/env"], ["A=1"], ("/bin/env", "A=1")),
        ([], None, ("nginx", "-g", "daemon off;")),  # entrypoint reset keeps the image CMD
        ([], ["echo", "x"], ("echo", "x")),
        ([""], ["echo", "x"], ("echo", "x")),  # --entrypoint "" : reset, image CMD dropped
        (None, [], ("/docker-entrypoint.sh",)),  # empty command clears the image CMD
    ],
)
def test_merge_with_image_entrypoint_and_cmd(entrypoint, command, expected):
    assert resolve_args(IMG_EP, IMG_CMD, entrypoint, command) == expected


def test_empty_string_entrypoint_drops_image_cmd():
    assert merge(IMG_EP, IMG_CMD, [""], None) == ((), ())
    with pytest.raises(InvalidCommand, match="no command"):
        resolve_args(IMG_EP, IMG_CMD, [""], None)


def test_image_without_entrypoint():
    assert resolve_args(None, ["/bin/sh"]) == ("/bin/sh",)
    assert resolve_args(None, ["/bin/sh"], None, ["ls", "-l"]) == ("ls", "-l")
    assert resolve_args([], ["/bin/sh"], ["top"]) == ("top",)


def test_nothing_to_run_is_an_error_naming_the_container():
    with pytest.raises(InvalidCommand) as info:
        resolve_args(None, None, subject="web-1")
    assert info.value.subject == "web-1"
    with pytest.raises(InvalidCommand):
        resolve_args(None, ["x"], [], [])


def test_empty_executable_is_an_error():
    with pytest.raises(InvalidCommand, match="empty string"):
        resolve_args(None, [""])


def test_shell_form():
    assert shell_form("echo $HOME") == ("/bin/sh", "-c", "echo $HOME")
    assert shell_form("dir", ["cmd", "/S", "/C"]) == ("cmd", "/S", "/C", "dir")
    # a shell-form image CMD is stored as exec form and then behaves like any other CMD
    assert resolve_args(None, shell_form("echo hi"), None, None) == ("/bin/sh", "-c", "echo hi")
