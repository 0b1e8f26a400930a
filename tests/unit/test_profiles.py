"""profiles: which services are on (compose-spec 15-profiles.md, compose-go HasProfile)."""

from __future__ import annotations

import copy

import pytest

from compose.errors import InvalidProjectError, Location
from compose.loader.profiles import all_profiles, apply_profiles


def dep(required: bool = True) -> dict:
    return {"condition": "service_started", "required": required}


PROJECT = {
    "name": "shop",
    "services": {
        "web": {"image": "nginx"},
        "db": {"image": "postgres"},
        "test_lib": {"image": "t", "profiles": ["test"]},
        "coverage": {"image": "c", "profiles": ["test"], "depends_on": {"test_lib": dep()}},
        "debug_lib": {"image": "d", "profiles": ["debug"], "depends_on": {"test_lib": dep()}},
        "admin": {"image": "a", "profiles": ["debug", "ops"], "depends_on": {"db": dep()}},
    },
    "volumes": {"data": {"name": "shop_data"}},
}


def names(data: dict) -> list[str]:
    return sorted(data["services"])


def test_no_profile_active_keeps_only_unprofiled_services():
    out = apply_profiles(PROJECT, [])
    assert names(out) == ["db", "web"]
    assert out["volumes"] == PROJECT["volumes"]


def test_profile_enables_its_services():
    assert names(apply_profiles(PROJECT, ["test"])) == ["coverage", "db", "test_lib", "web"]


def test_any_listed_profile_is_enough():
    assert names(apply_profiles(PROJECT, ["ops"])) == ["admin", "db", "web"]


def test_star_activates_everything():
    assert names(apply_profiles(PROJECT, ["*"])) == sorted(PROJECT["services"])


def test_required_dependency_on_disabled_service_is_an_error():
    with pytest.raises(InvalidProjectError) as info:
        apply_profiles(PROJECT, ["debug"], locate=lambda path: Location("compose.yaml", 12, 7))
    assert info.value.message == 'service "debug_lib" depends on undefined service "test_lib"'
    assert info.value.path == ("services", "debug_lib", "depends_on", "test_lib")
    assert info.value.location == Location("compose.yaml", 12, 7)


def test_optional_dependency_on_disabled_service_is_dropped():
    data = {
        "services": {
            "web": {"image": "x", "depends_on": {"cache": dep(False), "db": dep()}},
            "db": {"image": "pg"},
            "cache": {"image": "redis", "profiles": ["cache"]},
        }
    }
    out = apply_profiles(data, [])
    assert out["services"]["web"]["depends_on"] == {"db": dep()}
    only_optional = {
        "services": {"web": {"image": "x", "depends_on": {"cache": dep(False)}}, "cache": {"profiles": ["c"]}}
    }
    assert "depends_on" not in apply_profiles(only_optional, [])["services"]["web"]


def test_enabled_service_and_its_dependencies_are_on_regardless_of_profiles():
    out = apply_profiles(PROJECT, [], ["debug_lib"])
    assert names(out) == ["db", "debug_lib", "test_lib", "web"]
    assert out["services"]["debug_lib"]["depends_on"] == {"test_lib": dep()}


def test_enabled_dependencies_are_transitive():
    data = {
        "services": {
            "a": {"profiles": ["x"], "depends_on": {"b": dep()}},
            "b": {"profiles": ["y"], "depends_on": {"c": dep(False)}},
            "c": {"profiles": ["z"]},
            "d": {"profiles": ["x"]},
        }
    }
    assert names(apply_profiles(data, [], ["a"])) == ["a", "b", "c"]


def test_unknown_dependency_is_left_for_the_validator():
    data = {"services": {"web": {"image": "x", "depends_on": {"ghost": dep()}}}}
    out = apply_profiles(data, [])
    assert out["services"]["web"]["depends_on"] == {"ghost": dep()}


def test_input_not_modified():
    before = copy.deepcopy(PROJECT)
    apply_profiles(PROJECT, ["test"], ["admin"])
    assert before == PROJECT


def test_all_profiles_sorted_unique():
    assert all_profiles(PROJECT) == ["debug", "ops", "test"]
    assert all_profiles({"services": {"web": {"image": "x"}}}) == []
