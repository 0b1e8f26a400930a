"""ContainerSpec's JSON round trip (the containers.spec column)."""

from __future__ import annotations

import json

import pytest

from engine.containers.spec import ContainerSpec, Mount, Process, Resources, Security


def _full() -> ContainerSpec:
    return ContainerSpec(
        id="c" * 64,
        name="web",
        image_id="sha256:" + "a" * 64,
        layer_dirs=("/l/2", "/l/1"),
        process=Process(args=("sh", "-c", "echo hi"), env=(("A", "1"),), user="1000:1000", tty=True),
        hostname="h",
        mounts=(
            Mount(type="volume", target="/data", source="vol", options=("rprivate",)),
            Mount(type="tmpfs", target="/tmp", options=("size=64m",), read_only=True),
        ),
        resources=Resources(memory=64 << 20, cpus=0.5, pids_limit=100),
        security=Security(cap_add=("NET_ADMIN",), ulimits=(("nofile", 1024, 2048),), sysctls=(("a.b", "1"),)),
        labels=(("com.example", "x"),),
        image="busybox:latest",
        log_driver="json-file",
        log_options=(("max-size", "10m"), ("max-file", "3")),
        restart="on-failure:3",
        restart_policy=("on-failure", 5.0, 3, 60.0),
        healthcheck=(("CMD", "true"), 30.0, 5.0, 0.0, 5.0, 3),
    )


def test_defaults():
    spec = ContainerSpec(id="x", name="x", image_id="i", layer_dirs=(), process=Process(args=("true",)))
    assert (spec.log_driver, spec.log_options, spec.restart) == ("json-file", (), "no")
    assert spec.restart_policy is None and spec.healthcheck is None
    assert ContainerSpec.from_json(spec.to_json()) == spec


def test_round_trip_keeps_every_field_and_stays_hashable():
    spec = _full()
    text = spec.to_json()
    again = ContainerSpec.from_json(text)
    assert again == spec
    assert hash(again) == hash(spec)
    assert again.to_json() == text  # stable: same spec, same column value


def test_json_is_plain():
    data = json.loads(_full().to_json())
    assert data["restart_policy"] == ["on-failure", 5.0, 3, 60.0]
    assert data["healthcheck"][0] == ["CMD", "true"]
    assert data["mounts"][0]["source"] == "vol"


def test_unknown_key_is_refused():
    data = json.loads(_full().to_json())
    data["future_field"] = 1
    with pytest.raises(TypeError):
        ContainerSpec.from_json(json.dumps(data))


def test_frozen():
    with pytest.raises(AttributeError):
        _full().restart = "always"  # type: ignore[misc]
