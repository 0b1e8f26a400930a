"""`start` of a half-made container (issue 7): a CLI killed during a create or a remove leaves a row with
no container directory. `start` must not try to run it (it cannot), but, as `up` does, remove it and create
it afresh, leaving the other services' containers alone."""

from __future__ import annotations

import os
import shutil

import pytest
from test_up_down_root import Project
from test_up_down_root import project as project

pytestmark = pytest.mark.root

if os.geteuid() != 0:
    pytest.skip("needs root", allow_module_level=True)


def test_start_recreates_a_half_made_container(project: Project) -> None:
    project.write(
        """
        services:
          a:
            image: pyc-test/busybox:1
            command: SLEEPER
            stop_grace_period: 2s
          b:
            image: pyc-test/busybox:1
            command: SLEEPER
            stop_grace_period: 2s
        """
    )
    project("up", "-d")
    project("stop")
    before = project.containers()
    broken = before[f"{project.name}-a-1"]
    shutil.rmtree(project.root / "containers" / broken["id"])  # what a remove killed half-way leaves

    result = project("start")

    after = project.containers()
    assert set(after) == {f"{project.name}-a-1", f"{project.name}-b-1"}
    assert after[f"{project.name}-a-1"]["id"] != broken["id"]
    assert after[f"{project.name}-b-1"]["id"] == before[f"{project.name}-b-1"]["id"]
    assert {r["state"] for r in after.values()} == {"running"}
    assert "Recreate" in result.stderr + result.stdout
    project("down")
    assert project.containers() == {}
