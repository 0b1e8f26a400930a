"""Restart policies against Docker's documented behaviour (moby restartmanager, swarmkit, docs)."""

from __future__ import annotations

import pytest

from engine.errors import InvalidPolicy
from engine.supervise.restart import (
    Decision,
    ExitFacts,
    Mode,
    RestartPolicy,
    decide,
    from_deploy,
    next_backoff,
    parse_restart,
)

ALWAYS, ON_FAILURE = RestartPolicy(Mode.ALWAYS), RestartPolicy(Mode.ON_FAILURE)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, RestartPolicy()),
        ("", RestartPolicy()),
        ("no", RestartPolicy(Mode.NO)),
        ("always", ALWAYS),
        ("unless-stopped", RestartPolicy(Mode.UNLESS_STOPPED)),
        ("on-failure", ON_FAILURE),
        ("on-failure:3", RestartPolicy(Mode.ON_FAILURE, max_attempts=3)),
        ("on-failure:0", RestartPolicy(Mode.ON_FAILURE, max_attempts=0)),
    ],
)
def test_parse_restart(value: str | None, expected: RestartPolicy) -> None:
    assert parse_restart(value) == expected


@pytest.mark.parametrize("value", ["sometimes", "always:3", "on-failure:x", "on-failure:-1", "On-Failure"])
def test_parse_restart_refuses(value: str) -> None:
    with pytest.raises(InvalidPolicy):
        parse_restart(value)


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({}, RestartPolicy(Mode.ALWAYS)),  # condition defaults to any
        ({"condition": "none"}, RestartPolicy(Mode.NO)),
        ({"condition": "on-failure", "max_attempts": 2}, RestartPolicy(Mode.ON_FAILURE, 2)),
        ({"condition": "any", "delay": 5.0, "window": 120.0}, RestartPolicy(Mode.ALWAYS, 0, 5.0, 120.0)),
    ],
)
def test_from_deploy(kwargs: dict, expected: RestartPolicy) -> None:
    assert from_deploy(**kwargs) == expected


@pytest.mark.parametrize("kwargs", [{"condition": "sometimes"}, {"max_attempts": -1}, {"delay": -1.0}])
def test_from_deploy_refuses(kwargs: dict) -> None:
    with pytest.raises(InvalidPolicy):
        from_deploy(**kwargs)


# (policy, facts, restart?) — the policy table of the Docker docs.
POLICY_TABLE = [
    (RestartPolicy(Mode.NO), ExitFacts(1), False),
    (RestartPolicy(Mode.NO), ExitFacts(0), False),
    (ALWAYS, ExitFacts(0), True),
    (ALWAYS, ExitFacts(137), True),
    (RestartPolicy(Mode.UNLESS_STOPPED), ExitFacts(0), True),
    (ON_FAILURE, ExitFacts(0), False),
    (ON_FAILURE, ExitFacts(1), True),
    (ON_FAILURE, ExitFacts(137), True),  # OOM-killed counts as a failure
    # a user stop cancels every policy while the engine runs
    (ALWAYS, ExitFacts(143, stopped_by_user=True), False),
    (RestartPolicy(Mode.UNLESS_STOPPED), ExitFacts(0, stopped_by_user=True), False),
    (ON_FAILURE, ExitFacts(143, stopped_by_user=True), False),
    # engine start: `always` comes back even if stopped by the user, `unless-stopped` does not
    (ALWAYS, ExitFacts(0, stopped_by_user=True, boot=True), True),
    (RestartPolicy(Mode.UNLESS_STOPPED), ExitFacts(0, stopped_by_user=True, boot=True), False),
    (RestartPolicy(Mode.UNLESS_STOPPED), ExitFacts(1, boot=True), True),
    # on-failure:max: restarted while fewer than max restarts were made
    (RestartPolicy(Mode.ON_FAILURE, 2), ExitFacts(1, restart_count=0), True),
    (RestartPolicy(Mode.ON_FAILURE, 2), ExitFacts(1, restart_count=1), True),
    (RestartPolicy(Mode.ON_FAILURE, 2), ExitFacts(1, restart_count=2), False),
    (RestartPolicy(Mode.ON_FAILURE, 0), ExitFacts(1, restart_count=1000), True),
    # deploy max_attempts applies to `any` too (swarm)
    (RestartPolicy(Mode.ALWAYS, 1), ExitFacts(0, restart_count=1), False),
]


@pytest.mark.parametrize(("policy", "facts", "restart"), POLICY_TABLE)
def test_policy_table(policy: RestartPolicy, facts: ExitFacts, restart: bool) -> None:
    decision = decide(policy, facts)
    assert decision.restart is restart, decision.reason
    assert decision.delay == (0.0 if not restart else decision.delay)


def test_on_failure_2_gives_up_after_two_restarts() -> None:
    """The issue's acceptance case: a crashing container with on-failure:2 is restarted twice."""
    policy, backoff, restarts = parse_restart("on-failure:2"), 0.0, 0
    while True:
        d = decide(policy, ExitFacts(3, restart_count=restarts, backoff=backoff, ran_for=0.01))
        backoff = d.backoff
        if not d.restart:
            break
        restarts += 1
    assert restarts == 2
    assert "gave up after 2" in d.reason


def test_backoff_sequence_doubles_from_100ms_and_caps_at_a_minute() -> None:
    delays, backoff = [], 0.0
    for _ in range(12):
        d = decide(ALWAYS, ExitFacts(1, backoff=backoff, ran_for=0.5))
        delays.append(d.delay)
        backoff = d.backoff
    assert delays[:4] == pytest.approx([0.1, 0.2, 0.4, 0.8])
    assert delays[9] == pytest.approx(51.2)
    assert delays[10:] == [60.0, 60.0]


@pytest.mark.parametrize(
    ("previous", "ran_for", "expected"),
    [
        (0.0, 0.0, 0.1),
        (0.1, 9.99, 0.2),
        (0.4, 10.0, 0.1),
        (51.2, 1.0, 60.0),
        (60.0, 1.0, 60.0),
        (3.2, 60.0, 0.1),
    ],
)
def test_next_backoff(previous: float, ran_for: float, expected: float) -> None:
    assert next_backoff(previous, ran_for) == pytest.approx(expected)


def test_backoff_grows_even_when_not_restarting() -> None:
    """moby computes the timeout before the verdict: the stored back-off moves on a 'no' too."""
    d = decide(ON_FAILURE, ExitFacts(0, backoff=0.4, ran_for=1.0))
    assert d == Decision(False, 0.0, d.reason, 0.8)


@pytest.mark.parametrize(("delay", "expected"), [(5.0, 5.0), (0.0, 0.1), (0.05, 0.1)])
def test_deploy_delay_replaces_backoff_with_a_floor(delay: float, expected: float) -> None:
    d = decide(from_deploy("any", delay=delay), ExitFacts(1, backoff=3.2, ran_for=1.0))
    assert d.restart and d.delay == expected


@pytest.mark.parametrize(
    ("times", "restart"),
    [
        ((), True),
        ((100.0, 150.0), True),  # both outside the 60 s window ending at now=300
        ((100.0, 250.0, 260.0), True),  # 2 inside the window < 3
        ((250.0, 260.0, 299.0), False),  # 3 inside: limit reached
    ],
)
def test_window_counts_only_recent_restarts(times: tuple[float, ...], restart: bool) -> None:
    policy = from_deploy("on-failure", max_attempts=3, window=60.0)
    facts = ExitFacts(1, restart_count=len(times), restart_times=times, now=300.0)
    assert decide(policy, facts).restart is restart


def test_without_window_every_restart_counts() -> None:
    policy = from_deploy("on-failure", max_attempts=3)
    facts = ExitFacts(1, restart_count=3, restart_times=(1.0, 2.0, 3.0), now=1e9)
    assert decide(policy, facts).restart is False
