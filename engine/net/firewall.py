"""Our iptables rules: forwarding, isolation, NAT and published ports. CONTRACT (owner: engineer N3).

The whole rule set is computed from the state (networks and published ports) and applied in ONE
`iptables-restore --noflush` batch that flushes and refills our own chains, so it converges: a crash
half-way is repaired by the next `sync`. Only our chains and our jump rules are ever touched; other
programs' rules (a Docker engine's) never.

Scopes: several state roots may live on one host (every test uses its own), so each root has a `scope`
(8 hex of a hash of its path) and its own chains `PYC-<scope>-FWD`, `-ISO`, `-DNAT`, `-POST`, reached
by jump rules tagged `-m comment --comment pycompose:<scope>`; a sync of one scope never touches
another's. Isolation between scopes holds too: traffic from one of our bridges to any other bridge of
ours (`pyc+`, or a bridge this scope knows) is dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class BridgeRules:
    """What the rules need of one network."""

    bridge: str
    subnet: str  # IPv4 CIDR
    internal: bool = False
    masquerade: bool = True  # driver_opts enable_ip_masquerade
    icc: bool = True  # driver_opts enable_icc: containers of the network reach each other


@dataclass(frozen=True, slots=True)
class PortRule:
    """One published port: host side -> container side on `bridge`."""

    bridge: str
    protocol: str
    host_ip: str  # "" or "0.0.0.0" = every local address
    host_port: int
    container_ip: str
    container_port: int


def sync(scope: str, networks: Sequence[BridgeRules], ports: Sequence[PortRule]) -> None:
    """Make our chains hold exactly the rules for these networks and ports (empty = remove our chains and
    jumps altogether, leaving the tables as they were before us). Raises FirewallError."""
    raise NotImplementedError


def our_rules(scope: str | None = None) -> list[str]:
    """Every rule line of ours (of one scope, or of all) in iptables-save form (tests count them)."""
    raise NotImplementedError
