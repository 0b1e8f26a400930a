"""The container's filesystem: per-container directories on the host, then the mount namespace inside.

Two halves:
- host side, before the fork (`prepare`, `cleanup`): `<root>/containers/<id>/{upper,work,merged}` and the
  generated `hostname`, `hosts`, `resolv.conf` next to them;
- inside a fresh mount namespace, in the container's PID 1 before exec (`enter`): the ordered steps
  below. Nothing here ever touches the host's mounts: `/` is made rprivate first, and everything is
  mounted under `merged` which `pivot_root` then turns into `/`.

Steps of `enter`, in order (what runc does, in fewer lines):
 1. `/` recursively private (pivot_root fails with EINVAL under a shared parent; no leak to the host);
 2. overlayfs on `merged` (lower = image layers, top first);
 3. /proc, /sys (sysfs only in its own netns, else a read-only bind of the host's), /dev (tmpfs with
    device nodes, pts newinstance, shm, mqueue; with `init: true` tini's static binary bound read-only
    at /dev/init, as Docker does);
 4. the spec's mounts (bind with propagation and read-only, volume — a host directory, or a filesystem
    such as tmpfs from the volume's driver_opts — and tmpfs), then /etc/hostname,
    /etc/hosts, /etc/resolv.conf, each as a bind of the generated file;
 5. pivot_root into `merged`, detach the old root;
 6. the spec's namespaced sysctls (checked by `security.plan_security`), Docker's masked and read-only
    paths, then the read-only root if asked.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import stat
from collections.abc import Mapping, Sequence
from pathlib import Path

from engine.containers import syscalls as sc
from engine.containers.spec import ContainerSpec, Mount, NetworkSetup
from engine.errors import ContainerStartError
from engine.frozen import frozen
from engine.state.root import StateRoot, remove_tree

# Docker's defaults (moby oci/defaults.go): hidden, and read-only, kernel interfaces.
MASKED_PATHS = (
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
)
READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")

# (name, major, minor): the character devices every container gets, mode 0666 like Docker's.
DEVICES = (("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9), ("tty", 5, 0))
DEV_LINKS = (
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
    ("ptmx", "pts/ptmx"),
    ("core", "/proc/kcore"),
)
DEFAULT_DNS = ("8.8.8.8", "8.8.4.4")  # Docker's fallback when the host only has loopback resolvers
HOSTS_BASE = (
    "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\n"
    "ff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n"
)
NOSUID_NODEV_NOEXEC = sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC
PROPAGATION = {
    "private": sc.MS_PRIVATE,
    "rprivate": sc.MS_PRIVATE | sc.MS_REC,
    "shared": sc.MS_SHARED,
    "rshared": sc.MS_SHARED | sc.MS_REC,
    "slave": sc.MS_SLAVE,
    "rslave": sc.MS_SLAVE | sc.MS_REC,
}
FLAG_OPTIONS = {
    "nosuid": sc.MS_NOSUID,
    "nodev": sc.MS_NODEV,
    "noexec": sc.MS_NOEXEC,
    "noatime": sc.MS_NOATIME,
    "ro": sc.MS_RDONLY,
}
MAX_MOUNT_DATA = 4000  # the kernel copies one page of mount options
INIT_BINARY = "/usr/bin/tini-static"  # Debian's `tini`: static, so it runs in any image (docker-init is tini)
INIT_PATH = "/dev/init"

# What spawn.start's `volumes` maps a volume name to: its host directory, or VolumeStore.mount_source()'s
# (type, source, options) for a volume with driver_opts (a tmpfs, or an `o=bind` device with flags).
VolumeSource = str | tuple[str, str, tuple[str, ...]]


@frozen
class ContainerPaths:
    """Where one container's writable layer and generated files live on the host."""

    base: Path

    @property
    def upper(self) -> Path:
        return self.base / "upper"

    @property
    def work(self) -> Path:
        return self.base / "work"

    @property
    def merged(self) -> Path:
        return self.base / "merged"

    def etc_file(self, name: str) -> Path:
        return self.base / name


def container_paths(root: StateRoot, container_id: str) -> ContainerPaths:
    """`<root>/containers/<id>`; the id must be a plain name (it becomes a directory)."""
    if not container_id or "/" in container_id or container_id.startswith("."):
        raise ContainerStartError("bad container id", subject=container_id)
    return ContainerPaths(root.path / "containers" / container_id)


# -- host side -------------------------------------------------------------------------------------


def make_dirs(root: StateRoot, container_id: str) -> ContainerPaths:
    """Create the container's upper/work/merged directories (idempotent). What `create` needs: the
    /etc files are written at each start, by `prepare`, as Docker writes them."""
    paths = container_paths(root, container_id)
    paths.base.mkdir(parents=True, exist_ok=True, mode=0o710)
    paths.work.mkdir(exist_ok=True, mode=0o700)
    for directory in (paths.upper, paths.merged):  # upper's mode is the container's "/": keep it 0755
        directory.mkdir(exist_ok=True)
        os.chmod(directory, 0o755)
    return paths


def prepare(spec: ContainerSpec, root: StateRoot, network: NetworkSetup | None = None) -> ContainerPaths:
    """The directories (make_dirs) and hostname, hosts and resolv.conf (idempotent: a restart reuses).

    `network` adds the container's own addresses to /etc/hosts and points resolv.conf at our DNS.
    """
    paths = make_dirs(root, spec.id)
    hostname = container_hostname(spec)
    _write(paths.etc_file("hostname"), hostname + "\n")
    _write(paths.etc_file("hosts"), hosts_text(spec, hostname, network))
    _write(paths.etc_file("resolv.conf"), resolv_text(spec, _read_host("/etc/resolv.conf"), network))
    return paths


def cleanup(root: StateRoot, container_id: str) -> None:
    """Remove the container's directories (its mounts died with its mount namespace); safe to repeat."""
    paths = container_paths(root, container_id)
    if os.path.ismount(paths.merged):  # only if someone mounted it in the host namespace by hand
        sc.umount2(str(paths.merged), sc.MNT_DETACH)
    remove_tree(paths.base)


def container_hostname(spec: ContainerSpec) -> str:
    """The hostname: the spec's, the host's for host networking, else the first 12 characters of the id."""
    if spec.hostname:
        return spec.hostname
    if spec.network_mode == "host":
        return os.uname().nodename
    return spec.id[:12]


def hosts_text(spec: ContainerSpec, hostname: str, network: NetworkSetup | None = None) -> str:
    """/etc/hosts: the host's for host networking, else the loopback entries; then extra_hosts; then
    the container's own addresses with its names (Docker's order)."""
    text = _read_host("/etc/hosts") if spec.network_mode == "host" else HOSTS_BASE
    if text and not text.endswith("\n"):
        text += "\n"
    text += "".join(f"{address}\t{name}\n" for name, address in spec.extra_hosts)
    if network is not None:
        text += "".join(f"{address}\t{names}\n" for address, names in network.hosts)
    return text


def resolv_text(spec: ContainerSpec, host_resolv: str, network: NetworkSetup | None = None) -> str:
    """/etc/resolv.conf as Docker writes it: spec dns/search/options override the host's lines.

    On our networks the nameserver is our responder (which forwards `dns:` servers and the host's), as
    Docker's embedded 127.0.0.11 is; `dns:` is then served through it, not written here.
    """
    servers, search, options = _parse_resolv(host_resolv)
    if spec.network_mode != "host":
        servers = [s for s in servers if not _is_loopback(s)] or list(DEFAULT_DNS)
    servers = (
        list(network.nameservers)
        if network is not None and network.nameservers
        else (list(spec.dns) or servers)
    )
    search = list(spec.dns_search) or search
    options = list(spec.dns_options) or options
    lines = [f"nameserver {s}" for s in servers]
    if search:
        lines.append("search " + " ".join(search))
    if options:
        lines.append("options " + " ".join(options))
    return "\n".join(lines) + "\n"


def _parse_resolv(text: str) -> tuple[list[str], list[str], list[str]]:
    servers: list[str] = []
    search: list[str] = []
    options: list[str] = []
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if len(words) >= 2 and words[0] == "nameserver":
            servers.append(words[1])
        elif words and words[0] in ("search", "domain"):
            search = words[1:]
        elif words and words[0] == "options":
            options += words[1:]
    return servers, search, options


def _is_loopback(address: str) -> bool:
    return address.startswith("127.") or address == "::1"


def _read_host(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def _write(path: Path, text: str) -> None:
    """Replace the file's content in place: a running container's bind mount keeps seeing the same inode."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


# -- inside the new mount namespace ----------------------------------------------------------------


def enter(
    spec: ContainerSpec,
    paths: ContainerPaths,
    volumes: Mapping[str, VolumeSource] | None = None,
    *,
    console: str | None = None,
    sysctls: Sequence[tuple[str, str]] = (),
) -> None:
    """Steps 1-6 of the module docstring. Run in the container's PID 1, after unshare(CLONE_NEWNS)."""
    # the spawn side only (seccomp and capabilities come with it); imported before pivot_root, after
    # which the host's files are out of reach
    from engine.containers import security

    merged = str(paths.merged)
    _step("make / private", sc.mount, None, "/", None, sc.MS_REC | sc.MS_PRIVATE)
    _step("mount overlay root", mount_overlay, spec.layer_dirs, paths)
    _step("mount /proc", _mount_proc, merged)
    _step("mount /sys", _mount_sys, merged, spec.network_mode != "host")
    _step("mount /dev", _mount_dev, merged, spec.shm_size, console)
    if spec.process.init:
        _step("mount /dev/init", _bind_init, merged)
    for mount in spec.mounts:
        _step(f"mount {mount.target}", mount_one, merged, mount, volumes or {})
    for name in ("hostname", "hosts", "resolv.conf"):
        _step(f"mount /etc/{name}", _bind_file, str(paths.etc_file(name)), merged, f"/etc/{name}")
    _step("pivot_root", enter_root, merged)
    _step("sysctls", security.apply_sysctls, sysctls)  # before /proc/sys turns read-only
    _step("mask paths", mask_paths, MASKED_PATHS)
    _step("read-only paths", readonly_paths, READONLY_PATHS)
    if spec.security.read_only_rootfs:
        _step("read-only root", sc.mount, None, "/", None, sc.MS_BIND | sc.MS_REMOUNT | sc.MS_RDONLY)


def _step(what: str, func, *args) -> None:  # type: ignore[no-untyped-def]
    """Run one step; an OSError becomes a ContainerStartError naming the step."""
    try:
        func(*args)
    except OSError as exc:
        raise ContainerStartError(f"{what}: {exc}", subject=what) from exc


def mount_overlay(layer_dirs: tuple[str, ...], paths: ContainerPaths) -> None:
    """overlayfs on merged; with many layers, lower dirs relative to their common parent (page limit)."""
    if not layer_dirs:
        raise ContainerStartError("no image layers to mount", subject=str(paths.merged))
    lower = ":".join(layer_dirs)
    data = f"lowerdir={lower},upperdir={paths.upper},workdir={paths.work}"
    if len(data) <= MAX_MOUNT_DATA:
        sc.mount("overlay", str(paths.merged), "overlay", 0, data)
        return
    parent = os.path.commonpath(layer_dirs)
    relative = ":".join(os.path.relpath(d, parent) for d in layer_dirs)
    cwd = os.open(".", os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.chdir(parent)
        data = f"lowerdir={relative},upperdir={paths.upper},workdir={paths.work}"
        sc.mount("overlay", str(paths.merged), "overlay", 0, data)
    finally:
        os.fchdir(cwd)
        os.close(cwd)


def _mount_proc(merged: str) -> None:
    target = _mkdir_in(merged, "/proc")
    sc.mount("proc", target, "proc", NOSUID_NODEV_NOEXEC)


def _mount_sys(merged: str, own_netns: bool) -> None:
    """sysfs read-only when the container has its own network namespace, else a read-only bind."""
    target = _mkdir_in(merged, "/sys")
    flags = NOSUID_NODEV_NOEXEC | sc.MS_RDONLY
    if own_netns:
        sc.mount("sysfs", target, "sysfs", flags)
        return
    sc.mount("/sys", target, None, sc.MS_BIND)  # not recursive: the host's cgroup mounts stay out
    sc.mount(None, target, None, sc.MS_BIND | sc.MS_REMOUNT | flags)


def _mount_dev(merged: str, shm_size: int, console: str | None) -> None:
    """A tmpfs /dev with Docker's device nodes and links, its own pts instance, shm and mqueue."""
    dev = _mkdir_in(merged, "/dev")
    sc.mount("tmpfs", dev, "tmpfs", sc.MS_NOSUID | sc.MS_STRICTATIME, "mode=755,size=65536k")
    for name, major, minor in DEVICES:
        path = f"{dev}/{name}"
        os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(major, minor))
        os.chmod(path, 0o666)  # mknod is subject to the umask
    for name, target in DEV_LINKS:
        os.symlink(target, f"{dev}/{name}")
    os.mkdir(f"{dev}/pts", 0o755)
    pts_data = "newinstance,ptmxmode=0666,mode=0620,gid=5"
    sc.mount("devpts", f"{dev}/pts", "devpts", sc.MS_NOSUID | sc.MS_NOEXEC, pts_data)
    os.mkdir(f"{dev}/shm", 0o1777)
    sc.mount("shm", f"{dev}/shm", "tmpfs", NOSUID_NODEV_NOEXEC, f"mode=1777,size={shm_size}")
    os.mkdir(f"{dev}/mqueue", 0o755)
    sc.mount("mqueue", f"{dev}/mqueue", "mqueue", NOSUID_NODEV_NOEXEC)
    if console:  # Docker gives /dev/console only to containers with a terminal: that terminal
        open(f"{dev}/console", "w").close()
        sc.mount(console, f"{dev}/console", None, sc.MS_BIND)


def _bind_init(merged: str) -> None:
    """tini's static binary, read-only at /dev/init (on the /dev tmpfs, so the image is not touched)."""
    target = _target_like(merged, INIT_PATH, INIT_BINARY)
    sc.mount(INIT_BINARY, target, None, sc.MS_BIND)
    sc.mount(None, target, None, sc.MS_BIND | sc.MS_REMOUNT | sc.MS_RDONLY | sc.MS_NOSUID | sc.MS_NODEV)


def bind_console(slave: str) -> None:
    """After pivot_root: /dev/console becomes the container's terminal (a pty of its own devpts)."""
    open("/dev/console", "a").close()
    sc.mount(slave, "/dev/console", None, sc.MS_BIND)


def mount_one(merged: str, mount: Mount, volumes: Mapping[str, VolumeSource]) -> None:
    """One spec mount under merged: bind (with propagation), volume (host dir, or the filesystem its
    driver_opts describe), tmpfs."""
    if mount.type == "tmpfs":
        _mount_fs(merged, mount, "tmpfs", "tmpfs", ())
        return
    source = volumes.get(mount.source or "") if mount.type == "volume" else None
    if isinstance(source, tuple):
        kind, device, options = source
        if kind != "bind":
            if mount.subpath:
                raise ContainerStartError("subpath needs a volume with host files", subject=mount.target)
            _mount_fs(merged, mount, kind, device, options)
            return
        volumes = {**volumes, mount.source or "": device}
        mount = dataclasses.replace(mount, options=options + mount.options)
    _mount_bind(merged, mount, volumes)


def _mount_fs(merged: str, mount: Mount, fstype: str, device: str, options: tuple[str, ...]) -> None:
    """A filesystem of its own (tmpfs, or a volume's type/device/o): flags from the words, the rest data."""
    base = NOSUID_NODEV_NOEXEC if fstype == "tmpfs" else 0
    flags, data = _split_options(options + mount.options, base)
    target = _mkdir_in(merged, mount.target)
    ro = sc.MS_RDONLY if mount.read_only else 0
    sc.mount(device or fstype, target, fstype, flags | ro, ",".join(data) or None)


def _mount_bind(merged: str, mount: Mount, volumes: Mapping[str, VolumeSource]) -> None:
    source = _mount_source(mount, volumes)
    target = _target_like(merged, mount.target, source)
    flags, _ = _split_options(mount.options, 0)
    sc.mount(source, target, None, sc.MS_BIND | sc.MS_REC)
    propagation = next((PROPAGATION[o] for o in mount.options if o in PROPAGATION), PROPAGATION["rprivate"])
    sc.mount(None, target, None, propagation)
    if mount.read_only or flags:
        ro = sc.MS_RDONLY if mount.read_only else 0
        sc.mount(None, target, None, sc.MS_BIND | sc.MS_REMOUNT | flags | ro)


def _mount_source(mount: Mount, volumes: Mapping[str, VolumeSource]) -> str:
    """The host path to bind: the bind source, or the volume's directory the caller resolved."""
    if mount.type == "volume":
        found = volumes.get(mount.source or "")
        if not isinstance(found, str):
            raise ContainerStartError("no host directory given for volume", subject=str(mount.source))
        source = found
    elif mount.type == "bind" and mount.source:
        source = mount.source
        if not os.path.exists(source):
            if not mount.create_host_path:
                raise ContainerStartError("bind source path does not exist", subject=source)
            os.makedirs(source, exist_ok=True)
    else:
        raise ContainerStartError(f"unsupported mount type {mount.type!r}", subject=mount.target)
    if mount.subpath:
        base = os.path.realpath(source)
        source = os.path.realpath(os.path.join(base, mount.subpath.lstrip("/")))
        if source != base and not source.startswith(base + os.sep):
            raise ContainerStartError("subpath leaves its volume", subject=mount.subpath)
    return source


def _split_options(options: tuple[str, ...], flags: int) -> tuple[int, list[str]]:
    """Mount flags from words like "ro"/"noexec"; other words (size=, mode=) are filesystem data."""
    data: list[str] = []
    for option in options:
        if option in FLAG_OPTIONS:
            flags |= FLAG_OPTIONS[option]
        elif option == "exec":
            flags &= ~sc.MS_NOEXEC
        elif option not in PROPAGATION and option not in ("rbind", "bind", "rw", "z", "Z"):
            data.append(option)
    return flags, data


def _bind_file(source: str, merged: str, target: str) -> None:
    sc.mount(source, _target_like(merged, target, source), None, sc.MS_BIND)


def enter_root(merged: str) -> None:
    """pivot_root(".", ".") in merged, then lazily detach the old root stacked underneath."""
    os.chdir(merged)
    sc.pivot_root(".", ".")
    sc.mount(None, ".", None, sc.MS_REC | sc.MS_SLAVE)  # no unmount event reaches the host
    sc.umount2(".", sc.MNT_DETACH)
    os.chdir("/")


def mask_paths(paths: tuple[str, ...]) -> None:
    """Hide: /dev/null over files, an empty read-only tmpfs over directories; absent paths are skipped."""
    for path in paths:
        try:
            is_dir = stat.S_ISDIR(os.stat(path).st_mode)
        except (FileNotFoundError, PermissionError):
            continue
        if is_dir:
            sc.mount("tmpfs", path, "tmpfs", sc.MS_RDONLY)
        else:
            sc.mount("/dev/null", path, None, sc.MS_BIND)


def readonly_paths(paths: tuple[str, ...]) -> None:
    """Bind each path onto itself, then remount that bind read-only (keeping nosuid/nodev/noexec)."""
    for path in paths:
        try:
            sc.mount(path, path, None, sc.MS_BIND | sc.MS_REC)
        except FileNotFoundError:
            continue
        sc.mount(None, path, None, sc.MS_BIND | sc.MS_REMOUNT | sc.MS_RDONLY | NOSUID_NODEV_NOEXEC)


# -- paths inside the container root that cannot escape it -----------------------------------------


def resolve_in(root: str, path: str, *, max_links: int = 40) -> str:
    """`path` inside `root` with symlinks resolved as if `root` were `/` (an image cannot point us out)."""
    parts = [p for p in path.split("/") if p not in ("", ".")]
    done: list[str] = []
    links = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if done:
                done.pop()
            continue
        candidate = os.path.join(root, *done, part)
        try:
            target = os.readlink(candidate)
        except OSError:  # not a link, or missing: keep it as is
            done.append(part)
            continue
        links += 1
        if links > max_links:
            raise OSError(errno.ELOOP, "too many levels of symbolic links", path)
        if target.startswith("/"):
            done = []
        parts = [p for p in target.split("/") if p not in ("", ".")] + parts
    return os.path.join(root, *done)


def _mkdir_in(root: str, path: str) -> str:
    """Create a directory inside the root (safely resolved) and return its host path."""
    target = resolve_in(root, path)
    os.makedirs(target, mode=0o755, exist_ok=True)
    return target


def _target_like(root: str, path: str, source: str) -> str:
    """A mount point inside the root of the same kind (file or directory) as `source`."""
    target = resolve_in(root, path)
    if os.path.isdir(source):
        os.makedirs(target, mode=0o755, exist_ok=True)
    elif not os.path.exists(target):
        os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
        open(target, "a").close()
    return target
