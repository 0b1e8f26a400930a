"""`pycompose run`, `exec`, `cp` and `attach` through the CLI (a subprocess on its own state root and
cgroup parent) against real busybox containers.

run: --rm passes the exit code through and leaves no container, dependencies are started first (and not
with --no-deps), -d prints the id and leaves the one-off running with Compose's one-off labels,
-e/-w/-u/--entrypoint reach the process; stdin reaches an attached one-off. exec: exit code and
environment. cp: a file and a directory both ways, into and out of a running and a stopped container.
attach: a container's output from then on, and its exit code.

At the end no container, network, bridge, firewall rule, mount, supervisor or cgroup of the test is left,
even when a test fails.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from project_fixture import wait_for
from rootfs_fixture import busybox_tar

from engine.api import Engine
from engine.containers import cgroups, manager, records
from engine.errors import EngineError

pytestmark = pytest.mark.root

if os.geteuid() != 0:
    pytest.skip("needs root", allow_module_level=True)

REPO = Path(__file__).resolve().parents[2]
IMAGE = "pyc-test/busybox:1"
CLI = "import sys; from compose.cli.main import main; sys.exit(main(sys.argv[1:]))"
COMPOSE = """\
services:
  db:
    image: pyc-test/busybox:1
    command:
      - sh
      - -c
      - trap 'exit 0' TERM; mkdir -p /data; echo seed > /data/seed.txt; while :; do sleep 0.2; done
    environment:
      DB_ROLE: primary
  app:
    image: pyc-test/busybox:1
    depends_on: [db]
    environment:
      FROM_SERVICE: "yes"
    command: ["sh", "-c", "exit 3"]
    ports: ["127.0.0.1::80"]
  talker:
    image: pyc-test/busybox:1
    command:
      - sh
      - -c
      - i=0; while [ $$i -lt 40 ]; do echo tick $$i; i=$$((i+1)); sleep 0.2; done; exit 5
  migrate:
    image: pyc-test/busybox:1
    profiles: [tools]
    command: ["sh", "-c", "exit 4"]
"""


@dataclass
class Project:
    engine: Engine
    directory: Path
    name: str
    parent: str

    def cli(
        self, *args: str, input: str | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.argv(), *args],
            capture_output=True,
            text=True,
            input=input,
            cwd=self.directory,
            env=self.env(),
            timeout=timeout,
        )

    def argv(self) -> list[str]:
        return [sys.executable, "-c", CLI, "--root", str(self.engine.root.path), "-p", self.name]

    def env(self) -> dict[str, str]:
        env = {**os.environ, "PYTHONPATH": str(REPO), manager.CGROUP_PARENT_ENV: self.parent}
        env.pop("PYCOMPOSE_ROOT", None)
        return env

    def containers(self, **labels: str) -> list[dict]:
        wanted = {"com.docker.compose.project": self.name, **labels}
        return self.engine.list_containers(all=True, labels=wanted)

    def service(self, name: str) -> dict:
        found = self.containers(**{"com.docker.compose.service": name, "com.docker.compose.oneoff": "False"})
        assert len(found) == 1, found
        return found[0]


def _supervisor_processes(root: Path) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                argv = Path(f"/proc/{entry}/cmdline").read_bytes()
                if str(root).encode() in argv and b"engine.supervise" in argv:
                    found.append(int(entry))
    return found


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Project]:
    parent = "pyc-test-" + uuid.uuid4().hex[:10]
    monkeypatch.setenv(manager.CGROUP_PARENT_ENV, parent)
    directory = tmp_path / "proj"
    directory.mkdir()
    (directory / "compose.yaml").write_text(COMPOSE)
    engine = Engine.open(str(tmp_path / "root"))
    try:
        engine.import_image(io.BytesIO(busybox_tar()), IMAGE)
        yield Project(engine, directory, "pyct" + uuid.uuid4().hex[:8], parent)
    finally:
        _cleanup(engine, tmp_path / "root", parent)


def _cleanup(engine: Engine, root: Path, parent: str) -> None:
    """Everything of the state root out of the kernel; then assert nothing is left."""
    from engine.net import firewall
    from engine.supervise import client

    try:
        for record in records.list_all(engine.root.db):
            with contextlib.suppress(EngineError):
                engine.remove_container(record["id"], force=True, volumes=True)
        with contextlib.suppress(EngineError):
            client.shutdown(engine.root, timeout=10)
        for pid in _supervisor_processes(root):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        bridges = [n.bridge for n in engine.list_networks()]
        for network in engine.list_networks():
            with contextlib.suppress(EngineError):
                engine.remove_network(network.id)
        for volume in engine.list_volumes():
            with contextlib.suppress(EngineError):
                engine.remove_volume(volume.name, force=True)
        firewall.sync(engine.networks.scope, [], [])
        leftovers = [f"bridge {b}" for b in bridges if os.path.exists(f"/sys/class/net/{b}")]
        leftovers += [f"container {r['id']}" for r in records.list_all(engine.root.db)]
        with open("/proc/self/mountinfo") as mounts:
            leftovers += [f"mount {line.split()[4]}" for line in mounts if str(root) in line]
        assert leftovers == []
    finally:
        cgroups.remove_parent(parent)
        engine.close()


# -- run ----------------------------------------------------------------------------------------------


def test_run_rm_passes_the_exit_code_and_starts_dependencies(project: Project) -> None:
    result = project.cli(
        "run", "--rm", "-T", "app", "sh", "-c", "echo out $FROM_SERVICE; echo err >&2; exit 7"
    )
    assert result.returncode == 7, result.stderr
    assert result.stdout == "out yes\n"
    assert "err\n" in result.stderr
    assert project.containers(**{"com.docker.compose.oneoff": "True"}) == []  # --rm
    db = project.service("db")
    assert db["state"] == "running"
    assert db["name"] == f"{project.name}-db-1"

    # the service's own command and exit code, when no command is given; the container stays (no --rm)
    result = project.cli("run", "-T", "app")
    assert result.returncode == 3, result.stderr
    (oneoff,) = project.containers(**{"com.docker.compose.oneoff": "True"})
    assert oneoff["state"] == "exited" and oneoff["exit_code"] == 3
    assert oneoff["name"].startswith(f"{project.name}-app-run-")
    doc = project.engine.inspect_container(oneoff["id"])
    assert doc["NetworkSettings"]["Ports"] == {}  # no --service-ports: nothing published
    assert doc["HostConfig"]["RestartPolicy"]["Name"] == "no"


def test_run_no_deps_starts_nothing_else(project: Project) -> None:
    result = project.cli("run", "--rm", "--no-deps", "-T", "app", "true")
    assert result.returncode == 0, result.stderr
    assert project.containers() == []


def test_run_env_workdir_user_entrypoint_and_stdin(project: Project) -> None:
    script = 'echo "$A $FROM_SERVICE $(pwd) $(id -un)"'
    result = project.cli(
        "run", "--rm", "--no-deps", "-T", "-e", "A=1", "-e", "FROM_SERVICE=over", "-w", "/tmp", "-u", "app",
        "app", "sh", "-c", script,
    )  # fmt: skip
    assert (result.returncode, result.stdout) == (0, "1 over /tmp app\n"), result.stderr
    result = project.cli("run", "--rm", "--no-deps", "-T", "--entrypoint", "echo via", "app", "entry")
    assert (result.returncode, result.stdout) == (0, "via entry\n"), result.stderr
    result = project.cli(
        "run", "--rm", "--no-deps", "-T", "app", "sh", "-c", "tr a-z A-Z", input="piped in\n"
    )
    assert (result.returncode, result.stdout) == (0, "PIPED IN\n"), result.stderr


def test_run_detached_keeps_a_labelled_one_off_running(project: Project) -> None:
    result = project.cli(
        "run", "-d", "--no-deps", "--name", "pyct-oneoff-" + project.name[4:], "app", "sleep", "60"
    )
    assert result.returncode == 0, result.stderr
    name = "pyct-oneoff-" + project.name[4:]
    record = project.engine.get_container(name)
    assert result.stdout == record["id"] + "\n"  # docker compose prints the id
    assert record["state"] == "running"
    labels = record["labels"]
    assert labels["com.docker.compose.oneoff"] == "True"
    assert labels["com.docker.compose.service"] == "app"
    assert labels["com.docker.compose.slug"]
    assert project.containers(**{"com.docker.compose.oneoff": "False"}) == []


def test_run_unknown_service_fails_cleanly(project: Project) -> None:
    result = project.cli("run", "--rm", "-T", "nope", "true")
    assert result.returncode != 0
    assert "no such service" in result.stderr


# -- exec ---------------------------------------------------------------------------------------------


def test_run_of_a_service_whose_profile_is_off_enables_it(project: Project) -> None:
    """docker compose: a service named on the command line runs even when its profile is not active."""
    result = project.cli("run", "--rm", "-T", "migrate")
    assert result.returncode == 4, result.stderr
    assert project.containers(**{"com.docker.compose.service": "migrate"}) == []  # --rm
    result = project.cli("up", "-d")  # without the profile, `up` leaves it out and does not call it an orphan
    assert result.returncode == 0, result.stderr
    assert "orphan" not in result.stderr
    assert project.containers(**{"com.docker.compose.service": "migrate"}) == []


def test_exec_exit_code_env_user_workdir(project: Project) -> None:
    assert project.cli("run", "--rm", "-T", "app", "true").returncode == 0  # db up as a dependency
    result = project.cli(
        "exec", "-T", "-e", "X=hi", "-w", "/data", "-u", "app", "db",
        "sh", "-c", 'echo "$X $DB_ROLE $(pwd) $(id -un)"; exit 4',
    )  # fmt: skip
    assert result.returncode == 4, result.stderr
    assert result.stdout == "hi primary /data app\n"
    missing = project.cli("exec", "-T", "app", "true")
    assert missing.returncode != 0 and "not running" in missing.stderr
    assert project.cli("exec", "-T", "--index", "2", "db", "true").returncode != 0


def test_exec_privileged_gets_every_capability_for_that_command_only(project: Project) -> None:
    assert project.cli("run", "--rm", "-T", "app", "true").returncode == 0  # db up
    read_caps = ["sh", "-c", "grep CapEff /proc/self/status"]
    plain = project.cli("exec", "-T", "db", *read_caps)
    privileged = project.cli("exec", "-T", "--privileged", "db", *read_caps)
    assert plain.returncode == 0 and privileged.returncode == 0, privileged.stderr
    default, full = (int(r.stdout.split()[-1], 16) for r in (plain, privileged))
    assert default == 0xA80425FB  # Docker's default set
    assert full > default and full & default == default
    assert project.cli("exec", "-T", "db", *read_caps).stdout == plain.stdout  # not kept afterwards


# -- cp -----------------------------------------------------------------------------------------------


def test_cp_both_ways_running_and_stopped(project: Project, tmp_path: Path) -> None:
    assert project.cli("run", "--rm", "-T", "app", "true").returncode == 0
    db = project.service("db")
    local = tmp_path / "local"
    (local / "tree" / "sub").mkdir(parents=True)
    (local / "note.txt").write_text("note\n")
    (local / "tree" / "sub" / "deep.txt").write_text("deep\n")

    # host -> running container: a file under a new name, a directory into an existing one
    assert project.cli("cp", str(local / "note.txt"), "db:/data/renamed.txt").returncode == 0
    assert project.cli("cp", str(local / "tree"), "db:/data").returncode == 0
    shown = project.cli(
        "exec",
        "-T",
        "db",
        "sh",
        "-c",
        "cat /data/renamed.txt /data/tree/sub/deep.txt; stat -c %u /data/renamed.txt",
    )
    assert shown.stdout == "note\ndeep\n0\n", shown.stderr

    # running container -> host: a file into a directory, a directory under a new name, a tar on stdout
    out = tmp_path / "out"
    out.mkdir()
    assert project.cli("cp", "db:/data/seed.txt", str(out)).returncode == 0
    assert (out / "seed.txt").read_text() == "seed\n"
    assert project.cli("cp", "db:/data/tree", str(out / "copy")).returncode == 0
    assert (out / "copy" / "sub" / "deep.txt").read_text() == "deep\n"
    raw = subprocess.run(
        [*project.argv(), "cp", "db:/data/seed.txt", "-"],
        capture_output=True, cwd=project.directory, env=project.env(), timeout=60,
    )  # fmt: skip
    with tarfile.open(fileobj=io.BytesIO(raw.stdout)) as tar:
        assert tar.getnames() == ["seed.txt"]

    # a symlink in the container never leads to the host's files
    project.cli("exec", "-T", "db", "ln", "-s", "/etc", "/data/hostetc")
    (local / "victim").write_text("container\n")
    assert project.cli("cp", str(local / "victim"), "db:/data/hostetc/").returncode == 0
    assert not Path("/etc/victim").exists()

    # stopped: the writable layer is still there, both ways
    project.engine.stop_container(db["id"], timeout=5)
    assert project.engine.get_container(db["id"])["state"] == "exited"
    assert project.cli("cp", "db:/data/renamed.txt", str(out / "from-stopped.txt")).returncode == 0
    assert (out / "from-stopped.txt").read_text() == "note\n"
    assert project.cli("cp", str(local / "note.txt"), "db:/data/while-stopped.txt").returncode == 0
    project.engine.start_container(db["id"])
    shown = wait_for(lambda: project.cli("exec", "-T", "db", "cat", "/data/while-stopped.txt").stdout)
    assert shown == "note\n"

    missing = project.cli("cp", "db:/no/such/file", str(out))
    assert missing.returncode != 0 and "/no/such/file" in missing.stderr


# -- attach -------------------------------------------------------------------------------------------


def test_attach_follows_output_and_returns_the_exit_code(project: Project) -> None:
    started = project.cli("up", "-d", "talker")
    assert started.returncode == 0, started.stderr
    time.sleep(1.0)
    result = project.cli("attach", "talker", timeout=60)
    assert result.returncode == 5, result.stderr
    ticks = [line for line in result.stdout.splitlines() if line.startswith("tick ")]
    assert ticks and ticks[-1] == "tick 39"
    assert "tick 0" not in ticks  # only what came after attaching
    assert json.dumps(ticks)  # plain text lines


def test_attached_one_off_record_is_consistent(project: Project) -> None:
    """While `run` is attached the row says running with the container's pid; after, exited with its code."""
    argv = project.argv()
    proc = subprocess.Popen(
        [*argv, "run", "--no-deps", "-T", "app", "sh", "-c", "sleep 1; exit 12"],
        cwd=project.directory, env=project.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        row = wait_for(lambda: [r for r in project.containers() if r["state"] == "running"])[0]
        assert row["pid"] and Path(f"/proc/{row['pid']}").exists()
        assert proc.wait(timeout=60) == 12
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    row = project.engine.get_container(row["id"])
    assert (row["state"], row["exit_code"], row["pid"]) == ("exited", 12, None)
    assert not cgroups_exist(project.parent, row["id"])


def cgroups_exist(parent: str, cid: str) -> bool:
    return Path(f"/sys/fs/cgroup/{parent}/{cid}").exists()


# -- terminals and signals ------------------------------------------------------------------------------


class Terminal:
    """The CLI on a pseudo-terminal of 40 rows x 100 columns (its stdin, stdout and stderr)."""

    def __init__(self, project: Project, *args: str) -> None:
        import fcntl
        import struct
        import termios

        self.master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 100, 0, 0))
        self.proc = subprocess.Popen(
            [*project.argv(), *args],
            stdin=slave, stdout=slave, stderr=slave, cwd=project.directory, env=project.env(),
            start_new_session=True,
        )  # fmt: skip
        os.close(slave)
        self.output = b""

    def read_until(self, text: bytes, timeout: float = 30.0) -> None:
        import select

        deadline = time.monotonic() + timeout
        while text not in self.output:
            assert time.monotonic() < deadline, self.output
            ready, _, _ = select.select([self.master], [], [], 0.2)
            if ready:
                with contextlib.suppress(OSError):
                    self.output += os.read(self.master, 65536)

    def write(self, data: bytes) -> None:
        os.write(self.master, data)

    def finish(self, timeout: float = 60.0) -> int:
        """Wait for the CLI, reading what is left; its exit code."""
        import select

        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            assert time.monotonic() < deadline, self.output
            ready, _, _ = select.select([self.master], [], [], 0.2)
            if ready:
                try:
                    self.output += os.read(self.master, 65536)
                except OSError:
                    time.sleep(0.05)
        return self.proc.returncode

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self.master)


@pytest.fixture
def terminal(project: Project) -> Iterator[list[Terminal]]:
    opened: list[Terminal] = []
    try:
        yield opened
    finally:
        for term in opened:
            term.close()


def test_run_on_a_terminal_gets_a_tty_sized_like_ours(project: Project, terminal: list[Terminal]) -> None:
    term = Terminal(
        project,
        "run",
        "--rm",
        "--no-deps",
        "app",
        "sh",
        "-c",
        "tty; sleep 0.3; stty size; read x; echo got:$x; exit 6",
    )
    terminal.append(term)
    term.read_until(b"40 100")
    term.write(b"hello\r")
    assert term.finish() == 6, term.output
    assert b"/dev/pts/0" in term.output
    assert b"got:hello" in term.output
    assert project.containers() == []


def test_ctrl_c_reaches_the_tty_one_off_and_rm_removes_it(project: Project, terminal: list[Terminal]) -> None:
    script = "trap 'echo caught; exit 42' INT; echo ready; while :; do sleep 0.1; done"
    term = Terminal(project, "run", "--rm", "--no-deps", "app", "sh", "-c", script)
    terminal.append(term)
    term.read_until(b"ready")
    term.write(b"\x03")  # raw mode: the byte travels to the container's pty, whose line discipline signals
    assert term.finish() == 42, term.output
    assert b"caught" in term.output
    assert project.containers() == []


def test_sigint_is_proxied_without_a_tty(project: Project) -> None:
    script = "trap 'exit 43' INT; echo ready; while :; do sleep 0.1; done"
    proc = subprocess.Popen(
        [*project.argv(), "run", "--rm", "--no-deps", "-T", "app", "sh", "-c", script],
        cwd=project.directory, env=project.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"ready\n"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 43
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert project.containers() == []


def test_exec_on_a_terminal_gets_a_tty(project: Project, terminal: list[Terminal]) -> None:
    assert project.cli("run", "--rm", "-T", "app", "true").returncode == 0  # db up
    term = Terminal(project, "exec", "db", "sh", "-c", "tty && stty size; exit 2")
    terminal.append(term)
    assert term.finish() == 2, term.output
    assert b"/dev/pts/" in term.output and b"40 100" in term.output


def test_kill_9_of_the_cli_leaves_a_consistent_record(project: Project) -> None:
    """The waiter outlives the CLI: the container's end is recorded with its code; --rm still removes."""
    argv = project.argv()
    kept = subprocess.Popen(
        [*argv, "run", "--no-deps", "-T", "app", "sh", "-c", "sleep 4; exit 21"],
        cwd=project.directory, env=project.env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    removed = subprocess.Popen(
        [*argv, "run", "--rm", "--no-deps", "-T", "app", "sh", "-c", "sleep 4; exit 22"],
        cwd=project.directory, env=project.env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        running = lambda: [r for r in project.containers() if r["state"] == "running"]  # noqa: E731
        wait_for(lambda: len(running()) == 2 or kept.poll() is not None)
        assert len(running()) == 2, kept.stderr.read() if kept.stderr else ""
        kept.kill()
        removed.kill()
        kept.wait()
        removed.wait()
        # the --rm one is gone, the other recorded with its own code
        # both sleep 4 s: under load the kept one's exit may be recorded a moment after the other's removal
        wait_for(lambda: [r["state"] for r in project.containers()] == ["exited"])
        (row,) = project.containers()
        assert (row["state"], row["exit_code"], row["pid"]) == ("exited", 21, None)
        assert not cgroups_exist(project.parent, row["id"])
    finally:
        for proc in (kept, removed):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
