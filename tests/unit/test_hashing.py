"""The config hash changes when the container would change, and only then."""

from __future__ import annotations

import copy
import re

from compose.hashing import hashable_service, service_config_hash


def _service() -> dict:
    return {
        "image": "nginx:1.25",
        "build": {"context": "/src", "dockerfile": "Dockerfile"},
        "command": ["nginx", "-g", "daemon off;"],
        "environment": {"MODE": "prod"},
        "ports": [{"mode": "ingress", "target": 80, "published": "8080", "protocol": "tcp"}],
        "deploy": {"replicas": 2, "resources": {"limits": {"memory": "1024"}}},
        "depends_on": {"db": {"condition": "service_started", "required": True}},
        "profiles": ["web"],
        "pull_policy": "always",
        "networks": {"default": None},
    }


def _changed(**changes) -> dict:
    service = _service()
    for key, value in changes.items():
        if value is None:
            service.pop(key, None)
        else:
            service[key] = value
    return service


BASE = service_config_hash(_service())


def test_hash_is_sha256_hex_and_stable():
    assert re.fullmatch(r"[0-9a-f]{64}", BASE)
    assert service_config_hash(_service()) == BASE
    shuffled = dict(reversed(list(_service().items())))
    assert service_config_hash(shuffled) == BASE  # key order in the dict does not matter


def test_scaling_and_orchestration_fields_do_not_change_the_hash():
    assert service_config_hash(_changed(scale=5)) == BASE
    deploy = {"replicas": 7, "resources": {"limits": {"memory": "1024"}}}
    assert service_config_hash(_changed(deploy=deploy)) == BASE
    assert service_config_hash(_changed(build={"context": "/other"})) == BASE
    assert service_config_hash(_changed(build=None)) == BASE
    assert service_config_hash(_changed(pull_policy="never")) == BASE
    assert service_config_hash(_changed(depends_on=None)) == BASE
    assert service_config_hash(_changed(profiles=["debug"])) == BASE
    assert service_config_hash(_changed(**{"x-note": "extensions are not hashed"})) == BASE


def test_container_relevant_changes_change_the_hash():
    assert service_config_hash(_changed(image="nginx:1.26")) != BASE
    assert service_config_hash(_changed(environment={"MODE": "dev"})) != BASE
    ports = [{"mode": "ingress", "target": 80, "published": "8081", "protocol": "tcp"}]
    assert service_config_hash(_changed(ports=ports)) != BASE
    assert service_config_hash(_changed(command=["nginx"])) != BASE
    deploy = {"replicas": 2, "resources": {"limits": {"memory": "2048"}}}
    assert service_config_hash(_changed(deploy=deploy)) != BASE
    assert service_config_hash(_changed(networks={"back": None})) != BASE


def test_input_is_not_modified():
    service = _service()
    before = copy.deepcopy(service)
    service_config_hash(service)
    hashable_service(service)
    assert service == before
    assert "replicas" not in hashable_service(service)["deploy"]
