"""Merge rules for several Compose files (compose-spec 13-merge.md, compose-go override/merge.go)."""

from __future__ import annotations

import copy

import pytest

from compose.errors import InvalidProjectError, Location
from compose.loader.merge import enforce_unicity, merge_documents, merge_service


def svc(**attrs):
    """A one-service document `web`."""
    return {"services": {"web": attrs}}


def web(doc):
    return doc["services"]["web"]


def port(target, published=None, **extra):
    entry = {"target": target, "protocol": "tcp", "mode": "ingress", **extra}
    if published is not None:
        entry["published"] = published
    return entry


# --- mappings and scalars --------------------------------------------------------------------------


def test_mappings_merge_key_by_key_later_wins():
    base = svc(image="nginx:1.25", restart="always", healthcheck={"interval": "30s", "retries": 3})
    over = svc(image="nginx:1.27", healthcheck={"retries": 5})
    out = web(merge_documents(base, over))
    assert out == {
        "image": "nginx:1.27",
        "restart": "always",
        "healthcheck": {"interval": "30s", "retries": 5},
    }


def test_new_services_and_top_level_resources_are_added():
    base = {"services": {"web": {"image": "a"}}, "volumes": {"data": {}}}
    over = {"services": {"db": {"image": "postgres"}}, "volumes": {"logs": {"driver": "local"}}}
    out = merge_documents(base, over)
    assert set(out["services"]) == {"web", "db"}
    assert out["volumes"] == {"data": {}, "logs": {"driver": "local"}}


def test_inputs_are_not_modified():
    base = svc(image="a", ports=[port(80, "8080")], environment={"A": "1"})
    over = svc(ports=[port(443, "8443")], environment={"B": "2"})
    base_copy, over_copy = copy.deepcopy(base), copy.deepcopy(over)
    out = merge_documents(base, over)
    out["services"]["web"]["environment"]["C"] = "3"
    out["services"]["web"]["ports"].append(port(1))
    assert base == base_copy and over == over_copy


def test_null_override_keeps_base_value():
    base = svc(image="a", networks={"front": {"aliases": ["w"]}})
    over = svc(networks={"front": None, "back": None})
    assert web(merge_documents(base, over))["networks"] == {"front": {"aliases": ["w"]}, "back": None}


def test_x_extensions_are_merged_deeply():
    base = {"x-common": {"a": 1, "b": {"c": 2}}, "services": {}}
    over = {"x-common": {"b": {"d": 3}}}
    assert merge_documents(base, over)["x-common"] == {"a": 1, "b": {"c": 2, "d": 3}}


def test_mapping_replaced_by_scalar_is_an_error_with_location():
    def locate(path):
        return Location("override.yaml", 4, 7)

    with pytest.raises(InvalidProjectError) as info:
        merge_documents(
            svc(build={"context": "."}, deploy={"resources": {}}), svc(deploy=["x"]), locate=locate
        )
    assert info.value.path == ("services", "web", "deploy")
    assert info.value.location == Location("override.yaml", 4, 7)


def test_empty_base_is_the_first_file():
    doc = svc(image="a", ports=[port(80, "8080"), port(80, "8080", mode="host")])
    out = merge_documents({}, doc)
    assert web(out)["ports"] == [port(80, "8080", mode="host")]


# --- replaced, not appended ----------------------------------------------------------------------


@pytest.mark.parametrize("key", ["command", "entrypoint"])
def test_command_and_entrypoint_replace(key):
    out = merge_documents(svc(**{key: ["echo", "foo"]}), svc(**{key: ["echo", "bar"]}))
    assert web(out)[key] == ["echo", "bar"]


def test_healthcheck_test_replaces_but_rest_merges():
    base = svc(healthcheck={"test": ["CMD", "curl", "-f", "http://localhost"], "interval": "10s"})
    over = svc(healthcheck={"test": ["CMD-SHELL", "true"]})
    assert web(merge_documents(base, over))["healthcheck"] == {
        "test": ["CMD-SHELL", "true"],
        "interval": "10s",
    }


def test_each_ulimit_is_replaced_whole():
    base = svc(ulimits={"nofile": {"soft": 1024, "hard": 4096}, "nproc": 65535})
    over = svc(ulimits={"nofile": {"soft": 2048}})
    assert web(merge_documents(base, over))["ulimits"] == {"nofile": {"soft": 2048}, "nproc": 65535}


# --- key/value maps ------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["environment", "labels", "annotations", "sysctls"])
def test_key_value_maps_merge_and_null_unsets(key):
    base = svc(**{key: {"A": "1", "B": "2"}})
    over = svc(**{key: {"B": None, "C": "3"}})
    assert web(merge_documents(base, over))[key] == {"A": "1", "B": None, "C": "3"}


def test_build_args_and_labels_merge():
    base = svc(build={"context": ".", "args": {"V": "1", "W": "2"}, "labels": {"a": "x"}})
    over = svc(build={"dockerfile": "Dockerfile.dev", "args": {"W": "3"}, "labels": {"b": "y"}})
    assert web(merge_documents(base, over))["build"] == {
        "context": ".",
        "dockerfile": "Dockerfile.dev",
        "args": {"V": "1", "W": "3"},
        "labels": {"a": "x", "b": "y"},
    }


def test_build_string_is_a_context():
    out = merge_documents(svc(build="./app"), svc(build={"target": "dev"}))
    assert web(out)["build"] == {"context": "./app", "target": "dev"}


def test_network_and_volume_labels_merge():
    base = {"networks": {"n": {"labels": {"a": "1"}}}, "volumes": {"v": {"labels": {"x": "1"}}}}
    over = {"networks": {"n": {"labels": {"b": "2"}}}, "volumes": {"v": {"labels": {"x": "2"}}}}
    out = merge_documents(base, over)
    assert out["networks"]["n"]["labels"] == {"a": "1", "b": "2"}
    assert out["volumes"]["v"]["labels"] == {"x": "2"}


def test_non_canonical_key_value_list_still_merges():
    out = merge_documents(svc(environment=["A=1", "B=2"]), svc(environment={"A": "9"}))
    assert web(out)["environment"] == {"A": "9", "B": "2"}


# --- sequences: append, then unique ---------------------------------------------------------------


def test_plain_sequences_append():
    base = svc(security_opt=["label:disable"], group_add=["audio"], external_links=["redis"])
    over = svc(security_opt=["no-new-privileges:true"], group_add=["video"], external_links=["redis"])
    out = web(merge_documents(base, over))
    assert out["security_opt"] == ["label:disable", "no-new-privileges:true"]
    assert out["group_add"] == ["audio", "video"]
    assert out["external_links"] == ["redis", "redis"]  # compose-go has no uniqueness rule for these


def test_ports_unique_by_host_ip_target_published_protocol():
    base = svc(ports=[port(80, "8080"), port(53, "53", protocol="udp"), port(443, "8443")])
    over = svc(
        ports=[
            port(80, "8080", mode="host"),  # same key: replaces in place
            port(53, "53"),  # tcp, differs from udp
            port(443, "8443", host_ip="127.0.0.1"),  # other host ip
            port(9000),  # unpublished
        ]
    )
    assert web(merge_documents(base, over))["ports"] == [
        port(80, "8080", mode="host"),
        port(53, "53", protocol="udp"),
        port(443, "8443"),
        port(53, "53"),
        port(443, "8443", host_ip="127.0.0.1"),
        port(9000),
    ]


def test_volumes_unique_by_target_later_replaces_in_place():
    base = svc(
        volumes=[
            {"type": "bind", "source": "./src", "target": "/app", "bind": {"create_host_path": True}},
            {"type": "volume", "source": "data", "target": "/data", "volume": {}},
        ]
    )
    over = svc(
        volumes=[
            {"type": "bind", "source": "./other", "target": "/app", "read_only": True},
            {"type": "tmpfs", "target": "/tmp"},
        ]
    )
    assert web(merge_documents(base, over))["volumes"] == [
        {"type": "bind", "source": "./other", "target": "/app", "read_only": True},
        {"type": "volume", "source": "data", "target": "/data", "volume": {}},
        {"type": "tmpfs", "target": "/tmp"},
    ]


def test_devices_unique_by_target():
    base = svc(devices=["/dev/ttyUSB0:/dev/ttyUSB0", {"source": "/dev/sda", "target": "/dev/xvda"}])
    over = svc(devices=["/dev/ttyUSB1:/dev/ttyUSB0:rwm"])
    assert web(merge_documents(base, over))["devices"] == [
        "/dev/ttyUSB1:/dev/ttyUSB0:rwm",
        {"source": "/dev/sda", "target": "/dev/xvda"},
    ]


def test_secrets_unique_by_target_with_default_target():
    base = svc(secrets=[{"source": "db_pass"}, {"source": "api", "target": "/etc/api"}])
    over = svc(
        secrets=[
            {"source": "db_pass", "mode": "0400"},  # default target /run/secrets/db_pass: same
            {"source": "api2", "target": "/etc/api"},  # same explicit target
            {"source": "other", "target": "/run/secrets/db_pass2"},
        ]
    )
    assert web(merge_documents(base, over))["secrets"] == [
        {"source": "db_pass", "mode": "0400"},
        {"source": "api2", "target": "/etc/api"},
        {"source": "other", "target": "/run/secrets/db_pass2"},
    ]


def test_secret_explicit_default_target_equals_implicit_one():
    base = svc(secrets=[{"source": "tok"}])
    over = svc(secrets=[{"source": "tok2", "target": "/run/secrets/tok"}])
    assert web(merge_documents(base, over))["secrets"] == [{"source": "tok2", "target": "/run/secrets/tok"}]


def test_configs_default_target_is_slash_source():
    base = svc(configs=[{"source": "nginx.conf"}])
    over = svc(
        configs=[{"source": "alt", "target": "/nginx.conf"}, {"source": "nginx.conf", "target": "/etc/n"}]
    )
    assert web(merge_documents(base, over))["configs"] == [
        {"source": "alt", "target": "/nginx.conf"},
        {"source": "nginx.conf", "target": "/etc/n"},
    ]


def test_env_file_unique_by_path():
    base = svc(env_file=[{"path": "a.env", "required": True}, {"path": "b.env", "required": True}])
    over = svc(env_file=[{"path": "a.env", "required": False}, {"path": "c.env", "required": True}])
    assert web(merge_documents(base, over))["env_file"] == [
        {"path": "a.env", "required": False},
        {"path": "b.env", "required": True},
        {"path": "c.env", "required": True},
    ]


@pytest.mark.parametrize(
    "key, base, over, want",
    [
        ("expose", ["80", "443"], ["443", "8080"], ["80", "443", "8080"]),
        ("dns", ["1.1.1.1"], ["8.8.8.8", "1.1.1.1"], ["1.1.1.1", "8.8.8.8"]),
        ("dns_search", ["a.local"], ["a.local"], ["a.local"]),
        ("dns_opt", ["use-vc"], ["no-tld-query"], ["use-vc", "no-tld-query"]),
        ("cap_add", ["NET_ADMIN", "SYS_TIME"], ["NET_ADMIN"], ["NET_ADMIN", "SYS_TIME"]),
        ("cap_drop", ["ALL"], ["ALL"], ["ALL"]),
        ("profiles", ["dev"], ["dev", "debug"], ["dev", "debug"]),
        ("links", ["db:database"], ["db:database", "cache"], ["db:database", "cache"]),
        ("tmpfs", ["/run"], ["/run", "/tmp"], ["/run", "/tmp"]),
    ],
)
def test_value_lists_unique(key, base, over, want):
    assert web(merge_documents(svc(**{key: base}), svc(**{key: over})))[key] == want


def test_extra_hosts_drop_exact_duplicates_only():
    base = svc(extra_hosts=["db=10.0.0.2", "cache=10.0.0.3"])
    over = svc(extra_hosts=["db=10.0.0.2", "db=fd00::2", "api=10.0.0.4"])
    assert web(merge_documents(base, over))["extra_hosts"] == [
        "db=10.0.0.2",
        "cache=10.0.0.3",
        "db=fd00::2",
        "api=10.0.0.4",
    ]


def test_network_aliases_unique_and_mapping_merge():
    base = svc(networks={"front": {"aliases": ["a1", "a2"], "ipv4_address": "172.16.0.2"}, "back": None})
    over = svc(networks={"front": {"aliases": ["a3", "a1"]}})
    assert web(merge_documents(base, over))["networks"] == {
        "front": {"aliases": ["a1", "a2", "a3"], "ipv4_address": "172.16.0.2"},
        "back": None,
    }


def test_enforce_unicity_is_idempotent_and_standalone():
    doc = svc(ports=[port(80, "80"), port(80, "80")], cap_add=["A", "A"])
    once = enforce_unicity(doc)
    assert web(once) == {"ports": [port(80, "80")], "cap_add": ["A"]}
    assert enforce_unicity(once) == once


# --- special mappings -----------------------------------------------------------------------------


def test_depends_on_entries_merge():
    base = svc(depends_on={"db": {"condition": "service_healthy", "required": True}})
    over = svc(
        depends_on={
            "db": {"condition": "service_healthy", "required": True, "restart": True},
            "cache": {"condition": "service_started", "required": False},
        }
    )
    assert web(merge_documents(base, over))["depends_on"] == {
        "db": {"condition": "service_healthy", "required": True, "restart": True},
        "cache": {"condition": "service_started", "required": False},
    }


def test_depends_on_list_gets_defaults():
    out = merge_documents(svc(depends_on=["db"]), svc(depends_on={"cache": {"condition": "service_healthy"}}))
    assert web(out)["depends_on"] == {
        "db": {"condition": "service_started", "required": True},
        "cache": {"condition": "service_healthy"},
    }


def test_logging_same_driver_merges_options():
    base = svc(logging={"driver": "json-file", "options": {"max-size": "10m", "max-file": "3"}})
    over = svc(logging={"driver": "json-file", "options": {"max-size": "20m"}})
    assert web(merge_documents(base, over))["logging"] == {
        "driver": "json-file",
        "options": {"max-size": "20m", "max-file": "3"},
    }


def test_logging_other_driver_drops_old_options():
    base = svc(logging={"driver": "json-file", "options": {"max-size": "10m"}})
    over = svc(logging={"driver": "syslog", "options": {"syslog-address": "udp://1.2.3.4:514"}})
    assert web(merge_documents(base, over))["logging"] == {
        "driver": "syslog",
        "options": {"syslog-address": "udp://1.2.3.4:514"},
    }


def test_logging_without_driver_in_override_merges():
    base = svc(logging={"driver": "json-file", "options": {"max-size": "10m"}})
    over = svc(logging={"options": {"max-file": "2"}})
    assert web(merge_documents(base, over))["logging"] == {
        "driver": "json-file",
        "options": {"max-size": "10m", "max-file": "2"},
    }


def test_ipam_config_merges_by_subnet():
    base = {
        "networks": {
            "n": {
                "ipam": {
                    "driver": "default",
                    "config": [
                        {
                            "subnet": "172.28.0.0/16",
                            "gateway": "172.28.5.254",
                            "aux_addresses": {"host1": "172.28.1.5", "host3": "172.28.1.7"},
                        }
                    ],
                }
            }
        }
    }
    over = {
        "networks": {
            "n": {
                "ipam": {
                    "config": [
                        {
                            "subnet": "172.28.0.0/16",
                            "ip_range": "172.28.5.0/24",
                            "aux_addresses": {"host1": "x"},
                        },
                        {"subnet": "10.10.0.0/16"},
                    ]
                }
            }
        }
    }
    assert merge_documents(base, over)["networks"]["n"]["ipam"] == {
        "driver": "default",
        "config": [
            {
                "subnet": "172.28.0.0/16",
                "gateway": "172.28.5.254",
                "ip_range": "172.28.5.0/24",
                "aux_addresses": {"host1": "x", "host3": "172.28.1.7"},
            },
            {"subnet": "10.10.0.0/16"},
        ],
    }


# --- !reset and !override ---------------------------------------------------------------------------


def test_reset_removes_key_from_base():
    base = svc(
        image="a", ports=[port(80, "8080")], build={"context": "."}, environment={"FOO": "BAR", "X": "1"}
    )
    over = svc(image="b")  # yamlparse already dropped the !reset values
    tags = {
        ("services", "web", "ports"): "reset",
        ("services", "web", "build"): "reset",
        ("services", "web", "environment", "FOO"): "reset",
    }
    assert web(merge_documents(base, over, tags=tags)) == {"image": "b", "environment": {"X": "1"}}


def test_reset_whole_service_and_top_level_resource():
    base = {
        "services": {"web": {"image": "a"}, "db": {"image": "pg"}},
        "networks": {"test": {"external": True}},
    }
    over = {"services": {"db": {"image": "pg:16"}}}
    tags = {("services", "web"): "reset", ("networks", "test"): "reset"}
    out = merge_documents(base, over, tags=tags)
    assert out == {"services": {"db": {"image": "pg:16"}}, "networks": {}}


def test_override_replaces_sequence_wholesale():
    base = svc(ports=[port(80, "8080"), port(443, "8443")])
    over = svc(ports=[port(9000, "9000")])
    out = merge_documents(base, over, tags={("services", "web", "ports"): "override"})
    assert web(out)["ports"] == [port(9000, "9000")]


def test_override_replaces_mapping_wholesale():
    base = {"networks": {"test": {"name": "test", "external": True}}}
    over = {"networks": {"test": {}}}
    assert merge_documents(base, over, tags={("networks", "test"): "override"})["networks"] == {"test": {}}


def test_override_environment_drops_earlier_keys():
    base = svc(environment={"A": "1", "B": "2"})
    over = svc(environment={"B": "3"})
    out = merge_documents(base, over, tags={("services", "web", "environment"): "override"})
    assert web(out)["environment"] == {"B": "3"}


def test_tag_on_missing_path_or_sequence_item_is_harmless():
    base = svc(ports=[port(80, "8080")])
    tags = {("services", "api", "ports"): "reset", ("services", "web", "ports", 0): "reset"}
    assert web(merge_documents(base, svc(), tags=tags))["ports"] == [port(80, "8080")]


def test_tags_only_touch_the_base_not_the_override():
    base = svc(command=["a"])
    over = svc(command=["b"])
    out = merge_documents(base, over, tags={("services", "web", "command"): "override"})
    assert web(out)["command"] == ["b"]


# --- merge_service --------------------------------------------------------------------------------


def test_merge_service_applies_service_rules():
    base = {"image": "a", "command": ["x"], "ports": [port(80, "80")], "environment": {"A": "1"}}
    over = {"command": ["y"], "ports": [port(80, "80", mode="host")], "environment": {"B": "2"}}
    assert merge_service(base, over) == {
        "image": "a",
        "command": ["y"],
        "ports": [port(80, "80", mode="host")],
        "environment": {"A": "1", "B": "2"},
    }


def test_merge_service_matches_tags_under_prefix():
    base = {"image": "a", "volumes": [{"type": "volume", "target": "/x"}], "labels": {"k": "v"}}
    tags = {("services", "web", "volumes"): "reset", ("services", "other", "labels"): "reset"}
    out = merge_service(base, {"image": "b"}, tags=tags, prefix=("services", "web"))
    assert out == {"image": "b", "labels": {"k": "v"}}


def test_merge_service_relative_tags_without_prefix():
    out = merge_service({"image": "a", "cap_add": ["X"]}, {}, tags={("cap_add",): "reset"})
    assert out == {"image": "a"}
