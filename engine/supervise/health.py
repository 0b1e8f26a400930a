"""Healthchecks: the configuration, its merge with the image's, and the probe scheduler state. Pure.

Facts this follows (moby `daemon/health.go` and `daemon/commit.go`, the Dockerfile reference):
- `test`: `[]` inherits the image's, `["NONE"]` disables, `["CMD", arg...]` execs, `["CMD-SHELL", cmd]`
  runs `/bin/sh -c cmd` (the image's SHELL if it has one); a Compose string means CMD-SHELL.
- Defaults when 0: interval 30 s, timeout 30 s, start_period 0, start_interval 5 s, retries 3.
- The image's HEALTHCHECK is merged with the container's field by field: a zero/empty field of the
  container's takes the image's value.
- The first probe runs one interval after the start; the next one an interval after the previous ended.
  While the status is `starting` inside the start period, the interval is `start_interval`; the wait never
  overshoots the end of the start period.
- Exit code 0 = success (streak reset, `healthy`); anything else (timeout = -1) is a failure: the failing
  streak grows and `retries` failures in a row make it `unhealthy`, except failures of probes that began
  inside the start period while still `starting`, which do not count.
- The last 5 results are kept; output is cut at 4096 bytes and "..." appended. A timed-out probe's output
  is "Health check exceeded timeout (<go duration>)".
- On every (re)start of the container: status `starting`, streak 0, the log kept.
"""

from __future__ import annotations

import collections
from collections.abc import Sequence
from dataclasses import replace
from enum import StrEnum

from engine.errors import InvalidPolicy
from engine.frozen import frozen

DEFAULT_INTERVAL = 30.0
DEFAULT_TIMEOUT = 30.0
DEFAULT_START_PERIOD = 0.0
DEFAULT_START_INTERVAL = 5.0
DEFAULT_RETRIES = 3
MAX_OUTPUT = 4096  # bytes of probe output kept
MAX_LOG = 5  # results kept
MIN_DURATION = 0.001  # Docker refuses non-zero durations below 1 ms
DEFAULT_SHELL = ("/bin/sh", "-c")


class Status(StrEnum):
    """Docker's health states."""

    STARTING = "starting"
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"


@frozen
class HealthConfig:
    """A healthcheck as Docker stores it: 0 / () means "not set" (inherit, then default)."""

    test: tuple[str, ...] = ()
    interval: float = 0.0
    timeout: float = 0.0
    start_period: float = 0.0
    start_interval: float = 0.0
    retries: int = 0

    def __post_init__(self) -> None:
        if self.test and self.test[0] not in ("NONE", "CMD", "CMD-SHELL"):
            raise InvalidPolicy(f"unknown healthcheck test type {self.test[0]!r}", subject="healthcheck")
        if self.test[:1] == ("CMD-SHELL",) and len(self.test) != 2:
            raise InvalidPolicy("CMD-SHELL takes exactly one command string", subject="healthcheck")
        if self.test[:1] == ("CMD",) and len(self.test) < 2:
            raise InvalidPolicy("CMD needs a command", subject="healthcheck")
        for name in ("interval", "timeout", "start_period", "start_interval"):
            value = getattr(self, name)
            if value != 0 and value < MIN_DURATION:
                raise InvalidPolicy(f"{name} must be 0 or at least 1ms, not {value}", subject="healthcheck")
        if self.retries < 0:
            raise InvalidPolicy(f"retries must be >= 0, not {self.retries}", subject="healthcheck")

    @property
    def disabled(self) -> bool:
        """No probe: no test at all, or `NONE`."""
        return not self.test or self.test[0] == "NONE"


DISABLED = HealthConfig(test=("NONE",))


def normalize_test(test: str | Sequence[str] | None) -> tuple[str, ...]:
    """A Compose/Docker `test` as Docker stores it: a bare string is CMD-SHELL, a list is kept."""
    if test is None:
        return ()
    if isinstance(test, str):
        return ("CMD-SHELL", test)
    return tuple(test)


def merge(container: HealthConfig | None, image: HealthConfig | None) -> HealthConfig | None:
    """Docker's merge: the container's healthcheck, its unset fields taken from the image's."""
    if image is None or container is None:
        return container if container is not None else image
    return replace(
        container,
        test=container.test or image.test,
        interval=container.interval or image.interval,
        timeout=container.timeout or image.timeout,
        start_period=container.start_period or image.start_period,
        start_interval=container.start_interval or image.start_interval,
        retries=container.retries or image.retries,
    )


def probe_command(config: HealthConfig, shell: Sequence[str] = ()) -> tuple[str, ...] | None:
    """The argv to exec in the container for one probe, None if disabled; `shell` = the image's SHELL."""
    if config.disabled:
        return None
    if config.test[0] == "CMD":
        return config.test[1:]
    return (*(tuple(shell) or DEFAULT_SHELL), config.test[1])


def go_duration(seconds: float) -> str:
    """A duration as Go's time.Duration prints it (30s, 1.5s, 500ms, 1m30s): Docker's timeout message."""
    ns = round(seconds * 1e9)
    if ns == 0:
        return "0s"
    if ns < 1_000_000_000:
        for unit, size in (("ms", 1_000_000), ("µs", 1_000), ("ns", 1)):
            if ns >= size:
                return f"{_trim(ns / size)}{unit}"
    h, rest = divmod(ns, 3_600_000_000_000)
    m, rest = divmod(rest, 60_000_000_000)
    out = (f"{h}h" if h else "") + (f"{m}m" if h or m else "")
    return f"{out}{_trim(rest / 1e9)}s"


def _trim(value: float) -> str:
    """Shortest decimal form, as Go prints duration fractions (1.5, 2, 0.25)."""
    return f"{value:.9f}".rstrip("0").rstrip(".")


def truncate_output(data: bytes) -> str:
    """Probe output as Docker keeps it: the first 4096 bytes, "..." appended when cut."""
    text = data[:MAX_OUTPUT].decode("utf-8", "replace")
    return text + "..." if len(data) > MAX_OUTPUT else text


@frozen
class ProbeResult:
    """One probe: start/end times (the clock of `started_at`), exit code (-1 = timeout/error), output."""

    start: float
    end: float
    exit_code: int
    output: str

    @classmethod
    def finished(cls, start: float, end: float, exit_code: int, output: bytes) -> ProbeResult:
        """A probe that ran to its end."""
        return cls(start, end, exit_code, truncate_output(output))

    @classmethod
    def timed_out(cls, start: float, end: float, timeout: float, output: bytes = b"") -> ProbeResult:
        """A probe killed at its timeout: exit code -1 and Docker's message."""
        msg = f"Health check exceeded timeout ({go_duration(timeout)})"
        partial = truncate_output(output)
        return cls(start, end, -1, f"{msg}: {partial}" if partial else msg)


class HealthState:
    """The health of one running container: status, failing streak, last results, next probe time.

    Times are plain floats on one clock (wall clock, so the state survives a supervisor restart).
    """

    def __init__(self, config: HealthConfig, started_at: float) -> None:
        if config.disabled:
            raise InvalidPolicy("no healthcheck to schedule (test is empty or NONE)", subject="healthcheck")
        self.config = config
        self.status = Status.STARTING
        self.failing_streak = 0
        self.log: collections.deque[ProbeResult] = collections.deque(maxlen=MAX_LOG)
        self.started_at = started_at
        self._armed_at = started_at
        self._wait = self._interval_at(started_at)

    @property
    def interval(self) -> float:
        """Interval between probes once started (default 30 s)."""
        return self.config.interval or DEFAULT_INTERVAL

    @property
    def timeout(self) -> float:
        """How long one probe may run (default 30 s)."""
        return self.config.timeout or DEFAULT_TIMEOUT

    @property
    def retries(self) -> int:
        """Consecutive counted failures that make the container unhealthy (default 3)."""
        return self.config.retries or DEFAULT_RETRIES

    @property
    def start_period(self) -> float:
        """Grace period after the start during which failures do not count (default 0)."""
        return self.config.start_period or DEFAULT_START_PERIOD

    def _interval_at(self, t: float) -> float:
        """The wait armed at time t (moby's getInterval)."""
        elapsed = t - self.started_at
        if elapsed >= self.start_period:
            return self.interval
        remaining = self.start_period - elapsed
        if remaining < self.interval:
            return remaining
        if self.status is Status.STARTING:
            return self.config.start_interval or DEFAULT_START_INTERVAL
        return self.interval

    def next_probe_at(self, now: float) -> float:
        """When the next probe is due; an overdue one (supervisor was down) is due `now`."""
        return max(self._armed_at + self._wait, now)

    def record(self, result: ProbeResult) -> bool:
        """Apply one probe result; re-arm the timer from its end. Returns True if the status changed."""
        before = self.status
        self.log.append(result)
        if result.exit_code == 0:
            self.failing_streak = 0
            self.status = Status.HEALTHY
        elif not self._in_grace(result):
            self.failing_streak += 1
            if self.failing_streak >= self.retries:
                self.status = Status.UNHEALTHY
        self._armed_at = result.end
        self._wait = self._interval_at(result.end)
        return self.status is not before

    def _in_grace(self, result: ProbeResult) -> bool:
        """A failure that does not count: still starting and the probe began inside the start period."""
        return self.status is Status.STARTING and result.start - self.started_at < self.start_period

    def restarted(self, started_at: float) -> None:
        """The container started again: back to `starting`, streak 0, the log kept (as Docker does)."""
        self.status = Status.STARTING
        self.failing_streak = 0
        self.started_at = started_at
        self._armed_at = started_at
        self._wait = self._interval_at(started_at)

    def to_dict(self) -> dict[str, object]:
        """Docker's inspect `State.Health` shape (times as floats; formatting is the caller's)."""
        return {
            "Status": str(self.status),
            "FailingStreak": self.failing_streak,
            "Log": [
                {"Start": r.start, "End": r.end, "ExitCode": r.exit_code, "Output": r.output}
                for r in self.log
            ],
        }

    @classmethod
    def from_dict(cls, config: HealthConfig, started_at: float, data: dict[str, object]) -> HealthState:
        """Rebuild a saved state (re-adoption); the timer re-arms from the last probe's end."""
        state = cls(config, started_at)
        state.status = Status(str(data["Status"]))
        state.failing_streak = int(data["FailingStreak"])  # type: ignore[call-overload]
        for r in data["Log"]:  # type: ignore[attr-defined]
            state.log.append(ProbeResult(r["Start"], r["End"], r["ExitCode"], r["Output"]))
        if state.log:
            state._armed_at = state.log[-1].end
            state._wait = state._interval_at(state._armed_at)
        return state
