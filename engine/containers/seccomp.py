"""Seccomp: Docker-format profiles compiled to a classic BPF program in Python, and installed.

Why no libseccomp: Debian's python3-seccomp binding is tied to the system Python (not our venv), and the
compiler we need is small: a profile is a table "syscall -> action, maybe with argument checks". We build
it ourselves and can decode and emulate it in unit tests (`evaluate`).

Why an allowlist: the default profile follows the structure of moby's default.json (default action
EPERM, a list of allowed syscalls, some allowed only with a capability or with argument checks). A
denylist would silently allow every syscall added to the kernel after the list was written; with an
allowlist they fail. As runc does, numbers above the highest syscall we know get ENOSYS rather than
EPERM, so libc falls back to older calls (that is also why clone3 answers ENOSYS).

Program shape: check the architecture (any other one, e.g. i386 `int 0x80` on x86_64, kills the
process), then a binary search over syscall-number ranges that share an action (about 8 comparisons per
call instead of ~300), with argument checks inlined at the leaves. Classic BPF jumps only forward and
conditional jumps reach 255 instructions, so every far jump is an unconditional `ja` (32-bit offset).

ctypes module for this concern: this one (seccomp(2), prctl no_new_privs).
"""

from __future__ import annotations

import ctypes
import json
import os
import platform
import struct
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from engine.errors import SecurityError
from engine.frozen import frozen

# --- seccomp return values and BPF opcodes (linux/seccomp.h, linux/filter.h) ------------------------

RET_KILL_PROCESS = 0x80000000
RET_KILL_THREAD = 0x00000000
RET_TRAP = 0x00030000
RET_ERRNO = 0x00050000
RET_TRACE = 0x7FF00000
RET_LOG = 0x7FFC0000
RET_ALLOW = 0x7FFF0000
EPERM = 1
ENOSYS = 38

LD_W_ABS = 0x20
ALU_AND_K = 0x54
JMP_JA = 0x05
JMP_JEQ_K = 0x15
JMP_JGT_K = 0x25
JMP_JGE_K = 0x35
RET_K = 0x06

OFFSET_NR = 0
OFFSET_ARCH = 4
OFFSET_ARGS = 16
MAX_INSNS = 4096


@frozen
class Arch:
    """One native architecture: its audit number, the names profiles use for it, its syscall table."""

    name: str
    audit: int
    aliases: frozenset[str]
    syscalls: Mapping[str, int]


# --- profile model -------------------------------------------------------------------------------------


@frozen
class ArgCheck:
    """One argument comparison (Docker's `args` entry); all of a rule's checks must hold."""

    index: int
    op: str  # SCMP_CMP_EQ, _NE, _LT, _LE, _GT, _GE, _MASKED_EQ
    value: int
    value_two: int = 0


@frozen
class Rule:
    """Syscalls that get `action` (a seccomp return value) when every check holds."""

    names: tuple[str, ...]
    action: int
    checks: tuple[ArgCheck, ...] = ()


@frozen
class Filter:
    """A compiled filter: the BPF instructions and the seccomp(2) flags to install it with."""

    program: tuple[tuple[int, int, int, int], ...]
    flags: int = 0

    def to_bytes(self) -> bytes:
        """The `struct sock_filter` array the kernel takes."""
        return b"".join(struct.pack("=HBBI", *insn) for insn in self.program)


_OPS = frozenset(
    {
        "SCMP_CMP_EQ",
        "SCMP_CMP_NE",
        "SCMP_CMP_LT",
        "SCMP_CMP_LE",
        "SCMP_CMP_GT",
        "SCMP_CMP_GE",
        "SCMP_CMP_MASKED_EQ",
    }
)
_FLAGS = {
    "SECCOMP_FILTER_FLAG_TSYNC": 1,
    "SECCOMP_FILTER_FLAG_LOG": 2,
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW": 4,
}


def _error(message: str, subject: str) -> SecurityError:
    return SecurityError(message, subject=subject)


def action_value(action: str, errno_ret: int | None, *, subject: str, default_errno: int = EPERM) -> int:
    """The seccomp return value for a Docker action name (`SCMP_ACT_ERRNO` + errnoRet, ...)."""
    match action:
        case "SCMP_ACT_ALLOW":
            return RET_ALLOW
        case "SCMP_ACT_ERRNO":
            errno = default_errno if errno_ret is None else errno_ret
            return RET_ERRNO | (errno & 0xFFFF)
        case "SCMP_ACT_KILL" | "SCMP_ACT_KILL_THREAD":
            return RET_KILL_THREAD
        case "SCMP_ACT_KILL_PROCESS":
            return RET_KILL_PROCESS
        case "SCMP_ACT_TRAP":
            return RET_TRAP
        case "SCMP_ACT_TRACE":
            return RET_TRACE | ((errno_ret or 0) & 0xFFFF)
        case "SCMP_ACT_LOG":
            return RET_LOG
        case "SCMP_ACT_NOTIFY":
            raise _error("SCMP_ACT_NOTIFY needs a listener, which pycompose does not provide", subject)
        case _:
            raise _error(f"unknown seccomp action {action!r}", subject)


def _kernel_at_least(minimum: str, release: str) -> bool:
    """Whether a kernel release like `6.18.44-foo` is >= `4.8`."""

    def numbers(text: str) -> tuple[int, ...]:
        parts = []
        for piece in text.split("-")[0].split(".")[:3]:
            digits = "".join(ch for ch in piece if ch.isdigit())
            parts.append(int(digits or 0))
        return tuple(parts)

    return numbers(release) >= numbers(minimum)


def _applies(entry: Mapping[str, Any], caps: frozenset[str], arch: Arch, kernel: str) -> bool:
    """Docker's includes/excludes: a rule applies for these capabilities, this arch and kernel."""
    includes = entry.get("includes") or {}
    excludes = entry.get("excludes") or {}
    if includes.get("caps") and not set(includes["caps"]) <= caps:
        return False
    if includes.get("arches") and not arch.aliases & set(includes["arches"]):
        return False
    if includes.get("minKernel") and not _kernel_at_least(includes["minKernel"], kernel):
        return False
    if excludes.get("caps") and set(excludes["caps"]) & caps:
        return False
    if excludes.get("arches") and arch.aliases & set(excludes["arches"]):
        return False
    return not (excludes.get("minKernel") and _kernel_at_least(excludes["minKernel"], kernel))


def _arg_checks(raw: Sequence[Mapping[str, Any]] | None, subject: str) -> tuple[ArgCheck, ...]:
    checks = []
    for item in raw or ():
        op = item.get("op")
        index = item.get("index")
        if op not in _OPS:
            raise _error(f"unknown seccomp argument operator {op!r}", subject)
        if not isinstance(index, int) or not 0 <= index <= 5:
            raise _error(f"seccomp argument index must be 0..5, not {index!r}", subject)
        value = int(item.get("value", 0)) & 0xFFFFFFFFFFFFFFFF
        value_two = int(item.get("valueTwo", 0)) & 0xFFFFFFFFFFFFFFFF
        checks.append(ArgCheck(index, op, value, value_two))
    return tuple(checks)


def parse_profile(
    profile: Mapping[str, Any],
    *,
    caps: Iterable[str] = (),
    arch: Arch | None = None,
    kernel: str | None = None,
    subject: str = "seccomp profile",
) -> tuple[int, list[Rule], int]:
    """(default action, rules that apply here, flags) of a Docker seccomp profile (the JSON format)."""
    arch = arch or native_arch()
    kernel = kernel or os.uname().release
    held = frozenset(caps)
    if not isinstance(profile, Mapping) or "defaultAction" not in profile:
        raise _error("not a seccomp profile (no defaultAction)", subject)
    default_errno = profile.get("defaultErrnoRet")
    default = action_value(profile["defaultAction"], default_errno, subject=subject)
    rules: list[Rule] = []
    for entry in profile.get("syscalls") or ():
        if not _applies(entry, held, arch, kernel):
            continue
        names = tuple(entry.get("names") or ()) + ((entry["name"],) if entry.get("name") else ())
        action = action_value(entry.get("action", ""), entry.get("errnoRet"), subject=subject)
        rules.append(Rule(names, action, _arg_checks(entry.get("args"), subject)))
    flags = 0
    for flag in profile.get("flags") or ():
        if flag not in _FLAGS:
            raise _error(f"unknown seccomp flag {flag!r}", subject)
        flags |= _FLAGS[flag]
    return default, rules, flags


# --- the assembler -------------------------------------------------------------------------------------


class _Program:
    """Instructions with symbolic targets for `ja`; conditional jumps only skip a few instructions."""

    def __init__(self) -> None:
        self.insns: list[list[Any]] = []
        self.labels: dict[str, int] = {}
        self._count = 0

    def emit(self, code: int, jt: int = 0, jf: int = 0, k: int | str = 0) -> None:
        self.insns.append([code, jt, jf, k])

    def new_label(self) -> str:
        self._count += 1
        return f"L{self._count}"

    def place(self, label: str) -> None:
        self.labels[label] = len(self.insns)

    def resolve(self) -> tuple[tuple[int, int, int, int], ...]:
        out = []
        for index, (code, jt, jf, k) in enumerate(self.insns):
            if isinstance(k, str):
                k = self.labels[k] - index - 1
            out.append((code, jt, jf, k & 0xFFFFFFFF))
        return tuple(out)


def _emit_check(prog: _Program, check: ArgCheck, fail: str) -> None:
    """Fall through when the 64-bit argument comparison holds, `ja fail` otherwise."""
    low_off = OFFSET_ARGS + 8 * check.index  # little-endian: low word first
    high_off = low_off + 4
    v_hi, v_lo = check.value >> 32, check.value & 0xFFFFFFFF
    match check.op:
        case "SCMP_CMP_EQ":
            for off, part in ((high_off, v_hi), (low_off, v_lo)):
                prog.emit(LD_W_ABS, k=off)
                prog.emit(JMP_JEQ_K, 1, 0, part)
                prog.emit(JMP_JA, k=fail)
        case "SCMP_CMP_MASKED_EQ":
            d_hi, d_lo = check.value_two >> 32, check.value_two & 0xFFFFFFFF
            for off, mask, datum in ((high_off, v_hi, d_hi), (low_off, v_lo, d_lo)):
                prog.emit(LD_W_ABS, k=off)
                prog.emit(ALU_AND_K, k=mask)
                prog.emit(JMP_JEQ_K, 1, 0, datum)
                prog.emit(JMP_JA, k=fail)
        case "SCMP_CMP_NE":
            prog.emit(LD_W_ABS, k=high_off)
            prog.emit(JMP_JEQ_K, 0, 3, v_hi)  # high words differ: holds
            prog.emit(LD_W_ABS, k=low_off)
            prog.emit(JMP_JEQ_K, 0, 1, v_lo)
            prog.emit(JMP_JA, k=fail)
        case _:
            _emit_ordered(prog, check.op, high_off, low_off, v_hi, v_lo, fail)


def _emit_ordered(prog: _Program, op: str, high: int, low: int, v_hi: int, v_lo: int, fail: str) -> None:
    """Unsigned 64-bit <, <=, >, >=: decided by the high words unless they are equal."""
    greater = op in ("SCMP_CMP_GT", "SCMP_CMP_GE")
    low_jump = {
        "SCMP_CMP_GT": JMP_JGT_K,
        "SCMP_CMP_GE": JMP_JGE_K,
        "SCMP_CMP_LT": JMP_JGE_K,
        "SCMP_CMP_LE": JMP_JGT_K,
    }[op]
    prog.emit(LD_W_ABS, k=high)
    if greater:
        prog.emit(JMP_JGT_K, 4, 0, v_hi)  # high > value: holds
    else:
        prog.emit(JMP_JGE_K, 0, 4, v_hi)  # high < value: holds
    prog.emit(JMP_JEQ_K, 0, 2, v_hi)  # high words differ the wrong way: fails
    prog.emit(LD_W_ABS, k=low)
    if greater:
        prog.emit(low_jump, 1, 0)
    else:
        prog.emit(low_jump, 0, 1)
    prog.insns[-1][3] = v_lo
    prog.emit(JMP_JA, k=fail)


def _emit_block(prog: _Program, rules: Sequence[Rule], default: int) -> None:
    """One syscall's rules in profile order; the first whose checks all hold decides."""
    for rule in rules:
        if not rule.checks:
            prog.emit(RET_K, k=rule.action)
            return
        fail = prog.new_label()
        for check in rule.checks:
            _emit_check(prog, check, fail)
        prog.emit(RET_K, k=rule.action)
        prog.place(fail)
    prog.emit(RET_K, k=default)


Target = tuple[str, Any]  # ("ret", value) or ("block", rules)


def _segments(per_nr: Mapping[int, Target], top: int, default: int, beyond: int) -> list[tuple[int, Target]]:
    """(first number, target) runs covering 0..2**32-1: known numbers, the gaps, then `beyond`."""
    runs: list[tuple[int, Target]] = []
    for nr in range(top + 1):
        target = per_nr.get(nr, ("ret", default))
        if not runs or target[0] == "block" or runs[-1][1] != target:
            runs.append((nr, target))
    if runs[-1][1] != ("ret", beyond):
        runs.append((top + 1, ("ret", beyond)))
    return runs


def _emit_tree(prog: _Program, runs: Sequence[tuple[int, Target]], default: int) -> None:
    """Binary search on the syscall number (in A); leaves return or run a syscall's rules."""
    if len(runs) == 1:
        kind, value = runs[0][1]
        if kind == "ret":
            prog.emit(RET_K, k=value)
        else:
            _emit_block(prog, value, default)
        return
    middle = len(runs) // 2
    right = prog.new_label()
    prog.emit(JMP_JGE_K, 0, 1, runs[middle][0])
    prog.emit(JMP_JA, k=right)
    _emit_tree(prog, runs[:middle], default)
    prog.place(right)  # every leaf ends in `ret`, so A still holds the number here
    _emit_tree(prog, runs[middle:], default)


def compile_rules(default: int, rules: Sequence[Rule], arch: Arch, *, flags: int = 0) -> Filter:
    """The BPF program for `rules` (unknown syscall names are skipped, as runc does)."""
    per_nr: dict[int, list[Rule]] = {}
    for rule in rules:
        for name in rule.names:
            nr = arch.syscalls.get(name)
            if nr is not None:
                per_nr.setdefault(nr, []).append(rule)
    targets: dict[int, Target] = {}
    for nr, nr_rules in per_nr.items():
        first = nr_rules[0]
        targets[nr] = ("ret", first.action) if not first.checks else ("block", tuple(nr_rules))
    top = max(arch.syscalls.values())
    beyond = default if default == RET_ALLOW else RET_ERRNO | ENOSYS
    prog = _Program()
    prog.emit(LD_W_ABS, k=OFFSET_ARCH)
    prog.emit(JMP_JEQ_K, 1, 0, arch.audit)
    prog.emit(RET_K, k=RET_KILL_PROCESS)
    prog.emit(LD_W_ABS, k=OFFSET_NR)
    _emit_tree(prog, _segments(targets, top, default, beyond), default)
    program = prog.resolve()
    if len(program) > MAX_INSNS:
        raise SecurityError(f"seccomp program too long ({len(program)} instructions)", subject="seccomp")
    return Filter(program, flags)


def compile_profile(
    profile: Mapping[str, Any],
    *,
    caps: Iterable[str] = (),
    arch: Arch | None = None,
    kernel: str | None = None,
    subject: str = "seccomp profile",
) -> Filter:
    """A Docker-format profile (dict) compiled for this machine and these capabilities."""
    arch = arch or native_arch()
    default, rules, flags = parse_profile(profile, caps=caps, arch=arch, kernel=kernel, subject=subject)
    return compile_rules(default, rules, arch, flags=flags)


def load_profile(source: str) -> dict[str, Any]:
    """A profile from a file path (or inline JSON text, as the Docker API accepts); errors name the file."""
    try:
        text = source if source.lstrip().startswith("{") else Path(source).read_text()
        data = json.loads(text)
    except OSError as exc:
        raise SecurityError(f"cannot read seccomp profile: {exc.strerror}", subject=source) from exc
    except json.JSONDecodeError as exc:
        raise SecurityError(f"seccomp profile is not valid JSON: {exc}", subject=source) from exc
    if not isinstance(data, dict):
        raise SecurityError("seccomp profile must be a JSON object", subject=source)
    return data


def filter_for(profile: str | None, caps: Iterable[str], *, privileged: bool = False) -> Filter | None:
    """What a container gets: None = unconfined (asked for, or privileged as in Docker), else a filter."""
    if profile == "unconfined" or privileged:
        return None
    if profile is None or profile == "default":
        return compile_profile(default_profile(), caps=caps, subject="default seccomp profile")
    return compile_profile(load_profile(profile), caps=caps, subject=profile)


# --- an emulator, to test and explain programs -----------------------------------------------------------


def evaluate(
    program: Sequence[tuple[int, int, int, int]], nr: int, arch: int, args: Sequence[int] = ()
) -> int:
    """Run `program` on one syscall as the kernel would and return the seccomp return value."""
    words = [args[i] if i < len(args) else 0 for i in range(6)]
    data = struct.pack("=IIQ6Q", nr & 0xFFFFFFFF, arch, 0, *(w & 0xFFFFFFFFFFFFFFFF for w in words))
    acc = 0
    pc = 0
    while True:
        code, jt, jf, k = program[pc]
        pc += 1
        if code == LD_W_ABS:
            acc = struct.unpack_from("=I", data, k)[0]
        elif code == ALU_AND_K:
            acc &= k
        elif code == JMP_JA:
            pc += k
        elif code in (JMP_JEQ_K, JMP_JGT_K, JMP_JGE_K):
            taken = {JMP_JEQ_K: acc == k, JMP_JGT_K: acc > k, JMP_JGE_K: acc >= k}[code]
            pc += jt if taken else jf
        elif code == RET_K:
            return k
        else:
            raise ValueError(f"unexpected opcode {code:#x} at {pc - 1}")


# --- installing ---------------------------------------------------------------------------------------

_PR_SET_NO_NEW_PRIVS = 38
_PR_GET_NO_NEW_PRIVS = 39
_PR_SET_SECCOMP = 22
_SECCOMP_MODE_FILTER = 2
_SECCOMP_SET_MODE_FILTER = 1
_SYS_SECCOMP = {"x86_64": 317, "aarch64": 277}


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


_libc = ctypes.CDLL(None, use_errno=True)
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
_libc.syscall.restype = ctypes.c_long


def set_no_new_privs() -> None:
    """prctl(PR_SET_NO_NEW_PRIVS): exec can no longer grant privileges (setuid bits, file caps)."""
    if _libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise SecurityError(f"PR_SET_NO_NEW_PRIVS: {os.strerror(err)}", subject="no_new_privs")


def get_no_new_privs() -> bool:
    """Whether no_new_privs is set on this process."""
    return _libc.prctl(_PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) == 1


def install(filt: Filter) -> None:
    """Load the filter into this process (needs no_new_privs or CAP_SYS_ADMIN); it survives exec."""
    raw = filt.to_bytes()
    buffer = ctypes.create_string_buffer(raw, len(raw))
    fprog = _SockFprog(len(filt.program), ctypes.cast(buffer, ctypes.c_void_p))
    number = _SYS_SECCOMP.get(platform.machine())
    if number is not None:
        result = _libc.syscall(ctypes.c_long(number), ctypes.c_long(_SECCOMP_SET_MODE_FILTER),
                               ctypes.c_long(filt.flags), ctypes.byref(fprog))  # fmt: skip
        if result == 0:
            return
        err = ctypes.get_errno()
        if err != ENOSYS:
            raise SecurityError(f"seccomp(SET_MODE_FILTER): {os.strerror(err)}", subject="seccomp")
    if filt.flags:
        raise SecurityError("seccomp filter flags need the seccomp(2) syscall", subject="seccomp")
    if _libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.addressof(fprog), 0, 0) != 0:
        err = ctypes.get_errno()
        raise SecurityError(f"PR_SET_SECCOMP: {os.strerror(err)}", subject="seccomp")


# --- the default profile -------------------------------------------------------------------------------
# Docker's default (moby profiles/seccomp/default.json) restated as data in the same format, so it goes
# through the same compiler as a user's profile file. Names that do not exist on an architecture (the
# 32-bit variants, for instance) are skipped when compiling.

_ALWAYS_ALLOWED = """
    accept accept4 access adjtimex alarm bind brk capget capset chdir chmod chown chown32
    clock_adjtime clock_adjtime64 clock_getres clock_getres_time64 clock_gettime clock_gettime64
    clock_nanosleep clock_nanosleep_time64 close close_range connect copy_file_range creat dup dup2 dup3
    epoll_create epoll_create1 epoll_ctl epoll_ctl_old epoll_pwait epoll_pwait2 epoll_wait epoll_wait_old
    eventfd eventfd2 execve execveat exit exit_group faccessat faccessat2 fadvise64 fadvise64_64
    fallocate fanotify_mark fchdir fchmod fchmodat fchown fchown32 fchownat fcntl fcntl64 fdatasync
    fgetxattr flistxattr flock fork fremovexattr fsetxattr fstat fstat64 fstatat64 fstatfs fstatfs64
    fsync ftruncate ftruncate64 futex futex_time64 futex_waitv futimesat getcpu getcwd getdents
    getdents64 getegid getegid32 geteuid geteuid32 getgid getgid32 getgroups getgroups32 getitimer
    getpeername getpgid getpgrp getpid getppid getpriority getrandom getresgid getresgid32 getresuid
    getresuid32 getrlimit get_robust_list getrusage getsid getsockname getsockopt get_thread_area gettid
    gettimeofday getuid getuid32 getxattr inotify_add_watch inotify_init inotify_init1 inotify_rm_watch
    io_cancel ioctl io_destroy io_getevents io_pgetevents io_pgetevents_time64 ioprio_get ioprio_set
    io_setup io_submit io_uring_enter io_uring_register io_uring_setup ipc kill landlock_add_rule
    landlock_create_ruleset landlock_restrict_self lchown lchown32 lgetxattr link linkat listen listxattr
    llistxattr _llseek lremovexattr lseek lsetxattr lstat lstat64 madvise membarrier memfd_create
    memfd_secret mincore mkdir mkdirat mknod mknodat mlock mlock2 mlockall mmap mmap2 mprotect
    mq_getsetattr mq_notify mq_open mq_timedreceive mq_timedreceive_time64 mq_timedsend
    mq_timedsend_time64 mq_unlink mremap msgctl msgget msgrcv msgsnd msync munlock munlockall munmap
    name_to_handle_at nanosleep newfstatat _newselect open openat openat2 pause pidfd_open
    pidfd_send_signal pipe pipe2 pkey_alloc pkey_free pkey_mprotect poll ppoll ppoll_time64 prctl
    pread64 preadv preadv2 prlimit64 process_mrelease pselect6 pselect6_time64 pwrite64 pwritev
    pwritev2 read readahead readlink readlinkat readv recv recvfrom recvmmsg recvmmsg_time64 recvmsg
    remap_file_pages removexattr rename renameat renameat2 restart_syscall rmdir rseq rt_sigaction
    rt_sigpending rt_sigprocmask rt_sigqueueinfo rt_sigreturn rt_sigsuspend rt_sigtimedwait
    rt_sigtimedwait_time64 rt_tgsigqueueinfo sched_getaffinity sched_getattr sched_getparam
    sched_get_priority_max sched_get_priority_min sched_getscheduler sched_rr_get_interval
    sched_rr_get_interval_time64 sched_setaffinity sched_setattr sched_setparam sched_setscheduler
    sched_yield seccomp select semctl semget semop semtimedop semtimedop_time64 send sendfile sendfile64
    sendmmsg sendmsg sendto setfsgid setfsgid32 setfsuid setfsuid32 setgid setgid32 setgroups
    setgroups32 setitimer setpgid setpriority setregid setregid32 setresgid setresgid32 setresuid
    setresuid32 setreuid setreuid32 setrlimit set_robust_list setsid setsockopt set_thread_area
    set_tid_address setuid setuid32 setxattr shmat shmctl shmdt shmget shutdown sigaltstack signalfd
    signalfd4 sigprocmask sigreturn socketcall socketpair splice stat stat64 statfs statfs64 statx
    symlink symlinkat sync sync_file_range syncfs sysinfo tee tgkill time timer_create timer_delete
    timer_getoverrun timer_gettime timer_gettime64 timer_settime timer_settime64 timerfd_create
    timerfd_gettime timerfd_gettime64 timerfd_settime timerfd_settime64 times tkill truncate truncate64
    ugetrlimit umask uname unlink unlinkat utime utimensat utimensat_time64 utimes vfork vmsplice wait4
    waitid waitpid write writev
"""

# Syscalls allowed only when the container holds a capability (Docker's "includes caps" entries).
_BY_CAPABILITY: dict[str, str] = {
    "CAP_SYS_ADMIN": "bpf clone clone3 fanotify_init fsconfig fsmount fsopen fspick lookup_dcookie mount"
    " mount_setattr move_mount open_tree perf_event_open quotactl quotactl_fd setdomainname sethostname"
    " setns syslog umount umount2 unshare",
    "CAP_DAC_READ_SEARCH": "open_by_handle_at",
    "CAP_SYS_BOOT": "reboot",
    "CAP_SYS_CHROOT": "chroot",
    "CAP_SYS_MODULE": "delete_module init_module finit_module",
    "CAP_SYS_PACCT": "acct",
    "CAP_SYS_PTRACE": "kcmp pidfd_getfd process_madvise process_vm_readv process_vm_writev ptrace",
    "CAP_SYS_RAWIO": "iopl ioperm",
    "CAP_SYS_TIME": "settimeofday stime clock_settime clock_settime64",
    "CAP_SYS_TTY_CONFIG": "vhangup",
    "CAP_SYS_NICE": "get_mempolicy mbind set_mempolicy set_mempolicy_home_node",
    "CAP_SYSLOG": "syslog",
    "CAP_BPF": "bpf",
    "CAP_PERFMON": "perf_event_open",
}

# clone flags that create namespaces (NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET): without
# CAP_SYS_ADMIN, clone is allowed only when none of them is set.
CLONE_NAMESPACE_FLAGS = 0x7E020000
AF_VSOCK = 40
# personality(2) values Docker allows: PER_LINUX, UNAME26, ADDR_NO_RANDOMIZE (alone, with UNAME26),
# and 0xffffffff (the query).
PERSONALITY_ALLOWED = (0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF)


def default_profile() -> dict[str, Any]:
    """Docker's default profile as a dict in the JSON profile format."""
    allow = "SCMP_ACT_ALLOW"
    syscalls: list[dict[str, Any]] = [{"names": _ALWAYS_ALLOWED.split(), "action": allow}]
    syscalls.append(
        {
            "names": ["process_vm_readv", "process_vm_writev", "ptrace"],
            "action": allow,
            "includes": {"minKernel": "4.8"},  # ptrace can no longer bypass seccomp from 4.8 on
        }
    )
    syscalls.append(
        {"names": ["socket"], "action": allow, "args": [{"index": 0, "value": AF_VSOCK, "op": "SCMP_CMP_NE"}]}
    )
    for value in PERSONALITY_ALLOWED:
        syscalls.append(
            {
                "names": ["personality"],
                "action": allow,
                "args": [{"index": 0, "value": value, "op": "SCMP_CMP_EQ"}],
            }
        )
    syscalls.append({"names": ["arch_prctl"], "action": allow, "includes": {"arches": ["amd64", "x32"]}})
    syscalls.append(
        {"names": ["modify_ldt"], "action": allow, "includes": {"arches": ["amd64", "x32", "x86"]}}
    )
    for arm_name in (
        "arm_fadvise64_64",
        "arm_sync_file_range",
        "sync_file_range2",
        "breakpoint",
        "cacheflush",
        "set_tls",
    ):
        syscalls.append({"names": [arm_name], "action": allow, "includes": {"arches": ["arm", "arm64"]}})
    for cap, names in _BY_CAPABILITY.items():
        syscalls.append({"names": names.split(), "action": allow, "includes": {"caps": [cap]}})
    syscalls.append(
        {
            "names": ["clone"],
            "action": allow,
            "args": [{"index": 0, "value": CLONE_NAMESPACE_FLAGS, "op": "SCMP_CMP_MASKED_EQ"}],
            "excludes": {"caps": ["CAP_SYS_ADMIN"]},
        }
    )
    syscalls.append(
        {
            "names": ["clone3"],
            "action": "SCMP_ACT_ERRNO",
            "errnoRet": ENOSYS,
            "excludes": {"caps": ["CAP_SYS_ADMIN"]},
        }
    )
    return {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": EPERM, "syscalls": syscalls}


# --- syscall tables (name:number), from the kernel's uapi headers (asm/unistd_64.h, asm-generic) -------

_X86_64_TABLE = """
read:0 write:1 open:2 close:3 stat:4 fstat:5 lstat:6 poll:7 lseek:8 mmap:9 mprotect:10 munmap:11 brk:12
rt_sigaction:13 rt_sigprocmask:14 rt_sigreturn:15 ioctl:16 pread64:17 pwrite64:18 readv:19 writev:20
access:21 pipe:22 select:23 sched_yield:24 mremap:25 msync:26 mincore:27 madvise:28 shmget:29 shmat:30
shmctl:31 dup:32 dup2:33 pause:34 nanosleep:35 getitimer:36 alarm:37 setitimer:38 getpid:39 sendfile:40
socket:41 connect:42 accept:43 sendto:44 recvfrom:45 sendmsg:46 recvmsg:47 shutdown:48 bind:49 listen:50
getsockname:51 getpeername:52 socketpair:53 setsockopt:54 getsockopt:55 clone:56 fork:57 vfork:58 execve:59
exit:60 wait4:61 kill:62 uname:63 semget:64 semop:65 semctl:66 shmdt:67 msgget:68 msgsnd:69 msgrcv:70
msgctl:71 fcntl:72 flock:73 fsync:74 fdatasync:75 truncate:76 ftruncate:77 getdents:78 getcwd:79 chdir:80
fchdir:81 rename:82 mkdir:83 rmdir:84 creat:85 link:86 unlink:87 symlink:88 readlink:89 chmod:90 fchmod:91
chown:92 fchown:93 lchown:94 umask:95 gettimeofday:96 getrlimit:97 getrusage:98 sysinfo:99 times:100
ptrace:101 getuid:102 syslog:103 getgid:104 setuid:105 setgid:106 geteuid:107 getegid:108 setpgid:109
getppid:110 getpgrp:111 setsid:112 setreuid:113 setregid:114 getgroups:115 setgroups:116 setresuid:117
getresuid:118 setresgid:119 getresgid:120 getpgid:121 setfsuid:122 setfsgid:123 getsid:124 capget:125
capset:126 rt_sigpending:127 rt_sigtimedwait:128 rt_sigqueueinfo:129 rt_sigsuspend:130 sigaltstack:131
utime:132 mknod:133 uselib:134 personality:135 ustat:136 statfs:137 fstatfs:138 sysfs:139 getpriority:140
setpriority:141 sched_setparam:142 sched_getparam:143 sched_setscheduler:144 sched_getscheduler:145
sched_get_priority_max:146 sched_get_priority_min:147 sched_rr_get_interval:148 mlock:149 munlock:150
mlockall:151 munlockall:152 vhangup:153 modify_ldt:154 pivot_root:155 _sysctl:156 prctl:157 arch_prctl:158
adjtimex:159 setrlimit:160 chroot:161 sync:162 acct:163 settimeofday:164 mount:165 umount2:166 swapon:167
swapoff:168 reboot:169 sethostname:170 setdomainname:171 iopl:172 ioperm:173 create_module:174
init_module:175 delete_module:176 get_kernel_syms:177 query_module:178 quotactl:179 nfsservctl:180
getpmsg:181 putpmsg:182 afs_syscall:183 tuxcall:184 security:185 gettid:186 readahead:187 setxattr:188
lsetxattr:189 fsetxattr:190 getxattr:191 lgetxattr:192 fgetxattr:193 listxattr:194 llistxattr:195
flistxattr:196 removexattr:197 lremovexattr:198 fremovexattr:199 tkill:200 time:201 futex:202
sched_setaffinity:203 sched_getaffinity:204 set_thread_area:205 io_setup:206 io_destroy:207 io_getevents:208
io_submit:209 io_cancel:210 get_thread_area:211 lookup_dcookie:212 epoll_create:213 epoll_ctl_old:214
epoll_wait_old:215 remap_file_pages:216 getdents64:217 set_tid_address:218 restart_syscall:219
semtimedop:220 fadvise64:221 timer_create:222 timer_settime:223 timer_gettime:224 timer_getoverrun:225
timer_delete:226 clock_settime:227 clock_gettime:228 clock_getres:229 clock_nanosleep:230 exit_group:231
epoll_wait:232 epoll_ctl:233 tgkill:234 utimes:235 vserver:236 mbind:237 set_mempolicy:238 get_mempolicy:239
mq_open:240 mq_unlink:241 mq_timedsend:242 mq_timedreceive:243 mq_notify:244 mq_getsetattr:245
kexec_load:246 waitid:247 add_key:248 request_key:249 keyctl:250 ioprio_set:251 ioprio_get:252
inotify_init:253 inotify_add_watch:254 inotify_rm_watch:255 migrate_pages:256 openat:257 mkdirat:258
mknodat:259 fchownat:260 futimesat:261 newfstatat:262 unlinkat:263 renameat:264 linkat:265 symlinkat:266
readlinkat:267 fchmodat:268 faccessat:269 pselect6:270 ppoll:271 unshare:272 set_robust_list:273
get_robust_list:274 splice:275 tee:276 sync_file_range:277 vmsplice:278 move_pages:279 utimensat:280
epoll_pwait:281 signalfd:282 timerfd_create:283 eventfd:284 fallocate:285 timerfd_settime:286
timerfd_gettime:287 accept4:288 signalfd4:289 eventfd2:290 epoll_create1:291 dup3:292 pipe2:293
inotify_init1:294 preadv:295 pwritev:296 rt_tgsigqueueinfo:297 perf_event_open:298 recvmmsg:299
fanotify_init:300 fanotify_mark:301 prlimit64:302 name_to_handle_at:303 open_by_handle_at:304
clock_adjtime:305 syncfs:306 sendmmsg:307 setns:308 getcpu:309 process_vm_readv:310 process_vm_writev:311
kcmp:312 finit_module:313 sched_setattr:314 sched_getattr:315 renameat2:316 seccomp:317 getrandom:318
memfd_create:319 kexec_file_load:320 bpf:321 execveat:322 userfaultfd:323 membarrier:324 mlock2:325
copy_file_range:326 preadv2:327 pwritev2:328 pkey_mprotect:329 pkey_alloc:330 pkey_free:331 statx:332
io_pgetevents:333 rseq:334 pidfd_send_signal:424 io_uring_setup:425 io_uring_enter:426 io_uring_register:427
open_tree:428 move_mount:429 fsopen:430 fsconfig:431 fsmount:432 fspick:433 pidfd_open:434 clone3:435
close_range:436 openat2:437 pidfd_getfd:438 faccessat2:439 process_madvise:440 epoll_pwait2:441
mount_setattr:442 quotactl_fd:443 landlock_create_ruleset:444 landlock_add_rule:445
landlock_restrict_self:446 memfd_secret:447 process_mrelease:448 futex_waitv:449 set_mempolicy_home_node:450
"""

_AARCH64_TABLE = """
io_setup:0 io_destroy:1 io_submit:2 io_cancel:3 io_getevents:4 setxattr:5 lsetxattr:6 fsetxattr:7 getxattr:8
lgetxattr:9 fgetxattr:10 listxattr:11 llistxattr:12 flistxattr:13 removexattr:14 lremovexattr:15
fremovexattr:16 getcwd:17 lookup_dcookie:18 eventfd2:19 epoll_create1:20 epoll_ctl:21 epoll_pwait:22 dup:23
dup3:24 fcntl:25 inotify_init1:26 inotify_add_watch:27 inotify_rm_watch:28 ioctl:29 ioprio_set:30
ioprio_get:31 flock:32 mknodat:33 mkdirat:34 unlinkat:35 symlinkat:36 linkat:37 renameat:38 umount2:39
mount:40 pivot_root:41 nfsservctl:42 statfs:43 fstatfs:44 truncate:45 ftruncate:46 fallocate:47 faccessat:48
chdir:49 fchdir:50 chroot:51 fchmod:52 fchmodat:53 fchownat:54 fchown:55 openat:56 close:57 vhangup:58
pipe2:59 quotactl:60 getdents64:61 lseek:62 read:63 write:64 readv:65 writev:66 pread64:67 pwrite64:68
preadv:69 pwritev:70 sendfile:71 pselect6:72 ppoll:73 signalfd4:74 vmsplice:75 splice:76 tee:77
readlinkat:78 newfstatat:79 fstat:80 sync:81 fsync:82 fdatasync:83 sync_file_range:84 timerfd_create:85
timerfd_settime:86 timerfd_gettime:87 utimensat:88 acct:89 capget:90 capset:91 personality:92 exit:93
exit_group:94 waitid:95 set_tid_address:96 unshare:97 futex:98 set_robust_list:99 get_robust_list:100
nanosleep:101 getitimer:102 setitimer:103 kexec_load:104 init_module:105 delete_module:106 timer_create:107
timer_gettime:108 timer_getoverrun:109 timer_settime:110 timer_delete:111 clock_settime:112
clock_gettime:113 clock_getres:114 clock_nanosleep:115 syslog:116 ptrace:117 sched_setparam:118
sched_setscheduler:119 sched_getscheduler:120 sched_getparam:121 sched_setaffinity:122 sched_getaffinity:123
sched_yield:124 sched_get_priority_max:125 sched_get_priority_min:126 sched_rr_get_interval:127
restart_syscall:128 kill:129 tkill:130 tgkill:131 sigaltstack:132 rt_sigsuspend:133 rt_sigaction:134
rt_sigprocmask:135 rt_sigpending:136 rt_sigtimedwait:137 rt_sigqueueinfo:138 rt_sigreturn:139
setpriority:140 getpriority:141 reboot:142 setregid:143 setgid:144 setreuid:145 setuid:146 setresuid:147
getresuid:148 setresgid:149 getresgid:150 setfsuid:151 setfsgid:152 times:153 setpgid:154 getpgid:155
getsid:156 setsid:157 getgroups:158 setgroups:159 uname:160 sethostname:161 setdomainname:162 getrlimit:163
setrlimit:164 getrusage:165 umask:166 prctl:167 getcpu:168 gettimeofday:169 settimeofday:170 adjtimex:171
getpid:172 getppid:173 getuid:174 geteuid:175 getgid:176 getegid:177 gettid:178 sysinfo:179 mq_open:180
mq_unlink:181 mq_timedsend:182 mq_timedreceive:183 mq_notify:184 mq_getsetattr:185 msgget:186 msgctl:187
msgrcv:188 msgsnd:189 semget:190 semctl:191 semtimedop:192 semop:193 shmget:194 shmctl:195 shmat:196
shmdt:197 socket:198 socketpair:199 bind:200 listen:201 accept:202 connect:203 getsockname:204
getpeername:205 sendto:206 recvfrom:207 setsockopt:208 getsockopt:209 shutdown:210 sendmsg:211 recvmsg:212
readahead:213 brk:214 munmap:215 mremap:216 add_key:217 request_key:218 keyctl:219 clone:220 execve:221
mmap:222 fadvise64:223 swapon:224 swapoff:225 mprotect:226 msync:227 mlock:228 munlock:229 mlockall:230
munlockall:231 mincore:232 madvise:233 remap_file_pages:234 mbind:235 get_mempolicy:236 set_mempolicy:237
migrate_pages:238 move_pages:239 rt_tgsigqueueinfo:240 perf_event_open:241 accept4:242 recvmmsg:243
wait4:260 prlimit64:261 fanotify_init:262 fanotify_mark:263 clock_adjtime:266
syncfs:267 setns:268 sendmmsg:269 process_vm_readv:270 process_vm_writev:271 kcmp:272 finit_module:273
sched_setattr:274 sched_getattr:275 renameat2:276 seccomp:277 getrandom:278 memfd_create:279 bpf:280
execveat:281 userfaultfd:282 membarrier:283 mlock2:284 copy_file_range:285 preadv2:286 pwritev2:287
pkey_mprotect:288 pkey_alloc:289 pkey_free:290 statx:291 io_pgetevents:292 rseq:293 kexec_file_load:294
clock_gettime64:403 clock_settime64:404 clock_adjtime64:405 clock_getres_time64:406
clock_nanosleep_time64:407 timer_gettime64:408 timer_settime64:409 timerfd_gettime64:410
timerfd_settime64:411 utimensat_time64:412 pselect6_time64:413 ppoll_time64:414 io_pgetevents_time64:416
recvmmsg_time64:417 mq_timedsend_time64:418 mq_timedreceive_time64:419 semtimedop_time64:420
rt_sigtimedwait_time64:421 futex_time64:422 sched_rr_get_interval_time64:423 pidfd_send_signal:424
io_uring_setup:425 io_uring_enter:426 io_uring_register:427 open_tree:428 move_mount:429 fsopen:430
fsconfig:431 fsmount:432 fspick:433 pidfd_open:434 clone3:435 close_range:436 openat2:437 pidfd_getfd:438
faccessat2:439 process_madvise:440 epoll_pwait2:441 mount_setattr:442 quotactl_fd:443
landlock_create_ruleset:444 landlock_add_rule:445 landlock_restrict_self:446 memfd_secret:447
process_mrelease:448 futex_waitv:449 set_mempolicy_home_node:450
"""


def _table(text: str) -> dict[str, int]:
    return {name: int(nr) for name, nr in (item.split(":") for item in text.split())}


X86_64 = Arch("x86_64", 0xC000003E, frozenset({"amd64", "x86_64", "SCMP_ARCH_X86_64"}), _table(_X86_64_TABLE))
AARCH64 = Arch(
    "aarch64", 0xC00000B7, frozenset({"arm64", "aarch64", "SCMP_ARCH_AARCH64"}), _table(_AARCH64_TABLE)
)
ARCHES = {"x86_64": X86_64, "aarch64": AARCH64}


def native_arch() -> Arch:
    """The architecture of this machine; seccomp is refused on others (no syscall table for them)."""
    machine = platform.machine()
    if machine not in ARCHES:
        raise SecurityError(f"no seccomp syscall table for {machine}", subject="seccomp")
    return ARCHES[machine]
