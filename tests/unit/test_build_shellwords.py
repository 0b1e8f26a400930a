"""BuildKit's word processing: expansion, quotes, escapes and word splitting."""

from __future__ import annotations

import pytest

from engine.build.shellwords import ExpansionError, expand, split

ENV = {"A": "1", "EMPTY": "", "SPACED": "x y", "NAME": "web"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$A", "1"),
        ("${A}b", "1b"),
        ("$Ab", ""),  # the name is `Ab`, unset
        ("$UNSET-x", "-x"),
        ("${UNSET:-dflt}", "dflt"),
        ("${EMPTY:-dflt}", "dflt"),
        ("${EMPTY-dflt}", ""),
        ("${A:+alt}", "alt"),
        ("${EMPTY:+alt}", ""),
        ("${EMPTY+alt}", "alt"),
        ("${UNSET:-${A}}", "1"),
        ("${UNSET:-a b}", "a b"),
        ("'$A'", "$A"),
        ('"$A"', "1"),
        ('"a\\"b"', 'a"b'),
        ('"a\\nb"', "a\\nb"),  # only ", $, \\ and newline are escaped inside double quotes
        ("a\\ b", "a b"),
        ("\\$A", "$A"),
        ("$", "$"),
        ("a$ b", "a$ b"),
        ("100%", "100%"),
        ("$1x", "x"),
    ],
)
def test_expand(text: str, expected: str) -> None:
    assert expand(text, ENV) == expected


def test_backtick_escape() -> None:
    assert expand("C:`\\dir `$A", ENV, escape="`") == "C:\\dir $A"


def test_split_on_unquoted_whitespace_including_expansions() -> None:
    assert split("a  b", ENV) == ["a", "b"]
    assert split("$SPACED z", ENV) == ["x", "y", "z"]
    assert split('"$SPACED" z', ENV) == ["x y", "z"]
    assert split("'a b' \"\" c", ENV) == ["a b", "", "c"]
    assert split("${UNSET:-p q}", ENV) == ["p", "q"]
    assert split("a\\ b c", ENV) == ["a b", "c"]
    assert split("", ENV) == []


@pytest.mark.parametrize("text", ["'open", '"open', "${A", "${}", "${A%x}"])
def test_malformed(text: str) -> None:
    with pytest.raises(ExpansionError):
        expand(text, ENV)


def test_required_variable() -> None:
    assert expand("${A:?must be set}", ENV) == "1"
    with pytest.raises(ExpansionError, match="must be set"):
        expand("${UNSET:?must be set}", ENV)
    with pytest.raises(ExpansionError):
        expand("${EMPTY:?}", ENV)
    assert expand("${EMPTY?}", ENV) == ""


def test_heredoc_bodies_expand_variables_and_keep_quotes() -> None:
    from engine.build.shellwords import expand_heredoc

    assert expand_heredoc("a=$A \"q\" 's' ${UNSET:-d}\n", ENV) == "a=1 \"q\" 's' d\n"
    assert expand_heredoc("\\$A \\\\ \\n", ENV) == "$A \\ \\n"  # only $, the escape and a newline
    assert expand_heredoc("line \\\nnext", ENV) == "line next"
