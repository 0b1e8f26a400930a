"""Service dependency graph: cycle search without networkx, generations, selection closure."""

from __future__ import annotations

import subprocess
import sys

import pytest

from compose.errors import DependencyCycleError, InvalidProjectError
from compose.graph import Dependency, ServiceGraph, check_cycles, find_cycle, service_dependencies


def dep(condition: str = "service_started", required: bool = True, restart: bool | None = None) -> dict:
    spec: dict = {"condition": condition, "required": required}
    if restart is not None:
        spec["restart"] = restart
    return spec


# A LEMP stack with a queue, workers and monitoring, in canonical form (after normalize).
STACK = {
    "nginx": {"image": "nginx:1.27", "depends_on": {"php": dep()}},
    "php": {
        "image": "php:8.3-fpm",
        "depends_on": {"db": dep("service_healthy"), "redis": dep()},
    },
    "db": {"image": "mariadb:11", "healthcheck": {"test": ["CMD", "healthcheck.sh", "--connect"]}},
    "redis": {"image": "redis:7"},
    "worker": {
        "image": "php:8.3-cli",
        "depends_on": {
            "redis": dep(),
            "db": dep("service_healthy"),
            "migrate": dep("service_completed_successfully"),
        },
    },
    "migrate": {"image": "php:8.3-cli", "depends_on": {"db": dep("service_healthy")}},
    "prometheus": {"image": "prom/prometheus"},
    "grafana": {"image": "grafana/grafana", "depends_on": {"prometheus": dep()}},
}


# --- find_cycle --------------------------------------------------------------------------------------


def test_find_cycle_none_for_a_dag() -> None:
    assert find_cycle({"web": ["php"], "php": ["db"], "db": []}) is None


def test_find_cycle_two_services() -> None:
    assert find_cycle({"web": ["php"], "php": ["web"]}) == ["php", "web", "php"]


def test_find_cycle_reports_from_first_name_in_sorted_order() -> None:
    # Same graph, different insertion order: same answer (deterministic like compose-go).
    a = find_cycle({"web": ["php"], "php": ["db"], "db": ["web"]})
    b = find_cycle({"db": ["web"], "php": ["db"], "web": ["php"]})
    assert a == b == ["db", "web", "php", "db"]


def test_find_cycle_self_dependency() -> None:
    assert find_cycle({"web": ["web"]}) == ["web", "web"]


def test_find_cycle_only_the_loop_not_the_path_to_it() -> None:
    # a -> b -> c -> d -> b : the cycle is b, c, d
    assert find_cycle({"a": ["b"], "b": ["c"], "c": ["d"], "d": ["b"]}) == ["b", "c", "d", "b"]


def test_find_cycle_targets_without_entries_are_leaves() -> None:
    assert find_cycle({"web": ["db", "cache"]}) is None


def test_find_cycle_diamond_is_not_a_cycle() -> None:
    edges = {"app": ["api", "auth"], "api": ["db"], "auth": ["db"], "db": []}
    assert find_cycle(edges) is None


def test_find_cycle_deep_chain_does_not_recurse() -> None:
    n = 5000
    edges = {f"s{i}": [f"s{i + 1}"] for i in range(n)}
    assert find_cycle(edges) is None
    edges[f"s{n}"] = ["s0"]
    cycle = find_cycle(edges)
    assert cycle is not None and cycle[0] == cycle[-1] and len(cycle) == n + 2


def test_find_cycle_wide_graph_is_fast() -> None:
    # A layered graph that makes a DFS without a "done" set exponential.
    layers = 40
    edges = {f"l{i}{x}": [f"l{i + 1}a", f"l{i + 1}b"] for i in range(layers) for x in "ab"}
    assert find_cycle(edges) is None


def test_check_cycles_points_at_the_declaring_attribute() -> None:
    services = {
        "web": {"image": "x", "depends_on": {"php": dep()}},
        "php": {"image": "x", "links": ["web:frontend"]},
    }
    with pytest.raises(DependencyCycleError) as info:
        check_cycles(services)
    assert info.value.cycle == ["php", "web", "php"]
    assert info.value.path == ("services", "php", "links", 0)
    assert str(info.value).endswith("dependency cycle detected: php -> web -> php")


# --- service_dependencies ------------------------------------------------------------------------------


def test_service_dependencies_implicit_ones_when_normalize_was_skipped() -> None:
    svc = {
        "image": "x",
        "depends_on": ["db"],
        "links": ["cache:redis"],
        "network_mode": "service:vpn",
        "ipc": "service:shm",
        "pid": "host",
        "volumes_from": ["data:ro", "container:legacy"],
    }
    deps = service_dependencies("app", svc)
    assert list(deps) == ["db", "cache", "vpn", "shm", "data"]
    assert deps["db"] == Dependency("app", "db")
    assert deps["cache"].restart is True and deps["cache"].origin == ("links", 0)
    assert deps["vpn"].source == "network_mode" and deps["vpn"].path == ("services", "app", "network_mode")
    assert deps["data"].restart is False and deps["data"].origin == ("volumes_from", 0)
    assert deps["db"].path == ("services", "app", "depends_on", "db")


def test_service_dependencies_explicit_attributes_with_implicit_origin() -> None:
    # normalize copied `links: [cache, db]` into depends_on; the spec comes from depends_on, the
    # origin from the link the user wrote.
    svc = {"depends_on": {"db": dep("service_healthy", restart=False)}, "links": ["cache", "db"]}
    deps = service_dependencies("web", svc)
    assert deps["db"].condition == "service_healthy" and deps["db"].restart is False
    assert deps["db"].origin == ("links", 1)


# --- ServiceGraph ----------------------------------------------------------------------------------------


def test_start_generations_of_the_stack() -> None:
    graph = ServiceGraph(STACK)
    assert graph.start_generations() == [
        ["db", "prometheus", "redis"],
        ["grafana", "migrate", "php"],
        ["nginx", "worker"],
    ]


def test_stop_generations_are_reversed() -> None:
    graph = ServiceGraph(STACK)
    assert graph.stop_generations() == [
        ["nginx", "worker"],
        ["grafana", "migrate", "php"],
        ["db", "prometheus", "redis"],
    ]


def test_start_order_respects_every_edge() -> None:
    graph = ServiceGraph(STACK)
    order = graph.start_order()
    assert sorted(order) == sorted(STACK)
    for edge in graph.dependency_edges():
        assert order.index(edge.depends_on) < order.index(edge.service)


def test_dependencies_and_dependents() -> None:
    graph = ServiceGraph(STACK)
    assert graph.dependencies("worker") == ["db", "migrate", "redis"]
    assert graph.dependencies("nginx", transitive=True) == ["db", "php", "redis"]
    assert graph.dependents("db") == ["migrate", "php", "worker"]
    assert graph.dependents("db", transitive=True) == ["migrate", "nginx", "php", "worker"]
    assert graph.dependencies("redis") == []


def test_dependency_edges_carry_condition_required_restart() -> None:
    services = {
        "web": {"image": "x", "depends_on": {"db": dep("service_healthy", restart=True)}},
        "db": {"image": "y"},
        "backup": {"image": "z", "volumes_from": ["db:ro"]},
    }
    edges = ServiceGraph(services).dependency_edges()
    assert edges == [
        Dependency("backup", "db", restart=False, origin=("volumes_from", 0)),
        Dependency("web", "db", condition="service_healthy", required=True, restart=True),
    ]
    assert ServiceGraph(services).dependency("web", "db").condition == "service_healthy"
    assert ServiceGraph(services).dependency("db", "web") is None


def test_subgraph_is_the_transitive_closure() -> None:
    sub = ServiceGraph(STACK).subgraph(["nginx"])
    assert sub.services == ["db", "nginx", "php", "redis"]
    assert sub.start_generations() == [["db", "redis"], ["php"], ["nginx"]]
    assert "worker" not in sub and len(sub) == 4


def test_subgraph_of_several_services() -> None:
    sub = ServiceGraph(STACK).subgraph(["grafana", "migrate"])
    assert sub.services == ["db", "grafana", "migrate", "prometheus"]
    assert [e.service for e in sub.dependency_edges()] == ["grafana", "migrate"]


def test_subgraph_unknown_service() -> None:
    with pytest.raises(InvalidProjectError, match="no such service: mailer"):
        ServiceGraph(STACK).subgraph(["mailer"])


def test_graph_cycle_raises_with_cycle() -> None:
    services = {
        "web": {"image": "nginx", "depends_on": {"php": dep()}},
        "php": {"image": "php", "depends_on": {"web": dep()}},
        "db": {"image": "mysql"},
    }
    with pytest.raises(DependencyCycleError) as info:
        ServiceGraph(services)
    assert info.value.cycle == ["php", "web", "php"]
    assert info.value.message == "dependency cycle detected: php -> web -> php"
    assert info.value.path == ("services", "php", "depends_on", "web")


def test_graph_drops_optional_dependency_on_missing_service() -> None:
    services = {
        "web": {"image": "nginx", "depends_on": {"debugger": dep(required=False), "api": dep()}},
        "api": {"image": "api"},
    }
    graph = ServiceGraph(services)
    assert graph.dependencies("web") == ["api"]


def test_graph_rejects_required_dependency_on_missing_service() -> None:
    services = {"web": {"image": "nginx", "links": ["api"]}}
    with pytest.raises(InvalidProjectError) as info:
        ServiceGraph(services)
    assert info.value.message == 'service "web" depends on undefined service "api"'
    assert info.value.path == ("services", "web", "links", 0)


def test_empty_project() -> None:
    graph = ServiceGraph({})
    assert graph.start_generations() == [] and graph.services == []


def test_as_networkx_is_a_copy() -> None:
    graph = ServiceGraph(STACK)
    g = graph.as_networkx()
    g.remove_node("db")
    assert "db" in graph and graph.as_networkx().has_edge("db", "php")


def test_importing_graph_does_not_import_networkx() -> None:
    code = "import sys, compose.graph, compose.loader.validate; print('networkx' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
