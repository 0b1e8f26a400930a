"""The YAML stage: YAML 1.2 scalars, merge keys, duplicate keys, Compose tags, positions."""

from __future__ import annotations

import math

import pytest

from compose.errors import YamlError
from compose.loader.yamlparse import parse_yaml, resolve_plain_scalar


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("22:22", "22:22"),  # YAML 1.1 would read 1342 (sexagesimal)
        ("yes", "yes"),
        ("on", "on"),
        ("true", True),
        ("False", False),
        ("~", None),
        ("null", None),
        ("", None),
        ("8080", 8080),
        ("-3", -3),
        ("0755", 493),
        ("0o17", 15),
        ("0x1F", 31),
        ("1_000", 1000),
        ("1.5", 1.5),
        ("1e3", 1000.0),
        ("2024-01-01", "2024-01-01"),
        ("0.5s", "0.5s"),
        ("1.2.3", "1.2.3"),
        ("127.0.0.1:80:80", "127.0.0.1:80:80"),
        ("-", "-"),
        (".", "."),
    ],
)
def test_plain_scalars_follow_yaml_1_2(text, value):
    assert resolve_plain_scalar(text) == value if text else resolve_plain_scalar(text) is None


def test_special_floats():
    assert resolve_plain_scalar(".inf") == math.inf
    assert math.isnan(resolve_plain_scalar(".nan"))


def test_quoted_scalars_stay_strings():
    (doc,) = parse_yaml("a: \"8080\"\nb: 'true'\nc: 8080\n", "f.yaml")
    assert doc.data == {"a": "8080", "b": "true", "c": 8080}


def test_merge_keys_and_explicit_keys_win():
    text = (
        "x-base: &base\n  image: nginx\n  restart: always\n"
        "x-more: &more\n  restart: 'no'\n  init: true\n"
        "services:\n  web:\n    <<: [*base, *more]\n    image: httpd\n"
    )
    (doc,) = parse_yaml(text, "compose.yaml")
    assert doc.data["services"]["web"] == {"image": "httpd", "restart": "always", "init": True}
    # the explicit key keeps its own position, merged keys point at the anchor
    assert doc.marks[("services", "web", "image")] == (10, 5)
    assert doc.marks[("services", "web", "restart")] == (3, 3)


def test_merge_key_needs_a_mapping():
    with pytest.raises(YamlError) as info:
        parse_yaml("a: &a [1]\nb:\n  <<: *a\n", "f.yaml")
    assert "merge key" in str(info.value)


def test_duplicate_keys_are_errors_with_both_lines():
    with pytest.raises(YamlError) as info:
        parse_yaml("services:\n  web:\n    image: a\n    image: b\n", "compose.yaml")
    assert str(info.value) == (
        "compose.yaml:4:5: services.web.image: duplicate key 'image' (first defined at line 3)"
    )


def test_syntax_error_position():
    with pytest.raises(YamlError) as info:
        parse_yaml("services:\n  web: [a\n", "compose.yaml")
    assert str(info.value).startswith("compose.yaml:3:1:")


def test_reset_and_override_tags():
    text = "services:\n  web:\n    ports: !reset []\n    command: !override [a, b]\n"
    (doc,) = parse_yaml(text, "o.yaml")
    assert doc.data == {"services": {"web": {"command": ["a", "b"]}}}
    assert doc.tags == {("services", "web", "ports"): "reset", ("services", "web", "command"): "override"}


def test_unknown_tag_is_an_error():
    with pytest.raises(YamlError) as info:
        parse_yaml("services:\n  web:\n    image: !secret x\n", "compose.yaml")
    assert "services.web.image" in str(info.value)
    assert "unknown tag '!secret'" in str(info.value)


def test_alias_bomb_is_stopped(monkeypatch):
    import compose.loader.yamlparse as module

    monkeypatch.setattr(module, "MAX_NODES", 10_000)
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join(f'*a{i - 1}' for _ in range(10))}]" for i in range(1, 8)]
    with pytest.raises(YamlError) as info:
        parse_yaml("\n".join(lines) + "\n", "bomb.yaml")
    assert "too many nodes" in str(info.value)


def test_multiple_documents_and_empty_file():
    docs = parse_yaml("services: {a: {image: x}}\n---\nservices: {b: {image: y}}\n", "f.yaml")
    assert [d.data for d in docs] == [
        {"services": {"a": {"image": "x"}}},
        {"services": {"b": {"image": "y"}}},
    ]
    (empty,) = parse_yaml("", "empty.yaml")
    assert empty.data is None


def test_locate_falls_back_to_nearest_ancestor():
    (doc,) = parse_yaml("services:\n  web:\n    ports:\n      - 80:80\n", "compose.yaml")
    assert str(doc.locate(("services", "web", "ports", 0))) == "compose.yaml:4:9"
    assert str(doc.locate(("services", "web", "ports", 0, "target"))) == "compose.yaml:4:9"
    assert str(doc.locate(("services", "web", "image"))) == "compose.yaml:2:3"


def test_keys_are_strings():
    (doc,) = parse_yaml("labels:\n  8080: a\n  true: b\n", "f.yaml")
    assert doc.data == {"labels": {"8080": "a", "true": "b"}}


def test_reset_list_item_is_dropped():
    (doc,) = parse_yaml('ports:\n  - !reset "80:80"\n  - "443:443"\n', "o.yaml")
    assert doc.data == {"ports": ["443:443"]}
    assert doc.marks[("ports", 0)] == (3, 5)
