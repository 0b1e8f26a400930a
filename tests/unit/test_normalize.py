"""normalize: the defaults docker compose `config` makes explicit (compose-go loader/normalize.go)."""

from __future__ import annotations

import copy

import pytest

from compose.errors import InvalidProjectError, Location
from compose.loader.normalize import normalize


def run(data: dict, **kwargs) -> dict:
    return normalize(data, project_name=kwargs.pop("project_name", "shop"), **kwargs)


def test_name_is_first_and_from_argument():
    out = run({"services": {"web": {"image": "nginx"}}, "name": "ignored"})
    assert next(iter(out)) == "name"
    assert out["name"] == "shop"


def test_input_is_not_modified():
    data = {"services": {"web": {"image": "nginx", "links": ["db"]}, "db": {"image": "pg"}}}
    before = copy.deepcopy(data)
    run(data)
    assert data == before


def test_service_without_networks_joins_default_and_default_is_declared():
    out = run({"services": {"web": {"image": "nginx"}}})
    assert out["services"]["web"]["networks"] == {"default": None}
    assert out["networks"] == {"default": {"name": "shop_default"}}


def test_default_network_not_added_when_nobody_uses_it():
    data = {
        "services": {
            "web": {"image": "nginx", "networks": {"front": None}},
            "host": {"image": "nginx", "network_mode": "host"},
        },
        "networks": {"front": {}},
    }
    out = run(data)
    assert "default" not in out["networks"]
    assert "networks" not in out["services"]["host"]
    assert out["networks"]["front"] == {"name": "shop_front"}


def test_provider_service_gets_no_network():
    out = run({"services": {"ai": {"provider": {"type": "model"}}}})
    assert "networks" not in out["services"]["ai"]
    assert "networks" not in out


def test_empty_networks_map_means_default():
    out = run({"services": {"web": {"image": "nginx", "networks": {}}}})
    assert out["services"]["web"]["networks"] == {"default": None}


def test_explicit_default_network_keeps_its_settings():
    data = {
        "services": {"web": {"image": "nginx"}},
        "networks": {"default": {"driver": "bridge", "name": "custom"}},
    }
    out = run(data)
    assert out["networks"]["default"] == {"driver": "bridge", "name": "custom"}


def test_resource_names_from_keys_and_external():
    data = {
        "services": {"web": {"image": "nginx", "networks": {"front": None}}},
        "networks": {"front": {}, "outside": {"external": True}},
        "volumes": {"data": {}, "named": {"name": "explicit"}, "ext": {"external": True}},
        "secrets": {"token": {"file": "./token"}},
        "configs": {"conf": {"file": "./conf"}},
    }
    out = run(data)
    assert out["networks"]["front"]["name"] == "shop_front"
    assert out["networks"]["outside"]["name"] == "outside"
    assert out["volumes"]["data"]["name"] == "shop_data"
    assert out["volumes"]["named"]["name"] == "explicit"
    assert out["volumes"]["ext"]["name"] == "ext"
    assert out["secrets"]["token"]["name"] == "shop_token"
    assert out["configs"]["conf"]["name"] == "shop_conf"


def test_null_resource_becomes_named_dict():
    out = run({"services": {}, "volumes": {"data": None}})
    assert out["volumes"]["data"] == {"name": "shop_data"}


def test_legacy_external_name_is_relocated_with_warning():
    warnings: list[str] = []
    data = {"services": {}, "volumes": {"db": {"external": {"name": "prod_db"}}}}
    out = run(data, warn=warnings.append)
    assert out["volumes"]["db"] == {"external": True, "name": "prod_db"}
    assert warnings == ["volumes.db: external.name is deprecated. Please set name and external: true"]


def test_legacy_external_name_conflicting_with_name_is_an_error():
    data = {"services": {}, "networks": {"n": {"name": "a", "external": {"name": "b"}}}}
    with pytest.raises(InvalidProjectError, match=r"name and external\.name conflict") as info:
        run(data, locate=lambda path: Location("compose.yaml", 3, 5))
    assert info.value.path == ("networks", "n", "name")
    assert info.value.location == Location("compose.yaml", 3, 5)


def test_implicit_dependencies_from_links_namespaces_and_volumes_from():
    data = {
        "services": {
            "web": {
                "image": "nginx",
                "links": ["db:database", "cache"],
                "network_mode": "service:vpn",
                "ipc": "service:shm",
                "pid": "host",
                "volumes_from": ["store:ro", "container:abc123"],
            },
            "db": {"image": "pg"},
        }
    }
    deps = run(data)["services"]["web"]["depends_on"]
    assert deps == {
        "db": {"condition": "service_started", "restart": True, "required": True},
        "cache": {"condition": "service_started", "restart": True, "required": True},
        "vpn": {"condition": "service_started", "restart": True, "required": True},
        "shm": {"condition": "service_started", "restart": True, "required": True},
        "store": {"condition": "service_started", "required": True},  # restart: false is not printed
    }


def test_implicit_dependency_never_overrides_explicit_one():
    explicit = {"condition": "service_healthy", "required": False}
    data = {"services": {"web": {"image": "x", "links": ["db"], "depends_on": {"db": explicit}}}}
    assert run(data)["services"]["web"]["depends_on"] == {"db": explicit}


def test_no_depends_on_key_when_nothing_implied():
    out = run({"services": {"web": {"image": "nginx", "volumes_from": ["container:x"]}}})
    assert "depends_on" not in out["services"]["web"]


def test_build_defaults():
    data = {
        "services": {
            "a": {"build": {}},
            "b": {"build": {"context": "./app", "dockerfile": "Dev.Dockerfile"}},
            "c": {"build": {"dockerfile_inline": "FROM alpine"}},
        }
    }
    services = run(data)["services"]
    assert services["a"]["build"] == {"context": ".", "dockerfile": "Dockerfile"}
    assert services["b"]["build"] == {"context": "./app", "dockerfile": "Dev.Dockerfile"}
    assert services["c"]["build"] == {"context": ".", "dockerfile_inline": "FROM alpine"}


def test_secret_default_target_but_config_target_left_unset():
    data = {
        "services": {
            "web": {
                "image": "nginx",
                "secrets": [{"source": "token"}, {"source": "key", "target": "/etc/key"}],
                "configs": [{"source": "conf"}],
            }
        }
    }
    web = run(data)["services"]["web"]
    assert web["secrets"] == [
        {"source": "token", "target": "/run/secrets/token"},
        {"source": "key", "target": "/etc/key"},
    ]
    assert web["configs"] == [{"source": "conf"}]


def test_pull_policy_if_not_present_becomes_missing():
    out = run({"services": {"web": {"image": "nginx", "pull_policy": "if_not_present"}}})
    assert out["services"]["web"]["pull_policy"] == "missing"


def test_volume_target_cleaned_and_bind_block_defaulted():
    volumes = [
        {"type": "bind", "source": "./src", "target": "/app/./src/", "bind": {"propagation": "rprivate"}},
        {"type": "volume", "source": "data", "target": "//var/lib/../lib/data", "volume": {}},
    ]
    out = run({"services": {"web": {"image": "x", "volumes": volumes}}})
    got = out["services"]["web"]["volumes"]
    assert got[0]["target"] == "/app/src"
    assert got[0]["bind"] == {"propagation": "rprivate", "create_host_path": True}
    assert got[1]["target"] == "/var/lib/data"


def test_scale_copied_to_deploy_replicas():
    out = run({"services": {"web": {"image": "x", "scale": 3, "deploy": {"mode": "replicated"}}}})
    assert out["services"]["web"]["deploy"]["replicas"] == 3
    out = run({"services": {"web": {"image": "x", "scale": 2}}})
    assert out["services"]["web"] == {"image": "x", "scale": 2, "networks": {"default": None}}


def test_scale_and_replicas_disagreeing_is_an_error():
    data = {"services": {"web": {"image": "x", "scale": 2, "deploy": {"replicas": 3}}}}
    with pytest.raises(
        InvalidProjectError, match=r"can't set distinct values on 'scale' and 'deploy\.replicas'"
    ):
        run(data)


def test_device_requests_default_to_all():
    data = {
        "services": {
            "gpu": {
                "image": "cuda",
                "gpus": [{"driver": "nvidia"}],
                "deploy": {
                    "resources": {
                        "reservations": {
                            "devices": [{"capabilities": ["gpu"]}, {"device_ids": ["0"]}, {"count": "all"}]
                        }
                    }
                },
            }
        }
    }
    gpu = run(data)["services"]["gpu"]
    assert gpu["gpus"] == [{"driver": "nvidia", "count": -1}]
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"capabilities": ["gpu"], "count": -1}, {"device_ids": ["0"]}, {"count": -1}]


def test_dependency_defaults_filled_after_merge():
    data = {
        "services": {
            "web": {"image": "x", "depends_on": {"db": {"condition": "service_healthy"}, "q": None}},
            "db": {"image": "y"},
            "q": {"image": "z"},
        }
    }
    deps = run(data)["services"]["web"]["depends_on"]
    assert deps == {
        "db": {"condition": "service_healthy", "required": True},
        "q": {"condition": "service_started", "required": True},
    }
