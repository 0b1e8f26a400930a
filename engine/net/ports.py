"""Host ports for publishing: is one free, pick one. CONTRACT (owner: engineer N1).

With kernel DNAT nothing listens on the published port, so "free" means: no socket of the host is bound
to it (a bind test) AND no running container of ours publishes it (the caller passes those).
"""

from __future__ import annotations

from collections.abc import Iterable

EPHEMERAL_RANGE_FILE = "/proc/sys/net/ipv4/ip_local_port_range"


def is_free(host_ip: str, port: int, protocol: str, taken: Iterable[tuple[str, int, str]] = ()) -> bool:
    """True when `host_ip:port/protocol` can be published: nothing of ours (`taken`: (ip, port, proto))
    and nothing of the host's holds it ("" / 0.0.0.0 overlaps every address)."""
    raise NotImplementedError


def choose(
    host_ip: str, protocol: str, start: int = 0, end: int = 0, taken: Iterable[tuple[str, int, str]] = ()
) -> int:
    """A free port: `start` itself, the first free one of [start, end], or (start == 0) a random one of the
    host's ephemeral range. Raises PortInUse naming `host_ip:port/protocol`."""
    raise NotImplementedError
