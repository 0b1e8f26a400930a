"""The command line: flags, subcommands, output modes and exit codes of `pycompose`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from compose.cli.main import main

STACK = """\
name: shop
services:
  web:
    image: nginx:1.25
    ports: ["8080:80"]
    depends_on: [api]
    profiles: [frontend]
  api:
    build: ./api
    environment:
      DB_URL: postgres://db/shop
      GREETING: ${GREETING:-hello}
    depends_on:
      db: {condition: service_healthy}
  db:
    image: postgres:16
    volumes: [pgdata:/var/lib/postgresql/data]
    healthcheck: {test: pg_isready, interval: 5s}
  debug:
    image: busybox
    profiles: [debug]
volumes:
  pgdata: {}
"""


@pytest.fixture
def project(tmp_path, monkeypatch):
    for key in ("COMPOSE_FILE", "COMPOSE_PROJECT_NAME", "COMPOSE_PROFILES", "GREETING"):
        monkeypatch.delenv(key, raising=False)
    (tmp_path / "compose.yaml").write_text(STACK)
    (tmp_path / "api").mkdir()
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_version(capsys):
    assert run(capsys, "version")[:2] == (0, "pycompose version v0.1.0\n")
    assert run(capsys, "version", "--short")[:2] == (0, "0.1.0\n")
    _, out, _ = run(capsys, "version", "--format", "json")
    assert json.loads(out) == {"version": "0.1.0"}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["frobnicate"], "unknown command 'frobnicate'"),
        (["--bogus", "config"], "unknown flag: --bogus"),
        (["config", "--bogus"], "unknown flag: --bogus"),
        (["config", "--format", "toml"], "invalid choice: 'toml'"),
    ],
)
def test_usage_errors(capsys, argv, message):
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert message in err
    assert out == ""


def test_planned_command_says_not_yet(capsys):
    code, _, err = run(capsys, "watch", "--no-up")
    assert code == 1
    assert "'watch' is not implemented yet" in err


def test_help(capsys):
    code, out, _ = run(capsys, "--help")
    assert code == 0 and "--project-directory" in out
    code, out, _ = run(capsys, "help", "config")
    assert code == 0 and "--no-interpolate" in out


def test_config_quiet_and_listings(project, capsys):
    assert run(capsys, "config", "-q")[:2] == (0, "")
    assert run(capsys, "config", "--services")[1] == "db\napi\n"
    assert run(capsys, "--profile", "frontend", "config", "--services")[1] == "db\napi\nweb\n"
    assert run(capsys, "config", "--volumes")[1] == "pgdata\n"
    assert run(capsys, "config", "--networks")[1] == "default\n"
    assert run(capsys, "config", "--profiles")[1] == "debug\nfrontend\n"
    assert run(capsys, "config", "--images")[1] == "shop-api\npostgres:16\n"


def test_config_hash_changes_with_the_service(project, capsys):
    code, out, _ = run(capsys, "config", "--hash", "*")
    assert code == 0
    lines = dict(line.split() for line in out.splitlines())
    assert sorted(lines) == ["api", "db"]
    assert all(len(value) == 64 for value in lines.values())
    code, out, _ = run(capsys, "config", "--hash", "db")
    assert out == f"db {lines['db']}\n"
    (project / "compose.yaml").write_text(STACK.replace("postgres:16", "postgres:17"))
    assert run(capsys, "config", "--hash", "db")[1] != out
    code, _, err = run(capsys, "config", "--hash", "nope")
    assert code == 1 and "no such service: nope" in err


def test_config_yaml_json_and_output_file(project, capsys):
    code, out, _ = run(capsys, "config")
    assert code == 0
    assert out.startswith("name: shop\nservices:\n  api:\n")
    assert "GREETING: hello" in out
    code, out, _ = run(capsys, "config", "--format", "json")
    data = json.loads(out)
    assert data["services"]["db"]["volumes"][0]["source"] == "pgdata"
    assert data["services"]["api"]["build"]["context"] == str(project / "api")
    target = project / "out.yaml"
    assert run(capsys, "config", "-o", str(target))[:2] == (0, "")
    assert target.read_text().startswith("name: shop\n")


def test_config_selected_service_pulls_dependencies(project, capsys):
    code, out, _ = run(capsys, "config", "--services", "web")
    assert (code, out) == (0, "db\napi\nweb\n")


def test_config_no_interpolate_keeps_variables(project, capsys):
    code, out, _ = run(capsys, "config", "--no-interpolate")
    assert code == 0
    assert "${GREETING:-hello}" in out


def test_project_name_flag_and_env_file(project, capsys, tmp_path):
    env = tmp_path / "custom.env"
    env.write_text("GREETING=bonjour\n")
    code, out, _ = run(capsys, "-p", "other", "--env-file", str(env), "config")
    assert code == 0
    assert out.startswith("name: other\n")
    assert "GREETING: bonjour" in out
    code, _, err = run(capsys, "-p", "Bad Name", "config")
    assert code == 1 and "invalid project name" in err


def test_stdin_file(project, capsys, monkeypatch):
    import io

    monkeypatch.setattr(sys, "stdin", io.StringIO("services:\n  one:\n    image: alpine\n"))
    code, out, _ = run(capsys, "-f", "-", "config", "--services")
    assert (code, out) == (0, "one\n")


def test_error_names_file_line_and_key(project, capsys):
    (project / "compose.yaml").write_text(
        "services:\n  web:\n    image: nginx\n    ports:\n      - 80:80:80:80\n"
    )
    code, out, err = run(capsys, "config", "-q")
    assert code == 1 and out == ""
    assert f"{project / 'compose.yaml'}:5:9: services.web.ports[0]:" in err
    assert "80:80:80:80" in err


def test_console_script_runs_as_a_process(project):
    result = subprocess.run(
        [str(Path(sys.executable).parent / "pycompose"), "config", "--services"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert (result.returncode, result.stdout) == (0, "db\napi\n")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "compose.yaml: empty compose file"),
        ("# only a comment\n", "compose.yaml: empty compose file"),
        ("- a\n- b\n", "compose.yaml:1:1: top-level object must be a mapping"),
        ("services:\n", "compose.yaml:1:1: services: must be a mapping"),
    ],
)
def test_degenerate_files_are_clear_errors(project, capsys, text, message):
    (project / "compose.yaml").write_text(text)
    code, out, err = run(capsys, "config")
    assert (code, out) == (1, "")
    assert message in err


def test_missing_files(project, capsys, tmp_path):
    code, _, err = run(capsys, "-f", "nope.yaml", "config")
    assert code == 1 and "nope.yaml: no such file or directory" in err
    (project / "compose.yaml").unlink()
    code, _, err = run(capsys, "config")
    assert code == 1 and "no configuration file provided" in err


def test_config_variables(project, capsys):
    code, out, _ = run(capsys, "config", "--variables")
    assert code == 0
    assert out.splitlines()[0].split() == ["NAME", "REQUIRED", "DEFAULT", "VALUE", "ALTERNATE", "VALUE"]
    assert out.splitlines()[1].split() == ["GREETING", "false", "hello"]
    code, out, _ = run(capsys, "config", "--variables", "--format", "json")
    assert json.loads(out) == {
        "GREETING": {"Name": "GREETING", "DefaultValue": "hello", "PresenceValue": "", "Required": False}
    }


def test_literal_dollar_is_escaped_in_output(project, capsys):
    (project / "compose.yaml").write_text("services:\n  web:\n    image: nginx\n    command: echo $$HOME\n")
    code, out, _ = run(capsys, "config", "--format", "json")
    assert code == 0 and out.endswith("}\n")
    assert json.loads(out)["services"]["web"]["command"] == ["echo", "$$HOME"]


def test_override_keeps_required_false_of_the_base(project, capsys):
    (project / "compose.yaml").write_text(
        "services:\n  web:\n    image: nginx\n    depends_on:\n"
        "      db: {condition: service_started, required: false}\n"
        "  db:\n    image: postgres\n"
    )
    (project / "compose.override.yaml").write_text(
        "services:\n  web:\n    depends_on:\n      db: {condition: service_healthy}\n"
    )
    code, out, err = run(capsys, "config", "--format", "json")
    assert code == 0, err
    assert json.loads(out)["services"]["web"]["depends_on"] == {
        "db": {"condition": "service_healthy", "required": False}
    }


def test_version_and_config_import_only_what_they_need(project):
    """Start-up time is a feature: heavy libraries stay out of commands that do not use them."""
    watched = ("jsonschema", "networkx", "httpx", "rich", "zstandard", "sqlite3", "yaml")
    code = (
        "import sys; from compose.cli.main import main; main(sys.argv[1:]); "
        f"print(' '.join(sorted({{m.split('.')[0] for m in sys.modules}} & set({watched!r}))))"
    )
    version = subprocess.run(
        [sys.executable, "-c", code, "version"], capture_output=True, text=True, check=True
    )
    assert version.stdout.splitlines()[-1] == ""
    config = subprocess.run(
        [sys.executable, "-c", code, "config", "-q"], capture_output=True, text=True, check=True, cwd=project
    )
    assert config.stdout.split() == ["yaml"]  # a valid file never needs jsonschema (compiled pre-check)
