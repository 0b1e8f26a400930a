"""Shared host mounts of `local` volumes with driver_opts (tmpfs, nfs, any `type`), as Docker's local driver.

Such a volume is mounted ONCE on the host at `volumes/<name>/_data` when the first container that uses it
starts, every container bind-mounts that directory, and it is unmounted when the last one has stopped. So
two containers see the same tmpfs. (`o=bind` volumes need no host mount: the device directory is shared
by nature and is bound directly.)

"In use" is never a counter that a crash could leave wrong. Each start leaves a holder file
`volumes/<name>/holders/<container id>`; a holder counts only while it is real:
- its container is running: the container row says running/paused/restarting AND its PID 1's mount table
  (/proc/<pid>/mountinfo) holds the volume's filesystem (same device number), which also guards against
  a reused pid; or
- it is fresh (younger than START_GRACE): acquired for a start whose PID is not recorded yet.
A sweep (on every acquire, release, remove, prune, and `sweep_all` for the supervisor's start) deletes
holders that are not real and unmounts a volume that has none left. A crashed supervisor therefore leaks
a mount at most until the next command touches the volume.

Known limit: the mount is made on the state root's mount as it is; when that is a shared mount (systemd's
default for /), services with a slave mount namespace receive a copy that keeps the filesystem alive until
they exit (our unmount still removes ours). Docker has the same behaviour for its volumes directory.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from pathlib import Path

from engine.errors import VolumeError
from engine.state.db import Database
from engine.state.root import StateRoot

START_GRACE = 60.0  # seconds an acquire counts before its container's PID must show up
HOLDERS = "holders"
_RUNNING = ("running", "paused", "restarting")
_MOUNT_TIMEOUT = 60.0  # nfs can be slow; a hung server must not hang the supervisor forever


def needs_host_mount(options: dict[str, str] | object) -> bool:
    """True for driver_opts that describe a filesystem to mount (anything but none and `o=bind`)."""
    opts = dict(options)  # type: ignore[call-overload]
    flags = {f.strip() for f in opts.get("o", "").split(",")}
    return bool(opts) and not ({"bind", "rbind"} & flags)


class HostMounts:
    """The host-side mounts of one state root's volumes; every change holds the volume's mount lock."""

    def __init__(self, root: StateRoot, db: Database, volumes_dir: Path) -> None:
        self.root = root
        self.db = db
        self.volumes_dir = volumes_dir

    # -- the two calls around a container's life ----------------------------------------------------

    def acquire(self, container_id: str, volumes: Iterable[tuple[str, dict[str, str]]]) -> list[str]:
        """Before spawn: hold each (name, driver_opts) volume for `container_id`, mounting it if needed.

        Returns the names held. On a failure what this call held is released again and VolumeError raised.
        """
        _check_id(container_id)
        held: list[str] = []
        try:
            for name, options in volumes:
                if needs_host_mount(options) and name not in held:
                    self._acquire_one(container_id, name, options)
                    held.append(name)
        except BaseException:
            for name in held:
                self.release_one(container_id, name)
            raise
        return held

    def release(self, container_id: str) -> list[str]:
        """After the container's exit: drop its holders; unmount volumes nobody else really holds.

        Idempotent (a second call, or one for a container that held nothing, does nothing)."""
        _check_id(container_id)
        released = []
        for holder in sorted(self.volumes_dir.glob(f"*/{HOLDERS}/{container_id}")):
            name = holder.parent.parent.name
            self.release_one(container_id, name)
            released.append(name)
        return released

    def release_one(self, container_id: str, name: str) -> None:
        with self.root.lock(_lock_name(name)):
            _unlink(self._holders(name) / container_id)
            self._sweep_locked(name)

    # -- sweeping -------------------------------------------------------------------------------------

    def sweep(self, name: str) -> bool:
        """Drop holders that are not real; unmount when none is left. Returns whether it is mounted."""
        with self.root.lock(_lock_name(name)):
            return self._sweep_locked(name)

    def sweep_all(self) -> list[str]:
        """Sweep every volume that has a holders directory; returns the names still mounted."""
        if not self.volumes_dir.is_dir():
            return []
        return [
            d.parent.name for d in sorted(self.volumes_dir.glob(f"*/{HOLDERS}")) if self.sweep(d.parent.name)
        ]

    def is_mounted(self, name: str) -> bool:
        return os.path.ismount(self.data(name))

    def holders(self, name: str) -> list[str]:
        """Container ids with a holder file (real or not: `sweep` decides)."""
        directory = self._holders(name)
        return sorted(p.name for p in directory.iterdir()) if directory.is_dir() else []

    # -- internals ------------------------------------------------------------------------------------

    def data(self, name: str) -> Path:
        return self.volumes_dir / name / "_data"

    def _holders(self, name: str) -> Path:
        return self.volumes_dir / name / HOLDERS

    def _acquire_one(self, container_id: str, name: str, options: dict[str, str]) -> None:
        with self.root.lock(_lock_name(name)):
            self._sweep_locked(name)  # a crash's leftover is unmounted, so this start gets a fresh one
            holders = self._holders(name)
            holders.mkdir(mode=0o700, exist_ok=True)
            (holders / container_id).write_text(f"{os.getpid()}\n")  # a fresh mtime starts the grace
            if not self.is_mounted(name):
                try:
                    _mount(options, self.data(name))
                except BaseException:
                    _unlink(holders / container_id)
                    raise

    def _sweep_locked(self, name: str) -> bool:
        mounted = self.is_mounted(name)
        device = _device(self.data(name)) if mounted else None
        live = False
        for cid in self.holders(name):
            if self._holder_is_real(name, cid, device):
                live = True
            else:
                _unlink(self._holders(name) / cid)
        if mounted and not live:
            _umount(self.data(name))
            return False
        return mounted

    def _holder_is_real(self, name: str, container_id: str, device: str | None) -> bool:
        holder = self._holders(name) / container_id
        try:
            age = time.time() - holder.stat().st_mtime
        except FileNotFoundError:
            return False
        if 0 <= age < START_GRACE:
            return True
        return device is not None and self._container_has(container_id, device)

    def _container_has(self, container_id: str, device: str) -> bool:
        row = self.db.query_one("SELECT state, pid FROM containers WHERE id = ?", (container_id,))
        if row is None or row["state"] not in _RUNNING or not row["pid"]:
            return False
        return device in _mounted_devices(int(row["pid"]))


# -- kernel side ---------------------------------------------------------------------------------------


def _mount(options: dict[str, str], target: Path) -> None:
    """`mount -t <type> -o <o> <device> <target>` (mount(8), so nfs and other helpers work as Docker's)."""
    command = ["mount", "-t", options.get("type", ""), "-o", options.get("o", "") or "defaults"]
    command += [options.get("device", "") or options.get("type", ""), str(target)]
    _run(command, target.parent.name, "mount")


def _umount(target: Path) -> None:
    """Unmount; a busy mount (a host shell in it) is detached lazily so the next start gets a fresh one."""
    try:
        _run(["umount", str(target)], target.parent.name, "unmount")
    except VolumeError:
        _run(["umount", "-l", str(target)], target.parent.name, "unmount")


def _run(command: list[str], name: str, what: str) -> None:
    import subprocess  # here only: ~5 ms of imports every CLI that lists containers skips

    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=_MOUNT_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise VolumeError(f"cannot {what} the volume: {exc}", subject=name) from exc
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip() or f"exit {done.returncode}"
        raise VolumeError(f"cannot {what} the volume: {detail}", subject=name)


def _device(path: Path) -> str:
    """The "major:minor" mountinfo shows for the filesystem at `path`."""
    dev = os.stat(path).st_dev
    return f"{os.major(dev)}:{os.minor(dev)}"


def _mounted_devices(pid: int) -> set[str]:
    """Device numbers of every mount in the mount namespace of `pid` (empty when it is gone)."""
    try:
        text = Path(f"/proc/{pid}/mountinfo").read_text()
    except OSError:
        return set()
    return {fields[2] for line in text.splitlines() if len(fields := line.split()) > 2}


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def _check_id(container_id: str) -> None:
    if not container_id or "/" in container_id or container_id.startswith("."):
        raise VolumeError(f"bad container id {container_id!r}", subject=container_id)


def _lock_name(name: str) -> str:
    import hashlib  # OpenSSL's, ~4 ms to load: only for volumes with filesystem options

    return "volume-mount-" + hashlib.sha256(name.encode()).hexdigest()[:16]
