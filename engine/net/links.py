"""The kernel side of networks: rtnetlink through engine/net/rtnl (pyroute2's message classes, imported
lazily: ~0.04 s), sysfs, ioctls. CONTRACT (owner: N2).

Every function is idempotent where it says so, so a crashed half-done operation can simply be redone
or undone. Namespaces: `setns` around a netlink socket made in the namespace.
Call from a single-threaded process or keep the setns in one thread (setns changes the calling thread).

Namespace files are plain bind mounts of `/proc/thread-self/ns/net` onto an empty file, made in the
caller's mount namespace with no propagation change: under a shared parent mount the bind (and later
its unmount) reaches the parent's peers and slaves alike, so nothing is pinned anywhere once
`delete_netns` ran. (`ip netns` makes /run/netns a shared self-bind so that its `exec` namespaces see
later additions; we have no such namespaces: a container's mount namespace turns private and drops
the host tree at pivot_root, so its copy of a namespace file goes away with it.)
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import ipaddress
import os
import secrets
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, ParamSpec, TypeVar

from engine.containers import syscalls as sc
from engine.errors import AddressUnavailable, NetworkError

_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1
_THREAD_NETNS = "/proc/thread-self/ns/net"

P = ParamSpec("P")
R = TypeVar("R")


@functools.cache
def _netlink_error() -> type[Exception]:
    """pyroute2's NetlinkError, imported on first use only (keeps CLI start-up fast; engine/net/rtnl
    imports only the part of pyroute2 it needs, ~0.04 s)."""
    from engine.net import rtnl

    return rtnl.NetlinkError


@functools.cache
def preload() -> None:
    """Import the netlink code and compile its message tables now (once): a process whose spawn workers
    do netlink work pays it once, before they are forked."""
    from engine.net import rtnl

    rtnl.warm()


def _rtnl() -> Any:
    """A plain netlink socket (engine/net/rtnl) bound to the calling thread's current network namespace:
    the attach path's requests, without IPRoute's asyncio loop per request."""
    from engine.net import rtnl

    return rtnl.Rtnl()


def _off_loop(fn: Callable[P, R]) -> Callable[P, R]:
    """Run `fn` in a helper thread when the caller's thread runs an asyncio loop (the supervisor): a
    setns it makes then never touches the loop's thread. (Written for pyroute2's IPRoute, whose
    synchronous API drove its own loop and failed inside a running one.) The caller still blocks;
    from a coroutine prefer `loop.run_in_executor(None, fn, ...)`. Each call's setns stays in the one
    thread that runs it."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        asyncio = sys.modules.get("asyncio")  # not imported: no loop can be running
        if asyncio is None or not asyncio._get_running_loop():
            return fn(*args, **kwargs)
        outcome: list[Any] = []

        def run() -> None:
            try:
                outcome.append((True, fn(*args, **kwargs)))
            except BaseException as exc:  # handed back to the caller's thread
                outcome.append((False, exc))

        worker = threading.Thread(target=run, name=f"netlink-{fn.__name__}")
        worker.start()
        worker.join()
        ok, value = outcome[0]
        if not ok:
            raise value
        return value

    return wrapper


def _code(exc: BaseException) -> int | None:
    """errno of a NetlinkError or OSError, else None."""
    if isinstance(exc, _netlink_error()):
        return exc.code
    return exc.errno if isinstance(exc, OSError) else None


def _error(step: str, subject: str, exc: BaseException) -> NetworkError:
    """An engine error naming the step; the kernel's reason when there is one."""
    code = _code(exc)
    reason = os.strerror(code) if code else str(exc)
    cls = AddressUnavailable if code in (errno.EADDRINUSE, errno.EADDRNOTAVAIL) else NetworkError
    return cls(f"{step}: {reason}", subject=subject)


def _ignoring(codes: tuple[int, ...], fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Call fn, treating the listed errnos (already there / already gone) as success."""
    try:
        return fn(*args, **kwargs)
    except (OSError, _netlink_error()) as exc:
        if _code(exc) not in codes:
            raise
        return None


def _index(name: str) -> int | None:
    """Index of link `name` in the calling thread's netns, or None. An ioctl: a netlink
    `link_lookup` dumps every link (about 0.8 ms here)."""
    try:
        return socket.if_nametoindex(name)
    except OSError:
        return None


def _parse_cidrs(addresses: Sequence[str], subject: str) -> list[Any]:
    """CIDR strings checked before anything touches the kernel (a bad one leaves nothing)."""
    try:
        return [ipaddress.ip_interface(a) for a in addresses]
    except ValueError as exc:
        raise NetworkError(f"bad address: {exc}", subject=subject) from None


def _set_sysctl(path: str, value: str) -> None:
    """Write a /proc/sys value only when it differs (no needless host-wide writes)."""
    with open(path, "r+", encoding="ascii") as f:
        if f.read().strip() != value:
            f.seek(0)
            f.write(value)


# ---------------------------------------------------------------- bridges


def _random_mac() -> str:
    """Locally administered unicast MAC. A bridge with a MAC of its own keeps it, instead of taking the
    lowest port's and changing it as containers come and go (what Docker avoids the same way)."""
    raw = bytearray(secrets.token_bytes(6))
    raw[0] = (raw[0] & 0xFE) | 0x02
    return ":".join(f"{b:02x}" for b in raw)


@_off_loop
def ensure_bridge(name: str, addresses: Sequence[str], mtu: int = 1500) -> None:
    """Create (if missing) and bring up bridge `name` with the gateway `addresses` (CIDR: "172.18.0.1/16"),
    its MTU, and `route_localnet=1` (DNAT to 127.0.0.1 needs it). Idempotent."""
    cidrs = _parse_cidrs(addresses, name)
    try:
        with _rtnl() as nl:
            index = _index(name)
            if index is None:  # another process may be making it right now: EEXIST is fine
                _ignoring((errno.EEXIST,), nl.add_bridge, name, mtu=mtu, mac=_random_mac())
                index = _index(name)
            else:
                nl.set_mtu(index, mtu)
            for iface in cidrs:  # an address already there is fine (idempotent)
                _ignoring((errno.EEXIST,), nl.add_address, index, iface)
            nl.set_up(index)
        _set_sysctl(f"/proc/sys/net/ipv4/conf/{name}/route_localnet", "1")
    except (OSError, _netlink_error()) as exc:
        raise _error("creating bridge", name, exc) from exc


def link_exists(name: str) -> bool:
    """Whether a link of that name exists in the calling thread's network namespace."""
    return _index(name) is not None


@_off_loop
def delete_bridge(name: str) -> None:
    """Delete the bridge (its attached host veths go with it); no error if it is missing."""
    _delete_link(name, "deleting bridge")


def _delete_by_name(nl: Any, name: str) -> bool:
    """Delete link `name` if it exists (through an rtnl.Rtnl); True when there was one."""
    index = _index(name)
    if index is not None:
        _ignoring((errno.ENODEV,), nl.delete_link, index)
    return index is not None


def _delete_link(name: str, step: str) -> None:
    try:
        with _rtnl() as nl:
            _delete_by_name(nl, name)
    except (OSError, _netlink_error()) as exc:
        raise _error(step, name, exc) from exc


# ---------------------------------------------------------------- namespaces


@contextlib.contextmanager
def _thread_netns_saved() -> Iterator[None]:
    """Run the body in whatever netns it switches to; always come back to this thread's netns."""
    saved = os.open(_THREAD_NETNS, os.O_RDONLY | os.O_CLOEXEC)
    try:
        yield
    finally:
        try:
            sc.setns(saved, sc.CLONE_NEWNET)
        finally:
            os.close(saved)


def _is_netns_mount(path: str) -> bool:
    """A namespace file already bound there: nsfs is its own device, unlike the directory holding it."""
    try:
        return os.stat(path).st_dev != os.stat(os.path.dirname(path) or ".").st_dev
    except FileNotFoundError:
        return False


def _loopback_up() -> None:
    """`ip link set lo up` in the current netns, by ioctl (no netlink socket needed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        req = struct.pack("16sH22x", b"lo", 0)
        flags = struct.unpack("16sH22x", fcntl.ioctl(s, _SIOCGIFFLAGS, req))[1]
        fcntl.ioctl(s, _SIOCSIFFLAGS, struct.pack("16sH22x", b"lo", flags | _IFF_UP))


def create_netns(path: str) -> None:
    """A new network namespace kept alive by a bind mount on `path` (like `ip netns add`), loopback up.
    Idempotent: an existing namespace file is kept."""
    if _is_netns_mount(path):
        return
    created = mounted = False
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o444)
        os.close(fd)
        created = True
    except FileExistsError:
        pass  # an empty file a crash left: bind onto it
    except OSError as exc:
        raise _error("creating network namespace", path, exc) from exc
    try:
        with _thread_netns_saved():
            sc.unshare(sc.CLONE_NEWNET)
            sc.mount(_THREAD_NETNS, path, None, sc.MS_BIND)
            mounted = True
            _loopback_up()
    except OSError as exc:
        _undo_netns_file(path, created, mounted)
        raise _error("creating network namespace", path, exc) from exc


def _undo_netns_file(path: str, created: bool, mounted: bool) -> None:
    """Take back only what this call did (a path that was there before, e.g. a directory, stays)."""
    with contextlib.suppress(OSError):
        if mounted:
            sc.umount2(path, sc.MNT_DETACH)
        if created:
            os.unlink(path)


def _remove_netns_file(path: str) -> None:
    """Detach every bind on `path` (a crash may have stacked two), then unlink it."""
    for _ in range(8):
        try:
            sc.umount2(path, sc.MNT_DETACH)
        except OSError as exc:
            if exc.errno in (errno.EINVAL, errno.ENOENT):
                break
            raise
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def delete_netns(path: str) -> None:
    """Unmount (MNT_DETACH) and unlink the namespace file; no error if missing."""
    try:
        _remove_netns_file(path)
    except OSError as exc:
        raise _error("deleting network namespace", path, exc) from exc


# ---------------------------------------------------------------- veths


def _add_veth(nl: Any, host_veth: str, master: int, peer: dict[str, Any], mtu: int) -> None:
    """One request: the pair, the host end enslaved and up, the peer born inside the namespace.
    A leftover pair of the same name (a crash between attach and detach) is replaced once."""
    for attempt in (1, 2):
        try:
            nl.add_veth(host_veth, master=master, mtu=mtu, **peer)
            return
        except _netlink_error() as exc:
            if exc.code != errno.EEXIST or attempt == 2:
                raise
            if not _delete_by_name(nl, host_veth):  # the clash is inside the namespace: not ours
                raise


def _set_hairpin(host_veth: str) -> None:
    """Published ports are kernel DNAT: a container reaching its own port through a host address comes
    back out of the bridge port it left by (Docker sets it likewise). A sysfs write: no netlink."""
    with open(f"/sys/class/net/{host_veth}/brport/hairpin_mode", "w", encoding="ascii") as handle:
        handle.write("1")


def _configure_inside(ifname: str, cidrs: list[Any], gateways: list[Any]) -> None:
    """Inside the target netns: addresses, link up, default routes."""
    with _rtnl() as nl:
        index = _index(ifname)
        if index is None:
            raise NetworkError("the veth peer did not arrive in the namespace", subject=ifname)
        for iface in cidrs:
            _ignoring((errno.EEXIST,), nl.add_address, index, iface)
        nl.set_up(index)
        for gw in gateways:
            nl.add_default_route(gw, index)


@_off_loop
def attach(
    netns_path: str,
    bridge: str,
    host_veth: str,
    ifname: str,
    addresses: Sequence[str],
    *,
    mac: str | None = None,
    mtu: int = 1500,
    gateway: str | None = None,
    gateway6: str | None = None,
) -> None:
    """A veth pair: `host_veth` enslaved to `bridge` and up; the peer moved into the namespace as `ifname`
    (eth0, eth1, ...) with `addresses` (CIDR), MAC, MTU, up; a default route via `gateway` when given.
    On failure nothing is left (the host veth is deleted)."""
    cidrs = _parse_cidrs(addresses, host_veth)
    try:
        gateways = [ipaddress.ip_address(g) for g in (gateway, gateway6) if g]
    except ValueError as exc:
        raise NetworkError(f"bad gateway: {exc}", subject=host_veth) from None
    try:
        nsfd = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise _error("opening network namespace", netns_path, exc) from exc
    try:
        _attach(nsfd, bridge, host_veth, ifname, cidrs, gateways, mac, mtu)
    finally:
        os.close(nsfd)


def _attach(
    nsfd: int,
    bridge: str,
    host_veth: str,
    ifname: str,
    cidrs: list[Any],
    gateways: list[Any],
    mac: str | None,
    mtu: int,
) -> None:
    peer: dict[str, Any] = {"peer_name": ifname, "peer_netns_fd": nsfd, "peer_mac": mac}
    step = "creating veth"
    try:
        with _rtnl() as nl:
            master = _index(bridge)
            if master is None:
                raise NetworkError("no such bridge", subject=bridge)
            _add_veth(nl, host_veth, master, peer, mtu)
            try:
                step = "setting hairpin mode"
                _set_hairpin(host_veth)
                step = f"configuring {ifname} in the namespace"
                with _thread_netns_saved():
                    sc.setns(nsfd, sc.CLONE_NEWNET)
                    _configure_inside(ifname, cidrs, gateways)
                if mac:
                    step = "announcing the address to the host"
                    _wait_forwarding(host_veth)
                    _announce(nl, master, cidrs, mac)
            except BaseException:
                _delete_by_name(nl, host_veth)  # the peer goes with it: nothing is left
                raise
    except (OSError, _netlink_error()) as exc:
        raise _error(step, host_veth, exc) from exc


def _wait_forwarding(host_veth: str, timeout: float = 0.2) -> None:
    """Until the new port carries traffic: the kernel's link watcher sees the veth's carrier (and the
    bridge forwards through it) asynchronously; a packet sent before that is lost, and a lost SYN is
    sent again only after 1 s."""
    files = (f"/sys/class/net/{host_veth}/operstate", f"/sys/class/net/{host_veth}/brport/state")
    ready = ("up", "3")  # IF_OPER_UP, BR_STATE_FORWARDING
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            states = []
            for file in files:
                with open(file) as handle:
                    states.append(handle.read().strip())
        except OSError:
            return
        if tuple(states) == ready:
            return
        time.sleep(0.0005)


def _announce(nl: Any, bridge_index: int, cidrs: list[Any], mac: str) -> None:
    """The host learns the container's IPv4 -> MAC now (a STALE neighbour entry: used at once, confirmed
    by the kernel later). A client that hit a published port before the container's address existed
    (a poller waiting for the service) left an INCOMPLETE entry; its queued SYNs then waited for the
    next ARP retry, 1 s later. Replacing it sends them now."""
    from engine.net.rtnl import NUD_STALE

    for iface in cidrs:
        if iface.version == 4:
            nl.replace_neighbour(iface.ip, mac, bridge_index, NUD_STALE)


@_off_loop
def detach(host_veth: str) -> None:
    """Delete the host-side veth explicitly (the kernel may take seconds after the namespace dies)."""
    _delete_link(host_veth, "deleting veth")


@_off_loop
def detach_many(host_veths: Sequence[str]) -> list[str]:
    """Delete several host-side veths through one netlink socket; missing ones are fine. Returns the
    names that could not be deleted (each failure is independent: the rest still go)."""
    failed: list[str] = []
    with _rtnl() as nl:
        for name in host_veths:
            try:
                _delete_by_name(nl, name)
            except (OSError, _netlink_error()):
                failed.append(name)
    return failed


@_off_loop
def link_names(prefix: str) -> list[str]:
    """Names of host links starting with `prefix` (sweeping what a crash left): if_nameindex(3), the
    links of the calling thread's network namespace."""
    return sorted(name for _, name in socket.if_nameindex() if name.startswith(prefix))


def enable_forwarding(*, ipv6: bool = False) -> None:
    """net.ipv4.ip_forward=1 (and IPv6 forwarding when asked): outbound NAT needs it; Docker sets it too.
    Written only when not already set: it is host-wide."""
    try:
        _set_sysctl("/proc/sys/net/ipv4/ip_forward", "1")
        if ipv6:
            _set_sysctl("/proc/sys/net/ipv6/conf/all/forwarding", "1")
    except OSError as exc:
        raise _error("enabling IP forwarding", "net.ipv4.ip_forward", exc) from exc
