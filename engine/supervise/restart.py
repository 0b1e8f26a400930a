"""Restart policies: given how a container ended, restart it or not, and after how long. Pure.

Facts this follows (moby `restartmanager`, swarmkit's restart supervisor, the Docker and Compose docs):
- `no` never restarts; `always` restarts whatever the exit code; `unless-stopped` likewise unless the user
  stopped it; `on-failure[:max]` restarts on a non-zero exit code while fewer than `max` restarts were made
  (0 or absent = no limit).
- Docker waits before each restart: 100 ms, doubled at every restart, capped at 1 minute; a run that lasted
  at least 10 s resets it to 100 ms. The delay grows even when the answer is "no restart".
- A user stop (`stop`, `kill`, `down`) cancels the policy of a running engine: the container stays stopped
  whatever its policy. Only when the engine itself starts again (`boot=True`) does Docker restart `always`
  containers the user had stopped (never `unless-stopped` ones).
- Compose `deploy.restart_policy` (swarm semantics): condition `none` / `on-failure` / `any`; `delay`
  between attempts; `max_attempts` counts every restart (any condition), or with a `window` only those made
  in the last `window` seconds.

Decision for pycompose: an explicit `delay` replaces Docker's back-off (what the user wrote is what
happens), floored at 100 ms so a crash loop with `delay: 0` cannot spin the supervisor.
"""

from __future__ import annotations

from enum import StrEnum

from engine.errors import InvalidPolicy
from engine.frozen import frozen

BACKOFF_START = 0.1  # seconds: moby restartmanager defaultTimeout
BACKOFF_FACTOR = 2
BACKOFF_MAX = 60.0  # maxRestartTimeout
BACKOFF_RESET_AFTER = 10.0  # a run this long resets the back-off


class Mode(StrEnum):
    """Docker's restart policy names (Compose conditions map onto them)."""

    NO = "no"
    ALWAYS = "always"
    ON_FAILURE = "on-failure"
    UNLESS_STOPPED = "unless-stopped"


_CONDITIONS = {"none": Mode.NO, "no": Mode.NO, "on-failure": Mode.ON_FAILURE, "any": Mode.ALWAYS}
_CONDITIONS |= {"always": Mode.ALWAYS, "unless-stopped": Mode.UNLESS_STOPPED}


@frozen
class RestartPolicy:
    """What to do when the container's main process ends.

    `max_attempts` 0 = no limit. `delay` None = Docker's growing back-off. `window` 0 = count every restart.
    """

    mode: Mode = Mode.NO
    max_attempts: int = 0
    delay: float | None = None
    window: float = 0.0

    def __post_init__(self) -> None:
        if self.max_attempts < 0:
            raise InvalidPolicy(f"max attempts must be >= 0, not {self.max_attempts}")
        if self.delay is not None and self.delay < 0:
            raise InvalidPolicy(f"delay must be >= 0, not {self.delay}")
        if self.window < 0:
            raise InvalidPolicy(f"window must be >= 0, not {self.window}")


def parse_restart(value: str | None) -> RestartPolicy:
    """Docker's `--restart` / Compose `restart:` string: `no`, `always`, `on-failure[:N]`, `unless-stopped`.

    A count is only accepted with `on-failure`, as the Docker API does.
    """
    if value is None or value == "":
        return RestartPolicy()
    name, sep, count = value.partition(":")
    try:
        mode = Mode(name)
    except ValueError:
        raise InvalidPolicy(f"invalid restart policy {value!r}", subject="restart") from None
    if not sep:
        return RestartPolicy(mode)
    if mode is not Mode.ON_FAILURE:
        raise InvalidPolicy(f"maximum retry count can only be used with 'on-failure': {value!r}")
    if not count.isdigit():
        raise InvalidPolicy(f"maximum retry count must be a non-negative integer: {value!r}")
    return RestartPolicy(mode, max_attempts=int(count))


def from_deploy(
    condition: str | None = None,
    delay: float | None = None,
    max_attempts: int | None = None,
    window: float | None = None,
) -> RestartPolicy:
    """Compose `deploy.restart_policy` (durations already in seconds); condition defaults to `any`."""
    key = condition or "any"
    if key not in _CONDITIONS:
        raise InvalidPolicy(f"invalid restart_policy condition {condition!r}", subject="deploy")
    return RestartPolicy(_CONDITIONS[key], max_attempts or 0, delay, window or 0.0)


@frozen
class ExitFacts:
    """What the supervisor knows when the main process has ended.

    `restart_count` is the number of automatic restarts since the user last started the container (Docker
    resets it on `start`); `restart_times` are the times of those restarts (same clock as `now`), needed
    only with a `window`; `backoff` is the delay of the previous decision (0 = none yet).
    """

    exit_code: int
    stopped_by_user: bool = False
    restart_count: int = 0
    ran_for: float = 0.0
    backoff: float = 0.0
    restart_times: tuple[float, ...] = ()
    now: float = 0.0
    boot: bool = False


@frozen
class Decision:
    """The answer: restart or not, after `delay` seconds; `backoff` is stored for the next decision."""

    restart: bool
    delay: float
    reason: str
    backoff: float


def next_backoff(previous: float, ran_for: float) -> float:
    """Docker's back-off step: 100 ms, doubling, capped at 60 s, reset by a run of >= 10 s."""
    if ran_for >= BACKOFF_RESET_AFTER or previous <= 0:
        return BACKOFF_START
    return min(previous * BACKOFF_FACTOR, BACKOFF_MAX)


def _attempts_used(policy: RestartPolicy, facts: ExitFacts) -> int:
    """Restarts that count toward `max_attempts`: all of them, or those inside the window."""
    if policy.window <= 0:
        return facts.restart_count
    return sum(1 for t in facts.restart_times if t > facts.now - policy.window)


def _wants_restart(policy: RestartPolicy, facts: ExitFacts) -> tuple[bool, str]:
    """The policy's verdict, before any attempt limit."""
    if policy.mode is Mode.NO:
        return False, "restart policy is 'no'"
    if facts.stopped_by_user:
        if facts.boot and policy.mode is Mode.ALWAYS:
            return True, "'always' restarts a stopped container when the engine starts"
        return False, "stopped by the user"
    if policy.mode is Mode.ON_FAILURE and facts.exit_code == 0:
        return False, "exited with code 0 and the policy is 'on-failure'"
    return True, f"policy '{policy.mode}' and exit code {facts.exit_code}"


def decide(policy: RestartPolicy, facts: ExitFacts) -> Decision:
    """Restart or not, and the delay before it (Docker's back-off unless the policy has a delay)."""
    backoff = next_backoff(facts.backoff, facts.ran_for)
    restart, reason = _wants_restart(policy, facts)
    if restart and policy.max_attempts and _attempts_used(policy, facts) >= policy.max_attempts:
        restart, reason = False, f"gave up after {policy.max_attempts} restart attempts"
    if not restart:
        return Decision(False, 0.0, reason, backoff)
    delay = backoff if policy.delay is None else max(policy.delay, BACKOFF_START)
    return Decision(True, delay, reason, backoff)
