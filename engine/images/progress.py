"""Progress of pulls and pushes: one interface, three renderings (rich live lines, plain lines, quiet).

The registry client reports events; it never prints. Layer ids are the first 12 hex digits of the blob
digest, as docker shows them. Methods may be called from several download threads at once, so the
implementations lock around their state.
"""

from __future__ import annotations

import sys
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from rich.console import Console


def short_id(digest: str) -> str:
    """`sha256:a1b2...` -> `a1b2c3d4e5f6`, the id docker prints for a layer."""
    return digest.partition(":")[2][:12] or digest[:12]


def human_size(size: float) -> str:
    """Decimal sizes with about 3 significant digits, like docker's progress (`12.3MB`, `40MB`, `512B`)."""
    units = ("B", "kB", "MB", "GB", "TB")
    value = float(size)
    unit = 0
    while value >= 1000 and unit < len(units) - 1:
        value /= 1000
        unit += 1
    if unit == 0:
        return f"{int(value)}B"
    text = f"{value:.3g}" if value < 1000 else f"{value:.0f}"
    return f"{text}{units[unit]}"


class ProgressReporter:
    """What the registry client tells whoever watches. The base class ignores everything (quiet)."""

    def status(self, line: str) -> None:
        """A line about the whole operation (`latest: Pulling from library/nginx`, `Digest: ...`)."""

    def layer_started(self, layer_id: str, action: str, total: int | None = None) -> None:
        """A layer begins `action` (`Downloading`, `Pushing`, `Waiting`); total bytes if known."""

    def layer_advanced(self, layer_id: str, nbytes: int) -> None:
        """`nbytes` more bytes of that layer moved."""

    def layer_done(self, layer_id: str, message: str) -> None:
        """A layer's final word: `Pull complete`, `Already exists`, `Pushed`, `Mounted from x`."""

    def close(self) -> None:
        """Stop rendering (the live display leaves its last frame on screen)."""


QuietProgress = ProgressReporter
"""`--quiet`: nothing is shown."""


class PlainProgress(ProgressReporter):
    """One line per event, for logs and pipes: no byte counts, which would flood them."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def _write(self, line: str) -> None:
        stream = self._stream or sys.stdout
        with self._lock:
            stream.write(line + "\n")
            stream.flush()

    def status(self, line: str) -> None:
        self._write(line)

    def layer_started(self, layer_id: str, action: str, total: int | None = None) -> None:
        suffix = f" {human_size(total)}" if total is not None and action in ("Downloading", "Pushing") else ""
        self._write(f"{layer_id}: {action}{suffix}")

    def layer_done(self, layer_id: str, message: str) -> None:
        self._write(f"{layer_id}: {message}")


@dataclass(slots=True)
class _LayerLine:
    action: str
    total: int | None
    current: int = 0
    done: bool = False


BAR_WIDTH = 50


def format_layer_line(layer_id: str, line: _LayerLine) -> str:
    """`a1b2c3d4e5f6: Downloading [=====>     ]  12.3MB/40MB` while moving; `id: Pull complete` after."""
    if line.done or line.action not in ("Downloading", "Pushing"):
        return f"{layer_id}: {line.action}"
    if line.total:
        filled = min(BAR_WIDTH, line.current * BAR_WIDTH // line.total)
        bar = "=" * filled + (">" if filled < BAR_WIDTH else "") + " " * max(0, BAR_WIDTH - filled - 1)
        amount = f"{human_size(line.current)}/{human_size(line.total)}"
        return f"{layer_id}: {line.action} [{bar}]  {amount}"
    return f"{layer_id}: {line.action}  {human_size(line.current)}"


class RichProgress(ProgressReporter):
    """Docker's terminal display: status lines scroll above, one live line per layer below them."""

    def __init__(self, console: Console | None = None) -> None:
        from rich.console import Console
        from rich.live import Live

        self._console = console or Console()
        self._lock = threading.Lock()
        self._layers: dict[str, _LayerLine] = {}
        self._live = Live(console=self._console, refresh_per_second=8, transient=False, auto_refresh=True)
        self._live.update(self._renderable(), refresh=False)
        self._started = False

    def _renderable(self):  # type: ignore[no-untyped-def]
        from rich.text import Text

        lines = [format_layer_line(layer_id, line) for layer_id, line in self._layers.items()]
        return Text("\n".join(lines), no_wrap=True, overflow="ellipsis")

    def _refresh(self) -> None:
        if not self._started:
            self._live.start()
            self._started = True
        self._live.update(self._renderable())

    def status(self, line: str) -> None:
        with self._lock:
            if self._started:
                self._live.console.print(line, markup=False, highlight=False)
            else:
                self._console.print(line, markup=False, highlight=False)

    def layer_started(self, layer_id: str, action: str, total: int | None = None) -> None:
        with self._lock:
            entry = self._layers.get(layer_id)
            if entry is None:
                self._layers[layer_id] = _LayerLine(action, total)
            else:
                entry.action, entry.total, entry.current, entry.done = action, total, 0, False
            self._refresh()

    def layer_advanced(self, layer_id: str, nbytes: int) -> None:
        with self._lock:
            entry = self._layers.get(layer_id)
            if entry is not None:
                entry.current += nbytes
                self._live.update(self._renderable(), refresh=False)  # auto refresh paints it

    def layer_done(self, layer_id: str, message: str) -> None:
        with self._lock:
            entry = self._layers.setdefault(layer_id, _LayerLine(message, None))
            entry.action, entry.done = message, True
            self._refresh()

    def close(self) -> None:
        with self._lock:
            if self._started:
                self._live.update(self._renderable())
                self._live.stop()
                self._started = False


def make_progress(*, quiet: bool = False, stream: TextIO | None = None) -> ProgressReporter:
    """The reporter for an output: quiet, rich live lines on a terminal, else plain lines."""
    if quiet:
        return QuietProgress()
    out = stream or sys.stdout
    if out.isatty():
        from rich.console import Console

        return RichProgress(Console(file=out))
    return PlainProgress(out)
