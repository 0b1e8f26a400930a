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
    """The tutorial's shape (issue 8): web / php / mysql on lnmp-network, dbdata, restart always."""
    project = load("lnmp")
    assert project.name == "lnmp"
    graph = ServiceGraph(project.data["services"])
    assert graph.start_generations() == [["mysql"], ["php"], ["web"]]
    assert graph.stop_generations() == [["web"], ["php"], ["mysql"]]
    model = project.model
    mysql = model.services["mysql"]
    assert mysql.healthcheck.start_interval == 0.1
    assert mysql.environment["MYSQL_PASSWORD"] == "lnmp-sample-password"
    assert mysql.volumes[0].source == "dbdata" and mysql.volumes[0].target == "/var/lib/mysql"
    web = model.services["web"]
    assert [(p.host_ip, p.published, p.target) for p in web.ports] == [(None, "80", 80)]
    assert [(v.source, v.target) for v in web.volumes] == [
        (str(SAMPLES / "lnmp" / "nginx"), "/etc/nginx/conf.d"),
        (str(SAMPLES / "lnmp" / "html"), "/var/www/html"),
    ]
    assert web.depends_on["mysql"].condition == "service_healthy"
    assert model.services["php"].depends_on["mysql"].condition == "service_healthy"
    assert {s.restart for s in model.services.values()} == {"always"}
    assert model.networks["lnmp-network"].name == "lnmp_lnmp-network"
    assert model.volumes["dbdata"].name == "lnmp_dbdata"
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
