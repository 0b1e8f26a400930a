"""ServiceGraph's plain-dict answers must equal networkx's on random graphs (networkx is the oracle).

The hot path left networkx for start-up time; these property tests keep it honest: generations,
closures, subgraphs and cycle detection against networkx's own algorithms on the same edges.
"""

from __future__ import annotations

from itertools import pairwise

import networkx as nx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from compose.errors import DependencyCycleError
from compose.graph import ServiceGraph

NAMES = [f"s{i}" for i in range(12)]


@st.composite
def service_maps(draw: st.DrawFn, *, acyclic: bool) -> dict[str, dict]:
    """Random projects; acyclic ones only depend on services earlier in a random order."""
    names = draw(st.lists(st.sampled_from(NAMES), min_size=0, max_size=len(NAMES), unique=True))
    services: dict[str, dict] = {}
    for i, name in enumerate(names):
        pool = names[:i] if acyclic else names
        targets = draw(st.lists(st.sampled_from(pool), unique=True, max_size=4)) if pool else []
        kinds = draw(
            st.lists(
                st.sampled_from(["depends_on", "links", "volumes_from"]),
                min_size=len(targets),
                max_size=len(targets),
            )
        )
        svc: dict = {"image": "busybox"}
        for target, kind in zip(targets, kinds, strict=True):
            if kind == "depends_on":
                svc.setdefault("depends_on", {})[target] = {"condition": "service_started"}
            else:
                svc.setdefault(kind, []).append(target)
        services[name] = svc
    return services


def oracle(graph: ServiceGraph) -> nx.DiGraph:
    """The same edges in networkx, built independently from dependency_edges()."""
    g = nx.DiGraph()
    g.add_nodes_from(graph.services)
    g.add_edges_from((e.depends_on, e.service) for e in graph.dependency_edges())
    return g


@settings(max_examples=200, deadline=None)
@given(service_maps(acyclic=True))
def test_generations_match_networkx(services: dict[str, dict]) -> None:
    graph = ServiceGraph(services)
    g = oracle(graph)
    expected = [sorted(gen) for gen in nx.topological_generations(g)]
    assert graph.start_generations() == expected
    assert graph.stop_generations() == expected[::-1]
    order = graph.start_order()
    assert sorted(order) == sorted(services)
    assert all(order.index(a) < order.index(b) for a, b in g.edges)


@settings(max_examples=200, deadline=None)
@given(service_maps(acyclic=True), st.data())
def test_closures_and_subgraph_match_networkx(services: dict[str, dict], data: st.DataObject) -> None:
    graph = ServiceGraph(services)
    g = oracle(graph)
    for name in services:
        assert graph.dependencies(name) == sorted(g.predecessors(name))
        assert graph.dependents(name) == sorted(g.successors(name))
        assert graph.dependencies(name, transitive=True) == sorted(nx.ancestors(g, name))
        assert graph.dependents(name, transitive=True) == sorted(nx.descendants(g, name))
    if services:
        picked = data.draw(st.lists(st.sampled_from(sorted(services)), min_size=1, unique=True))
        keep = set(picked).union(*(nx.ancestors(g, n) for n in picked))
        sub = graph.subgraph(picked)
        assert sub.services == sorted(keep)
        assert sorted(oracle(sub).edges) == sorted(g.subgraph(keep).edges)
        assert sub.start_generations() == [sorted(x) for x in nx.topological_generations(g.subgraph(keep))]


@settings(max_examples=300, deadline=None)
@given(service_maps(acyclic=False))
def test_cycle_detection_matches_networkx(services: dict[str, dict]) -> None:
    g = nx.DiGraph()
    g.add_nodes_from(services)
    for name, svc in services.items():
        for target in [*svc.get("depends_on", {}), *svc.get("links", []), *svc.get("volumes_from", [])]:
            g.add_edge(target, name)
    if nx.is_directed_acyclic_graph(g):
        graph = ServiceGraph(services)
        assert graph.start_generations() == [sorted(x) for x in nx.topological_generations(g)]
        return
    with pytest.raises(DependencyCycleError) as info:
        ServiceGraph(services)
    cycle = info.value.cycle
    assert cycle[0] == cycle[-1]
    # every step of the reported cycle is a real "depends on" edge
    assert all(g.has_edge(b, a) for a, b in pairwise(cycle))


@settings(max_examples=100, deadline=None)
@given(service_maps(acyclic=True))
def test_as_networkx_has_the_same_edges(services: dict[str, dict]) -> None:
    graph = ServiceGraph(services)
    exported = graph.as_networkx()
    assert sorted(exported.edges) == sorted(oracle(graph).edges)
    assert all(exported.edges[a, b]["dependency"] == graph.dependency(b, a) for a, b in exported.edges)
