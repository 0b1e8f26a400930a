"""Stage 4: the Compose JSON schema and `schema.validate`."""

from __future__ import annotations

import copy
import time

import pytest

from compose.errors import Location, SchemaError
from compose.loader import schema
from compose.loader.yamlparse import parse_yaml


def svc(**attrs: object) -> dict:
    """A one-service document."""
    return {"services": {"web": {"image": "nginx:1.27", **attrs}}}


def error_of(doc: object) -> SchemaError:
    with pytest.raises(SchemaError) as info:
        schema.validate(doc)
    return info.value


def jsonschema_accepts(doc: object) -> bool:
    """The reference answer: plain jsonschema over the schema file as written ($refs and all)."""
    import jsonschema

    return jsonschema.Draft7Validator(schema.load_schema()).is_valid(doc)


# ---------------------------------------------------------------- documents that must pass

VALID: dict[str, object] = {
    "empty": {},
    "minimal": svc(),
    "version_obsolete_name_and_extensions": {
        "version": "3.8",
        "name": "shop",
        "x-common": {"restart": "always", "anything": [1, 2]},
        "services": {"web": {"image": "nginx", "x-meta": {"team": "a"}}},
    },
    "include_short_and_long": {
        "include": [
            "../common/compose.yaml",
            {"path": ["a.yaml", "b.yaml"], "env_file": ".env.inc", "project_directory": ".."},
            {"path": "c.yaml", "env_file": ["x.env"]},
        ]
    },
    "models_top_and_service": {
        "models": {"llm": {"model": "ai/smollm2", "context_size": 4096, "runtime_flags": ["--verbose"]}},
        "services": {
            "app": {"image": "app", "models": ["llm"]},
            "app2": {"image": "app", "models": {"llm": {"endpoint_var": "AI_URL", "model_var": "AI_MODEL"}}},
        },
    },
    "build_string": svc(build="./app"),
    "build_full": svc(
        build={
            "context": "https://github.com/example/app.git#main",
            "dockerfile": "Dockerfile.prod",
            "args": ["VERSION=1.2", "DEBUG"],
            "ssh": ["default"],
            "labels": {"org.example.team": "web"},
            "cache_from": ["type=registry,ref=cache"],
            "cache_to": ["type=inline"],
            "no_cache": "true",
            "additional_contexts": {"base": "docker-image://alpine"},
            "network": "host",
            "pull": True,
            "target": "prod",
            "shm_size": "2g",
            "extra_hosts": ["somehost:162.242.195.82"],
            "isolation": "default",
            "privileged": False,
            "secrets": ["npm_token", {"source": "ssh_key", "target": "id_rsa", "mode": 256}],
            "tags": ["app:latest"],
            "ulimits": {"nofile": 1024},
            "platforms": ["linux/amd64", "linux/arm64"],
            "entitlements": ["network.host"],
            "provenance": True,
            "sbom": "true",
            "x-build-note": "ok",
        }
    ),
    "build_inline_dockerfile": svc(build={"dockerfile_inline": "FROM alpine\nRUN true\n"}),
    "ports_short_and_long": svc(
        ports=[
            3000,
            "8080:80",
            "127.0.0.1:5000-5010:5000-5010/udp",
            "${WEB_PORT:-80}:80",
            {"target": 80, "published": "8081", "host_ip": "0.0.0.0", "protocol": "tcp", "mode": "host"},
            {"target": "443", "published": 8443, "name": "https", "app_protocol": "https"},
        ],
        expose=["3000", 8000, "9000-9010/udp"],
    ),
    "volumes_short_and_long": {
        "services": {
            "db": {
                "image": "postgres",
                "volumes": [
                    "./data:/var/lib/postgresql/data:rw",
                    "dbdata:/data",
                    "/anonymous",
                    {
                        "type": "bind",
                        "source": "./conf",
                        "target": "/etc/conf",
                        "read_only": "true",
                        "bind": {
                            "create_host_path": True,
                            "propagation": "rshared",
                            "selinux": "z",
                            "recursive": "readonly",
                        },
                    },
                    {
                        "type": "volume",
                        "source": "dbdata",
                        "target": "/v",
                        "volume": {"nocopy": True, "subpath": "sub", "labels": ["a=b"]},
                    },
                    {"type": "tmpfs", "target": "/tmp", "tmpfs": {"size": "64m", "mode": 1777}},
                    {"type": "image", "source": "alpine", "target": "/img", "image": {"subpath": "etc"}},
                    {"type": "npipe", "source": "\\\\.\\pipe\\docker_engine", "target": "\\\\.\\pipe\\x"},
                ],
                "volumes_from": ["other:ro"],
                "tmpfs": "/run",
            },
            "other": {"image": "busybox", "tmpfs": ["/a", "/b:size=10m"]},
        },
        "volumes": {
            "dbdata": None,
            "named": {
                "name": "my-data",
                "driver": "local",
                "driver_opts": {"type": "nfs", "o": 1},
                "labels": {"a": "b"},
            },
            "ext": {"external": True},
            "legacy": {"external": {"name": "old-volume"}},
        },
    },
    "environment_labels_lists_and_maps": svc(
        environment={"DEBUG": "true", "RETRIES": 3, "RATIO": 0.5, "ENABLED": True, "PASSTHROUGH": None},
        labels=["com.example.a=1", "com.example.b"],
        annotations={"com.example.note": "x"},
        sysctls=["net.core.somaxconn=1024"],
        env_file=["./common.env", {"path": "./opt.env", "required": False, "format": "raw"}],
        label_file="./labels.txt",
    ),
    "env_file_string_and_label_file_list": svc(env_file=".env", label_file=["a.labels", "b.labels"]),
    "command_forms": {
        "services": {
            "a": {"image": "x", "command": "echo hello", "entrypoint": ["/bin/sh", "-c"]},
            "b": {"image": "x", "command": ["npm", "start"], "entrypoint": "/entry.sh"},
            "c": {"image": "x", "command": None, "entrypoint": []},
        }
    },
    "depends_on_list_and_map": {
        "services": {
            "web": {"image": "x", "depends_on": ["db", "cache"]},
            "api": {
                "image": "x",
                "depends_on": {
                    "db": {"condition": "service_healthy", "restart": True, "required": False},
                    "migrate": {"condition": "service_completed_successfully"},
                    "cache": {"condition": "service_started", "x-why": "warm"},
                },
            },
        }
    },
    "healthcheck_forms": {
        "services": {
            "a": {
                "image": "x",
                "healthcheck": {
                    "test": "curl -f http://localhost",
                    "interval": "30s",
                    "timeout": "${HC_TIMEOUT:-5s}",
                    "retries": "3",
                    "start_period": "1m",
                    "start_interval": "5s",
                },
            },
            "b": {"image": "x", "healthcheck": {"test": ["CMD", "pg_isready"], "retries": 5}},
            "c": {"image": "x", "healthcheck": {"disable": True}},
        }
    },
    "networks_service_forms_and_top_level": {
        "services": {
            "a": {"image": "x", "networks": ["front", "back"]},
            "b": {
                "image": "x",
                "networks": {
                    "front": None,
                    "back": {
                        "aliases": ["db"],
                        "ipv4_address": "172.16.238.10",
                        "ipv6_address": "2001:db8::10",
                        "link_local_ips": ["169.254.1.1"],
                        "mac_address": "02:42:ac:11:00:02",
                        "interface_name": "eth1",
                        "driver_opts": {"com.docker.network.mtu": 1400},
                        "priority": 100,
                        "gw_priority": 1,
                    },
                },
            },
            "c": {"image": "x", "network_mode": "service:a"},
        },
        "networks": {
            "front": None,
            "back": {
                "driver": "bridge",
                "driver_opts": {"com.docker.network.bridge.name": "br-back"},
                "ipam": {
                    "driver": "default",
                    "config": [
                        {
                            "subnet": "172.16.238.0/24",
                            "gateway": "172.16.238.1",
                            "ip_range": "172.16.238.0/25",
                            "aux_addresses": {"host1": "172.16.238.5"},
                        }
                    ],
                    "options": {"foo": "bar"},
                },
                "internal": "false",
                "attachable": True,
                "enable_ipv4": True,
                "enable_ipv6": "true",
                "labels": ["tier=back"],
                "name": "backnet",
                "x-note": 1,
            },
            "outside": {"external": True, "name": "host-net"},
            "legacy": {"external": {"name": "legacy-net"}},
        },
    },
    "secrets_and_configs": {
        "services": {
            "web": {
                "image": "x",
                "secrets": [
                    "db_pass",
                    {"source": "api_key", "target": "/run/key", "uid": "103", "gid": "103", "mode": 0o440},
                ],
                "configs": ["nginx_conf", {"source": "app_conf", "target": "/etc/app.conf", "mode": "0444"}],
            }
        },
        "secrets": {
            "db_pass": {"file": "./db_pass.txt"},
            "api_key": {"environment": "API_KEY", "labels": {"a": "b"}},
            "ext": {"external": True, "name": "prod_key"},
            "tmpl": {"file": "x", "driver": "d", "driver_opts": {"a": 1}, "template_driver": "golang"},
        },
        "configs": {
            "nginx_conf": {"file": "./nginx.conf"},
            "app_conf": {"content": "debug=${DEBUG}\n"},
            "env_conf": {"environment": "APP_CONF"},
            "ext": {"external": True},
        },
    },
    "deploy_all_subkeys": svc(
        deploy={
            "mode": "replicated",
            "replicas": "${REPLICAS:-2}",
            "endpoint_mode": "vip",
            "labels": {"com.example.description": "web"},
            "resources": {
                "limits": {"cpus": "0.50", "memory": "512M", "pids": 100},
                "reservations": {
                    "cpus": 0.25,
                    "memory": "20M",
                    "devices": [
                        {
                            "driver": "nvidia",
                            "count": "all",
                            "capabilities": ["gpu"],
                            "device_ids": ["0"],
                            "options": {"virtualization": False},
                        }
                    ],
                    "generic_resources": [{"discrete_resource_spec": {"kind": "gpu", "value": 2}}],
                },
            },
            "restart_policy": {"condition": "on-failure", "delay": "5s", "max_attempts": 3, "window": "120s"},
            "update_config": {
                "parallelism": 2,
                "delay": "10s",
                "order": "stop-first",
                "failure_action": "rollback",
                "monitor": "60s",
                "max_failure_ratio": 0.3,
            },
            "rollback_config": {"parallelism": 0, "order": "start-first"},
            "placement": {
                "constraints": ["node.role == manager"],
                "preferences": [{"spread": "node.labels.zone"}],
                "max_replicas_per_node": 1,
            },
        }
    ),
    "deploy_null_develop_null": svc(deploy=None, develop=None),
    "develop_watch": svc(
        develop={
            "watch": [
                {
                    "path": "./src",
                    "action": "sync",
                    "target": "/app/src",
                    "ignore": "node_modules/",
                    "initial_sync": True,
                },
                {"path": "package.json", "action": "rebuild"},
                {
                    "path": "./conf",
                    "action": "sync+exec",
                    "target": "/etc/app",
                    "exec": {"command": ["reload"], "user": "root"},
                    "include": ["*.conf"],
                },
                {"path": "./x", "action": "sync+restart", "target": "/x"},
            ]
        }
    ),
    "hooks": svc(
        post_start=[
            {
                "command": "chown -R app /data",
                "user": "root",
                "privileged": True,
                "working_dir": "/data",
                "environment": {"A": "1"},
            }
        ],
        pre_stop=[{"command": ["./drain.sh"], "environment": ["GRACE=10"]}],
    ),
    "provider_and_socket": {
        "services": {
            "db": {
                "provider": {
                    "type": "awesomecloud",
                    "options": {"type": "mysql", "size": 256, "tags": ["a", 1, True]},
                }
            },
            "app": {"image": "x", "use_api_socket": True},
        }
    },
    "scalars_as_interpolated_strings": svc(
        init="true",
        privileged="false",
        read_only="yes",
        stdin_open="1",
        tty="true",
        oom_kill_disable="false",
        cpu_count="2",
        cpu_percent="50",
        cpus="0.5",
        cpu_shares="512",
        cpu_quota="50000",
        cpu_period="100000",
        cpu_rt_period="1000",
        cpu_rt_runtime="950",
        mem_limit="1g",
        mem_reservation="512m",
        memswap_limit="2g",
        mem_swappiness="60",
        oom_score_adj="-500",
        pids_limit="100",
        scale="3",
        shm_size="64m",
        attach="false",
    ),
    "scalars_as_numbers": svc(
        init=True,
        cpu_count=2,
        cpu_percent=50,
        cpus=1.5,
        cpu_shares=512,
        mem_limit=1073741824,
        mem_reservation=536870912,
        memswap_limit=-1,
        mem_swappiness=0,
        oom_score_adj=-1000,
        pids_limit=-1,
        scale=2,
        shm_size=67108864,
        blkio_config={
            "weight": 300,
            "weight_device": [{"path": "/dev/sda", "weight": 400}],
            "device_read_bps": [{"path": "/dev/sdb", "rate": "12mb"}],
            "device_write_iops": [{"path": "/dev/sdb", "rate": 30}],
        },
    ),
    "misc_strings_and_lists": svc(
        cap_add=["NET_ADMIN"],
        cap_drop=["ALL"],
        cgroup="private",
        cgroup_parent="m-executor",
        container_name="my-web",
        cpuset="0-3",
        credential_spec={"config": "my_credential_spec"},
        device_cgroup_rules=["c 1:3 mr"],
        devices=[
            "/dev/ttyUSB0:/dev/ttyUSB0",
            {"source": "/dev/sda", "target": "/dev/xvda", "permissions": "rwm"},
        ],
        dns="8.8.8.8",
        dns_opt=["use-vc"],
        dns_search=["dc1.example.com"],
        domainname="example.com",
        external_links=["redis_1"],
        extra_hosts={"somehost": "162.242.195.82", "multi": ["::1", "10.0.0.1"]},
        gpus="all",
        group_add=["mail", 1001],
        hostname="web",
        ipc="shareable",
        isolation="default",
        links=["db:database"],
        logging={
            "driver": "syslog",
            "options": {"syslog-address": "tcp://1.2.3.4:123", "max-file": 3, "tag": None},
        },
        mac_address="02:42:ac:11:00:02",
        pid="host",
        platform="linux/amd64",
        profiles=["debug"],
        pull_policy="every_12h",
        pull_refresh_after="1h",
        restart="on-failure:3",
        runtime="runc",
        security_opt=["label:user:USER"],
        stop_grace_period="1m30s",
        stop_signal="SIGUSR1",
        storage_opt={"size": "20G"},
        ulimits={"nproc": 65535, "nofile": {"soft": 20000, "hard": 40000}},
        user="1000:1000",
        userns_mode="host",
        uts="host",
        working_dir="/code",
    ),
    "gpus_list": svc(gpus=[{"driver": "nvidia", "count": 2, "capabilities": ["gpu"]}]),
    "extends_forms": {
        "services": {
            "base": {"image": "x"},
            "a": {"extends": "base"},
            "b": {"extends": {"service": "base", "file": "common.yaml"}},
        }
    },
    "pull_policies": {
        "services": {
            p: {"image": "x", "pull_policy": p}
            for p in (
                "always",
                "never",
                "missing",
                "build",
                "if_not_present",
                "refresh",
                "daily",
                "weekly",
                "every_1d12h",
            )
        }
    },
    "restart_is_free_text": svc(restart="whenever"),
    "float_that_is_an_integer": svc(scale=2.0),
}


@pytest.mark.parametrize("doc", VALID.values(), ids=VALID.keys())
def test_valid_documents_pass(doc: object) -> None:
    schema.validate(doc)


# ---------------------------------------------------------------- documents that must fail

INVALID: dict[str, tuple[object, tuple, str]] = {
    "unknown_top_level": (
        {"services": {}, "helicopters": {}},
        ("helicopters",),
        "additional property 'helicopters' is not allowed",
    ),
    "unknown_service_key": (
        svc(imagee="x"),
        ("services", "web", "imagee"),
        "additional property 'imagee' is not allowed",
    ),
    "unknown_build_key": (
        svc(build={"context": ".", "dockerfle": "D"}),
        ("services", "web", "build", "dockerfle"),
        "additional property 'dockerfle' is not allowed",
    ),
    "unknown_healthcheck_key": (
        svc(healthcheck={"test": "true", "intervall": "5s"}),
        ("services", "web", "healthcheck", "intervall"),
        "additional property 'intervall' is not allowed",
    ),
    "unknown_network_key": (
        {"networks": {"back": {"drver": "bridge"}}},
        ("networks", "back", "drver"),
        "additional property 'drver' is not allowed",
    ),
    "unknown_volume_key": (
        {"volumes": {"data": {"type": "local"}}},
        ("volumes", "data", "type"),
        "additional property 'type' is not allowed",
    ),
    "unknown_secret_key": (
        {"secrets": {"s": {"path": "./s"}}},
        ("secrets", "s", "path"),
        "additional property 'path' is not allowed",
    ),
    "unknown_config_key": (
        {"configs": {"c": {"contents": "x"}}},
        ("configs", "c", "contents"),
        "additional property 'contents' is not allowed",
    ),
    "unknown_deploy_key": (
        svc(deploy={"resources": {"limit": {}}}),
        ("services", "web", "deploy", "resources", "limit"),
        "additional property 'limit' is not allowed",
    ),
    "unknown_long_port_key": (
        svc(ports=[{"target": 80, "host": "0.0.0.0"}]),
        ("services", "web", "ports", 0, "host"),
        "additional property 'host' is not allowed",
    ),
    "unknown_service_network_key": (
        svc(networks={"front": {"alias": ["a"]}}),
        ("services", "web", "networks", "front", "alias"),
        "additional property 'alias' is not allowed",
    ),
    "x_not_allowed_in_blkio": (
        svc(blkio_config={"x-note": 1}),
        ("services", "web", "blkio_config", "x-note"),
        "additional property 'x-note' is not allowed",
    ),
    "bad_service_name": (
        {"services": {"my web": {"image": "x"}}},
        ("services", "my web"),
        "additional property 'my web' is not allowed",
    ),
    "image_not_string": (svc(image=5), ("services", "web", "image"), "must be a string"),
    "service_null": ({"services": {"web": None}}, ("services", "web"), "must be a mapping"),
    "services_list": ({"services": ["web"]}, ("services",), "must be a mapping"),
    "document_not_mapping": (["services"], (), "must be a mapping"),
    "secret_null": ({"secrets": {"s": None}}, ("secrets", "s"), "must be a mapping"),
    "privileged_not_bool": (
        svc(privileged=1),
        ("services", "web", "privileged"),
        "must be a boolean or string",
    ),
    "ports_item_bool": (
        svc(ports=[True]),
        ("services", "web", "ports", 0),
        "must be a string, number or mapping",
    ),
    "ports_not_list": (svc(ports="80:80"), ("services", "web", "ports"), "must be a list"),
    "port_target_list": (
        svc(ports=[{"target": [80]}]),
        ("services", "web", "ports", 0, "target"),
        "must be an integer or string",
    ),
    "build_number": (svc(build=3), ("services", "web", "build"), "must be a string or mapping"),
    "environment_string": (
        svc(environment="A=1"),
        ("services", "web", "environment"),
        "must be a mapping or list",
    ),
    "environment_nested_value": (
        svc(environment={"A": {"b": 1}}),
        ("services", "web", "environment", "A"),
        "must be a string, number, boolean or null",
    ),
    "labels_list_of_numbers": (svc(labels=[1]), ("services", "web", "labels", 0), "must be a string"),
    "command_number": (svc(command=5), ("services", "web", "command"), "must be a string, list or null"),
    "depends_on_condition_enum": (
        svc(depends_on={"db": {"condition": "service_ready"}}),
        ("services", "web", "depends_on", "db", "condition"),
        "must be one of: service_started, service_healthy, service_completed_successfully",
    ),
    "depends_on_missing_condition": (
        svc(depends_on={"db": {"required": True}}),
        ("services", "web", "depends_on", "db"),
        "missing required property 'condition'",
    ),
    "depends_on_string": (
        svc(depends_on="db"),
        ("services", "web", "depends_on"),
        "must be a list or mapping",
    ),
    "volume_type_enum": (
        svc(volumes=[{"type": "bnd", "source": "./a", "target": "/a"}]),
        ("services", "web", "volumes", 0, "type"),
        "must be one of: bind, volume, tmpfs, cluster, npipe, image",
    ),
    "volume_missing_type": (
        svc(volumes=[{"source": "./a", "target": "/a"}]),
        ("services", "web", "volumes", 0),
        "missing required property 'type'",
    ),
    "selinux_enum": (
        svc(volumes=[{"type": "bind", "source": "a", "target": "/a", "bind": {"selinux": "x"}}]),
        ("services", "web", "volumes", 0, "bind", "selinux"),
        "must be one of: z, Z",
    ),
    "cgroup_enum": (svc(cgroup="shared"), ("services", "web", "cgroup"), "must be one of: host, private"),
    "watch_action_enum": (
        svc(develop={"watch": [{"path": ".", "action": "copy"}]}),
        ("services", "web", "develop", "watch", 0, "action"),
        "must be one of: rebuild, sync, restart, sync+restart, sync+exec",
    ),
    "watch_missing_action": (
        svc(develop={"watch": [{"path": "."}]}),
        ("services", "web", "develop", "watch", 0),
        "missing required property 'action'",
    ),
    "update_order_enum": (
        svc(deploy={"update_config": {"order": "random"}}),
        ("services", "web", "deploy", "update_config", "order"),
        "must be one of: start-first, stop-first",
    ),
    "gpus_other_string": (svc(gpus="some"), ("services", "web", "gpus"), "must be one of: all"),
    "cpu_percent_range": (
        svc(cpu_percent=150),
        ("services", "web", "cpu_percent"),
        "must be less than or equal to 100",
    ),
    "oom_score_adj_range": (
        svc(oom_score_adj=-2000),
        ("services", "web", "oom_score_adj"),
        "must be greater than or equal to -1000",
    ),
    "pull_policy_unknown": (
        svc(pull_policy="sometimes"),
        ("services", "web", "pull_policy"),
        "must be one of: always, never, missing, build, refresh, daily, weekly, "
        "if_not_present or every_<duration>",
    ),
    "duplicate_ports": (
        svc(ports=["80:80", "443:443", "80:80"]),
        ("services", "web", "ports"),
        "must contain unique items, but items at index 0 and 2 are equal",
    ),
    "duplicate_cap_add": (
        svc(cap_add=["NET_ADMIN", "NET_ADMIN"]),
        ("services", "web", "cap_add"),
        "must contain unique items, but items at index 0 and 1 are equal",
    ),
    "ulimit_missing_hard": (
        svc(ulimits={"nofile": {"soft": 1}}),
        ("services", "web", "ulimits", "nofile"),
        "missing required property 'hard'",
    ),
    "hook_missing_command": (
        svc(post_start=[{"user": "root"}]),
        ("services", "web", "post_start", 0),
        "missing required property 'command'",
    ),
    "model_missing_model": (
        {"models": {"llm": {"context_size": 10}}},
        ("models", "llm"),
        "missing required property 'model'",
    ),
    "provider_missing_type": (
        {"services": {"db": {"provider": {"options": {}}}}},
        ("services", "db", "provider"),
        "missing required property 'type'",
    ),
    "include_unknown_key": (
        {"include": [{"paths": ["a.yaml"]}]},
        ("include", 0, "paths"),
        "additional property 'paths' is not allowed",
    ),
    "include_not_list": ({"include": "a.yaml"}, ("include",), "must be a list"),
    "memory_limit_number": (
        svc(deploy={"resources": {"limits": {"memory": 512}}}),
        ("services", "web", "deploy", "resources", "limits", "memory"),
        "must be a string",
    ),
    "name_not_string": ({"name": ["p"]}, ("name",), "must be a string"),
    "extends_missing_service": (
        svc(extends={"file": "a.yaml"}),
        ("services", "web", "extends"),
        "missing required property 'service'",
    ),
    "env_file_missing_path": (
        svc(env_file=[{"required": False}]),
        ("services", "web", "env_file", 0),
        "missing required property 'path'",
    ),
}


@pytest.mark.parametrize(("doc", "path", "message"), INVALID.values(), ids=INVALID.keys())
def test_invalid_documents_fail_with_path_and_message(doc: object, path: tuple, message: str) -> None:
    err = error_of(doc)
    assert err.path == path
    assert err.message == message
    assert err.location is None


@pytest.mark.parametrize(
    "doc", [*VALID.values(), *(case[0] for case in INVALID.values())], ids=[*VALID.keys(), *INVALID.keys()]
)
def test_fast_check_agrees_with_jsonschema(doc: object) -> None:
    fast = schema._get_fast_check(True)
    assert fast is not None
    assert fast(doc) == jsonschema_accepts(doc)


_ODD_VALUES = [
    None,
    True,
    0,
    -1,
    2.5,
    "",
    "x-y",
    "service_healthy",
    [],
    ["a", "a"],
    [1],
    {},
    {"x-a": 1},
    {"bogus": 1},
    {"condition": "service_started"},
    {"target": 80},
]


def _leaf_paths(node: object, path: tuple = ()) -> list[tuple]:
    out = [path]
    if isinstance(node, dict):
        for key, value in node.items():
            out += _leaf_paths(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            out += _leaf_paths(value, (*path, index))
    return out


def _replace(doc: object, path: tuple, value: object) -> object:
    if not path:
        return value
    copied = copy.deepcopy(doc)
    parent = copied
    for part in path[:-1]:
        parent = parent[part]  # type: ignore[index]
    parent[path[-1]] = value  # type: ignore[index]
    return copied


def test_fast_check_agrees_with_jsonschema_on_mutated_documents() -> None:
    """Random single-value mutations of the valid documents: both checkers must give the same answer."""
    import random

    import jsonschema

    reference = jsonschema.Draft7Validator(schema.load_schema())
    fast = schema._get_fast_check(True)
    assert fast is not None
    rng = random.Random(20240607)
    rejected = 0
    for base in VALID.values():
        paths = _leaf_paths(base)
        for _ in range(40):
            mutated = _replace(base, rng.choice(paths), copy.deepcopy(rng.choice(_ODD_VALUES)))
            expected = reference.is_valid(mutated)
            assert fast(mutated) == expected, mutated
            if not expected:
                rejected += 1
                message = error_of(mutated).message
                assert "under any of" not in message and "is not of type" not in message, message
    assert rejected > 300  # the mutations really exercise failures


def test_require_false_accepts_override_fragments_but_still_checks_the_rest() -> None:
    fragment = svc(
        depends_on={"db": {"required": False}},
        volumes=[{"target": "/data", "read_only": True}],
        ulimits={"nofile": {"soft": 10}},
        env_file=[{"required": False}],
    )
    schema.validate(fragment, require=False)
    assert error_of(fragment).message.startswith("missing required property")
    with pytest.raises(SchemaError) as info:
        schema.validate(svc(depends_on={"db": {"required": False, "bogus": 1}}), require=False)
    assert info.value.path == ("services", "web", "depends_on", "db", "bogus")
    with pytest.raises(SchemaError) as info:
        schema.validate({"services": {"web": {"env_file": [{"required": "x", "path": 3}]}}}, require=False)
    assert info.value.path == ("services", "web", "env_file", 0, "path")


def test_deepest_error_wins_over_shallow_one() -> None:
    doc = {"helicopters": 1, "services": {"web": {"image": "x", "ports": [{"target": 80, "bogus": 1}]}}}
    err = error_of(doc)
    assert err.path == ("services", "web", "ports", 0, "bogus")


def test_location_comes_from_locate_for_the_error_path() -> None:
    text = "services:\n  web:\n    image: nginx\n    ports:\n      - target: 80\n        bogus: 1\n"
    (parsed,) = parse_yaml(text, "compose.yaml")
    seen: list[tuple] = []

    def locate(path: tuple) -> Location:
        seen.append(path)
        return parsed.locate(path)

    with pytest.raises(SchemaError) as info:
        schema.validate(parsed.data, locate=locate)
    assert seen == [("services", "web", "ports", 0, "bogus")]
    assert info.value.location == Location("compose.yaml", 6, 9)
    assert str(info.value) == (
        "compose.yaml:6:9: services.web.ports[0].bogus: additional property 'bogus' is not allowed"
    )


def test_yaml_scalars_as_parsed_pass() -> None:
    """Values as the YAML stage types them: `80:80` stays a string, `yes` too, 0755 is octal-less int."""
    text = (
        "services:\n  web:\n    image: nginx\n    ports: [80:80, 443]\n    tty: yes\n"
        "    secrets:\n      - source: s\n        mode: 0440\n"
        "secrets:\n  s:\n    file: ./s.txt\n"
    )
    (parsed,) = parse_yaml(text, "compose.yaml")
    schema.validate(parsed.data)


SERVICE_ATTRIBUTES = """
annotations attach blkio_config build cap_add cap_drop cgroup cgroup_parent command configs container_name
cpu_count cpu_percent cpu_shares cpu_quota cpu_period cpu_rt_period cpu_rt_runtime cpus cpuset credential_spec
depends_on deploy develop device_cgroup_rules devices dns dns_opt dns_search domainname entrypoint env_file
environment expose extends external_links extra_hosts gpus group_add healthcheck hostname image init ipc
isolation label_file labels links logging mac_address mem_limit mem_reservation mem_swappiness memswap_limit
models network_mode networks oom_kill_disable oom_score_adj pid pids_limit platform ports post_start pre_start
pre_stop privileged profiles provider pull_policy pull_refresh_after read_only restart runtime scale secrets
security_opt shm_size stdin_open stop_grace_period stop_signal storage_opt sysctls tmpfs tty ulimits
use_api_socket user userns_mode uts volumes volumes_from working_dir
"""


def test_every_spec_service_attribute_is_known() -> None:
    """The ~92 service attributes of the Compose Specification (plus pre_start), no more, no fewer."""
    expected = set(SERVICE_ATTRIBUTES.split())
    properties = schema.load_schema()["definitions"]["service"]["properties"]
    assert set(properties) == expected


def test_schema_is_valid_draft7_and_ours() -> None:
    import jsonschema

    document = schema.load_schema()
    jsonschema.Draft7Validator.check_schema(document)
    assert "pycompose" in document["$id"]
    assert document["additionalProperties"] is False


def test_no_jsonschema_import_for_a_valid_document() -> None:
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from compose.loader import schema\n"
        "assert 'jsonschema' not in sys.modules\n"
        "schema.validate({'services': {'web': {'image': 'x'}}})\n"
        "assert 'jsonschema' not in sys.modules, 'valid documents should not need jsonschema'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_500_services_validate_quickly() -> None:
    service = VALID["misc_strings_and_lists"]["services"]["web"]  # type: ignore[index]
    doc = {
        "services": {f"svc{i}": copy.deepcopy(service) | {"ports": [f"{8000 + i}:80"]} for i in range(500)},
    }
    schema.validate(doc)  # warm-up: compile once
    start = time.perf_counter()
    schema.validate(doc)
    assert time.perf_counter() - start < 0.3
