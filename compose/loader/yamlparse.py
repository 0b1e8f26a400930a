"""Parse Compose YAML into plain data, remembering where every key came from.

Why not `yaml.safe_load`: PyYAML resolves scalars by YAML 1.1 (`yes` is a bool, `22:22` is the
sexagesimal number 1342, `2024-01-01` a date) while docker compose uses YAML 1.2-style rules, where all
of those are strings. It also silently keeps the last of two duplicate keys. So we let libyaml build the
node graph and construct values ourselves: YAML 1.2 core scalars, `<<` merge keys, duplicate-key errors,
the Compose tags `!reset` and `!override`, and a table of 1-based (line, column) per key path for error
messages.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml

from compose.errors import Location, Path, YamlError

_BaseLoader: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when PyYAML was built with it


class _Loader(_BaseLoader):  # type: ignore[misc, valid-type]
    """Resolves only `<<`; every other plain scalar is typed by `resolve_plain_scalar` (YAML 1.2)."""

    yaml_implicit_resolvers: dict = {}


_Loader.add_implicit_resolver("tag:yaml.org,2002:merge", re.compile(r"^(?:<<)$"), ["<"])

_TAG_PREFIX = "tag:yaml.org,2002:"
_MERGE_TAG = _TAG_PREFIX + "merge"
COMPOSE_TAGS = {"!reset": "reset", "!override": "override"}

# A document may expand aliases; past this many constructed nodes we stop (billion-laughs guard).
MAX_NODES = 2_000_000

_NULL = {"", "~", "null", "Null", "NULL"}
_TRUE = {"true", "True", "TRUE"}
_FALSE = {"false", "False", "FALSE"}
_INT_RE = re.compile(r"[-+]?(0|[1-9][0-9_]*)$")
_INT_PREFIXED_RE = re.compile(r"[-+]?0(x[0-9a-fA-F_]+|o[0-7_]+|b[01_]+|[0-7_]+)$")
_FLOAT_RE = re.compile(r"[-+]?(\.[0-9]+|[0-9][0-9_]*(\.[0-9_]*)?)([eE][-+]?[0-9]+)?$")
_SPECIAL_FLOATS = {
    ".inf": math.inf, ".Inf": math.inf, ".INF": math.inf,
    "+.inf": math.inf, "+.Inf": math.inf, "+.INF": math.inf,
    "-.inf": -math.inf, "-.Inf": -math.inf, "-.INF": -math.inf,
    ".nan": math.nan, ".NaN": math.nan, ".NAN": math.nan,
}  # fmt: skip


def resolve_plain_scalar(text: str) -> Any:
    """Type an unquoted scalar the way docker compose's YAML library does (YAML 1.2 core schema)."""
    if text in _NULL:
        return None
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    first = text[0]
    if first.isdigit() or first in "+-.":
        if _INT_RE.match(text):
            return int(text.replace("_", ""))
        if _INT_PREFIXED_RE.match(text):
            sign = -1 if text[0] == "-" else 1
            body = text.lstrip("+-").replace("_", "")
            if body[1] in "xob":
                return sign * int(body, 0)
            return sign * int(body, 8)
        if text in _SPECIAL_FLOATS:
            return _SPECIAL_FLOATS[text]
        if _FLOAT_RE.match(text) and any(ch.isdigit() for ch in text):
            return float(text.replace("_", ""))
    return text


@dataclass
class ParsedDocument:
    """One YAML document of a Compose file: plain data plus where each key path sits in the file."""

    filename: str
    data: Any
    marks: dict[Path, tuple[int, int]] = field(default_factory=dict)
    tags: dict[Path, str] = field(default_factory=dict)
    """Paths marked `!reset` (value removed from `data`) or `!override` (value kept, replaces on merge)."""

    def locate(self, path: Path) -> Location:
        """The position of `path`, or of its nearest ancestor that has one."""
        return locate_in(self.filename, self.marks, path)


def locate_in(filename: str, marks: dict[Path, tuple[int, int]], path: Path) -> Location:
    """Walk `path` up to the nearest ancestor present in `marks`."""
    probe = tuple(path)
    while probe:
        hit = marks.get(probe)
        if hit is not None:
            return Location(filename, hit[0], hit[1])
        probe = probe[:-1]
    hit = marks.get(())
    return Location(filename, *(hit or (None, None)))


class _Builder:
    """Turns a libyaml node graph into plain Python values, recording marks and Compose tags."""

    def __init__(self, filename: str, loader: Any) -> None:
        self.filename = filename
        self.loader = loader
        self.marks: dict[Path, tuple[int, int]] = {}
        self.tags: dict[Path, str] = {}
        self.budget = MAX_NODES
        self.active: set[int] = set()

    def error(self, node: yaml.Node, message: str, path: Path = ()) -> YamlError:
        mark = node.start_mark
        return YamlError(
            message, path=path or None, location=Location(self.filename, mark.line + 1, mark.column + 1)
        )

    def build(self, node: yaml.Node, path: Path) -> Any:
        self.budget -= 1
        if self.budget < 0:
            raise self.error(node, "document expands to too many nodes (alias bomb?)")
        tag = node.tag
        if tag in COMPOSE_TAGS:
            self.tags[path] = COMPOSE_TAGS[tag]
            tag = None
        elif tag.startswith("!") and not tag.startswith("!!"):
            raise self.error(node, f"unknown tag {tag!r}", path)
        if isinstance(node, yaml.ScalarNode):
            return self.scalar(node, tag, path)
        if id(node) in self.active:
            raise self.error(node, "recursive alias", path)
        self.active.add(id(node))
        try:
            if isinstance(node, yaml.SequenceNode):
                return self.sequence(node, path)
            return self.mapping(node, path)
        finally:
            self.active.discard(id(node))

    def scalar(self, node: yaml.ScalarNode, tag: str | None, path: Path) -> Any:
        plain = not node.style
        if tag is None or tag == _TAG_PREFIX + "str":
            return resolve_plain_scalar(node.value) if plain and node.tag == _IMPLICIT_STR else node.value
        constructor = self.loader.yaml_constructors.get(tag)
        if constructor is None:
            raise self.error(node, f"unsupported tag {tag!r}", path)
        try:
            return constructor(self.loader, node)
        except (yaml.YAMLError, ValueError) as exc:
            raise self.error(
                node, f"cannot read {node.value!r} as {tag.removeprefix(_TAG_PREFIX)}: {exc}", path
            ) from None

    def sequence(self, node: yaml.SequenceNode, path: Path) -> list[Any]:
        out = []
        for item in node.value:
            if item.tag == "!reset":  # a reset list item is simply not there
                continue
            item_path = (*path, len(out))
            self.marks[item_path] = (item.start_mark.line + 1, item.start_mark.column + 1)
            out.append(self.build(item, item_path))
        return out

    def mapping(self, node: yaml.MappingNode, path: Path) -> dict[str, Any]:
        out: dict[str, Any] = {}
        merged: list[tuple[yaml.Node, Path]] = []
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                merged.append((value_node, path))
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                raise self.error(key_node, "mapping keys must be strings", path)
            key = key_node.value
            if key_node.style is None and resolve_plain_scalar(key) is None:
                key = ""  # `~:` or `null:` as a key; schema validation reports the empty name
            if key in out:
                first = self.marks.get((*path, key))
                where = f" (first defined at line {first[0]})" if first else ""
                raise self.error(key_node, f"duplicate key {key!r}{where}", (*path, key))
            key_path = (*path, key)
            self.marks[key_path] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            out[key] = self.build(value_node, key_path)
        for value_node, merge_path in merged:
            for source in self.merge_sources(value_node, merge_path):
                for key, value in source.items():
                    out.setdefault(key, value)
        for key, tag in list(self.tags.items()):
            if tag == "reset" and key[:-1] == path and key[-1] in out:
                del out[key[-1]]
        return out

    def merge_sources(self, node: yaml.Node, path: Path) -> Iterator[dict[str, Any]]:
        """`<<: *a` or `<<: [*a, *b]`; earlier entries in the list win, like YAML's merge-key spec."""
        nodes = node.value if isinstance(node, yaml.SequenceNode) else [node]
        for item in nodes:
            if not isinstance(item, yaml.MappingNode):
                raise self.error(
                    item, "the value of a << merge key must be a mapping or a list of mappings", path
                )
            outer, self.marks = self.marks, {}
            try:
                value = self.mapping(item, path)
            finally:
                merged_marks, self.marks = self.marks, outer
            for key, mark in merged_marks.items():  # keys defined here keep their own marks
                self.marks.setdefault(key, mark)
            yield value


_IMPLICIT_STR = _TAG_PREFIX + "str"


def parse_yaml(text: str, filename: str) -> list[ParsedDocument]:
    """Parse every document of a YAML stream; an empty file gives one document with `data` None."""
    loader = _Loader(text)
    docs: list[ParsedDocument] = []
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            builder = _Builder(filename, loader)
            data = builder.build(node, ())
            builder.marks[()] = (node.start_mark.line + 1, node.start_mark.column + 1)
            docs.append(ParsedDocument(filename, data, builder.marks, builder.tags))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        location = Location(filename, mark.line + 1, mark.column + 1) if mark else Location(filename)
        problem = exc.problem or exc.context or "invalid YAML"
        if exc.context and exc.problem:
            problem = f"{exc.context}, {exc.problem}"
        raise YamlError(problem, location=location) from None
    except yaml.YAMLError as exc:
        raise YamlError(str(exc), location=Location(filename)) from None
    finally:
        loader.dispose()
    if not docs:
        docs.append(ParsedDocument(filename, None, {(): (1, 1)}, {}))
    return docs
