"""Dockerfile text -> instructions with their line numbers; no expansion, no semantics.

The syntax rules BuildKit's parser applies, so a Dockerfile that builds under Docker parses the same:
- parser directives (`# syntax=`, `# escape=`, `# check=`) only before anything else; an unknown
  directive is a comment, a repeated one an error; `escape` is `\\` or a backtick;
- comment lines (first non-blank character `#`) are dropped, also inside a continued instruction;
- a line ending with the escape character continues on the next one (blank lines between are skipped);
- heredocs (`<<EOF`, `<<-EOF` stripping leading tabs, `<<"EOF"`/`<<'EOF'` without expansion) for RUN,
  COPY and ADD: the body follows the instruction's line up to the delimiter line;
- `--name=value` flags at the start of the arguments; the JSON (exec) form when the rest is a JSON
  array of strings.
Errors name the file and line (`Dockerfile:7`).
"""

from __future__ import annotations

import json
import re

from engine.errors import EngineError
from engine.frozen import frozen

DIRECTIVES = ("syntax", "escape", "check")
HEREDOC_INSTRUCTIONS = ("RUN", "COPY", "ADD")
INSTRUCTIONS = (
    "ADD",
    "ARG",
    "CMD",
    "COPY",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "FROM",
    "HEALTHCHECK",
    "LABEL",
    "MAINTAINER",
    "ONBUILD",
    "RUN",
    "SHELL",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
)
_DIRECTIVE = re.compile(r"^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$")
_HEREDOC = re.compile(r"<<(-?)\s*(['\"]?)([A-Za-z0-9_][A-Za-z0-9_.-]*)\2")
_FLAG = re.compile(r"--([a-zA-Z][a-zA-Z0-9-]*)(?:=(\S*))?")


class DockerfileError(EngineError):
    """The Dockerfile cannot be parsed (or an instruction is not valid); `subject` is `path:line`."""


@frozen
class Heredoc:
    """One here-document: its delimiter name, body, and whether `$` is expanded in it."""

    name: str
    content: str
    expand: bool = True
    strip_tabs: bool = False


@frozen
class Instruction:
    """One instruction; `args` is the text after the flags (heredoc markers left in place)."""

    keyword: str  # upper case
    args: str
    line: int  # 1-based line of the keyword
    flags: tuple[tuple[str, str | None], ...] = ()
    exec_form: tuple[str, ...] | None = None  # the JSON array form
    heredocs: tuple[Heredoc, ...] = ()
    original: str = ""

    def flag(self, name: str) -> str | None:
        """The last value given for `--name` (None when absent; "" for a bare `--name`)."""
        found = None
        for key, value in self.flags:
            if key == name:
                found = "" if value is None else value
        return found


@frozen
class Dockerfile:
    path: str
    directives: tuple[tuple[str, str], ...]
    escape: str
    instructions: tuple[Instruction, ...]


def parse(text: str, path: str = "Dockerfile") -> Dockerfile:
    """Parse a whole Dockerfile; raises DockerfileError naming `path:line`."""
    lines = text.replace("\r\n", "\n").split("\n")
    if lines and lines[0].startswith("\ufeff"):
        lines[0] = lines[0][1:]
    directives, start = _directives(lines, path)
    escape = dict(directives).get("escape", "\\")
    instructions: list[Instruction] = []
    index = start
    while index < len(lines):
        stripped = lines[index].strip()
        if not stripped or stripped.startswith("#"):
            index += 1
            continue
        instruction, index = _instruction(lines, index, escape, path)
        instructions.append(instruction)
    return Dockerfile(path, tuple(directives), escape, tuple(instructions))


def _directives(lines: list[str], path: str) -> tuple[list[tuple[str, str]], int]:
    found: list[tuple[str, str]] = []
    for index, line in enumerate(lines):
        match = _DIRECTIVE.match(line.strip())
        if not match:
            return found, index
        key, value = match.group(1).lower(), match.group(2)
        if key not in DIRECTIVES:
            return found, index  # an unknown directive is a comment, and ends the directives
        if any(k == key for k, _ in found):
            raise DockerfileError(
                f"only one {key} parser directive can be used", subject=f"{path}:{index + 1}"
            )
        if key == "escape" and value not in ("\\", "`"):
            raise DockerfileError(
                f"invalid escape token '{value}': must be ` or \\", subject=f"{path}:{index + 1}"
            )
        found.append((key, value))
    return found, len(lines)


def _instruction(lines: list[str], index: int, escape: str, path: str) -> tuple[Instruction, int]:
    """The instruction starting at `lines[index]`: continuations joined, heredoc bodies read."""
    first = index
    parts: list[str] = []
    raw: list[str] = []
    while True:
        line = lines[index]
        raw.append(line)
        index += 1
        body = line.rstrip()
        if body.endswith(escape):
            parts.append(body[: -len(escape)])
            index = _skip_continuation_noise(lines, index)
            if index >= len(lines):
                break
            continue
        parts.append(line)
        break
    logical = "".join(parts).strip()
    keyword, _, rest = logical.partition(" ")
    if "\t" in keyword:
        keyword, _, tail = keyword.partition("\t")
        rest = tail + " " + rest
    keyword = keyword.upper()
    where = f"{path}:{first + 1}"
    if keyword not in INSTRUCTIONS:
        raise DockerfileError(f"unknown instruction: {keyword}", subject=where)
    rest = rest.strip()
    flags, rest = _flags(rest) if keyword != "ONBUILD" else ((), rest)
    heredocs: tuple[Heredoc, ...] = ()
    if keyword in HEREDOC_INSTRUCTIONS and "<<" in rest:
        heredocs, index = _heredocs(rest, lines, index, where)
    exec_form = json_array(rest) if not heredocs else None
    instruction = Instruction(keyword, rest, first + 1, flags, exec_form, heredocs, "\n".join(raw))
    return instruction, index


def _skip_continuation_noise(lines: list[str], index: int) -> int:
    """Comment lines and blank lines inside a continued instruction are dropped, as Docker does."""
    while index < len(lines):
        stripped = lines[index].strip()
        if stripped and not stripped.startswith("#"):
            break
        index += 1
    return index


def _flags(rest: str) -> tuple[tuple[tuple[str, str | None], ...], str]:
    """Leading `--name=value` words (values may be quoted: `--mount=type=cache,target="/a b"`)."""
    flags: list[tuple[str, str | None]] = []
    while rest.startswith("--"):
        word, _, tail = _split_first_word(rest)
        match = _FLAG.fullmatch(word)
        if not match:
            break
        name, has_value, value = word[2:].partition("=")
        flags.append((name, value if has_value else None))
        rest = tail.lstrip()
    return tuple(flags), rest


def _split_first_word(text: str) -> tuple[str, str, str]:
    """The first whitespace-delimited word, honouring double quotes inside it."""
    quoted = False
    for i, ch in enumerate(text):
        if ch == '"':
            quoted = not quoted
        elif ch.isspace() and not quoted:
            return text[:i], text[i], text[i + 1 :]
    return text, "", ""


def json_array(rest: str) -> tuple[str, ...] | None:
    if not rest.startswith("["):
        return None
    try:
        value = json.loads(rest)
    except ValueError:
        return None
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    return None


def _heredocs(rest: str, lines: list[str], index: int, where: str) -> tuple[tuple[Heredoc, ...], int]:
    """Read the bodies of every `<<NAME` in `rest`, in order, from the lines after the instruction."""
    found: list[Heredoc] = []
    for match in _HEREDOC.finditer(rest):
        strip_tabs, quote, name = match.group(1) == "-", match.group(2), match.group(3)
        body: list[str] = []
        while True:
            if index >= len(lines):
                raise DockerfileError(f"unterminated heredoc {name}", subject=where)
            line = lines[index]
            index += 1
            candidate = line.lstrip("\t") if strip_tabs else line
            if candidate == name:
                break
            body.append(candidate)
        content = "\n".join(body) + "\n" if body else ""
        found.append(Heredoc(name, content, expand=not quote, strip_tabs=strip_tabs))
    return tuple(found), index
