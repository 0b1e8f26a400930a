"""Which files, which directory, which project name."""

from __future__ import annotations

from pathlib import Path

import pytest

from compose.errors import InvalidProjectError, ProjectNotFoundError
from compose.loader import discovery


def touch(path: Path, text: str = "services: {}\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_default_file_found_in_a_parent_with_its_override(tmp_path):
    touch(tmp_path / "compose.yaml")
    touch(tmp_path / "compose.override.yml")
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    assert discovery.find_default_files(deep) == [
        tmp_path / "compose.yaml",
        tmp_path / "compose.override.yml",
    ]


def test_preference_order_and_warning(tmp_path):
    touch(tmp_path / "docker-compose.yml")
    touch(tmp_path / "compose.yml")
    warnings: list[str] = []
    assert discovery.find_default_files(tmp_path, warnings.append) == [tmp_path / "compose.yml"]
    assert "Found multiple config files" in warnings[0]


def test_docker_compose_override_matches_its_base(tmp_path):
    touch(tmp_path / "docker-compose.yaml")
    touch(tmp_path / "docker-compose.override.yaml")
    touch(tmp_path / "compose.override.yaml")  # belongs to compose.yaml, which is absent
    assert discovery.find_default_files(tmp_path) == [
        tmp_path / "docker-compose.yaml",
        tmp_path / "docker-compose.override.yaml",
    ]


def test_nothing_found(tmp_path):
    with pytest.raises(ProjectNotFoundError) as info:
        discovery.find_default_files(tmp_path)
    assert "no configuration file provided" in str(info.value)


def test_compose_file_variable_with_separator(tmp_path):
    env = {"COMPOSE_FILE": "a.yaml;sub/b.yaml", "COMPOSE_PATH_SEPARATOR": ";"}
    assert discovery.files_from_environment(env, tmp_path) == [
        str(tmp_path / "a.yaml"),
        str(tmp_path / "sub/b.yaml"),
    ]
    assert discovery.files_from_environment({}, tmp_path) is None


def test_file_arguments_must_exist(tmp_path):
    with pytest.raises(ProjectNotFoundError) as info:
        discovery.resolve_file_arguments(["missing.yaml"], tmp_path)
    assert "missing.yaml: no such file" in str(info.value)
    touch(tmp_path / "x" / "compose.yaml")
    assert discovery.resolve_file_arguments(["x", "-"], tmp_path) == [
        str(tmp_path / "x" / "compose.yaml"),
        "-",
    ]


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [("My App", "myapp"), ("_under-score_", "under-score_"), ("web.site", "website"), ("Ünïcode1", "ncode1")],
)
def test_normalize_project_name(raw, normalized):
    assert discovery.normalize_project_name(raw) == normalized


def test_name_precedence(tmp_path):
    work = tmp_path / "My Project"
    env = {"COMPOSE_PROJECT_NAME": "fromenv"}
    assert (
        discovery.choose_project_name(flag="flag", environ=env, from_file="file", working_dir=work) == "flag"
    )
    assert (
        discovery.choose_project_name(flag=None, environ=env, from_file="file", working_dir=work) == "fromenv"
    )
    assert discovery.choose_project_name(flag=None, environ={}, from_file="File", working_dir=work) == "file"
    assert (
        discovery.choose_project_name(flag=None, environ={}, from_file=None, working_dir=work) == "myproject"
    )


def test_explicit_names_must_already_be_valid(tmp_path):
    with pytest.raises(InvalidProjectError) as info:
        discovery.choose_project_name(flag="My_App", environ={}, from_file=None, working_dir=tmp_path)
    assert "invalid project name 'My_App'" in str(info.value)
    with pytest.raises(InvalidProjectError):
        discovery.choose_project_name(
            flag=None, environ={"COMPOSE_PROJECT_NAME": "-x"}, from_file=None, working_dir=tmp_path
        )
    with pytest.raises(InvalidProjectError) as info:
        discovery.choose_project_name(flag=None, environ={}, from_file="!!!", working_dir=tmp_path)
    assert "nothing is left" in str(info.value)
