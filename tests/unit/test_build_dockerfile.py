"""Dockerfile syntax: directives, comments, continuations, heredocs, flags, forms and line numbers."""

from __future__ import annotations

import pytest

from engine.build.dockerfile import DockerfileError, Heredoc, parse


def test_instructions_with_lines_forms_and_flags() -> None:
    df = parse(
        "# syntax=docker/dockerfile:1\n"
        "FROM debian:bookworm AS build\n"
        "\n"
        "# a comment\n"
        "run apt-get update && \\\n"
        "    # dropped comment inside\n"
        "    apt-get install -y gcc\n"
        "COPY --from=build --chmod=755 /out/app /usr/local/bin/\n"
        'CMD ["app", "--serve"]\n'
        "ENTRYPOINT app --serve\n",
        "ctx/Dockerfile",
    )
    assert df.directives == (("syntax", "docker/dockerfile:1"),)
    assert [(i.keyword, i.line) for i in df.instructions] == [
        ("FROM", 2),
        ("RUN", 5),
        ("COPY", 8),
        ("CMD", 9),
        ("ENTRYPOINT", 10),
    ]
    run = df.instructions[1]
    assert run.args == "apt-get update &&     apt-get install -y gcc" and run.exec_form is None
    copy = df.instructions[2]
    assert copy.flags == (("from", "build"), ("chmod", "755")) and copy.args == "/out/app /usr/local/bin/"
    assert copy.flag("from") == "build" and copy.flag("chown") is None
    assert df.instructions[3].exec_form == ("app", "--serve")
    assert df.instructions[4].exec_form is None


def test_escape_directive_backtick() -> None:
    df = parse("# escape=`\nFROM windows\nRUN dir c:\\ `\n  && echo done\n")
    assert df.escape == "`"
    assert df.instructions[1].args == "dir c:\\   && echo done"


def test_directives_only_at_the_top_and_once() -> None:
    df = parse("FROM x\n# escape=`\nRUN a \\\n b\n")
    assert df.escape == "\\" and df.instructions[1].args == "a  b"
    assert parse("# unknown=1\n# escape=`\nFROM x\n").escape == "\\"  # unknown directive ends them
    with pytest.raises(DockerfileError, match="only one escape") as err:
        parse("# escape=`\n# escape=\\\nFROM x\n", "Dockerfile")
    assert err.value.subject == "Dockerfile:2"


def test_heredocs() -> None:
    df = parse(
        "FROM x\n"
        "RUN <<EOF\n"
        "set -e\n"
        "echo $HOME\n"
        "EOF\n"
        'COPY <<-"END" /etc/conf\n'
        "\tkey=$value\n"
        "\tEND\n"
        "RUN <<A cat - && cat /dev/fd/3 3<<B\n"
        "one\n"
        "A\n"
        "two\n"
        "B\n"
        "USER nobody\n"
    )
    run, copy, both, user = df.instructions[1:]
    assert run.heredocs == (Heredoc("EOF", "set -e\necho $HOME\n"),)
    assert copy.heredocs == (Heredoc("END", "key=$value\n", expand=False, strip_tabs=True),)
    assert [h.content for h in both.heredocs] == ["one\n", "two\n"]
    assert user.keyword == "USER" and user.line == 14


def test_errors_name_file_and_line() -> None:
    with pytest.raises(DockerfileError, match="unknown instruction: FORM") as err:
        parse("FROM x\n\nFORM y\n", "sub/Dockerfile")
    assert err.value.subject == "sub/Dockerfile:3"
    with pytest.raises(DockerfileError, match="unterminated heredoc EOF"):
        parse("FROM x\nRUN <<EOF\necho\n")


def test_continuation_at_end_of_file_and_crlf() -> None:
    df = parse("FROM x\r\nRUN a \\\r\n")
    assert df.instructions[1].args == "a"


def test_bom_and_tabs() -> None:
    df = parse("\ufeffFROM\tdebian\nLABEL a=b\n")
    assert df.instructions[0].keyword == "FROM" and df.instructions[0].args == "debian"
