"""The embedded DNS responder (run by the supervisor daemon in its asyncio loop). CONTRACT (owner: N4).

One UDP and one TCP listener on each network's gateway address, port 53 (in the host's namespace;
containers' resolv.conf name that gateway). A query for a name of ours gets the addresses of active
endpoints in the networks the asking container (found by its source address) shares; several replicas
are answered in rotating order. Anything else is forwarded to upstream servers, raw, and the answer
relayed unchanged; when the name is ours but the type has no record, NOERROR with no answers (like
Docker's 127.0.0.11).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol


class Names(Protocol):
    """The data the responder asks for (implemented over the state database by the network manager)."""

    def lookup(self, client_ip: str, name: str) -> tuple[list[str], list[str]] | None:
        """(IPv4 addresses, IPv6 addresses) of `name` as seen by the container at `client_ip`; None when
        the name is not one of ours (forward it). Names are case-insensitive, without the trailing dot."""
        ...

    def reverse(self, client_ip: str, address: str) -> str | None:
        """The container name for a PTR query of an address in a shared network, else None."""
        ...

    def upstreams(self, client_ip: str) -> list[str]:
        """The servers to forward to: the container's `dns:` entries, else the host's resolvers."""
        ...


class Responder:
    """Listeners per gateway address; `sync` opens and closes them to match the networks."""

    def __init__(self, names: Names, *, port: int = 53) -> None:
        raise NotImplementedError

    async def sync(self, addresses: Iterable[str]) -> None:
        """Listen on exactly these addresses (UDP and TCP); new ones opened, gone ones closed."""
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError
