"""A tiny busybox root filesystem for container tests, built once per machine and cached.

Built from Debian's `busybox-static` (/bin/busybox) with one symlink per applet, /etc/passwd with `root`
and `app` (uid 1000), /etc/group with `app` also in `staff` (gid 50). Cached in
/var/cache/pycompose-test/busybox-rootfs-<version>, built in a temp dir and renamed into place, so
concurrent test sessions never see half a tree. Tests use it as the single overlayfs lower layer and never
write to it (the overlay's upper dir takes every write).
"""

from __future__ import annotations

import functools
import io
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

import pytest

BUSYBOX = Path("/bin/busybox")
CACHE = Path("/var/cache/pycompose-test")
VERSION = "1"
PASSWD = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n"
GROUP = "root:x:0:\nstaff:x:50:app\napp:x:1000:\n"


@functools.cache
def busybox_tar() -> bytes:
    """The root filesystem as an uncompressed tar, for `import_rootfs` / `import_image` (made once)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add(busybox_rootfs(), arcname=".")
    return buffer.getvalue()


def busybox_rootfs() -> Path:
    """The cached root filesystem directory (built on first use)."""
    target = CACHE / f"busybox-rootfs-{VERSION}"
    if target.is_dir():
        return target
    if not BUSYBOX.exists():
        pytest.skip("busybox-static is not installed (apt-get install -y busybox-static)")
    CACHE.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="pyc-test-rootfs-", dir=CACHE))
    try:
        _build(staging)
        os.chmod(staging, 0o755)
        os.rename(staging, target)
    except OSError:
        if not target.is_dir():
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _build(root: Path) -> None:
    for directory in ("bin", "etc", "proc", "sys", "dev", "tmp", "root", "home/app", "usr/bin", "sbin"):
        (root / directory).mkdir(parents=True, exist_ok=True)
    os.chmod(root / "tmp", 0o1777)
    os.chown(root / "home/app", 1000, 1000)
    shutil.copy2(BUSYBOX, root / "bin/busybox")
    applets = subprocess.run([str(BUSYBOX), "--list"], check=True, capture_output=True, text=True).stdout
    for applet in applets.split():
        if applet != "busybox":
            (root / "bin" / applet).symlink_to("busybox")
    (root / "etc/passwd").write_text(PASSWD)
    (root / "etc/group").write_text(GROUP)


def run_to_end(manager, record: dict) -> tuple[int, str]:  # type: ignore[no-untyped-def]
    """Start a created container (no cgroup), read its output to the end, reap it: (exit code, output)."""
    import contextlib
    import signal

    from engine.containers import spawn

    spec = manager.spec_of(record)
    read, write = os.pipe()
    pid = None
    try:
        pid = spawn.start(spec, manager.root, stdio=(0, write, write), volumes=manager.volume_sources(spec))
        os.close(write)
        write = -1
        chunks = []
        while chunk := os.read(read, 65536):
            chunks.append(chunk)
        code = spawn.wait(pid)
        pid = None
        return code, b"".join(chunks).decode()
    finally:
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                spawn.wait(pid)
        for fd in (read, write):
            if fd >= 0:
                os.close(fd)
