"""The multiplexed log printer of `logs` and attached `up`: `web-1  | line`, coloured like docker compose.

docker compose gives each container a prefix `<name padded to the longest name + 1> | `, coloured from a
ten-colour cycle (cyan, yellow, green, magenta, blue, then the bold variants) in the order containers are
first seen; the whole prefix is wrapped in the colour. Registering a longer name re-pads every prefix so
columns stay aligned. stderr lines go to the error stream, as docker compose's consumer does. Lines of one
container keep their order; lines of different containers interleave by arrival (one lock, one write).
"""

from __future__ import annotations

import threading
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import TextIO

# ANSI SGR codes of docker compose's rainbow: normal cyan, yellow, green, magenta, blue, then bold ones
RAINBOW = ("36", "33", "32", "35", "34", "36;1", "33;1", "32;1", "35;1", "34;1")


def colorize(code: str, text: str) -> str:
    """`text` in SGR `code`, reset after (docker compose's ansiColor)."""
    return f"\033[{code}m{text}\033[0m"


def format_timestamp(ns: int) -> str:
    """RFC 3339 in UTC with all nine fraction digits, as `docker compose logs -t` prints."""
    seconds, fraction = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{fraction:09d}Z"


def short_name(container_name: str, project: str) -> str:
    """The name docker compose shows in prefixes: the container's name without `<project>-`."""
    return container_name.removeprefix(project + "-")


def use_color(stream: TextIO, *, no_color: bool = False, ansi: str = "auto", environ=None) -> bool:  # type: ignore[no-untyped-def]
    """Colour unless --no-color, --ansi never or a non-empty NO_COLOR (which wins even over --ansi always,
    as in docker compose and compose.cli.progress.resolve); --ansi always forces it; auto asks isatty."""
    import os

    env = os.environ if environ is None else environ
    if no_color or ansi == "never" or env.get("NO_COLOR"):
        return False
    if ansi == "always":
        return True
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


class LogPrinter:
    """Writes containers' log lines with aligned, optionally coloured prefixes; safe across threads."""

    def __init__(
        self,
        out: TextIO,
        names: Iterable[str] = (),
        *,
        err: TextIO | None = None,
        color: bool = False,
        prefix: bool = True,
        timestamps: bool = False,
    ) -> None:
        self.out = out
        self.err = err if err is not None else out
        self.color = color
        self.prefix = prefix
        self.timestamps = timestamps
        self._colors: dict[str, str | None] = {}
        self._prefixes: dict[str, str] = {}
        self._next = 0
        self._lock = threading.Lock()
        for name in names:
            self.register(name)

    def register(self, name: str) -> None:
        """Give `name` its colour (next in the cycle) and re-pad every prefix to the longest name."""
        with self._lock:
            self._register(name)

    def _register(self, name: str) -> None:
        if name in self._colors:
            return
        code = None
        if self.color:
            code = RAINBOW[self._next % len(RAINBOW)]
            self._next += 1
        self._colors[name] = code
        width = max(len(n) for n in self._colors) + 1
        for known, known_code in self._colors.items():
            text = f"{known:<{width}} | "
            self._prefixes[known] = colorize(known_code, text) if known_code else text

    def line(self, name: str, stream: str, text: str, time_ns: int | None = None) -> None:
        """Print one log entry of container `name` (several lines if `text` holds newlines)."""
        body = text[:-1] if text.endswith("\n") else text
        stamp = ""
        if self.timestamps:
            stamp = format_timestamp(time.time_ns() if time_ns is None else time_ns) + " "
        with self._lock:
            self._register(name)
            head = self._prefixes[name] if self.prefix else ""
            target = self.err if stream == "stderr" else self.out
            target.write("".join(f"{head}{stamp}{part}\n" for part in body.split("\n")))
            target.flush()

    def status(self, name: str, message: str) -> None:
        """A line about the container itself (`web-1 exited with code 0`), in its colour, on stdout."""
        with self._lock:
            self._register(name)
            code = self._colors[name]
            text = f"{name} {message}"
            self.out.write((colorize(code, text) if code else text) + "\n")
            self.out.flush()
