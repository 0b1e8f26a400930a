"""Stage 2: `${VAR...}` substitution in Compose values, then type casts by path.

Semantics follow compose-go's `template` package (what docker compose v2 runs), including its quirks:

- `$NAME` and `${NAME}`; names are `[_a-zA-Z][_a-zA-Z0-9]*`. `$$` is a literal `$`. A `$` followed by
  anything but a name, `$` or `{` is kept as is (`$1`, `$-`, a trailing `$`).
- Operators right after the name: `:-` / `-` (default when unset-or-empty / unset), `:+` / `+`
  (alternative when set-and-non-empty / set), `:?` / `?` (error when unset-or-empty / unset). The
  operand is expanded lazily, so `${A:-${B:-x}}` nests and an unused operand never fails.
- Where a `${NAME<op>...}` ends: compose-go's regex first extends the match to the *last* `}` on the
  same line, then cuts it at the first balanced `}` (counting every `{` and skipping the character after
  it). We reproduce both steps so unbalanced operands behave the same (`${A:-{x}` defaults to `{x`).
- Anything else after `${` (`${}`, `${1}`, `${VAR/x/y}`, an unterminated `${A`, a newline inside an
  operand) is an invalid template.

Casting: compose-go converts strings at some typed paths after substitution (`deploy.replicas` to an
int, `privileged` to a bool...). It casts every string found there, interpolated or not, so we do too.
Current compose-go no longer casts `secrets[].mode` / `configs[].mode` (they are octal file modes that
later stages parse), and `ports[].published` stays a string.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from compose.errors import InterpolationError, Location, Path

Lookup = Callable[[str], str | None]
Warn = Callable[[str], None]
Locate = Callable[[Path], Location]

_NAME = re.compile(r"[_a-zA-Z][_a-zA-Z0-9]*")
_OPERATORS = ("-", "+", "?")


# --------------------------------------------------------------------------------------------------
# Template scanning (shared by substitution and variable listing)
# --------------------------------------------------------------------------------------------------


class _Invalid(Exception):
    """A `${...}` that compose-go's pattern does not accept; the caller names the path and value."""


def _find_close(text: str, start: int, last: int) -> int:
    """compose-go's brace matcher over text[start:last+1]; falls back to `last` when unbalanced."""
    depth = 0
    i = start
    while i <= last:
        ch = text[i]
        if ch == "}":
            depth -= 1
            if depth == 0:
                return i
        if ch == "{":
            depth += 1
            i += 1  # compose-go skips the character right after every `{`
        i += 1
    return last


def _parse_braced(text: str, dollar: int) -> tuple[str, str, str, int]:
    """Parse `${...}` starting at `dollar`: (name, operator, raw operand, index after the closing brace).

    The operator is "" for a plain `${NAME}`. Raises `_Invalid` when the pattern does not match.
    """
    match = _NAME.match(text, dollar + 2)
    if match is None:
        raise _Invalid
    name, pos = match.group(), match.end()
    if pos >= len(text):
        raise _Invalid
    ch = text[pos]
    if ch == "}":
        return name, "", "", pos + 1
    if ch == ":" and pos + 1 < len(text) and text[pos + 1] in _OPERATORS:
        operator, operand_start = ":" + text[pos + 1], pos + 2
    elif ch in _OPERATORS:
        operator, operand_start = ch, pos + 1
    else:
        raise _Invalid
    line_end = text.find("\n", operand_start)
    last = text.rfind("}", operand_start, len(text) if line_end < 0 else line_end)
    if last < 0:
        raise _Invalid
    close = _find_close(text, dollar, last)
    return name, operator, text[operand_start:close], close + 1


# --------------------------------------------------------------------------------------------------
# Substitution
# --------------------------------------------------------------------------------------------------


class _Context:
    """What one `substitute` call needs while recursing into operands."""

    __slots__ = ("location", "lookup", "path", "template", "warn")

    def __init__(
        self, template: str, lookup: Lookup, path: Path, location: Location | None, warn: Warn | None
    ):
        self.template = template
        self.lookup = lookup
        self.path = tuple(path)
        self.location = location
        self.warn = warn

    def invalid(self) -> InterpolationError:
        # The path is printed in front of every ComposeError already; the message adds the value.
        message = (
            f"invalid interpolation format {self.template!r}: you may need to escape any $ with another $"
        )
        return InterpolationError(message, path=self.path or None, location=self.location)

    def missing(self, name: str, reason: str) -> InterpolationError:
        message = f"required variable {name} is missing a value"
        if reason:
            message += f": {reason}"
        return InterpolationError(message, path=self.path or None, location=self.location)


def _plain(name: str, ctx: _Context) -> str:
    """`$NAME` / `${NAME}`: the value, or "" with compose's warning when unset."""
    value = ctx.lookup(name)
    if value is None:
        if ctx.warn is not None:
            ctx.warn(f'The "{name}" variable is not set. Defaulting to a blank string.')
        return ""
    return value


def _apply(name: str, operator: str, operand: str, ctx: _Context) -> str:
    """Apply one operator; the operand is expanded only when it is used."""
    value = ctx.lookup(name)
    usable = value is not None and (value != "" or not operator.startswith(":"))
    kind = operator[-1]
    if kind == "-":
        return value if usable else _expand(operand, ctx)  # type: ignore[return-value]
    if kind == "+":
        return _expand(operand, ctx) if usable else (value or "")
    if not usable:  # `?` / `:?`
        raise ctx.missing(name, _expand(operand, ctx))
    return value  # type: ignore[return-value]


def _expand(text: str, ctx: _Context) -> str:
    """Expand every `$` expression of `text` left to right."""
    if "$" not in text:
        return text
    out: list[str] = []
    pos, size = 0, len(text)
    while True:
        dollar = text.find("$", pos)
        if dollar < 0:
            out.append(text[pos:])
            return "".join(out)
        out.append(text[pos:dollar])
        nxt = text[dollar + 1] if dollar + 1 < size else ""
        if nxt == "$":
            out.append("$")
            pos = dollar + 2
        elif nxt == "{":
            try:
                name, operator, operand, pos = _parse_braced(text, dollar)
            except _Invalid:
                raise ctx.invalid() from None
            out.append(_apply(name, operator, operand, ctx) if operator else _plain(name, ctx))
        elif nxt and (nxt == "_" or (nxt.isascii() and nxt.isalpha())):
            match = _NAME.match(text, dollar + 1)
            assert match is not None
            out.append(_plain(match.group(), ctx))
            pos = match.end()
        else:
            out.append("$")
            pos = dollar + 1


def substitute(
    template: str,
    lookup: Lookup,
    *,
    path: Path = (),
    location: Location | None = None,
    warn: Warn | None = None,
) -> str:
    """Expand `$VAR` / `${VAR<op>...}` in one string, compose-go style.

    `lookup` returns None for an unset variable (distinct from ""). Raises InterpolationError for a
    malformed expression or a failed `?` / `:?`, carrying `path` and `location`.
    """
    if "$" not in template:
        return template
    return _expand(template, _Context(template, lookup, path, location, warn))


# --------------------------------------------------------------------------------------------------
# Casting by path (compose-go loader/interpolate.go interpolateTypeCastMapping)
# --------------------------------------------------------------------------------------------------


class _CastError(Exception):
    """A string that does not parse as the type its path wants."""


_INT_RE = re.compile(r"[+-]?[0-9]+")
_FLOAT_RE = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_FLOAT_SPECIAL = {"inf": float("inf"), "infinity": float("inf"), "nan": float("nan")}
_INT64 = 2**63


def _go_quote(value: str) -> str:
    """Go's %q for the common case (how strconv errors show the input)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _to_int(value: str, func: str = "strconv.Atoi") -> int:
    if not _INT_RE.fullmatch(value):
        raise _CastError(f"{func}: parsing {_go_quote(value)}: invalid syntax")
    number = int(value)
    if not -_INT64 <= number < _INT64:
        raise _CastError(f"{func}: parsing {_go_quote(value)}: value out of range")
    return number


def _to_int64(value: str) -> int:
    return _to_int(value, "strconv.ParseInt")


def _to_float(value: str) -> float:
    special = _FLOAT_SPECIAL.get(value.lstrip("+-").lower())
    if special is not None:
        return -special if value.startswith("-") else special
    if not _FLOAT_RE.fullmatch(value):
        raise _CastError(f"strconv.ParseFloat: parsing {_go_quote(value)}: invalid syntax")
    return float(value)


_TRUE_WORDS = {"y", "yes", "on"}
_FALSE_WORDS = {"n", "no", "off"}


def _to_bool(value: str, warn: Warn | None = None) -> bool:
    """compose-go toBoolean: true/false, plus YAML 1.1 words with a warning; case-insensitive."""
    lowered = value.lower()
    if lowered == "true":
        return True
    if lowered == "false":
        return False
    if lowered in _TRUE_WORDS or lowered in _FALSE_WORDS:
        result = lowered in _TRUE_WORDS
        if warn is not None:
            word = "true" if result else "false"
            warn(f"{_go_quote(value)} for boolean is not supported by YAML 1.2, please use `{word}`")
        return result
    raise _CastError(f"invalid boolean: {value}")


# "*" matches any one key or list index, "[]" only a list index (compose-go tree.Path patterns).
_CAST_TABLE: dict[tuple[str, ...], Callable[..., Any]] = {
    ("cpu_count",): _to_int64,
    ("cpu_percent",): _to_float,
    ("cpu_period",): _to_int64,
    ("cpu_quota",): _to_int64,
    ("cpu_rt_period",): _to_int64,
    ("cpu_rt_runtime",): _to_int64,
    ("cpus",): _to_float,
    ("cpu_shares",): _to_int64,
    ("init",): _to_bool,
    ("depends_on", "*", "required"): _to_bool,
    ("depends_on", "*", "restart"): _to_bool,
    ("deploy", "replicas"): _to_int,
    ("deploy", "update_config", "parallelism"): _to_int,
    ("deploy", "update_config", "max_failure_ratio"): _to_float,
    ("deploy", "rollback_config", "parallelism"): _to_int,
    ("deploy", "rollback_config", "max_failure_ratio"): _to_float,
    ("deploy", "restart_policy", "max_attempts"): _to_int,
    ("deploy", "placement", "max_replicas_per_node"): _to_int,
    ("healthcheck", "retries"): _to_int,
    ("healthcheck", "disable"): _to_bool,
    ("oom_kill_disable",): _to_bool,
    ("oom_score_adj",): _to_int64,
    ("pids_limit",): _to_int64,
    ("ports", "[]", "target"): _to_int,
    ("privileged",): _to_bool,
    ("read_only",): _to_bool,
    ("scale",): _to_int,
    ("stdin_open",): _to_bool,
    ("tty",): _to_bool,
    ("ulimits", "*"): _to_int,
    ("ulimits", "*", "hard"): _to_int,
    ("ulimits", "*", "soft"): _to_int,
    ("volumes", "[]", "read_only"): _to_bool,
    ("volumes", "[]", "volume", "nocopy"): _to_bool,
}
_CAST_TABLE = {("services", "*", *key): cast for key, cast in _CAST_TABLE.items()}
_CAST_TABLE.update(
    {
        ("networks", "*", "external"): _to_bool,
        ("networks", "*", "internal"): _to_bool,
        ("networks", "*", "attachable"): _to_bool,
        ("networks", "*", "enable_ipv4"): _to_bool,
        ("networks", "*", "enable_ipv6"): _to_bool,
        ("volumes", "*", "external"): _to_bool,
        ("secrets", "*", "external"): _to_bool,
        ("configs", "*", "external"): _to_bool,
    }
)

_CAST_KEY = "\0cast"  # where a trie node keeps its caster; cannot collide with a YAML key segment
_Node = dict[str, Any]


def _merge_into(target: _Node, source: _Node) -> None:
    """Fold a wildcard subtree into an exact one, so every segment leads to at most one node."""
    for key, child in source.items():
        if key == _CAST_KEY:
            target.setdefault(key, child)
        else:
            _merge_into(target.setdefault(key, {}), child)


def _build_trie(table: Mapping[tuple[str, ...], Callable[..., Any]]) -> _Node:
    """Turn the pattern table into nested dicts the walk follows one segment at a time."""
    root: _Node = {}
    for pattern, cast in table.items():
        node = root
        for part in pattern:
            node = node.setdefault(part, {})
        node[_CAST_KEY] = cast
    _fold_wildcards(root)
    return root


def _fold_wildcards(node: _Node) -> None:
    wild = node.get("*")
    for key, child in node.items():
        if key == _CAST_KEY:
            continue
        if wild is not None and key != "*":
            _merge_into(child, wild)
        _fold_wildcards(child)


_TRIE = _build_trie(_CAST_TABLE)


def _key_child(node: _Node, key: str) -> _Node | None:
    """The trie node for a mapping key: the exact key first, else the wildcard."""
    child = node.get(key)
    return child if child is not None else node.get("*")


def _item_child(node: _Node) -> _Node | None:
    """The trie node for a list item: `[]`, else the wildcard."""
    child = node.get("[]")
    return child if child is not None else node.get("*")


# --------------------------------------------------------------------------------------------------
# Document walk
# --------------------------------------------------------------------------------------------------


class _Walker:
    """Carries the environment, callbacks and warned-about messages through one `interpolate` call.

    Two walks: `typed` follows the cast trie while some typed path may still lie below; `plain` only
    substitutes. Both skip strings without `$` and build key paths only for containers and errors,
    which keeps a 500-service document in the low milliseconds.
    """

    def __init__(self, env: Mapping[str, str], locate: Locate | None, warn: Warn | None) -> None:
        self.lookup: Lookup = env.get
        self.locate = locate
        self.user_warn = warn
        self.warned: set[str] = set()

    def warn(self, message: str) -> None:
        """Pass each distinct warning on once (compose-go repeats them; once is enough)."""
        if self.user_warn is not None and message not in self.warned:
            self.warned.add(message)
            self.user_warn(message)

    def where(self, path: Path) -> Location | None:
        return self.locate(path) if self.locate is not None else None

    def string(self, value: str, path: Path) -> str:
        ctx = _Context(value, self.lookup, path, None, self.warn)
        try:
            return _expand(value, ctx)
        except InterpolationError as exc:
            raise exc.at(location=self.where(path)) from None

    def cast(self, value: str, cast: Callable[..., Any], path: Path) -> Any:
        try:
            return cast(value, self.warn) if cast is _to_bool else cast(value)
        except _CastError as exc:
            message = f"failed to cast to expected type: {exc}"
            raise InterpolationError(message, path=path, location=self.where(path)) from None

    def child(self, value: Any, path: Path, node: _Node | None) -> Any:
        """One mapping value or list item: the cheap cases inline, containers recursed into."""
        if isinstance(value, str):
            if node is None:
                return self.string(value, path) if "$" in value else value
            result = self.string(value, path) if "$" in value else value
            cast = node.get(_CAST_KEY)
            return self.cast(result, cast, path) if cast is not None else result
        if isinstance(value, dict | list):
            return self.plain(value, path) if node is None else self.typed(value, path, node)
        return value

    def typed(self, value: dict | list, path: Path, node: _Node) -> dict | list:
        if isinstance(value, dict):
            return {k: self.child(v, (*path, k), _key_child(node, k)) for k, v in value.items()}
        item = _item_child(node)
        return [self.child(v, (*path, i), item) for i, v in enumerate(value)]

    def plain(self, value: dict | list, path: Path) -> dict | list:
        if isinstance(value, dict):
            out = {}
            for k, v in value.items():
                if isinstance(v, str):
                    out[k] = self.string(v, (*path, k)) if "$" in v else v
                elif isinstance(v, dict | list):
                    out[k] = self.plain(v, (*path, k))
                else:
                    out[k] = v
            return out
        items = []
        for i, v in enumerate(value):
            if isinstance(v, str):
                items.append(self.string(v, (*path, i)) if "$" in v else v)
            elif isinstance(v, dict | list):
                items.append(self.plain(v, (*path, i)))
            else:
                items.append(v)
        return items


def interpolate(
    data: object,
    env: Mapping[str, str],
    *,
    locate: Locate | None = None,
    warn: Warn | None = None,
) -> object:
    """Substitute variables in every value (never in keys) and cast values at typed paths.

    Returns new containers; `data` is left untouched. Each distinct warning (an unset variable, a
    YAML 1.1 boolean word) is reported once.
    """
    walker = _Walker(env, locate, warn)
    if isinstance(data, dict | list):
        return walker.typed(data, (), _TRIE)
    if isinstance(data, str) and "$" in data:
        return walker.string(data, ())
    return data


# --------------------------------------------------------------------------------------------------
# `config --variables`
# --------------------------------------------------------------------------------------------------


def _scan_variables(text: str) -> list[dict[str, Any]]:
    """Every variable a template mentions, operands included (compose-go extractVariable)."""
    found: list[dict[str, Any]] = []
    pos = 0
    while (dollar := text.find("$", pos)) >= 0:
        nxt = text[dollar + 1] if dollar + 1 < len(text) else ""
        pos = dollar + 1
        if nxt == "$":
            pos = dollar + 2
        elif nxt == "{":
            try:
                name, operator, operand, pos = _parse_braced(text, dollar)
            except _Invalid:
                pos = dollar + 2
                continue
            kind = operator[-1:]
            found.append(
                {
                    "Name": name,
                    "DefaultValue": operand if kind == "-" else "",
                    "PresenceValue": operand if kind == "+" else "",
                    "Required": kind == "?",
                }
            )
            if operand:
                found.extend(_scan_variables(operand))
        elif match := _NAME.match(text, dollar + 1):
            found.append({"Name": match.group(), "DefaultValue": "", "PresenceValue": "", "Required": False})
            pos = match.end()
    return found


def _combine(into: dict[str, dict[str, Any]], variable: dict[str, Any]) -> None:
    """Required if any use is; keep the first non-empty default and presence value."""
    existing = into.get(variable["Name"])
    if existing is None:
        into[variable["Name"]] = dict(variable)
        return
    existing["Required"] = existing["Required"] or variable["Required"]
    for field in ("DefaultValue", "PresenceValue"):
        if not existing[field]:
            existing[field] = variable[field]


def list_variables(data: object) -> dict[str, dict[str, Any]]:
    """Variables used in the values of `data`: {NAME: {Name, DefaultValue, PresenceValue, Required}}.

    Malformed expressions are skipped rather than reported; `config --variables` only lists.
    """
    result: dict[str, dict[str, Any]] = {}
    stack = [data]
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            if "$" in value:
                for variable in _scan_variables(value):
                    _combine(result, variable)
        elif isinstance(value, dict):
            stack.extend(reversed(list(value.values())))
        elif isinstance(value, list):
            stack.extend(reversed(value))
    return result
