"""The typed project model: typed values, immutability, and an exact round trip to the dict."""

from __future__ import annotations

import copy
import dataclasses

import pytest

from compose.errors import InvalidProjectError
from compose.model import Project, Service, format_duration, parse_bytes, parse_duration


def _project() -> dict:
    return {
        "name": "shop",
        "services": {
            "web": {
                "image": "nginx:1.25",
                "build": {"context": "/src/web", "dockerfile": "Dockerfile", "args": {"V": "1", "E": None}},
                "command": ["nginx", "-g", "daemon off;"],
                "environment": {"MODE": "prod", "UNSET": None},
                "ports": [{"mode": "ingress", "target": 80, "published": "8080", "protocol": "tcp"}],
                "volumes": [
                    {
                        "type": "bind",
                        "source": "/src/html",
                        "target": "/usr/share/nginx/html",
                        "read_only": True,
                        "bind": {"create_host_path": True},
                    },
                    {"type": "volume", "target": "/cache"},
                ],
                "networks": {"default": None, "back": {"aliases": ["www"], "ipv4_address": "10.1.0.5"}},
                "depends_on": {"db": {"condition": "service_healthy", "required": True, "restart": True}},
                "healthcheck": {
                    "test": ["CMD-SHELL", "curl -f localhost"],
                    "interval": "1m30s",
                    "retries": 3,
                },
                "deploy": {
                    "replicas": 3,
                    "resources": {"limits": {"cpus": 0.5, "memory": "536870912"}},
                    "restart_policy": {"condition": "on-failure", "delay": "5s"},
                },
                "labels": {"com.example.tier": "front"},
                "stop_grace_period": "1m0s",
                "mem_limit": "1073741824",
                "cpus": 1.5,
                "cap_add": [],
                "privileged": False,
                "init": True,
                "secrets": [{"source": "token", "target": "/run/secrets/token"}],
                "logging": {"driver": "json-file", "options": {"max-size": "10m"}},
                "ulimits": {"nofile": {"soft": 1024, "hard": 2048}, "nproc": 65535},
                "x-custom": {"any": ["thing", 1]},
                "blkio_config": {"weight": 300},
            },
            "db": {"image": "postgres:16", "scale": 2, "environment": {}},
        },
        "networks": {"default": {"name": "shop_default"}, "back": {"name": "shop_back", "internal": True}},
        "volumes": {"data": {"name": "shop_data", "driver": "local"}},
        "secrets": {"token": {"name": "shop_token", "file": "/src/token.txt"}},
        "configs": {},
        "x-shared": {"a": 1},
    }


def test_round_trip_is_exact():
    data = _project()
    original = copy.deepcopy(data)
    assert Project.from_dict(data).to_dict() == original
    assert data == original  # input untouched


def test_round_trip_keeps_non_normalized_text():
    data = {"name": "p", "services": {"s": {"image": "i", "stop_grace_period": "90s", "mem_limit": "1g"}}}
    assert Project.from_dict(data).to_dict() == data
    service = Project.from_dict(data).services["s"]
    assert service.stop_grace_period == 90.0
    assert service.mem_limit == 1024**3


def test_typed_values():
    project = Project.from_dict(_project())
    web = project.services["web"]
    assert project.service_names() == ("db", "web")
    assert web.name == "web"
    assert web.command == ("nginx", "-g", "daemon off;")
    assert web.ports[0].target == 80 and web.ports[0].published == "8080"
    assert web.volumes[0].read_only is True and web.volumes[1].source is None
    assert web.networks["default"] is None and web.networks["back"].aliases == ("www",)
    assert web.depends_on["db"].condition == "service_healthy" and web.depends_on["db"].restart is True
    assert web.healthcheck.interval == 90.0 and web.healthcheck.retries == 3
    assert web.deploy.resources.limits.cpus == 0.5 and web.deploy.resources.limits.memory == 512 * 1024**2
    assert web.deploy.restart_policy.delay == 5.0
    assert web.stop_grace_period == 60.0 and web.mem_limit == 1024**3 and web.cpus == 1.5
    assert web.environment == {"MODE": "prod", "UNSET": None}
    assert web.build.args == {"V": "1", "E": None}
    assert web.secrets[0].target == "/run/secrets/token"
    assert web.logging.options == {"max-size": "10m"}
    assert web.extras["x-custom"] == {"any": ("thing", 1)}
    assert "blkio_config" in web.extras
    assert project.networks["back"].internal is True
    assert project.extensions == {"x-shared": {"a": 1}}


def test_replicas():
    project = Project.from_dict(_project())
    assert project.services["web"].replicas == 3
    assert project.services["db"].replicas == 2
    assert Service.from_dict("x", {"image": "i"}).replicas == 1


def test_immutable():
    web = Project.from_dict(_project()).services["web"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        web.image = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        web.environment["NEW"] = "x"  # type: ignore[index]
    with pytest.raises(TypeError):
        web.extras["x-custom"]["any"] = 1  # type: ignore[index]
    assert isinstance(web.ports, tuple)


def test_replaced_values_are_printed_from_the_new_value():
    web = Project.from_dict(_project()).services["web"]
    changed = dataclasses.replace(web, stop_grace_period=2.5, mem_limit=2048, image="nginx:1.26", tty=True)
    out = changed.to_dict()
    assert out["stop_grace_period"] == "2.5s"
    assert out["mem_limit"] == "2048"
    assert out["image"] == "nginx:1.26"
    assert out["tty"] is True
    assert "tty" not in web.to_dict()


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1m30s", 90.0),
        ("500ms", 0.5),
        ("1h0m0s", 3600.0),
        ("1.5s", 1.5),
        ("0s", 0.0),
        ("2us", 2e-6),
        ("-5s", -5.0),
    ],
)
def test_durations(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)
    assert format_duration(seconds) == text.replace("us", "µs")


def test_bad_duration_and_bytes():
    with pytest.raises(InvalidProjectError):
        parse_duration("5 minutes")
    with pytest.raises(InvalidProjectError):
        parse_bytes("lots")
    assert parse_bytes("52428800") == 52428800
    assert parse_bytes("50m") == 52428800


def test_corpus_projects_round_trip():
    from corpus_cases import GOOD, expected_output

    from compose.loader.yamlparse import parse_yaml

    assert GOOD
    for case in GOOD:
        data = parse_yaml(expected_output(case), str(case))[0].data
        assert Project.from_dict(data).to_dict() == data, case.name
