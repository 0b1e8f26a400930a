"""docker compose's progress output for `up`, `down` and the lifecycle commands: the renderers of
compose/run/events.Events.

- tty: the live view, redrawn ten times a second on stderr:
      [+] Running 2/3
       ✔ Network shop_default  Created                      0.1s
       ⠹ Container shop-db-1   Waiting                      2.3s
       ✘ Container shop-web-1  Error port is allocated      0.4s
- plain: one line per state change, no ANSI (` Container shop-web-1  Started`), as in CI logs;
- json: one object per event with docker compose's keys (`id`, `text`, `status`, `details`, `dry-run`);
- quiet: no progress; warnings still print (docker compose's warnings are log lines, not progress).

`for_args` chooses from `--progress`, `--ansi`, COMPOSE_PROGRESS, COMPOSE_ANSI, NO_COLOR and whether stderr
is a terminal, with docker compose's rules. The executor reports from worker threads: every renderer takes
one lock, and the tty view draws from rich's own refresh thread under the same lock.
"""

from __future__ import annotations

import os
import threading
import time

from compose.errors import UsageError
from compose.run.events import WORKING, NullEvents

TYPE_CHECKING = False  # `import typing` costs start-up time; type checkers treat this alike

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import TextIO

    from compose.run.events import Events

TITLES = {
    "create": "Creating",
    "rm": "Removing",
    "stop": "Stopping",
    "restart": "Restarting",
    "kill": "Killing",
    "pull": "Pulling",
    "push": "Pushing",
}
"""The verb of the `[+] … n/m` header per command (docker compose's progress titles); `Running` else."""

SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
"""docker compose's spinner, one frame per 100 ms of the line's clock."""

MARKS = {"done": "✔", "warning": "!", "error": "✘"}
STYLES = {"done": "green", "warning": "bold yellow", "error": "bold red", "working": ""}
"""docker compose's palette: success green, warning bold yellow, error bold red, spinner (count) yellow,
timer blue, the header cyan once everything is done."""

DRY_RUN_PREFIX = " DRY-RUN MODE - "
WARNING_STATUSES = frozenset({"Warning", "Skipped"})


def state_of(status: str) -> str:
    """docker compose's four event states, from our status words."""
    if status in WORKING:
        return "working"
    if status == "Error":
        return "error"
    if status in WARNING_STATUSES:
        return "warning"
    return "done"


def resource_id(kind: str, name: str) -> str:
    """The line's label: `Container shop-web-1`, and `Volume "shop_data"` quoted as docker compose does."""
    if kind == "Volume" and not name.startswith('"'):
        return f'{kind} "{name}"'
    return f"{kind} {name}"


class Line:
    """One resource as the display tracks it: its latest status and its clock (a plain class:
    `dataclasses` costs the CLI start-up time)."""

    __slots__ = ("detail", "ended", "id", "started", "status")

    def __init__(self, id: str, status: str, detail: str, started: float) -> None:
        self.id, self.status, self.detail = id, status, detail
        self.started: float = started
        self.ended: float | None = None

    @property
    def state(self) -> str:
        return state_of(self.status)

    def elapsed(self, now: float) -> float:
        return (now if self.ended is None else self.ended) - self.started

    def text(self) -> str:
        """`Started`, or `Error port is allocated`: the status and its detail."""
        return f"{self.status} {self.detail}" if self.detail else self.status


class Tracker:
    """Lines in order of first appearance; a line's clock starts with its first event, runs while its
    status is working and stops at a final one (Stopping, Stopped, Removing, Removed add up)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.lock = threading.RLock()
        self.lines: dict[str, Line] = {}
        self.started = clock()

    def update(self, kind: str, name: str, status: str, detail: str) -> Line:
        now = self.clock()
        key = resource_id(kind, name)
        line = self.lines.get(key)
        if line is None:
            line = self.lines[key] = Line(key, status, detail, started=now)
        elif status in WORKING:
            line.ended = None  # the clock runs on from the line's first event, as docker compose's
        line.status, line.detail = status, detail
        if status not in WORKING and line.ended is None:
            line.ended = now
        return line

    def warning_line(self, message: str) -> str:
        """logrus's text format: `WARN[0003] message`, seconds since the start."""
        return f"WARN[{int(self.clock() - self.started):04d}] {message}"


class PlainEvents:
    """`--progress plain` (and `auto` off a terminal): a line per state change, as docker compose's plain
    writer prints it (its fields joined by spaces, the status after a double space)."""

    def __init__(self, stream: TextIO, clock: Callable[[], float] = time.monotonic, *, dry_run: bool = False):
        self.stream = stream
        self.tracker = Tracker(clock)
        self.prefix = DRY_RUN_PREFIX if dry_run else ""

    def resource(self, kind: str, name: str, status: str, detail: str = "") -> None:
        with self.tracker.lock:
            line = self.tracker.update(kind, name, status, detail)
            self._write(f"{self.prefix} {line.id}  {line.text()}")

    def warning(self, message: str) -> None:
        with self.tracker.lock:
            for text in message.splitlines() or [""]:
                self._write(self.tracker.warning_line(text))

    def close(self) -> None:
        with self.tracker.lock:
            self.stream.flush()

    def _write(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()


class QuietEvents(PlainEvents):
    """`--progress quiet`: no progress lines, only the warnings."""

    def resource(self, kind: str, name: str, status: str, detail: str = "") -> None:
        pass


class JsonEvents:
    """`--progress json`: docker compose's keys (`id`, `text` the status word, `status` Working/Done/
    Warning/Error, `details`, `dry-run`); warnings as logrus's JSON formatter writes them."""

    STATUS = {"working": "Working", "done": "Done", "warning": "Warning", "error": "Error"}

    def __init__(self, stream: TextIO, *, dry_run: bool = False, wall: Callable[[], float] = time.time):
        self.stream = stream
        self.dry_run = dry_run
        self.wall = wall
        self.lock = threading.Lock()

    def resource(self, kind: str, name: str, status: str, detail: str = "") -> None:
        document: dict[str, object] = {"dry-run": True} if self.dry_run else {}
        document |= {"id": resource_id(kind, name), "status": self.STATUS[state_of(status)], "text": status}
        if detail:
            document["details"] = detail
        self._emit(document)

    def warning(self, message: str) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.wall()))
        self._emit({"level": "warning", "msg": message, "time": stamp})

    def close(self) -> None:
        with self.lock:
            self.stream.flush()

    def _emit(self, document: dict[str, object]) -> None:
        import json

        text = json.dumps(document, ensure_ascii=False) + "\n"
        with self.lock:
            self.stream.write(text)
            self.stream.flush()


class TtyEvents:
    """The live view: `[+] Running n/m`, a line per resource with its mark or spinner, its status column
    aligned and its time flush right, cut to the terminal width; the last frame stays when closed.
    Warnings print above the view as they come."""

    def __init__(
        self,
        stream: TextIO,
        clock: Callable[[], float] = time.monotonic,
        *,
        title: str = "Running",
        color: bool = True,
        width: int | None = None,
        dry_run: bool = False,
        refresh_per_second: float = 10,
    ) -> None:
        self.tracker = Tracker(clock)
        self.title = title
        self.prefix = DRY_RUN_PREFIX if dry_run else ""
        self.closed = False
        from compose.cli.buildprogress import live_view

        self.live = live_view(
            stream,
            self.render,
            color=color,
            width=width,
            refresh_per_second=refresh_per_second,
            redirect=False,
        )
        self.console = self.live.console

    def resource(self, kind: str, name: str, status: str, detail: str = "") -> None:
        with self.tracker.lock:
            self.tracker.update(kind, name, status, detail)

    def warning(self, message: str) -> None:
        from rich.text import Text

        with self.tracker.lock:
            lines = [self.tracker.warning_line(text) for text in message.splitlines() or [""]]
        # rich prints above the live region and redraws the view below
        self.console.print(Text("\n".join(lines)), soft_wrap=True)

    def close(self) -> None:
        with self.tracker.lock:
            if self.closed:
                return
            self.closed = True
        self.live.stop()  # draws the final frame, which stays on screen

    def render(self):  # type: ignore[no-untyped-def]
        """One frame, as rich Text."""
        from rich.text import Text

        with self.tracker.lock:
            now = self.tracker.clock()
            lines = list(self.tracker.lines.values())
            frame = Text(no_wrap=True, overflow="crop")
            if not lines:
                return frame
            done = sum(1 for line in lines if line.state != "working")
            header = f"[+] {self.title} {done}/{len(lines)}"
            frame.append(header, style="cyan" if done == len(lines) else "")
            padding = max(len(line.id) for line in lines) + 1
            width = max(self.console.width, 20)
            for line in lines:
                frame.append("\n")
                self._append_line(frame, line, now, padding, width)
            return frame

    def _append_line(self, frame, line: Line, now: float, padding: int, width: int) -> None:  # type: ignore[no-untyped-def]
        """` ✔ Container shop-web-1  Started     0.4s `: the mark, the label padded to the widest, the
        status (with its detail, cut to fit with `...`), the time flush right."""
        from compose.cli.buildprogress import fit

        state = line.state
        if state == "working":
            frame_index = int(max(line.elapsed(now), 0) * 10 + 1e-6) % len(SPINNER)
            mark, mark_style = SPINNER[frame_index], "yellow"
        else:
            mark, mark_style = MARKS[state], STYLES[state]
        timer = f"{line.elapsed(now):.1f}s "
        left = f"{self.prefix} {mark} {line.id.ljust(padding)} {line.text()}"
        text = fit(left, "", width - len(timer) - 1, ellipsis="...")
        status_at = len(self.prefix) + 3 + padding + 1
        frame.append(text[: len(self.prefix) + 1])
        frame.append(text[len(self.prefix) + 1 : len(self.prefix) + 2], style=mark_style)
        frame.append(text[len(self.prefix) + 2 : status_at])
        frame.append(text[status_at:], style=STYLES[state])
        frame.append(" " * (width - len(timer) - len(text)))
        frame.append(timer, style="blue")


def for_args(args, context, title: str | None = None) -> Events:  # type: ignore[no-untyped-def]
    """The renderer the global flags ask for, on stderr (stdout with COMPOSE_STATUS_STDOUT); `title` is
    the header's verb, by default docker compose's for `args.command`."""
    stream = context.stdout if _truthy(os.environ.get("COMPOSE_STATUS_STDOUT")) else context.stderr
    mode, color = resolve(getattr(args, "progress", "auto"), getattr(args, "ansi", "auto"), stream)
    dry_run = bool(getattr(args, "dry_run", False))
    if mode == "quiet":
        return QuietEvents(stream)
    if mode == "json":
        return JsonEvents(stream, dry_run=dry_run)
    if mode == "tty":
        verb = title or TITLES.get(getattr(args, "command", "") or "", "Running")
        return TtyEvents(stream, title=verb, color=color, dry_run=dry_run)
    return PlainEvents(stream, dry_run=dry_run)


def resolve(progress: str, ansi: str, stream, environ=None) -> tuple[str, bool]:  # type: ignore[no-untyped-def]
    """(`tty`|`plain`|`json`|`quiet`, colour?) as docker compose decides: COMPOSE_PROGRESS / COMPOSE_ANSI
    stand in for flags left at `auto`; `--ansi never` turns `auto` plain and forbids `tty`; `--ansi always`
    forbids `plain`; a non-empty NO_COLOR turns colours off (the view stays)."""
    from compose.cli.buildprogress import wants_tty

    environ = os.environ if environ is None else environ
    if progress == "auto":
        progress = environ.get("COMPOSE_PROGRESS", "auto") or "auto"
    if ansi == "auto":
        ansi = environ.get("COMPOSE_ANSI", "auto") or "auto"
    if progress == "none":
        progress = "quiet"
    if progress not in ("auto", "tty", "plain", "json", "quiet"):
        raise UsageError(f'unsupported --progress value "{progress}"')
    if ansi not in ("auto", "never", "always"):
        raise UsageError(f'unsupported --ansi value "{ansi}"')
    if progress == "tty" and ansi == "never":
        raise UsageError("can't use --progress tty while ANSI support is disabled")
    if progress == "plain" and ansi == "always":
        raise UsageError("can't use --progress plain while ANSI support is forced")
    color = ansi != "never" and not environ.get("NO_COLOR")  # only the tty view has colours
    if progress == "auto":
        progress = "tty" if ansi != "never" and wants_tty("auto", stream) else "plain"
    return progress, bool(color)


def _truthy(value: str | None) -> bool:
    return (value or "").lower() in ("1", "true", "yes", "on")


__all__ = [
    "JsonEvents",
    "NullEvents",
    "PlainEvents",
    "QuietEvents",
    "TtyEvents",
    "for_args",
    "resolve",
]
