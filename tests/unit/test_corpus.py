"""The corpus in tests/corpus: every good project prints its expected canonical model, every bad one fails
with the expected message (see tests/corpus/README.md for the layout)."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import pytest
from corpus_cases import BAD, GOOD, expand, expected_output

from compose.cli.main import main


def run_case(case: Path, monkeypatch, capsys, extra: list[str]) -> tuple[int, str, str]:
    """Run `pycompose <args> config` in the case folder with only the case's environment added."""
    for key in list(os.environ):
        if key.startswith("COMPOSE_") or key.startswith("DOCKER_"):
            monkeypatch.delenv(key)
    env_file = case / "env"
    if env_file.is_file():
        for line in env_file.read_text().splitlines():
            if line.strip() and not line.startswith("#"):
                key, _, value = line.partition("=")
                monkeypatch.setenv(key.strip(), value)
    args_file = case / "args"
    args = shlex.split(args_file.read_text()) if args_file.is_file() else []
    if "config" not in args:
        args.append("config")
    monkeypatch.chdir(case)
    code = main([*args, *extra])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_corpus_is_big_enough():
    assert len(GOOD) >= 40
    assert len(BAD) >= 25


@pytest.mark.parametrize("case", GOOD, ids=lambda p: p.name)
def test_good_project_prints_expected_model(case, monkeypatch, capsys):
    code, out, err = run_case(case, monkeypatch, capsys, [])
    assert code == 0, err
    assert out == expected_output(case)


@pytest.mark.parametrize("case", GOOD, ids=lambda p: p.name)
def test_good_project_round_trips(case, monkeypatch, capsys, tmp_path):
    """What `config` prints loads again to the same model (`config -q` passes on it, same output)."""
    code, first, err = run_case(case, monkeypatch, capsys, [])
    assert code == 0, err
    printed = tmp_path / "compose.yaml"
    printed.write_text(first)
    monkeypatch.chdir(tmp_path)
    case_args = shlex.split((case / "args").read_text()) if (case / "args").is_file() else []
    profiles = [arg for i, arg in enumerate(case_args) if i and case_args[i - 1] == "--profile"]
    profile_args = [part for name in profiles for part in ("--profile", name)]
    code = main([*profile_args, "-f", str(printed), "--project-directory", str(case), "config"])
    again = capsys.readouterr()
    assert code == 0, again.err
    assert again.out == first


@pytest.mark.parametrize("case", GOOD, ids=lambda p: p.name)
def test_good_project_is_quiet_with_q(case, monkeypatch, capsys):
    code, out, err = run_case(case, monkeypatch, capsys, ["-q"])
    assert (code, out) == (0, ""), err


@pytest.mark.parametrize("case", BAD, ids=lambda p: p.name)
def test_bad_project_fails_with_message(case, monkeypatch, capsys):
    code, out, err = run_case(case, monkeypatch, capsys, ["-q"])
    assert code != 0
    assert out == ""
    for line in (case / "expected_error.txt").read_text().splitlines():
        if line.strip():
            assert expand(line.strip(), case) in err
    assert "Traceback" not in err
