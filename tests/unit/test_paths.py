"""paths: host paths made absolute the way compose-go `paths/` does it."""

from __future__ import annotations

import copy

import pytest

from compose.errors import InvalidProjectError
from compose.loader.paths import abs_path, clean_path, resolve_paths, resolve_service_paths

HOME = "/home/ann"
PROJECT = "/srv/shop"


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (".", "/srv/shop"),
        ("./data", "/srv/shop/data"),
        ("../shared/x/", "/srv/shared/x"),
        ("data//logs/./a", "/srv/shop/data/logs/a"),
        ("~", "/home/ann"),
        ("~/.ssh/id", "/home/ann/.ssh/id"),
        ("/abs/path", "/abs/path"),
        ("", ""),
    ],
)
def test_abs_path(path, expected):
    assert abs_path(path, PROJECT, HOME) == expected


@pytest.mark.parametrize(
    ("path", "expected"),
    [("/a/b/../c/", "/a/c"), ("//a//b", "/a/b"), ("a/./b", "a/b"), ("", "."), ("/..", "/")],
)
def test_clean_path_matches_go(path, expected):
    assert clean_path(path) == expected


def test_build_context_local_and_remote():
    service = {
        "build": {
            "context": "./app",
            "additional_contexts": {
                "base": "../base",
                "img": "docker-image://alpine:3",
                "svc": "service:builder",
                "repo": "https://github.com/x/y.git",
            },
        }
    }
    build = resolve_service_paths(service, PROJECT, home=HOME)["build"]
    assert build["context"] == "/srv/shop/app"
    assert build["additional_contexts"] == {
        "base": "/srv/base",
        "img": "docker-image://alpine:3",
        "svc": "service:builder",
        "repo": "https://github.com/x/y.git",
    }


@pytest.mark.parametrize(
    "context",
    ["https://github.com/docker/app.git#main", "git@github.com:docker/app.git", "github.com/docker/app"],
)
def test_remote_build_context_untouched(context):
    out = resolve_service_paths({"build": {"context": context}}, PROJECT, home=HOME)
    assert out["build"]["context"] == context


def test_bind_sources_resolved_named_volumes_untouched():
    volumes = [
        {"type": "bind", "source": ".", "target": "/app"},
        {"type": "bind", "source": "~/cache", "target": "/cache"},
        {"type": "bind", "source": "../logs", "target": "/logs"},
        {"type": "bind", "source": "/etc/hosts", "target": "/etc/hosts"},
        {"type": "bind", "source": "C:\\data", "target": "/data"},
        {"type": "volume", "source": "pgdata", "target": "/var/lib/postgresql"},
        {"type": "tmpfs", "target": "/tmp"},
    ]
    out = resolve_service_paths({"volumes": volumes}, PROJECT, home=HOME)["volumes"]
    assert [v.get("source") for v in out] == [
        "/srv/shop",
        "/home/ann/cache",
        "/srv/logs",
        "/etc/hosts",
        "C:\\data",
        "pgdata",
        None,
    ]


def test_bind_without_source_is_an_error_with_service_path():
    data = {"services": {"web": {"volumes": [{"type": "volume"}, {"type": "bind", "target": "/x"}]}}}
    with pytest.raises(InvalidProjectError, match="field Source must not be empty") as info:
        resolve_paths(data, PROJECT, home=HOME)
    assert info.value.path == ("services", "web", "volumes", 1)


def test_env_file_label_file_extends_and_watch():
    service = {
        "env_file": [{"path": "./web.env", "required": True}, {"path": "~/.secrets.env", "required": False}],
        "label_file": ["./labels"],
        "extends": {"file": "../common/base.yaml", "service": "base"},
        "develop": {"watch": [{"path": "./src", "action": "sync", "target": "/app/src"}]},
    }
    out = resolve_service_paths(service, PROJECT, home=HOME)
    assert out["env_file"] == [
        {"path": "/srv/shop/web.env", "required": True},
        {"path": "/home/ann/.secrets.env", "required": False},
    ]
    assert out["label_file"] == ["/srv/shop/labels"]
    assert out["extends"] == {"file": "/srv/common/base.yaml", "service": "base"}
    assert out["develop"]["watch"][0]["path"] == "/srv/shop/src"
    assert out["develop"]["watch"][0]["target"] == "/app/src"


def test_build_ssh_paths():
    service = {"build": {"context": ".", "ssh": {"default": None, "deploy": "./keys/id"}}}
    out = resolve_service_paths(service, PROJECT, home=HOME)
    assert out["build"]["ssh"] == {"default": None, "deploy": "/srv/shop/keys/id"}
    listed = resolve_service_paths({"build": {"ssh": ["default", "k=~/id"]}}, PROJECT, home=HOME)
    assert listed["build"]["ssh"] == ["default", "k=/home/ann/id"]


def test_service_input_not_modified():
    service = {"build": {"context": "."}, "volumes": [{"type": "bind", "source": ".", "target": "/a"}]}
    before = copy.deepcopy(service)
    resolve_service_paths(service, PROJECT, home=HOME)
    assert service == before


def test_resolve_paths_whole_project():
    data = {
        "name": "shop",
        "services": {"web": {"build": {"context": "web"}}},
        "secrets": {"token": {"file": "./secrets/token"}, "ext": {"external": True, "name": "ext"}},
        "configs": {"nginx": {"file": "conf/nginx.conf"}, "inline": {"content": "x"}},
        "volumes": {
            "bound": {"driver": "local", "driver_opts": {"o": "bind", "type": "none", "device": "./data"}},
            "plain": {"driver": "local", "driver_opts": {"device": "./not-a-path"}},
        },
        "include": [{"path": ["./other/compose.yaml"], "project_directory": "other", "env_file": "a.env"}],
    }
    out = resolve_paths(data, PROJECT, home=HOME)
    assert out["services"]["web"]["build"]["context"] == "/srv/shop/web"
    assert out["secrets"]["token"]["file"] == "/srv/shop/secrets/token"
    assert out["secrets"]["ext"] == {"external": True, "name": "ext"}
    assert out["configs"]["nginx"]["file"] == "/srv/shop/conf/nginx.conf"
    assert out["configs"]["inline"] == {"content": "x"}
    assert out["volumes"]["bound"]["driver_opts"]["device"] == "/srv/shop/data"
    assert out["volumes"]["plain"]["driver_opts"]["device"] == "./not-a-path"
    assert out["include"] == [
        {
            "path": ["/srv/shop/other/compose.yaml"],
            "project_directory": "/srv/shop/other",
            "env_file": "/srv/shop/a.env",
        }
    ]


def test_home_defaults_to_environment(monkeypatch):
    monkeypatch.setenv("HOME", "/home/bob")
    assert abs_path("~/x", PROJECT) == "/home/bob/x"
