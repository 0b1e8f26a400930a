"""Short-syntax parsers, checked against the behaviour of the Go libraries docker compose uses."""

from __future__ import annotations

import pytest

from compose.errors import InvalidProjectError
from compose.loader.syntax import (
    format_duration,
    go_string,
    nano_cpus,
    parse_bytes,
    parse_device_spec,
    parse_duration,
    parse_extra_host,
    parse_port_spec,
    parse_ulimit,
    parse_volume_spec,
    shell_split,
)

SECOND = 1_000_000_000

# ------------------------------------------------------------------------------------------------ ports


def _port(target, published=None, host_ip=None, protocol="tcp"):
    entry = {"mode": "ingress", "target": target, "protocol": protocol}
    if published is not None:
        entry["published"] = published
    if host_ip is not None:
        entry["host_ip"] = host_ip
    return entry


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("80", [_port(80)]),
        (3000, [_port(3000)]),
        ("8080:80", [_port(80, "8080")]),
        ("53:53/udp", [_port(53, "53", protocol="udp")]),
        ("5000:5000/SCTP", [_port(5000, "5000", protocol="sctp")]),
        ("127.0.0.1:8080:80", [_port(80, "8080", "127.0.0.1")]),
        ("127.0.0.1::80", [_port(80, None, "127.0.0.1")]),
        ("[::1]:6379:6379", [_port(6379, "6379", "::1")]),
        ("::1:6379:6379", [_port(6379, "6379", "::1")]),
        ("8000-8010:80", [_port(80, "8000-8010")]),
        ("3000-3002", [_port(3000), _port(3001), _port(3002)]),
        (
            "0.0.0.0:7000-7001:8000-8001/udp",
            [_port(8000, "7000", "0.0.0.0", "udp"), _port(8001, "7001", "0.0.0.0", "udp")],
        ),
        # compose-go sorts expanded ports by the string "port/proto": 10 < 11 < 9
        ("9-11:9-11", [_port(10, "10"), _port(11, "11"), _port(9, "9")]),
    ],
)
def test_parse_port_spec(spec, expected):
    assert parse_port_spec(spec) == expected


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        ("80:80:80:80", "invalid IP address: 80:80"),
        ("999.1.1.1:80:80", "invalid IP address: 999.1.1.1"),
        ("[::1:80:80", "invalid IP address [::1: missing ']' in address"),
        ("80/icmp", "invalid proto: icmp"),
        ("8080:", "no port specified: 8080:<empty>"),
        ("http", "invalid containerPort: http"),
        ("70000", "invalid containerPort: 70000"),
        ("81-80", "invalid containerPort: 81-80"),
        ("x:80", "invalid hostPort: x"),
        ("80:80-81", "invalid ranges specified for container and host Ports: 80-81 and 80"),
        ("8000-8002:80-81", "invalid ranges specified for container and host Ports: 80-81 and 8000-8002"),
    ],
)
def test_parse_port_spec_errors(spec, reason):
    with pytest.raises(InvalidProjectError) as info:
        parse_port_spec(spec)
    assert info.value.message == f'invalid port specification "{spec}": {reason}'
    assert info.value.path is None


# ------------------------------------------------------------------------------------------------ volumes


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("/data", {"type": "volume", "target": "/data", "volume": {}}),
        ("/a", {"type": "volume", "target": "/a"}),  # 1-2 characters: target only (compose-go)
        ("db:/var/lib/mysql", {"type": "volume", "source": "db", "target": "/var/lib/mysql", "volume": {}}),
        (
            "./src:/app",
            {"type": "bind", "source": "./src", "target": "/app", "bind": {"create_host_path": True}},
        ),
        (
            "~/cfg:/etc/cfg:ro",
            {
                "type": "bind",
                "source": "~/cfg",
                "target": "/etc/cfg",
                "read_only": True,
                "bind": {"create_host_path": True},
            },
        ),
        (
            "/src:/dst:ro,z",
            {
                "type": "bind",
                "source": "/src",
                "target": "/dst",
                "read_only": True,
                "bind": {"create_host_path": True, "selinux": "z"},
            },
        ),
        (
            "/src:/dst:rslave",
            {
                "type": "bind",
                "source": "/src",
                "target": "/dst",
                "bind": {"create_host_path": True, "propagation": "rslave"},
            },
        ),
        (
            "/src:/dst:rw",
            {"type": "bind", "source": "/src", "target": "/dst", "bind": {"create_host_path": True}},
        ),
        (
            "/src:/dst:cached",
            {"type": "bind", "source": "/src", "target": "/dst", "bind": {"create_host_path": True}},
        ),
        (
            "cache:/cache:nocopy",
            {"type": "volume", "source": "cache", "target": "/cache", "volume": {"nocopy": True}},
        ),
        (
            "C:\\data:D:\\target:ro,rprivate",
            {
                "type": "bind",
                "source": "C:\\data",
                "target": "D:\\target",
                "read_only": True,
                "bind": {"create_host_path": True, "propagation": "rprivate"},
            },
        ),
        (
            "\\\\.\\pipe\\docker_engine:\\\\.\\pipe\\docker_engine",
            {
                "type": "bind",
                "source": "\\\\.\\pipe\\docker_engine",
                "target": "\\\\.\\pipe\\docker_engine",
                "bind": {"create_host_path": True},
            },
        ),
        # uninterpolated variables keep their colons (config --no-interpolate)
        (
            "${DATA:-./data}:/data",
            {"type": "volume", "source": "${DATA:-./data}", "target": "/data", "volume": {}},
        ),
    ],
)
def test_parse_volume_spec(spec, expected):
    assert parse_volume_spec(spec) == expected


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "invalid empty volume spec"),
        ("/foo:/foo:ro:foo", "invalid spec: /foo:/foo:ro:foo: too many colons"),
        ("/foo::ro", "invalid spec: /foo::ro: empty section between colons"),
        (":/foo", "invalid spec: :/foo: empty section between colons"),
    ],
)
def test_parse_volume_spec_errors(spec, message):
    with pytest.raises(InvalidProjectError, match="^" + message.replace("[", r"\[") + "$"):
        parse_volume_spec(spec)


# ------------------------------------------------------------------------------------------------ durations


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("10s", 10 * SECOND),
        ("1h30m", 5400 * SECOND),
        ("1.5s", 1_500_000_000),
        (".5s", 500_000_000),
        ("500ms", 500_000_000),
        ("1500us", 1_500_000),
        ("2\u00b5s", 2000),
        ("3ns", 3),
        ("2d", 48 * 3600 * SECOND),
        ("1w", 168 * 3600 * SECOND),
        ("-1m", -60 * SECOND),
        ("+1m", 60 * SECOND),
        ("0", 0),
        (0, 0),
        ("1h0m0.25s", 3600 * SECOND + 250_000_000),
    ],
)
def test_parse_duration(text, ns):
    assert parse_duration(text) == ns


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("30", 'time: missing unit in duration "30"'),
        (30, 'time: missing unit in duration "30"'),
        ("", 'time: invalid duration ""'),
        ("abc", 'time: invalid duration "abc"'),
        ("10x", 'time: unknown unit "x" in duration "10x"'),
        (".s", 'time: invalid duration ".s"'),
    ],
)
def test_parse_duration_errors(text, message):
    with pytest.raises(InvalidProjectError) as info:
        parse_duration(text)
    assert info.value.message == message


@pytest.mark.parametrize(
    ("ns", "text"),
    [
        (0, "0s"),
        (1, "1ns"),
        (1500, "1.5\u00b5s"),
        (500_000_000, "500ms"),
        (1_500_000_000, "1.5s"),
        (60 * SECOND, "1m0s"),
        (90 * SECOND, "1m30s"),
        (120 * SECOND, "2m0s"),
        (3600 * SECOND, "1h0m0s"),
        (5400 * SECOND + 500_000_000, "1h30m0.5s"),
        (-90 * SECOND, "-1m30s"),
        (48 * 3600 * SECOND, "48h0m0s"),
    ],
)
def test_format_duration(ns, text):
    assert format_duration(ns) == text


# ------------------------------------------------------------------------------------------------ sizes


@pytest.mark.parametrize(
    ("value", "size"),
    [
        (1024, 1024),
        ("1024", 1024),
        ("12b", 12),
        ("1k", 1024),
        ("1KB", 1024),
        ("1KiB", 1024),
        ("50M", 52_428_800),
        ("50m", 52_428_800),
        ("1.5g", 1_610_612_736),
        ("2 GB", 2_147_483_648),
        ("1t", 1 << 40),
        ("0.5k", 512),
    ],
)
def test_parse_bytes(value, size):
    assert parse_bytes(value) == size


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("12XB", "invalid size: '12XB': invalid suffix: 'xb'"),
        ("12kbb", "invalid size: '12kbb': invalid suffix: 'kbb'"),
        ("GB", "invalid size: 'GB'"),
        ("-1m", "invalid size: '-1m'"),
        ("1.2.3m", "invalid size: '1.2.3m'"),
    ],
)
def test_parse_bytes_errors(value, message):
    with pytest.raises(InvalidProjectError) as info:
        parse_bytes(value)
    assert info.value.message == message


# ------------------------------------------------------------------------------------------------ commands


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("npm start", ["npm", "start"]),
        ("  spaced   out  ", ["spaced", "out"]),
        ('sh -c "echo hello world"', ["sh", "-c", "echo hello world"]),
        ("echo 'single $HOME'", ["echo", "single $HOME"]),
        ("echo $HOME ${USER}", ["echo", "$HOME", "${USER}"]),  # no expansion
        ('a "" b', ["a", "", "b"]),
        ("path\\ with\\ spaces", ["path with spaces"]),
        ("tab\\tnew\\nline", ["tab\tnew\nline"]),
        ("'it'\"'\"'s'", ["it's"]),
        ("echo 'a\\b'", ["echo", "a\\b"]),
        ("echo $(date)", ["echo", "$(date)"]),
        ("", []),
        # go-shellwords stops at an unquoted operator and drops the rest
        ("echo hi && echo there", ["echo", "hi"]),
        ("cmd 2>/dev/null", ["cmd"]),
        ('sh -c "a && b"', ["sh", "-c", "a && b"]),
    ],
)
def test_shell_split(text, words):
    assert shell_split(text) == words


@pytest.mark.parametrize("text", ['echo "unterminated', "echo 'x", "trailing\\", "echo (x)", "x)"])
def test_shell_split_errors(text):
    with pytest.raises(InvalidProjectError, match="invalid command line string"):
        shell_split(text)


# ------------------------------------------------------------------------------------------------ misc


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("/dev/ttyUSB0", {"source": "/dev/ttyUSB0", "target": "/dev/ttyUSB0", "permissions": "rwm"}),
        ("/dev/sda:/dev/xvda", {"source": "/dev/sda", "target": "/dev/xvda", "permissions": "rwm"}),
        ("/dev/sda:/dev/xvda:r", {"source": "/dev/sda", "target": "/dev/xvda", "permissions": "r"}),
    ],
)
def test_parse_device_spec(spec, expected):
    assert parse_device_spec(spec) == expected


def test_parse_device_spec_too_many_colons():
    with pytest.raises(
        InvalidProjectError, match="confusing device mapping, please use long syntax: a:b:c:d"
    ):
        parse_device_spec("a:b:c:d")


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ("somehost:162.242.195.82", ("somehost", "162.242.195.82")),
        ("somehost=162.242.195.82", ("somehost", "162.242.195.82")),
        ("myhostv6=::1", ("myhostv6", "::1")),
        ("myhostv6:::1", ("myhostv6", "::1")),
        ("myhostv6=[::1]", ("myhostv6", "::1")),
        ("multi=10.0.0.1,[::2]", ("multi", "10.0.0.1,::2")),
        ("host.docker.internal:host-gateway", ("host.docker.internal", "host-gateway")),
    ],
)
def test_parse_extra_host(entry, expected):
    assert parse_extra_host(entry) == expected


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("nohost", "invalid additional host, missing IP: nohost"),
        ("=1.2.3.4", "bad host name ''"),
    ],
)
def test_parse_extra_host_errors(entry, message):
    with pytest.raises(InvalidProjectError) as info:
        parse_extra_host(entry)
    assert info.value.message == message


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (65535, 65535),
        ("1024", 1024),
        ({"soft": 20000, "hard": 40000}, {"soft": 20000, "hard": 40000}),
        ({"soft": "100", "hard": "200"}, {"soft": 100, "hard": 200}),
        ("1024:2048", {"soft": 1024, "hard": 2048}),
    ],
)
def test_parse_ulimit(value, expected):
    assert parse_ulimit(value) == expected


def test_parse_ulimit_rejects_words():
    with pytest.raises(InvalidProjectError, match='invalid ulimit value "lots"'):
        parse_ulimit("lots")


@pytest.mark.parametrize(
    ("value", "text"),
    [(42, "42"), (True, "true"), (False, "false"), (1.0, "1"), (1.5, "1.5"), (1e21, "1e+21"), ("x", "x")],
)
def test_go_string(value, text):
    assert go_string(value) == text


@pytest.mark.parametrize(
    ("value", "cpus"),
    [("0.001", 0.001), (0.5, 0.5), (2, 2.0), ("1.5", 1.5), (1.23456789, 1.2345679)],
)
def test_nano_cpus_rounds_like_float32(value, cpus):
    assert nano_cpus(value) == cpus


def test_nano_cpus_rejects_words():
    with pytest.raises(InvalidProjectError, match='invalid cpus value "two"'):
        nano_cpus("two")
