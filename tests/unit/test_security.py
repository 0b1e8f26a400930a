"""Capability rules, the seccomp compiler (checked by emulating the BPF it emits) and security planning."""

from __future__ import annotations

import json
import random
import resource
import struct

import pytest

from engine.containers import capabilities as caps
from engine.containers import seccomp, security
from engine.containers.spec import Security
from engine.errors import SecurityError

X86 = seccomp.X86_64
NR = X86.syscalls
EPERM = seccomp.RET_ERRNO | 1
ENOSYS = seccomp.RET_ERRNO | 38
ALLOW = seccomp.RET_ALLOW

# --- capabilities ---------------------------------------------------------------------------------------


def test_capability_table_is_complete_and_dense() -> None:
    assert sorted(caps.CAPABILITIES.values()) == list(range(41))
    assert caps.CAPABILITIES["CAP_CHECKPOINT_RESTORE"] == 40
    assert caps.CAPABILITIES["CAP_SYS_ADMIN"] == 21
    assert caps.CAP_NAMES[13] == "CAP_NET_RAW"


def test_default_set_matches_docker_capeff() -> None:
    # `docker run busybox grep CapEff /proc/self/status` prints 00000000a80425fb
    assert len(caps.DEFAULT_CAPS) == 14
    assert caps.caps_mask(caps.DEFAULT_CAPS) == 0xA80425FB
    assert caps.mask_caps(0xA80425FB) == caps.DEFAULT_CAPS


@pytest.mark.parametrize("name", ["net_admin", "NET_ADMIN", "CAP_NET_ADMIN", "cap_Net_Admin", " NET_ADMIN "])
def test_capability_names_are_case_and_prefix_insensitive(name: str) -> None:
    assert caps.normalize_cap(name) == "CAP_NET_ADMIN"


def test_unknown_capability_is_refused() -> None:
    with pytest.raises(SecurityError, match="unknown capability"):
        caps.effective_caps(cap_add=["NET_WIZARD"])
    with pytest.raises(SecurityError):
        caps.effective_caps(cap_drop=["CAP_"], privileged=True)


def test_effective_caps_follow_docker_rules() -> None:
    eff = caps.effective_caps
    assert eff() == caps.DEFAULT_CAPS
    assert eff(["sys_admin"]) == caps.DEFAULT_CAPS | {"CAP_SYS_ADMIN"}
    assert eff(cap_drop=["NET_RAW", "mknod"]) == caps.DEFAULT_CAPS - {"CAP_NET_RAW", "CAP_MKNOD"}
    assert eff(["ALL"], ["sys_admin"]) == caps.ALL_CAPS - {"CAP_SYS_ADMIN"}
    assert eff(["chown"], ["all"]) == {"CAP_CHOWN"}
    assert eff(cap_drop=["ALL"]) == frozenset()
    assert eff(cap_drop=["ALL"], privileged=True) == caps.ALL_CAPS
    # moby: drops come off the default set, then adds go on, so an add of the same name wins
    assert "CAP_KILL" in eff(["KILL"], ["KILL"])
    assert eff(["ALL"], ["ALL"]) == caps.ALL_CAPS


# --- seccomp: a reference interpreter to compare the BPF against --------------------------------------


def _check_holds(check: seccomp.ArgCheck, arg: int) -> bool:
    arg &= (1 << 64) - 1
    return {
        "SCMP_CMP_EQ": arg == check.value,
        "SCMP_CMP_NE": arg != check.value,
        "SCMP_CMP_LT": arg < check.value,
        "SCMP_CMP_LE": arg <= check.value,
        "SCMP_CMP_GT": arg > check.value,
        "SCMP_CMP_GE": arg >= check.value,
        "SCMP_CMP_MASKED_EQ": arg & check.value == check.value_two,
    }[check.op]


def _reference(default: int, rules: list[seccomp.Rule], arch: seccomp.Arch, nr: int, args: list[int]) -> int:
    """What the profile means, computed directly: first rule naming the syscall whose checks hold."""
    names = {number: name for name, number in arch.syscalls.items()}
    if nr > max(names):
        return default if default == ALLOW else ENOSYS
    matching = [rule for rule in rules if names.get(nr) in rule.names]
    for rule in matching:
        if all(_check_holds(c, args[c.index]) for c in rule.checks):
            return rule.action
        if not rule.checks:
            return rule.action
    return default


def _structurally_sound(program: tuple[tuple[int, int, int, int], ...]) -> None:
    """Every jump lands inside the program and the last instruction returns (the kernel's checks)."""
    known = {seccomp.LD_W_ABS, seccomp.ALU_AND_K, seccomp.JMP_JA, seccomp.JMP_JEQ_K}
    known |= {seccomp.JMP_JGT_K, seccomp.JMP_JGE_K, seccomp.RET_K}
    assert 0 < len(program) <= seccomp.MAX_INSNS
    assert program[-1][0] == seccomp.RET_K
    for pc, (code, jt, jf, k) in enumerate(program):
        assert code in known
        if code == seccomp.JMP_JA:
            assert pc + 1 + k < len(program)
        elif code in (seccomp.JMP_JEQ_K, seccomp.JMP_JGT_K, seccomp.JMP_JGE_K):
            assert pc + 1 + max(jt, jf) < len(program)
        elif code == seccomp.LD_W_ABS:
            assert k % 4 == 0 and k < 64


def _default(caps_held=caps.DEFAULT_CAPS, kernel="6.18.0"):
    profile = seccomp.default_profile()
    default, rules, _ = seccomp.parse_profile(profile, caps=caps_held, arch=X86, kernel=kernel)
    filt = seccomp.compile_profile(profile, caps=caps_held, arch=X86, kernel=kernel)
    return default, rules, filt


def _run(filt: seccomp.Filter, name: str | int, *args: int, arch: int = X86.audit) -> int:
    nr = NR[name] if isinstance(name, str) else name
    return seccomp.evaluate(filt.program, nr, arch, list(args))


def test_default_program_starts_with_the_arch_check_and_is_sound() -> None:
    _, _, filt = _default()
    _structurally_sound(filt.program)
    assert filt.program[0] == (seccomp.LD_W_ABS, 0, 0, seccomp.OFFSET_ARCH)
    assert filt.program[1] == (seccomp.JMP_JEQ_K, 1, 0, 0xC000003E)
    assert filt.program[2] == (seccomp.RET_K, 0, 0, seccomp.RET_KILL_PROCESS)
    assert len(filt.to_bytes()) == 8 * len(filt.program)
    assert struct.unpack_from("=HBBI", filt.to_bytes(), 8) == filt.program[1]


@pytest.mark.parametrize(
    "name",
    [
        "kexec_load",
        "kexec_file_load",
        "init_module",
        "finit_module",
        "delete_module",
        "open_by_handle_at",
        "keyctl",
        "add_key",
        "request_key",
        "mount",
        "umount2",
        "pivot_root",
        "swapon",
        "swapoff",
        "reboot",
        "acct",
        "bpf",
        "perf_event_open",
        "userfaultfd",
        "unshare",
        "setns",
        "iopl",
        "settimeofday",
        "syslog",
    ],
)
def test_default_denies_with_eperm(name: str) -> None:
    _, _, filt = _default()
    assert _run(filt, name) == EPERM


@pytest.mark.parametrize(
    "name", ["read", "write", "openat", "execve", "exit_group", "chroot", "ptrace", "arch_prctl", "capset"]
)
def test_default_allows_ordinary_syscalls(name: str) -> None:
    _, _, filt = _default()
    assert _run(filt, name) == ALLOW


def test_default_argument_rules() -> None:
    _, _, filt = _default()
    assert _run(filt, "clone", 0x01200011) == ALLOW  # fork()'s flags
    assert _run(filt, "clone", 0x20000) == EPERM  # CLONE_NEWNS
    assert _run(filt, "clone", 0x40000000 | 0x11) == EPERM  # CLONE_NEWNET
    assert _run(filt, "clone", 1 << 32) == ALLOW  # high word outside the mask
    assert _run(filt, "clone3") == ENOSYS  # so libc falls back to clone
    assert _run(filt, "socket", 2) == ALLOW and _run(filt, "socket", 40) == EPERM  # AF_VSOCK
    for value in seccomp.PERSONALITY_ALLOWED:
        assert _run(filt, "personality", value) == ALLOW
    assert _run(filt, "personality", 0x0040000) == EPERM  # READ_IMPLIES_EXEC
    assert _run(filt, "personality", 0xFFFFFFFF | 1 << 32) == EPERM


def test_default_with_capabilities_and_old_kernels() -> None:
    _, _, admin = _default(caps.DEFAULT_CAPS | {"CAP_SYS_ADMIN"})
    assert _run(admin, "mount") == ALLOW and _run(admin, "unshare") == ALLOW
    assert _run(admin, "clone", 0x20000) == ALLOW and _run(admin, "clone3") == ALLOW
    _, _, nochroot = _default(caps.DEFAULT_CAPS - {"CAP_SYS_CHROOT"})
    assert _run(nochroot, "chroot") == EPERM
    _, _, old = _default(kernel="4.4.0-generic")
    assert _run(old, "ptrace") == EPERM
    _, _, traced = _default(caps.DEFAULT_CAPS | {"CAP_SYS_PTRACE"}, kernel="4.4.0")
    assert _run(traced, "ptrace") == ALLOW


def test_wrong_arch_kills_and_unknown_numbers_get_enosys() -> None:
    _, _, filt = _default()
    assert _run(filt, "read", arch=0x40000003) == seccomp.RET_KILL_PROCESS  # i386 via int 0x80
    assert _run(filt, 0x40000000 | NR["read"]) == ENOSYS  # x32 ABI
    assert _run(filt, max(NR.values()) + 1) == ENOSYS
    assert _run(filt, 0xFFFFFFFF) == ENOSYS
    assert _run(filt, 400) == EPERM  # a hole in the x86_64 table


@pytest.mark.parametrize("held", [caps.DEFAULT_CAPS, caps.ALL_CAPS, frozenset()])
def test_every_syscall_number_matches_the_reference(held: frozenset[str]) -> None:
    default, rules, filt = _default(held)
    for nr in range(max(NR.values()) + 3):
        assert _run(filt, nr, 0x11) == _reference(default, rules, X86, nr, [0x11, 0, 0, 0, 0, 0]), nr


_EDGES = [0, 1, 2, 0xFFFFFFFF, 1 << 32, (1 << 32) + 1, (1 << 32) - 1, (5 << 32) | 7, (1 << 64) - 1]


@pytest.mark.parametrize("op", sorted(seccomp._OPS))
def test_argument_comparisons_are_64_bit_and_unsigned(op: str) -> None:
    rng = random.Random(op)
    values = _EDGES + [rng.getrandbits(64) for _ in range(6)]
    for value in values:
        check = seccomp.ArgCheck(index=3, op=op, value=value, value_two=value & 0xF0F0F0F0F0F0F0F0)
        rule = seccomp.Rule(("kill",), ALLOW, (check,))
        filt = seccomp.compile_rules(EPERM, [rule], X86)
        _structurally_sound(filt.program)
        args = [*values, value - 1, value + 1, rng.getrandbits(64), value & ~0xFFFF]
        for arg in args:
            expected = ALLOW if _check_holds(check, arg) else EPERM
            assert _run(filt, "kill", 0, 0, 0, arg & ((1 << 64) - 1)) == expected, (op, hex(value), hex(arg))


def test_custom_profile_json_format() -> None:
    profile = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "flags": ["SECCOMP_FILTER_FLAG_LOG"],
        "syscalls": [
            {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
            {"name": "uname", "action": "SCMP_ACT_KILL_PROCESS"},
            {"names": ["no_such_call"], "action": "SCMP_ACT_ERRNO"},
            {
                "names": ["kill"],
                "action": "SCMP_ACT_ERRNO",
                "args": [{"index": 1, "value": 0, "op": "SCMP_CMP_EQ"}],
            },
        ],
    }
    filt = seccomp.compile_profile(profile, arch=X86)
    assert filt.flags == 2
    assert _run(filt, "mkdirat") == seccomp.RET_ERRNO | 13
    assert _run(filt, "uname") == seccomp.RET_KILL_PROCESS
    assert _run(filt, "kill", 1, 0) == EPERM and _run(filt, "kill", 1, 15) == ALLOW
    assert _run(filt, max(NR.values()) + 1) == ALLOW  # default allow: unknown numbers allowed too


@pytest.mark.parametrize(
    ("profile", "message"),
    [
        ({"syscalls": []}, "defaultAction"),
        ({"defaultAction": "SCMP_ACT_MAYBE"}, "unknown seccomp action"),
        ({"defaultAction": "SCMP_ACT_NOTIFY"}, "listener"),
        ({"defaultAction": "SCMP_ACT_ALLOW", "flags": ["X"]}, "unknown seccomp flag"),
        (
            {
                "defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [
                    {
                        "names": ["kill"],
                        "action": "SCMP_ACT_ERRNO",
                        "args": [{"index": 6, "op": "SCMP_CMP_EQ"}],
                    }
                ],
            },
            "index",
        ),
        (
            {
                "defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [
                    {"names": ["kill"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 0, "op": "LIKE"}]}
                ],
            },
            "operator",
        ),
    ],
)
def test_bad_profiles_are_refused(profile: dict, message: str) -> None:
    with pytest.raises(SecurityError, match=message):
        seccomp.compile_profile(profile, arch=X86)


def test_load_profile_from_file_and_errors(tmp_path) -> None:
    good = tmp_path / "pyc-test-profile.json"
    good.write_text(json.dumps({"defaultAction": "SCMP_ACT_ALLOW"}))
    assert seccomp.load_profile(str(good)) == {"defaultAction": "SCMP_ACT_ALLOW"}
    assert seccomp.load_profile('{"defaultAction": "SCMP_ACT_LOG"}')["defaultAction"] == "SCMP_ACT_LOG"
    with pytest.raises(SecurityError, match="cannot read") as info:
        seccomp.load_profile(str(tmp_path / "missing.json"))
    assert info.value.subject.endswith("missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(SecurityError, match="not valid JSON"):
        seccomp.load_profile(str(bad))
    bad.write_text("[]")
    with pytest.raises(SecurityError, match="JSON object"):
        seccomp.load_profile(str(bad))


def test_filter_for_unconfined_privileged_and_default() -> None:
    assert seccomp.filter_for("unconfined", caps.DEFAULT_CAPS) is None
    assert seccomp.filter_for(None, caps.ALL_CAPS, privileged=True) is None
    assert seccomp.filter_for(None, caps.DEFAULT_CAPS) is not None


def test_aarch64_program() -> None:
    arm = seccomp.AARCH64
    assert arm.syscalls["unshare"] == 97 and arm.syscalls["clone"] == 220 and arm.syscalls["fstat"] == 80
    filt = seccomp.compile_profile(seccomp.default_profile(), caps=caps.DEFAULT_CAPS, arch=arm, kernel="6.1")
    _structurally_sound(filt.program)
    assert seccomp.evaluate(filt.program, 97, arm.audit) == EPERM
    assert seccomp.evaluate(filt.program, 63, arm.audit) == ALLOW  # read
    assert seccomp.evaluate(filt.program, 63, X86.audit) == seccomp.RET_KILL_PROCESS


# --- security planning ----------------------------------------------------------------------------------


def test_ulimits_checked_against_host_hard_limit(monkeypatch) -> None:
    real = resource.getrlimit

    def fake(number: int) -> tuple[int, int]:
        return (1024, 4096) if number == resource.RLIMIT_NOFILE else real(number)

    monkeypatch.setattr(resource, "getrlimit", fake)
    (limit,) = security.check_ulimits([("NOFILE", 1024, 4096)])
    assert (limit.name, limit.resource, limit.soft, limit.hard) == (
        "nofile",
        resource.RLIMIT_NOFILE,
        1024,
        4096,
    )
    with pytest.raises(SecurityError, match="above the host's hard limit 4096"):
        security.check_ulimits([("nofile", 1024, 8192)])
    with pytest.raises(SecurityError, match="above the host's hard limit"):
        security.check_ulimits([("nofile", -1, -1)])
    with pytest.raises(SecurityError, match="soft limit 10 is above the hard limit 5"):
        security.check_ulimits([("nofile", 10, 5)])
    with pytest.raises(SecurityError, match="unknown ulimit"):
        security.check_ulimits([("files", 1, 1)])


@pytest.mark.parametrize(
    "name", ["net.ipv4.ip_forward", "net/core/somaxconn", "kernel.shmmax", "kernel.msgmax", "kernel.sem"]
)
def test_namespaced_sysctls_accepted(name: str) -> None:
    assert security.check_sysctls([(name, "1")]) == ((name.replace("/", "."), "1"),)


@pytest.mark.parametrize("name", ["kernel.hostname", "vm.swappiness", "kernel.pid_max", "fs.file-max"])
def test_host_sysctls_refused(name: str) -> None:
    with pytest.raises(SecurityError, match="not namespaced"):
        security.check_sysctls([(name, "1")])


def test_sysctls_refused_in_shared_namespaces() -> None:
    with pytest.raises(SecurityError, match="net namespace"):
        security.check_sysctls([("net.ipv4.ip_forward", "1")], host_network=True)
    with pytest.raises(SecurityError, match="ipc namespace"):
        security.check_sysctls([("fs.mqueue.msg_max", "20")], host_ipc=True)


def test_plan_security() -> None:
    plan = security.plan_security(Security(cap_drop=("ALL",), cap_add=("chown",), oom_score_adj=500))
    assert plan.caps == {"CAP_CHOWN"} and plan.oom_score_adj == 500 and plan.seccomp is not None
    assert security.plan_security(Security(privileged=True)).seccomp is None
    assert security.plan_security(Security(seccomp_profile="unconfined")).seccomp is None
    with pytest.raises(SecurityError, match="oom_score_adj"):
        security.plan_security(Security(oom_score_adj=1001))
