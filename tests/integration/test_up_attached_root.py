"""Attached `pycompose up` through the real CLI on busybox containers: prefixed logs, exit lines, the
cascade flags, SIGINT (graceful, then forced) and a restarting service followed across its runs.

Each test has its own state root, cgroup parent and project name; teardown removes every container,
network and the supervisor, then checks that no container row, iptables rule or mount of that root is left.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from project_fixture import own_root

from engine.api import Engine

pytestmark = pytest.mark.root

if os.geteuid() != 0:
    pytest.skip("needs root", allow_module_level=True)

REPO = Path(__file__).resolve().parents[2]
IMAGE = "pyc-test/busybox:1"
# a shell that says it is up, then waits; SIGTERM ends it with code 7 (pid 1 ignores an untrapped TERM)
WAITER = """["sh", "-c", "trap 'echo stopping; exit 7' TERM; echo ready; sleep 1000 & wait"]"""


class Stack:
    """A compose project directory and pycompose in a subprocess on its own state root."""

    def __init__(self, root: Path, directory: Path, name: str, parent: str) -> None:
        self.root, self.directory, self.name, self.parent = root, directory, name, parent
        self.env = {
            **os.environ,
            "PYCOMPOSE_ROOT": str(root),
            "PYCOMPOSE_CGROUP_PARENT": parent,
            "PYTHONPATH": str(REPO),
        }
        self.env.pop("NO_COLOR", None)

    def write(self, body: str) -> None:
        text = f"name: {self.name}\n" + textwrap.dedent(body).replace("WAITER", WAITER)
        (self.directory / "compose.yaml").write_text(text)

    def command(self, *args: str) -> list[str]:
        progress = "quiet" if "always" in args else "plain"  # plain progress refuses --ansi always
        return [sys.executable, "-m", "compose.cli.main", "--progress", progress, *args]

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command(*args),
            cwd=self.directory,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def spawn(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.command(*args),
            cwd=self.directory,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def states(self) -> dict[str, str]:
        """short name (web-1) -> state of every container under this state root."""
        with Engine.open(str(self.root)) as engine:
            return {
                r["name"].removeprefix(self.name + "-"): r["state"] for r in engine.list_containers(all=True)
            }


@pytest.fixture
def stack(tmp_path: Path, rootfs_tar: bytes) -> Iterator[Stack]:
    with own_root(tmp_path, rootfs_tar, IMAGE) as (root, directory, name, parent):
        yield Stack(root, directory, name, parent)


class Lines:
    """The CLI's stdout line by line, read by a thread (a pipe read in chunks hides lines from select)."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.queue: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        assert process.stdout is not None
        self.thread = threading.Thread(target=self._pump, args=(process.stdout,), daemon=True)
        self.thread.start()

    def _pump(self, stream) -> None:  # type: ignore[no-untyped-def]
        for line in stream:
            self.queue.put(line.rstrip("\n"))
        self.queue.put(None)

    def wait_for(self, pattern: str, timeout: float = 60, stack: Stack | None = None) -> list[str]:
        """Lines until one matches (fails on a timeout or an early end, saying what the containers are)."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.queue.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                raise AssertionError(f"the CLI ended before {pattern!r}: {self.seen}")
            self.seen.append(line)
            if re.search(pattern, line):
                return self.seen
        states = stack.states() if stack is not None else {}
        raise AssertionError(f"no {pattern!r} within {timeout}s: {self.seen}; containers: {states}")

    def rest(self) -> str:
        """Everything after what was waited for (the pump ends with the process)."""
        self.thread.join(timeout=60)
        lines = []
        while not self.queue.empty():
            line = self.queue.get()
            if line is not None:
                lines.append(line)
        return "\n".join(lines)


def finish(process: subprocess.Popen[str], lines: Lines, timeout: float = 60) -> tuple[int, str, str]:
    """The CLI's exit status, the rest of its stdout and its stderr (killed when it hangs)."""
    assert process.stderr is not None
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise AssertionError(f"the CLI did not end: {lines.seen}") from None
    return process.returncode, lines.rest(), process.stderr.read()


ONE_SHOTS = """
services:
  db:
    image: pyc-test/busybox:1
    command: ["sh", "-c", "echo db says hi; echo db complains >&2; sleep 0.5; echo db done"]
  web:
    image: pyc-test/busybox:1
    command: ["sh", "-c", "echo web one; sleep 0.5; echo web two"]
"""


def test_logs_of_both_services_with_prefixes_then_exit_lines(stack: Stack) -> None:
    stack.write(ONE_SHOTS)
    result = stack.run("up", "--no-color")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "Attaching to db-1, web-1" in lines
    assert lines.index("Attaching to db-1, web-1") < lines.index("web-1  | web one")
    for text in ("db-1   | db says hi", "db-1   | db done", "web-1  | web one", "web-1  | web two"):
        assert text in lines, result.stdout
    assert len(lines) == len(set(lines)), result.stdout  # every line once
    assert "db-1   | db complains" in result.stderr.splitlines()  # stderr stays stderr
    assert lines.index("web-1  | web two") < lines.index("web-1 exited with code 0")
    assert lines.index("db-1   | db done") < lines.index("db-1 exited with code 0")
    assert stack.states() == {"db-1": "exited", "web-1": "exited"}


def test_colours_and_no_log_prefix(stack: Stack) -> None:
    stack.write(ONE_SHOTS)
    coloured = stack.run("--ansi", "always", "up")
    assert "\x1b[36mdb-1   | \x1b[0mdb says hi" in coloured.stdout
    assert "\x1b[33mweb-1  | \x1b[0mweb one" in coloured.stdout
    bare = stack.run("up", "--no-log-prefix", "--no-color")
    assert "web one" in bare.stdout.splitlines() and "db done" in bare.stdout.splitlines()
    stamped = stack.run("up", "--timestamps", "--no-color")
    stamp = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z"
    assert re.search(rf"^web-1  \| {stamp} web one$", stamped.stdout, re.MULTILINE), stamped.stdout


FAILING = """
services:
  db:
    image: pyc-test/busybox:1
    command: WAITER
    stop_grace_period: 5s
  web:
    image: pyc-test/busybox:1
    command: ["sh", "-c", "sleep 1; echo failing now; exit 3"]
"""


def test_abort_on_container_exit_stops_the_others_with_that_exit_code(stack: Stack) -> None:
    stack.write(FAILING)
    result = stack.run("up", "--abort-on-container-exit", "--no-color")
    assert result.returncode == 3, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert "web-1  | failing now" in lines
    assert "web-1 exited with code 3" in lines
    assert "Aborting on container exit..." in lines
    assert "db-1 exited with code 7" not in lines  # nothing printed once aborting
    assert stack.states() == {"db-1": "exited", "web-1": "exited"}  # stopped, not removed


def test_exit_code_from_takes_that_services_code(stack: Stack) -> None:
    stack.write(FAILING)
    result = stack.run("up", "--exit-code-from", "db", "--no-color")
    assert result.returncode == 7, result.stdout + result.stderr  # db's code once web's exit stopped it
    assert "Aborting on container exit..." in result.stdout.splitlines()
    assert stack.states() == {"db-1": "exited", "web-1": "exited"}


def test_abort_on_failure_ignores_a_clean_exit(stack: Stack) -> None:
    stack.write(FAILING.replace("exit 3", "exit 0"))
    process = stack.spawn("up", "--abort-on-container-failure", "--no-color")
    lines = Lines(process)
    try:
        lines.wait_for(r"^web-1 exited with code 0$", stack=stack)
        time.sleep(1)
        assert process.poll() is None  # a clean exit is no failure: db keeps running
        assert stack.states()["db-1"] == "running"
        process.send_signal(signal.SIGINT)
        code, _, err = finish(process, lines)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert code == 130
    assert "Gracefully stopping... (press Ctrl+C again to force)" in err


LONG_RUNNING = """
services:
  db:
    image: pyc-test/busybox:1
    command: WAITER
    stop_grace_period: 5s
  web:
    image: pyc-test/busybox:1
    command: WAITER
    depends_on: [db]
    stop_grace_period: 5s
"""


def interrupted_once_ready(stack: Stack, *args: str) -> tuple[int, str, str]:
    """`up *args` on LONG_RUNNING, sent SIGINT once db and web both print ready: status, stdout, stderr."""
    stack.write(LONG_RUNNING)
    process = stack.spawn("up", *args)
    lines = Lines(process)
    try:
        seen = lines.wait_for(r"^(db|web)-1 +\| ready$", stack=stack)
        assert seen[0] == "Attaching to db-1, web-1"
        lines.wait_for(r"^(db|web)-1 +\| ready$", stack=stack)
        process.send_signal(signal.SIGINT)
        return finish(process, lines)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_sigint_stops_the_project_gracefully_and_exits_130(stack: Stack) -> None:
    code, out, err = interrupted_once_ready(stack, "--no-color")
    assert code == 130, out + err
    assert "Gracefully stopping... (press Ctrl+C again to force)" in err
    progress = [line.strip() for line in err.splitlines()]
    web_stopped = progress.index(f"Container {stack.name}-web-1  Stopped")
    assert web_stopped < progress.index(f"Container {stack.name}-db-1  Stopping")  # dependents first
    assert f"Container {stack.name}-db-1  Stopped" in progress
    assert "web-1 exited with code 7" not in out  # nothing printed once stopping
    assert stack.states() == {"db-1": "exited", "web-1": "exited"}  # stopped, not removed


def test_sigint_stops_only_the_services_named(stack: Stack) -> None:
    code, out, err = interrupted_once_ready(stack, "web", "--attach-dependencies", "--no-color")
    assert code == 130, out + err
    assert "Traceback" not in err  # db's reader still follows when the CLI ends
    # as docker compose: Ctrl-C stops the services `up` was given, not their dependencies
    assert stack.states() == {"db-1": "running", "web-1": "exited"}


def test_second_sigint_kills(stack: Stack) -> None:
    stubborn = """
    services:
      web:
        image: pyc-test/busybox:1
        command: ["sh", "-c", "echo stubborn; sleep 1000"]
        stop_grace_period: 60s
    """
    stack.write(stubborn)
    process = stack.spawn("up", "--no-color")
    lines = Lines(process)
    try:
        lines.wait_for(r"stubborn$", stack=stack)
        process.send_signal(signal.SIGINT)
        time.sleep(1.0)
        assert process.poll() is None  # waiting for the 60 s grace period
        began = time.monotonic()
        process.send_signal(signal.SIGINT)
        code, out, err = finish(process, lines)
        took = time.monotonic() - began
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert code == 130, out + err
    assert took < 15, took
    assert stack.states() == {"web-1": "exited"}


def test_no_attach_leaves_a_service_out(stack: Stack) -> None:
    stack.write(ONE_SHOTS)
    result = stack.run("up", "--no-attach", "db", "--no-color")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "Attaching to web-1" in lines
    assert "web-1  | web two" in lines
    assert not any(line.startswith("db-1") for line in lines)


def test_a_restarting_service_keeps_being_followed(stack: Stack) -> None:
    restarting = """
    services:
      web:
        image: pyc-test/busybox:1
        command: ["sh", "-c", "echo run $$RANDOM$$RANDOM; sleep 0.5; exit 2"]
        restart: on-failure:2
    """
    stack.write(restarting)
    result = stack.run("up", "--no-color")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    runs = [line for line in lines if line.startswith("web-1  | run ")]
    assert len(runs) == 3 and len(set(runs)) == 3, result.stdout  # three runs, each line once
    exits = [line for line in lines if line == "web-1 exited with code 2"]
    assert len(exits) >= 2  # the last one and at least one before a restart
    assert lines[-1] == "web-1 exited with code 2"
