"""Process security on the real kernel: each test forks a child, applies settings to it, and reports back.

The child never returns into pytest: it writes a JSON result to a pipe and `_exit`s; the parent reaps it
(and kills it on timeout), so no process outlives a test. Nothing here changes the host: capabilities,
seccomp, rlimits and no_new_privs are per process, and the sysctl test writes in a private IPC namespace.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import select
import signal
import time
import traceback
from collections.abc import Callable
from typing import Any

import pytest

from engine.containers import capabilities, seccomp, security
from engine.containers.spec import Security

pytestmark = pytest.mark.root

LIBC = ctypes.CDLL(None, use_errno=True)
LIBC.syscall.restype = ctypes.c_long
NR = seccomp.native_arch().syscalls
CLONE_NEWNS = 0x20000
CLONE_NEWIPC = 0x08000000
DEFAULT_MASK = capabilities.caps_mask(capabilities.DEFAULT_CAPS)


def raw_syscall(name: str, *args: int) -> int:
    """The errno of a raw syscall, 0 when it succeeded."""
    result = LIBC.syscall(ctypes.c_long(NR[name]), *(ctypes.c_long(a) for a in args))
    return ctypes.get_errno() if result == -1 else 0


def status() -> dict[str, str]:
    """/proc/self/status as a dict."""
    with open("/proc/self/status") as handle:
        return dict(line.rstrip("\n").split(":\t", 1) for line in handle if ":\t" in line)


def in_child(body: Callable[[], Any], timeout: float = 10.0) -> Any:
    """Run `body` in a forked child and return what it returned (or raise what it raised, as text)."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read_fd)
            try:
                payload = {"ok": body()}
            except BaseException as exc:
                payload = {"error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()}
            os.write(write_fd, json.dumps(payload).encode())
        finally:
            os._exit(0)
    os.close(write_fd)
    chunks = []
    deadline = time.monotonic() + timeout
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([read_fd], [], [], remaining)[0]:
                raise TimeoutError("child did not answer")
            chunk = os.read(read_fd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(read_fd)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        os.waitpid(pid, 0)
    if not chunks:
        raise AssertionError("child died without a result (killed by seccomp?)")
    payload = json.loads(b"".join(chunks))
    if "error" in payload:
        raise AssertionError(payload["error"] + "\n" + payload["trace"])
    return payload["ok"]


def test_apply_default_caps_sets_bounding_effective_and_clears_the_rest() -> None:
    def body() -> dict[str, str]:
        capabilities.apply_caps(capabilities.DEFAULT_CAPS)
        return status()

    st = in_child(body)
    assert int(st["CapEff"], 16) == DEFAULT_MASK == 0xA80425FB
    assert int(st["CapPrm"], 16) == DEFAULT_MASK
    assert int(st["CapBnd"], 16) == DEFAULT_MASK
    assert int(st["CapInh"], 16) == 0 and int(st["CapAmb"], 16) == 0


def test_dropped_capability_is_really_gone() -> None:
    def body() -> dict[str, Any]:
        capabilities.apply_caps(capabilities.effective_caps(cap_drop=["CHOWN"]))
        path = f"/tmp/pyc-test-chown-{os.getpid()}"
        with open(path, "w"):
            pass
        try:
            os.chown(path, 12345, 12345)
            outcome = "changed"
        except PermissionError:
            outcome = "EPERM"
        finally:
            os.unlink(path)
        return {"eff": status()["CapEff"], "chown": outcome}

    result = in_child(body)
    assert int(result["eff"], 16) == DEFAULT_MASK & ~1
    assert result["chown"] == "EPERM"


def test_non_root_user_gets_no_effective_caps_after_exec() -> None:
    """Docker: a non-root process keeps the bounding set but has no effective capabilities."""

    def body() -> None:
        capabilities.apply_caps(capabilities.DEFAULT_CAPS)
        os.setgroups([])
        os.setgid(65534)
        os.setuid(65534)
        os.execv("/bin/sh", ["sh", "-c", "grep -E '^Cap(Eff|Prm|Bnd)' /proc/self/status"])

    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.dup2(write_fd, 1)
            body()
        finally:
            os._exit(127)
    os.close(write_fd)
    try:
        with os.fdopen(read_fd) as out:
            text = out.read()
    finally:
        _, code = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(code) == 0
    values = dict(line.split(":\t") for line in text.split("\n") if line)
    assert int(values["CapEff"], 16) == 0 and int(values["CapPrm"], 16) == 0
    assert int(values["CapBnd"], 16) == DEFAULT_MASK


def test_user_switch_inside_apply_plan_works_without_setuid_cap() -> None:
    """cap_drop: [ALL] with a non-root user: the switch happens before the capabilities go (runc's way)."""

    def switch() -> None:
        os.setgroups([])
        os.setgid(65534)
        os.setuid(65534)

    def body() -> dict[str, Any]:
        plan = security.plan_security(Security(cap_drop=("ALL",), no_new_privileges=True))
        security.apply_plan(plan, switch_user=switch)
        return {"uid": os.getuid(), "status": status()}

    r = in_child(body)
    assert r["uid"] == 65534
    assert int(r["status"]["CapEff"], 16) == 0 and int(r["status"]["CapBnd"], 16) == 0
    assert r["status"]["Seccomp"] == "2"


def test_default_seccomp_denies_with_eperm_and_allows_ordinary_syscalls() -> None:
    def body() -> dict[str, Any]:
        seccomp.set_no_new_privs()
        seccomp.install(seccomp.filter_for(None, capabilities.DEFAULT_CAPS))
        results = {
            "unshare": raw_syscall("unshare", CLONE_NEWNS),
            "keyctl": raw_syscall("keyctl", 0, 0),
            "kexec_load": raw_syscall("kexec_load", 0, 0, 0, 0),
            "clone3": raw_syscall("clone3", 0, 0),
            "personality_bad": raw_syscall("personality", 0x0400000),
            "getpid": raw_syscall("getpid"),
        }
        path = f"/tmp/pyc-test-seccomp-{os.getpid()}"
        with open(path, "w") as handle:
            handle.write("ok")
        os.unlink(path)
        child = os.fork()  # clone without namespace flags is allowed
        if child == 0:
            os._exit(7)
        results["fork_exit"] = os.waitstatus_to_exitcode(os.waitpid(child, 0)[1])
        results["seccomp_mode"] = status()["Seccomp"]
        return results

    r = in_child(body)
    assert r["unshare"] == errno.EPERM
    assert r["keyctl"] == errno.EPERM
    assert r["kexec_load"] == errno.EPERM
    assert r["personality_bad"] == errno.EPERM
    assert r["clone3"] == errno.ENOSYS
    assert r["getpid"] == 0 and r["fork_exit"] == 7
    assert r["seccomp_mode"] == "2"


def test_unconfined_leaves_syscalls_alone() -> None:
    def body() -> dict[str, Any]:
        plan = security.plan_security(Security(seccomp_profile="unconfined"))
        security.apply_plan(plan)
        return {"seccomp": status()["Seccomp"], "keyctl": raw_syscall("keyctl", 0, 0)}

    r = in_child(body)
    assert r["seccomp"] == "0"
    assert r["keyctl"] != errno.EPERM  # the kernel answers for itself (EINVAL/ENOKEY...), not a filter


def test_custom_json_profile(tmp_path) -> None:
    profile = tmp_path / "pyc-test-profile.json"
    profile.write_text(
        json.dumps(
            {
                "defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [
                    {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EACCES},
                    {
                        "names": ["kill"],
                        "action": "SCMP_ACT_ERRNO",
                        "args": [{"index": 1, "value": 0, "op": "SCMP_CMP_EQ"}],
                    },
                ],
            }
        )
    )

    def body() -> dict[str, Any]:
        security.apply_plan(security.plan_security(Security(seccomp_profile=str(profile))))
        out: dict[str, Any] = {}
        try:
            os.mkdir(f"/tmp/pyc-test-mkdir-{os.getpid()}")
            out["mkdir"] = "made"
            os.rmdir(f"/tmp/pyc-test-mkdir-{os.getpid()}")
        except PermissionError as exc:
            out["mkdir"] = exc.errno
        out["kill0"] = raw_syscall("kill", os.getpid(), 0)
        out["kill_cont"] = raw_syscall("kill", os.getpid(), int(signal.SIGCONT))
        out["personality"] = raw_syscall("personality", 0x0400000)  # the default profile would deny it
        return out

    r = in_child(body)
    assert r == {"mkdir": errno.EACCES, "kill0": errno.EPERM, "kill_cont": 0, "personality": 0}


def test_ulimits_oom_score_and_no_new_privs() -> None:
    assert status()["NoNewPrivs"] == "0"

    def body() -> dict[str, Any]:
        import resource

        plan = security.plan_security(
            Security(ulimits=(("nofile", 100, 200),), oom_score_adj=555, no_new_privileges=True)
        )
        security.apply_plan(plan)
        with open("/proc/self/oom_score_adj") as handle:
            oom = int(handle.read())
        return {
            "nofile": resource.getrlimit(resource.RLIMIT_NOFILE),
            "oom": oom,
            "nnp": seccomp.get_no_new_privs(),
            "status": status(),
        }

    r = in_child(body)
    assert r["nofile"] == [100, 200]
    assert r["oom"] == 555
    assert r["nnp"] is True and r["status"]["NoNewPrivs"] == "1"
    assert r["status"]["Seccomp"] == "2"
    assert int(r["status"]["CapEff"], 16) == DEFAULT_MASK


def test_default_plan_without_no_new_privs_installs_seccomp_while_privileged() -> None:
    """Without no_new_privs the filter needs CAP_SYS_ADMIN, so it goes in before the capability drop."""

    def body() -> dict[str, str]:
        security.apply_process_security(Security())
        return status()

    st = in_child(body)
    assert st["NoNewPrivs"] == "0" and st["Seccomp"] == "2"
    assert int(st["CapEff"], 16) == DEFAULT_MASK


def test_sysctl_written_in_the_containers_ipc_namespace() -> None:
    with open("/proc/sys/kernel/shmmni") as handle:
        host_value = handle.read().strip()

    def body() -> str:
        if LIBC.unshare(CLONE_NEWIPC) != 0:
            raise OSError(ctypes.get_errno(), "unshare")
        checked = security.check_sysctls([("kernel.shmmni", "1234")])
        security.apply_sysctls(checked)
        with open("/proc/sys/kernel/shmmni") as handle:
            return handle.read().strip()

    assert in_child(body) == "1234"
    with open("/proc/sys/kernel/shmmni") as handle:
        assert handle.read().strip() == host_value


def test_bpf_is_fast_enough() -> None:
    """Compiling the default filter happens per container start: keep it small."""
    start = time.perf_counter()
    for _ in range(20):
        seccomp.filter_for(None, capabilities.DEFAULT_CAPS)
    per_call_ms = (time.perf_counter() - start) / 20 * 1000
    assert per_call_ms < 20, per_call_ms


def test_privileged_gets_every_capability_this_process_can_hand_on() -> None:
    """`privileged` on a host whose bounding set withholds some capabilities (this VM lacks
    CAP_SYS_RESOURCE) must still start: it gets exactly the caller's bounding set, not an EPERM."""
    bounding = int(status()["CapBnd"], 16)

    def body() -> dict[str, str]:
        security.apply_process_security(Security(privileged=True))
        return status()

    st = in_child(body)
    assert int(st["CapEff"], 16) == bounding and int(st["CapBnd"], 16) == bounding
    assert capabilities.caps_mask(capabilities.bounding_caps()) == bounding


def test_oom_score_adj_is_reset_to_zero_unless_the_spec_sets_one() -> None:
    """Exec'd processes and probes must not keep the supervisor's score (the spawn helper's is reset too)."""

    def body(wanted: int | None) -> str:
        security.apply_oom_score_adj(200)  # what a process may inherit; raising needs no privilege
        security.apply_process_security(Security(oom_score_adj=wanted))
        with open("/proc/self/oom_score_adj") as handle:
            return handle.read().strip()

    assert in_child(lambda: body(None)) == "0"
    assert in_child(lambda: body(300)) == "300"
