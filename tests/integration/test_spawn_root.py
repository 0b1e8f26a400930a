"""Real containers from the busybox root: isolation, filesystem, user, env, exec and cleanup.

Every container is started through `run`/`started` below, which kill and reap it and remove its
directories even when the test fails; the state root is a temp dir.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from rootfs_fixture import busybox_rootfs

from engine.containers import rootfs, spawn
from engine.containers.spec import ContainerSpec, Mount, Process, Security
from engine.errors import ContainerStartError, UnknownUser
from engine.state.root import StateRoot

pytestmark = pytest.mark.root

if os.geteuid() != 0:
    pytest.skip("needs root", allow_module_level=True)


@pytest.fixture(scope="module")
def layer() -> str:
    return str(busybox_rootfs())


@pytest.fixture
def state(tmp_path: Path) -> Iterator[StateRoot]:
    root = StateRoot.open(tmp_path / "root")
    try:
        yield root
    finally:
        root.close()


def make_spec(layer: str, *args: str, **kw) -> ContainerSpec:  # type: ignore[no-untyped-def]
    process_keys = ("env", "user", "group_add", "working_dir")
    process = Process(args=args, **{k: kw.pop(k) for k in process_keys if k in kw})
    cid = "pyc-test-" + uuid.uuid4().hex[:12]
    return ContainerSpec(id=cid, name=cid, image_id="sha256:test", layer_dirs=(layer,), process=process, **kw)


@contextmanager
def started(spec: ContainerSpec, state: StateRoot) -> Iterator[tuple[int, int]]:
    """Start with stdout+stderr on a pipe; yield (pid, read end); always kill, reap and clean up."""
    r, w = os.pipe()
    null = os.open("/dev/null", os.O_RDONLY)
    pid = None
    try:
        pid = spawn.start(spec, state, stdio=(null, w, w))
        os.close(w)
        w = -1
        yield pid, r
    finally:
        if pid is not None:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
        for fd in (r, w, null):
            if fd >= 0:
                os.close(fd)
        spawn.cleanup(state, spec.id)


def read_all(fd: int) -> str:
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return b"".join(chunks).decode()


def run(spec: ContainerSpec, state: StateRoot) -> tuple[int, str]:
    """Run to completion: (exit code, output)."""
    with started(spec, state) as (pid, r):
        out = read_all(r)
        code = spawn.wait(pid)
        return code, out


def test_pid1_is_the_command_and_only_own_processes(layer, state):
    spec = make_spec(layer, "/bin/sh", "-c", "echo $$; cat /proc/1/cmdline | tr '\\0' ' '; echo; ls /proc")
    code, out = run(spec, state)
    lines = out.splitlines()
    assert code == 0
    assert lines[0] == "1"
    assert lines[1].startswith("/bin/sh -c echo $$")
    pids = sorted(int(x) for x in lines[2].split() if x.isdigit()) if len(lines) == 3 else None
    pids = pids or sorted(int(x) for x in " ".join(lines[2:]).split() if x.isdigit())
    assert pids[0] == 1 and len(pids) <= 3  # sh, ls (and maybe tr already gone)


def test_the_container_gets_only_stdin_stdout_stderr(layer, state):
    """Every other descriptor of the starting process (the supervisor's pipes and sockets, here an
    inheritable pipe) is closed at exec: `ls` sees only 0-2 and the one it opened to list them."""
    leak_r, leak_w = os.pipe()
    os.set_inheritable(leak_r, True)
    os.set_inheritable(leak_w, True)
    try:
        code, out = run(make_spec(layer, "/bin/ls", "/proc/self/fd"), state)
    finally:
        os.close(leak_r)
        os.close(leak_w)
    assert code == 0
    assert sorted(int(fd) for fd in out.split()) == [0, 1, 2, 3]


def test_hostname_domainname_and_etc_files(layer, state):
    spec = make_spec(
        layer,
        "/bin/sh",
        "-c",
        "hostname; cat /proc/sys/kernel/domainname; cat /etc/hostname; cat /etc/hosts; cat /etc/resolv.conf",
        hostname="pyc-test-host",
        domainname="example.test",
        extra_hosts=(("db.local", "10.1.2.3"),),
        dns=("9.9.9.9",),
    )
    code, out = run(spec, state)
    assert code == 0
    lines = out.splitlines()
    assert lines[:3] == ["pyc-test-host", "example.test", "pyc-test-host"]
    assert "10.1.2.3\tdb.local" in out
    assert "nameserver 9.9.9.9" in out and os.uname().nodename != "pyc-test-host"


def test_no_host_mounts_root_is_overlay_and_writes_go_to_upper(layer, state):
    marker = f"pyc-test-{uuid.uuid4().hex[:6]}"
    spec = make_spec(layer, "/bin/sh", "-c", f"echo data > /{marker}; cat /proc/mounts")
    with started(spec, state) as (pid, r):
        out = read_all(r)
        assert spawn.wait(pid) == 0
        upper = rootfs.container_paths(state, spec.id).upper
        assert (upper / marker).read_text() == "data\n"
    assert not (Path(layer) / marker).exists()
    mounts = [line.split() for line in out.splitlines()]
    assert mounts[0][:3] == ["overlay", "/", "overlay"]
    targets = {m[1] for m in mounts}
    assert {"/proc", "/sys", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/etc/hosts"} <= targets
    assert not any(t.startswith(("/work", "/var/lib", "/boot", "/home")) for t in targets)
    assert str(state.path) not in out.replace("upperdir=", "").split("lowerdir")[0]


def test_dev_masked_and_readonly_paths(layer, state):
    script = (
        "ls /dev | tr '\\n' ' '; echo; wc -c < /proc/keys; "
        "(echo 1 > /proc/sys/kernel/ns_last_pid) 2>/dev/null && echo sys-writable || echo sys-ro; "
        "(touch /sys/pyc) 2>/dev/null && echo sysfs-writable || echo sysfs-ro; "
        "grep ' /dev/shm ' /proc/mounts"
    )
    spec = make_spec(layer, "/bin/sh", "-c", script, shm_size=8 * 1024 * 1024)
    code, out = run(spec, state)
    lines = out.splitlines()
    assert code == 0
    for name in ("null", "zero", "full", "random", "urandom", "tty", "ptmx", "pts", "shm", "mqueue", "fd"):
        assert name in lines[0].split()
    assert lines[1].strip() == "0"
    assert lines[2] == "sys-ro" and lines[3] == "sysfs-ro"
    assert "size=8192k" in lines[4]


def test_user_workdir_env(layer, state):
    spec = make_spec(
        layer,
        "/bin/sh",
        "-c",
        "id -u; id -g; id -G; pwd; echo $FOO; echo $HOME; echo $PATH",
        user="app",
        group_add=("root",),
        working_dir="/srv/pyc/work",
        env=(("FOO", "bar baz"),),
    )
    code, out = run(spec, state)
    assert code == 0
    uid, gid, groups, cwd, foo, home, path = out.splitlines()
    assert (uid, gid, cwd, foo, home) == ("1000", "1000", "/srv/pyc/work", "bar baz", "/home/app")
    assert set(groups.split()) == {"1000", "50", "0"}
    assert path.startswith("/usr/local/sbin")


@pytest.mark.parametrize("cap_drop", [("SETUID", "SETGID"), ("ALL",)])
def test_non_root_user_starts_without_setuid_capabilities(layer, state, cap_drop):
    """runc's order: bounding set cut, then the user switch under PR_SET_KEEPCAPS, then capset."""
    spec = make_spec(
        layer,
        "/bin/sh",
        "-c",
        "id -u; grep CapEff /proc/self/status",
        user="app",
        security=Security(cap_drop=cap_drop),
    )
    code, out = run(spec, state)
    assert code == 0, out
    uid, capeff = out.splitlines()
    assert uid == "1000"
    assert capeff.split() == ["CapEff:", "0000000000000000"]


def test_mounts_bind_readonly_and_tmpfs_and_readonly_root(layer, state, tmp_path):
    host_dir = tmp_path / "pyc-test-bind"
    host_dir.mkdir()
    (host_dir / "hello").write_text("from host\n")
    script = (
        "cat /data/hello; (echo x > /data/new) 2>/dev/null && echo data-rw || echo data-ro; "
        "echo t > /scratch/t && cat /scratch/t; (touch /rootfile) 2>/dev/null && echo root-rw || echo root-ro"
    )
    mounts = (
        Mount(type="bind", target="/data", source=str(host_dir), read_only=True),
        Mount(type="tmpfs", target="/scratch", options=("size=1m", "mode=1777")),
    )
    spec = make_spec(layer, "/bin/sh", "-c", script, mounts=mounts, security=Security(read_only_rootfs=True))
    code, out = run(spec, state)
    assert code == 0
    assert out.splitlines() == ["from host", "data-ro", "t", "root-ro"]
    assert not (host_dir / "new").exists()


def test_exec_in_joins_namespaces_and_filesystem(layer, state):
    spec = make_spec(
        layer, "/bin/sh", "-c", "echo ready > /tmp/mark; echo up; exec sleep 30", hostname="pyc-x"
    )
    with started(spec, state) as (pid, r):
        assert os.read(r, 3) == b"up\n"
        er, ew = os.pipe()
        try:
            epid = spawn.exec_in(
                pid,
                ["/bin/sh", "-c", "cat /tmp/mark; cat /proc/1/cmdline; echo; hostname; id -u; pwd"],
                user="app",
                workdir="/tmp",
                stdio=(0, ew, ew),
            )
            os.close(ew)
            ew = -1
            out = read_all(er)
            assert spawn.wait(epid) == 0
        finally:
            os.close(er)
            if ew >= 0:
                os.close(ew)
        assert out.splitlines() == ["ready", "sleep\x0030\x00", "pyc-x", "1000", "/tmp"]


def test_exit_code_and_signal(layer, state):
    assert run(make_spec(layer, "/bin/sh", "-c", "exit 7"), state)[0] == 7
    with started(make_spec(layer, "/bin/sh", "-c", "kill -9 $$; echo survived; exec sleep 30"), state) as (
        pid,
        r,
    ):
        assert os.read(r, 9) == b"survived\n"  # the kernel shields a PID 1 from signals of its own namespace
        os.kill(pid, signal.SIGKILL)
        assert spawn.wait(pid) == 137


def test_start_errors_are_engine_errors_and_leave_nothing(layer, state):
    spec = make_spec(layer, "/bin/true", user="nobody")
    with pytest.raises(UnknownUser):
        spawn.start(spec, state, stdio=(0, 1, 2))
    spawn.cleanup(state, spec.id)
    spec = make_spec(layer, "/no/such/binary")
    with pytest.raises(ContainerStartError, match="exec /no/such/binary"):
        spawn.start(spec, state, stdio=(0, 1, 2))
    spawn.cleanup(state, spec.id)
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)


def _start_as_sibling(spec: ContainerSpec, state: StateRoot) -> tuple[int, str]:
    """Fork a starter that calls spawn.start(sibling=True) and exits; returns (the container's pid or -1,
    what the starter said). The container, if any, is our child: CLONE_PARENT."""
    r, w = os.pipe()
    starter = os.fork()
    if starter == 0:
        os.close(r)
        try:
            out = str(spawn.start(spec, state, stdio=(0, 1, 2), sibling=True))
        except BaseException as exc:
            out = f"error {type(exc).__name__}: {exc}"
        os.write(w, out.encode())
        os._exit(0)
    os.close(w)
    text = read_all(r)
    assert os.waitpid(starter, 0)[1] == 0
    return (int(text) if text.isdigit() else -1), text


def test_a_sibling_start_makes_the_container_our_parents_child(layer, state):
    """How the supervisor's spawn workers hand containers to the keeper: the starter's parent (here, this
    test) reaps the container; a failed start leaves its reaping to the parent too."""
    spec = make_spec(layer, "/bin/sh", "-c", "exit 5")
    try:
        pid, text = _start_as_sibling(spec, state)
        assert pid > 0, text
        _, status = os.waitpid(pid, 0)  # ours to reap (ChildProcessError if it were the starter's)
        assert os.waitstatus_to_exitcode(status) == 5
    finally:
        spawn.cleanup(state, spec.id)
    spec = make_spec(layer, "/no/such/binary")
    try:
        pid, text = _start_as_sibling(spec, state)
        assert pid == -1 and "exec /no/such/binary" in text
        _, status = os.waitpid(-1, 0)  # the failed child was ours to reap, not the starter's
        assert os.waitstatus_to_exitcode(status) == spawn.CHILD_FAILED
    finally:
        spawn.cleanup(state, spec.id)
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)


def test_cleanup_leaves_no_mount_or_dir(layer, state):
    spec = make_spec(layer, "/bin/true")
    code, _ = run(spec, state)
    assert code == 0
    base = rootfs.container_paths(state, spec.id).base
    assert not base.exists()
    assert str(base) not in Path("/proc/self/mounts").read_text()
    time.sleep(0)


def test_security_plan_applied(layer, state):
    script = "grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status"
    script += "; cat /proc/sys/net/ipv4/ip_forward"
    sec = Security(cap_drop=("NET_RAW",), no_new_privileges=True, sysctls=(("net.ipv4.ip_forward", "1"),))
    code, out = run(make_spec(layer, "/bin/sh", "-c", script, security=sec), state)
    assert code == 0
    fields = dict(line.split(":\t") for line in out.splitlines()[:4])
    docker_default = 0xA80425FB
    assert int(fields["CapEff"], 16) == docker_default & ~(1 << 13)  # CAP_NET_RAW is 13
    assert fields["CapBnd"] == fields["CapEff"]
    assert fields["NoNewPrivs"] == "1" and fields["Seccomp"] == "2"
    assert out.splitlines()[4] == "1"


def test_volume_with_subpath_and_cgroup_hook(layer, state, tmp_path):
    from engine.containers.cgroups import Cgroup, remove_parent

    parent = f"pyc-test-{os.getpid()}"

    volume = tmp_path / "pyc-test-vol"
    (volume / "sub").mkdir(parents=True)
    (volume / "sub/f").write_text("vol\n")
    mounts = (Mount(type="volume", target="/v", source="pyc-test-vol", subpath="sub"),)
    spec = make_spec(layer, "/bin/sh", "-c", "cat /v/f; echo w > /v/g; cat /proc/self/cgroup", mounts=mounts)
    group = Cgroup.create(spec.id, parent=parent)
    try:
        r, w = os.pipe()
        try:
            volumes = {"pyc-test-vol": str(volume)}
            pid = spawn.start(spec, state, stdio=(0, w, w), volumes=volumes, cgroup=group)
            os.close(w)
            w = -1
            out = read_all(r)
            assert spawn.wait(pid) == 0
        finally:
            os.close(r)
            if w >= 0:
                os.close(w)
            spawn.cleanup(state, spec.id)
    finally:
        group.remove()
        remove_parent(parent)
    assert out.splitlines()[0] == "vol"
    assert (volume / "sub/g").read_text() == "w\n"
    assert spec.id in out


def test_resolve_in_keeps_symlinks_inside_the_root(tmp_path):
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/evil").symlink_to("/../../../../etc")
    (tmp_path / "up").symlink_to("../../..")
    assert rootfs.resolve_in(str(tmp_path), "/etc/evil/passwd") == str(tmp_path / "etc/passwd")
    assert rootfs.resolve_in(str(tmp_path), "/up/x") == str(tmp_path / "x")
    (tmp_path / "loop").symlink_to("loop")
    with pytest.raises(OSError):
        rootfs.resolve_in(str(tmp_path), "/loop/x")


# -- init, tty, volumes with driver_opts ------------------------------------------------------------------


@contextmanager
def started_with(spec: ContainerSpec, state: StateRoot, volumes=None) -> Iterator[tuple[int, int]]:  # type: ignore[no-untyped-def]
    """Like `started`, with a `volumes` mapping for spawn.start."""
    r, w = os.pipe()
    pid = None
    try:
        pid = spawn.start(spec, state, stdio=(0, w, w), volumes=volumes)
        os.close(w)
        w = -1
        yield pid, r
    finally:
        _kill_reap(pid)
        for fd in (r, w):
            if fd >= 0:
                os.close(fd)
        spawn.cleanup(state, spec.id)


def _kill_reap(pid: int | None) -> None:
    if pid is None:
        return
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def _read_line(fd: int) -> str:
    data = b""
    while not data.endswith(b"\n"):
        chunk = os.read(fd, 1)
        if not chunk:
            break
        data += chunk
    return data.decode()


def test_init_is_pid1_reaps_zombies_and_forwards_sigterm(layer, state):
    script = (
        "cat /proc/1/cmdline | tr '\\0' ' '; echo; echo $$;"
        " (sleep 0.2 &) ; sleep 0.6;"  # the orphaned sleep is reparented to PID 1, which must reap it
        " echo zombies=$(grep -l '^State:.*Z' /proc/[0-9]*/status 2>/dev/null | wc -l);"
        " trap 'echo got-term; exit 7' TERM; echo ready; while :; do sleep 0.05; done"
    )
    spec = make_spec(layer, "/bin/sh", "-c", script)
    spec = dataclasses.replace(spec, process=dataclasses.replace(spec.process, init=True))
    with started(spec, state) as (pid, r):
        lines = [_read_line(r).strip() for _ in range(4)]
        assert lines[3] == "ready"
        os.kill(pid, signal.SIGTERM)
        rest = read_all(r)
        code = spawn.wait(pid)
    assert lines[0].startswith("/dev/init -- /bin/sh -c ")
    assert int(lines[1]) >= 2
    assert lines[2] == "zombies=0"
    assert "got-term" in rest
    assert code == 7


def test_init_binary_is_read_only(layer, state):
    spec = make_spec(
        layer, "/bin/sh", "-c", "grep ' /dev/init ' /proc/mounts; echo x > /dev/init || echo refused"
    )
    spec = dataclasses.replace(spec, process=dataclasses.replace(spec.process, init=True))
    code, out = run(spec, state)
    assert code == 0
    assert " ro," in out and "refused" in out


def test_start_with_tty_gives_a_pty_of_its_own(layer, state):
    script = "tty; [ -t 0 ] && [ -t 1 ] && echo is-tty; echo term=$TERM; stat -c %t:%T /dev/console"
    spec = make_spec(layer, "/bin/sh", "-c", script)
    spec = dataclasses.replace(spec, process=dataclasses.replace(spec.process, tty=True))
    pid = master = None
    try:
        pid, master = spawn.start_with_tty(spec, state)
        chunks = []
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO once the last slave fd is closed
                break
            if not chunk:
                break
            chunks.append(chunk)
        code = spawn.wait(pid)
        pid = None
    finally:
        _kill_reap(pid)
        if master is not None:
            os.close(master)
        spawn.cleanup(state, spec.id)
    out = b"".join(chunks).decode().replace("\r\n", "\n").splitlines()
    assert code == 0
    assert out[0] == "/dev/pts/0"
    assert out[1:3] == ["is-tty", "term=xterm"]
    assert out[3] == "88:0"  # /dev/console is the pty slave (major 136 = 0x88, minor 0)


def test_tmpfs_volume_from_driver_opts(layer, state):
    mounts = (Mount(type="volume", target="/t", source="pyc-test-tmpvol"),)
    spec = make_spec(layer, "/bin/sh", "-c", "stat -c %a /t; grep ' /t ' /proc/mounts", mounts=mounts)
    volumes = {"pyc-test-tmpvol": ("tmpfs", "tmpfs", ("size=1m", "mode=1770"))}
    with started_with(spec, state, volumes) as (pid, r):
        out = read_all(r)
        assert spawn.wait(pid) == 0
    lines = out.splitlines()
    assert lines[0] == "1770"
    assert lines[1].split()[2] == "tmpfs" and "size=1024k" in lines[1]


def test_bind_volume_from_driver_opts_read_only(layer, state, tmp_path):
    device = tmp_path / "pyc-test-dev"
    device.mkdir()
    (device / "f").write_text("dev\n")
    mounts = (Mount(type="volume", target="/b", source="pyc-test-bindvol"),)
    spec = make_spec(layer, "/bin/sh", "-c", "cat /b/f; echo x > /b/g || echo refused", mounts=mounts)
    volumes = {"pyc-test-bindvol": ("bind", str(device), ("ro",))}
    with started_with(spec, state, volumes) as (pid, r):
        out = read_all(r)
        assert spawn.wait(pid) == 0
    assert out.splitlines()[0] == "dev"
    assert "refused" in out
    assert not (device / "g").exists()


def test_start_with_tty_in_a_fresh_interpreter(layer, tmp_path):
    """No import may happen in the child after pivot_root: a fresh Python (no termios loaded by pytest)."""
    import subprocess
    import sys

    cid = "pyc-test-" + uuid.uuid4().hex[:12]
    code = f"""
import os
from engine.containers import spawn
from engine.containers.spec import ContainerSpec, Process
from engine.state.root import StateRoot
root = StateRoot.open({str(tmp_path / "root")!r})
spec = ContainerSpec(id={cid!r}, name={cid!r}, image_id="x", layer_dirs=({layer!r},),
                     process=Process(args=("tty",), tty=True))
try:
    pid, master = spawn.start_with_tty(spec, root)
    try:
        print(os.read(master, 100).decode().strip(), spawn.wait(pid))
    finally:
        os.close(master)
finally:
    spawn.cleanup(root, {cid!r})
    root.close()
"""
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).parents[2],
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["/dev/pts/0", "0"]
