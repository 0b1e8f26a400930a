"""A container's cgroup: create it, apply limits, move processes in, freeze, read stats, kill, remove.

The layout is detected at run time from /proc/self/mountinfo, because all three exist in the field:
- `v1`      one hierarchy per controller (or co-mounted ones), no cgroup2 mount;
- `hybrid`  v1 controllers plus a controller-less cgroup2 mount (`/sys/fs/cgroup/unified`, this host).
            Limits go to v1; the v2 directory is still created because it gives `cgroup.kill` and a
            reliable `populated` flag for free;
- `v2`      one unified tree with controllers enabled through `cgroup.subtree_control`.

Everything here is plain file I/O on cgroupfs, no ctypes. A setting the host cannot enforce raises
`UnsupportedSetting` naming it, never a silent no-op. Conversions follow Docker/runc:
cpus -> quota over a 100 ms period, cpu_shares -> cpu.weight, memory_swap -> memsw (v1) or
memory.swap.max = swap - memory (v2), a memory limit without memory_swap allows as much swap again.
"""

from __future__ import annotations

import errno
import os
import signal as signals
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from engine.containers.spec import Resources
from engine.errors import CgroupError, UnsupportedSetting
from engine.frozen import frozen

MOUNTINFO = "/proc/self/mountinfo"
DEFAULT_PARENT = "pycompose"
# v1 hierarchies a container joins; blkio only when mounted (stats only); devices for the allow-list.
V1_CONTROLLERS = ("memory", "cpu", "cpuacct", "cpuset", "pids", "freezer", "blkio", "devices")
V2_CONTROLLERS = ("cpu", "cpuset", "memory", "pids", "io")
DEFAULT_CPU_PERIOD = 100_000  # µs, Docker's period for --cpus
UNLIMITED_V1 = 1 << 60  # v1 reports "no limit" as a page-rounded LLONG_MAX
WAIT_STEP = 0.002


# -- layout ---------------------------------------------------------------------------------------------


@frozen
class Layout:
    """Where each hierarchy is mounted. `v1` maps a controller to its mount point."""

    mode: str  # "v1" | "hybrid" | "v2"
    v1: dict[str, str] = field(default_factory=dict)
    unified: str | None = None


def _unescape(path: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal (\\040)."""
    if "\\" not in path:
        return path
    out, i = [], 0
    while i < len(path):
        if path[i] == "\\" and path[i + 1 : i + 4].isdigit():
            out.append(chr(int(path[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(path[i])
            i += 1
    return "".join(out)


def parse_mountinfo(text: str) -> Layout:
    """Pure: the cgroup layout described by a mountinfo text. The first mount of a hierarchy wins."""
    v1: dict[str, str] = {}
    unified: str | None = None
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        fields, tail = left.split(), right.split()
        if len(fields) < 5 or len(tail) < 3:
            continue
        mount_point, fstype, options = _unescape(fields[4]), tail[0], tail[2].split(",")
        if fstype == "cgroup2" and unified is None:
            unified = mount_point
        elif fstype == "cgroup":
            for option in options:
                if option in V1_CONTROLLERS or option in ("hugetlb", "net_cls", "perf_event"):
                    v1.setdefault(option, mount_point)
    if v1:
        return Layout("hybrid" if unified else "v1", v1, unified)
    if unified:
        return Layout("v2", {}, unified)
    raise CgroupError("no cgroup filesystem is mounted", subject=MOUNTINFO)


@cache
def detect_layout(mountinfo: str = MOUNTINFO) -> Layout:
    """The layout of this process's mount namespace (read once; it does not change under us)."""
    try:
        text = Path(mountinfo).read_text()
    except OSError as exc:
        raise CgroupError(f"cannot read: {exc.strerror}", subject=mountinfo) from exc
    return parse_mountinfo(text)


# -- resource conversion (pure) -------------------------------------------------------------------------


@frozen
class Write:
    """One value for one cgroup file; `setting` is the user-facing name reported when it fails."""

    controller: str
    file: str
    value: str
    setting: str


def shares_to_weight(shares: int) -> int:
    """runc's mapping of v1 cpu.shares [2, 262144] onto v2 cpu.weight [1, 10000] (1024 -> 39)."""
    shares = min(max(shares, 2), 262_144)
    return 1 + ((shares - 2) * 9_999) // 262_142


def _validate(r: Resources) -> None:
    """Docker's refusals, so a bad spec fails before anything is written."""
    if r.memory_swap is not None and r.memory_swap != -1:
        if r.memory is None:
            raise CgroupError("memory_swap needs a memory limit as well", subject="memory_swap")
        if r.memory_swap < r.memory:
            raise CgroupError("memory_swap must be at least the memory limit", subject="memory_swap")
    if r.cpus is not None and (r.cpu_quota is not None or r.cpu_period is not None):
        raise CgroupError("cpus conflicts with cpu_quota/cpu_period: set one or the other", subject="cpus")
    if r.cpus is not None and r.cpus < 0:
        raise CgroupError("cpus must not be negative", subject="cpus")


def _swap_total(r: Resources) -> int | None:
    """memory+swap in bytes, -1 for unlimited, None to leave alone (Docker: unset -> twice the memory)."""
    if r.memory is None or r.memory <= 0:
        return None
    return r.memory_swap if r.memory_swap is not None else 2 * r.memory


def _cpu_quota(r: Resources) -> tuple[int | None, int | None]:
    """(quota, period) in µs; quota -1 means unlimited."""
    if r.cpus is not None:
        if r.cpus == 0:
            return None, None
        return max(1_000, round(r.cpus * DEFAULT_CPU_PERIOD)), DEFAULT_CPU_PERIOD
    quota = r.cpu_quota if r.cpu_quota is None or r.cpu_quota > 0 else -1
    return quota, r.cpu_period


def plan_v1(r: Resources) -> list[Write]:
    """The v1 writes for `r`, in an order a fresh cgroup accepts (limit before memsw, period before quota)."""
    _validate(r)
    out: list[Write] = []
    if r.memory is not None and r.memory > 0:
        out.append(Write("memory", "memory.limit_in_bytes", str(r.memory), "memory"))
        swap = _swap_total(r)
        if swap is not None:
            out.append(Write("memory", "memory.memsw.limit_in_bytes", str(swap), "memory_swap"))
    if r.memory_reservation is not None and r.memory_reservation > 0:
        value = str(r.memory_reservation)
        out.append(Write("memory", "memory.soft_limit_in_bytes", value, "memory_reservation"))
    quota, period = _cpu_quota(r)
    if period is not None:
        out.append(Write("cpu", "cpu.cfs_period_us", str(period), "cpus" if r.cpus else "cpu_period"))
    if quota is not None:
        out.append(Write("cpu", "cpu.cfs_quota_us", str(quota), "cpus" if r.cpus else "cpu_quota"))
    if r.cpu_shares:
        out.append(Write("cpu", "cpu.shares", str(r.cpu_shares), "cpu_shares"))
    out += _cpuset_and_pids(r)
    return out


def order_memsw_v1(writes: list[Write], current_limit: int | None) -> list[Write]:
    """v1 wants memsw >= limit after every single write: when memsw grows past the limit in force
    (an update that raises both), memsw must go first. `current_limit` None = unlimited."""
    by_file = {w.file: w for w in writes}
    limit, memsw = by_file.get("memory.limit_in_bytes"), by_file.get("memory.memsw.limit_in_bytes")
    if limit is None or memsw is None or current_limit is None:
        return writes
    if memsw.value != "-1" and int(memsw.value) < current_limit:
        return writes
    rest = [w for w in writes if w not in (limit, memsw)]
    return [memsw, limit, *rest]


def plan_v2(r: Resources) -> list[Write]:
    """The v2 file writes for `r` (memory.swap.max counts swap alone: memory_swap - memory)."""
    _validate(r)
    out: list[Write] = []
    if r.memory is not None and r.memory > 0:
        out.append(Write("memory", "memory.max", str(r.memory), "memory"))
        swap = _swap_total(r)
        if swap is not None:
            value = "max" if swap == -1 else str(swap - r.memory)
            out.append(Write("memory", "memory.swap.max", value, "memory_swap"))
    if r.memory_reservation is not None and r.memory_reservation > 0:
        out.append(Write("memory", "memory.low", str(r.memory_reservation), "memory_reservation"))
    quota, period = _cpu_quota(r)
    if quota is not None or period is not None:
        text = "max" if quota is None or quota < 0 else str(quota)
        setting = "cpus" if r.cpus else "cpu_quota"
        out.append(Write("cpu", "cpu.max", f"{text} {period or DEFAULT_CPU_PERIOD}", setting))
    if r.cpu_shares:
        out.append(Write("cpu", "cpu.weight", str(shares_to_weight(r.cpu_shares)), "cpu_shares"))
    out += _cpuset_and_pids(r)
    return out


# Docker's default device allow-list (runc's specconv.AllowedDevices, which dockerd adds for every
# unprivileged container): mknod of any node, but read/write only of these. /dev/rtc is not in it (runc
# dropped it long ago); devices passed with `devices:` would be appended here (not supported yet).
DEFAULT_ALLOWED_DEVICES = (
    "c *:* m",  # mknod of any character device...
    "b *:* m",  # ...and block device: creating a node is harmless, opening it is what the list guards
    "c 1:3 rwm",  # null
    "c 1:8 rwm",  # random
    "c 1:7 rwm",  # full
    "c 5:0 rwm",  # tty
    "c 1:5 rwm",  # zero
    "c 1:9 rwm",  # urandom
    "c 5:1 rwm",  # console
    "c 136:* rwm",  # pts (a new devpts instance per container)
    "c 5:2 rwm",  # ptmx
    "c 10:200 rwm",  # net/tun
)


def plan_devices_v1(privileged: bool) -> list[Write]:
    """The v1 devices-cgroup writes: privileged allows everything, else deny all then allow Docker's list.

    Deny first: a fresh cgroup inherits its parent's allow-all, and `a` in devices.deny clears it.
    """
    if privileged:
        return [Write("devices", "devices.allow", "a", "privileged")]
    allow = [Write("devices", "devices.allow", rule, "devices") for rule in DEFAULT_ALLOWED_DEVICES]
    return [Write("devices", "devices.deny", "a", "devices"), *allow]


def _cpuset_and_pids(r: Resources) -> list[Write]:
    """Same file names in v1 and v2."""
    out: list[Write] = []
    if r.cpuset_cpus:
        out.append(Write("cpuset", "cpuset.cpus", r.cpuset_cpus, "cpuset"))
    if r.cpuset_mems:
        out.append(Write("cpuset", "cpuset.mems", r.cpuset_mems, "cpuset_mems"))
    if r.pids_limit is not None:
        value = str(r.pids_limit) if r.pids_limit > 0 else "max"
        out.append(Write("pids", "pids.max", value, "pids_limit"))
    return out


# -- stats parsing (pure) -------------------------------------------------------------------------------


@frozen
class CgroupStats:
    """One sample. None = this host does not account it. Limits of None mean unlimited."""

    cpu_usage_ns: int | None = None
    memory_usage: int | None = None
    memory_limit: int | None = None
    memory_inactive_file: int | None = None  # Docker subtracts it from usage for its MEM USAGE column
    pids_current: int | None = None
    pids_limit: int | None = None
    blkio_read_bytes: int | None = None
    blkio_write_bytes: int | None = None


def parse_flat_keyed(text: str) -> dict[str, int]:
    """`key value` lines (memory.stat, cpu.stat, memory.events, memory.oom_control)."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if value.strip().lstrip("-").isdigit():
            out[key] = int(value)
    return out


def parse_blkio_v1(text: str) -> tuple[int, int]:
    """(read, write) bytes summed over devices from blkio.*io_service_bytes_recursive."""
    read = write = 0
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[2].isdigit():
            if parts[1] == "Read":
                read += int(parts[2])
            elif parts[1] == "Write":
                write += int(parts[2])
    return read, write


def parse_io_stat_v2(text: str) -> tuple[int, int]:
    """(read, write) bytes summed over devices from io.stat (`8:0 rbytes=.. wbytes=..`)."""
    read = write = 0
    for line in text.splitlines():
        for item in line.split()[1:]:
            key, _, value = item.partition("=")
            if key == "rbytes":
                read += int(value)
            elif key == "wbytes":
                write += int(value)
    return read, write


def _limit(text: str | None) -> int | None:
    if text is None or text.strip() == "max":
        return None
    value = int(text)
    return None if value >= UNLIMITED_V1 else value


# -- file helpers ---------------------------------------------------------------------------------------


def _read(path: Path) -> str | None:
    """File content, None when the file does not exist on this host."""
    try:
        return path.read_text()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise CgroupError(f"cannot read: {exc.strerror}", subject=str(path)) from exc


def _write(path: Path, value: str) -> None:
    """One write() as the kernel wants it; no O_CREAT so a missing knob stays an error."""
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def runs_in(pid: int | None, cgroup: str) -> bool:
    """Whether process `pid` is alive (a zombie is not) in a cgroup whose path ends with `cgroup`
    (`/<parent>/<id>`, or `/<id>` whatever the parent): the pid reuse guard of a recorded PID 1."""
    if not pid:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        text = Path(f"/proc/{pid}/cgroup").read_text()
    except (OSError, IndexError):
        return False
    return state != "Z" and any(line.rstrip().endswith(cgroup) for line in text.splitlines())


def _check_name(name: str, what: str) -> None:
    parts = name.split("/")
    if not name or any(p in ("", ".", "..") for p in parts) or (what == "name" and len(parts) > 1):
        raise CgroupError(f"invalid cgroup {what}: {name!r}", subject=name)


def _wait(predicate, timeout: float) -> bool:
    """Poll `predicate` with a short sleep; True when it held before `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(WAIT_STEP)


# -- the cgroup -----------------------------------------------------------------------------------------


@dataclass(slots=True)
class Cgroup:
    """One container's cgroup across hierarchies. `v1` maps controller -> directory (co-mounted share)."""

    name: str
    parent: str
    layout: Layout
    v1: dict[str, Path] = field(default_factory=dict)
    unified: Path | None = None

    # -- construction ---------------------------------------------------------------------------------

    @classmethod
    def _paths(cls, name: str, parent: str, layout: Layout) -> Cgroup:
        _check_name(name, "name")
        _check_name(parent, "parent")
        v1 = {c: Path(layout.v1[c], parent, name) for c in V1_CONTROLLERS if c in layout.v1}
        unified = Path(layout.unified, parent, name) if layout.unified else None
        return cls(name, parent, layout, v1, unified)

    @classmethod
    def create(cls, name: str, *, parent: str = DEFAULT_PARENT, layout: Layout | None = None) -> Cgroup:
        """Make the cgroup in every relevant hierarchy; on failure nothing of it is left behind."""
        group = cls._paths(name, parent, layout or detect_layout())
        mounts = dict.fromkeys(group.layout.v1[c] for c in group.v1)
        cpuset_mount = group.layout.v1.get("cpuset")
        made: list[Path] = []
        try:
            for mount in mounts:
                prepare = _v1_prepare(mount == cpuset_mount)
                made.append(_mkdir_chain(Path(mount), parent, name, prepare))
            if group.layout.unified is not None:
                prepare = _v2_prepare(group.layout.mode == "v2")
                made.append(_mkdir_chain(Path(group.layout.unified), parent, name, prepare))
        except BaseException:
            for directory in made:  # only what this call made: never someone else's cgroup
                _rmdir_tree(directory, 0.5)
            raise
        return group

    @classmethod
    def open_or_create(cls, name: str, *, parent: str = DEFAULT_PARENT) -> Cgroup:
        """The cgroup `name`, made if missing (a container's restart reuses its cgroup)."""
        try:
            return cls.open(name, parent=parent)
        except CgroupError:
            return cls.create(name, parent=parent)

    @classmethod
    def open(cls, name: str, *, parent: str = DEFAULT_PARENT, layout: Layout | None = None) -> Cgroup:
        """The existing cgroup `name` (after a restart of pycompose, to re-adopt a container)."""
        group = cls._paths(name, parent, layout or detect_layout())
        if not any(path.is_dir() for path in group.directories()):
            raise CgroupError("no such cgroup", subject=f"{parent}/{name}")
        return group

    def directories(self) -> list[Path]:
        """Each distinct directory of this cgroup (co-mounted controllers counted once)."""
        seen = dict.fromkeys(self.v1.values())
        if self.unified is not None:
            seen[self.unified] = None
        return list(seen)

    # -- limits ---------------------------------------------------------------------------------------

    def apply(self, resources: Resources, *, privileged: bool = False) -> None:
        """Write every limit of `resources` and the device allow-list (all devices when `privileged`);
        raises UnsupportedSetting naming what the host lacks.

        Pure v2 has no devices files: Docker (through runc) attaches an eBPF device program to the cgroup
        instead. That is OUT OF SCOPE here: on pure v2 no device list is enforced (a container keeping
        CAP_MKNOD could make and open a host device node). v1 and hybrid (this host) use devices.allow.
        """
        if self.layout.mode == "v2":
            writes, base = plan_v2(resources), None
        else:
            writes, base = plan_v1(resources), self.v1
            if "memory" in self.v1:
                current = _limit(_read(self.v1["memory"] / "memory.limit_in_bytes"))
                writes = order_memsw_v1(writes, current)
            if "devices" in self.v1:  # a v1 host without the devices hierarchy has no list to write
                writes = writes + plan_devices_v1(privileged)
        for w in writes:
            directory = self.unified if base is None else base.get(w.controller)
            if directory is None:
                raise UnsupportedSetting(f"the {w.controller} controller is not mounted", subject=w.setting)
            self._apply_one(directory / w.file, w)

    def _apply_one(self, path: Path, w: Write) -> None:
        try:
            _write(path, w.value)
        except FileNotFoundError as exc:
            raise UnsupportedSetting(f"{w.file} does not exist on this host", subject=w.setting) from exc
        except OSError as exc:
            detail = f"cannot write {w.value!r} to {path}: {exc.strerror}"
            raise CgroupError(detail, subject=w.setting) from exc

    # -- processes ------------------------------------------------------------------------------------

    def add(self, pid: int) -> None:
        """Move `pid` into the cgroup in every hierarchy."""
        for directory in self.directories():
            try:
                _write(directory / "cgroup.procs", str(pid))
            except OSError as exc:
                raise CgroupError(f"cannot add pid {pid}: {exc.strerror}", subject=str(directory)) from exc

    def _procs_dir(self) -> Path:
        if self.unified is not None:
            return self.unified
        for controller in ("pids", "memory", "freezer"):
            if controller in self.v1:
                return self.v1[controller]
        return next(iter(self.v1.values()))

    def pids(self) -> list[int]:
        """Process ids in the cgroup (empty when it is gone)."""
        text = _read(self._procs_dir() / "cgroup.procs") or ""
        return [int(line) for line in text.split()]

    def populated(self) -> bool:
        """True while any process is inside (v2 `populated` flag where we have one)."""
        if self.unified is not None:
            events = parse_flat_keyed(_read(self.unified / "cgroup.events") or "")
            if "populated" in events:
                return events["populated"] == 1
        return bool(self.pids())

    def kill_all(self, sig: int = signals.SIGKILL, *, timeout: float = 5.0) -> None:
        """Send `sig` to every process. For SIGKILL also wait until the cgroup is empty."""
        if sig == signals.SIGKILL and self._cgroup_kill():
            pass
        elif sig == signals.SIGKILL:
            self._kill_loop(timeout)
        else:
            self._signal_each(sig)
            return
        if not _wait(lambda: not self.populated(), timeout):
            raise CgroupError(f"processes still inside after {timeout}s: {self.pids()}", subject=self.name)

    def _cgroup_kill(self) -> bool:
        if self.unified is None or not (self.unified / "cgroup.kill").exists():
            return False
        _write(self.unified / "cgroup.kill", "1")
        return True

    def _signal_each(self, sig: int) -> None:
        for pid in self.pids():
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    def _kill_loop(self, timeout: float) -> None:
        """Freeze (so nothing forks meanwhile), signal all, thaw; repeat until empty."""
        can_freeze = "freezer" in self.v1
        deadline = time.monotonic() + timeout
        while self.pids() and time.monotonic() < deadline:
            if can_freeze:
                self.freeze()
            self._signal_each(signals.SIGKILL)
            if can_freeze:
                self.thaw()
            time.sleep(WAIT_STEP)

    # -- freezer --------------------------------------------------------------------------------------

    def freeze(self, timeout: float = 5.0) -> None:
        """Stop every process; returns once the kernel reports the cgroup FROZEN."""
        self._set_frozen(True, timeout)

    def thaw(self, timeout: float = 5.0) -> None:
        """Let every process run again."""
        self._set_frozen(False, timeout)

    def _set_frozen(self, frozen: bool, timeout: float) -> None:
        if "freezer" in self.v1:
            path, want = self.v1["freezer"] / "freezer.state", "FROZEN" if frozen else "THAWED"
            _write(path, want)
            done = _wait(lambda: (_read(path) or "").strip() == want, timeout)
        elif self.unified is not None and (self.unified / "cgroup.freeze").exists():
            _write(self.unified / "cgroup.freeze", "1" if frozen else "0")
            events = self.unified / "cgroup.events"
            done = _wait(lambda: parse_flat_keyed(_read(events) or "").get("frozen") == int(frozen), timeout)
        else:
            raise UnsupportedSetting("no freezer on this host", subject="pause")
        if not done:
            raise CgroupError(
                f"{'freeze' if frozen else 'thaw'} did not finish in {timeout}s", subject=self.name
            )

    # -- accounting -----------------------------------------------------------------------------------

    def oom_killed(self) -> bool:
        """True once the kernel's OOM killer has killed a process of this cgroup."""
        if "memory" in self.v1:
            counters = parse_flat_keyed(_read(self.v1["memory"] / "memory.oom_control") or "")
        elif self.unified is not None:
            counters = parse_flat_keyed(_read(self.unified / "memory.events") or "")
        else:
            counters = {}
        return counters.get("oom_kill", 0) > 0

    def stats(self) -> CgroupStats:
        """A sample of CPU, memory, pids and block I/O; fields the host does not account are None."""
        return self._stats_v2() if self.layout.mode == "v2" else self._stats_v1()

    def _stats_v1(self) -> CgroupStats:
        mem, cpuacct, pids = self.v1.get("memory"), self.v1.get("cpuacct"), self.v1.get("pids")
        blkio = self.v1.get("blkio")
        usage = _int(cpuacct / "cpuacct.usage") if cpuacct else None
        memory_stat = parse_flat_keyed(_read(mem / "memory.stat") or "") if mem else {}
        io_text = _read(blkio / "blkio.throttle.io_service_bytes_recursive") if blkio else None
        read, write = parse_blkio_v1(io_text) if io_text is not None else (None, None)
        return CgroupStats(
            cpu_usage_ns=usage,
            memory_usage=_int(mem / "memory.usage_in_bytes") if mem else None,
            memory_limit=_limit(_read(mem / "memory.limit_in_bytes")) if mem else None,
            memory_inactive_file=memory_stat.get("total_inactive_file"),
            pids_current=_int(pids / "pids.current") if pids else None,
            pids_limit=_limit(_read(pids / "pids.max")) if pids else None,
            blkio_read_bytes=read,
            blkio_write_bytes=write,
        )

    def _stats_v2(self) -> CgroupStats:
        d = self.unified
        assert d is not None
        cpu = parse_flat_keyed(_read(d / "cpu.stat") or "")
        memory_stat = parse_flat_keyed(_read(d / "memory.stat") or "")
        io_text = _read(d / "io.stat")
        read, write = parse_io_stat_v2(io_text) if io_text is not None else (None, None)
        return CgroupStats(
            cpu_usage_ns=cpu["usage_usec"] * 1000 if "usage_usec" in cpu else None,
            memory_usage=_int(d / "memory.current"),
            memory_limit=_limit(_read(d / "memory.max")),
            memory_inactive_file=memory_stat.get("inactive_file"),
            pids_current=_int(d / "pids.current"),
            pids_limit=_limit(_read(d / "pids.max")),
            blkio_read_bytes=read,
            blkio_write_bytes=write,
        )

    # -- removal --------------------------------------------------------------------------------------

    def remove(self, timeout: float = 1.0) -> None:
        """rmdir in every hierarchy, waiting up to `timeout` for exiting processes; raises if one stays."""
        busy = [str(d) for d in self.directories() if not _rmdir_tree(d, timeout)]
        if busy:
            raise CgroupError(f"still has processes, not removed: {', '.join(busy)}", subject=self.name)


def _int(path: Path) -> int | None:
    text = _read(path)
    return int(text) if text is not None and text.strip().lstrip("-").isdigit() else None


def _mkdir_chain(root: Path, parent: str, name: str, prepare) -> Path:
    """mkdir each missing ancestor under the mount `root`, then the cgroup itself, which must be new.

    `prepare(directory)` runs on every level before its child is made (cpuset copy, subtree_control).
    """
    directory = root
    prepare(directory, is_root=True, is_leaf=False)
    for part in parent.split("/"):
        directory = directory / part
        try:
            directory.mkdir()
        except FileExistsError:
            pass
        prepare(directory, is_root=False, is_leaf=False)
    directory = directory / name
    try:
        directory.mkdir()
    except FileExistsError:
        raise CgroupError("cgroup already exists", subject=str(directory)) from None
    try:
        prepare(directory, is_root=False, is_leaf=True)
    except BaseException:
        directory.rmdir()
        raise
    return directory


def _v1_prepare(cpuset: bool):
    """A new cpuset dir is unusable (ENOSPC on join) until cpus and mems are copied from its parent."""

    def prepare(directory: Path, is_root: bool, is_leaf: bool) -> None:
        if cpuset and not is_root:
            _copy_cpuset(directory)

    return prepare


def _copy_cpuset(directory: Path) -> None:
    for knob in ("cpuset.cpus", "cpuset.mems"):
        if not (_read(directory / knob) or "").strip():
            _write(directory / knob, (_read(directory.parent / knob) or "").strip())


def _v2_prepare(enable: bool):
    """On pure v2, each ancestor must enable our controllers in its subtree_control for the child.

    Never the leaf: a v2 cgroup with controllers enabled for children may hold no processes.
    """

    def prepare(directory: Path, is_root: bool, is_leaf: bool) -> None:
        if enable and not is_leaf:
            _enable_controllers(directory)

    return prepare


def _enable_controllers(directory: Path) -> None:
    available = set((_read(directory / "cgroup.controllers") or "").split())
    enabled = set((_read(directory / "cgroup.subtree_control") or "").split())
    missing = [c for c in V2_CONTROLLERS if c in available and c not in enabled]
    if missing:
        _write(directory / "cgroup.subtree_control", " ".join(f"+{c}" for c in missing))


def _rmdir_tree(directory: Path, timeout: float) -> bool:
    """Remove `directory` and any sub-cgroups a container made, deepest first; False if still busy."""
    if not directory.is_dir():
        return True
    for child in sorted(_subdirs(directory), key=lambda p: len(p.parts), reverse=True):
        _rmdir_wait(child, timeout)
    return _rmdir_wait(directory, timeout)


def _subdirs(directory: Path) -> Iterable[Path]:
    for root, dirs, _files in os.walk(directory):
        for name in dirs:
            yield Path(root, name)


def _rmdir_wait(directory: Path, timeout: float) -> bool:
    def attempt() -> bool:
        try:
            os.rmdir(directory)
        except FileNotFoundError:
            return True
        except OSError as exc:
            if exc.errno in (errno.EBUSY, errno.ENOTEMPTY):
                return False
            raise CgroupError(f"cannot remove: {exc.strerror}", subject=str(directory)) from exc
        return True

    return _wait(attempt, timeout)


def remove_parent(parent: str = DEFAULT_PARENT, layout: Layout | None = None) -> None:
    """Remove the shared parent cgroup in every hierarchy if no container uses it any more."""
    _check_name(parent, "parent")
    layout = layout or detect_layout()
    roots = set(layout.v1.values()) | ({layout.unified} if layout.unified else set())
    for root in roots:
        try:
            os.rmdir(Path(root, parent))
        except (FileNotFoundError, OSError):
            pass
