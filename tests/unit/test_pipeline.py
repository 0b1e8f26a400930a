"""The stage order and the bookkeeping between stages: files, environment, names, include, positions."""

from __future__ import annotations

from pathlib import Path

import pytest

from compose.errors import IncludeError, InterpolationError, SchemaError
from compose.loader.pipeline import LoadSettings, ProjectOptions, load_project


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def load(directory: Path, environ: dict | None = None, **options):
    return load_project(ProjectOptions(cwd=str(directory), environ=environ or {}, **options))


def test_dotenv_can_name_the_files(tmp_path):
    write(tmp_path / ".env", "COMPOSE_FILE=base.yaml:extra.yaml\nTAG=1.2\n")
    write(tmp_path / "base.yaml", "services:\n  app:\n    image: app:${TAG}\n")
    write(tmp_path / "extra.yaml", "services:\n  app:\n    environment: [MODE=prod]\n")
    project = load(tmp_path)
    assert project.files == [str(tmp_path / "base.yaml"), str(tmp_path / "extra.yaml")]
    assert project.data["services"]["app"]["image"] == "app:1.2"
    assert project.data["services"]["app"]["environment"] == {"MODE": "prod"}


def test_process_environment_beats_dotenv_and_dotenv_can_be_disabled(tmp_path):
    write(tmp_path / ".env", "TAG=from-dotenv\n")
    write(tmp_path / "compose.yaml", "services:\n  app:\n    image: app:${TAG:-none}\n")
    assert load(tmp_path).data["services"]["app"]["image"] == "app:from-dotenv"
    assert load(tmp_path, {"TAG": "shell"}).data["services"]["app"]["image"] == "app:shell"
    disabled = load(tmp_path, {"COMPOSE_DISABLE_ENV_FILE": "true"})
    assert disabled.data["services"]["app"]["image"] == "app:none"


def test_project_name_from_dotenv_and_interpolated_name(tmp_path):
    write(tmp_path / "compose.yaml", "name: shop-${STAGE:-dev}\nservices:\n  app:\n    image: a\n")
    assert load(tmp_path).name == "shop-dev"
    write(tmp_path / ".env", "COMPOSE_PROJECT_NAME=fromenv\n")
    project = load(tmp_path)
    assert project.name == "fromenv"
    assert project.data["networks"]["default"]["name"] == "fromenv_default"
    assert project.environment["COMPOSE_PROJECT_NAME"] == "fromenv"


def test_project_directory_flag_moves_relative_paths_and_dotenv(tmp_path):
    write(tmp_path / "files" / "compose.yaml", "services:\n  app:\n    build: ./src\n    image: ${IMG}\n")
    write(tmp_path / "root" / ".env", "IMG=from-root\n")
    project = load(tmp_path, files=["files/compose.yaml"], project_directory="root")
    assert project.working_dir == str(tmp_path / "root")
    assert project.data["services"]["app"]["build"]["context"] == str(tmp_path / "root" / "src")
    assert project.data["services"]["app"]["image"] == "from-root"


def test_several_documents_in_one_file_merge_in_order(tmp_path):
    write(tmp_path / "compose.yaml", "services:\n  a:\n    image: x\n---\nservices:\n  a:\n    image: y\n")
    assert load(tmp_path).data["services"]["a"]["image"] == "y"


def test_errors_in_an_override_point_at_the_override(tmp_path):
    write(tmp_path / "compose.yaml", "services:\n  web:\n    image: nginx\n")
    write(tmp_path / "compose.override.yaml", "services:\n  web:\n    ports:\n      - ${PORT:?give a port}\n")
    with pytest.raises(InterpolationError) as info:
        load(tmp_path)
    assert str(info.value).startswith(f"{tmp_path / 'compose.override.yaml'}:4:9: services.web.ports[0]:")


def test_override_fragments_are_completed_by_the_merge(tmp_path):
    write(
        tmp_path / "compose.yaml",
        "services:\n  web:\n    image: nginx\n    depends_on:\n      db:\n"
        "        condition: service_healthy\n  db:\n    image: pg\n",
    )
    write(
        tmp_path / "compose.override.yaml",
        "services:\n  web:\n    depends_on:\n      db:\n        restart: true\n",
    )
    deps = load(tmp_path).data["services"]["web"]["depends_on"]
    assert deps == {"db": {"condition": "service_healthy", "required": True, "restart": True}}
    write(
        tmp_path / "compose.yaml",
        "services:\n  web:\n    image: nginx\n    depends_on:\n      db:\n"
        "        restart: true\n  db:\n    image: pg\n",
    )
    with pytest.raises(SchemaError) as info:
        load(tmp_path)
    assert "condition" in str(info.value)


def test_include_adds_resources_with_their_own_directory_and_env(tmp_path):
    write(
        tmp_path / "compose.yaml",
        "include:\n  - path: db/compose.yaml\n    env_file: db/db.env\n"
        "services:\n  web:\n    image: nginx\n    depends_on: [db]\n",
    )
    write(
        tmp_path / "db" / "compose.yaml",
        "services:\n  db:\n    image: postgres:${PG}\n"
        "    volumes: [./data:/var/lib/postgresql/data, pg:/backup]\nvolumes:\n  pg: {}\n",
    )
    write(tmp_path / "db" / "db.env", "PG=16\n")
    project = load(tmp_path)
    db = project.data["services"]["db"]
    assert db["image"] == "postgres:16"
    assert db["volumes"][0]["source"] == str(tmp_path / "db" / "data")
    assert project.data["volumes"]["pg"]["name"] == f"{tmp_path.name.lower()}_pg"
    # the including project's environment wins over the include's env_file
    assert load(tmp_path, {"PG": "17"}).data["services"]["db"]["image"] == "postgres:17"


def test_include_conflicts_and_identical_duplicates(tmp_path):
    write(tmp_path / "inc.yaml", "services:\n  db:\n    image: postgres\n")
    write(tmp_path / "compose.yaml", "include: [inc.yaml]\nservices:\n  db:\n    image: postgres\n")
    assert load(tmp_path).data["services"]["db"]["image"] == "postgres"
    write(tmp_path / "compose.yaml", "include: [inc.yaml]\nservices:\n  db:\n    image: mysql\n")
    with pytest.raises(IncludeError) as info:
        load(tmp_path)
    assert f"{tmp_path / 'compose.yaml'}:3:3: services.db: conflicts with imported resource" in str(
        info.value
    )


def test_include_cycle_and_missing_file(tmp_path):
    write(tmp_path / "compose.yaml", "include: [a.yaml]\nservices: {}\n")
    write(tmp_path / "a.yaml", "include: [compose.yaml]\nservices:\n  a:\n    image: x\n")
    with pytest.raises(IncludeError) as info:
        load(tmp_path)
    assert "include cycle" in str(info.value)
    write(tmp_path / "compose.yaml", "include: [missing.yaml]\nservices: {}\n")
    with pytest.raises(IncludeError) as info:
        load(tmp_path)
    assert str(info.value).startswith(f"{tmp_path / 'compose.yaml'}:1:11: include[0]: included file")


def test_settings_switch_stages_off(tmp_path):
    write(tmp_path / "compose.yaml", "services:\n  app:\n    image: a:${TAG}\n    build: ./src\n")
    raw = load_project(
        ProjectOptions(cwd=str(tmp_path), environ={}),
        LoadSettings(interpolate=False, normalize=False, resolve_paths=False),
    ).data
    assert raw["services"]["app"] == {"image": "a:${TAG}", "build": {"context": "./src"}}
    assert "networks" not in raw
