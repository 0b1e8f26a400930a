"""Arbitrary input must end in a clean ComposeError or a loaded project — never a traceback."""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path

import yaml
from corpus_cases import GOOD
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compose.errors import ComposeError
from compose.loader.pipeline import ProjectOptions, load_project

# CI runs 120 examples per test; set PYCOMPOSE_FUZZ_EXAMPLES=5000 for a longer hunt.
FUZZ = settings(
    max_examples=int(os.environ.get("PYCOMPOSE_FUZZ_EXAMPLES", "120")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=False),
    st.text(max_size=20),
    st.sampled_from(
        ["80:80", "80:80:80:80", "${X}", "${X:?boom}", "$$", "./data:/data", "1m30s", "12XB", "service:a"]
    ),
)
keys = st.one_of(
    st.text(max_size=10),
    st.sampled_from(
        [
            "services",
            "image",
            "ports",
            "volumes",
            "networks",
            "depends_on",
            "build",
            "environment",
            "extends",
            "include",
            "healthcheck",
            "deploy",
            "secrets",
            "configs",
            "profiles",
            "x-a",
        ]
    ),
)
documents = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=5),
    max_leaves=30,
)


def load_text(text: str) -> None:
    with tempfile.TemporaryDirectory(prefix="fuzz") as directory:
        (Path(directory) / "compose.yaml").write_text(text, encoding="utf-8")
        try:
            load_project(ProjectOptions(cwd=directory, environ={"HOME": directory}))
        except ComposeError as exc:
            assert str(exc)


@FUZZ
@given(st.text(max_size=300))
def test_arbitrary_text(text):
    load_text(text)


@FUZZ
@given(documents)
def test_arbitrary_yaml_documents(document):
    load_text(yaml.safe_dump(document))


@FUZZ
@given(st.dictionaries(st.sampled_from(["web", "db", "app"]), documents, max_size=3))
def test_arbitrary_services(services):
    load_text(yaml.safe_dump({"services": services}))


def mutate(data, rng: random.Random, replacement):
    """Change one randomly chosen node of a parsed compose file."""
    containers = []

    def walk(node):
        if isinstance(node, dict):
            containers.append(node)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            containers.append(node)
            for value in node:
                walk(value)

    walk(data)
    target = rng.choice(containers)
    if not target:
        return data
    key = rng.choice(list(target.keys())) if isinstance(target, dict) else rng.randrange(len(target))
    action = rng.choice(["replace", "delete", "retype"])
    if action == "delete":
        del target[key]
    elif action == "replace":
        target[key] = replacement
    else:
        value = target[key]
        target[key] = [value] if not isinstance(value, list) else {"k": value}
    return data


VALID_FILES = sorted(case / "compose.yaml" for case in GOOD if (case / "compose.yaml").is_file())


@FUZZ
@given(st.integers(0, 10**6), scalars, st.integers(1, 3))
def test_mutations_of_valid_files(seed, replacement, rounds):
    assert VALID_FILES, "the corpus of valid files is missing"
    rng = random.Random(seed)
    source = rng.choice(VALID_FILES)
    data = yaml.safe_load(source.read_text())
    for _ in range(rounds):
        data = mutate(data, rng, replacement)
    load_text(yaml.safe_dump(data))
