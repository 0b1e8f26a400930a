"""`.env` parsing (compose-go dotenv dialect) and the project interpolation environment."""

from __future__ import annotations

import pytest

from compose.errors import InvalidProjectError, Location, ProjectNotFoundError
from compose.loader.dotenv import build_project_environment, parse_dotenv, read_env_file

APP_ENV = """\
# Application settings
export APP_NAME=shop
APP_PORT=8080
  INDENTED = spaced out\x20\x20\x20
DB_URL=postgres://db:5432/shop?sslmode=disable
COLOR=#ff0000
NOTE=keep # this is a comment
TAB_NOTE=text\t# a tab before # is not a comment start
HASH_IN_SINGLE='a # b'
HASH_IN_DOUBLE="a # b"
EMPTY=
EMPTY_QUOTED=""
YAML_STYLE: colon value
dotted.key-name[0]=ok
"""


def parse(text: str, lookup=None, warn=None) -> dict[str, str]:
    kwargs = {"lookup": lookup} if lookup is not None else {}
    return parse_dotenv(text, filename="/proj/.env", warn=warn, **kwargs)


def test_realistic_file() -> None:
    assert parse(APP_ENV) == {
        "APP_NAME": "shop",
        "APP_PORT": "8080",
        "INDENTED": "spaced out",
        "DB_URL": "postgres://db:5432/shop?sslmode=disable",
        "COLOR": "#ff0000",
        "NOTE": "keep",
        "TAB_NOTE": "text\t# a tab before",
        "HASH_IN_SINGLE": "a # b",
        "HASH_IN_DOUBLE": "a # b",
        "EMPTY": "",
        "EMPTY_QUOTED": "",
        "YAML_STYLE": "colon value",
        "dotted.key-name[0]": "ok",
    }


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("A=1", {"A": "1"}),
        ("A=1\r\nB=2\r\n", {"A": "1", "B": "2"}),
        ("export A=1", {"A": "1"}),
        ("export\tA=1", {"A": "1"}),
        ("export=1", {"export": "1"}),
        ("exported=1", {"exported": "1"}),
        ("A = 1", {"A": "1"}),
        ("A=1\nA=2", {"A": "2"}),
        ("A=a=b=c", {"A": "a=b=c"}),
        ("A= #not a comment", {"A": "#not a comment"}),
        ("A=x#y", {"A": "x#y"}),
        ("\n\n# only comments\n   # indented comment\n", {}),
        ("", {}),
        ("\ufeffA=1", {"A": "1"}),
        ("1NUM=ok", {"1NUM": "ok"}),
        ("ÜBER=straße", {"ÜBER": "straße"}),
    ],
)
def test_simple_forms(text: str, expected: dict[str, str]) -> None:
    assert parse(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("A='1'", "1"),
        ("A=''", ""),
        ("A='\\n'", "\\n"),  # single quotes are literal
        ("A='$HOME ${X:-y}'", "$HOME ${X:-y}"),
        ("A='it\\'s'", "it's"),
        ('A="1"', "1"),
        ('A="\\n"', "\n"),
        ('A="tab\\there"', "tab\there"),
        ('A="cr\\rlf"', "cr\rlf"),
        ('A="back\\\\slash"', "back\\slash"),
        ('A="say \\"hi\\""', 'say "hi"'),
        ('A="bell\\a"', "bell\a"),
        ('A="\\c stays"', "\\c stays"),
        ('A="\\x41 stays"', "\\x41 stays"),
        ('A="octal \\0123"', "octal S"),
        ('A="short octal \\012"', "short octal \\012"),
        ('A="price \\$5"', "price $5"),
        ('A="foo\\${BAR}"', "foo${BAR}"),
        ("A=\"echo 'asd'\"", "echo 'asd'"),
        ('A="x" # trailing comment', "x"),
        ("A='x'   ", "x"),
    ],
)
def test_quoted_values(text: str, expected: str) -> None:
    assert parse(text) == {"A": expected}


def test_multiline_quoted_values_and_line_tracking() -> None:
    text = "CERT='-----BEGIN-----\nabc\n-----END-----'\nMSG=\"line1\nline2\\nline3\"\nAFTER=1\n"
    assert parse(text) == {
        "CERT": "-----BEGIN-----\nabc\n-----END-----",
        "MSG": "line1\nline2\nline3",
        "AFTER": "1",
    }
    with pytest.raises(InvalidProjectError) as info:
        parse(text + "BAD KEY=1\n")
    assert info.value.location == Location("/proj/.env", 7)


def test_text_after_closing_quote_starts_a_new_statement() -> None:
    # compose-go quirk: whatever follows the closing quote is parsed again, here as a bare key
    assert parse('A="x"B=2') == {"A": "x", "B": "2"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("FOO=test\nBAR=$FOO", {"FOO": "test", "BAR": "test"}),
        ("FOO=test\nBAR=${FOO}bar", {"FOO": "test", "BAR": "testbar"}),
        ('FOO=test\nBAR="quote $FOO"', {"FOO": "test", "BAR": "quote test"}),
        ("FOO=test\nBAR='quote $FOO'", {"FOO": "test", "BAR": "quote $FOO"}),
        ("BAR=${UNDEFINED:-fallback}", {"BAR": "fallback"}),
        ("A=\nB=${A-unset}|${A:-empty}", {"A": "", "B": "|empty"}),
        ("A=x\nB=${A:+alt}", {"A": "x", "B": "alt"}),
        ("BAR=$$literal", {"BAR": "$literal"}),
        ("BAR=$FOO\nFOO=late", {"BAR": "", "FOO": "late"}),  # only earlier keys are visible
        (
            "HOST=db\nPORT=5432\nURL=postgres://${HOST}:${PORT}/app",
            {"HOST": "db", "PORT": "5432", "URL": "postgres://db:5432/app"},
        ),
    ],
)
def test_expansion_with_earlier_keys(text: str, expected: dict[str, str]) -> None:
    assert parse(text) == expected


def test_expansion_prefers_lookup_over_earlier_keys() -> None:
    # compose-go asks the lookup (process environment) first, then the file's own earlier keys
    lookup = {"USER": "from-shell"}.get
    assert parse("USER=from-file\nGREETING=hi $USER", lookup=lookup) == {
        "USER": "from-file",
        "GREETING": "hi from-shell",
    }
    assert parse("HOME_DIR=${HOME:-/root}", lookup={"HOME": "/home/me"}.get) == {"HOME_DIR": "/home/me"}


def test_unset_reference_warns() -> None:
    warnings: list[str] = []
    assert parse("A=${NOPE}", warn=warnings.append) == {"A": ""}
    assert warnings == ['The "NOPE" variable is not set. Defaulting to a blank string.']


def test_bare_key_inherits_or_is_omitted() -> None:
    lookup = {"SHELL_VAR": "from shell", "EMPTY_VAR": ""}.get
    text = "SHELL_VAR\nEMPTY_VAR\nUNSET_VAR\nexport ALSO_UNSET\nLAST=1\nSHELL_VAR"  # no final newline
    assert parse(text, lookup=lookup) == {
        "SHELL_VAR": "from shell",
        "EMPTY_VAR": "",
        "LAST": "1",
    }


def test_value_set_in_file_is_not_replaced_by_lookup() -> None:
    # precedence between shell and file is build_project_environment's job, not the parser's
    assert parse("A=file", lookup={"A": "shell"}.get) == {"A": "file"}


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("A=1\nMY KEY=2\n", 2, "key cannot contain a space"),
        ("A=1\n\n# c\nB$=2\n", 4, 'unexpected character "$" in variable name "B$=2"'),
        ("GOOD=1\n  bad/key=1", 2, 'unexpected character "/" in variable name "bad/key=1"'),
        ("A=1\nB='never closed\nC=3\n", 2, "unterminated quoted value 'never closed"),
        ('A="never closed', 1, 'unterminated quoted value "never closed'),
        (
            "A=1\nB=${}\n",
            2,
            "invalid interpolation format '${}': you may need to escape any $ with another $",
        ),
        ("A=1\nB=${SECRET:?set SECRET}\n", 2, "required variable SECRET is missing a value: set SECRET"),
    ],
)
def test_errors_name_file_and_line(text: str, line: int, message: str) -> None:
    with pytest.raises(InvalidProjectError) as info:
        parse(text)
    assert info.value.location == Location("/proj/.env", line)
    assert info.value.message == message


# --------------------------------------------------------------------------------------------------
# Files and the project environment
# --------------------------------------------------------------------------------------------------


def test_read_env_file(tmp_path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_bytes(b"\xef\xbb\xbfNAME=caf\xc3\xa9\nRAW=\xff\n")
    values = read_env_file(str(env_file))
    assert values["NAME"] == "caf\u00e9"
    assert values["RAW"].encode("utf-8", "surrogateescape") == b"\xff"


def test_read_env_file_missing(tmp_path) -> None:
    missing = str(tmp_path / "nope.env")
    with pytest.raises(ProjectNotFoundError) as info:
        read_env_file(missing)
    assert info.value.message == f"env file {missing} not found"


def test_read_env_file_directory(tmp_path) -> None:
    with pytest.raises(InvalidProjectError, match="is a directory"):
        read_env_file(str(tmp_path))


def test_read_env_file_error_location(tmp_path) -> None:
    env_file = tmp_path / "bad.env"
    env_file.write_text("OK=1\nNOT OK=2\n")
    with pytest.raises(InvalidProjectError) as info:
        read_env_file(str(env_file))
    assert info.value.location == Location(str(env_file), 2)


def test_build_project_environment_precedence(tmp_path) -> None:
    base = tmp_path / ".env"
    base.write_text("TAG=1.0\nREGISTRY=docker.io\nIMAGE=${REGISTRY}/app:${TAG}\nFROM_SHELL=file\n")
    override = tmp_path / ".env.local"
    override.write_text("TAG=2.0\nFULL=${IMAGE}+${TAG}\nINHERITED_FROM_BASE\nSHELL_REF=${HOME}\n")
    environ = {"HOME": "/home/me", "FROM_SHELL": "shell", "PATH": "/usr/bin"}

    env = build_project_environment(environ, [str(base), str(override)])

    assert env["TAG"] == "2.0"  # later file wins
    assert env["IMAGE"] == "docker.io/app:1.0"
    assert env["FULL"] == "docker.io/app:1.0+1.0"  # earlier files answer before this file's own keys
    assert "INHERITED_FROM_BASE" not in env  # a bare key nobody defines is left out
    assert env["SHELL_REF"] == "/home/me"
    assert env["FROM_SHELL"] == "shell"  # the process environment wins over every file
    assert env["PATH"] == "/usr/bin"
    assert environ == {"HOME": "/home/me", "FROM_SHELL": "shell", "PATH": "/usr/bin"}


def test_build_project_environment_bare_key_sees_earlier_file(tmp_path) -> None:
    first = tmp_path / "a.env"
    first.write_text("SHARED=from-a\n")
    second = tmp_path / "b.env"
    second.write_text("SHARED\nONLY_B=b\n")
    assert build_project_environment({}, [str(first), str(second)]) == {"SHARED": "from-a", "ONLY_B": "b"}


def test_build_project_environment_shell_feeds_expansion(tmp_path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("TAG=file\nIMAGE=app:${TAG}\n")
    env = build_project_environment({"TAG": "shell"}, [str(env_file)])
    assert env == {"TAG": "shell", "IMAGE": "app:shell"}


def test_build_project_environment_without_files() -> None:
    assert build_project_environment({"A": "1"}, []) == {"A": "1"}


def test_build_project_environment_missing_file(tmp_path) -> None:
    with pytest.raises(ProjectNotFoundError):
        build_project_environment({}, [str(tmp_path / "missing.env")])
