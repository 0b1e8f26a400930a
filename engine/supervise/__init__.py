"""Supervision: keep containers watched after the CLI exits, without a process per container.

Modules (one job each); the design, with measurements, is DESIGN.md next to this file:
- `restart`  pure: restart policies (`no`, `always`, `on-failure[:N]`, `unless-stopped`, Compose
             `deploy.restart_policy`) and Docker's back-off -> `decide(policy, facts) -> Decision`.
- `health`   pure: healthcheck config, Docker's merge with the image's HEALTHCHECK, probe argv, and the
             scheduler state (`HealthState.next_probe_at`, `.record`).
- `keeper`   the process: child subreaper, parent of the daemon and of every container PID 1; reaps,
             records exits, holds a copy of every stdout/stderr read end, restarts the daemon
             (`python -m engine.supervise.keeper`; ctypes prctl lives here).
- `launcher` starting a keeper (what a CLI imports to do it).
- `daemon`   the asyncio supervisor process: start, stop, status, log capture, health probes,
             restart policies, re-adoption from the keeper; serves run/supervisor.sock.
- `spawner`  the daemon's spawn workers: processes the keeper adopted that start containers as its
             children, so no start forks the daemon.
- `client`   the CLI side: `ensure_supervisor(root)`, `request(root, op, **args)`, `shutdown(root)`.
"""

import importlib
from typing import Any

_EXPORTS = {
    "HealthConfig": "health",
    "HealthState": "health",
    "ProbeResult": "health",
    "Status": "health",
    "Decision": "restart",
    "ExitFacts": "restart",
    "Mode": "restart",
    "RestartPolicy": "restart",
    "decide": "restart",
}


def __getattr__(name: str) -> Any:
    """The pure modules' names, imported on first use: `health` pulls in asyncio, which a CLI that only
    talks to the supervisor (engine.supervise.client) does not need."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"engine.supervise.{module}"), name)


__all__ = [
    "Decision",
    "ExitFacts",
    "HealthConfig",
    "HealthState",
    "Mode",
    "ProbeResult",
    "RestartPolicy",
    "Status",
    "decide",
]
