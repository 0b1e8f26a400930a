"""`.env` files the way docker compose reads them (compose-go `dotenv/`).

Why a parser of our own instead of python-dotenv: Compose's dialect differs in ways users notice.
Unquoted values end at ` #` (a `#` glued to text is kept), `KEY` alone inherits from the environment and
is dropped when unset, `KEY: value` works too, single quotes are literal, double quotes understand Go
style escapes (`\\n`, `\\t`, `\\$`, `\\0123`...) and `${VAR}` expansion uses Compose's own template rules.

The parser walks a cursor through the whole text rather than line by line, because quoted values may
span lines and whatever follows a closing quote is parsed as the next statement (so `A="x" # note`
works, as it does in compose-go).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence

from compose.errors import InterpolationError, InvalidProjectError, Location, ProjectNotFoundError
from compose.loader.interpolate import substitute

Lookup = Callable[[str], str | None]
Warn = Callable[[str], None]

# compose-go's isSpace: blanks that do not end a line.
_BLANKS = frozenset("\t\v\f\r \x85\xa0")
_EXPORT = re.compile(r"export[\t\n\f\r ]+")
_ESCAPE = re.compile(r'\\(?:[abcfnrtv$"\\]|0[0-9]{0,3})')
_SIMPLE_ESCAPES = {
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "v": "\v",
    '"': '"',
    "\\": "\\",
}
_KEY_PUNCTUATION = frozenset("_.-[]")


def _no_lookup(_name: str) -> str | None:
    return None


def _go_quote(text: str) -> str:
    """Go's %q for the common case, so messages read like docker compose's."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _unescape(match: re.Match[str]) -> str:
    """One escape of a double-quoted value; unknown or malformed ones stay as written."""
    text = match.group()
    body = text[1:]
    if body == "$":
        return "$$"  # a literal dollar for the template step that follows
    if body[0] == "0":
        digits = body[1:]
        if len(digits) == 3 and all(d in "01234567" for d in digits) and int(digits, 8) < 256:
            return chr(int(digits, 8))
        return text
    return _SIMPLE_ESCAPES.get(body, text)


def _is_key_char(ch: str) -> bool:
    return ch in _KEY_PUNCTUATION or ch.isalpha() or ch.isnumeric()


class _Parser:
    """One pass over one file's text; `out` fills up as statements are read."""

    def __init__(self, text: str, filename: str, lookup: Lookup, warn: Warn | None) -> None:
        self.text = text
        self.filename = filename
        self.lookup = lookup
        self.warn = warn
        self.out: dict[str, str] = {}

    def error(self, message: str, pos: int) -> InvalidProjectError:
        line = self.text.count("\n", 0, pos) + 1
        return InvalidProjectError(message, location=Location(self.filename, line))

    def parse(self) -> dict[str, str]:
        pos: int | None = 0
        while (pos := self.statement_start(pos)) is not None:
            pos = self.statement(pos)
        return self.out

    def statement_start(self, pos: int) -> int | None:
        """Skip blank space and comment lines; None at the end of the text."""
        text, size = self.text, len(self.text)
        while True:
            while pos < size and text[pos].isspace():
                pos += 1
            if pos >= size:
                return None
            if text[pos] != "#":
                return pos
            pos = text.find("\n", pos)
            if pos < 0:
                return None

    def statement(self, start: int) -> int:
        """Read `[export] KEY=value`, `KEY: value` or a bare `KEY`; return where the next one may begin."""
        text, pos = self.text, start
        export = _EXPORT.match(text, pos)
        if export is not None:
            pos += len("export")
            while pos < len(text) and text[pos] in _BLANKS:
                pos += 1
        end, terminator = self.key_end(pos)
        key = text[pos:end].rstrip()
        if " " in key:
            raise self.error("key cannot contain a space", start)
        if terminator != "=":  # a bare KEY (newline or end of text): inherit, or leave out when unset
            value = self.lookup(key)
            if value is not None:
                self.out[key] = value
            return end + 1
        pos = end + 1
        while pos < len(text) and text[pos] in _BLANKS:
            pos += 1
        value, pos = self.value(pos, start)
        self.out[key] = value
        return pos

    def key_end(self, pos: int) -> tuple[int, str]:
        """Index of the character ending the key and its kind: "=" (also for `:`), "\\n" or ""."""
        text = self.text
        for index in range(pos, len(text)):
            ch = text[index]
            if ch in _BLANKS or _is_key_char(ch):
                continue
            if ch in "=:":
                return index, "="
            if ch == "\n":
                return index, "\n"
            near = text[pos:].split("\n", 1)[0]
            raise self.error(f"unexpected character {_go_quote(ch)} in variable name {_go_quote(near)}", pos)
        return len(text), ""

    def value(self, pos: int, start: int) -> tuple[str, int]:
        """The value at `pos` and the index right after it."""
        text = self.text
        if pos < len(text) and text[pos] in "\"'":
            return self.quoted(pos, start)
        end = text.find("\n", pos)
        if end < 0:
            end = len(text)
        raw = text[pos:end].split(" #", 1)[0].rstrip()
        return self.expand(raw, start), end

    def quoted(self, pos: int, start: int) -> tuple[str, int]:
        """A quoted value; may span lines. `\\<quote>` keeps the quote, other backslashes stay for now."""
        text, quote = self.text, self.text[pos]
        chars: list[str] = []
        escaped = False
        for index in range(pos + 1, len(text)):
            ch = text[index]
            if escaped:
                escaped = False
                if ch != quote:
                    chars.append("\\")
                chars.append(ch)
            elif ch == "\\":
                escaped = True
            elif ch == quote:
                value = "".join(chars)
                if quote == '"':
                    value = self.expand(_ESCAPE.sub(_unescape, value), start)
                return value, index + 1
            else:
                chars.append(ch)
        rest = text[pos:].split("\n", 1)[0]
        raise self.error(f"unterminated quoted value {rest}", pos)

    def expand(self, value: str, start: int) -> str:
        """`${VAR}` expansion: the lookup first, then keys defined earlier in this file (compose-go order)."""
        if "$" not in value:
            return value

        def resolve(name: str) -> str | None:
            found = self.lookup(name)
            return found if found is not None else self.out.get(name)

        try:
            return substitute(value, resolve, warn=self.warn)
        except InterpolationError as exc:
            raise self.error(exc.message, start) from None


def parse_dotenv(
    text: str,
    *,
    filename: str,
    lookup: Lookup = _no_lookup,
    warn: Warn | None = None,
) -> dict[str, str]:
    """Parse the text of one env file into {KEY: value}.

    `lookup` answers bare `KEY` lines and `${VAR}` references (before the file's own earlier keys).
    Syntax errors raise InvalidProjectError located at `filename` and the statement's line.
    """
    if text.startswith("\ufeff"):
        text = text[1:]
    return _Parser(text, filename, lookup, warn).parse()


def read_env_file(path: str, *, lookup: Lookup = _no_lookup, warn: Warn | None = None) -> dict[str, str]:
    """Read and parse one env file. Bytes that are not UTF-8 are kept (surrogateescape), as Go keeps them."""
    if os.path.isdir(path):
        raise InvalidProjectError(f"env file {path} is a directory", location=Location(path))
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        raise ProjectNotFoundError(f"env file {path} not found") from None
    except OSError as exc:
        raise InvalidProjectError(
            f"cannot read env file {path}: {exc.strerror}", location=Location(path)
        ) from None
    return parse_dotenv(data.decode("utf-8", "surrogateescape"), filename=path, lookup=lookup, warn=warn)


def build_project_environment(
    environ: Mapping[str, str],
    env_files: Sequence[str],
    *,
    warn: Warn | None = None,
) -> dict[str, str]:
    """The interpolation environment: env files in order (later win), then the process environment on top.

    Inside each file, `${VAR}` and bare `KEY` look in the process environment first, then in what the
    earlier files defined (compose-go cli/options.go and dotenv.GetEnvFromFile).
    """
    from_files: dict[str, str] = {}

    def lookup(name: str) -> str | None:
        value = environ.get(name)
        return value if value is not None else from_files.get(name)

    for env_file in env_files:
        from_files.update(read_env_file(env_file, lookup=lookup, warn=warn))
    return {**from_files, **environ}
