"""Compose's labels: the keys and value formats docker compose writes, and their round trip."""

from __future__ import annotations

from compose import __version__, labels
from compose.labels import DependencyLabel, ProjectIdentity

PROJECT = ProjectIdentity("shop", "/srv/shop", ("/srv/shop/compose.yaml", "/srv/shop/compose.override.yaml"))


def test_container_labels_carry_every_compose_key() -> None:
    deps = (DependencyLabel("db", "service_healthy", restart=True), DependencyLabel("cache"))
    got = labels.container_labels(
        PROJECT, "web", 2, config_hash="ab" * 32, depends_on=deps, image_digest="sha256:1"
    )
    assert got == {
        "com.docker.compose.project": "shop",
        "com.docker.compose.service": "web",
        "com.docker.compose.container-number": "2",
        "com.docker.compose.oneoff": "False",
        "com.docker.compose.config-hash": "ab" * 32,
        "com.docker.compose.depends_on": "db:service_healthy:true,cache:service_started:false",
        "com.docker.compose.project.working_dir": "/srv/shop",
        "com.docker.compose.project.config_files": "/srv/shop/compose.yaml,/srv/shop/compose.override.yaml",
        "com.docker.compose.version": __version__,
        "com.docker.compose.image": "sha256:1",
    }


def test_compose_labels_win_over_user_labels() -> None:
    forged = {"com.docker.compose.project": "other", "team": "a"}
    got = labels.container_labels(
        PROJECT, "web", 1, config_hash="x", oneoff=True, user_labels=forged, slug="abc"
    )
    assert got["com.docker.compose.project"] == "shop" and got["team"] == "a"
    assert got["com.docker.compose.oneoff"] == "True" and got["com.docker.compose.slug"] == "abc"
    assert got["com.docker.compose.depends_on"] == ""


def test_environment_files_only_when_used() -> None:
    with_env = ProjectIdentity("p", "/p", ("/p/compose.yaml",), ("/p/.env",))
    assert labels.container_labels(with_env, "s", 1, config_hash="h")[labels.ENVIRONMENT_FILE] == "/p/.env"
    assert labels.ENVIRONMENT_FILE not in labels.container_labels(PROJECT, "s", 1, config_hash="h")


def test_depends_on_round_trip_and_old_forms() -> None:
    deps = [DependencyLabel("db", "service_completed_successfully", True), DependencyLabel("mq")]
    assert labels.parse_depends_on(labels.format_depends_on(deps)) == deps
    assert labels.parse_depends_on("db,mq:service_healthy") == [
        DependencyLabel("db"),
        DependencyLabel("mq", "service_healthy"),
    ]
    assert labels.parse_depends_on("") == []


def test_network_and_volume_labels_name_the_declared_key() -> None:
    assert labels.network_labels(PROJECT, "front", {"tier": "1"}) == {
        "tier": "1",
        "com.docker.compose.project": "shop",
        "com.docker.compose.network": "front",
        "com.docker.compose.version": __version__,
    }
    assert labels.volume_labels(PROJECT, "data")["com.docker.compose.volume"] == "data"


def test_project_filter_excludes_one_offs_unless_asked() -> None:
    assert labels.project_filter("shop") == {
        "com.docker.compose.project": "shop",
        "com.docker.compose.oneoff": "False",
    }
    assert labels.project_filter("shop", "web", oneoff=None) == {
        "com.docker.compose.project": "shop",
        "com.docker.compose.service": "web",
    }
