"""COPY and ADD: put files from the build context (or a URL) into an image's root, as Docker does.

The rules (BuildKit's Dockerfile frontend and its copier):
- a source is relative to the context root; globs use Go's filepath.Match (`*` stays within one
  directory); a glob that matches nothing copies nothing, a plain source that is missing (or excluded by
  .dockerignore) is an error; `../` past the context root is "forbidden path outside the build context";
- the destination is relative to WORKDIR; it is a directory when it ends with `/` (or is `.`), or when
  it already is one in the image; several sources (or a glob) need such a directory;
- a source directory's CONTENTS go to the destination (never the directory itself), a file goes to
  `dest/<name>` when dest is a directory, else to dest itself; a symlink named as a source is followed
  (inside the context), symlinks within a copied tree stay symlinks, hard links stay linked;
- modes and mtimes come from the source; owner 0:0, or `--chown` (a name is looked up in the image's
  /etc/passwd and /etc/group; a user without a group uses the uid as gid); `--chmod` is octal or
  symbolic (`u+x,go-w`) and applies to every file and directory copied;
- missing parents of the destination are made 0755 with the chown owner; an existing destination
  directory keeps its own mode and owner, directories inside it take the source's;
- ADD extracts a local tar archive (plain, gzip, bzip2, xz, zstd; detected by content, not by name)
  into the destination directory, and downloads an http(s) URL (never extracted; mode 0600, mtime from
  Last-Modified, file named after the URL's last path part);
- paths inside the image are resolved with the image root as `/`, so an image symlink cannot send a
  write outside it.
`cache_key` hashes what a COPY brings in (names, modes after chmod, owner after chown, contents).
"""

from __future__ import annotations

import email.utils
import errno
import hashlib
import json
import os
import shutil
import stat
import tarfile
import tempfile
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from engine.build.context import BuildContext, Entry, go_clean, has_wildcards
from engine.containers.rootfs import resolve_in
from engine.containers.userdb import parse_group, parse_passwd
from engine.errors import BuildError, DiskFullError, EngineError
from engine.frozen import frozen

IdMap = Callable[[int, int], tuple[int, int]]
ModeFn = Callable[[int, bool], int]
URL_MODE = 0o600
DIR_MODE = 0o755
_CHUNK = 1 << 20


# --------------------------------------------------------------------------------------------------
# Flags


def resolve_chown(spec: str, rootfs: str | None) -> tuple[int, int]:
    """`--chown=user[:group]` as (uid, gid); names come from the image's /etc/passwd and /etc/group."""
    user, _, group = spec.partition(":")
    if not user:
        raise BuildError("empty user in --chown", subject=spec)
    uid = _lookup_id(user, "passwd", rootfs)
    gid = _lookup_id(group, "group", rootfs) if group else uid
    return uid, gid


def _lookup_id(name: str, table: str, rootfs: str | None) -> int:
    if name.isdecimal():
        return int(name)
    text = _read_in(rootfs, f"/etc/{table}") if rootfs else None
    if text is None:
        raise BuildError(f"unable to find {name}: no /etc/{table} in the image", subject=name)
    entries = parse_passwd(text) if table == "passwd" else parse_group(text)
    for entry in entries:
        if entry.name == name:
            return entry.uid if table == "passwd" else entry.gid  # type: ignore[union-attr]
    raise BuildError(f"no matching entries in {table} file", subject=name)


def _read_in(rootfs: str, path: str) -> str | None:
    try:
        return Path(resolve_in(rootfs, path)).read_text(errors="replace")
    except OSError:
        return None


def parse_chmod(spec: str) -> ModeFn:
    """`--chmod` as a function (old permission bits, is_dir) -> new bits; octal or chmod(1) symbolic."""
    if spec and all(c in "01234567" for c in spec) and len(spec) <= 4:
        fixed = int(spec, 8)
        return lambda _mode, _is_dir: fixed
    clauses = [_parse_clause(c, spec) for c in spec.split(",")]

    def apply(mode: int, is_dir: bool) -> int:
        for clause in clauses:
            mode = clause(mode, is_dir)
        return mode

    return apply


_WHO = {"u": 0o4700, "g": 0o2070, "o": 0o1007, "a": 0o7777}
_PERM = {"r": 0o444, "w": 0o222, "x": 0o111, "s": 0o6000, "t": 0o1000}


def _parse_clause(clause: str, spec: str) -> ModeFn:
    """One `[ugoa]*[+-=][rwxXst]*` clause (several operators allowed, as chmod(1))."""
    i = 0
    who = 0
    while i < len(clause) and clause[i] in _WHO:
        who |= _WHO[clause[i]]
        i += 1
    who = who or 0o7777
    ops: list[tuple[str, str]] = []
    while i < len(clause):
        op = clause[i]
        if op not in "+-=":
            raise BuildError("invalid --chmod mode", subject=spec)
        j = i + 1
        while j < len(clause) and clause[j] in "rwxXst":
            j += 1
        ops.append((op, clause[i + 1 : j]))
        i = j
    if not ops:
        raise BuildError("invalid --chmod mode", subject=spec)

    def apply(mode: int, is_dir: bool) -> int:
        for op, perms in ops:
            bits = 0
            for p in perms:
                if p == "X":
                    if is_dir or mode & 0o111:
                        bits |= 0o111
                else:
                    bits |= _PERM[p]
            bits &= who
            if op == "+":
                mode |= bits
            elif op == "-":
                mode &= ~bits
            else:
                mode = (mode & ~who) | bits
        return mode & 0o7777

    return apply


# --------------------------------------------------------------------------------------------------
# Downloads (ADD <url>)


@frozen
class Download:
    """A fetched URL: local file, name in the image, mtime (Last-Modified or None) and sha256."""

    url: str
    path: str
    name: str
    mtime: float | None
    sha256: str


def is_url(source: str) -> bool:
    return source.startswith(("http://", "https://"))


def url_filename(url: str) -> str:
    """The file name ADD gives a download: the URL path's last part, else `__unnamed__`."""
    base = os.path.basename(urllib.parse.urlsplit(url).path.rstrip("/"))
    return base if base not in ("", ".", "/") else "__unnamed__"


def download(url: str, directory: str, *, checksum: str | None = None, timeout: float = 60.0) -> Download:
    """Fetch `url` into `directory` (redirects followed); `checksum` is `sha256:<hex>` to verify."""
    import httpx

    fd, path = tempfile.mkstemp(dir=directory, prefix=".download-")
    digest = hashlib.sha256()
    try:
        with (
            os.fdopen(fd, "wb") as out,
            httpx.stream("GET", url, follow_redirects=True, timeout=timeout) as resp,
        ):
            if resp.status_code >= 400:
                raise BuildError(f"invalid response status {resp.status_code}", subject=url)
            for chunk in resp.iter_bytes(_CHUNK):
                digest.update(chunk)
                out.write(chunk)
            modified = resp.headers.get("last-modified")
    except httpx.HTTPError as exc:
        os.unlink(path)
        raise BuildError(f"download failed: {exc}", subject=url) from exc
    except BaseException:
        os.unlink(path)
        raise
    value = "sha256:" + digest.hexdigest()
    if checksum is not None and checksum != value:
        os.unlink(path)
        raise BuildError(f"checksum mismatch: expected {checksum}, got {value}", subject=url)
    return Download(url, path, url_filename(url), _http_time(modified), value)


def _http_time(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None


# --------------------------------------------------------------------------------------------------
# Selecting sources


@frozen
class Selected:
    """One thing to copy: a context entry, or a download."""

    entry: Entry | None = None
    fetched: Download | None = None

    @property
    def name(self) -> str:
        return self.fetched.name if self.fetched else self.entry.name  # type: ignore[union-attr]


def select(context: BuildContext | None, sources: Sequence[str | Download]) -> list[Selected]:
    """The entries the sources name, in order; globs may select nothing, plain paths must exist."""
    out: list[Selected] = []
    for source in sources:
        if isinstance(source, Download):
            out.append(Selected(fetched=source))
            continue
        if is_url(source):
            raise BuildError("a URL source must be downloaded first (ADD only)", subject=source)
        if context is None:
            raise BuildError("no build context to copy from", subject=source)
        if has_wildcards(source):
            out.extend(Selected(entry=e) for e in context.glob(source))
        else:
            out.append(Selected(entry=context.lookup(source)))
    return out


def image_dest(dest: str, workdir: str = "/") -> tuple[str, bool]:
    """(absolute cleaned destination, whether the text itself says "directory")."""
    as_dir = dest in ("", ".") or dest.endswith("/") or dest.endswith("/.")
    path = dest if dest.startswith("/") else os.path.join(workdir or "/", dest)
    return go_clean("/" + path), as_dir


# --------------------------------------------------------------------------------------------------
# Cache key


def cache_key(
    context: BuildContext | None,
    sources: Sequence[str | Download],
    *,
    owner: tuple[int, int] | None = None,
    chmod: str | None = None,
) -> str:
    """sha256 over what the sources bring in: names, types, modes after chmod, owner, contents."""
    mode_fn = parse_chmod(chmod) if chmod else None
    uid, gid = owner or (0, 0)
    digest = hashlib.sha256(f"owner {uid}:{gid} chmod {chmod or ''}\n".encode())
    for item in select(context, sources):
        if item.fetched is not None:
            digest.update(f"url {json.dumps(item.fetched.name)} {item.fetched.sha256}\n".encode())
            continue
        assert context is not None and item.entry is not None
        entries = [(item.entry, item.name)]
        if item.entry.is_dir:
            entries += [(e, e.rel) for e in context.walk(item.entry.rel)]
        for entry, name in entries:
            mode = _new_mode(mode_fn, entry.st) if mode_fn else None
            digest.update(context.entry_record(entry, name, mode))
    if context is not None:
        context.save_memo()
    return "sha256:" + digest.hexdigest()


def _new_mode(mode_fn: ModeFn | None, st: os.stat_result) -> int:
    old = stat.S_IMODE(st.st_mode)
    return mode_fn(old, stat.S_ISDIR(st.st_mode)) if mode_fn else old


# --------------------------------------------------------------------------------------------------
# Writing


@dataclass(slots=True)
class CopyResult:
    """What a COPY/ADD wrote: counts and the image paths of its top-level targets."""

    files: int = 0
    dirs: int = 0
    links: int = 0
    bytes: int = 0
    targets: list[str] = field(default_factory=list)


@dataclass(slots=True)
class _Writer:
    """Writes entries under `root` with a fixed owner (or the source's) and an optional mode rule."""

    root: str
    owner: tuple[int, int] | None
    mode_fn: ModeFn | None
    id_map: IdMap | None
    result: CopyResult
    strict_owner: bool
    keep_source_owner: bool = False  # unpacked archives keep their members' owners (without --chown)
    inodes: dict[tuple[int, int], str] = field(default_factory=dict)
    dir_times: list[tuple[str, os.stat_result]] = field(default_factory=list)

    def ids(self, st: os.stat_result | None) -> tuple[int, int]:
        if self.owner is not None:
            uid, gid = self.owner
        elif self.keep_source_owner and st is not None:
            uid, gid = st.st_uid, st.st_gid
        else:
            uid, gid = 0, 0
        return self.id_map(uid, gid) if self.id_map else (uid, gid)

    def chown(self, path: str, st: os.stat_result | None) -> None:
        uid, gid = self.ids(st)
        try:
            os.lchown(path, uid, gid)
        except PermissionError:
            if self.strict_owner or os.geteuid() == 0:
                raise
            # not root and no --chown: the files stay ours (unit tests, a rootless staging dir)

    def finish_meta(self, path: str, st: os.stat_result, *, mode: bool = True) -> None:
        """Owner, then mode (chown clears set-id bits), then times."""
        self.chown(path, st)
        if mode and not stat.S_ISLNK(st.st_mode):
            os.chmod(path, _new_mode(self.mode_fn, st))
        if stat.S_ISDIR(st.st_mode):
            self.dir_times.append((path, st))
        else:
            os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)

    def set_dir_times(self) -> None:
        """Directory mtimes last: writing inside a directory changes its own."""
        for path, st in reversed(self.dir_times):
            os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)
        self.dir_times.clear()

    # -- one entry ------------------------------------------------------------------------------

    def put(self, src: str, st: os.stat_result, target: str, *, move: bool = False) -> None:
        """Copy (or move) one non-directory entry to the host path `target`."""
        _clear_for_file(target)
        key = (st.st_dev, st.st_ino)
        if stat.S_ISREG(st.st_mode) and st.st_nlink > 1 and key in self.inodes:
            os.link(self.inodes[key], target)
            self.result.links += 1
            return
        if stat.S_ISREG(st.st_mode):
            if move:
                os.rename(src, target)
            else:
                shutil.copyfile(src, target, follow_symlinks=False)
            self.result.files += 1
            self.result.bytes += st.st_size
        elif stat.S_ISLNK(st.st_mode):
            os.symlink(os.readlink(src), target)
            self.result.links += 1
        elif stat.S_ISFIFO(st.st_mode):
            os.mkfifo(target, 0o600)
        elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
            try:
                os.mknod(target, st.st_mode, st.st_rdev)
            except PermissionError:
                return  # device nodes need CAP_MKNOD; skipped like the layer unpacker does
        else:
            return  # sockets: Docker does not carry them either
        if st.st_nlink > 1:
            self.inodes[key] = target
        self.finish_meta(target, st)

    def make_dir(self, target: str, st: os.stat_result | None, *, keep_existing: bool) -> None:
        """Ensure a directory at `target`; a new one (or a nested existing one) takes `st`'s metadata."""
        existed = os.path.isdir(target) and not os.path.islink(target)
        if not existed:
            _clear_for_dir(target)
            os.mkdir(target, DIR_MODE)
            self.result.dirs += 1
        if st is not None and not (existed and keep_existing):
            self.finish_meta(target, st)


def _clear_for_file(target: str) -> None:
    """Make room for a non-directory: an existing file or link goes, a directory is an error."""
    try:
        st = os.lstat(target)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        raise BuildError("cannot replace a directory with a file", subject=target)
    os.unlink(target)


def _clear_for_dir(target: str) -> None:
    """Make room for a directory: a dangling or foreign symlink goes, a file is an error (as Docker)."""
    if os.path.islink(target):
        os.unlink(target)
    elif os.path.lexists(target):
        raise BuildError("cannot copy to non-directory", subject=target)


def _mkdirs(writer: _Writer, image_path: str) -> str:
    """Host path of the image directory `image_path`, creating missing parts 0755 with the owner."""
    host = resolve_in(writer.root, image_path)
    missing = []
    probe = host
    while probe != writer.root and not os.path.lexists(probe):
        missing.append(probe)
        probe = os.path.dirname(probe)
    if os.path.lexists(probe) and not os.path.isdir(probe):
        raise BuildError("cannot copy to non-directory", subject=image_path)
    for path in reversed(missing):  # none of these existed, so none is a symlink to follow
        os.mkdir(path, DIR_MODE)
        os.chmod(path, DIR_MODE)
        writer.chown(path, None)
        writer.result.dirs += 1
    return host


def _child_dir(writer: _Writer, parent: str, name: str) -> str:
    """The host path for a directory `name` in `parent`, following an image symlink inside the root."""
    host = os.path.join(parent, name)
    if os.path.islink(host):
        followed = resolve_in(writer.root, os.path.relpath(host, writer.root))
        if os.path.isdir(followed):
            return followed
    return host


def _copy_tree(writer: _Writer, context: BuildContext, top: Entry, target: str) -> None:
    """The CONTENTS of the context directory `top` into the host directory `target`."""
    hosts = {top.rel: target}
    for entry in context.walk(top.rel):
        parent = hosts[os.path.dirname(entry.rel) or "."]
        name = os.path.basename(entry.rel)
        if entry.is_dir:
            host = _child_dir(writer, parent, name)
            writer.make_dir(host, entry.st, keep_existing=False)
            hosts[entry.rel] = host
        else:
            writer.put(entry.path, entry.st, os.path.join(parent, name))


def _copy_host_tree(writer: _Writer, src: str, target: str, *, move: bool) -> None:
    """Everything under the host directory `src` into `target` (used for unpacked archives)."""
    for dirpath, dirnames, filenames in os.walk(src):
        rel = os.path.relpath(dirpath, src)
        parent = target if rel == "." else os.path.join(target, rel)
        for name in sorted(dirnames):
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            if stat.S_ISDIR(st.st_mode):
                writer.make_dir(_child_dir(writer, parent, name), st, keep_existing=False)
        for name in sorted(filenames) + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            path = os.path.join(dirpath, name)
            writer.put(path, os.lstat(path), os.path.join(parent, name), move=move)
        dirnames[:] = [d for d in dirnames if not os.path.islink(os.path.join(dirpath, d))]


# --------------------------------------------------------------------------------------------------
# Archives (ADD <local tar>)


def is_archive(path: str) -> bool:
    """A regular file whose (decompressed) start is a valid tar header, as Docker's ADD checks."""
    from engine.images.unpack import open_layer

    try:
        with open_layer(path) as stream:
            block = stream.read(512)
            while len(block) < 512:
                more = stream.read(512 - len(block))
                if not more:
                    return False
                block += more
        tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
        return True
    except (OSError, EOFError, tarfile.TarError, EngineError, ValueError):
        return False
    except Exception:  # a decompressor's own error type (zstd, lzma): not an archive we can read
        return False


def _extract(writer: _Writer, path: str, target: str) -> None:
    """Unpack the archive at `path` into the host directory `target` (via a staging dir beside it)."""
    from engine.images.unpack import open_layer, unpack_layer

    staging = tempfile.mkdtemp(prefix=".pyc-add-", dir=writer.root)
    try:
        with open_layer(path) as stream:
            unpack_layer(stream, staging)  # members keep the archive's ids; mapped while moving them
        saved = writer.mode_fn, writer.keep_source_owner
        writer.mode_fn, writer.keep_source_owner = None, True  # --chmod is not applied to archives
        try:
            _copy_host_tree(writer, staging, target, move=True)
        finally:
            writer.mode_fn, writer.keep_source_owner = saved
    finally:
        shutil.rmtree(staging, ignore_errors=True)


# --------------------------------------------------------------------------------------------------
# The entry point


def copy_into(
    root: str,
    sources: Sequence[str | Download],
    dest: str,
    *,
    context: BuildContext | None,
    workdir: str = "/",
    chown: str | None = None,
    chmod: str | None = None,
    add: bool = False,
    user_root: str | None = None,
    id_map: IdMap | None = None,
) -> CopyResult:
    """Carry out `COPY`/`ADD <sources> <dest>` into the image root `root` (a host directory).

    `root` is where files are written and where the destination is resolved (the step's merged
    rootfs, or a staging dir). `user_root` holds the /etc/passwd and /etc/group that `--chown` names
    are looked up in (default: `root`). `id_map` maps image ids to host ids (user namespaces). URL
    sources (ADD only) are downloaded here unless given as `Download`s already.
    """
    owner = resolve_chown(chown, user_root or root) if chown else None
    mode_fn = parse_chmod(chmod) if chmod else None
    result = CopyResult()
    writer = _Writer(root, owner, mode_fn, id_map, result, strict_owner=owner is not None)
    urls = [s for s in sources if isinstance(s, str) and is_url(s)]
    if urls and not add:
        raise BuildError("source can't be a URL for COPY", subject=urls[0])
    tmp = tempfile.mkdtemp(prefix=".pyc-dl-", dir=root) if urls else None
    try:
        fetched = [download(s, tmp) if tmp and isinstance(s, str) and is_url(s) else s for s in sources]
        _dispatch(writer, context, select(context, fetched), dest, workdir, add)
        writer.set_dir_times()
    except OSError as exc:
        raise _os_error(exc, dest) from exc
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    return result


def _os_error(exc: OSError, dest: str) -> EngineError:
    where = exc.filename if isinstance(exc.filename, str) else dest
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return DiskFullError("no space left while copying", subject=where)
    return BuildError(f"copy failed: {exc.strerror or exc}", subject=where)


def _dispatch(
    writer: _Writer,
    context: BuildContext | None,
    selected: list[Selected],
    dest: str,
    workdir: str,
    add: bool,
) -> None:
    image_path, as_dir = image_dest(dest, workdir)
    into_dir = as_dir or os.path.isdir(resolve_in(writer.root, image_path))
    if len(selected) > 1 and not into_dir:
        raise BuildError(
            "when using COPY with more than one source file, "
            "the destination must be a directory and end with a /",
            subject=dest,
        )
    for item in selected:
        _one(writer, context, item, image_path, into_dir, add)


def _one(
    writer: _Writer, context: BuildContext | None, item: Selected, image_path: str, into_dir: bool, add: bool
) -> None:
    if item.fetched is not None:
        _place_download(writer, item.fetched, image_path, into_dir)
        return
    entry = item.entry
    assert entry is not None and context is not None
    if entry.is_dir:
        target = _dest_dir(writer, image_path, entry)
        _copy_tree(writer, context, entry, target)
        writer.result.targets.append(image_path)
    elif add and stat.S_ISREG(entry.st.st_mode) and is_archive(entry.path):
        target = _mkdirs(writer, image_path)
        _extract(writer, entry.path, target)
        writer.result.targets.append(image_path)
    else:
        target_path = os.path.join(image_path, entry.name) if into_dir else image_path
        _put_file(writer, entry.path, entry.st, target_path)


def _dest_dir(writer: _Writer, image_path: str, entry: Entry) -> str:
    """The host directory for a directory's contents: existing ones keep their metadata."""
    parent = _mkdirs(writer, os.path.dirname(image_path))
    name = os.path.basename(image_path)
    if not name:
        return parent
    host = _child_dir(writer, parent, name)
    writer.make_dir(host, entry.st, keep_existing=True)
    return host


def _put_file(writer: _Writer, src: str, st: os.stat_result, image_path: str) -> None:
    """One file at `image_path`: parents made, a final symlink replaced (not followed)."""
    parent = _mkdirs(writer, os.path.dirname(image_path))
    target = os.path.join(parent, os.path.basename(image_path))
    try:
        writer.put(src, st, target)
    except OSError as exc:
        raise BuildError(f"cannot write: {os.strerror(exc.errno or errno.EIO)}", subject=image_path) from exc
    writer.result.targets.append(image_path)


def _place_download(writer: _Writer, fetched: Download, image_path: str, into_dir: bool) -> None:
    """A downloaded file: mode 0600 (or --chmod), mtime from Last-Modified, never extracted."""
    target_path = os.path.join(image_path, fetched.name) if into_dir else image_path
    st = os.stat(fetched.path)
    mtime_ns = int(fetched.mtime * 1e9) if fetched.mtime is not None else st.st_mtime_ns
    parent = _mkdirs(writer, os.path.dirname(target_path))
    target = os.path.join(parent, os.path.basename(target_path))
    _clear_for_file(target)
    shutil.copyfile(fetched.path, target)
    writer.result.files += 1
    writer.result.bytes += st.st_size
    writer.chown(target, None)
    os.chmod(target, writer.mode_fn(URL_MODE, False) if writer.mode_fn else URL_MODE)
    os.utime(target, ns=(mtime_ns, mtime_ns))
    writer.result.targets.append(target_path)
