"""Healthcheck config, merge and scheduler against moby's daemon/health.go and the Dockerfile reference."""

from __future__ import annotations

import pytest

from engine.errors import InvalidPolicy
from engine.supervise.health import (
    DISABLED,
    HealthConfig,
    HealthState,
    ProbeResult,
    Status,
    go_duration,
    merge,
    normalize_test,
    probe_command,
    truncate_output,
)

CMD = ("CMD", "true")


def ok(start: float, end: float | None = None) -> ProbeResult:
    return ProbeResult(start, start + 0.01 if end is None else end, 0, "")


def fail(start: float, code: int = 1) -> ProbeResult:
    return ProbeResult(start, start + 0.01, code, "")


@pytest.mark.parametrize(
    ("test", "expected"),
    [
        (None, ()),
        ("curl -f http://localhost", ("CMD-SHELL", "curl -f http://localhost")),
        (["CMD", "pg_isready"], ("CMD", "pg_isready")),
        (["NONE"], ("NONE",)),
        ([], ()),
    ],
)
def test_normalize_test(test: object, expected: tuple[str, ...]) -> None:
    assert normalize_test(test) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("config", "shell", "argv"),
    [
        (HealthConfig(("CMD", "pg_isready", "-q")), (), ("pg_isready", "-q")),
        (HealthConfig(("CMD-SHELL", "exit 1")), (), ("/bin/sh", "-c", "exit 1")),
        (HealthConfig(("CMD-SHELL", "exit 1")), ("/bin/bash", "-ec"), ("/bin/bash", "-ec", "exit 1")),
        (DISABLED, (), None),
        (HealthConfig(), (), None),
    ],
)
def test_probe_command(config: HealthConfig, shell: tuple[str, ...], argv: tuple[str, ...] | None) -> None:
    assert probe_command(config, shell) == argv


@pytest.mark.parametrize(
    "kwargs",
    [
        {"test": ("HTTP", "/")},
        {"test": ("CMD-SHELL",)},
        {"test": ("CMD-SHELL", "a", "b")},
        {"test": ("CMD",)},
        {"test": CMD, "interval": 0.0005},
        {"test": CMD, "retries": -1},
    ],
)
def test_config_refuses(kwargs: dict) -> None:
    with pytest.raises(InvalidPolicy):
        HealthConfig(**kwargs)


IMAGE = HealthConfig(
    ("CMD", "img-check"), interval=10.0, timeout=3.0, start_period=20.0, start_interval=1.0, retries=5
)


@pytest.mark.parametrize(
    ("container", "image", "expected"),
    [
        (None, None, None),
        (None, IMAGE, IMAGE),
        (HealthConfig(CMD), None, HealthConfig(CMD)),
        # field by field: what the container leaves unset comes from the image
        (HealthConfig(interval=2.0), IMAGE, HealthConfig(IMAGE.test, 2.0, 3.0, 20.0, 1.0, 5)),
        (HealthConfig(CMD, retries=1), IMAGE, HealthConfig(CMD, 10.0, 3.0, 20.0, 1.0, 1)),
        # NONE in the service disables even an image healthcheck; the image's NONE is inherited
        (DISABLED, IMAGE, HealthConfig(("NONE",), 10.0, 3.0, 20.0, 1.0, 5)),
        (HealthConfig(interval=2.0), DISABLED, HealthConfig(("NONE",), interval=2.0)),
    ],
)
def test_merge(
    container: HealthConfig | None, image: HealthConfig | None, expected: HealthConfig | None
) -> None:
    merged = merge(container, image)
    assert merged == expected
    if merged is not None and merged.test == ("NONE",):
        assert merged.disabled


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (30, "30s"),
        (1.5, "1.5s"),
        (0.5, "500ms"),
        (90, "1m30s"),
        (3600, "1h0m0s"),
        (0.0001, "100µs"),
        (0, "0s"),
    ],
)
def test_go_duration(seconds: float, text: str) -> None:
    assert go_duration(seconds) == text


def test_output_truncated_at_4096_bytes_with_ellipsis() -> None:
    assert truncate_output(b"a" * 4096) == "a" * 4096
    assert truncate_output(b"a" * 5000) == "a" * 4096 + "..."
    assert truncate_output(b"\xff") == "\ufffd"


def test_timeout_result() -> None:
    r = ProbeResult.timed_out(1.0, 31.0, 30.0)
    assert (r.exit_code, r.output) == (-1, "Health check exceeded timeout (30s)")
    assert ProbeResult.timed_out(1.0, 3.0, 2.0, b"partial").output.endswith("(2s): partial")


def test_defaults() -> None:
    s = HealthState(HealthConfig(CMD), started_at=0.0)
    assert (s.interval, s.timeout, s.retries, s.start_period) == (30.0, 30.0, 3, 0.0)
    assert s.status is Status.STARTING
    assert s.next_probe_at(0.0) == 30.0  # first probe one interval after the start


def test_disabled_cannot_be_scheduled() -> None:
    with pytest.raises(InvalidPolicy):
        HealthState(DISABLED, 0.0)


# Each step: (probe result, expected status, expected streak). Config: retries 3, start_period 10.
STREAKS = [
    # failures inside the start period while starting do not count
    ([fail(1), fail(2), fail(3), fail(4)], Status.STARTING, 0),
    # ...a success inside it marks healthy at once
    ([fail(1), ok(2)], Status.HEALTHY, 0),
    # after the start period failures count; retries of them make it unhealthy
    ([fail(11), fail(12)], Status.STARTING, 2),
    ([fail(11), fail(12), fail(13)], Status.UNHEALTHY, 3),
    # once healthy, failures inside the start period do count
    ([ok(1), fail(2), fail(3), fail(4)], Status.UNHEALTHY, 3),
    ([ok(1), fail(2), fail(3)], Status.HEALTHY, 2),
    # one success heals, and resets the streak
    ([fail(11), fail(12), fail(13), ok(14)], Status.HEALTHY, 0),
    # any non-zero code is a failure (2 is reserved, -1 is a timeout)
    ([fail(11, 2), fail(12, -1), fail(13, 255)], Status.UNHEALTHY, 3),
    # the probe's START decides: begun at 9.99 inside the period, not counted
    ([ProbeResult(9.99, 15.0, 1, "")], Status.STARTING, 0),
]


@pytest.mark.parametrize(("results", "status", "streak"), STREAKS)
def test_status_machine(results: list[ProbeResult], status: Status, streak: int) -> None:
    s = HealthState(HealthConfig(CMD, interval=1.0, start_period=10.0, retries=3), started_at=0.0)
    for r in results:
        s.record(r)
    assert (s.status, s.failing_streak) == (status, streak)


def test_record_reports_status_changes() -> None:
    s = HealthState(HealthConfig(CMD, retries=1), started_at=0.0)
    assert s.record(ok(30)) is True
    assert s.record(ok(60)) is False
    assert s.record(fail(90)) is True


def test_log_keeps_last_five() -> None:
    s = HealthState(HealthConfig(CMD), started_at=0.0)
    for i in range(7):
        s.record(fail(float(i)))
    assert [r.start for r in s.log] == [2.0, 3.0, 4.0, 5.0, 6.0]


def test_schedule_uses_start_interval_while_starting_in_start_period() -> None:
    cfg = HealthConfig(CMD, interval=30.0, start_period=60.0, start_interval=5.0)
    s = HealthState(cfg, started_at=100.0)
    assert s.next_probe_at(100.0) == 105.0  # starting inside the period: start_interval
    s.record(ProbeResult(105.0, 106.0, 1, ""))
    assert s.next_probe_at(106.0) == 111.0  # re-armed from the end of the probe
    s.record(ProbeResult(150.0, 152.0, 1, ""))
    assert s.next_probe_at(152.0) == 160.0  # never past the end of the start period (8 s left < 30)
    s.record(ProbeResult(160.0, 161.0, 1, ""))
    assert s.next_probe_at(161.0) == 191.0  # period over: interval


def test_schedule_healthy_inside_start_period_uses_interval() -> None:
    cfg = HealthConfig(CMD, interval=30.0, start_period=300.0, start_interval=5.0)
    s = HealthState(cfg, started_at=0.0)
    s.record(ok(5.0, 6.0))
    assert s.next_probe_at(6.0) == 36.0


def test_start_interval_default_is_5s_and_unused_without_start_period() -> None:
    assert HealthState(HealthConfig(CMD, start_period=60.0), 0.0).next_probe_at(0.0) == 5.0
    assert HealthState(HealthConfig(CMD, start_interval=1.0), 0.0).next_probe_at(0.0) == 30.0


def test_overdue_probe_is_due_now() -> None:
    s = HealthState(HealthConfig(CMD, interval=10.0), started_at=0.0)
    assert s.next_probe_at(500.0) == 500.0


def test_restart_resets_status_and_streak_keeps_log() -> None:
    s = HealthState(HealthConfig(CMD, retries=1), started_at=0.0)
    s.record(fail(30))
    assert s.status is Status.UNHEALTHY
    s.restarted(100.0)
    assert (s.status, s.failing_streak, len(s.log)) == (Status.STARTING, 0, 1)
    assert s.next_probe_at(100.0) == 130.0


def test_round_trip_for_readoption() -> None:
    cfg = HealthConfig(CMD, interval=10.0)
    s = HealthState(cfg, started_at=0.0)
    s.record(fail(10.0))
    s.record(ok(20.0, 21.0))
    data = s.to_dict()
    assert data["Status"] == "healthy" and data["Log"][1]["ExitCode"] == 0  # type: ignore[index]
    back = HealthState.from_dict(cfg, 0.0, data)
    assert back.to_dict() == data
    assert back.next_probe_at(0.0) == 31.0
