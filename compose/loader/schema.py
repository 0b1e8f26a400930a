"""Stage 4: check a Compose document against the Compose Specification JSON schema.

The schema (`schemas/compose-spec.json`) is structural only: it runs after interpolation and before short
syntax is expanded, so both forms pass and the syntax of ports, volumes, durations and sizes is left to
`canonical`. This module turns jsonschema's error tree into one message phrased like docker compose's
("additional property 'foo' is not allowed", "must be a string or number"), pointed at the offending key.
"""

from __future__ import annotations

import json
import pathlib
import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from compose.errors import Location, Path, SchemaError

SCHEMA_FILE = pathlib.Path(__file__).resolve().parents[2] / "schemas" / "compose-spec.json"

_TYPE_NAMES = {
    "object": "mapping",
    "array": "list",
    "string": "string",
    "number": "number",
    "integer": "integer",
    "boolean": "boolean",
    "null": "null",
}

_validators: dict[bool, Any] = {}  # built on first use: jsonschema is not imported at CLI start-up
_fast_checks: dict[bool, Callable[[Any], bool] | None] = {}


def validate(data: object, *, locate: Callable[[Path], Location] | None = None, require: bool = True) -> None:
    """Raise SchemaError for the most useful violation in `data`; return None when it is valid.

    `require=False` skips the schema's `required` rules (e.g. a depends_on entry without
    `condition`): compose-go validates the merged model, so an override file may hold fragments
    that are only complete once merged.

    A compiled yes/no check runs first (a 500-service file takes a few milliseconds); jsonschema,
    which is much slower but explains failures, runs only on documents that check rejects.
    """
    check = _get_fast_check(require)
    try:
        if check is not None and check(data):
            return
    except TypeError:
        pass  # a non-string key: let jsonschema report it
    validator = _get_validator(require)
    try:
        errors = list(validator.iter_errors(data))
    except TypeError:  # a non-string mapping key reached a pattern check
        raise SchemaError("mapping keys must be strings", path=(), location=_at(locate, ())) from None
    if not errors:
        return
    path, message = _best(errors)
    raise SchemaError(message, path=path, location=_at(locate, path))


def load_schema() -> dict[str, Any]:
    """The schema as written, `$ref`s and all (for tools and tests)."""
    return json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))


def _prepared_schema(require: bool) -> dict[str, Any]:
    """The schema with every `$ref` inlined, and without `required` rules unless `require`.

    Inlining matters for speed: each `$ref` otherwise costs a registry lookup per visited node, which
    dominates on files with hundreds of services.
    """
    schema = load_schema()
    inlined = _inline_refs(schema, schema.pop("definitions", {}), require)
    return inlined


def _get_validator(require: bool) -> Any:
    """One Draft-7 validator per process (and per `require`)."""
    if require not in _validators:
        from jsonschema import Draft7Validator

        _validators[require] = Draft7Validator(_prepared_schema(require))
    return _validators[require]


def _get_fast_check(require: bool) -> Callable[[Any], bool] | None:
    """The compiled check, or None when the schema uses a keyword `_compile` does not know."""
    if require not in _fast_checks:
        try:
            _fast_checks[require] = _compile(_prepared_schema(require))
        except NotImplementedError:
            _fast_checks[require] = None
    return _fast_checks[require]


def _inline_refs(node: Any, definitions: dict[str, Any], require: bool = True) -> Any:
    """Replace `{"$ref": "#/definitions/x"}` by the definition itself (the Compose schema has no cycles)."""
    if isinstance(node, list):
        return [_inline_refs(item, definitions, require) for item in node]
    if not isinstance(node, dict):
        return node
    target = node.get("$ref")
    if isinstance(target, str) and target.startswith("#/definitions/"):
        return _inline_refs(definitions[target.removeprefix("#/definitions/")], definitions, require)
    return {
        key: _inline_refs(value, definitions, require)
        for key, value in node.items()
        if require or not (key == "required" and isinstance(value, list))  # a keyword, not a property
    }


def _at(locate: Callable[[Path], Location] | None, path: Path) -> Location | None:
    return locate(path) if locate is not None else None


# ------------------------------------------------------------------ choosing and phrasing the error


def _best(errors: Iterable[Any]) -> tuple[Path, str]:
    """The deepest explained error wins (like compose-go); on a tie, the first one reported."""
    best: tuple[Path, str] | None = None
    for error in errors:
        for candidate in _explain(error):
            if best is None or len(candidate[0]) > len(best[0]):
                best = candidate
    assert best is not None
    return best


def _explain(error: Any) -> Iterator[tuple[Path, str]]:
    """Turn one jsonschema error into (path, message) candidates; alternatives are looked into."""
    path: Path = tuple(error.absolute_path)
    kind = error.validator
    if kind in ("anyOf", "oneOf"):
        yield from _explain_alternatives(error, path)
    elif kind == "additionalProperties":
        key = _first_extra_key(error.instance, error.schema)
        if key is None:
            yield path, "additional properties are not allowed"
        else:
            yield (*path, key), f"additional property {key!r} is not allowed"
    else:
        yield path, _phrase(error)


def _explain_alternatives(error: Any, path: Path) -> Iterator[tuple[Path, str]]:
    """A value matched none of the accepted forms.

    If it does not have the shape of any form (wrong type everywhere), say which types are accepted.
    Otherwise the forms it does resemble explain the failure, e.g. a long-syntax port with a bad key.
    """
    if not error.context:  # oneOf matched more than one form
        yield path, "matches more than one of the accepted forms"
        return
    branches: dict[int, list[Any]] = {}
    for sub in error.context:
        branches.setdefault(sub.schema_path[0], []).append(sub)
    resembling = [subs for subs in branches.values() if not all(_is_shape_mismatch(s) for s in subs)]
    if not resembling:
        yield path, "must be " + _human_types(_accepted_types(error.validator_value))
        return
    for subs in resembling:
        for sub in subs:
            yield from _explain(sub)


def _is_shape_mismatch(error: Any) -> bool:
    """True when the error only says 'wrong type' for the value the alternative was tried on."""
    if error.relative_path:
        return False
    if error.validator == "type":
        return True
    return error.validator in ("anyOf", "oneOf") and all(_is_shape_mismatch(s) for s in error.context)


def _accepted_types(branches: list[dict[str, Any]]) -> list[str]:
    """The JSON types the alternatives accept, in schema order, an integer folded into number."""
    types: list[str] = []
    for branch in branches:
        declared = branch.get("type", [])
        if not declared and "anyOf" in branch:
            declared = _accepted_types(branch["anyOf"])
        for name in [declared] if isinstance(declared, str) else declared:
            if name not in types:
                types.append(name)
    if "number" in types and "integer" in types:
        types.remove("integer")
    return types


def _human_types(types: str | list[str]) -> str:
    """["string", "number", "object"] -> "a string, number or mapping" (compose-go wording), null last."""
    declared = [types] if isinstance(types, str) else list(types)
    names = [_TYPE_NAMES.get(t, t) for t in declared if t != "null"] + ["null"] * ("null" in declared)
    text = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]
    return ("an " if text[0] in "aeiou" else "a ") + text


def _phrase(error: Any) -> str:
    """The message for a single failed keyword."""
    kind, expected, schema = error.validator, error.validator_value, error.schema
    if kind == "type":
        return "must be " + _human_types(expected)
    if kind == "enum":
        return "must be one of: " + ", ".join(str(v) for v in expected)
    if kind == "required":
        missing = [name for name in expected if name not in error.instance]
        return f"missing required property {missing[0] if missing else expected[0]!r}"
    if kind == "minimum":
        return f"must be greater than or equal to {expected}"
    if kind == "maximum":
        return f"must be less than or equal to {expected}"
    if kind == "pattern":
        return "must be one of: " + schema["x-hint"] if "x-hint" in schema else f"must match {expected!r}"
    if kind == "uniqueItems":
        return _duplicate_message(error.instance)
    return error.message


def _duplicate_message(items: list[Any]) -> str:
    """Name the first repeated item, like compose-go's 'items at index i and j are equal'."""
    seen: dict[str, int] = {}
    for index, item in enumerate(items):
        key = json.dumps(item, sort_keys=True, default=str)
        if key in seen:
            return f"must contain unique items, but items at index {seen[key]} and {index} are equal"
        seen[key] = index
    return "must contain unique items"


def _first_extra_key(instance: Any, schema: dict[str, Any]) -> str | None:
    """The first key (in file order) allowed neither by `properties` nor by `patternProperties`."""
    if not isinstance(instance, dict):
        return None
    known = schema.get("properties", {})
    patterns = [re.compile(p) for p in schema.get("patternProperties", {})]
    for key in instance:
        if key in known or any(p.search(str(key)) for p in patterns):
            continue
        return key
    return None


# ------------------------------------------------------------------ the fast yes/no check
#
# A small compiler from the JSON Schema keywords our schema uses to nested closures. It must accept
# exactly what Draft-7 accepts for those keywords: it decides alone when a document is valid.

_IGNORED_KEYWORDS = {"$schema", "$id", "title", "description", "definitions", "default", "deprecated",
                     "$comment", "x-hint"}  # fmt: skip
_Check = Callable[[Any], bool]


def _is_integer(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and value.is_integer())


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


_TYPE_TESTS: dict[str, _Check] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "integer": _is_integer,
    "number": _is_number,
}


def _compile(schema: Any) -> _Check:
    """Compile one (ref-free) schema node into a predicate."""
    if schema is True or schema == {}:
        return lambda _v: True
    if schema is False:
        return lambda _v: False
    checks: list[_Check] = []
    for keyword, value in schema.items():
        if keyword in _IGNORED_KEYWORDS or keyword in ("properties", "patternProperties"):
            continue
        builder = _KEYWORD_COMPILERS.get(keyword)
        if builder is None:
            raise NotImplementedError(keyword)
        checks.append(builder(value, schema))
    if "properties" in schema or "patternProperties" in schema:
        checks.append(_compile_object_keys(schema))
    if len(checks) == 1:
        return checks[0]
    return lambda v: all(check(v) for check in checks)


def _compile_type(value: Any, _schema: Any) -> _Check:
    names = [value] if isinstance(value, str) else list(value)
    tests = [_TYPE_TESTS[name] for name in names]
    if len(tests) == 1:
        return tests[0]
    return lambda v: any(test(v) for test in tests)


def _compile_object_keys(schema: dict[str, Any]) -> _Check:
    """properties + patternProperties + additionalProperties, checked in one pass over the keys."""
    props = {key: _compile(sub) for key, sub in schema.get("properties", {}).items()}
    patterns = [(re.compile(p), _compile(sub)) for p, sub in schema.get("patternProperties", {}).items()]
    extra = schema.get("additionalProperties", True)
    extra_check = None if extra is True else _compile(extra)

    def check(value: Any) -> bool:
        if not isinstance(value, dict):
            return True
        for key, item in value.items():
            matched = False
            prop = props.get(key)
            if prop is not None:
                matched = True
                if not prop(item):
                    return False
            for regex, sub in patterns:
                if regex.search(key):
                    matched = True
                    if not sub(item):
                        return False
            if not matched and extra_check is not None and not extra_check(item):
                return False
        return True

    return check


def _compile_additional(value: Any, schema: Any) -> _Check:
    if "properties" in schema or "patternProperties" in schema:
        return lambda _v: True  # handled by _compile_object_keys
    sub = _compile(value)
    return lambda v: not isinstance(v, dict) or all(sub(item) for item in v.values())


def _compile_items(value: Any, _schema: Any) -> _Check:
    if isinstance(value, list):
        raise NotImplementedError("items as a tuple")
    sub = _compile(value)
    return lambda v: not isinstance(v, list) or all(sub(item) for item in v)


def _compile_any_of(value: Any, _schema: Any) -> _Check:
    subs = [_compile(branch) for branch in value]
    return lambda v: any(sub(v) for sub in subs)


def _compile_one_of(value: Any, _schema: Any) -> _Check:
    subs = [_compile(branch) for branch in value]
    return lambda v: sum(1 for sub in subs if sub(v)) == 1


def _compile_enum(value: Any, _schema: Any) -> _Check:
    return lambda v: any(_json_equal(v, allowed) for allowed in value)


def _compile_required(value: Any, _schema: Any) -> _Check:
    return lambda v: not isinstance(v, dict) or all(name in v for name in value)


def _compile_minimum(value: Any, _schema: Any) -> _Check:
    return lambda v: not _is_number(v) or v >= value


def _compile_maximum(value: Any, _schema: Any) -> _Check:
    return lambda v: not _is_number(v) or v <= value


def _compile_pattern(value: Any, _schema: Any) -> _Check:
    regex = re.compile(value)
    return lambda v: not isinstance(v, str) or regex.search(v) is not None


def _compile_unique(value: Any, _schema: Any) -> _Check:
    if not value:
        return lambda _v: True
    return lambda v: not isinstance(v, list) or _all_distinct(v)


def _all_distinct(items: list[Any]) -> bool:
    if all(isinstance(item, str) for item in items):
        return len(set(items)) == len(items)
    return not any(_json_equal(a, b) for i, a in enumerate(items) for b in items[i + 1 :])


def _json_equal(a: Any, b: Any) -> bool:
    """JSON equality: true and 1 differ, 1 and 1.0 do not (as in jsonschema)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b, strict=True))
    if _is_number(a) and _is_number(b):
        return a == b
    return type(a) is type(b) and a == b


_KEYWORD_COMPILERS: dict[str, Callable[[Any, Any], _Check]] = {
    "type": _compile_type,
    "additionalProperties": _compile_additional,
    "items": _compile_items,
    "anyOf": _compile_any_of,
    "oneOf": _compile_one_of,
    "enum": _compile_enum,
    "required": _compile_required,
    "minimum": _compile_minimum,
    "maximum": _compile_maximum,
    "pattern": _compile_pattern,
    "uniqueItems": _compile_unique,
}
