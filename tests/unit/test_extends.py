"""`extends`: same file, other files, chains, relative paths, cycles, errors (compose-go extends.go)."""

from __future__ import annotations

import copy
import os

import pytest

from compose.errors import ExtendsError, Location, ProjectNotFoundError
from compose.loader.extends import apply_extends
from compose.loader.yamlparse import parse_yaml


def no_files(path):
    raise AssertionError(f"unexpected load of {path}")


def files(mapping):
    """A `load_file` over in-memory documents keyed by absolute path; records what was read."""
    calls = []

    def load(path):
        calls.append(path)
        if path not in mapping:
            raise ProjectNotFoundError(f"cannot read {path}: No such file or directory")
        return mapping[path]

    load.calls = calls
    return load


def locate_at(line):
    def locate(path):
        return Location("/p/compose.yaml", line, 5)

    return locate


# --- same file ------------------------------------------------------------------------------------


def test_short_and_long_form_in_same_file():
    data = {
        "services": {
            "base": {"image": "busybox", "environment": {"A": "1"}, "command": ["sleep", "1"]},
            "short": {"extends": "base", "environment": {"B": "2"}},
            "long": {"extends": {"service": "base"}, "command": ["true"]},
        }
    }
    out = apply_extends(data, filename="/p/compose.yaml", load_file=no_files)
    assert out["services"]["short"] == {
        "image": "busybox",
        "environment": {"A": "1", "B": "2"},
        "command": ["sleep", "1"],
    }
    assert out["services"]["long"] == {"image": "busybox", "environment": {"A": "1"}, "command": ["true"]}
    assert out["services"]["base"] == data["services"]["base"]


def test_extending_service_keys_follow_merge_rules():
    data = {
        "services": {
            "base": {
                "image": "nginx",
                "ports": [{"target": 80, "published": "8080", "protocol": "tcp", "mode": "ingress"}],
                "volumes": [{"type": "volume", "source": "data", "target": "/data", "volume": {}}],
                "cap_add": ["NET_ADMIN"],
            },
            "web": {
                "extends": "base",
                "ports": [{"target": 80, "published": "8080", "protocol": "tcp", "mode": "host"}],
                "volumes": [{"type": "volume", "source": "other", "target": "/data", "volume": {}}],
                "cap_add": ["NET_ADMIN", "SYS_TIME"],
            },
        }
    }
    web = apply_extends(data, filename="/p/compose.yaml", load_file=no_files)["services"]["web"]
    assert web["ports"] == [{"target": 80, "published": "8080", "protocol": "tcp", "mode": "host"}]
    assert web["volumes"] == [{"type": "volume", "source": "other", "target": "/data", "volume": {}}]
    assert web["cap_add"] == ["NET_ADMIN", "SYS_TIME"]


def test_chain_in_same_file_and_no_extends_left():
    data = {
        "services": {
            "c": {"image": "alpine", "labels": {"tier": "c"}, "user": "nobody"},
            "b": {"extends": "c", "labels": {"tier": "b"}, "working_dir": "/b"},
            "a": {"extends": {"service": "b"}, "user": "root"},
        }
    }
    out = apply_extends(data, filename="/p/compose.yaml", load_file=no_files)["services"]
    assert out["a"] == {"image": "alpine", "labels": {"tier": "b"}, "user": "root", "working_dir": "/b"}
    assert out["b"] == {"image": "alpine", "labels": {"tier": "b"}, "user": "nobody", "working_dir": "/b"}
    assert all("extends" not in s for s in out.values())


def test_dependencies_are_inherited_like_compose_2_33():
    data = {
        "services": {
            "redis": {"image": "redis"},
            "job-base": {
                "image": "busybox",
                "depends_on": {"redis": {"condition": "service_started", "required": True}},
                "volumes_from": ["redis"],
                "links": ["redis"],
            },
            "job": {"extends": "job-base", "command": ["echo", "hi"]},
        }
    }
    job = apply_extends(data, filename="/p/compose.yaml", load_file=no_files)["services"]["job"]
    assert job["depends_on"] == {"redis": {"condition": "service_started", "required": True}}
    assert job["volumes_from"] == ["redis"]
    assert job["links"] == ["redis"]


def test_input_not_modified_and_no_extends_returns_same_data():
    data = {"services": {"a": {"image": "x"}, "b": {"extends": "a", "environment": {"K": "v"}}}}
    before = copy.deepcopy(data)
    out = apply_extends(data, filename="/p/compose.yaml", load_file=no_files)
    out["services"]["a"]["image"] = "changed"
    assert data == before
    plain = {"services": {"a": {"image": "x"}}}
    assert apply_extends(plain, filename="/p/compose.yaml", load_file=no_files) is plain


def test_reset_tag_of_extending_service_clears_base_value():
    data = {
        "services": {
            "base": {"image": "a", "ports": [{"target": 80, "protocol": "tcp", "mode": "ingress"}]},
            "web": {"extends": "base"},  # `ports: !reset []` was removed by yamlparse
        }
    }
    tags = {("services", "web", "ports"): "reset"}
    out = apply_extends(data, filename="/p/compose.yaml", load_file=no_files, tags=tags)
    assert out["services"]["web"] == {"image": "a"}
    assert out["services"]["base"]["ports"]


def test_override_tag_of_extending_service_replaces_base_value():
    data = {
        "services": {
            "base": {"image": "a", "environment": {"A": "1", "B": "2"}},
            "web": {"extends": "base", "environment": {"C": "3"}},
        }
    }
    tags = {("services", "web", "environment"): "override"}
    out = apply_extends(data, filename="/p/compose.yaml", load_file=no_files, tags=tags)
    assert out["services"]["web"]["environment"] == {"C": "3"}


# --- errors ---------------------------------------------------------------------------------------


def test_unknown_service_in_same_file():
    data = {"services": {"web": {"extends": "nope", "image": "a"}}}
    with pytest.raises(ExtendsError) as info:
        apply_extends(data, filename="/p/compose.yaml", load_file=no_files, locate=locate_at(3))
    assert "'nope' not found" in info.value.message
    assert info.value.path == ("services", "web", "extends")
    assert info.value.location == Location("/p/compose.yaml", 3, 5)


def test_error_deep_in_chain_points_at_failing_extends():
    data = {"services": {"web": {"extends": "mid"}, "mid": {"extends": "gone"}}}
    with pytest.raises(ExtendsError) as info:
        apply_extends(data, filename="/p/compose.yaml", load_file=no_files)
    assert info.value.path == ("services", "mid", "extends")
    assert info.value.location is None


def test_missing_service_key_in_long_form():
    data = {"services": {"web": {"extends": {"file": "other.yaml"}}}}
    with pytest.raises(ExtendsError, match=r"extends\.service is required"):
        apply_extends(data, filename="/p/compose.yaml", load_file=no_files)


def test_cycle_names_the_chain():
    data = {"services": {"web": {"extends": "base"}, "base": {"extends": "web"}}}
    with pytest.raises(ExtendsError) as info:
        apply_extends(data, filename="/p/compose.yaml", load_file=no_files, locate=locate_at(2))
    assert "web -> base -> web" in str(info.value)
    assert info.value.path == ("services", "web", "extends")
    assert info.value.location == Location("/p/compose.yaml", 2, 5)


def test_self_extension_is_a_cycle():
    data = {"services": {"web": {"extends": "web", "image": "a"}}}
    with pytest.raises(ExtendsError, match="web -> web"):
        apply_extends(data, filename="/p/compose.yaml", load_file=no_files)


def test_cycle_across_files(tmp_path):
    root = str(tmp_path / "compose.yaml")
    other = str(tmp_path / "lib" / "base.yaml")
    load = files({other: {"services": {"base": {"extends": {"file": "../compose.yaml", "service": "web"}}}}})
    data = {"services": {"web": {"extends": {"file": "lib/base.yaml", "service": "base"}}}}
    with pytest.raises(ExtendsError) as info:
        apply_extends(data, filename=root, load_file=load)
    assert "web -> base (base.yaml) -> web" in info.value.message


def test_missing_file(tmp_path):
    data = {"services": {"web": {"extends": {"file": "missing.yaml", "service": "base"}}}}
    with pytest.raises(ExtendsError) as info:
        apply_extends(data, filename=str(tmp_path / "compose.yaml"), load_file=files({}), locate=locate_at(7))
    assert "missing.yaml" in info.value.message
    assert info.value.path == ("services", "web", "extends")
    assert info.value.location == Location("/p/compose.yaml", 7, 5)


def test_unknown_service_in_other_file(tmp_path):
    other = str(tmp_path / "base.yaml")
    load = files({other: {"services": {"base": {"image": "a"}}}})
    data = {"services": {"web": {"extends": {"file": "base.yaml", "service": "nope"}}}}
    with pytest.raises(ExtendsError, match=r"'nope' not found in .*base\.yaml") as info:
        apply_extends(data, filename=str(tmp_path / "compose.yaml"), load_file=load)
    assert info.value.path == ("services", "web", "extends")


def test_other_file_without_services(tmp_path):
    other = str(tmp_path / "empty.yaml")
    data = {"services": {"web": {"extends": {"file": "empty.yaml", "service": "x"}}}}
    with pytest.raises(ExtendsError, match="no services section"):
        apply_extends(data, filename=str(tmp_path / "compose.yaml"), load_file=files({other: None}))


# --- other files ----------------------------------------------------------------------------------


def test_other_file_relative_paths_resolved_against_its_directory(tmp_path):
    lib = tmp_path / "lib"
    other = str(lib / "common.yaml")
    common = {
        "services": {
            "app": {
                "build": {"context": "./app", "dockerfile": "Dockerfile"},
                "env_file": [{"path": "app.env", "required": True}],
                "volumes": [
                    {
                        "type": "bind",
                        "source": "./conf",
                        "target": "/etc/app",
                        "bind": {"create_host_path": True},
                    },
                    {"type": "volume", "source": "data", "target": "/data", "volume": {}},
                ],
                "environment": {"MODE": "base"},
            }
        }
    }
    load = files({other: common})
    data = {
        "services": {
            "web": {
                "extends": {"file": "lib/common.yaml", "service": "app"},
                "environment": {"MODE": "web"},
                "volumes": [{"type": "bind", "source": "./local", "target": "/srv"}],
            }
        }
    }
    web = apply_extends(data, filename=str(tmp_path / "compose.yaml"), load_file=load)["services"]["web"]
    assert web["build"]["context"] == os.path.join(str(lib), "app")
    assert web["env_file"] == [{"path": os.path.join(str(lib), "app.env"), "required": True}]
    assert web["volumes"][0]["source"] == os.path.join(str(lib), "conf")
    assert web["volumes"][1]["source"] == "data"  # named volume untouched
    assert web["volumes"][2] == {
        "type": "bind",
        "source": "./local",
        "target": "/srv",
    }  # own path: later stage
    assert web["environment"] == {"MODE": "web"}
    assert "extends" not in web
    assert common["services"]["app"]["build"]["context"] == "./app"  # loader's cached data untouched


def test_chain_across_three_files_relative_to_each_holder(tmp_path):
    a = str(tmp_path / "compose.yaml")
    b = str(tmp_path / "one" / "b.yaml")
    c = str(tmp_path / "one" / "two" / "c.yaml")
    load = files(
        {
            b: {
                "services": {
                    "mid": {"extends": {"file": "two/c.yaml", "service": "root"}, "labels": {"from": "b"}},
                    "unused": {"image": "x"},
                }
            },
            c: {
                "services": {"root": {"image": "alpine", "build": {"context": "."}, "labels": {"from": "c"}}}
            },
        }
    )
    data = {"services": {"top": {"extends": {"file": "one/b.yaml", "service": "mid"}, "user": "1000"}}}
    out = apply_extends(data, filename=a, load_file=load)
    assert out["services"] == {
        "top": {
            "image": "alpine",
            "build": {"context": str(tmp_path / "one" / "two")},
            "labels": {"from": "b"},
            "user": "1000",
        }
    }
    assert load.calls == [b, c]


def test_same_other_file_loaded_once_for_many_services(tmp_path):
    other = str(tmp_path / "base.yaml")
    load = files({other: {"services": {"base": {"image": "a"}}}})
    ext = {"file": "base.yaml", "service": "base"}
    data = {"services": {"s1": {"extends": dict(ext)}, "s2": {"extends": dict(ext)}, "s3": {"extends": "s1"}}}
    out = apply_extends(data, filename=str(tmp_path / "compose.yaml"), load_file=load)
    assert {name: s["image"] for name, s in out["services"].items()} == {"s1": "a", "s2": "a", "s3": "a"}
    assert load.calls == [other]


def test_other_file_in_same_directory_extending_within_itself(tmp_path):
    other = str(tmp_path / "base.yaml")
    load = files(
        {
            other: {
                "services": {
                    "core": {"image": "python:3.12", "environment": {"A": "1"}},
                    "worker": {"extends": "core", "command": ["celery", "worker"]},
                }
            }
        }
    )
    data = {"services": {"w": {"extends": {"file": "base.yaml", "service": "worker"}}}}
    w = apply_extends(data, filename=str(tmp_path / "compose.yaml"), load_file=load)["services"]["w"]
    assert w == {"image": "python:3.12", "environment": {"A": "1"}, "command": ["celery", "worker"]}


def test_other_file_tags_apply_to_its_own_chain(tmp_path):
    other = str(tmp_path / "base.yaml")
    doc = {
        "services": {
            "core": {"image": "a", "cap_add": ["NET_ADMIN"]},
            "lean": {"extends": "core"},
        }
    }
    load = files({other: (doc, {("services", "lean", "cap_add"): "reset"})})
    data = {"services": {"web": {"extends": {"file": "base.yaml", "service": "lean"}}}}
    out = apply_extends(data, filename=str(tmp_path / "compose.yaml"), load_file=load)
    assert out["services"]["web"] == {"image": "a"}


def test_working_dir_overrides_base_for_relative_file(tmp_path):
    other = str(tmp_path / "project" / "base.yaml")
    load = files({other: {"services": {"base": {"image": "a"}}}})
    data = {"services": {"web": {"extends": {"file": "base.yaml", "service": "base"}}}}
    out = apply_extends(
        data,
        filename=str(tmp_path / "overrides" / "dev.yaml"),
        load_file=load,
        working_dir=str(tmp_path / "project"),
    )
    assert out["services"]["web"] == {"image": "a"}


def test_with_real_yaml_files(tmp_path):
    (tmp_path / "shared").mkdir()
    shared = tmp_path / "shared" / "common.yml"
    shared.write_text(
        "services:\n"
        "  base:\n"
        "    image: registry.local/app:1.4\n"
        "    environment:\n"
        "      LOG_LEVEL: info\n"
        "    volumes:\n"
        "      - type: bind\n"
        "        source: ./static\n"
        "        target: /srv/static\n",
        encoding="utf-8",
    )
    root = tmp_path / "compose.yaml"
    root.write_text(
        "services:\n"
        "  web:\n"
        "    extends:\n"
        "      file: shared/common.yml\n"
        "      service: base\n"
        "    environment:\n"
        "      LOG_LEVEL: debug\n"
        "  api:\n"
        "    extends:\n"
        "      file: shared/common.yml\n"
        "      service: missing\n",
        encoding="utf-8",
    )

    def load(path):
        return parse_yaml(open(path, encoding="utf-8").read(), path)[0].data

    doc = parse_yaml(root.read_text(encoding="utf-8"), str(root))[0]
    data = {"services": {"web": doc.data["services"]["web"]}}
    web = apply_extends(data, filename=str(root), load_file=load, locate=doc.locate)["services"]["web"]
    assert web["environment"] == {"LOG_LEVEL": "debug"}
    assert web["volumes"][0]["source"] == str(tmp_path / "shared" / "static")

    with pytest.raises(ExtendsError) as info:
        apply_extends(doc.data, filename=str(root), load_file=load, locate=doc.locate)
    assert info.value.path == ("services", "api", "extends")
    assert info.value.location == Location(str(root), 9, 5)


def test_os_error_from_loader_becomes_extends_error(tmp_path):
    def load(path):
        raise FileNotFoundError(2, "No such file or directory", path)

    data = {"services": {"web": {"extends": {"file": "gone.yaml", "service": "base"}}}}
    with pytest.raises(ExtendsError) as info:
        apply_extends(data, filename=str(tmp_path / "compose.yaml"), load_file=load)
    assert info.value.message == (
        f"cannot extend service 'web': cannot read {tmp_path / 'gone.yaml'}: No such file or directory"
    )


def test_same_name_in_other_file_is_not_a_cycle(tmp_path):
    other = str(tmp_path / "docker-compose.base.yml")
    load = files({other: {"services": {"web": {"image": "nginx", "restart": "always"}}}})
    data = {
        "services": {
            "web": {"extends": {"file": "docker-compose.base.yml", "service": "web"}, "restart": "no"},
            "empty": None,
        }
    }
    out = apply_extends(data, filename=str(tmp_path / "compose.yaml"), load_file=load)
    assert out["services"] == {"web": {"image": "nginx", "restart": "no"}, "empty": None}
