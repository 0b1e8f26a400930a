"""json-file logs: Docker's bytes on disk, rotation, tail, since/until and follow across rotations."""

from __future__ import annotations

import gzip
import itertools
import json
import os
import struct
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from engine.containers.logs import (
    PARTIAL_LIMIT,
    LogOptions,
    LogWriter,
    NullLog,
    format_time,
    log_path,
    open_log,
    parse_size,
    parse_time,
    read_logs,
)
from engine.errors import EngineError

T0 = 1_700_000_000_000_000_000  # 2023-11-14T22:13:20Z
MS = 1_000_000


def entries(path: Path) -> list[dict[str, str]]:
    return [json.loads(raw) for raw in path.read_bytes().splitlines()]


@pytest.fixture
def logdir(tmp_path: Path) -> Path:
    return tmp_path


def writer(logdir: Path, **opts: str) -> LogWriter:
    return LogWriter(log_path(logdir, "c1"), LogOptions.parse(opts))


# ------------------------------------------------------------------------------------------ format


def test_exact_bytes_match_docker_json_file(logdir: Path) -> None:
    w = writer(logdir)
    w.feed("stdout", b'a<b>&"\\\tz\r\n', T0 + 123_450_000)
    w.feed("stderr", b"x\n", T0)
    w.close()
    assert (logdir / "c1-json.log").read_bytes() == (
        b'{"log":"a\\u003cb\\u003e\\u0026\\"\\\\\\u0009z\\r\\n","stream":"stdout",'
        b'"time":"2023-11-14T22:13:20.12345Z"}\n'
        b'{"log":"x\\n","stream":"stderr","time":"2023-11-14T22:13:20Z"}\n'
    )


def test_invalid_utf8_becomes_one_replacement_escape_per_byte(logdir: Path) -> None:
    w = writer(logdir)
    # truncated 3-byte sequence, stray byte, encoded surrogate, then valid U+2028, é and a real U+FFFD
    w.feed("stdout", b"\xe2\x82A\xff\xed\xa0\x80|\xe2\x80\xa8|\xc3\xa9|\xef\xbf\xbd\n", T0)
    w.close()
    raw = (logdir / "c1-json.log").read_bytes()
    assert raw.startswith(
        b'{"log":"\\ufffd\\ufffdA\\ufffd\\ufffd\\ufffd\\ufffd|\\u2028|\xc3\xa9|\xef\xbf\xbd\\n"'
    )
    assert json.loads(raw)["log"] == "\ufffd\ufffdA" + "\ufffd" * 4 + "|\u2028|é|\ufffd\n"


def test_time_format_trims_zeros_and_parses_back() -> None:
    assert format_time(T0) == "2023-11-14T22:13:20Z"
    assert format_time(T0 + 1) == "2023-11-14T22:13:20.000000001Z"
    assert format_time(T0 + 500_000_000) == "2023-11-14T22:13:20.5Z"
    for ns in (T0, T0 + 1, T0 + 987_654_321, 0):
        assert parse_time(format_time(ns)) == ns
    assert parse_time("2023-11-14T23:13:20.5+01:00") == T0 + 500_000_000


# ------------------------------------------------------------------------------------------ chunks


def test_lines_split_across_chunks_and_streams_kept_apart(logdir: Path) -> None:
    w = writer(logdir)
    data = b"hello world\nsecond line\r\nthird\n"
    for i in range(len(data)):  # one byte per read, interleaved with the other stream
        w.feed("stdout", data[i : i + 1], T0 + i)
        if i == 3:
            w.feed("stderr", b"err-", T0)
    w.feed("stderr", b"line\n", T0 + 100)
    w.close()
    got = [(e["stream"], e["log"]) for e in entries(logdir / "c1-json.log")]
    assert got == [
        ("stdout", "hello world\n"),
        ("stdout", "second line\r\n"),
        ("stdout", "third\n"),
        ("stderr", "err-line\n"),
    ]


def test_line_time_is_when_its_newline_arrived(logdir: Path) -> None:
    w = writer(logdir)
    w.feed("stdout", b"ab", T0)
    w.feed("stdout", b"c\n", T0 + 5)
    w.close()
    assert entries(logdir / "c1-json.log")[0]["time"] == format_time(T0 + 5)


def test_last_line_without_newline_is_written_as_is_at_eof(logdir: Path) -> None:
    w = writer(logdir)
    w.feed("stdout", b"done\nno newline", T0)
    assert [e["log"] for e in entries(logdir / "c1-json.log")] == ["done\n"]
    w.eof("stdout", T0 + 1)
    assert [e["log"] for e in entries(logdir / "c1-json.log")] == ["done\n", "no newline"]
    w.close()


def test_long_lines_split_at_16k_with_partial_marker_and_first_time(logdir: Path) -> None:
    w = writer(logdir)
    long = b"x" * (2 * PARTIAL_LIMIT + 100)
    for i in range(0, len(long), 3000):  # arbitrary read sizes
        w.feed("stdout", long[i : i + 3000], T0 + i)
    w.feed("stdout", b"\n" + b"y" * PARTIAL_LIMIT + b"\nz\n", T0 + 10**9)
    w.close()
    got = entries(logdir / "c1-json.log")
    assert [len(e["log"]) for e in got] == [PARTIAL_LIMIT, PARTIAL_LIMIT, 101, PARTIAL_LIMIT, 1, 2]
    assert [e["log"].endswith("\n") for e in got] == [False, False, True, False, True, True]
    # every piece carries the time of the first one, written by the read that filled 16 KiB
    assert {e["time"] for e in got[:3]} == {format_time(T0 + 15000)}
    assert "".join(e["log"] for e in got[:3]) == "x" * len(long) + "\n"
    assert got[4]["log"] == "\n"  # a line of exactly 16 KiB: Docker's buffer fills before the newline


def test_memory_held_per_stream_is_bounded(logdir: Path) -> None:
    w = writer(logdir)
    for _ in range(100):
        w.feed("stdout", b"z" * 5000, T0)
        assert len(w._held[0]) < PARTIAL_LIMIT
    w.close()


# ------------------------------------------------------------------------------------------ rotation


def write_lines(w: LogWriter, n: int, start: int = 0, stream: str = "stdout") -> None:
    for i in range(start, start + n):
        w.feed(stream, f"line {i:06d}\n".encode(), T0 + i * MS)


def test_rotation_keeps_max_file_files_and_drops_the_oldest(logdir: Path) -> None:
    w = writer(logdir, **{"max-size": "1k", "max-file": "3"})
    write_lines(w, 200)
    w.close()
    names = sorted(p.name for p in logdir.iterdir())
    assert names == ["c1-json.log", "c1-json.log.1", "c1-json.log.2"]
    for name in ("c1-json.log.1", "c1-json.log.2"):
        size = (logdir / name).stat().st_size
        assert 1000 <= size < 1000 + 80  # rotated once it held max-size: at most one entry over
    lines = [r.line for r in read_logs(log_path(logdir, "c1"))]
    assert lines == [f"line {i:06d}\n" for i in range(200 - len(lines), 200)]
    assert 30 < len(lines) < 60


def test_max_file_one_replaces_the_file(logdir: Path) -> None:
    w = writer(logdir, **{"max-size": "500"})
    write_lines(w, 50)
    w.close()
    assert [p.name for p in logdir.iterdir()] == ["c1-json.log"]
    assert (logdir / "c1-json.log").stat().st_size < 600


def test_compress_gzips_rotated_files_with_last_time_header(logdir: Path) -> None:
    w = writer(logdir, **{"max-size": "1k", "max-file": "4", "compress": "true"})
    write_lines(w, 100)
    w.close()
    names = sorted(p.name for p in logdir.iterdir())
    assert names == ["c1-json.log", "c1-json.log.1.gz", "c1-json.log.2.gz", "c1-json.log.3.gz"]
    raw = (logdir / "c1-json.log.1.gz").read_bytes()
    assert raw[3] & 0x04  # FEXTRA
    (xlen,) = struct.unpack("<H", raw[10:12])
    last = json.loads(raw[12 : 12 + xlen])["lastTime"]
    plain = gzip.decompress(raw).splitlines()
    assert json.loads(plain[-1])["time"] == last
    lines = [r.line for r in read_logs(log_path(logdir, "c1"))]
    assert lines == [f"line {i:06d}\n" for i in range(100 - len(lines), 100)]
    assert [r.line for r in read_logs(log_path(logdir, "c1"), tail=30)] == lines[-30:]


def test_reopening_appends_and_counts_the_existing_size(logdir: Path) -> None:
    w = writer(logdir, **{"max-size": "1k", "max-file": "2"})
    write_lines(w, 10)
    w.close()
    w = writer(logdir, **{"max-size": "1k", "max-file": "2"})
    write_lines(w, 10, start=10)
    w.close()
    assert [r.line for r in read_logs(log_path(logdir, "c1"))] == [f"line {i:06d}\n" for i in range(20)]
    assert (logdir / "c1-json.log.1").exists()


# ------------------------------------------------------------------------------------------ options


def test_options_follow_docker_validation() -> None:
    assert LogOptions.parse({}) == LogOptions(-1, 1, False)
    assert LogOptions.parse({"max-size": "10m", "max-file": "3", "compress": "true"}) == LogOptions(
        10_000_000, 3, True
    )
    assert [parse_size(s) for s in ("100", "1k", "1.5K", "2MB", "3mib", "1g", "4 kb")] == [
        100,
        1000,
        1500,
        2_000_000,
        3_000_000,
        10**9,
        4000,
    ]
    for bad in ({"max-size": "0"}, {"max-size": "ten"}, {"max-file": "0"}, {"max-file": "x"}, {"bogus": "1"}):
        with pytest.raises(EngineError):
            LogOptions.parse(bad)
    with pytest.raises(EngineError, match="compress"):
        LogOptions.parse({"max-size": "1m", "compress": "true"})
    with pytest.raises(EngineError, match="compress"):
        LogOptions.parse({"max-size": "1m", "max-file": "2", "compress": "maybe"})


def test_driver_none_writes_nothing(logdir: Path) -> None:
    sink = open_log(logdir, "c1", "none", {})
    assert isinstance(sink, NullLog)
    sink.feed("stdout", b"x\n", T0)
    sink.eof("stdout")
    sink.flush()
    sink.close()
    assert list(logdir.iterdir()) == []
    with pytest.raises(EngineError):
        open_log(logdir, "c1", "syslog", {})
    real = open_log(logdir, "c1", "json-file", {"max-size": "1m"})
    assert isinstance(real, LogWriter)
    real.close()


# ------------------------------------------------------------------------------------------ reading


def test_tail_across_rotated_files_and_block_boundaries(logdir: Path) -> None:
    w = writer(logdir, **{"max-size": "100k", "max-file": "5"})
    for i in range(3000):  # ~110 bytes per entry: entries straddle the 64 KiB read blocks
        w.feed("stdout", f"{i:06d} {'p' * 40}\n".encode(), T0 + i)
    w.feed("stdout", b"unfinished", T0)  # not a complete entry yet: never counted or shown
    path = log_path(logdir, "c1")
    assert len(list(logdir.iterdir())) == 4
    for n in (1, 5, 600, 1000, 2500, 10_000):
        got = [r.line[:6] for r in read_logs(path, tail=n)]
        assert got == [f"{i:06d}" for i in range(max(0, 3000 - n), 3000)], n
    assert list(read_logs(path, tail=0)) == []
    w.close()


def test_since_until_and_timestamps(logdir: Path) -> None:
    w = writer(logdir)
    write_lines(w, 10)
    w.close()
    path = log_path(logdir, "c1")
    got = [(r.time - T0) // MS for r in read_logs(path, since=(T0 + 3 * MS) / 1e9, until=(T0 + 6 * MS) / 1e9)]
    assert got == [3, 4, 5, 6]  # both bounds inclusive
    second = list(read_logs(path, timestamps=True))[1]
    assert second.line == "2023-11-14T22:13:20.001000000Z line 000001\n"
    since = datetime.fromtimestamp((T0 + 8 * MS) / 1e9, tz=UTC)
    assert [(r.time - T0) // MS for r in read_logs(path, tail=3, since=since)] == [8, 9]


def test_reading_a_missing_log_without_follow_yields_nothing(logdir: Path) -> None:
    assert list(read_logs(log_path(logdir, "nope"))) == []


def test_torn_line_is_skipped(logdir: Path) -> None:
    path = log_path(logdir, "c1")
    good = b'{"log":"a\\n","stream":"stdout","time":"2023-11-14T22:13:20Z"}\n'
    path.write_bytes(good + b'{"log":"tor' + b"\n" + good)
    assert [r.line for r in read_logs(path)] == ["a\n", "a\n"]


# ------------------------------------------------------------------------------------------ follow


def run_writer(
    logdir: Path, opts: dict[str, str], n: int, started: threading.Event, done: threading.Event
) -> None:
    """Create the log only once the reader runs, write n lines in odd-sized chunks, then signal the end."""
    try:
        started.wait(5)
        time.sleep(0.1)  # the reader is now polling for a file that does not exist yet
        w = writer(logdir, **opts)
        data = b"".join(f"L{i:06d} {'s' * (i % 37)}\n".encode() for i in range(n))
        for i in range(0, len(data), 777):
            w.feed("stdout", data[i : i + 777])
        w.close()
    finally:
        done.set()


def expected_lines(n: int) -> list[str]:
    return [f"L{i:06d} {'s' * (i % 37)}\n" for i in range(n)]


FOLLOW_OPTS = [{"max-size": "20k", "max-file": "1000"}, {"max-size": "50k", "max-file": "3"}]


@pytest.mark.parametrize("opts", FOLLOW_OPTS)
def test_follow_sees_every_line_once_across_rotations(logdir: Path, opts: dict[str, str]) -> None:
    """The reader starts before the file exists; the writer rotates many times while it follows."""
    n = 10_000
    path = log_path(logdir, "c1")
    started, done = threading.Event(), threading.Event()
    got: list[str] = []

    def follow() -> None:
        it = read_logs(path, follow=True, stop=done)
        started.set()
        got.extend(r.line for r in it)

    reader = threading.Thread(target=follow)
    writer_thread = threading.Thread(target=run_writer, args=(logdir, opts, n, started, done))
    reader.start()
    writer_thread.start()
    writer_thread.join(60)
    reader.join(60)
    assert not reader.is_alive()
    assert len(list(logdir.iterdir())) >= 3  # it did rotate
    if opts["max-file"] == "3":
        # Only 3 files are kept: a reader that lags by more than that loses what was dropped (as with
        # Docker), but never repeats or reorders a line and always reaches the end.
        index = {line: i for i, line in enumerate(expected_lines(n))}
        positions = [index[line] for line in got]
        assert positions == sorted(set(positions))
        assert positions[-1] == n - 1
    else:
        assert got == expected_lines(n)


def test_reads_during_fast_rotation_skip_no_file(logdir: Path) -> None:
    """A rotation renames `.N` ... `.1` one by one; a read opening them meanwhile must not skip one.

    Opening `.3` just after it moved to `.4` (and `.2` took its name) used to lose a whole file from the
    middle of the output; and a reader whose snapshot kept failing its check returned nothing at all.
    """
    w = writer(logdir, **{"max-size": "2k", "max-file": "1000"})
    path = log_path(logdir, "c1")
    stop = threading.Event()

    def write() -> None:
        i = 0
        while not stop.is_set() and i < 200_000:
            w.feed("stdout", f"L{i:06d}\n".encode())
            i += 1
        w.close()

    write_lines(w, 1)  # the log exists before the first read
    thread = threading.Thread(target=write)
    thread.start()
    reads, broken = 0, []
    try:
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline and thread.is_alive():
            got = [r.line for r in read_logs(path)]
            reads += 1
            numbers = [int(line[1:7]) for line in got[1:]]
            if got[:1] != ["line 000000\n"] or numbers != list(range(len(numbers))):
                gap = next((a for a, b in itertools.pairwise(numbers) if b != a + 1), None)
                broken.append((len(got), gap))
    finally:
        stop.set()
        thread.join(30)
    rotations = sum(1 for p in logdir.iterdir() if p.name != path.name)
    assert rotations > 20 and reads > 20, (rotations, reads)
    assert broken == [], f"{len(broken)} of {reads} reads lost entries (count, gap after): {broken[:5]}"


def test_follow_with_compression_across_each_rotation(logdir: Path) -> None:
    """With compress the rotated file changes inode at once; a reader within one rotation misses nothing."""
    path = log_path(logdir, "c1")
    w = writer(logdir, **{"max-size": "2k", "max-file": "4", "compress": "true"})
    stop = threading.Event()
    got: list[str] = []
    it = read_logs(path, follow=True, stop=stop)
    reader = threading.Thread(target=lambda: got.extend(r.line for r in it))
    reader.start()
    try:
        for batch in range(20):  # 20 lines (~1.2 KB) per batch: at most one rotation each
            write_lines(w, 20, start=batch * 20)
            deadline = time.monotonic() + 10
            while len(got) < (batch + 1) * 20 and time.monotonic() < deadline:
                time.sleep(0.005)
    finally:
        w.close()
        stop.set()
        reader.join(10)
    assert got == [f"line {i:06d}\n" for i in range(400)]
    assert any(p.name.endswith(".gz") for p in logdir.iterdir())


def test_follow_from_before_the_log_exists(logdir: Path) -> None:
    path = log_path(logdir, "c1")
    stop = threading.Event()
    it = read_logs(path, follow=True, stop=stop)
    w = writer(logdir)
    write_lines(w, 3)
    w.close()
    stop.set()
    assert [r.line for r in it] == ["line 000000\n", "line 000001\n", "line 000002\n"]


def test_follow_reader_far_behind_walks_every_rotated_file(logdir: Path) -> None:
    path = log_path(logdir, "c1")
    w = writer(logdir, **{"max-size": "2k", "max-file": "100"})
    write_lines(w, 5)
    stop = threading.Event()
    it = read_logs(path, follow=True, stop=stop)
    assert next(it).line == "line 000000\n"  # the reader now holds the first file open
    write_lines(w, 500, start=5)  # many rotations while the reader does not run
    w.close()
    stop.set()
    rest = [r.line for r in it]
    assert rest == [f"line {i:06d}\n" for i in range(1, 505)]


def test_follow_tail_zero_shows_only_new_lines_and_stop_callable(logdir: Path) -> None:
    path = log_path(logdir, "c1")
    w = writer(logdir)
    write_lines(w, 3)
    flag = {"stop": False}
    it = read_logs(path, follow=True, tail=0, stop=lambda: flag["stop"])
    write_lines(w, 2, start=3)
    flag["stop"] = True
    assert [r.line for r in it] == ["line 000003\n", "line 000004\n"]
    w.close()


def test_follow_ends_at_until(logdir: Path) -> None:
    path = log_path(logdir, "c1")
    w = writer(logdir)
    write_lines(w, 5)
    got = [(r.time - T0) // MS for r in read_logs(path, follow=True, until=(T0 + 2 * MS) / 1e9)]
    assert got == [0, 1, 2]
    w.close()


def test_writer_leaves_no_descriptor_open_after_close(logdir: Path) -> None:
    before = len(os.listdir("/proc/self/fd"))
    w = writer(logdir, **{"max-size": "1k", "max-file": "2", "compress": "1"})
    write_lines(w, 100)
    w.close()
    list(read_logs(log_path(logdir, "c1"), tail=5))
    assert len(os.listdir("/proc/self/fd")) == before


def test_follow_ends_when_the_clock_passes_until(logdir: Path) -> None:
    path = log_path(logdir, "c1")
    w = writer(logdir)
    write_lines(w, 2)  # entries dated 2023: long before `until`
    until = time.time() + 0.2
    got = [r.line for r in read_logs(path, follow=True, until=until)]
    assert got == ["line 000000\n", "line 000001\n"]
    assert time.time() >= until
    w.close()
