"""Container logs in Docker's json-file format: write with rotation, read, tail and follow.

One supervisor process captures the output of many containers, so a writer is a small object fed by the
supervisor's event loop with whatever bytes a pipe read returned (`feed(stream, data, now)`): no thread
and no big buffer per container. Holding back at most 16 KiB per stream (Docker's copier buffer) bounds
memory; a longer line is written in 16 KiB pieces, every piece but the last without its trailing newline,
which is how json-file marks a partial message.

The bytes on disk follow Docker (moby `daemon/logger/jsonfilelog`), so tools that read Docker's files read
ours: one JSON object per line, keys in the order `log`, `stream`, `time`; `log` keeps the line's newline;
`time` is RFC 3339 in UTC with trailing zeros of the nanoseconds dropped; strings are escaped as Go's
encoder does (`<`, `>`, `&`, U+2028/U+2029 and control bytes as `\\u` escapes, except `\\n` and `\\r`),
and each byte that is not valid UTF-8 becomes U+FFFD. A last line without a newline at end of stream is
written without one. Rotation too: the file is rotated before a write once it holds `max-size` bytes;
`<id>-json.log` becomes `.1`, `.1` becomes `.2` ..., keeping `max-file` files in all; with `compress`
each rotated file is gzipped with the time of its last entry in the gzip header, as Docker does.

Reading (`read_logs`) walks the rotated files oldest first, then the live one; `tail` reads backwards
in blocks; `follow` keeps the live file open and, when the name points to a new inode (rotation), drains
the old descriptor before moving on to the files that replaced it, so nothing is missed or repeated.
A reader opens the set of files under a shared flock of the log's directory, which rotation takes
exclusively, and checks the listing did not change while it opened them.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import gzip
import json
import os
import re
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import NamedTuple, Protocol

from engine.errors import DiskFullError, EngineError
from engine.frozen import frozen
from engine.state.locks import flock_within

PARTIAL_LIMIT = 16 * 1024  # Docker's copier buffer: longer lines are split into pieces of this size
STREAMS = ("stdout", "stderr")
_BLOCK = 64 * 1024
_POLL = 0.05  # seconds between checks for new data while following
_ROTATE_WAIT = 0.2  # longest a rotation waits for readers opening the files (then it goes ahead)


class LogRecord(NamedTuple):
    """One entry: `time` in ns since the epoch; `line` as stored (ends in a newline unless partial)."""

    time: int
    stream: str
    line: str


# --------------------------------------------------------------------------------------------- options


@frozen
class LogOptions:
    """json-file options: `max_size` in bytes (-1 = never rotate), `max_file` files kept in all."""

    max_size: int = -1
    max_file: int = 1
    compress: bool = False

    @classmethod
    def parse(cls, options: Mapping[str, str]) -> LogOptions:
        """Validate `logging.options` the way Docker's json-file driver does."""
        unknown = sorted(set(options) - _KNOWN_OPTIONS)
        if unknown:
            raise EngineError(f"unknown log opt '{unknown[0]}' for json-file log driver", subject="logging")
        max_size = -1
        if "max-size" in options:
            max_size = parse_size(options["max-size"])
            if max_size <= 0:
                raise EngineError("max-size must be a positive number", subject="logging")
        max_file = 1
        if "max-file" in options:
            max_file = _parse_int(options["max-file"], "max-file")
            if max_file < 1:
                raise EngineError("max-file cannot be less than 1", subject="logging")
        compress = _parse_bool(options["compress"]) if "compress" in options else False
        if compress and (max_file == 1 or max_size == -1):
            raise EngineError(
                "compress cannot be true when max-file is less than 2 or max-size is not set",
                subject="logging",
            )
        return cls(max_size=max_size, max_file=max_file, compress=compress)


_KNOWN_OPTIONS = frozenset(
    {"max-file", "max-size", "compress", "labels", "labels-regex", "env", "env-regex", "tag"}
)
_SIZE_RE = re.compile(r"^(\d+(?:\.\d+)*) ?([kmgtp])?i?b?$", re.IGNORECASE)
_SI = {"": 1, "k": 1000, "m": 1000**2, "g": 1000**3, "t": 1000**4, "p": 1000**5}


def parse_size(text: str) -> int:
    """Docker's `max-size` syntax (go-units FromHumanSize): `10m`, `1.5k`, `20MB`; SI units (k = 1000)."""
    match = _SIZE_RE.match(text.strip())
    if not match:
        raise EngineError(f"invalid size: '{text}'", subject="logging")
    return int(float(match.group(1)) * _SI[(match.group(2) or "").lower()])


def _parse_int(text: str, key: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise EngineError(f"{key}: invalid number '{text}'", subject="logging") from None


def _parse_bool(text: str) -> bool:
    """Go's strconv.ParseBool spellings."""
    if text in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if text in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    raise EngineError(f"compress: invalid boolean '{text}'", subject="logging")


def log_path(directory: str | os.PathLike[str], container_id: str) -> Path:
    """Where a container's log lives: `<dir>/<id>-json.log`, as Docker names it."""
    return Path(directory) / f"{container_id}-json.log"


# --------------------------------------------------------------------------------------------- encoding


_ESCAPES = {chr(c): f"\\u{c:04x}" for c in range(0x20)}
_ESCAPES.update({"\n": "\\n", "\r": "\\r", '"': '\\"', "\\": "\\\\"})
_ESCAPES.update({c: f"\\u{ord(c):04x}" for c in "<>&\u2028\u2029"})
_ESCAPES.update({chr(0xDC80 + b): "\\ufffd" for b in range(0x80)})  # invalid bytes, see encode_record
_ESCAPE_RE = re.compile('[\x00-\x1f"\\\\<>&\u2028\u2029\udc80-\udcff]')


def _json_string(text: str) -> str:
    """A JSON string literal escaped exactly as Docker's json-file writer escapes it."""
    return '"' + _ESCAPE_RE.sub(lambda m: _ESCAPES[m.group()], text) + '"'


_second_cache: list[object] = [None, ""]


def format_time(ns: int) -> str:
    """RFC 3339 in UTC with trailing zeros of the fraction dropped (Go's time.RFC3339Nano)."""
    seconds, frac = divmod(ns, 1_000_000_000)
    if _second_cache[0] != seconds:
        _second_cache[0] = seconds
        _second_cache[1] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    base = _second_cache[1]
    if frac:
        return f"{base}.{frac:09d}".rstrip("0") + "Z"
    return f"{base}Z"


def format_time_fixed(ns: int) -> str:
    """RFC 3339 with all nine fraction digits, the form `docker logs --timestamps` prints."""
    seconds, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{frac:09d}Z"


def encode_record(line: bytes, stream: str, ns: int) -> bytes:
    """One json-file line (newline included) for `line`, which already carries its own newline if any."""
    # surrogateescape maps each byte that is not valid UTF-8 to its own lone surrogate (one per byte,
    # as Go's decoder counts them); the escaper then writes each as the six characters \ufffd, as Docker.
    text = line.decode("utf-8", "surrogateescape")
    return f'{{"log":{_json_string(text)},"stream":"{stream}","time":"{format_time(ns)}"}}\n'.encode()


_TIME_RE = re.compile(
    r"^(\d{4})-(\d\d)-(\d\d)[Tt](\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?(?:([Zz])|([+-])(\d\d):(\d\d))$"
)


def parse_time(text: str) -> int:
    """Nanoseconds since the epoch from an RFC 3339 time (any precision up to ns, any offset)."""
    m = _TIME_RE.match(text)
    if not m:
        raise ValueError(f"bad time {text!r}")
    y, mo, d, h, mi, s = (int(g) for g in m.group(1, 2, 3, 4, 5, 6))
    days = _days_from_civil(y, mo, d)
    seconds = days * 86400 + h * 3600 + mi * 60 + s
    if m.group(9):
        offset = int(m.group(10)) * 3600 + int(m.group(11)) * 60
        seconds -= offset if m.group(9) == "+" else -offset
    frac = m.group(7) or ""
    return seconds * 1_000_000_000 + int(frac.ljust(9, "0") or 0)


def _days_from_civil(y: int, m: int, d: int) -> int:
    """Days since 1970-01-01 for a proleptic Gregorian date (H. Hinnant's algorithm), no tz lookups."""
    y -= m <= 2
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def decode_record(raw: bytes) -> LogRecord:
    """Parse one json-file line."""
    obj = json.loads(raw)
    return LogRecord(parse_time(obj["time"]), obj.get("stream", ""), obj.get("log", ""))


# --------------------------------------------------------------------------------------------- writing


class LogSink(Protocol):
    """What the supervisor feeds: a `LogWriter`, or a `NullLog` for `logging.driver: none`."""

    def feed(self, stream: str, data: bytes, now: int | None = None) -> None: ...
    def eof(self, stream: str, now: int | None = None) -> None: ...
    def flush(self) -> None: ...
    def close(self, now: int | None = None) -> None: ...


class NullLog:
    """`logging.driver: none`: output is read (so the container never blocks on a full pipe) and dropped."""

    __slots__ = ()

    def feed(self, stream: str, data: bytes, now: int | None = None) -> None:
        """Drop the bytes."""

    def eof(self, stream: str, now: int | None = None) -> None:
        """Nothing held back."""

    def flush(self) -> None:
        """Nothing buffered."""

    def close(self, now: int | None = None) -> None:
        """Nothing open."""


def open_log(
    directory: str | os.PathLike[str], container_id: str, driver: str, options: Mapping[str, str]
) -> LogWriter | NullLog:
    """The sink for a container's `logging` section (`json-file`, the default, or `none`)."""
    if driver == "none":
        return NullLog()
    if driver in ("json-file", ""):
        return LogWriter(log_path(directory, container_id), LogOptions.parse(options))
    raise EngineError(f"logging driver {driver!r} is not supported (json-file, none)", subject="logging")


class LogWriter:
    """Appends a container's output to `<id>-json.log`, rotating as configured.

    Feed it raw chunks as they are read; complete lines are encoded and written at once (one write per
    feed), so a follower sees them immediately and nothing sits in memory. Only an unfinished line stays
    behind, at most 16 KiB per stream.
    """

    __slots__ = ("_fd", "_held", "_last_ts", "_out", "_partial_ts", "_size", "options", "path")

    def __init__(self, path: str | os.PathLike[str], options: LogOptions | None = None) -> None:
        self.path = os.fspath(path)
        self.options = options or LogOptions()
        self._fd = _open_append(self.path)
        self._size = os.fstat(self._fd).st_size
        self._held: list[bytes] = [b"", b""]  # unfinished line per stream (stdout, stderr)
        self._partial_ts: list[int | None] = [None, None]  # time of the first piece of a split line
        self._last_ts = 0
        self._out: list[bytes] = []

    def feed(self, stream: str, data: bytes, now: int | None = None) -> None:
        """Take bytes read from `stream`'s pipe; write every line they complete."""
        if not data:
            return
        idx = STREAMS.index(stream)
        ns = time.time_ns() if now is None else now
        buf = self._held[idx] + data if self._held[idx] else bytes(data)
        start = 0
        while True:
            nl = buf.find(b"\n", start, start + PARTIAL_LIMIT)  # Docker: the newline must fit in 16 KiB
            if nl >= 0:
                self._emit(idx, buf[start : nl + 1], ns, last=True)
                start = nl + 1
            elif len(buf) - start >= PARTIAL_LIMIT:
                self._emit(idx, buf[start : start + PARTIAL_LIMIT], ns, last=False)
                start += PARTIAL_LIMIT
            else:
                break
        self._held[idx] = buf[start:]
        self.flush()

    def eof(self, stream: str, now: int | None = None) -> None:
        """The stream's pipe closed: write its unfinished line as it is (no newline, as Docker does)."""
        idx = STREAMS.index(stream)
        if self._held[idx]:
            ns = time.time_ns() if now is None else now
            self._emit(idx, self._held[idx], ns, last=False)
            self._held[idx] = b""
        self._partial_ts[idx] = None
        self.flush()

    def flush(self) -> None:
        """Write the encoded entries not yet on disk (feed does this itself; kept for explicit batching)."""
        if not self._out:
            return
        data = b"".join(self._out) if len(self._out) > 1 else self._out[0]
        self._out.clear()
        _write_all(self._fd, data, self.path)

    def close(self, now: int | None = None) -> None:
        """End of both streams, then release the file."""
        if self._fd < 0:
            return
        for stream in STREAMS:
            self.eof(stream, now)
        os.close(self._fd)
        self._fd = -1

    def _emit(self, idx: int, piece: bytes, ns: int, *, last: bool) -> None:
        """Encode one entry, rotating first when the file is full (Docker checks before each write)."""
        first_ts = self._partial_ts[idx]
        ts = ns if first_ts is None else first_ts
        self._partial_ts[idx] = None if last else ts
        record = encode_record(piece, STREAMS[idx], ts)
        if self.options.max_size != -1 and self._size >= self.options.max_size:
            self.flush()
            self._rotate()
        self._out.append(record)
        self._size += len(record)
        self._last_ts = ts

    def _rotate(self) -> None:
        """Shift `.1` -> `.2` ... (dropping the oldest), move the live file to `.1`, start a new one."""
        os.close(self._fd)
        self._fd = -1
        keep = self.options.max_file
        with _names_lock(self.path, fcntl.LOCK_EX, wait=_ROTATE_WAIT):
            if keep < 2:
                _unlink(self.path)
            else:
                ext = ".gz" if self.options.compress else ""
                _unlink(f"{self.path}.{keep - 1}{ext}")
                for i in range(keep - 1, 1, -1):
                    _rename(f"{self.path}.{i - 1}{ext}", f"{self.path}.{i}{ext}")
                _rename(self.path, f"{self.path}.1")
            self._fd = _open_append(self.path, truncate=True)
        self._size = 0
        if keep >= 2 and self.options.compress:
            compress_file(f"{self.path}.1", self._last_ts)


@contextlib.contextmanager
def _names_lock(path: str, how: int, *, wait: float | None = None) -> Iterator[None]:
    """flock the log's directory while its names move (writer, LOCK_EX) or are opened (reader, LOCK_SH).

    Without it a reader that opens the files while a rotation renames them one by one can keep failing
    its consistency check (see `_open_listed`) for as long as rotations come faster than it opens. The
    writer, which a container's output waits on, never waits long for a reader: after `wait` seconds it
    rotates anyway and the reader's check catches it. Readers wait without a limit: a rotation is short.
    """
    try:
        fd = os.open(os.path.dirname(path) or ".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        fd = -1  # no directory: nothing to rename or open either
    try:
        if fd >= 0 and wait is None:
            fcntl.flock(fd, how)
        elif fd >= 0:
            flock_within(fd, how, wait)  # not taken in time: go on without it
        yield
    finally:
        if fd >= 0:
            os.close(fd)  # releases the lock


def _open_append(path: str, *, truncate: bool = False) -> int:
    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC | (os.O_TRUNC if truncate else 0)
    try:
        return os.open(path, flags, 0o640)
    except OSError as exc:
        raise EngineError(f"cannot open log file: {exc.strerror}", subject=path) from exc


def _write_all(fd: int, data: bytes, path: str) -> None:
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise DiskFullError("no space left for the container log", subject=path) from exc
            raise EngineError(f"cannot write log: {exc.strerror}", subject=path) from exc
        view = view[n:]


def _unlink(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _rename(src: str, dst: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.rename(src, dst)


def compress_file(path: str, last_ns: int) -> None:
    """Gzip `path` to `path.gz` (via a temp name, then unlink the original), as Docker does on rotation.

    The gzip header's extra field holds `{"lastTime": ...}` like Docker's, so a reader with `since` can
    skip the whole file without inflating it. Synchronous: a full 10 MB file costs tens of milliseconds.
    """
    tmp = f"{path}.gz.tmp"
    extra = json.dumps({"lastTime": format_time(last_ns)}, separators=(",", ":")).encode()
    crc, size = 0, 0
    comp = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    with open(path, "rb") as src, open(tmp, "wb") as dst:
        dst.write(
            b"\x1f\x8b\x08\x04" + struct.pack("<I", 0) + b"\x00\xff" + struct.pack("<H", len(extra)) + extra
        )
        while block := src.read(_BLOCK):
            crc = zlib.crc32(block, crc)
            size += len(block)
            dst.write(comp.compress(block))
        dst.write(comp.flush() + struct.pack("<II", crc & 0xFFFFFFFF, size & 0xFFFFFFFF))
    os.rename(tmp, f"{path}.gz")
    os.unlink(path)


# --------------------------------------------------------------------------------------------- reading


def _rotated_names(path: str) -> list[str]:
    """Existing rotated files, oldest first (`.N[.gz]` ... `.1[.gz]`); a plain file wins over its .gz.

    Listed from the directory, not probed `.1`, `.2`, ... until a gap: in the middle of a rotation the
    names are shifted one by one, so a gap is normal and the order of the others is still right.
    """
    directory, base = os.path.split(path)
    prefix = base + "."
    found: dict[int, str] = {}
    for name in os.listdir(directory or "."):
        if not name.startswith(prefix):
            continue
        rest = name[len(prefix) :]
        packed = rest.endswith(".gz")
        number = rest[:-3] if packed else rest
        if number.isdigit() and (not packed or int(number) not in found):
            found[int(number)] = os.path.join(directory, name)
    return [found[n] for n in sorted(found, reverse=True)]


class _Source:
    """One opened log file: a plain descriptor read by offset, or a gzip member read as lines."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.gz = name.endswith(".gz")
        self.file = open(name, "rb", buffering=0)  # noqa: SIM115 - closed by the reader
        st = os.fstat(self.file.fileno())
        self.ino, self.size = st.st_ino, st.st_size
        self.start = 0  # byte offset (plain) or lines to skip (gz)

    def close(self) -> None:
        self.file.close()

    def gz_lines(self) -> Iterator[bytes]:
        with gzip.GzipFile(fileobj=self.file, mode="rb") as gz:
            yield from gz


def _open_snapshot(path: str) -> list[_Source] | None:
    """Open every file of the log (oldest first) as one consistent set; None if there is no live file.

    A rotation between listing and opening moves names under us: then list again. The live file is
    missing only for an instant during a rotation, so give up (None) if it stays away.
    """
    for _ in range(200):
        with _names_lock(path, fcntl.LOCK_SH):
            names = _log_names(path)
            sources = _open_listed(path, names, names)
        if sources is not None:
            return sources
        if not os.path.exists(path) and not _rotated_names(path):
            return None
        time.sleep(0.001)
    return None


def _log_names(path: str) -> list[str]:
    """The log's files as the directory lists them now, oldest first, ending with the live file."""
    return [*_rotated_names(path), path]


def _open_listed(path: str, listed: list[str], wanted: list[str]) -> list[_Source] | None:
    """Open `wanted` (a tail of the listing `listed`); None unless the set opened is still what is there.

    A rotation renames the files one by one, oldest first. Opening by name while it runs can skip a file:
    `.3` is opened after `.3` moved to `.4` and `.2` took its name, so the old `.3` is in neither.
    Checking each name against the inode opened does not see that; listing again does: if the directory
    still shows exactly `listed` and every name still holds what was opened, no file was skipped (a
    name never returns to a file that left it, so each held its file for the whole time).
    """
    sources: list[_Source] = []
    try:
        for name in wanted:
            sources.append(_Source(name))
    except FileNotFoundError:
        pass
    else:
        if _log_names(path) == listed and all(_same_inode(s.name, s.ino) for s in sources):
            return sources
    for s in sources:
        s.close()
    return None


def _same_inode(name: str, ino: int) -> bool:
    try:
        return os.stat(name).st_ino == ino
    except FileNotFoundError:
        return False


def _apply_tail(sources: list[_Source], n: int) -> list[_Source]:
    """Keep only what holds the last `n` complete entries; set each kept source's start."""
    need = n
    kept: list[_Source] = []
    for src in reversed(sources):
        if need <= 0:
            src.close()
            continue
        if src.gz:
            total = sum(1 for _ in src.gz_lines())
            src.file.seek(0)
            src.start = max(0, total - need)
            need -= total - src.start
        else:
            src.start, found = _tail_offset(src.file.fileno(), src.size, need)
            need -= found
        kept.append(src)
    kept.reverse()
    return kept


def _tail_offset(fd: int, size: int, n: int) -> tuple[int, int]:
    """Offset where the last `n` complete lines before `size` start, read backwards in blocks; lines found.

    An unfinished last line (a write in progress) is not counted.
    """
    end = _end_of_complete(fd, size)
    if end == 0:
        return 0, 0
    pos, found = end - 1, 0  # the final newline ends the last line; look before it
    while pos > 0:
        step = min(_BLOCK, pos)
        pos -= step
        block = os.pread(fd, step, pos)
        idx = len(block)
        while (idx := block.rfind(b"\n", 0, idx)) >= 0:
            found += 1
            if found == n:
                return pos + idx + 1, n
    return 0, found + 1


def _end_of_complete(fd: int, size: int) -> int:
    """Offset just after the last newline before `size` (the end of the complete entries)."""
    pos = size
    while pos > 0:
        step = min(_BLOCK, pos)
        block = os.pread(fd, step, pos - step)
        idx = block.rfind(b"\n")
        if idx >= 0:
            return pos - step + idx + 1
        pos -= step
    return 0


def read_logs(
    path: str | os.PathLike[str],
    *,
    since: datetime | float | str | None = None,
    until: datetime | float | str | None = None,
    tail: int | None = None,
    timestamps: bool = False,
    follow: bool = False,
    stop: threading.Event | Callable[[], bool] | None = None,
) -> Iterator[LogRecord]:
    """Entries of a log in order, across its rotated files.

    `since`/`until` (a datetime, epoch seconds or RFC 3339 text) bound entry times inclusively; `tail`
    keeps the last n entries (applied before `since`, as Docker does); `timestamps` prefixes each line
    with its time as `docker logs -t` prints it. With `follow`, keep yielding as the log grows, across
    rotations, until `stop` is set (or returns true) or an entry later than `until` arrives; the log
    may not exist yet. The starting point is taken when this is called; close the iterator when done.
    """
    p = os.fspath(path)
    should_stop = _stop_fn(stop, _to_ns(until))
    # The starting point is fixed now, not at the first next(): `tail=0` means "what comes after this call".
    sources = _open_snapshot(p)
    if sources is not None and tail is not None:
        sources = _apply_tail(sources, tail) if tail > 0 else _skip_all(sources)
    return _generate(p, sources, _to_ns(since), _to_ns(until), tail, timestamps, follow, should_stop)


def _generate(
    p: str,
    sources: list[_Source] | None,
    lo: int | None,
    hi: int | None,
    tail: int | None,
    timestamps: bool,
    follow: bool,
    should_stop: Callable[[], bool],
) -> Iterator[LogRecord]:
    """The body of `read_logs`, run lazily from a fixed starting point."""
    while sources is None:  # the log does not exist yet: everything it will hold is new
        if not follow:
            return
        stopping = should_stop()  # sampled first: a log created before `stop` was set is still read
        sources = _open_snapshot(p)
        if sources is None:
            if stopping:
                return
            time.sleep(_POLL)
    live = sources.pop()  # the file the writer appends to
    try:
        for src in sources:
            for rec in _read_closed(src):
                if (out := _filter(rec, lo, hi, timestamps)) is _PAST_UNTIL:
                    return
                if out is not None:
                    yield out
            src.close()
        sources = []
        records = _follow(p, live, should_stop) if follow else _read_plain(live)
        for rec in records:
            if (out := _filter(rec, lo, hi, timestamps)) is _PAST_UNTIL:
                return
            if out is not None:
                yield out
    finally:
        for src in sources:
            src.close()
        live.close()


_PAST_UNTIL = LogRecord(-1, "", "")


def _filter(rec: LogRecord, lo: int | None, hi: int | None, timestamps: bool) -> LogRecord | None:
    if hi is not None and rec.time > hi:
        return _PAST_UNTIL
    if lo is not None and rec.time < lo:
        return None
    if timestamps:
        return LogRecord(rec.time, rec.stream, f"{format_time_fixed(rec.time)} {rec.line}")
    return rec


def _skip_all(sources: list[_Source]) -> list[_Source]:
    """`tail=0`: no history; follow from the end of the live file's complete entries."""
    for src in sources[:-1]:
        src.close()
    live = sources[-1]
    live.start = _end_of_complete(live.file.fileno(), live.size)
    return [live]


def _to_ns(value: datetime | float | str | None) -> int | None:
    """A bound as ns: RFC 3339 text keeps ns; datetime and epoch seconds (float) are exact to the µs."""
    if value is None:
        return None
    if isinstance(value, str):
        return parse_time(value)
    if isinstance(value, datetime):
        return int(value.timestamp()) * 1_000_000_000 + value.microsecond * 1000
    return round(value * 1_000_000) * 1000


def _stop_fn(stop: threading.Event | Callable[[], bool] | None, until: int | None) -> Callable[[], bool]:
    """One predicate for `stop` (event or callable) and `until` (following ends once the clock passes it)."""
    if stop is None:
        base: Callable[[], bool] = lambda: False  # noqa: E731
    elif isinstance(stop, threading.Event):
        base = stop.is_set
    else:
        base = stop
    if until is None:
        return base
    return lambda: base() or time.time_ns() > until


def _read_closed(src: _Source) -> Iterator[LogRecord]:
    """A rotated file: nothing writes to it any more."""
    if src.gz:
        for i, raw in enumerate(src.gz_lines()):
            if i >= src.start and raw.endswith(b"\n"):
                yield decode_record(raw)
    else:
        yield from _read_plain(src)


def _read_plain(src: _Source) -> Iterator[LogRecord]:
    """Entries from `src.start` to the current end of a plain file; an unfinished last line waits."""
    fd = src.file.fileno()
    pos, carry = src.start, b""
    while block := os.pread(fd, _BLOCK, pos):
        pos += len(block)
        data = carry + block if carry else block
        cut = data.rfind(b"\n") + 1
        if cut:
            src.start = pos - (len(data) - cut)
            for raw in data[:cut].split(b"\n")[:-1]:
                if (rec := _decode_or_none(raw)) is not None:
                    yield rec
        carry = data[cut:]


def _decode_or_none(raw: bytes) -> LogRecord | None:
    """A torn line (a crash mid-write) is skipped rather than ending the whole read."""
    try:
        return decode_record(raw)
    except (ValueError, KeyError, TypeError):
        return None


_LOST_AFTER = 20  # listings without our file before we believe it was compressed or dropped


def _follow(path: str, live: _Source, should_stop: Callable[[], bool]) -> Iterator[LogRecord]:
    """Read the live file as it grows; on rotation drain it, then continue in the files that replaced it.

    `stop` is sampled before the last read so that whatever was written before it was set is delivered.
    """
    current = live
    misses = 0  # listings in a row that did not show our file
    try:
        while True:
            stopping = should_stop()
            yield from _read_plain(current)
            if _same_inode(path, current.ino) or not os.path.exists(path):
                if stopping:
                    return
                time.sleep(_POLL)
                continue
            # The name points to another file: the writer is done with ours. Drain what it wrote last.
            yield from _read_plain(current)
            newer = _newer_sources(path, current.ino, accept_lost=misses >= _LOST_AFTER)
            if newer is None:
                misses += 1
                time.sleep(0.001)
                continue
            misses = 0
            current.close()
            for src in newer[:-1]:
                yield from _read_closed(src)
                src.close()
            current = newer[-1]
    finally:
        current.close()


def _newer_sources(path: str, ino: int, *, accept_lost: bool = False) -> list[_Source] | None:
    """The files written after the one with inode `ino`, oldest first, ending with the live file.

    None when the names moved while we looked (the caller simply tries again). A listing made while the
    writer renames can miss our file altogether (readdir is not atomic against renames), so "our file is
    gone" is believed only with `accept_lost` (the caller looked several times): then it was compressed
    or dropped and the live file alone follows — otherwise whole rotated files would be skipped.
    """
    with _names_lock(path, fcntl.LOCK_SH):
        names = _log_names(path)
        at = next((i for i, n in enumerate(names) if not n.endswith(".gz") and _same_inode(n, ino)), None)
        if at is None and not accept_lost:
            return None
        sources = _open_listed(path, names, names[at + 1 :] if at is not None else [path])
    if sources is not None and (at is None or _same_inode(names[at], ino)):
        return sources
    for s in sources or ():
        s.close()
    return None


__all__ = [
    "PARTIAL_LIMIT",
    "LogOptions",
    "LogRecord",
    "LogSink",
    "LogWriter",
    "NullLog",
    "compress_file",
    "decode_record",
    "encode_record",
    "format_time",
    "format_time_fixed",
    "log_path",
    "open_log",
    "parse_size",
    "parse_time",
    "read_logs",
]
