"""environment: env_file and label_file merged, bare keys resolved (WithServicesEnvironmentResolved)."""

from __future__ import annotations

import copy

import pytest

from compose.errors import ComposeError, Location, ProjectNotFoundError
from compose.loader.environment import read_raw_env_file, resolve_service_environment


def env_file(path, required=True, fmt=None) -> dict:
    entry = {"path": str(path), "required": required}
    if fmt:
        entry["format"] = fmt
    return entry


def project(**service) -> dict:
    return {"name": "shop", "services": {"web": {"image": "nginx", **service}}}


def web(data: dict) -> dict:
    return data["services"]["web"]


def test_bare_keys_resolved_from_project_env_or_kept_null():
    data = project(environment={"HOME_DIR": None, "UNSET": None, "SET": "x", "EMPTY": ""})
    out = resolve_service_environment(data, {"HOME_DIR": "/home/ann", "SET": "shell"})
    assert web(out)["environment"] == {"HOME_DIR": "/home/ann", "UNSET": None, "SET": "x", "EMPTY": ""}


def test_env_files_in_order_later_wins_environment_wins_over_all(tmp_path):
    (tmp_path / "a.env").write_text("A=from_a\nSHARED=a\nOVERRIDDEN=a\n")
    (tmp_path / "b.env").write_text("B=from_b\nSHARED=b\n")
    data = project(
        env_file=[env_file(tmp_path / "a.env"), env_file(tmp_path / "b.env")],
        environment={"OVERRIDDEN": "service"},
    )
    out = resolve_service_environment(data, {})
    assert web(out)["environment"] == {"A": "from_a", "B": "from_b", "SHARED": "b", "OVERRIDDEN": "service"}
    assert "env_file" not in web(out)


def test_env_file_kept_when_not_discarded(tmp_path):
    (tmp_path / "a.env").write_text("A=1\n")
    data = project(env_file=[env_file(tmp_path / "a.env")])
    out = resolve_service_environment(data, {}, discard_env_file=False)
    assert web(out)["env_file"] == [env_file(tmp_path / "a.env")]
    assert web(out)["environment"] == {"A": "1"}


def test_unresolved_bare_key_still_shadows_env_file_value(tmp_path):
    (tmp_path / "a.env").write_text("TOKEN=from_file\n")
    data = project(env_file=[env_file(tmp_path / "a.env")], environment={"TOKEN": None})
    out = resolve_service_environment(data, {})
    assert web(out)["environment"] == {"TOKEN": None}
    out = resolve_service_environment(data, {"TOKEN": "shell"})
    assert web(out)["environment"] == {"TOKEN": "shell"}


def test_interpolation_in_env_file_sees_project_env_then_service_env_then_earlier_files(tmp_path):
    (tmp_path / "a.env").write_text("BASE=/opt\nWHO=file\n")
    (tmp_path / "b.env").write_text("URL=${SCHEME}://${HOST}${BASE}\nGREETING=hi ${WHO}\n")
    data = project(
        env_file=[env_file(tmp_path / "a.env"), env_file(tmp_path / "b.env")],
        environment={"HOST": "db.local", "WHO": "service"},
    )
    out = resolve_service_environment(data, {"SCHEME": "https", "WHO": "shell"})
    env = web(out)["environment"]
    assert env["URL"] == "https://db.local/opt"
    assert env["GREETING"] == "hi shell"
    assert env["WHO"] == "service"


def test_missing_optional_env_file_skipped(tmp_path):
    (tmp_path / "a.env").write_text("A=1\n")
    data = project(
        env_file=[env_file(tmp_path / "missing.env", required=False), env_file(tmp_path / "a.env")]
    )
    assert web(resolve_service_environment(data, {}))["environment"] == {"A": "1"}


def test_missing_required_env_file_is_an_error_with_path_and_location(tmp_path):
    missing = tmp_path / "missing.env"
    data = project(env_file=[env_file(missing)])
    seen = []

    def locate(path):
        seen.append(path)
        return Location("compose.yaml", 7, 9)

    with pytest.raises(ProjectNotFoundError, match=f"env file {missing} not found") as info:
        resolve_service_environment(data, {}, locate=locate)
    assert info.value.path == ("services", "web", "env_file", 0)
    assert info.value.location == Location("compose.yaml", 7, 9)
    assert seen == [("services", "web", "env_file", 0)]


def test_raw_env_file_keeps_quotes_and_dollars(tmp_path):
    (tmp_path / "raw.env").write_text(
        '# comment\n  \nQUOTED="kept"\nDOLLAR=${NOT_EXPANDED}\n  SPACED=  value with spaces \nPASS\nGONE\n'
    )
    data = project(env_file=[env_file(tmp_path / "raw.env", fmt="raw")])
    out = resolve_service_environment(data, {"PASS": "through"})
    assert web(out)["environment"] == {
        "QUOTED": '"kept"',
        "DOLLAR": "${NOT_EXPANDED}",
        "SPACED": "  value with spaces ",
        "PASS": "through",
    }


def test_raw_env_file_rejects_key_with_spaces(tmp_path):
    (tmp_path / "raw.env").write_text("BAD KEY=1\n")
    with pytest.raises(ComposeError, match="variable 'BAD KEY' contains whitespaces"):
        read_raw_env_file(str(tmp_path / "raw.env"), lookup=lambda key: None)


def test_unsupported_env_file_format(tmp_path):
    (tmp_path / "a.env").write_text("A=1\n")
    data = project(env_file=[env_file(tmp_path / "a.env", fmt="yaml")])
    with pytest.raises(ComposeError, match='unsupported env_file format "yaml"') as info:
        resolve_service_environment(data, {})
    assert info.value.path == ("services", "web", "env_file", 0)


def test_label_files_merged_labels_win(tmp_path):
    (tmp_path / "one.labels").write_text("team=core\ntier=${TIER:-backend}\nstage=${TIER:-backend}\n")
    (tmp_path / "two.labels").write_text("tier=frontend\nowner=${team}\n")
    data = project(
        label_file=[str(tmp_path / "one.labels"), str(tmp_path / "two.labels")],
        labels={"team": "platform"},
    )
    out = resolve_service_environment(data, {"TIER": "ignored: labels see only label files"})
    assert web(out)["labels"] == {
        "team": "platform",
        "tier": "frontend",
        "owner": "core",
        "stage": "backend",
    }
    assert "label_file" not in web(out)


def test_missing_label_file_is_an_error(tmp_path):
    data = project(label_file=[str(tmp_path / "nope")])
    with pytest.raises(ProjectNotFoundError, match=r"label file .*nope not found") as info:
        resolve_service_environment(data, {})
    assert info.value.path == ("services", "web", "label_file", 0)


def test_build_args_resolved_or_dropped():
    data = project(build={"context": "/srv", "args": {"VERSION": None, "MISSING": None, "FIXED": "1"}})
    out = resolve_service_environment(data, {"VERSION": "3.12"})
    assert web(out)["build"]["args"] == {"VERSION": "3.12", "FIXED": "1"}


def test_input_not_modified(tmp_path):
    (tmp_path / "a.env").write_text("A=1\n")
    data = project(env_file=[env_file(tmp_path / "a.env")], environment={"B": None})
    before = copy.deepcopy(data)
    resolve_service_environment(data, {"B": "2"})
    assert data == before


def test_service_without_environment_gets_none_added():
    out = resolve_service_environment(project(), {"PATH": "/bin"})
    assert "environment" not in web(out)
