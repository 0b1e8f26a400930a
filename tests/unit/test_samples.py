"""The acceptance stacks load, and what later layers consume (typed model, start order) is right."""

from __future__ import annotations

from pathlib import Path

import pytest

from compose.graph import ServiceGraph
from compose.loader.pipeline import ProjectOptions, load_project

SAMPLES = Path(__file__).resolve().parents[2] / "samples"


def load(name: str):
    return load_project(ProjectOptions(cwd=str(SAMPLES / name), environ={"HOME": "/root"}))


def test_lnmp_model_and_start_order():
    project = load("lnmp")
    assert project.name == "lnmp"
    graph = ServiceGraph(project.data["services"])
    assert graph.start_generations() == [["mariadb"], ["php"], ["nginx"]]
    assert graph.stop_generations() == [["nginx"], ["php"], ["mariadb"]]
    model = project.model
    mariadb = model.services["mariadb"]
    assert mariadb.healthcheck.interval == 5.0
    assert mariadb.healthcheck.retries == 30
    assert mariadb.environment["MARIADB_PASSWORD"] == "lnmp-sample-password"
    nginx = model.services["nginx"]
    assert [(p.host_ip, p.published, p.target) for p in nginx.ports] == [("127.0.0.1", "8080", 80)]
    assert nginx.volumes[0].source == str(SAMPLES / "lnmp" / "www")
    assert nginx.volumes[0].read_only is True
    assert nginx.depends_on["php"].condition == "service_started"
    assert model.networks["backend"].name == "lnmp_backend"
    assert model.volumes["db-data"].name == "lnmp_db-data"
    assert model.to_dict() == project.data


def test_wordpress_waits_for_a_healthy_database():
    project = load("wordpress")
    wordpress = project.model.services["wordpress"]
    assert wordpress.depends_on["db"].condition == "service_healthy"
    assert wordpress.build.context == str(SAMPLES / "wordpress" / "wordpress")
    assert ServiceGraph(project.data["services"]).start_generations() == [["db"], ["wordpress"]]


def test_shell_environment_wins_over_dotenv():
    project = load_project(
        ProjectOptions(cwd=str(SAMPLES / "lnmp"), environ={"MYSQL_PASSWORD": "from-shell"})
    )
    assert project.data["services"]["php"]["environment"]["DB_PASSWORD"] == "from-shell"


def test_missing_required_password_names_variable_and_key(tmp_path):
    (tmp_path / "compose.yaml").write_text((SAMPLES / "lnmp" / "compose.yaml").read_text())
    from compose.errors import InterpolationError

    with pytest.raises(InterpolationError) as info:
        load_project(ProjectOptions(cwd=str(tmp_path), environ={}))
    assert "required variable MYSQL_PASSWORD is missing a value: set MYSQL_PASSWORD in .env" in str(
        info.value
    )
    assert "services.php.environment.DB_PASSWORD" in str(info.value)
