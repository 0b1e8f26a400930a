"""Stream a layer tarball into a directory, safely, computing its diff_id on the way.

Why our own tar reader: `tarfile.extractall` is too slow for a root filesystem and none of its filters fit
one (`data` refuses device nodes and absolute symlink targets, `tar` strips setuid bits, `fully_trusted`
lets `../` escape). We parse headers ourselves (ustar, GNU long names, PAX), keep every name as bytes, and
create entries with `*at` system calls relative to a directory fd.

Safety model. Every member name is normalised; an absolute name or any `..` component is refused
(`UnsafeLayerError` naming the member). Every parent directory of a member must be a real directory that
this unpack created or found as a real directory (never a symlink): a layer that writes "through" a
symlink it created (`a -> /etc`, then `a/passwd`) is refused, whatever the symlink points to. Hard link
targets obey the same rules and must already exist in the layer. Symlink *targets* are stored verbatim
(absolute ones included): they are interpreted inside the container, never followed here. Because only
this process writes into `dest` while we unpack, the set of directories we verified stays true.

Speed: a reader thread reads (and decompresses) the stream in 1 MiB chunks and hashes them; sha256,
zlib and zstd release the GIL, so the diff_id costs the extracting thread nothing on a second core. File
data is written straight from those chunks (memoryview slices, no copies); a header costs a struct unpack,
an Adler-32 checksum test and a few `*at` calls.

Caller contract: `dest` is a private, empty staging directory. On any error the unpack stops and leaves
whatever it wrote; the caller deletes the staging directory and only renames it into place on success.

Layers become overlayfs lower directories, so OCI whiteouts are converted to overlayfs form: `.wh.<name>`
becomes a character device 0:0 named `<name>` and `.wh..wh..opq` becomes the `trusted.overlay.opaque=y`
xattr on its directory. The xattr needs CAP_SYS_ADMIN; the 0:0 device needs nothing on Linux >= 5.8
(real devices need CAP_MKNOD). Non-root fallback: an opaque marker the kernel will not turn into the
xattr (or a whiteout on an older kernel) is kept as the empty file the layer contained (OCI form); device
nodes and foreign ownership are skipped. Every fallback is listed in `UnpackResult.warnings`. A directory
with markers is fine to inspect but is not a valid overlayfs lower dir (mounting needs root anyway).
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import queue
import shutil
import stat
import struct
import threading
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from engine.errors import ArchiveError, DiskFullError, EngineError, UnsafeLayerError
from engine.frozen import frozen

OwnerMap = Callable[[int, int], tuple[int, int]]

CHUNK = 1 << 20  # read size: large reads keep per-call overhead negligible
_QUEUE_CHUNKS = 16  # bounded read-ahead (16 MiB) between the reader thread and the extractor
_MAX_META = 16 << 20  # a PAX / GNU long-name header larger than this is an attack, not a name
_BLOCK = 512
_ZERO_BLOCK = bytes(_BLOCK)

WHITEOUT_PREFIX = b".wh."
WHITEOUT_META_PREFIX = b".wh..wh."
OPAQUE_MARKER = b".wh..wh..opq"
OPAQUE_XATTR = "trusted.overlay.opaque"

# Magic numbers of the compressions a layer (or an imported rootfs tarball) may use.
_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_BZIP2_MAGIC = b"BZh"
_XZ_MAGIC = b"\xfd7zXZ\x00"


@frozen
class UnpackResult:
    """What one unpack produced.

    `diff_id` is the sha256 of the uncompressed tar bytes (all of them, trailing padding included);
    `size` the bytes of regular-file content written (what `du` roughly shows, used for image sizes);
    `tar_size` the uncompressed tar length; `entries` the tar members applied (whiteouts included);
    `warnings` one line per thing that could not be reproduced (non-root fallbacks, unsupported xattrs).
    """

    diff_id: str
    size: int
    entries: int
    tar_size: int = 0
    warnings: tuple[str, ...] = ()


# --------------------------------------------------------------------------------------------------
# Decompression


def detect_compression(head: bytes) -> str:
    """Name the compression of a stream from its first bytes: gzip, zstd, bzip2, xz or none."""
    if head.startswith(_GZIP_MAGIC):
        return "gzip"
    skippable = len(head) >= 4 and head[1:4] == b"\x2a\x4d\x18" and 0x50 <= head[0] <= 0x5F
    if head.startswith(_ZSTD_MAGIC) or skippable:
        return "zstd"  # a zstd frame, or a skippable frame (0x184D2A5?) that zstd readers pass over
    if head.startswith(_BZIP2_MAGIC):
        return "bzip2"
    if head.startswith(_XZ_MAGIC):
        return "xz"
    return "none"


class _Prefixed(io.RawIOBase):
    """A non-seekable stream with the bytes we already read for sniffing put back in front."""

    def __init__(self, head: bytes, rest: BinaryIO) -> None:
        self._head = head
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[override]
        view = memoryview(buffer).cast("B")
        if self._head:
            n = min(len(view), len(self._head))
            view[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._rest.read(len(view))
        view[: len(data)] = data
        return len(data)

    def read(self, size: int = -1) -> bytes:
        if self._head:
            if size < 0:
                data, self._head = self._head + self._rest.read(), b""
                return data
            data, self._head = self._head[:size], self._head[size:]
            return data
        return self._rest.read(size)

    def close(self) -> None:
        self._rest.close()
        super().close()


def _decoder_errors() -> tuple[type[BaseException], ...]:
    """Exceptions a decompressor raises on corrupt or truncated input (imported lazily)."""
    import gzip
    import lzma
    import zlib

    import zstandard

    return (gzip.BadGzipFile, EOFError, zlib.error, lzma.LZMAError, zstandard.ZstdError)


class _Decoded(io.RawIOBase):
    """A decompressing reader that reports corrupt input as ArchiveError and closes what it owns."""

    def __init__(self, reader: BinaryIO, kind: str, owned: list[BinaryIO]) -> None:
        self._reader = reader
        self._kind = kind
        self._owned = owned
        self._errors = _decoder_errors()

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        try:
            return self._reader.read(size)
        except self._errors as exc:
            raise ArchiveError(f"corrupt or truncated {self._kind} stream ({exc})") from exc
        except OSError as exc:
            if self._kind == "bzip2" and "Invalid data stream" in str(exc):
                raise ArchiveError(f"corrupt bzip2 stream ({exc})") from exc
            raise

    def readinto(self, buffer) -> int:  # type: ignore[override]
        view = memoryview(buffer).cast("B")
        data = self.read(len(view))
        view[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            for stream in (self._reader, *reversed(self._owned)):
                stream.close()
        super().close()


def open_layer(source: str | os.PathLike[str] | BinaryIO) -> BinaryIO:
    """Open a layer blob (path or stream) as an uncompressed tar stream, sniffing the compression.

    Streams, never loads the layer. Closing the result closes a file we opened; a stream the caller
    passed is closed too (the result owns it).
    """
    if isinstance(source, str | os.PathLike):
        stream: BinaryIO = open(source, "rb", buffering=0)  # noqa: SIM115 - the result owns it
    else:
        stream = source
    try:
        head, stream = _sniff(stream)
        kind = detect_compression(head)
        if kind == "none":
            return stream
        return _Decoded(_decompressor(kind, stream), kind, [stream])
    except BaseException:
        stream.close()
        raise


def _sniff(stream: BinaryIO) -> tuple[bytes, BinaryIO]:
    """Read the first bytes without losing them: seek back when possible, else put them in front."""
    peek = getattr(stream, "peek", None)
    if peek is not None:
        head = peek(8)[:8]
        if len(head) >= 6:
            return head, stream
    if stream.seekable():
        pos = stream.tell()
        head = stream.read(8)
        stream.seek(pos)
        return head, stream
    head = b""
    while len(head) < 8:
        more = stream.read(8 - len(head))
        if not more:
            break
        head += more
    return head, _Prefixed(head, stream)  # type: ignore[return-value]


def _decompressor(kind: str, stream: BinaryIO) -> BinaryIO:
    """A streaming decompressor over `stream` (all frames/members, not just the first)."""
    if kind == "gzip":
        import gzip

        return gzip.GzipFile(fileobj=stream, mode="rb")  # type: ignore[return-value]
    if kind == "zstd":
        import zstandard

        return zstandard.ZstdDecompressor().stream_reader(  # type: ignore[return-value]
            stream, read_size=CHUNK, read_across_frames=True
        )
    if kind == "bzip2":
        import bz2

        return bz2.BZ2File(stream, "rb")  # type: ignore[return-value]
    import lzma

    return lzma.LZMAFile(stream, "rb")  # type: ignore[return-value]


# --------------------------------------------------------------------------------------------------
# Reading: one thread reads (and decompresses) and hashes, the caller parses and writes.


class _HashingReader:
    """Reads `source` in a background thread, hashing every byte, and hands chunks over in order.

    sha256 and decompression release the GIL, so on two cores hashing costs the extractor nothing.
    """

    def __init__(self, source: BinaryIO) -> None:
        self._source = source
        self._hash = hashlib.sha256()
        self._queue: queue.Queue[bytes | BaseException | None] = queue.Queue(_QUEUE_CHUNKS)
        self._stop = threading.Event()
        self.total = 0
        self.eof = False
        self._thread = threading.Thread(target=self._run, name="layer-reader", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                chunk = self._source.read(CHUNK)
                if not chunk:
                    break
                self._hash.update(chunk)
                self._put(chunk)
            self._put(None)
        except BaseException as exc:
            self._put(exc)

    def _put(self, item: bytes | BaseException | None) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def next_chunk(self) -> bytes:
        """The next chunk, or b"" at the end of the stream; re-raises what the reader thread hit."""
        if self.eof:
            return b""
        item = self._queue.get()
        if item is None:
            self.eof = True
            return b""
        if isinstance(item, BaseException):
            self.eof = True
            if isinstance(item, EngineError):
                raise item
            raise ArchiveError(f"cannot read layer: {item}") from item
        self.total += len(item)
        return item

    def drain(self) -> None:
        """Consume the rest of the stream (the diff_id covers every byte, padding included)."""
        while self.next_chunk():
            pass

    def digest(self) -> str:
        return "sha256:" + self._hash.hexdigest()

    def close(self) -> None:
        self._stop.set()
        while self._thread.is_alive():
            try:
                self._queue.get(timeout=0.05)
            except queue.Empty:
                pass
        self._thread.join()


class _Blocks:
    """The tar byte stream as 512-byte blocks and data runs over large chunks, never copying a chunk."""

    def __init__(self, reader: _HashingReader) -> None:
        self._reader = reader
        self.buf = b""
        self.view = memoryview(self.buf)
        self.pos = 0
        self.offset = 0  # absolute offset of buf[0], for error messages

    def _next(self) -> bool:
        """Move to the next chunk; False at the end of the stream."""
        chunk = self._reader.next_chunk()
        if not chunk:
            return False
        self.offset += len(self.buf)
        self.buf = chunk
        self.view = memoryview(chunk)
        self.pos = 0
        return True

    def take(self, size: int) -> bytes | None:
        """Exactly `size` bytes; None at a clean end of stream, ArchiveError when it ends midway."""
        end = self.pos + size
        if end <= len(self.buf):
            data = self.buf[self.pos : end]
            self.pos = end
            return data
        parts = [self.buf[self.pos :]]
        need = end - len(self.buf)
        self.pos = len(self.buf)
        while need:
            if not self._next():
                if need == size:
                    return None
                raise ArchiveError(f"truncated tar stream at byte {self.offset + len(self.buf)}")
            part = self.buf[:need]
            parts.append(part)
            self.pos = len(part)
            need -= len(part)
        return b"".join(parts)

    def block(self) -> bytes | None:
        """The next header block, or None at a clean end of stream."""
        return self.take(_BLOCK)

    def read(self, size: int) -> bytes:
        """`size` bytes of member data, padding skipped (PAX and long-name headers)."""
        data = self.take(size + (-size % _BLOCK)) if size else b""
        if data is None:
            raise ArchiveError(f"truncated tar stream at byte {self.offset + self.pos}")
        return data[:size]

    def copy(self, fd: int | None, size: int) -> None:
        """Write `size` bytes of member data to `fd` (None: skip them), then skip the padding."""
        remaining = size + (-size % _BLOCK)
        data = size
        while remaining:
            avail = len(self.buf) - self.pos
            if not avail:
                if not self._next():
                    raise ArchiveError(f"truncated tar stream at byte {self.offset + self.pos}")
                continue
            n = avail if avail < remaining else remaining
            if fd is not None and data:
                w = n if n < data else data
                _write_all(fd, self.view[self.pos : self.pos + w])
                data -= w
            self.pos += n
            remaining -= n


def _write_all(fd: int, data: memoryview) -> None:
    while data:
        n = os.write(fd, data)
        data = data[n:]


# --------------------------------------------------------------------------------------------------
# Headers


class _Member:
    """One tar member after its PAX / GNU meta headers were folded in."""

    __slots__ = ("dev", "gid", "link", "mode", "mtime_ns", "name", "size", "type", "uid", "xattrs")

    def __init__(
        self, name: bytes, kind: int, mode: int, uid: int, gid: int, size: int, mtime_ns: int, link: bytes
    ) -> None:
        self.name = name
        self.type = kind
        self.mode = mode
        self.uid = uid
        self.gid = gid
        self.size = size
        self.mtime_ns = mtime_ns
        self.link = link
        self.dev: tuple[int, int] = (0, 0)
        self.xattrs: dict[str, bytes] | None = None


# name, mode, uid, gid, size, mtime, chksum, typeflag, linkname, magic+version, (uname, gname),
# devmajor, devminor, prefix (ustar only; GNU keeps other fields there)
_HEADER = struct.Struct("100s8s8s8s12s12s8sB100s8s64x8s8s155s12x")
_USTAR = b"ustar\x0000"


_REG, _AREG, _CONT = ord("0"), 0, ord("7")  # regular file: "0", NUL (old tar), "7" (contiguous)
_LNK, _SYM, _CHR, _BLK, _DIR, _FIFO = (ord(c) for c in "123456")
_GNU_LONGNAME, _GNU_LONGLINK, _PAX, _PAX_GLOBAL = ord("L"), ord("K"), ord("x"), ord("g")
_GNU_SPARSE, _GNU_VOLUME, _GNU_MULTI = ord("S"), ord("V"), ord("M")
_NO_DATA = frozenset({_LNK, _SYM, _CHR, _BLK, _DIR, _FIFO})


def _number(field: bytes) -> int:
    """A numeric header field: NUL/space terminated octal, or GNU base-256 (high bit set)."""
    try:
        return int(field.rstrip(b"\0"), 8)  # the common case; int() skips spaces itself
    except ValueError:
        pass
    if field and field[0] & 0x80:
        value = int.from_bytes(field[1:], "big")
        if field[0] == 0xFF:  # negative base-256
            value -= 1 << (8 * (len(field) - 1))
        return value
    text = field.split(b"\0", 1)[0].strip()
    if not text:
        return 0
    try:
        return int(text, 8)
    except ValueError:
        raise ArchiveError(f"bad number {field!r} in tar header") from None


def _checksum_ok(block: bytes, stored: int) -> bool:
    """The header checksum: the byte sum with the checksum field read as spaces (signed for old tars).

    Adler-32's low half is 1 + the byte sum mod 65521, computed in C: comparing modulo 65521 costs
    nanoseconds, where summing 512 bytes in Python costs microseconds per member. Headers whose sum
    differs by a multiple of 65521 are accepted; the checksum is a sanity check, digests guard content.
    """
    field = block[148:156]
    unsigned = (zlib.adler32(block) & 0xFFFF) - 1 - sum(field) + 8 * 32
    if (stored - unsigned) % 65521 == 0:
        return True
    exact = sum(block) - sum(field) + 8 * 32
    signed = exact - 256 * (sum(1 for b in block if b >= 0x80) - sum(1 for b in field if b >= 0x80))
    return stored in (exact, signed)


def _parse_pax(data: bytes, into: dict[bytes, bytes]) -> None:
    """PAX records `<len> <key>=<value>\\n` into `into` (bytes, values verbatim)."""
    pos = 0
    while pos < len(data):
        if data[pos] == 0:  # tolerate NUL padding some writers leave
            break
        space = data.find(b" ", pos)
        try:
            length = int(data[pos:space])
        except ValueError:
            raise ArchiveError("malformed PAX header record") from None
        end = pos + length
        if space < 0 or length <= 0 or end > len(data) or data[end - 1 : end] != b"\n":
            raise ArchiveError("malformed PAX header record")
        key, eq, value = data[space + 1 : end - 1].partition(b"=")
        if not eq:
            raise ArchiveError("malformed PAX header record")
        into[key] = value
        pos = end


def _pax_time_ns(value: bytes) -> int:
    whole, _, frac = value.partition(b".")
    try:
        seconds = int(whole)
        nanos = int((frac + b"000000000")[:9]) if frac else 0
    except ValueError:
        raise ArchiveError(f"bad PAX time {value!r}") from None
    return seconds * 1_000_000_000 + (-nanos if whole.startswith(b"-") else nanos)


def _apply_pax(member: _Member, pax: dict[bytes, bytes]) -> None:
    """Let PAX records override header fields (path, linkpath, ids, size, mtime, xattrs)."""
    for key, value in pax.items():
        try:
            if key == b"path":
                member.name = value
            elif key == b"linkpath":
                member.link = value
            elif key == b"size":
                member.size = int(value)
            elif key == b"uid":
                member.uid = int(value)
            elif key == b"gid":
                member.gid = int(value)
            elif key == b"mtime":
                member.mtime_ns = _pax_time_ns(value)
            elif key.startswith(b"SCHILY.xattr."):
                _add_xattr(member, key[13:].decode("utf-8", "surrogateescape"), value)
            elif key.startswith(b"LIBARCHIVE.xattr."):
                import base64
                import urllib.parse

                name = urllib.parse.unquote_to_bytes(key[17:]).decode("utf-8", "surrogateescape")
                _add_xattr(member, name, base64.b64decode(value + b"=" * (-len(value) % 4)))
            elif key.startswith(b"GNU.sparse."):
                raise ArchiveError("sparse files are not supported in layers")
        except ValueError:
            raise ArchiveError(f"bad PAX value for {key.decode(errors='replace')}") from None


def _add_xattr(member: _Member, name: str, value: bytes) -> None:
    if member.xattrs is None:
        member.xattrs = {}
    member.xattrs[name] = value


def _cstr(field: bytes) -> bytes:
    end = field.find(b"\0")
    return field if end < 0 else field[:end]


def _members(blocks: _Blocks):
    """Yield the members of the tar stream with meta headers folded in; stops at the end marker."""
    global_pax: dict[bytes, bytes] = {}
    pax: dict[bytes, bytes] = {}
    long_name: bytes | None = None
    long_link: bytes | None = None
    unpack_header = _HEADER.unpack
    while True:
        block = blocks.block()
        if block is None or block == _ZERO_BLOCK:
            return
        name, mode, uid, gid, size, mtime, chksum, kind, link, magic, major, minor, prefix = unpack_header(
            block
        )
        if not _checksum_ok(block, _number(chksum)):
            raise ArchiveError(f"bad tar header checksum at byte {blocks.offset + blocks.pos - _BLOCK}")
        size = _number(size)
        if kind == _GNU_VOLUME:  # a volume label names no file
            blocks.copy(None, size)
            continue
        if kind in (_PAX, _PAX_GLOBAL, _GNU_LONGNAME, _GNU_LONGLINK):
            if size > _MAX_META:
                raise ArchiveError(f"tar meta header of {size} bytes is too large")
            data = blocks.read(size)
            if kind == _PAX:
                _parse_pax(data, pax)
            elif kind == _PAX_GLOBAL:
                _parse_pax(data, global_pax)
            elif kind == _GNU_LONGNAME:
                long_name = _cstr(data)
            else:
                long_link = _cstr(data)
            continue
        if long_name is not None:
            name, long_name = long_name, None
        else:
            name = _cstr(name)
            if magic == _USTAR and prefix[0]:  # POSIX ustar: the prefix field extends the name
                name = _cstr(prefix) + b"/" + name
        if long_link is not None:
            link, long_link = long_link, None
        else:
            link = _cstr(link)
        member = _Member(
            name, kind, _number(mode), _number(uid), _number(gid), size, _number(mtime) * 1_000_000_000, link
        )
        if kind in (_CHR, _BLK):
            member.dev = (_number(major), _number(minor))
        if global_pax:
            _apply_pax(member, global_pax)
        if pax:
            _apply_pax(member, pax)
            pax = {}
        if kind in (_GNU_SPARSE, _GNU_MULTI) or kind == ord("N"):
            raise ArchiveError(f"unsupported tar member type {chr(kind)!r}", subject=_show(member.name))
        if kind in _NO_DATA:
            member.size = 0
        yield member


# --------------------------------------------------------------------------------------------------
# Names


def _show(name: bytes) -> str:
    return name.decode("utf-8", "backslashreplace")


def normalise_name(name: bytes) -> bytes:
    """A member name relative to the layer root; b"" is the root itself.

    Refuses absolute names and any `..` component (UnsafeLayerError naming the member).
    """
    if name.startswith(b"/"):
        raise UnsafeLayerError("absolute path in layer", subject=_show(name))
    rel = name[2:] if name.startswith(b"./") else name
    if not rel.startswith(b".") and b"/." not in rel and b"//" not in rel:
        return rel.rstrip(b"/")  # fast path: no component starts with a dot, no empty component
    parts = [p for p in name.split(b"/") if p and p != b"."]
    if b".." in parts:
        raise UnsafeLayerError("'..' in layer path", subject=_show(name))
    return b"/".join(parts)


# --------------------------------------------------------------------------------------------------
# Extraction


class _Extractor:
    """Creates members under a directory fd, checking every parent is a real directory we know."""

    def __init__(self, dest: Path, privileged: bool, owner_map: OwnerMap | None) -> None:
        self.dest = os.fsencode(dest)
        self.root = os.open(dest, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        self.privileged = privileged
        self.owner_map = owner_map
        self.dirs: set[bytes] = {b""}  # verified real directories, relative to the root
        self.pending: dict[bytes, _Member] = {}  # directory metadata, applied last
        self.warnings: dict[str, list[str]] = {}
        self.size = 0
        self.entries = 0
        st = os.fstat(self.root)
        # Files we create are ours already: skip chown when the tar says the same (unless setgid root).
        self.default_owner = None if st.st_mode & stat.S_ISGID else (os.geteuid(), os.getegid())
        self.umask = _current_umask()

    def close(self) -> None:
        os.close(self.root)

    def warn(self, what: str, name: bytes) -> None:
        self.warnings.setdefault(what, []).append(_show(name))

    def warning_lines(self) -> tuple[str, ...]:
        lines = []
        for what, names in self.warnings.items():
            more = f" (and {len(names) - 1} more)" if len(names) > 1 else ""
            lines.append(f"{what}: {names[0]}{more}")
        return tuple(lines)

    # -- parents and replacement ------------------------------------------------------------------

    def parent_ready(self, rel: bytes, member: bytes) -> None:
        """Make sure every parent of `rel` is a real directory inside the root (never a symlink)."""
        self._real_parents(
            rel,
            member,
            missing=None,
            through_link="writes through the symlink {}",
            not_dir="parent {} is not a directory",
        )

    def _real_parents(
        self, path: bytes, member: bytes, *, missing: str | None, through_link: str, not_dir: str
    ) -> None:
        """Walk the parents of `path`: each must be a real directory inside the root, never a symlink
        (that would write outside the layer). A missing one is created, or is an error (`missing`)."""
        parent = path.rpartition(b"/")[0]
        if not parent or parent in self.dirs:
            return
        current = b""
        for part in parent.split(b"/"):
            current = current + b"/" + part if current else part
            if current in self.dirs:
                continue
            try:
                st = os.lstat(current, dir_fd=self.root)
            except FileNotFoundError:
                if missing is not None:
                    raise ArchiveError(missing, subject=_show(member)) from None
                os.mkdir(current, 0o755, dir_fd=self.root)
                self.dirs.add(current)
                continue
            if stat.S_ISLNK(st.st_mode):
                raise UnsafeLayerError(through_link.format(_show(current)), subject=_show(member))
            if not stat.S_ISDIR(st.st_mode):
                raise ArchiveError(not_dir.format(_show(current)), subject=_show(member))
            self.dirs.add(current)

    def remove(self, rel: bytes) -> None:
        """Remove an earlier entry that a later member replaces (a directory with its contents)."""
        try:
            st = os.lstat(rel, dir_fd=self.root)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            shutil.rmtree(rel, dir_fd=self.root)  # fd-based: never follows symlinks
            below = rel + b"/"
            self.dirs = {d for d in self.dirs if d != rel and not d.startswith(below)}
            self.pending = {d: m for d, m in self.pending.items() if d != rel and not d.startswith(below)}
        else:
            os.unlink(rel, dir_fd=self.root)

    def owner(self, m: _Member) -> tuple[int, int] | None:
        """The (uid, gid) to chown to, or None when nothing needs doing."""
        ids = self.owner_map(m.uid, m.gid) if self.owner_map else (m.uid, m.gid)
        if ids == self.default_owner:
            return None
        if not self.privileged:
            self.warn("ownership not applied (not root)", m.name)
            return None
        return ids

    def chown(self, m: _Member, target: int | bytes, ids: tuple[int, int]) -> None:
        """lchown / fchown; ids the kernel refuses (unmapped in a user namespace) become a warning."""
        try:
            if isinstance(target, int):
                os.fchown(target, *ids)
            else:
                os.chown(target, *ids, dir_fd=self.root, follow_symlinks=False)
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.EINVAL):
                raise
            self.warn(f"ownership not applied ({exc.strerror})", m.name)

    # -- member kinds -----------------------------------------------------------------------------

    def regular(self, m: _Member, rel: bytes, blocks: _Blocks) -> None:
        perm = m.mode & 0o777
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(rel, flags, perm, dir_fd=self.root)
        except FileExistsError:
            self.remove(rel)
            fd = os.open(rel, flags, perm, dir_fd=self.root)
        try:
            blocks.copy(fd, m.size)
            self.size += m.size
            ids = self.owner(m)
            if ids is not None:
                self.chown(m, fd, ids)
            mode = m.mode & 0o7777
            if mode != perm & ~self.umask:  # umask narrowed it, or setuid/setgid/sticky (after chown)
                os.fchmod(fd, mode)
            if m.xattrs:
                self.set_xattrs(fd, m)
            os.utime(fd, ns=(m.mtime_ns, m.mtime_ns))
        finally:
            os.close(fd)

    def directory(self, m: _Member, rel: bytes) -> None:
        if rel:
            try:
                os.mkdir(rel, 0o755, dir_fd=self.root)
            except FileExistsError:
                if not stat.S_ISDIR(os.lstat(rel, dir_fd=self.root).st_mode):
                    self.remove(rel)
                    os.mkdir(rel, 0o755, dir_fd=self.root)
            self.dirs.add(rel)
        if m.xattrs:
            self.set_xattrs(self.path(rel), m)
        self.pending[rel] = m

    def symlink(self, m: _Member, rel: bytes) -> None:
        try:
            os.symlink(m.link, rel, dir_fd=self.root)
        except FileExistsError:
            self.remove(rel)
            os.symlink(m.link, rel, dir_fd=self.root)
        ids = self.owner(m)
        if ids is not None:
            self.chown(m, rel, ids)
        if m.xattrs:
            self.set_xattrs(self.path(rel), m)
        os.utime(rel, ns=(m.mtime_ns, m.mtime_ns), dir_fd=self.root, follow_symlinks=False)

    def hardlink(self, m: _Member, rel: bytes) -> None:
        if m.link.startswith(b"/") or b".." in m.link.split(b"/"):
            raise UnsafeLayerError(
                f"hard link to {_show(m.link)} points outside the layer", subject=_show(m.name)
            )
        target = normalise_name(m.link)
        if not target:
            raise ArchiveError("hard link without a target", subject=_show(m.name))
        self.check_link_target(target, m.name)
        if target == rel:
            return
        try:
            self.link(target, rel)
        except FileExistsError:
            self.remove(rel)
            self.link(target, rel)

    def link(self, target: bytes, rel: bytes) -> None:
        try:
            os.link(target, rel, src_dir_fd=self.root, dst_dir_fd=self.root, follow_symlinks=False)
        except (FileNotFoundError, PermissionError, IsADirectoryError) as exc:
            raise ArchiveError(
                f"hard link target {_show(target)} is not a file of this layer", subject=_show(rel)
            ) from exc

    def check_link_target(self, target: bytes, member: bytes) -> None:
        """A hard link target's parents must be real directories of this layer (not symlinks)."""
        gone = f"hard link target {_show(target)} is missing"
        self._real_parents(
            target,
            member,
            missing=gone,
            through_link="hard link target goes through the symlink {}",
            not_dir=gone.replace("{", "{{").replace("}", "}}"),
        )

    def node(self, m: _Member, rel: bytes) -> None:
        kind = {_CHR: stat.S_IFCHR, _BLK: stat.S_IFBLK, _FIFO: stat.S_IFIFO}[m.type]
        device = os.makedev(*m.dev) if m.type != _FIFO else 0
        if m.type != _FIFO and not self.privileged:
            self.warn("device node not created (not root)", m.name)
            return
        try:
            self.mknod(rel, kind | (m.mode & 0o777), device)
        except PermissionError:
            self.warn("device node not created (no CAP_MKNOD)", m.name)
            return
        ids = self.owner(m)
        if ids is not None:
            self.chown(m, rel, ids)
        os.chmod(rel, m.mode & 0o7777, dir_fd=self.root)
        if m.xattrs:
            self.set_xattrs(self.path(rel), m)
        os.utime(rel, ns=(m.mtime_ns, m.mtime_ns), dir_fd=self.root, follow_symlinks=False)

    def mknod(self, rel: bytes, mode: int, device: int) -> None:
        try:
            os.mknod(rel, mode, device, dir_fd=self.root)
        except FileExistsError:
            self.remove(rel)
            os.mknod(rel, mode, device, dir_fd=self.root)

    # -- whiteouts --------------------------------------------------------------------------------

    def whiteout(self, m: _Member, rel: bytes, base: bytes, blocks: _Blocks) -> bool:
        """Turn an OCI whiteout marker into overlayfs form; False when the member is ordinary."""
        parent = rel[: len(rel) - len(base)].rstrip(b"/")
        if base == OPAQUE_MARKER:
            if self.privileged:
                blocks.copy(None, m.size)
                try:
                    os.setxattr(self.path(parent), OPAQUE_XATTR, b"y", follow_symlinks=False)
                    return True
                except OSError as exc:
                    self.warn(f"opaque directory kept as marker file ({exc.strerror})", m.name)
                    self.write_marker(m, rel)
                    return True
            self.warn("opaque directory kept as marker file (not root)", m.name)
            return False
        if base.startswith(WHITEOUT_META_PREFIX):
            blocks.copy(None, m.size)  # aufs bookkeeping (.wh..wh.plnk ...): nothing to reproduce
            self.warn("aufs metadata entry skipped", m.name)
            return True
        victim = base[len(WHITEOUT_PREFIX) :]
        if victim in (b"", b".", b".."):
            raise UnsafeLayerError("whiteout names no entry", subject=_show(m.name))
        # No privilege check: Linux >= 5.8 lets anyone create a whiteout (the 0:0 device), only real
        # devices need CAP_MKNOD. Older kernels refuse, and the marker file stays.
        blocks.copy(None, m.size)
        target = parent + b"/" + victim if parent else victim
        try:
            os.lstat(target, dir_fd=self.root)
            return True  # the layer itself has that entry: it hides lower layers already
        except FileNotFoundError:
            pass
        try:
            os.mknod(target, stat.S_IFCHR, 0, dir_fd=self.root)
        except PermissionError:
            self.warn("whiteout kept as marker file (kernel refused a 0:0 device)", m.name)
            self.write_marker(m, rel)
        return True

    def write_marker(self, m: _Member, rel: bytes) -> None:
        """Keep an OCI marker as the empty file it was (fallback when overlayfs form is impossible)."""
        fd = os.open(
            rel, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=self.root
        )
        os.close(fd)

    # -- metadata ---------------------------------------------------------------------------------

    def path(self, rel: bytes) -> bytes:
        """An absolute path for calls without dir_fd (xattrs); parents are verified directories."""
        return self.dest + b"/" + rel if rel else self.dest

    def set_xattrs(self, target: int | bytes, m: _Member) -> None:
        assert m.xattrs is not None
        for key, value in m.xattrs.items():
            try:
                if isinstance(target, int):
                    os.setxattr(target, key, value)
                else:
                    os.setxattr(target, key, value, follow_symlinks=False)
            except OSError as exc:
                self.warn(f"xattr {key} not set ({exc.strerror})", m.name)

    def finish_directories(self) -> None:
        """Owner, mode and mtime of directories, deepest first, once nothing more is written in them."""
        for rel in sorted(self.pending, key=lambda r: r.count(b"/") if r else -1, reverse=True):
            m = self.pending[rel]
            ids = self.owner(m)
            if rel:
                if ids is not None:
                    self.chown(m, rel, ids)
                os.chmod(rel, m.mode & 0o7777, dir_fd=self.root)
                os.utime(rel, ns=(m.mtime_ns, m.mtime_ns), dir_fd=self.root, follow_symlinks=False)
            else:
                if ids is not None:
                    self.chown(m, self.root, ids)
                os.fchmod(self.root, m.mode & 0o7777)
                os.utime(self.root, ns=(m.mtime_ns, m.mtime_ns))

    # -- dispatch ---------------------------------------------------------------------------------

    def apply(self, m: _Member, blocks: _Blocks) -> None:
        rel = normalise_name(m.name)
        kind = m.type
        self.entries += 1
        if not rel:
            if kind != _DIR:
                raise ArchiveError("a non-directory entry names the layer root", subject=_show(m.name))
            self.directory(m, rel)
            return
        self.parent_ready(rel, m.name)
        base = rel.rpartition(b"/")[2]
        if base.startswith(WHITEOUT_PREFIX) and kind != _DIR and self.whiteout(m, rel, base, blocks):
            return
        if kind in (_REG, _AREG, _CONT):
            self.regular(m, rel, blocks)
        elif kind == _DIR:
            self.directory(m, rel)
        elif kind == _SYM:
            self.symlink(m, rel)
        elif kind == _LNK:
            self.hardlink(m, rel)
        elif kind in (_CHR, _BLK, _FIFO):
            self.node(m, rel)
        else:  # POSIX: an unknown type is read as a regular file
            self.regular(m, rel, blocks)


_CAP_CHOWN, _CAP_MKNOD = 0, 27


def _has_capabilities(*caps: int) -> bool:
    """Whether this process holds these capabilities (root in a capability-less container does not)."""
    try:
        with open("/proc/self/status", "rb") as status:
            for line in status:
                if line.startswith(b"CapEff:"):
                    effective = int(line.split()[1], 16)
                    return all(effective >> cap & 1 for cap in caps)
    except OSError:
        pass
    return os.geteuid() == 0


def _current_umask() -> int:
    """The process umask without changing it (Linux >= 4.7 shows it in /proc/self/status)."""
    try:
        with open("/proc/self/status", "rb") as status:
            for line in status:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    return 0o022


def unpack_layer(
    source: BinaryIO,
    dest: str | os.PathLike[str],
    *,
    owner_map: OwnerMap | None = None,
    privileged: bool | None = None,
) -> UnpackResult:
    """Extract an uncompressed layer tar stream into `dest` and return its diff_id.

    `dest` must be an existing, private, empty staging directory; on error the caller deletes it (see
    the module doc). `owner_map` maps tar (uid, gid) to host ids (user-namespace shifting).
    `privileged` defaults to "holds CAP_CHOWN and CAP_MKNOD" (root, normally); without it devices,
    ownership and overlayfs whiteouts fall back as the module doc says, each fallback listed in the
    result's warnings.
    """
    if privileged is None:
        privileged = _has_capabilities(_CAP_CHOWN, _CAP_MKNOD)
    extractor = _Extractor(Path(dest), privileged, owner_map)
    reader = _HashingReader(source)
    try:
        blocks = _Blocks(reader)
        try:
            for member in _members(blocks):
                extractor.apply(member, blocks)
            extractor.finish_directories()
        except OSError as exc:
            raise _os_error(exc) from exc
        reader.drain()
        return UnpackResult(
            diff_id=reader.digest(),
            size=extractor.size,
            entries=extractor.entries,
            tar_size=reader.total,
            warnings=extractor.warning_lines(),
        )
    finally:
        reader.close()
        extractor.close()


def _os_error(exc: OSError) -> EngineError:
    """A file-system failure while unpacking, as an engine error naming the file."""
    name = exc.filename.decode(errors="backslashreplace") if isinstance(exc.filename, bytes) else exc.filename
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return DiskFullError("no space left while unpacking a layer", subject=name)
    return ArchiveError(f"cannot unpack layer: {exc.strerror or exc}", subject=name)
