"""compose/cli/progress.py: docker compose's progress output, rendered with a fake clock and a fixed width."""

from __future__ import annotations

import io
import json
import re
import threading
from types import SimpleNamespace

import pytest

from compose.cli.context import CliContext
from compose.cli.progress import (
    JsonEvents,
    PlainEvents,
    QuietEvents,
    TtyEvents,
    for_args,
    resolve,
)
from compose.errors import UsageError


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def up_sequence(events, clock: Clock) -> None:  # type: ignore[no-untyped-def]
    """What an `up` of a network, a volume, a db waited on and a web that fails reports."""
    events.resource("Network", "shop_default", "Creating")
    clock.now += 0.12
    events.resource("Network", "shop_default", "Created")
    events.resource("Volume", "shop_data", "Created")
    events.resource("Container", "shop-db-1", "Creating")
    events.resource("Container", "shop-web-1", "Creating")
    clock.now += 0.3
    events.resource("Container", "shop-db-1", "Created")
    events.resource("Container", "shop-web-1", "Created")
    events.resource("Container", "shop-db-1", "Waiting")
    clock.now += 2.5
    events.warning("Found orphan containers ([shop-old-1]) for this project.")
    events.resource("Container", "shop-db-1", "Healthy")
    events.resource("Container", "shop-web-1", "Starting")
    clock.now += 0.4
    events.resource("Container", "shop-web-1", "Error", "port is already allocated")


# -- plain -------------------------------------------------------------------------------------------------


def test_plain_prints_one_line_per_state_change_like_docker_compose():
    out, clock = io.StringIO(), Clock()
    events = PlainEvents(out, clock)
    up_sequence(events, clock)
    events.close()
    assert out.getvalue() == (
        " Network shop_default  Creating\n"
        " Network shop_default  Created\n"
        ' Volume "shop_data"  Created\n'
        " Container shop-db-1  Creating\n"
        " Container shop-web-1  Creating\n"
        " Container shop-db-1  Created\n"
        " Container shop-web-1  Created\n"
        " Container shop-db-1  Waiting\n"
        "WARN[0002] Found orphan containers ([shop-old-1]) for this project.\n"
        " Container shop-db-1  Healthy\n"
        " Container shop-web-1  Starting\n"
        " Container shop-web-1  Error port is already allocated\n"
    )
    assert "\x1b" not in out.getvalue()


def test_plain_dry_run_prefix_and_multiline_warning():
    out, clock = io.StringIO(), Clock()
    events = PlainEvents(out, clock, dry_run=True)
    events.resource("Container", "shop-web-1", "Stopped")
    events.warning("first\nsecond")
    assert out.getvalue() == (
        " DRY-RUN MODE -  Container shop-web-1  Stopped\nWARN[0000] first\nWARN[0000] second\n"
    )


def test_quiet_prints_only_warnings():
    out, clock = io.StringIO(), Clock()
    events = QuietEvents(out, clock)
    up_sequence(events, clock)
    events.close()
    assert out.getvalue() == "WARN[0002] Found orphan containers ([shop-old-1]) for this project.\n"


# -- json --------------------------------------------------------------------------------------------------


def test_json_one_object_per_event_with_docker_compose_keys():
    out, clock = io.StringIO(), Clock()
    events = JsonEvents(out, wall=lambda: 0.0)
    up_sequence(events, clock)
    events.close()
    documents = [json.loads(line) for line in out.getvalue().splitlines()]
    assert len(documents) == 12
    assert documents[0] == {"id": "Network shop_default", "status": "Working", "text": "Creating"}
    assert documents[2] == {"id": 'Volume "shop_data"', "status": "Done", "text": "Created"}
    assert documents[8] == {
        "level": "warning",
        "msg": "Found orphan containers ([shop-old-1]) for this project.",
        "time": "1970-01-01T00:00:00Z",
    }
    assert documents[9]["text"] == "Healthy" and documents[9]["status"] == "Done"
    assert documents[-1] == {
        "id": "Container shop-web-1",
        "status": "Error",
        "text": "Error",
        "details": "port is already allocated",
    }


def test_json_dry_run_and_warning_status():
    out = io.StringIO()
    events = JsonEvents(out, dry_run=True)
    events.resource("Container", "shop-web-1", "Skipped", "no such service")
    assert json.loads(out.getvalue()) == {
        "dry-run": True,
        "id": "Container shop-web-1",
        "status": "Warning",
        "text": "Skipped",
        "details": "no such service",
    }


# -- tty ---------------------------------------------------------------------------------------------------


def tty(clock: Clock, width: int = 60, **options) -> tuple[io.StringIO, TtyEvents]:  # type: ignore[no-untyped-def]
    out = io.StringIO()
    return out, TtyEvents(out, clock, width=width, color=False, refresh_per_second=1, **options)


def test_tty_frame_aligns_status_and_time_and_marks_each_state():
    clock = Clock()
    _, events = tty(clock)
    try:
        up_sequence(events, clock)
        events.resource("Container", "shop-cache-1", "Starting")
        clock.now += 0.25
        frame = events.render().plain
    finally:
        events.close()
    assert frame.splitlines() == [
        "[+] Running 4/5",
        " ✔ Network shop_default    Created                     0.1s ",
        ' ✔ Volume "shop_data"      Created                     0.0s ',
        " ✔ Container shop-db-1     Healthy                     2.8s ",
        " ✘ Container shop-web-1    Error port is already al... 3.2s ",
        " ⠹ Container shop-cache-1  Starting                    0.2s ",
    ]


def test_tty_every_line_fits_the_width_and_times_stay_right():
    clock = Clock()
    for width in (40, 80, 132):
        _, events = tty(clock, width=width)
        try:
            events.resource("Container", "shop-web-1", "Error", "x" * 300)
            events.resource("Container", "a-very-long-project-name-with-a-long-service-1", "Started")
            lines = events.render().plain.splitlines()
        finally:
            events.close()
        assert all(len(line) == width for line in lines[1:]), (width, lines)
        assert all(re.search(r" \d+\.\ds $", line) for line in lines[1:])
        assert "..." in lines[1]


def test_tty_spinner_turns_and_clock_adds_up_over_operations():
    clock = Clock()
    _, events = tty(clock)
    try:
        events.resource("Container", "shop-web-1", "Stopping")
        first = events.render().plain.splitlines()[1]
        clock.now += 0.1
        second = events.render().plain.splitlines()[1]
        assert first[1] == "⠋" and second[1] == "⠙"
        clock.now += 1.0
        events.resource("Container", "shop-web-1", "Stopped")
        clock.now += 5.0  # a finished line's time no longer runs
        assert events.render().plain.splitlines()[1].endswith(" 1.1s ")
        events.resource("Container", "shop-web-1", "Removing")  # runs on from the first event
        clock.now += 0.3
        assert events.render().plain.splitlines()[1].endswith(" 6.4s ")
    finally:
        events.close()


def test_tty_header_title_dry_run_and_done_colour():
    clock = Clock()
    _, events = tty(clock, title="Stopping", dry_run=True)
    try:
        events.resource("Container", "shop-web-1", "Stopping")
        working = events.render()
        events.resource("Container", "shop-web-1", "Stopped")
        done = events.render()
    finally:
        events.close()
    assert working.plain.splitlines()[0] == "[+] Stopping 0/1"
    assert done.plain.splitlines()[0] == "[+] Stopping 1/1"
    assert done.plain.splitlines()[1].startswith(" DRY-RUN MODE -  ✔ Container shop-web-1  Stopped")
    header_styles = {str(span.style) for span in done.spans if span.start == 0}
    assert "cyan" in header_styles and not any(span.start == 0 for span in working.spans)


def test_tty_close_leaves_the_final_frame_and_warnings_above_it():
    clock = Clock()
    out, events = tty(clock)
    events.resource("Network", "shop_default", "Created")
    events.warning("Found orphan containers")
    events.resource("Container", "shop-web-1", "Started")
    events.close()
    events.close()  # twice is harmless
    text = out.getvalue()
    assert text.index("WARN[0000] Found orphan containers\n") < text.rindex("[+] Running 2/2")
    last_frame = text[text.rindex("[+] Running 2/2") :]
    assert " ✔ Container shop-web-1  Started" in last_frame
    assert text.count("Container shop-web-1") == 1  # nothing drawn after close


def test_tty_with_colour_writes_the_palette():
    clock = Clock()
    out = io.StringIO()
    events = TtyEvents(out, clock, width=60, color=True, refresh_per_second=1)
    events.resource("Container", "shop-web-1", "Started")
    events.resource("Container", "shop-db-1", "Error", "boom")
    events.close()
    text = out.getvalue()
    assert "\x1b[32m✔" in text  # green mark
    assert "\x1b[1;31m✘" in text  # bold red mark
    assert "\x1b[34m0.0s" in text  # blue timer


# -- choosing a renderer ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("progress", "ansi", "terminal", "environ", "expected"),
    [
        ("auto", "auto", True, {}, ("tty", True)),
        ("auto", "auto", False, {}, ("plain", True)),
        ("auto", "never", True, {}, ("plain", False)),
        ("auto", "always", False, {}, ("plain", True)),
        ("auto", "auto", True, {"NO_COLOR": "1"}, ("tty", False)),
        ("auto", "auto", True, {"NO_COLOR": ""}, ("tty", True)),
        ("tty", "auto", False, {}, ("tty", True)),
        ("plain", "auto", True, {}, ("plain", True)),
        ("json", "auto", True, {}, ("json", True)),
        ("quiet", "auto", True, {}, ("quiet", True)),
        ("auto", "auto", True, {"COMPOSE_PROGRESS": "plain"}, ("plain", True)),
        ("json", "auto", True, {"COMPOSE_PROGRESS": "plain"}, ("json", True)),
        ("auto", "auto", True, {"COMPOSE_ANSI": "never"}, ("plain", False)),
    ],
)
def test_resolve_follows_docker_compose(progress, ansi, terminal, environ, expected):  # type: ignore[no-untyped-def]
    stream = Terminal() if terminal else io.StringIO()
    assert resolve(progress, ansi, stream, environ) == expected


@pytest.mark.parametrize(
    ("progress", "ansi", "message"),
    [
        ("tty", "never", "can't use --progress tty while ANSI support is disabled"),
        ("plain", "always", "can't use --progress plain while ANSI support is forced"),
        ("bogus", "auto", 'unsupported --progress value "bogus"'),
    ],
)
def test_resolve_rejects_contradictions(progress, ansi, message):  # type: ignore[no-untyped-def]
    with pytest.raises(UsageError, match=re.escape(message)):
        resolve(progress, ansi, io.StringIO(), {})


def test_for_args_picks_stream_title_and_renderer(monkeypatch):  # type: ignore[no-untyped-def]
    for name in ("COMPOSE_PROGRESS", "COMPOSE_ANSI", "NO_COLOR", "COMPOSE_STATUS_STDOUT"):
        monkeypatch.delenv(name, raising=False)
    stdout, stderr = io.StringIO(), Terminal()
    context = CliContext(stdout, stderr)
    args = SimpleNamespace(progress="auto", ansi="auto", dry_run=False, command="stop")
    events = for_args(args, context)
    try:
        assert isinstance(events, TtyEvents) and events.title == "Stopping"
    finally:
        events.close()
    events = for_args(SimpleNamespace(progress="auto", ansi="auto", command="up"), context)
    try:
        assert isinstance(events, TtyEvents) and events.title == "Running"
    finally:
        events.close()
    assert isinstance(for_args(SimpleNamespace(progress="plain"), context), PlainEvents)
    assert isinstance(for_args(SimpleNamespace(progress="json"), context), JsonEvents)
    assert isinstance(for_args(SimpleNamespace(progress="quiet"), context), QuietEvents)
    monkeypatch.setenv("COMPOSE_STATUS_STDOUT", "1")
    plain = for_args(SimpleNamespace(progress="plain"), context)
    plain.resource("Container", "shop-web-1", "Started")
    assert stdout.getvalue() == " Container shop-web-1  Started\n"


# -- threads -----------------------------------------------------------------------------------------------


def emit_from_threads(events, threads: int = 16, each: int = 100) -> None:  # type: ignore[no-untyped-def]
    def work(number: int) -> None:
        for step in range(each):
            name = f"pyct-{number}-{step % 5}"
            events.resource("Container", name, "Starting")
            events.resource("Container", name, "Started")
            if step % 25 == 0:
                events.warning(f"warning {number}/{step}")

    workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()


def test_plain_and_json_lines_stay_whole_across_threads():
    out = io.StringIO()
    events = PlainEvents(out)
    emit_from_threads(events)
    lines = out.getvalue().splitlines()
    assert len(lines) == 16 * 100 * 2 + 16 * 4
    pattern = re.compile(r"^( Container pyct-\d+-\d  Start(ing|ed)|WARN\[\d{4}\] warning \d+/\d+)$")
    assert all(pattern.match(line) for line in lines)

    out = io.StringIO()
    events = JsonEvents(out)
    emit_from_threads(events)
    documents = [json.loads(line) for line in out.getvalue().splitlines()]
    assert len(documents) == 16 * 100 * 2 + 16 * 4


def test_tty_renders_while_threads_report():
    out = io.StringIO()
    events = TtyEvents(out, width=80, color=False, refresh_per_second=50)
    frames: list[str] = []
    stop = threading.Event()

    def draw() -> None:
        while not stop.is_set():
            frames.append(events.render().plain)

    drawer = threading.Thread(target=draw)
    drawer.start()
    try:
        emit_from_threads(events)
    finally:
        stop.set()
        drawer.join()
        events.close()
    final = events.render().plain.splitlines()
    assert final[0] == "[+] Running 80/80" and len(final) == 81
    assert all(" ✔ Container pyct-" in line for line in final[1:])
    assert len(frames) > 1 and all(frame.startswith("[+] Running ") for frame in frames if frame)
    assert len(re.findall(r"WARN\[\d{4}\] warning \d+/\d+\n", out.getvalue())) == 64
