"""The build context: a directory seen through its `.dockerignore`, as COPY and ADD see it.

Docker's rules, so a context that builds under Docker selects the same files here:
- the ignore file is `<Dockerfile>.dockerignore` next to the Dockerfile when it exists, else the
  context's `.dockerignore`;
- a line whose first byte is `#` is a comment; lines are trimmed; `!` starts an exception; each pattern
  is cleaned like Go's `filepath.Clean` (so `./a` is `a`, `a/` is `a`) and a leading `/` is dropped;
- `*` and `?` never match `/`, `**` matches any number of directories (zero included), `[...]` is a
  class, `\\` escapes; a pattern matching a directory excludes everything beneath it;
- the last matching pattern wins, so `!keep` after `*.log` brings a file back, even inside an
  excluded directory;
- the Dockerfile and the ignore file are readable by the builder even when excluded (Docker sends them
  anyway), but an excluded file is invisible to COPY.

Source paths for COPY/ADD are relative to the context root (a leading `/` too); `..` past the root is an
error, symlinks are followed inside the context as if its root were `/`. `digest` hashes what a COPY of
some paths would bring in (paths, type, mode, content) with a stat-keyed memo so an unchanged big tree
is not read again.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from engine.containers.rootfs import resolve_in
from engine.errors import BuildError
from engine.frozen import frozen

IGNORE_FILE = ".dockerignore"
_BOM = "\ufeff"
_CHUNK = 1 << 20


def go_clean(path: str) -> str:
    """Go's `path.Clean`: drop `.` and empty parts, fold `..` lexically, "" is "."."""
    if not path:
        return "."
    rooted = path.startswith("/")
    cleaned = os.path.normpath(path)
    if rooted:
        cleaned = "/" + cleaned.lstrip("/")
    return cleaned


# --------------------------------------------------------------------------------------------------
# Patterns


def read_ignore(text: str) -> list[str]:
    """The patterns of a .dockerignore file, normalised as Docker's reader does."""
    patterns = []
    for number, raw in enumerate(text.splitlines()):
        line = raw.removeprefix(_BOM) if number == 0 else raw
        if line.startswith("#"):
            continue
        line = line.strip()
        if not line:
            continue
        invert = line.startswith("!")
        if invert:
            line = line[1:].strip()
        if line:
            line = go_clean(line)
            if len(line) > 1 and line.startswith("/"):
                line = line[1:]
        patterns.append("!" + line if invert else line)
    return patterns


def _class_regex(pattern: str, start: int) -> tuple[str, int]:
    """A `[...]` class of Go's filepath.Match as a regex class that never matches `/`; (regex, next index)."""
    i = start + 1
    negate = i < len(pattern) and pattern[i] == "^"
    if negate:
        i += 1
    body = []
    first = True
    while i < len(pattern) and (pattern[i] != "]" or first):
        ch = pattern[i]
        if ch == "\\":
            i += 1
            if i >= len(pattern):
                break
            ch = pattern[i]
        body.append(re.escape(ch) if ch != "-" else "-")
        first = False
        i += 1
    if i >= len(pattern) or not body:
        raise BuildError("syntax error in pattern", subject=pattern)
    if negate:
        return "[^/" + "".join(body) + "]", i + 1
    return "(?!/)[" + "".join(body) + "]", i + 1


def match_regex(pattern: str, *, double_star: bool) -> re.Pattern[str]:
    """A compiled regex for a Go filepath.Match pattern; with `double_star`, Docker's `**` as well."""
    out = ["^"]
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "*":
            if double_star and pattern[i + 1 : i + 2] == "*":
                i += 2
                if pattern[i : i + 1] == "/":
                    i += 1
                out.append(".*" if i >= len(pattern) else "(?:.*/)?")
                continue
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "[":
            regex, i = _class_regex(pattern, i)
            out.append(regex)
            continue
        elif ch == "\\":
            i += 1
            out.append(re.escape(pattern[i]) if i < len(pattern) else re.escape("\\"))
        else:
            out.append(re.escape(ch))
        i += 1
    out.append("$")
    return re.compile("".join(out), re.DOTALL)


def has_wildcards(path: str) -> bool:
    """Whether a COPY source is a glob (an unescaped `*`, `?` or `[`)."""
    i = 0
    while i < len(path):
        if path[i] == "\\":
            i += 2
            continue
        if path[i] in "*?[":
            return True
        i += 1
    return False


@frozen
class IgnorePattern:
    """One cleaned pattern; `exception` for a `!` line."""

    text: str
    exception: bool
    regex: re.Pattern[str]

    def matches(self, rel: str) -> bool:
        """The path or one of its parent directories matches (Docker's "or parent matches")."""
        if self.regex.match(rel):
            return True
        parts = rel.split("/")
        return any(self.regex.match("/".join(parts[:n])) for n in range(1, len(parts)))


class PatternMatcher:
    """Ordered .dockerignore patterns; the last one that matches decides."""

    def __init__(self, patterns: Iterable[str]) -> None:
        self.patterns: list[IgnorePattern] = []
        for raw in patterns:
            text = raw.strip()
            exception = text.startswith("!")
            if exception:
                text = text[1:]
                if not text:
                    raise BuildError('illegal exclusion pattern: "!"', subject=IGNORE_FILE)
            text = go_clean(text)
            regex = match_regex(text, double_star=True)
            self.patterns.append(IgnorePattern(text, exception, regex))
        self.has_exceptions = any(p.exception for p in self.patterns)

    def excluded(self, rel: str) -> bool:
        """Whether a context-relative path (no leading `./`) is left out of the context."""
        matched = False
        for pattern in self.patterns:
            if pattern.exception != matched:
                continue  # only a later exception can undo a match, only an exclusion can make one
            if pattern.matches(rel):
                matched = not pattern.exception
        return matched


# --------------------------------------------------------------------------------------------------
# The context


@frozen
class Entry:
    """One path of the context: relative name (`a/b`), host path and lstat result."""

    rel: str
    path: str
    st: os.stat_result
    name: str = ""  # for a COPY source: the basename it was named by (before following a symlink)

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.st.st_mode)


@dataclass(slots=True)
class BuildContext:
    """A context directory with its ignore rules; open with `BuildContext.open`."""

    root: str
    dockerfile: str
    ignore_file: str | None
    matcher: PatternMatcher
    memo_path: str | None = None
    _memo: dict[str, list] = field(default_factory=dict)
    _memo_dirty: bool = False

    @classmethod
    def open(
        cls, root: str | os.PathLike[str], dockerfile: str = "Dockerfile", *, memo_path: str | None = None
    ) -> BuildContext:
        """The context at `root`; `dockerfile` is relative to it (or absolute, maybe outside it).

        `memo_path` names a JSON file remembering content hashes by stat, for fast repeated digests.
        """
        base = os.path.realpath(root)
        if not os.path.isdir(base):
            raise BuildError("build context is not a directory", subject=str(root))
        dockerfile_path = dockerfile if os.path.isabs(dockerfile) else os.path.join(base, dockerfile)
        ignore = _ignore_file(base, dockerfile_path)
        patterns = read_ignore(Path(ignore).read_text(errors="replace")) if ignore else []
        context = cls(base, dockerfile_path, ignore, PatternMatcher(patterns), memo_path)
        context._load_memo()
        return context

    def dockerfile_text(self) -> str:
        """The Dockerfile's text, whether or not .dockerignore excludes it."""
        try:
            return Path(self.dockerfile).read_text()
        except OSError as exc:
            raise BuildError(f"cannot read Dockerfile: {exc.strerror}", subject=self.dockerfile) from exc

    def excluded(self, rel: str) -> bool:
        """Whether `rel` (relative to the root) is left out by the ignore file."""
        return rel not in ("", ".") and self.matcher.excluded(rel)

    # -- sources --------------------------------------------------------------------------------

    def clean_source(self, source: str) -> str:
        """A COPY source as a path relative to the root ("." for the root); `..` past it is an error."""
        cleaned = go_clean(source)
        if cleaned == ".." or cleaned.startswith("../"):
            raise BuildError("forbidden path outside the build context", subject=source)
        return go_clean(cleaned.lstrip("/")) if cleaned != "/" else "."

    def lookup(self, source: str) -> Entry:
        """The entry a plain (non-glob) source names, symlinks followed inside the context."""
        rel = self.clean_source(source)
        entry = self._followed(rel, source)
        if entry is None or (self.excluded(entry.rel) and not (entry.is_dir and self.walk(entry.rel))):
            raise BuildError("not found in the build context", subject=source)
        return entry

    def _followed(self, rel: str, source: str) -> Entry | None:
        """The entry at `rel` with symlinks resolved as if the root were `/` (None when missing)."""
        host = resolve_in(self.root, rel)
        try:
            st = os.stat(host)  # resolve_in left no symlink to follow, this only checks it exists
        except OSError:
            return None
        resolved = os.path.relpath(host, self.root)
        name = os.path.basename(rel) if rel != "." else os.path.basename(self.root)
        return Entry(resolved, host, st, name or source)

    def glob(self, source: str) -> list[Entry]:
        """Entries matching a glob source (Go filepath.Match per path, `*` not crossing `/`), sorted."""
        rel = self.clean_source(source)
        base, rest = _split_wildcards(rel)
        regex = match_regex(rest, double_star=False)
        depth = rest.count("/") + 1
        base_host = resolve_in(self.root, base)
        found = []
        for host in self._walk_plain(base_host, depth):
            crel = os.path.relpath(host, self.root)
            if regex.match(os.path.relpath(host, base_host)) and not self.excluded(crel):
                entry = self._followed(crel, source)
                if entry is not None:
                    found.append(entry)
        return found

    def _walk_plain(self, top: str, depth: int) -> Iterator[str]:
        """Host paths under `top` at most `depth` levels down, sorted (symlinked dirs not entered)."""
        try:
            with os.scandir(top) as it:
                children = sorted(it, key=lambda d: d.name)
        except (NotADirectoryError, FileNotFoundError):
            return
        for child in children:
            yield child.path
            if depth > 1 and child.is_dir(follow_symlinks=False):
                yield from self._walk_plain(child.path, depth - 1)

    # -- walking --------------------------------------------------------------------------------

    def walk(self, rel: str = ".") -> list[Entry]:
        """Every included entry beneath the directory `rel` (not `rel` itself), parents first, sorted.

        An excluded directory is still listed when an exception brings back something inside it.
        """
        host = self.root if rel == "." else os.path.join(self.root, rel)
        return self._walk(host, "" if rel == "." else rel + "/")

    def _walk(self, host: str, prefix: str) -> list[Entry]:
        out: list[Entry] = []
        try:
            with os.scandir(host) as it:
                children = sorted(it, key=lambda d: d.name)
        except OSError as exc:
            raise BuildError(f"cannot read directory: {exc.strerror}", subject=host) from exc
        for child in children:
            rel = prefix + child.name
            excluded = self.matcher.excluded(rel)
            st = child.stat(follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                if excluded and not self.matcher.has_exceptions:
                    continue
                below = self._walk(child.path, rel + "/")
                if not excluded or below:
                    out.append(Entry(rel, child.path, st))
                    out.extend(below)
            elif not excluded:
                out.append(Entry(rel, child.path, st))
        return out

    def files(self, patterns: Sequence[str] = ()) -> list[str]:
        """Relative paths of the included non-directories, optionally only those matching `patterns`."""
        selected = PatternMatcher(patterns) if patterns else None
        return [e.rel for e in self.walk() if not e.is_dir and (selected is None or selected.excluded(e.rel))]

    # -- hashing --------------------------------------------------------------------------------

    def content_hash(self, entry: Entry) -> str:
        """sha256 of a regular file's bytes (memoised by inode, size, mtime and ctime)."""
        st = entry.st
        stamp = [st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]
        known = self._memo.get(entry.path)
        if known is not None and known[:4] == stamp:
            return known[4]
        digest = hashlib.sha256()
        with open(entry.path, "rb") as f:
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
        value = digest.hexdigest()
        self._memo[entry.path] = [*stamp, value]
        self._memo_dirty = True
        return value

    def entry_record(self, entry: Entry, name: str, mode: int | None = None) -> bytes:
        """One line of a digest: name, type, permission bits and content (or link target)."""
        st = entry.st
        kind = stat.S_IFMT(st.st_mode)
        perm = stat.S_IMODE(st.st_mode) if mode is None else mode
        if stat.S_ISREG(st.st_mode):
            body = self.content_hash(entry)
        elif stat.S_ISLNK(st.st_mode):
            body = os.readlink(entry.path)
        else:
            body = ""
        return f"{json.dumps(name)} {kind:o} {perm:o} {body}\n".encode()

    def digest(self, paths: Sequence[str]) -> str:
        """sha256 over what the given sources (plain or globs) select: names, types, modes, contents."""
        digest = hashlib.sha256()
        for source in paths:
            digest.update(f"source {json.dumps(source)}\n".encode())
            entries = self.glob(source) if has_wildcards(source) else [self.lookup(source)]
            for top in entries:
                digest.update(self.entry_record(top, top.rel))
                if top.is_dir:
                    for entry in self.walk(top.rel):
                        digest.update(self.entry_record(entry, entry.rel))
        self.save_memo()
        return "sha256:" + digest.hexdigest()

    def _load_memo(self) -> None:
        if not self.memo_path:
            return
        try:
            data = json.loads(Path(self.memo_path).read_text())
        except (OSError, ValueError):
            return
        if isinstance(data, dict) and data.get("root") == self.root:
            self._memo = data.get("files", {})

    def save_memo(self) -> None:
        """Write the content-hash memo (if a memo file was given and something new was hashed)."""
        if not self.memo_path or not self._memo_dirty:
            return
        tmp = f"{self.memo_path}.{os.getpid()}.tmp"
        Path(tmp).write_text(json.dumps({"root": self.root, "files": self._memo}))
        os.replace(tmp, self.memo_path)
        self._memo_dirty = False


def _ignore_file(root: str, dockerfile_path: str) -> str | None:
    """`<Dockerfile>.dockerignore` beside the Dockerfile wins over the context's `.dockerignore`."""
    specific = dockerfile_path + IGNORE_FILE
    for candidate in (specific, os.path.join(root, IGNORE_FILE)):
        if os.path.isfile(candidate):
            return candidate
    return None


def _split_wildcards(rel: str) -> tuple[str, str]:
    """("dir without wildcards", "rest from the first component with one") of a glob."""
    parts = rel.split("/")
    for n, part in enumerate(parts):
        if has_wildcards(part):
            return ("/".join(parts[:n]) or "."), "/".join(parts[n:])
    return rel, ""
