"""Semantic validation of a normalized project (stage 12)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from compose.errors import DependencyCycleError, InvalidProjectError, Location
from compose.loader.validate import check_project, iter_problems

INVALID = ""  # compose-go appends ": invalid compose project"; our errors carry the path instead


def started(required: bool = True, **extra: Any) -> dict:
    return {"condition": "service_started", "required": required, **extra}


def healthy() -> dict:
    return {"condition": "service_healthy", "required": True}


def port(
    target: int, published: str | None = None, host_ip: str | None = None, protocol: str = "tcp"
) -> dict:
    entry: dict = {"mode": "ingress", "target": target, "protocol": protocol}
    if published is not None:
        entry["published"] = published
    if host_ip is not None:
        entry["host_ip"] = host_ip
    return entry


def lemp() -> dict:
    """nginx + php-fpm + mariadb + redis queue with a worker, in canonical normalized form."""
    return {
        "name": "shop",
        "services": {
            "nginx": {
                "depends_on": {"php": started()},
                "image": "nginx:1.27",
                "networks": {"front": None, "back": None},
                "ports": [port(80, "8080"), port(443, "8443")],
                "volumes": [
                    {"type": "bind", "source": "/srv/shop/nginx.conf", "target": "/etc/nginx/nginx.conf"},
                    {"type": "volume", "source": "static", "target": "/var/www/static", "volume": {}},
                ],
            },
            "php": {
                "build": {"context": "/srv/shop", "dockerfile": "Dockerfile"},
                "configs": [{"source": "php_ini", "target": "/usr/local/etc/php/php.ini"}],
                "depends_on": {"db": healthy(), "redis": started()},
                "networks": {"back": None},
                "secrets": [{"source": "db_password", "target": "/run/secrets/db_password"}],
                "volumes": [{"type": "volume", "source": "static", "target": "/app/public/static"}],
            },
            "db": {
                "healthcheck": {"test": ["CMD", "healthcheck.sh", "--connect"]},
                "image": "mariadb:11",
                "networks": {"back": None},
                "secrets": [{"source": "db_password", "target": "/run/secrets/db_password"}],
                "volumes": [
                    {"type": "volume", "source": "dbdata", "target": "/var/lib/mysql", "volume": {}},
                    {"type": "volume", "target": "/tmp/anon"},
                ],
            },
            "redis": {"image": "redis:7", "networks": {"back": None}},
            "worker": {
                "deploy": {"replicas": 3},
                "depends_on": {"redis": started(), "db": healthy()},
                "image": "shop/php:latest",
                "networks": {"back": None},
            },
        },
        "networks": {"front": {"name": "shop_front"}, "back": {"name": "shop_back"}},
        "volumes": {"static": {"name": "shop_static"}, "dbdata": {"name": "shop_dbdata"}},
        "secrets": {"db_password": {"name": "shop_db_password", "file": "/srv/shop/secrets/db.txt"}},
        "configs": {"php_ini": {"name": "shop_php_ini", "file": "/srv/shop/php.ini"}},
    }


def error_of(data: dict, **kwargs: Any) -> InvalidProjectError:
    with pytest.raises(InvalidProjectError) as info:
        check_project(data, **kwargs)
    return info.value


# --- a valid project ----------------------------------------------------------------------------------


def test_valid_stack_passes_without_warnings() -> None:
    warnings: list[str] = []
    check_project(lemp(), warn=warnings.append)
    assert warnings == []
    assert list(iter_problems(lemp())) == []


def test_check_does_not_modify_the_input() -> None:
    data = lemp()
    before = copy.deepcopy(data)
    check_project(data)
    assert data == before


def test_empty_project_is_valid() -> None:
    check_project({"name": "empty"})
    check_project({"name": "empty", "services": {}, "networks": None})


# --- references to top-level resources ------------------------------------------------------------------


def test_undefined_network() -> None:
    data = lemp()
    data["services"]["php"]["networks"]["cache"] = None
    err = error_of(data)
    assert err.message == 'service "php" refers to undefined network cache' + INVALID
    assert err.path == ("services", "php", "networks", "cache")
    assert err.location is None


def test_error_location_comes_from_locate() -> None:
    data = lemp()
    data["services"]["php"]["networks"]["cache"] = None
    seen = []

    def locate(path):
        seen.append(path)
        return Location("compose.yaml", 21, 9)

    err = error_of(data, locate=locate)
    assert seen == [("services", "php", "networks", "cache")]
    assert err.location == Location("compose.yaml", 21, 9)
    assert str(err).startswith('compose.yaml:21:9: services.php.networks.cache: service "php"')


def test_undefined_named_volume_but_anonymous_and_bind_are_fine() -> None:
    data = lemp()
    data["services"]["db"]["volumes"].append({"type": "volume", "source": "dbbackup", "target": "/backup"})
    err = error_of(data)
    assert err.message == 'service "db" refers to undefined volume dbbackup' + INVALID
    assert err.path == ("services", "db", "volumes", 2)


def test_undefined_secret() -> None:
    data = lemp()
    data["services"]["db"]["secrets"].append({"source": "root_password"})
    err = error_of(data)
    assert err.message == 'service "db" refers to undefined secret root_password' + INVALID
    assert err.path == ("services", "db", "secrets", 1)


def test_undefined_config() -> None:
    data = lemp()
    del data["configs"]
    err = error_of(data)
    assert err.message == 'service "php" refers to undefined config php_ini' + INVALID
    assert err.path == ("services", "php", "configs", 0)


def test_undefined_build_secret() -> None:
    data = lemp()
    data["services"]["php"]["build"]["secrets"] = [{"source": "composer_auth"}]
    err = error_of(data)
    assert err.message == 'service "php" refers to undefined build secret composer_auth' + INVALID
    assert err.path == ("services", "php", "build", "secrets", 0)


def test_undefined_model() -> None:
    data = lemp()
    data["services"]["worker"]["models"] = {"llm": {"endpoint_var": "AI_URL"}}
    err = error_of(data)
    assert err.message == 'service "worker" refers to undefined model llm' + INVALID
    data["models"] = {"llm": {"model": "ai/smollm2"}}
    check_project(data)


def test_secret_needs_file_or_environment_unless_external() -> None:
    data = lemp()
    data["secrets"]["api_token"] = {"name": "shop_api_token"}
    err = error_of(data)
    assert err.message == 'secret "api_token" must declare either `file` or `environment`' + INVALID
    assert err.path == ("secrets", "api_token")
    data["secrets"]["api_token"] = {"name": "api_token", "external": True}
    check_project(data)
    data["secrets"]["api_token"] = {"name": "shop_api_token", "environment": "API_TOKEN"}
    check_project(data)


# --- references to services -----------------------------------------------------------------------------


def test_depends_on_undefined_service() -> None:
    data = lemp()
    data["services"]["worker"]["depends_on"]["mailer"] = started()
    err = error_of(data)
    assert err.message == 'service "worker" depends on undefined service "mailer"' + INVALID
    assert err.path == ("services", "worker", "depends_on", "mailer")


def test_optional_dependency_on_undefined_service_is_still_an_error() -> None:
    # compose-go excuses `required: false` only for services disabled by profiles.
    data = lemp()
    data["services"]["worker"]["depends_on"]["mailer"] = started(required=False)
    err = error_of(data)
    assert err.message == 'service "worker" depends on undefined service "mailer"' + INVALID
    check_project(data, disabled={"mailer": {"image": "mailhog", "profiles": ["dev"]}})


def test_required_dependency_on_service_disabled_by_profiles() -> None:
    data = lemp()
    data["services"]["php"]["depends_on"]["xdebug"] = started()
    disabled = {"xdebug": {"image": "xdebug", "profiles": ["debug", "dev"]}}
    err = error_of(data, disabled=disabled)
    assert err.message == (
        'service "xdebug" is required by "php" but is disabled. Can be enabled by profiles [debug dev]'
    )
    data["services"]["php"]["depends_on"]["xdebug"] = started(required=False)
    warnings: list[str] = []
    check_project(data, disabled=disabled, warn=warnings.append)
    assert warnings == []


def test_link_to_undefined_service_is_reported_at_the_link() -> None:
    data = lemp()
    # After normalize the link also sits in depends_on (restart: true); the error points at `links`.
    data["services"]["php"]["links"] = ["redis", "memcached:cache"]
    data["services"]["php"]["depends_on"]["memcached"] = started(restart=True)
    err = error_of(data)
    assert err.message == 'service "php" depends on undefined service "memcached"' + INVALID
    assert err.path == ("services", "php", "links", 1)


def test_volumes_from_undefined_service() -> None:
    data = lemp()
    data["services"]["backup"] = {
        "image": "restic/restic",
        "volumes_from": ["container:legacy_db", "db:ro", "files:ro"],
        "networks": {"back": None},
    }
    err = error_of(data)
    assert err.message == 'service "backup" depends on undefined service "files"' + INVALID
    assert err.path == ("services", "backup", "volumes_from", 2)


def test_network_mode_service_not_found() -> None:
    data = lemp()
    data["services"]["exporter"] = {"image": "prom/mysqld-exporter", "network_mode": "service:mysql"}
    err = error_of(data)
    assert err.message == "service \"mysql\" not found for network_mode 'service:mysql'"
    assert err.path == ("services", "exporter", "network_mode")


def test_ipc_and_pid_service_references() -> None:
    data = lemp()
    data["services"]["profiler"] = {"image": "perf", "pid": "service:php", "ipc": "service:shm"}
    err = error_of(data)
    assert err.message == 'service "profiler" depends on undefined service "shm"' + INVALID
    assert err.path == ("services", "profiler", "ipc")
    data["services"]["profiler"]["ipc"] = "host"
    check_project(data)


def test_network_mode_and_networks_are_exclusive() -> None:
    data = lemp()
    data["services"]["redis"]["network_mode"] = "host"
    err = error_of(data)
    assert err.message == "service redis declares mutually exclusive `network_mode` and `networks`" + INVALID
    assert err.path == ("services", "redis", "network_mode")


# --- cycles ----------------------------------------------------------------------------------------------


def test_dependency_cycle() -> None:
    data = lemp()
    data["services"]["php"]["depends_on"]["nginx"] = started()
    with pytest.raises(DependencyCycleError) as info:
        check_project(data, locate=lambda path: Location("compose.yaml", 30, 7))
    assert info.value.cycle == ["nginx", "php", "nginx"]
    assert info.value.message == "dependency cycle detected: nginx -> php -> nginx"
    assert info.value.path == ("services", "nginx", "depends_on", "php")
    assert info.value.location == Location("compose.yaml", 30, 7)


def test_cycle_through_implicit_dependency() -> None:
    data = lemp()
    data["services"]["db"]["volumes_from"] = ["worker"]
    with pytest.raises(DependencyCycleError) as info:
        check_project(data)
    assert info.value.cycle == ["db", "worker", "db"]
    assert info.value.path == ("services", "db", "volumes_from", 0)


def test_reference_errors_come_before_cycles() -> None:
    data = lemp()
    data["services"]["php"]["depends_on"]["nginx"] = started()
    data["services"]["redis"]["networks"]["cache"] = None
    problems = list(iter_problems(data))
    assert [type(p) for p in problems] == [InvalidProjectError, DependencyCycleError]


# --- per-service consistency (compose-go checkConsistency) ---------------------------------------------


def test_service_without_image_or_build() -> None:
    data = lemp()
    del data["services"]["redis"]["image"]
    err = error_of(data)
    assert err.message == 'service "redis" has neither an image nor a build context specified' + INVALID
    assert err.path == ("services", "redis")


def test_provider_service_needs_no_image() -> None:
    data = lemp()
    data["services"]["database"] = {"provider": {"type": "awesomecloud", "options": {"type": "mysql"}}}
    check_project(data)


def test_dockerfile_and_inline_dockerfile_are_exclusive() -> None:
    data = lemp()
    data["services"]["php"]["build"]["dockerfile_inline"] = "FROM php:8.3-fpm\n"
    err = error_of(data)
    assert (
        err.message == 'service "php" declares mutually exclusive dockerfile and dockerfile_inline' + INVALID
    )


def test_build_platforms_must_include_platform() -> None:
    data = lemp()
    data["services"]["php"]["platform"] = "linux/arm64"
    data["services"]["php"]["build"]["platforms"] = ["linux/amd64"]
    err = error_of(data)
    assert err.message == 'service.build.platforms MUST include service.platform "linux/arm64"' + INVALID
    data["services"]["php"]["build"]["platforms"].append("linux/arm64")
    check_project(data)


def test_healthcheck_test_kind() -> None:
    data = lemp()
    data["services"]["db"]["healthcheck"]["test"] = ["mysqladmin", "ping"]
    err = error_of(data)
    assert err.message == 'healthcheck.test must start either by "CMD", "CMD-SHELL" or "NONE"'
    assert err.path == ("services", "db", "healthcheck", "test")
    for kind in ("CMD-SHELL", "NONE"):
        data["services"]["db"]["healthcheck"]["test"] = [kind, "mysqladmin ping"]
        check_project(data)


def test_scale_and_replicas_must_agree() -> None:
    data = lemp()
    data["services"]["worker"]["scale"] = 2
    err = error_of(data)
    assert err.message == "can't set distinct values on 'scale' and 'deploy.replicas'" + INVALID
    assert err.path == ("services", "worker", "scale")
    data["services"]["worker"]["scale"] = 3
    check_project(data)


@pytest.mark.parametrize(
    ("attr", "value", "section", "key", "other"),
    [
        ("cpus", 0.5, "limits", "cpus", "1.5"),
        ("mem_limit", "536870912", "limits", "memory", "268435456"),
        ("mem_reservation", "134217728", "reservations", "memory", "67108864"),
        ("pids_limit", 100, "limits", "pids", 200),
    ],
)
def test_resource_attribute_and_deploy_resources_must_agree(attr, value, section, key, other) -> None:
    data = lemp()
    worker = data["services"]["worker"]
    worker[attr] = value
    worker["deploy"]["resources"] = {section: {key: value}}
    check_project(data)
    worker["deploy"]["resources"][section][key] = other
    err = error_of(data)
    assert err.message == (
        f"can't set distinct values on '{attr}' and 'deploy.resources.{section}.{key}'" + INVALID
    )
    assert err.path == ("services", "worker", "deploy", "resources", section, key)


def test_resource_attribute_with_a_limits_section_lacking_its_twin() -> None:
    # compose-go counts a missing twin as 0 once `limits` exists (docker compose rejects this file).
    data = lemp()
    worker = data["services"]["worker"]
    worker["cpus"] = 1.5
    worker["deploy"]["resources"] = {"reservations": {"cpus": "0.5"}}
    check_project(data)  # reservations do not pair with `cpus`
    worker["deploy"]["resources"]["limits"] = {"memory": "1073741824"}
    err = error_of(data)
    assert err.message == ("can't set distinct values on 'cpus' and 'deploy.resources.limits.cpus'" + INVALID)
    assert err.path == ("services", "worker", "deploy", "resources", "limits")


def test_zero_resource_attribute_is_not_compared() -> None:
    data = lemp()
    data["services"]["worker"]["pids_limit"] = 0
    data["services"]["worker"]["deploy"]["resources"] = {"limits": {"pids": 64}}
    check_project(data)


def test_cpus_as_string_and_float_compare_numerically() -> None:
    data = lemp()
    data["services"]["worker"]["cpus"] = 0.5
    data["services"]["worker"]["deploy"]["resources"] = {"limits": {"cpus": "0.50"}}
    check_project(data)


def test_develop_watch_target_required_except_rebuild() -> None:
    data = lemp()
    data["services"]["php"]["develop"] = {
        "watch": [
            {"action": "rebuild", "path": "/srv/shop/composer.lock"},
            {"action": "sync", "path": "/srv/shop/src"},
        ]
    }
    err = error_of(data)
    assert err.message == "target is required for non-rebuild actions" + INVALID
    assert err.path == ("services", "php", "develop", "watch", 1)


# --- container names -----------------------------------------------------------------------------------


def test_container_name_with_replicas() -> None:
    data = lemp()
    data["services"]["worker"]["container_name"] = "shop-worker"
    err = error_of(data)
    assert err.message == (
        "can't set container_name and deploy.replicas as container name must be unique" + INVALID
    )
    assert err.path == ("services", "worker", "container_name")


def test_container_name_with_scale() -> None:
    data = lemp()
    data["services"]["redis"].update(container_name="shop-redis", scale=2)
    err = error_of(data)
    assert "can't set container_name and scale" in err.message


def test_container_name_with_one_replica_is_fine() -> None:
    data = lemp()
    data["services"]["worker"]["deploy"]["replicas"] = 1
    data["services"]["worker"]["container_name"] = "shop-worker"
    check_project(data)


def test_duplicate_container_name() -> None:
    data = lemp()
    data["services"]["db"]["container_name"] = "shop-data"
    data["services"]["redis"]["container_name"] = "shop-data"
    err = error_of(data)
    assert err.message == 'container name "shop-data" is already in use by service db'
    assert err.path == ("services", "redis", "container_name")


# --- published ports -------------------------------------------------------------------------------------


def monitoring() -> dict:
    return {
        "name": "mon",
        "services": {
            "prometheus": {"image": "prom/prometheus", "ports": [port(9090, "9090")]},
            "grafana": {"image": "grafana/grafana", "ports": [port(3000, "3000", host_ip="127.0.0.1")]},
            "node-exporter": {"image": "prom/node-exporter", "network_mode": "host"},
            "statsd": {"image": "statsd", "ports": [port(8125, "8125", protocol="udp")]},
        },
    }


def test_monitoring_stack_is_valid() -> None:
    check_project(monitoring())


def test_same_host_port_in_two_services() -> None:
    data = monitoring()
    data["services"]["alertmanager"] = {"image": "prom/alertmanager", "ports": [port(9093, "9090")]}
    err = error_of(data)
    assert err.message == (
        'service "alertmanager" publishes host port 9090/tcp already published by service "prometheus"'
        + INVALID
    )
    assert err.path == ("services", "alertmanager", "ports", 0)


def test_other_protocol_on_the_same_port_is_fine() -> None:
    data = monitoring()
    data["services"]["graphite"] = {"image": "graphite", "ports": [port(8125, "8125", protocol="tcp")]}
    check_project(data)


@pytest.mark.parametrize(
    ("first", "second", "clash"),
    [
        ("", "127.0.0.1", True),  # "" binds every address
        ("0.0.0.0", "127.0.0.1", True),  # IPv4 wildcard covers loopback
        ("0.0.0.0", "", True),
        ("127.0.0.1", "127.0.0.1", True),
        ("127.0.0.1", "127.0.0.2", False),
        ("0.0.0.0", "::1", False),  # different families
        ("::", "::1", True),
        ("[::1]", "::1", True),
        ("", "::1", True),
    ],
)
def test_host_ip_overlap(first: str, second: str, clash: bool) -> None:
    data = {
        "services": {
            "a": {"image": "a", "ports": [port(80, "8080", host_ip=first or None)]},
            "b": {"image": "b", "ports": [port(8000, "8080", host_ip=second or None)]},
        }
    }
    problems = list(iter_problems(data))
    assert bool(problems) is clash
    if clash:
        assert problems[0].path == ("services", "b", "ports", 0)


def test_ephemeral_and_ranged_host_ports_never_clash() -> None:
    data = {
        "services": {
            "a": {"image": "a", "ports": [port(80), port(81, "8000-8010")]},
            "b": {"image": "b", "ports": [port(80), port(81, "8000-8010")]},
        }
    }
    check_project(data)


def test_one_service_binding_a_host_port_twice() -> None:
    data = {"services": {"web": {"image": "a", "ports": [port(80, "8080"), port(8080, "8080")]}}}
    err = error_of(data)
    assert err.message == 'service "web" publishes host port 8080/tcp already published by itself' + INVALID
    assert err.path == ("services", "web", "ports", 1)


def test_exact_duplicate_port_entry_is_not_a_clash() -> None:
    data = {"services": {"web": {"image": "a", "ports": [port(80, "8080"), port(80, "8080")]}}}
    check_project(data)


def test_ports_with_host_network_are_ignored_with_a_warning() -> None:
    data = monitoring()
    data["services"]["node-exporter"]["ports"] = [port(9100, "9090")]
    warnings: list[str] = []
    check_project(data, warn=warnings.append)
    assert warnings == [
        'service "node-exporter": published ports are discarded when using network_mode "host"'
    ]


def test_fixed_host_port_with_replicas_warns() -> None:
    data = lemp()
    data["services"]["worker"]["ports"] = [port(9000, "9000")]
    warnings: list[str] = []
    check_project(data, warn=warnings.append)
    assert warnings == [
        'service "worker" publishes fixed host port 9000 but has 3 replicas: only one of them can bind it'
    ]


def test_warnings_are_not_emitted_when_the_project_is_invalid() -> None:
    data = monitoring()
    data["services"]["node-exporter"]["ports"] = [port(9100, "9100")]
    data["services"]["grafana"]["networks"] = {"default": None}
    warnings: list[str] = []
    with pytest.raises(InvalidProjectError):
        check_project(data, warn=warnings.append)
    assert warnings == []


# --- order ---------------------------------------------------------------------------------------


def test_first_problem_in_document_order_wins() -> None:
    data = lemp()
    data["services"]["worker"]["depends_on"]["mailer"] = started()  # last service
    data["services"]["php"]["secrets"].append({"source": "stripe_key"})  # second service
    data["services"]["php"]["networks"]["cache"] = None  # php lists networks before secrets
    problems = list(iter_problems(data))
    assert [p.path for p in problems] == [
        ("services", "php", "networks", "cache"),
        ("services", "php", "secrets", 1),
        ("services", "worker", "depends_on", "mailer"),
    ]
    assert error_of(data).path == ("services", "php", "networks", "cache")
