"""compose/build.py: a service's `build:` -> the engine's BuildRequest, image names, which services build
and in what order; projects are loaded by the real loader from files in a temporary directory."""

from __future__ import annotations

import textwrap

import pytest

from compose import __version__
from compose.build import (
    BuildOptions,
    build_order,
    build_request,
    image_name,
    is_remote_context,
    needs_build,
    parse_build_args,
)
from compose.errors import InvalidProjectError, UsageError
from compose.loader.pipeline import ProjectOptions, load_project


@pytest.fixture(autouse=True)
def _build_request_exported(monkeypatch):
    """engine.api re-exports BuildRequest once the builder lands; until then point it at the contract."""
    import engine.api

    if "BuildRequest" not in engine.api._EXPORTS:
        monkeypatch.setitem(engine.api._EXPORTS, "BuildRequest", "engine.build.builder")


def load(tmp_path, text: str, name: str = "pyct-app"):
    (tmp_path / "compose.yaml").write_text(textwrap.dedent(text))
    return load_project(ProjectOptions(files=(str(tmp_path / "compose.yaml"),), project_name=name))


FULL = """
services:
  web:
    build:
      context: ./web
      dockerfile: Dockerfile.dev
      target: prod
      args:
        A: "1"
        FROM_ENV:
        UNSET:
      labels: [com.example.team=core]
      tags: ["registry.local/web:1", "pyct-app-web"]
      network: host
      extra_hosts: ["db.local=10.0.0.5", "v6.local=::1"]
      shm_size: 64m
      no_cache: true
      platforms: [linux/amd64]
"""


def test_full_build_section_maps_field_by_field(tmp_path, monkeypatch):
    monkeypatch.setenv("FROM_ENV", "from-env")
    monkeypatch.delenv("UNSET", raising=False)
    loaded = load(tmp_path, FULL)
    request = build_request(loaded, loaded.model.services["web"])
    assert request.context == str(tmp_path / "web")
    assert request.dockerfile == "Dockerfile.dev"
    assert request.dockerfile_inline is None
    assert request.target == "prod"
    assert dict(request.args) == {"A": "1", "FROM_ENV": "from-env"}
    assert dict(request.labels) == {
        "com.example.team": "core",
        "com.docker.compose.project": "pyct-app",
        "com.docker.compose.service": "web",
        "com.docker.compose.version": __version__,
    }
    assert request.tags == ("pyct-app-web", "registry.local/web:1")  # image name first, no repeats
    assert request.network == "host"
    assert request.extra_hosts == (("db.local", "10.0.0.5"), ("v6.local", "::1"))
    assert request.shm_size == 64 * 1024 * 1024
    assert request.no_cache is True
    assert request.pull is False
    assert request.platform == "linux/amd64"


def test_defaults_and_string_form(tmp_path):
    loaded = load(tmp_path, "services:\n  api:\n    build: .\n")
    request = build_request(loaded, loaded.model.services["api"])
    assert request.context == str(tmp_path)
    assert request.dockerfile == "Dockerfile"
    assert request.network == "default"
    assert request.tags == ("pyct-app-api",)
    assert request.args == () and request.extra_hosts == ()
    assert request.shm_size is None and request.platform is None
    assert request.no_cache is False and request.pull is False


def test_image_key_names_the_build(tmp_path):
    loaded = load(tmp_path, "services:\n  api:\n    image: example/api:2\n    build: .\n")
    service = loaded.model.services["api"]
    assert image_name(loaded.name, service) == "example/api:2"
    assert build_request(loaded, service).tags == ("example/api:2",)


def test_dockerfile_inline(tmp_path):
    loaded = load(
        tmp_path,
        "services:\n  a:\n    build:\n      context: .\n"
        '      dockerfile_inline: "FROM busybox\\nRUN true\\n"\n',
    )
    request = build_request(loaded, loaded.model.services["a"])
    assert request.dockerfile_inline == "FROM busybox\nRUN true\n"


def test_cli_options_override_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("PYCT_TOKEN", "t0k")
    monkeypatch.delenv("PYCT_MISSING", raising=False)
    loaded = load(tmp_path, "services:\n  a:\n    build:\n      context: .\n      args: {A: file, B: keep}\n")
    options = BuildOptions(
        no_cache=True,
        pull=True,
        args=parse_build_args(["A=cli", "PYCT_TOKEN", "B", "PYCT_MISSING", "EMPTY="]),
    )
    request = build_request(loaded, loaded.model.services["a"], options)
    # B has no value on the command line and none in the environment: the file's value stays
    assert dict(request.args) == {"A": "cli", "B": "keep", "EMPTY": "", "PYCT_TOKEN": "t0k"}
    assert request.no_cache is True and request.pull is True


def test_args_from_dotenv_file(tmp_path, monkeypatch):
    monkeypatch.delenv("PYCT_DOTENV", raising=False)
    (tmp_path / ".env").write_text("PYCT_DOTENV=from-dotenv\n")
    loaded = load(tmp_path, "services:\n  a:\n    build:\n      context: .\n      args: [PYCT_DOTENV]\n")
    options = BuildOptions(args=parse_build_args(["PYCT_DOTENV"]))
    assert dict(build_request(loaded, loaded.model.services["a"], options).args) == {
        "PYCT_DOTENV": "from-dotenv"
    }


def test_bad_build_arg_flag():
    with pytest.raises(UsageError):
        parse_build_args(["=x"])


@pytest.mark.parametrize(
    "context",
    [
        "https://github.com/docker/rootfs.git#container:docker",
        "git@github.com:docker/rootfs.git",
        "github.com/docker/rootfs",
        "git://example.com/repo.git",
        "http://example.com/context.tar.gz",
    ],
)
def test_remote_contexts_are_refused_clearly(tmp_path, context):
    assert is_remote_context(context)
    loaded = load(tmp_path, f"services:\n  a:\n    build: {context!r}\n")
    with pytest.raises(InvalidProjectError) as info:
        build_request(loaded, loaded.model.services["a"])
    assert "not supported" in str(info.value)
    assert "services.a.build.context" in str(info.value)


def test_local_contexts_are_not_remote():
    for context in (".", "./git", "/srv/github.com/x", "http"):
        assert not is_remote_context(context)


@pytest.mark.parametrize(
    "network,expected", [("bridge", "default"), ("default", "default"), ("none", "none")]
)
def test_build_networks(tmp_path, network, expected):
    loaded = load(tmp_path, f"services:\n  a:\n    build:\n      context: .\n      network: {network}\n")
    assert build_request(loaded, loaded.model.services["a"]).network == expected


def test_custom_build_network_is_an_error(tmp_path):
    loaded = load(tmp_path, "services:\n  a:\n    build:\n      context: .\n      network: backnet\n")
    with pytest.raises(InvalidProjectError, match="backnet"):
        build_request(loaded, loaded.model.services["a"])


def test_platform_rules(tmp_path, monkeypatch):
    monkeypatch.delenv("DOCKER_DEFAULT_PLATFORM", raising=False)
    text = (
        "services:\n"
        "  a:\n    platform: linux/arm64\n"
        "    build:\n      context: .\n      platforms: [linux/amd64, linux/arm64]\n"
        "  b:\n    build:\n      context: .\n      platforms: [linux/arm64]\n"
        "  c:\n    build:\n      context: .\n      platforms: [linux/amd64, linux/arm64]\n"
    )
    loaded = load(tmp_path, text)
    services = loaded.model.services
    assert build_request(loaded, services["a"]).platform == "linux/arm64"
    assert build_request(loaded, services["b"]).platform == "linux/arm64"
    with pytest.raises(InvalidProjectError, match="multi-platform"):
        build_request(loaded, services["c"])
    monkeypatch.setenv("DOCKER_DEFAULT_PLATFORM", "linux/amd64")
    loaded = load(tmp_path, text)
    assert build_request(loaded, loaded.model.services["c"]).platform == "linux/amd64"
    with pytest.raises(InvalidProjectError, match="DOCKER_DEFAULT_PLATFORM"):
        build_request(loaded, loaded.model.services["b"])


ORDERED = """
services:
  front:
    build: ./front
    depends_on: [api, cache]
  api:
    build: ./api
    depends_on: [db]
  cache:
    image: busybox
  db:
    build: ./db
  worker:
    build: ./worker
  twin:
    image: pyct-app-worker
    build: ./worker
"""


def test_build_order_generations(tmp_path):
    loaded = load(tmp_path, ORDERED)
    assert build_order(loaded) == [["db", "twin"], ["api"], ["front"]]  # worker: twin's image


def test_build_order_named_services(tmp_path):
    loaded = load(tmp_path, ORDERED)
    assert build_order(loaded, ["front"]) == [["front"]]
    assert build_order(loaded, ["front"], with_dependencies=True) == [["db"], ["api"], ["front"]]
    assert build_order(loaded, ["cache"]) == []  # nothing to build
    with pytest.raises(Exception, match="no such service"):
        build_order(loaded, ["nope"])


def test_needs_build(tmp_path):
    loaded = load(
        tmp_path,
        "services:\n  a:\n    build: .\n  b:\n    build: .\n    pull_policy: build\n"
        "  c:\n    image: busybox\n",
    )
    a, b, c = (loaded.model.services[n] for n in "abc")
    assert needs_build(a, present=False) and not needs_build(a, present=True)
    assert needs_build(a, present=True, build=True)
    assert needs_build(b, present=True)  # pull_policy: build always builds
    assert not needs_build(b, present=False, no_build=True)
    assert not needs_build(c, present=False, build=True)
