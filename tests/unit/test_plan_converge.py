"""Convergence planner: docker compose's keep/recreate/start/scale/orphan rules, and two properties
checked with hypothesis: a plan's effect yields exactly the wanted replicas, and planning again on that
result does nothing (`up -d` twice)."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from compose.errors import InvalidProjectError, UsageError
from compose.model import Project
from compose.plan.converge import Action, Observed, Plan, UpOptions, plan_down, plan_scale, plan_up

_ids = itertools.count(1)


def dep(restart: bool = False, required: bool = True) -> dict:
    return {"condition": "service_started", "required": required, "restart": restart}


def project(services: Mapping[str, dict]) -> Project:
    return Project.from_dict(
        {"name": "pyct", "services": {n: {"image": "busybox", **s} for n, s in services.items()}}
    )


def ctr(
    service: str, number: int, state: str = "running", h: str | None = None, img: str = "img1", **kw
) -> Observed:
    cid = f"c{next(_ids)}"
    return Observed(cid, f"pyct-{service}-{number}", service, number, h or f"h-{service}", img, state, **kw)


def hashes_of(p: Project, suffix: str = "") -> dict[str, str]:
    return {name: f"h-{name}{suffix}" for name in p.services}


def images_of(p: Project) -> dict[str, str]:
    return dict.fromkeys(p.services, "img1")


def kinds(plan: Plan) -> list[tuple[str, str, int]]:
    return [(a.kind, a.service, a.number) for g in plan.generations for a in g]


def by_kind(plan: Plan, kind: str) -> list[tuple[str, int]]:
    return sorted((a.service, a.number) for g in plan.generations for a in g if a.kind == kind)


def gen_of(plan: Plan, service: str) -> int:
    return next(i for i, g in enumerate(plan.generations) if any(a.service == service for a in g))


def apply(
    plan: Plan,
    observed: Sequence[Observed],
    hashes: Mapping[str, str],
    images: Mapping[str, str],
    no_start: bool,
) -> list[Observed]:
    """What the executor leaves behind: the plan's effect on the observed containers."""
    result = {c.id: c for c in observed}
    fresh = "created" if no_start else "running"
    for action in (a for g in plan.generations for a in g):
        old = action.container
        new = Observed(
            f"n{next(_ids)}",
            "",
            action.service,
            action.number,
            hashes.get(action.service, "?"),
            images.get(action.service, "?"),
            fresh,
        )
        if action.kind == "create":
            assert old is None
            result[new.id] = new
        elif action.kind == "recreate":
            del result[old.id]
            result[new.id] = new
        elif action.kind == "remove":
            del result[old.id]
        elif action.kind in ("start", "restart"):
            result[old.id] = Observed(
                old.id,
                old.name,
                old.service,
                old.number,
                old.config_hash,
                old.image_id,
                "running",
                old.oneoff,
            )
        else:
            assert action.kind == "keep", action
    return list(result.values())


def assert_each_container_once(plan: Plan) -> None:
    touched = [a.container.id for g in plan.generations for a in g if a.container is not None]
    assert len(touched) == len(set(touched))


STACK = {
    "db": {},
    "cache": {},
    "app": {"depends_on": {"db": dep(), "cache": dep()}},
    "web": {"depends_on": {"app": dep()}},
    "tool": {},
}


# --- up: fresh, idempotent, recreate decisions -----------------------------------------------------


def test_fresh_up_creates_one_each_in_dependency_order():
    p = project(STACK)
    plan = plan_up(p, [], hashes_of(p), images_of(p))
    assert by_kind(plan, "create") == [("app", 1), ("cache", 1), ("db", 1), ("tool", 1), ("web", 1)]
    assert gen_of(plan, "db") == gen_of(plan, "cache") == gen_of(plan, "tool") == 0
    assert gen_of(plan, "app") == 1 and gen_of(plan, "web") == 2
    assert plan.orphans == ()


def test_second_up_only_keeps():
    p = project(STACK)
    h, i = hashes_of(p), images_of(p)
    after = apply(plan_up(p, [], h, i), [], h, i, no_start=False)
    again = plan_up(p, after, h, i)
    assert {k for k, _, _ in kinds(again)} == {"keep"}
    assert len(kinds(again)) == 5


def test_changed_config_recreates_only_that_service():
    p = project(STACK)
    running = [ctr(n, 1) for n in p.services]
    h = hashes_of(p)
    h["app"] = "h-app-v2"
    plan = plan_up(p, running, h, images_of(p))
    assert by_kind(plan, "recreate") == [("app", 1)]
    assert [a.reason for g in plan.generations for a in g if a.kind == "recreate"] == ["config changed"]
    assert len(by_kind(plan, "keep")) == 4


def test_changed_image_recreates():
    p = project({"web": {}})
    plan = plan_up(p, [ctr("web", 1, img="old")], hashes_of(p), {"web": "new"})
    assert [(a.kind, a.reason) for g in plan.generations for a in g] == [("recreate", "image changed")]


def test_service_missing_from_hashes_is_not_compared_on_config():
    p = project({"web": {}})
    plan = plan_up(p, [ctr("web", 1, h="whatever")], {}, images_of(p))
    assert kinds(plan) == [("keep", "web", 1)]


def test_force_recreate_and_no_recreate():
    p = project(STACK)
    running = [ctr(n, 1, h="stale") for n in p.services]
    forced = plan_up(p, running, hashes_of(p), images_of(p), UpOptions(force_recreate=True))
    assert len(by_kind(forced, "recreate")) == 5
    assert {a.reason for g in forced.generations for a in g} == {"forced"}
    never = plan_up(p, running, hashes_of(p), images_of(p), UpOptions(no_recreate=True))
    assert {k for k, _, _ in kinds(never)} == {"keep"}
    with pytest.raises(UsageError):
        plan_up(p, running, hashes_of(p), images_of(p), UpOptions(force_recreate=True, no_recreate=True))


# --- selection ---------------------------------------------------------------------------------------


def test_named_service_pulls_in_its_dependencies_only():
    p = project(STACK)
    plan = plan_up(p, [], hashes_of(p), images_of(p), UpOptions(services=("app",)))
    assert by_kind(plan, "create") == [("app", 1), ("cache", 1), ("db", 1)]


def test_no_deps_limits_to_the_names():
    p = project(STACK)
    running = [ctr(n, 1, h="stale") for n in p.services]
    plan = plan_up(p, running, hashes_of(p), images_of(p), UpOptions(services=("app",), no_deps=True))
    assert kinds(plan) == [("recreate", "app", 1)]


def test_force_recreate_applies_to_the_names_and_always_recreate_deps_to_their_dependencies():
    p = project(STACK)
    running = [ctr(n, 1) for n in p.services]
    h, i = hashes_of(p), images_of(p)
    forced = plan_up(p, running, h, i, UpOptions(services=("app",), force_recreate=True))
    assert by_kind(forced, "recreate") == [("app", 1)]
    assert by_kind(forced, "keep") == [("cache", 1), ("db", 1)]
    deps = plan_up(p, running, h, i, UpOptions(services=("app",), always_recreate_deps=True))
    assert by_kind(deps, "recreate") == [("cache", 1), ("db", 1)]
    assert by_kind(deps, "keep") == [("app", 1)]


def test_optional_dependency_on_absent_service_is_skipped_and_unknown_name_refused():
    p = project({"web": {"depends_on": {"ghost": dep(required=False)}}})
    assert kinds(plan_up(p, [], hashes_of(p), images_of(p))) == [("create", "web", 1)]
    with pytest.raises(InvalidProjectError, match="no such service: nope"):
        plan_up(p, [], hashes_of(p), images_of(p), UpOptions(services=("nope",)))


# --- replicas and numbers --------------------------------------------------------------------------


def test_replica_count_sources_and_precedence():
    p = project({"a": {"scale": 2}, "b": {"deploy": {"replicas": 3}}, "c": {"scale": 5}})
    plan = plan_up(p, [], hashes_of(p), images_of(p), UpOptions(scale=(("c", 4), ("c", 1))))
    assert by_kind(plan, "create") == [("a", 1), ("a", 2), ("b", 1), ("b", 2), ("b", 3), ("c", 1)]


def test_scale_up_fills_lowest_free_numbers():
    p = project({"w": {"scale": 4}})
    plan = plan_up(p, [ctr("w", 2), ctr("w", 5)], hashes_of(p), images_of(p))
    assert by_kind(plan, "create") == [("w", 1), ("w", 3)]
    assert by_kind(plan, "keep") == [("w", 2), ("w", 5)]


def test_scale_down_removes_highest_but_obsolete_first():
    p = project({"w": {"scale": 2}})
    plan = plan_up(p, [ctr("w", n) for n in (1, 2, 3, 4)], hashes_of(p), images_of(p))
    assert by_kind(plan, "remove") == [("w", 3), ("w", 4)]
    assert {a.reason for g in plan.generations for a in g if a.kind == "remove"} == {"scaled down"}
    stale = [ctr("w", 1, h="old"), ctr("w", 2), ctr("w", 3)]
    plan = plan_up(p, stale, hashes_of(p), images_of(p))
    assert by_kind(plan, "remove") == [("w", 1)]
    assert by_kind(plan, "keep") == [("w", 2), ("w", 3)]


def test_scale_zero_removes_all():
    p = project({"w": {"deploy": {"replicas": 0}}})
    assert kinds(plan_up(p, [ctr("w", 1), ctr("w", 2)], hashes_of(p), images_of(p))) == [
        ("remove", "w", 1),
        ("remove", "w", 2),
    ]


def test_duplicate_number_left_by_a_crash_keeps_the_good_one():
    p = project({"w": {}})
    good, stale = ctr("w", 1), ctr("w", 1, h="old", state="created")
    plan = plan_up(p, [stale, good], hashes_of(p), images_of(p))
    assert [(a.kind, a.container.id, a.reason) for g in plan.generations for a in g] == [
        ("keep", good.id, "running"),
        ("remove", stale.id, "duplicate number"),
    ]


def test_container_name_with_replicas_and_bad_scale_refused():
    p = project({"w": {"container_name": "fixed", "scale": 2}})
    with pytest.raises(InvalidProjectError, match="container name"):
        plan_up(p, [], hashes_of(p), images_of(p))
    ok = project({"w": {}})
    with pytest.raises(UsageError):
        plan_up(ok, [], hashes_of(ok), images_of(ok), UpOptions(scale=(("w", -1),)))
    with pytest.raises(InvalidProjectError):
        plan_up(ok, [], hashes_of(ok), images_of(ok), UpOptions(scale=(("x", 1),)))


# --- states ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "kind", "no_start_kind"),
    [
        ("running", "keep", "keep"),
        ("restarting", "keep", "keep"),
        ("paused", "keep", "keep"),
        ("exited", "start", "keep"),
        ("created", "start", "keep"),
        ("dead", "recreate", "recreate"),
    ],
)
def test_state_decisions(state, kind, no_start_kind):
    p = project({"w": {}})
    c = [ctr("w", 1, state=state)]
    assert kinds(plan_up(p, c, hashes_of(p), images_of(p))) == [(kind, "w", 1)]
    assert kinds(plan_up(p, c, hashes_of(p), images_of(p), UpOptions(no_start=True))) == [
        (no_start_kind, "w", 1)
    ]


def test_dead_is_recreated_even_with_no_recreate():
    p = project({"w": {}})
    plan = plan_up(
        p, [ctr("w", 1, state="dead", h="old")], hashes_of(p), images_of(p), UpOptions(no_recreate=True)
    )
    assert [(a.kind, a.reason) for g in plan.generations for a in g] == [("recreate", "dead")]


# --- orphans and one-offs ----------------------------------------------------------------------------


def test_orphans_listed_removed_first_with_flag_and_one_offs_never_orphans():
    p = project({"web": {}, "off": {}})
    orphan = ctr("old", 1)
    run = ctr("gone", 1, oneoff=True)
    webrun = ctr("web", 7, oneoff=True)
    disabled = ctr("prof", 1)
    observed = [ctr("web", 1), orphan, run, webrun, disabled]
    opts = UpOptions(disabled=("prof",))
    plan = plan_up(p, observed, hashes_of(p), images_of(p), opts)
    assert plan.orphans == (orphan,)
    assert by_kind(plan, "remove") == []
    assert by_kind(plan, "keep") == [("web", 1)]  # the one-off web-7 is not a replica
    plan = plan_up(
        p, observed, hashes_of(p), images_of(p), UpOptions(disabled=("prof",), remove_orphans=True)
    )
    assert [(a.kind, a.container, a.reason) for a in plan.generations[0]] == [("remove", orphan, "orphan")]
    assert_each_container_once(plan)


# --- across services ---------------------------------------------------------------------------------


def test_network_namespace_joiner_recreated_with_its_target():
    p = project({"vpn": {}, "app": {"network_mode": "service:vpn"}, "side": {"volumes_from": ["vpn:ro"]}})
    running = [ctr("vpn", 1), ctr("app", 1), ctr("side", 1)]
    h = hashes_of(p)
    assert {k for k, _, _ in kinds(plan_up(p, running, h, images_of(p)))} == {"keep"}
    h["vpn"] = "h-vpn-v2"
    plan = plan_up(p, running, h, images_of(p))
    assert by_kind(plan, "recreate") == [("app", 1), ("side", 1), ("vpn", 1)]
    assert gen_of(plan, "vpn") < gen_of(plan, "app")
    assert {a.reason for g in plan.generations for a in g if a.service == "app"} == {"vpn recreated"}


def test_joiner_of_a_service_with_no_container_is_refused():
    p = project({"vpn": {"scale": 0}, "app": {"network_mode": "service:vpn"}})
    with pytest.raises(InvalidProjectError, match="vpn"):
        plan_up(p, [], hashes_of(p), images_of(p))


def test_restart_true_dependents_restart_when_dependency_recreated():
    p = project(
        {"db": {}, "api": {"depends_on": {"db": dep(restart=True)}}, "ui": {"depends_on": {"db": dep()}}}
    )
    running = [ctr("db", 1), ctr("api", 1), ctr("ui", 1)]
    h = hashes_of(p)
    h["db"] = "new"
    plan = plan_up(p, running, h, images_of(p))
    assert kinds(plan) == [("recreate", "db", 1), ("restart", "api", 1), ("keep", "ui", 1)]
    plan = plan_up(p, running, h, images_of(p), UpOptions(no_start=True))
    assert by_kind(plan, "restart") == []


# --- down and scale ----------------------------------------------------------------------------------


def test_down_reverse_order_one_offs_and_orphans():
    p = project(STACK)
    observed = [ctr(n, 1) for n in p.services] + [ctr("web", 2), ctr("app", 9, oneoff=True), ctr("old", 1)]
    plan = plan_down(p, observed)
    assert gen_of(plan, "web") < gen_of(plan, "app") < gen_of(plan, "db")
    assert len(by_kind(plan, "remove")) == 6 and [c.service for c in plan.orphans] == ["old"]
    full = plan_down(p, observed, remove_orphans=True)
    assert len(by_kind(full, "remove")) == 8
    assert [a.service for a in full.generations[-1]] == ["old"]
    assert_each_container_once(full)


def test_down_without_project_removes_what_labels_say_in_one_generation():
    observed = [ctr("a", 1), ctr("b", 1), ctr("b", 2), ctr("a", 3, oneoff=True)]
    plan = plan_down(None, observed)
    assert len(plan.generations) == 1 and by_kind(plan, "remove") == [("a", 1), ("b", 1), ("b", 2)]
    assert plan_down(None, []).generations == ()


def test_scale_command_changes_only_named_counts():
    p = project({"w": {}, "db": {}, "x": {"depends_on": {"db": dep()}}})
    observed = [ctr("w", 1, h="stale"), ctr("w", 2, state="exited"), ctr("db", 1, h="stale"), ctr("x", 1)]
    plan = plan_scale(p, observed, {"w": 3})
    assert kinds(plan) == [("keep", "w", 1), ("start", "w", 2), ("create", "w", 3)]
    assert by_kind(plan_scale(p, observed, {"w": 1}), "remove") == [("w", 2)]
    with pytest.raises(InvalidProjectError):
        plan_scale(p, observed, {"nope": 1})


# --- properties ----------------------------------------------------------------------------------------

STATES = ("created", "running", "paused", "restarting", "exited", "dead")
NAMES = ("s0", "s1", "s2", "s3", "s4")


@st.composite
def scenarios(draw):
    """A project of up to five services (acyclic deps, some restart/namespace edges), a messy observed
    state (stale hashes, every state, duplicates, one-offs, orphans) and random up options."""
    n = draw(st.integers(1, len(NAMES)))
    services: dict[str, dict] = {}
    for i, name in enumerate(NAMES[:n]):
        svc: dict = {"scale": draw(st.integers(0, 3))}
        deps = draw(st.sets(st.sampled_from(NAMES[:i]))) if i else set()
        if deps:
            svc["depends_on"] = {d: dep(restart=draw(st.booleans())) for d in sorted(deps)}
            if draw(st.booleans()):
                target = sorted(deps)[0]
                svc["network_mode"] = f"service:{target}"
                services[target]["scale"] = max(services[target]["scale"], 1)
        services[name] = svc
    p = project(services)
    hashes = {name: draw(st.sampled_from(("h1", "h2"))) for name in p.services}
    images = {name: draw(st.sampled_from(("i1", "i2"))) for name in p.services}
    observed = draw(
        st.lists(
            st.builds(
                lambda svc, num, h, img, state, oneoff: ctr(svc, num, state, h, img, oneoff=oneoff),
                st.sampled_from((*NAMES[:n], "orphan")),
                st.integers(1, 5),
                st.sampled_from(("h1", "h2")),
                st.sampled_from(("i1", "i2")),
                st.sampled_from(STATES),
                st.booleans(),
            ),
            max_size=12,
        )
    )
    options = UpOptions(
        services=tuple(draw(st.sets(st.sampled_from(NAMES[:n]), max_size=2))),
        scale=tuple(draw(st.lists(st.tuples(st.sampled_from(NAMES[:n]), st.integers(0, 4)), max_size=2))),
        no_deps=draw(st.booleans()),
        remove_orphans=draw(st.booleans()),
        no_start=draw(st.booleans()),
        **draw(
            st.sampled_from(
                ({}, {"force_recreate": True}, {"no_recreate": True}, {"always_recreate_deps": True})
            )
        ),
    )
    return p, observed, hashes, images, options


def wanted_counts(p: Project, options: UpOptions) -> dict[str, int]:
    counts = {name: svc.replicas for name, svc in p.services.items()}
    counts.update(dict(options.scale))
    return counts


def targets_of(p: Project, options: UpOptions) -> set[str]:
    from compose.plan.converge import project_graph

    named = options.services or tuple(p.services)
    return set(named) if options.no_deps else set(project_graph(p).subgraph(named).services)


def _plan_or_skip(p, observed, hashes, images, options) -> Plan:
    try:
        return plan_up(p, observed, hashes, images, options)
    except InvalidProjectError as error:  # a joiner whose target is scaled to 0 by --scale
        assert "cannot share" in str(error)
        assume(False)
        raise


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_property_effect_gives_exactly_the_wanted_replicas(scenario):
    p, observed, hashes, images, options = scenario
    plan = _plan_or_skip(p, observed, hashes, images, options)
    assert_each_container_once(plan)
    after = apply(plan, observed, hashes, images, options.no_start)
    counts = wanted_counts(p, options)
    for name in targets_of(p, options):
        mine = [c for c in after if c.service == name and not c.oneoff]
        assert sorted(c.number for c in mine) == sorted({c.number for c in mine}), "numbers unique"
        assert len(mine) == counts[name]
        assert all(c.state != "dead" for c in mine)
        if not options.no_recreate:
            assert all((c.config_hash, c.image_id) == (hashes[name], images[name]) for c in mine)
        if not options.no_start:
            assert all(c.state in ("running", "paused", "restarting") for c in mine)
    untouched = [c for c in observed if c.oneoff or c.service not in targets_of(p, options)]
    orphans = {c.id for c in plan.orphans}
    for c in untouched:
        assert (c in after) != (options.remove_orphans and c.id in orphans)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_property_planning_again_only_keeps(scenario):
    p, observed, hashes, images, options = scenario
    plan = _plan_or_skip(p, observed, hashes, images, options)
    after = apply(plan, observed, hashes, images, options.no_start)
    again_options = UpOptions(**{**_fields(options), "force_recreate": False, "always_recreate_deps": False})
    again = plan_up(p, after, hashes, images, again_options)
    assert {a.kind for g in again.generations for a in g} <= {"keep"}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_property_down_removes_every_service_container_once(scenario):
    p, observed, _, _, options = scenario
    plan = plan_down(p, observed, remove_orphans=options.remove_orphans)
    assert_each_container_once(plan)
    assert all(a.kind == "remove" for g in plan.generations for a in g)
    removed = {a.container.id for g in plan.generations for a in g}
    for c in observed:
        expected = (not c.oneoff and c.service in p.services) or options.remove_orphans
        assert (c.id in removed) == expected


def _fields(options: UpOptions) -> dict:
    from dataclasses import fields

    return {f.name: getattr(options, f.name) for f in fields(options)}


def test_action_is_hashable_value():
    assert Action("keep", "w", 1) == Action("keep", "w", 1)
