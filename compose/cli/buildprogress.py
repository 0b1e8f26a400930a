"""Build progress as BuildKit shows it: `#3 [web 2/5] RUN ...` lines with the step's output (plain), a
live view of the running steps (tty), one JSON object per event (json), or nothing (quiet).

Several services may build at once, so one display is shared by all of them and hands each build its own
reporter (`for_service`), which implements the engine's BuildProgress protocol. Every step of every
build gets a BuildKit-like vertex number, so interleaved plain lines stay readable.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import TextIO

TAIL_LINES = 6
"""Output lines of a running step the tty view shows (BuildKit shows a few, dimmed)."""


@dataclass
class Vertex:
    """One build step of one service, as the display tracks it."""

    number: int
    name: str
    started: float
    finished: float | None = None
    cached: bool = False
    error: str | None = None
    partial: bytes = b""
    lines: list[str] = field(default_factory=list)

    def elapsed(self, now: float) -> float:
        return (self.finished or now) - self.started


class ServiceProgress:
    """The BuildProgress one service's build reports to (the engine's protocol)."""

    def __init__(self, display: BuildDisplay, service: str) -> None:
        self.display = display
        self.service = service

    def step(self, stage: str, number: int, total: int, text: str) -> None:
        self.display.step(self.service, stage, number, total, text)

    def output(self, stage: str, number: int, data: bytes) -> None:
        self.display.output(self.service, stage, number, data)

    def done(self, stage: str, number: int, *, cached: bool, seconds: float) -> None:
        self.display.done(self.service, stage, number, cached=cached, seconds=seconds)

    def warning(self, message: str) -> None:
        self.display.warning(self.service, message)


class BuildDisplay:
    """Shared state and the plain renderer; subclasses change only how events are written."""

    def __init__(self, stream: TextIO, clock=time.monotonic) -> None:  # type: ignore[no-untyped-def]
        self.stream = stream
        self.clock = clock
        self.lock = threading.RLock()
        self.vertices: dict[tuple[str, str, int], Vertex] = {}
        self.order: list[Vertex] = []
        self.warnings: list[str] = []
        self.started = clock()

    # -- the protocol, per service ----------------------------------------------------------------------

    def for_service(self, service: str) -> ServiceProgress:
        return ServiceProgress(self, service)

    def step(self, service: str, stage: str, number: int, total: int, text: str) -> None:
        with self.lock:
            vertex = self._new_vertex(f"[{step_label(service, stage, number, total)}] {text}")
            self.vertices[(service, stage, number)] = vertex
            self.on_start(vertex)

    def output(self, service: str, stage: str, number: int, data: bytes) -> None:
        with self.lock:
            vertex = self.vertices.get((service, stage, number))
            if vertex is None:
                return
            *complete, vertex.partial = (vertex.partial + data).split(b"\n")
            for raw in complete:
                self._line(vertex, raw)

    def done(self, service: str, stage: str, number: int, *, cached: bool, seconds: float) -> None:
        with self.lock:
            vertex = self.vertices.get((service, stage, number))
            if vertex is None:
                return
            self._flush(vertex)
            vertex.cached = cached
            vertex.finished = vertex.started + seconds if not cached else vertex.started
            self.on_done(vertex)

    def warning(self, service: str, message: str) -> None:
        with self.lock:
            self.warnings.append(f"{service}: {message}")
            self.on_warning(self.warnings[-1])

    # -- what the build command adds ----------------------------------------------------------------------

    def failed(self, service: str, message: str) -> None:
        """Mark the service's unfinished steps failed (the protocol has no failure event)."""
        with self.lock:
            open_steps = [
                vertex
                for (name, *_), vertex in self.vertices.items()
                if name == service and vertex.finished is None
            ]
            first_line = (message.splitlines() or [""])[0]
            for vertex in open_steps or [self._new_vertex(f"[{service}] build")]:
                self._flush(vertex)
                vertex.error = first_line
                vertex.finished = self.clock()
                self.on_error(vertex)

    def built(self, service: str, image_id: str, tags: tuple[str, ...]) -> None:
        """BuildKit's closing vertex: the image written and named."""
        with self.lock:
            vertex = self._new_vertex("exporting to image")
            self.on_start(vertex)
            self._line(vertex, f"writing image {image_id} done".encode(), timed=False)
            for tag in tags:
                self._line(vertex, f"naming to {tag} done".encode(), timed=False)
            vertex.finished = self.clock()
            self.on_done(vertex)

    def close(self) -> None:
        with self.lock:
            if self.warnings:
                count = len(self.warnings)
                self.stream.write(f"\n {count} warning{'s' if count > 1 else ''} found:\n")
                self.stream.write("".join(f" - {text}\n" for text in self.warnings))
            self.stream.flush()

    # -- plain rendering (BuildKit's --progress=plain) -------------------------------------------------------

    def on_start(self, vertex: Vertex) -> None:
        self.stream.write(f"\n#{vertex.number} {vertex.name}\n")
        self.stream.flush()

    def on_line(self, vertex: Vertex, line: str, timed: bool) -> None:
        stamp = f"{vertex.elapsed(self.clock()):.3f} " if timed else ""
        self.stream.write(f"#{vertex.number} {stamp}{line}\n")
        self.stream.flush()

    def on_done(self, vertex: Vertex) -> None:
        if vertex.cached:
            self.stream.write(f"#{vertex.number} CACHED\n")
        else:
            self.stream.write(f"#{vertex.number} DONE {vertex.elapsed(self.clock()):.1f}s\n")
        self.stream.flush()

    def on_error(self, vertex: Vertex) -> None:
        self.stream.write(f"#{vertex.number} ERROR: {vertex.error}\n")
        self.stream.flush()

    def on_warning(self, message: str) -> None:
        """Plain mode lists warnings at the end, as BuildKit does."""

    # -- helpers ------------------------------------------------------------------------------------------

    def _new_vertex(self, name: str) -> Vertex:
        vertex = Vertex(number=len(self.order) + 1, name=name, started=self.clock())
        self.order.append(vertex)
        return vertex

    def _line(self, vertex: Vertex, raw: bytes, timed: bool = True) -> None:
        line = raw.decode("utf-8", "replace").rstrip("\r")
        vertex.lines.append(line)
        del vertex.lines[:-TAIL_LINES]
        self.on_line(vertex, line, timed)

    def _flush(self, vertex: Vertex) -> None:
        if vertex.partial:
            raw, vertex.partial = vertex.partial, b""
            self._line(vertex, raw)


def step_label(service: str, stage: str, number: int, total: int) -> str:
    """`web 2/5`, or `web builder 2/5` for a named stage, as bake prefixes its targets' vertices; the
    builder's name for a first unnamed stage (`stage-0`) is left out, as BuildKit shows `[2/5]`."""
    shown = stage if stage and stage != "stage-0" else ""
    return " ".join(part for part in (service, shown, f"{number}/{total}") if part)


class JsonBuildDisplay(BuildDisplay):
    """One JSON object per line and event (`--progress json`), for tools."""

    def _emit(self, **document) -> None:  # type: ignore[no-untyped-def]
        self.stream.write(json.dumps(document) + "\n")
        self.stream.flush()

    def on_start(self, vertex: Vertex) -> None:
        self._emit(id=vertex.number, name=vertex.name, status="started")

    def on_line(self, vertex: Vertex, line: str, timed: bool) -> None:
        self._emit(id=vertex.number, log=line)

    def on_done(self, vertex: Vertex) -> None:
        status = "cached" if vertex.cached else "done"
        self._emit(id=vertex.number, status=status, seconds=round(vertex.elapsed(self.clock()), 3))

    def on_error(self, vertex: Vertex) -> None:
        self._emit(id=vertex.number, status="error", error=vertex.error)

    def on_warning(self, message: str) -> None:
        self._emit(warning=message)

    def close(self) -> None:
        self.stream.flush()


class TtyBuildDisplay(BuildDisplay):
    """BuildKit's tty view: `[+] Building 3.2s (4/7)`, a line per step with its time, and the last
    output lines of the running ones, redrawn in place (rich Live)."""

    def __init__(self, stream: TextIO, clock=time.monotonic, *, color: bool = True) -> None:  # type: ignore[no-untyped-def]
        super().__init__(stream, clock)
        self.live = live_view(stream, self.render, color=color, refresh_per_second=8)
        self.console = self.live.console

    def render(self):  # type: ignore[no-untyped-def]
        from rich.text import Text

        with self.lock:
            now = self.clock()
            done = sum(1 for vertex in self.order if vertex.finished is not None)
            text = Text(f"[+] Building {now - self.started:.1f}s ({done}/{len(self.order)})\n")
            for vertex in self.order:
                self._render_vertex(text, vertex, now)
            return text

    def _render_vertex(self, text, vertex: Vertex, now: float) -> None:  # type: ignore[no-untyped-def]
        width = max(self.console.width, 40)
        if vertex.error is not None:
            text.append(fit(f" => ERROR {vertex.name}", "", width) + "\n", style="red")
            text.append(
                "".join(fit(f" => => # {line}", "", width) + "\n" for line in vertex.lines), style="red"
            )
            return
        status = "CACHED " if vertex.cached else ""
        timing = "" if vertex.cached else f"{vertex.elapsed(now):.1f}s"
        style = "blue" if vertex.finished is not None else "bold"
        text.append(fit(f" => {status}{vertex.name}", timing, width) + "\n", style=style)
        if vertex.finished is None:
            text.append(
                "".join(fit(f" => => # {line}", "", width) + "\n" for line in vertex.lines), style="dim"
            )

    def on_start(self, vertex: Vertex) -> None:
        pass

    def on_line(self, vertex: Vertex, line: str, timed: bool) -> None:
        pass

    def on_done(self, vertex: Vertex) -> None:
        pass

    def on_error(self, vertex: Vertex) -> None:
        pass

    def close(self) -> None:
        self.live.stop()  # the last frame stays on screen
        super().close()


def fit(left: str, right: str, width: int, ellipsis: str = "…") -> str:
    """One screen line: `left` cut to fit (BuildKit never wraps), `right` flush with the right edge;
    `ellipsis` marks the cut (BuildKit's `…`, docker compose's `...`)."""
    left = " ".join(left.split("\n")).replace("\t", " ")
    room = width - len(right) - (1 if right else 0)
    if len(left) > room:
        left = left[: max(room - len(ellipsis), 0)] + ellipsis
    return f"{left:<{room}} {right}" if right else left


def make_display(
    mode: str, stream: TextIO, *, quiet: bool = False, color: bool = True
) -> BuildDisplay | None:
    """The display for `--progress` (auto: tty on a terminal, else plain); None when quiet."""
    if quiet or mode == "quiet":
        return None
    if mode == "json":
        return JsonBuildDisplay(stream)
    if wants_tty(mode, stream):
        return TtyBuildDisplay(stream, color=color)
    return BuildDisplay(stream)


# -- what the build display and compose/cli/progress.py share: tty or plain, and the live view ----------


def wants_tty(mode: str, stream) -> bool:  # type: ignore[no-untyped-def]
    """`--progress tty`, or `auto` on a terminal: draw in place; anything else writes lines."""
    return mode == "tty" or (mode == "auto" and isatty(stream))


def isatty(stream) -> bool:  # type: ignore[no-untyped-def]
    """A closed or fake stream is no terminal."""
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def live_view(  # type: ignore[no-untyped-def]
    stream,
    render,
    *,
    color: bool,
    width: int | None = None,
    refresh_per_second: float = 10,
    redirect: bool = True,
):
    """A started rich Live that redraws `render()` in place on `stream`, which counts as a terminal (the
    caller chose tty); without `color` only cursor movements are written. `redirect=False` keeps other
    threads' stdout (container output) off the progress stream."""
    from rich.console import Console
    from rich.live import Live

    console = Console(file=stream, force_terminal=True, no_color=not color, highlight=False, width=width)
    live = Live(
        console=console,
        refresh_per_second=refresh_per_second,
        get_renderable=render,
        redirect_stdout=redirect,
        redirect_stderr=redirect,
    )
    live.start()
    return live
