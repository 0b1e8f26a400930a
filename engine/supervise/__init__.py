"""Supervision: keep containers watched after the CLI exits, without a process per container.

Modules (one job each); the design, with measurements, is DESIGN.md next to this file:
- `restart`  pure: restart policies (`no`, `always`, `on-failure[:N]`, `unless-stopped`, Compose
             `deploy.restart_policy`) and Docker's back-off -> `decide(policy, facts) -> Decision`.
- `health`   pure: healthcheck config, Docker's merge with the image's HEALTHCHECK, probe argv, and the
             scheduler state (`HealthState.next_probe_at`, `.record`).
Later (next sessions): `keeper` (subreaper parent of container PID 1s, holder of their pipes), `supervisor`
(the asyncio process: logs, probes, restarts) and `client` (the CLI side of the control socket).
"""

from engine.supervise.health import HealthConfig, HealthState, ProbeResult, Status
from engine.supervise.restart import Decision, ExitFacts, Mode, RestartPolicy, decide

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
