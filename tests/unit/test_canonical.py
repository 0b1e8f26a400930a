"""Stage 5, canonical form: one rule per attribute, checked on realistic service definitions."""

from __future__ import annotations

import copy
import time

import pytest

from compose.errors import InvalidProjectError, Location
from compose.loader.canonical import RULES, canonicalize


def _service(attrs: dict) -> dict:
    """Canonicalize one service named web and return it."""
    return canonicalize({"services": {"web": {"image": "nginx", **attrs}}})["services"]["web"]


def _locate(path):
    return Location("compose.yaml", 7, 9)


# ------------------------------------------------------------------------------------------------ rules


@pytest.mark.parametrize(
    ("attrs", "key", "expected"),
    [
        (
            {"ports": ["8080:80", 3000, "127.0.0.1:5000-5001:5000-5001/udp"]},
            "ports",
            [
                {"mode": "ingress", "target": 80, "published": "8080", "protocol": "tcp"},
                {"mode": "ingress", "target": 3000, "protocol": "tcp"},
                {
                    "mode": "ingress",
                    "host_ip": "127.0.0.1",
                    "target": 5000,
                    "published": "5000",
                    "protocol": "udp",
                },
                {
                    "mode": "ingress",
                    "host_ip": "127.0.0.1",
                    "target": 5001,
                    "published": "5001",
                    "protocol": "udp",
                },
            ],
        ),
        (
            {"ports": [{"target": 80, "published": 8080, "name": "web", "app_protocol": "http"}]},
            "ports",
            [
                {
                    "target": 80,
                    "published": "8080",
                    "name": "web",
                    "app_protocol": "http",
                    "protocol": "tcp",
                    "mode": "ingress",
                }
            ],
        ),
        (
            {"ports": [{"target": 53, "protocol": "udp", "mode": "host"}]},
            "ports",
            [{"target": 53, "protocol": "udp", "mode": "host"}],
        ),
        ({"expose": [3000, "8000-8010"]}, "expose", ["3000", "8000-8010"]),
        (
            {"volumes": ["./html:/usr/share/nginx/html:ro", "db-data:/var/lib//db/", "/anon"]},
            "volumes",
            [
                {
                    "type": "bind",
                    "source": "./html",
                    "target": "/usr/share/nginx/html",
                    "read_only": True,
                    "bind": {"create_host_path": True},
                },
                {"type": "volume", "source": "db-data", "target": "/var/lib/db", "volume": {}},
                {"type": "volume", "target": "/anon", "volume": {}},
            ],
        ),
        (
            {
                "volumes": [
                    {
                        "type": "bind",
                        "source": "/etc/app",
                        "target": "/cfg",
                        "bind": {"propagation": "shared"},
                    },
                    {"type": "bind", "source": "/x", "target": "/y", "bind": {"create_host_path": False}},
                    {"type": "bind", "source": "/p", "target": "/q"},
                    {"type": "tmpfs", "target": "/run", "tmpfs": {"size": "64m", "mode": 1777}},
                ]
            },
            "volumes",
            [
                {
                    "type": "bind",
                    "source": "/etc/app",
                    "target": "/cfg",
                    "bind": {"propagation": "shared", "create_host_path": True},
                },
                {"type": "bind", "source": "/x", "target": "/y", "bind": {"create_host_path": False}},
                {"type": "bind", "source": "/p", "target": "/q"},
                {"type": "tmpfs", "target": "/run", "tmpfs": {"size": "67108864", "mode": 1777}},
            ],
        ),
        (
            {"environment": ["RACK_ENV=development", "SHOW=true", "EMPTY=", "SESSION_SECRET", "EQ=a=b"]},
            "environment",
            {"RACK_ENV": "development", "SHOW": "true", "EMPTY": "", "SESSION_SECRET": None, "EQ": "a=b"},
        ),
        (
            {"environment": {"PORT": 8080, "DEBUG": False, "RATIO": 0.5, "UNSET": None}},
            "environment",
            {"PORT": "8080", "DEBUG": "false", "RATIO": "0.5", "UNSET": None},
        ),
        (
            {"labels": ["com.example.number=42", "com.example.flag"]},
            "labels",
            {"com.example.number": "42", "com.example.flag": ""},
        ),
        (
            {"labels": {"com.example.number": 42, "empty": None}},
            "labels",
            {"com.example.number": "42", "empty": ""},
        ),
        ({"annotations": ["com.example.foo=bar"]}, "annotations", {"com.example.foo": "bar"}),
        ({"sysctls": ["net.core.somaxconn=1024"]}, "sysctls", {"net.core.somaxconn": "1024"}),
        ({"sysctls": {"net.ipv4.tcp_syncookies": 0}}, "sysctls", {"net.ipv4.tcp_syncookies": "0"}),
        (
            {
                "extra_hosts": [
                    "somehost:162.242.195.82",
                    "otherhost=50.31.209.229",
                    "v6:::1",
                    "multi=10.0.0.2,[::2]",
                ]
            },
            "extra_hosts",
            ["multi=10.0.0.2", "multi=::2", "otherhost=50.31.209.229", "somehost=162.242.195.82", "v6=::1"],
        ),
        (
            {"extra_hosts": {"somehost": "162.242.195.82", "v6": "[::1]", "many": ["10.0.0.1", "10.0.0.2"]}},
            "extra_hosts",
            ["many=10.0.0.1", "many=10.0.0.2", "somehost=162.242.195.82", "v6=::1"],
        ),
        (
            {"command": 'bundle exec thin -p 3000 -a "0.0.0.0"'},
            "command",
            ["bundle", "exec", "thin", "-p", "3000", "-a", "0.0.0.0"],
        ),
        ({"command": ["echo", 1, True]}, "command", ["echo", "1", "true"]),
        ({"command": ""}, "command", []),
        ({"entrypoint": "/code/entrypoint.sh -v"}, "entrypoint", ["/code/entrypoint.sh", "-v"]),
        (
            {
                "healthcheck": {
                    "test": "curl -f http://localhost",
                    "interval": "1m30s",
                    "timeout": "10s",
                    "retries": 3,
                    "start_period": "40s",
                    "start_interval": "5s",
                }
            },
            "healthcheck",
            {
                "test": ["CMD-SHELL", "curl -f http://localhost"],
                "interval": "1m30s",
                "timeout": "10s",
                "retries": 3,
                "start_period": "40s",
                "start_interval": "5s",
            },
        ),
        (
            {"healthcheck": {"test": ["CMD", "true"], "interval": "60s"}},
            "healthcheck",
            {"test": ["CMD", "true"], "interval": "1m0s"},
        ),
        ({"stop_grace_period": "120s"}, "stop_grace_period", "2m0s"),
        ({"stop_grace_period": "1m30s"}, "stop_grace_period", "1m30s"),
        ({"mem_limit": "50M"}, "mem_limit", "52428800"),
        ({"mem_reservation": 1073741824}, "mem_reservation", "1073741824"),
        ({"memswap_limit": -1}, "memswap_limit", "-1"),
        ({"shm_size": "64mb"}, "shm_size", "67108864"),
        ({"cpus": "0.001"}, "cpus", 0.001),
        ({"cpus": 2}, "cpus", 2.0),
        (
            {"depends_on": ["db", "redis"]},
            "depends_on",
            {
                "db": {"condition": "service_started", "required": True},
                "redis": {"condition": "service_started", "required": True},
            },
        ),
        (
            {
                "depends_on": {
                    "db": {"condition": "service_healthy"},
                    "cache": {"required": False, "restart": True},
                }
            },
            "depends_on",
            {  # map entries stay as written; normalize fills the defaults after the merge
                "db": {"condition": "service_healthy"},
                "cache": {"required": False, "restart": True},
            },
        ),
        ({"networks": ["front", "back"]}, "networks", {"front": None, "back": None}),
        (
            {"networks": {"front": {"aliases": ["web"]}, "back": None}},
            "networks",
            {"front": {"aliases": ["web"]}, "back": None},
        ),
        (
            {
                "secrets": [
                    "db_password",
                    {"source": "cert", "target": "/certs/cert.pem", "uid": 103, "mode": 0o440},
                ]
            },
            "secrets",
            [
                {"source": "db_password"},
                {"source": "cert", "target": "/certs/cert.pem", "uid": "103", "mode": "0440"},
            ],
        ),
        ({"configs": ["nginx_conf"]}, "configs", [{"source": "nginx_conf"}]),
        ({"build": "./dir"}, "build", {"context": "./dir"}),
        (
            {
                "build": {
                    "context": ".",
                    "args": ["GIT_COMMIT=cdc3b19", "BARE"],
                    "labels": {"n": 1},
                    "shm_size": "2gb",
                }
            },
            "build",
            {
                "context": ".",
                "args": {"GIT_COMMIT": "cdc3b19", "BARE": None},
                "labels": {"n": "1"},
                "shm_size": "2147483648",
            },
        ),
        (
            {
                "build": {
                    "context": ".",
                    "additional_contexts": ["resources=/path/to/resources"],
                    "ssh": ["default", "key=/id_rsa"],
                }
            },
            "build",
            {
                "context": ".",
                "additional_contexts": {"resources": "/path/to/resources"},
                "ssh": ["default", "key: /id_rsa"],
            },
        ),
        (
            {
                "build": {
                    "context": ".",
                    "extra_hosts": ["a:1.2.3.4"],
                    "secrets": ["npm"],
                    "ulimits": {"nofile": 1024},
                }
            },
            "build",
            {
                "context": ".",
                "extra_hosts": ["a=1.2.3.4"],
                "secrets": [{"source": "npm"}],
                "ulimits": {"nofile": 1024},
            },
        ),
        ({"env_file": ".env"}, "env_file", [{"path": ".env", "required": True}]),
        (
            {"env_file": ["a.env", {"path": "b.env", "required": False}, {"path": "c.env", "format": "raw"}]},
            "env_file",
            [
                {"path": "a.env", "required": True},
                {"path": "b.env", "required": False},
                {"path": "c.env", "format": "raw", "required": True},
            ],
        ),
        ({"label_file": "./app.labels"}, "label_file", ["./app.labels"]),
        ({"dns": "8.8.8.8"}, "dns", ["8.8.8.8"]),
        ({"dns_search": "example.com"}, "dns_search", ["example.com"]),
        ({"tmpfs": "/run"}, "tmpfs", ["/run"]),
        ({"tmpfs": ["/run", "/tmp"]}, "tmpfs", ["/run", "/tmp"]),
        ({"pull_policy": "if_not_present"}, "pull_policy", "missing"),
        ({"pull_policy": "always"}, "pull_policy", "always"),
        (
            {
                "devices": [
                    "/dev/ttyUSB0:/dev/ttyUSB0:rw",
                    {"source": "/dev/sda", "target": "/dev/sda", "permissions": "r"},
                ]
            },
            "devices",
            [
                {"source": "/dev/ttyUSB0", "target": "/dev/ttyUSB0", "permissions": "rw"},
                {"source": "/dev/sda", "target": "/dev/sda", "permissions": "r"},
            ],
        ),
        (
            {"ulimits": {"nproc": 65535, "nofile": {"soft": 20000, "hard": 40000}}},
            "ulimits",
            {"nproc": 65535, "nofile": {"soft": 20000, "hard": 40000}},
        ),
        ({"gpus": "all"}, "gpus", [{"count": -1}]),
        (
            {"gpus": [{"driver": "nvidia"}, {"device_ids": ["0"]}, {"count": "2"}]},
            "gpus",
            [{"driver": "nvidia", "count": -1}, {"device_ids": ["0"]}, {"count": 2}],
        ),
        ({"extends": "base"}, "extends", {"service": "base"}),
        (
            {"extends": {"file": "common.yml", "service": "base"}},
            "extends",
            {"file": "common.yml", "service": "base"},
        ),
        (
            {"logging": {"driver": "json-file", "options": {"max-size": "200k", "max-file": 10}}},
            "logging",
            {"driver": "json-file", "options": {"max-size": "200k", "max-file": "10"}},
        ),
        (
            {
                "blkio_config": {
                    "weight": 300,
                    "device_read_bps": [{"path": "/dev/sdb", "rate": "12mb"}],
                    "device_read_iops": [{"path": "/dev/sdb", "rate": 120}],
                }
            },
            "blkio_config",
            {
                "weight": 300,
                "device_read_bps": [{"path": "/dev/sdb", "rate": "12582912"}],
                "device_read_iops": [{"path": "/dev/sdb", "rate": 120}],
            },
        ),
        (
            {
                "develop": {
                    "watch": [
                        {
                            "action": "sync",
                            "path": ["./a", "./b"],
                            "target": "/app",
                            "ignore": "node_modules/",
                        }
                    ]
                }
            },
            "develop",
            {
                "watch": [
                    {"action": "sync", "path": "./a", "target": "/app", "ignore": ["node_modules/"]},
                    {"action": "sync", "path": "./b", "target": "/app", "ignore": ["node_modules/"]},
                ]
            },
        ),
    ],
)
def test_service_rule(attrs, key, expected):
    assert _service(attrs)[key] == expected


def test_deploy_block():
    deploy = _service(
        {
            "deploy": {
                "replicas": 2,
                "labels": ["com.example.description=This label will appear on the web service"],
                "resources": {
                    "limits": {"cpus": "0.50", "memory": "50M", "pids": 1},
                    "reservations": {
                        "cpus": 0.25,
                        "memory": "20M",
                        "devices": [{"capabilities": ["gpu"], "driver": "nvidia"}, {"count": "all"}],
                    },
                },
                "restart_policy": {
                    "condition": "on-failure",
                    "delay": "5s",
                    "max_attempts": 3,
                    "window": "120s",
                },
                "update_config": {"parallelism": 2, "delay": "10s", "monitor": "60s"},
                "rollback_config": {"delay": "0s", "monitor": "1h"},
            }
        }
    )["deploy"]
    assert deploy == {
        "replicas": 2,
        "labels": {"com.example.description": "This label will appear on the web service"},
        "resources": {
            "limits": {"cpus": 0.5, "memory": "52428800", "pids": 1},
            "reservations": {
                "cpus": 0.25,
                "memory": "20971520",
                "devices": [{"capabilities": ["gpu"], "driver": "nvidia", "count": -1}, {"count": -1}],
            },
        },
        "restart_policy": {"condition": "on-failure", "delay": "5s", "max_attempts": 3, "window": "2m0s"},
        "update_config": {"parallelism": 2, "delay": "10s", "monitor": "1m0s"},
        "rollback_config": {"delay": "0s", "monitor": "1h0m0s"},
    }


def test_top_level_resources():
    doc = canonicalize(
        {
            "services": {"web": {"image": "nginx"}},
            "networks": {
                "front": None,
                "back": {"driver": "bridge", "labels": ["tier=back"], "driver_opts": {"mtu": 1400}},
            },
            "volumes": {"db-data": None, "logs": {"labels": {"keep": True}}},
            "secrets": {"token": {"file": "./token.txt"}, "empty": None},
            "configs": {"nginx": {"content": "x", "labels": ["a=b"]}},
            "include": ["other/compose.yaml", {"path": "db.yaml", "env_file": "db.env"}],
            "x-common": {"ports": ["80:80"]},
        }
    )
    assert doc["networks"] == {
        "front": {},
        "back": {"driver": "bridge", "labels": {"tier": "back"}, "driver_opts": {"mtu": "1400"}},
    }
    assert doc["volumes"] == {"db-data": {}, "logs": {"labels": {"keep": "true"}}}
    assert doc["secrets"] == {"token": {"file": "./token.txt"}, "empty": {}}
    assert doc["configs"] == {"nginx": {"content": "x", "labels": {"a": "b"}}}
    assert doc["include"] == [{"path": ["other/compose.yaml"]}, {"path": ["db.yaml"], "env_file": ["db.env"]}]
    assert doc["x-common"] == {"ports": ["80:80"]}  # extensions are not canonicalized


def test_service_extensions_and_unknown_keys_are_copied():
    web = _service({"x-ports": ["80:80"], "container_name": "web1", "cap_add": ["NET_ADMIN"]})
    assert web["x-ports"] == ["80:80"]
    assert web["container_name"] == "web1"
    assert web["cap_add"] == ["NET_ADMIN"]


# ------------------------------------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    ("attrs", "path", "message"),
    [
        (
            {"ports": ["8080:80", "80:80:80:80"]},
            ("ports", 1),
            'invalid port specification "80:80:80:80": invalid IP address: 80:80',
        ),
        (
            {"volumes": ["/a:/b", "/foo:/foo:ro:foo"]},
            ("volumes", 1),
            "invalid spec: /foo:/foo:ro:foo: too many colons",
        ),
        (
            {"healthcheck": {"interval": "10"}},
            ("healthcheck", "interval"),
            'time: missing unit in duration "10"',
        ),
        ({"stop_grace_period": "soon"}, ("stop_grace_period",), 'time: invalid duration "soon"'),
        ({"mem_limit": "12XB"}, ("mem_limit",), "invalid size: '12XB': invalid suffix: 'xb'"),
        (
            {"deploy": {"resources": {"limits": {"memory": "lots"}}}},
            ("deploy", "resources", "limits", "memory"),
            "invalid size: 'lots'",
        ),
        (
            {"volumes": [{"type": "tmpfs", "target": "/t", "tmpfs": {"size": "1q"}}]},
            ("volumes", 0, "tmpfs", "size"),
            "invalid size: '1q': invalid suffix: 'q'",
        ),
        ({"command": 'echo "oops'}, ("command",), 'invalid command line string: echo "oops'),
        (
            {"extra_hosts": ["ok=1.1.1.1", "nohost"]},
            ("extra_hosts", 1),
            "invalid additional host, missing IP: nohost",
        ),
        (
            {"devices": ["a:b:c:d"]},
            ("devices", 0),
            "confusing device mapping, please use long syntax: a:b:c:d",
        ),
        (
            {"gpus": [{"count": 1, "device_ids": ["0"]}]},
            ("gpus", 0),
            '"count" and "device_ids" attributes are exclusive',
        ),
        (
            {"build": {"additional_contexts": ["nokey"]}},
            ("build", "additional_contexts", 0),
            "invalid value nokey, expected key=value",
        ),
        ({"cpus": "two"}, ("cpus",), 'invalid cpus value "two"'),
        ({"depends_on": {"db": "yes"}}, ("depends_on", "db"), "unsupported value yes"),
    ],
)
def test_errors_carry_path_and_location(attrs, path, message):
    seen = []

    def locate(p):
        seen.append(p)
        return _locate(p)

    with pytest.raises(InvalidProjectError) as info:
        canonicalize({"services": {"web": attrs}}, locate=locate)
    assert info.value.message == message
    assert info.value.path == ("services", "web", *path)
    assert info.value.location == Location("compose.yaml", 7, 9)
    assert seen == [("services", "web", *path)]


def test_error_without_locate_has_no_location():
    with pytest.raises(InvalidProjectError) as info:
        canonicalize({"services": {"web": {"ports": ["x:80"]}}})
    assert info.value.location is None
    assert info.value.path == ("services", "web", "ports", 0)
    assert "services.web.ports[0]" in str(info.value)


# ------------------------------------------------------------------------------------------------ strict


def test_non_strict_keeps_unresolved_variables():
    raw = {
        "services": {
            "web": {
                "ports": ["${HOST_PORT}:80", "9000:9000"],
                "mem_limit": "${MEM:-512m}",
                "stop_grace_period": "${GRACE}",
                "cpus": "${CPUS}",
                "volumes": ["${DATA:-./data}:/data"],
                "healthcheck": {"interval": "${INTERVAL:-10s}"},
            }
        }
    }
    web = canonicalize(raw, strict=False)["services"]["web"]
    assert web["ports"] == [
        "${HOST_PORT}:80",
        {"mode": "ingress", "target": 9000, "published": "9000", "protocol": "tcp"},
    ]
    assert web["mem_limit"] == "${MEM:-512m}"
    assert web["stop_grace_period"] == "${GRACE}"
    assert web["cpus"] == "${CPUS}"
    assert web["volumes"] == [
        {"type": "volume", "source": "${DATA:-./data}", "target": "/data", "volume": {}}
    ]
    assert web["healthcheck"]["interval"] == "${INTERVAL:-10s}"


def test_non_strict_still_rejects_real_errors():
    with pytest.raises(InvalidProjectError, match="invalid size"):
        canonicalize({"services": {"web": {"mem_limit": "12XB"}}}, strict=False)


def test_strict_rejects_leftover_variables():
    with pytest.raises(InvalidProjectError, match="invalid hostPort"):
        canonicalize({"services": {"web": {"ports": ["${HOST_PORT}:80"]}}})


# ------------------------------------------------------------------------------------------------ contract


def test_input_is_not_modified_and_output_shares_no_containers():
    doc = {
        "services": {
            "web": {
                "image": "nginx",
                "ports": [{"target": 80}],
                "volumes": [{"type": "bind", "source": "/a", "target": "/b", "bind": {}}],
                "cap_add": ["NET_ADMIN"],
                "depends_on": {"db": {"condition": "service_healthy"}},
                "logging": {"driver": "local"},
            }
        },
        "x-anchor": {"nested": [1, 2]},
    }
    before = copy.deepcopy(doc)
    out = canonicalize(doc)
    assert doc == before
    out["services"]["web"]["cap_add"].append("SYS_ADMIN")
    out["services"]["web"]["logging"]["driver"] = "json-file"
    out["x-anchor"]["nested"].append(3)
    out["services"]["web"]["volumes"][0]["bind"]["x"] = 1
    assert doc == before


def test_canonical_output_is_stable():
    doc = {
        "services": {
            "web": {"ports": ["80:80"], "volumes": ["./a:/a"], "environment": ["A=1"], "command": "a b"}
        }
    }
    once = canonicalize(doc)
    assert canonicalize(once) == once


def test_rules_table_uses_glob_paths():
    assert "services.*.ports" in RULES
    assert "services.*.volumes.*" in RULES
    assert "networks.*" in RULES
    assert all(not key.endswith(".") for key in RULES)


def test_five_hundred_services_are_fast():
    service = {
        "image": "nginx",
        "ports": ["8080:80", "127.0.0.1:9000-9001:9000-9001"],
        "volumes": ["./html:/usr/share/nginx/html:ro", "data:/data"],
        "environment": ["A=1", "B=2", "C"],
        "labels": {"tier": "web"},
        "command": 'sh -c "nginx -g daemon off"',
        "healthcheck": {"test": "curl -f localhost", "interval": "30s", "timeout": "5s"},
        "depends_on": ["db"],
        "mem_limit": "512m",
        "deploy": {"resources": {"limits": {"cpus": "0.5", "memory": "256M"}}},
    }
    doc = {"services": {f"svc{i}": copy.deepcopy(service) for i in range(500)}}
    start = time.perf_counter()
    canonicalize(doc)
    elapsed = time.perf_counter() - start
    assert elapsed < 0.25  # budget is 50 ms on a normal machine; generous for loaded CI


def test_cached_parsing_keeps_types_apart():
    assert _service({"stop_grace_period": 0})["stop_grace_period"] == "0s"
    with pytest.raises(InvalidProjectError, match='time: invalid duration "false"'):
        _service({"stop_grace_period": False})


def test_cached_results_are_not_shared_between_services():
    doc = canonicalize({"services": {"a": {"ports": ["80:80"]}, "b": {"ports": ["80:80"]}}})
    doc["services"]["a"]["ports"][0]["published"] = "81"
    assert doc["services"]["b"]["ports"][0]["published"] == "80"
    again = canonicalize({"services": {"c": {"ports": ["80:80"]}}})
    assert again["services"]["c"]["ports"][0]["published"] == "80"


def test_false_booleans_are_omitted_like_docker_compose_prints_them():
    data = {
        "services": {
            "web": {
                "image": "nginx",
                "privileged": False,
                "read_only": False,
                "tty": False,
                "init": False,
                "depends_on": {"db": {"condition": "service_started", "required": False, "restart": False}},
                "env_file": [{"path": "a.env", "required": False}],
                "volumes": [
                    {
                        "type": "bind",
                        "source": "./a",
                        "target": "/a",
                        "read_only": False,
                        "bind": {"create_host_path": False},
                    }
                ],
                "x-flags": {"debug": False},
            }
        },
        "networks": {"front": {"internal": False, "enable_ipv6": False}},
        "x-top": {"keep": False},
    }
    out = canonicalize(data)
    web = out["services"]["web"]
    assert "privileged" not in web and "read_only" not in web and "tty" not in web
    assert web["init"] is False
    assert web["depends_on"]["db"] == {"condition": "service_started", "required": False}
    assert web["env_file"] == [{"path": "a.env", "required": False}]
    assert web["volumes"][0] == {
        "type": "bind",
        "source": "./a",
        "target": "/a",
        "bind": {"create_host_path": False},
    }
    assert web["x-flags"] == {"debug": False}
    assert out["networks"]["front"] == {"enable_ipv6": False}
    assert out["x-top"] == {"keep": False}
