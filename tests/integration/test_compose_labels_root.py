"""Containers created through the engine API carry Compose's labels, and a project's are found by them."""

from __future__ import annotations

import io
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from rootfs_fixture import busybox_tar

from compose import labels
from compose.labels import DependencyLabel, ProjectIdentity
from engine.api import ContainerSpec, Engine, Process

pytestmark = pytest.mark.root

if os.geteuid() != 0:
    pytest.skip("needs root", allow_module_level=True)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    buffer = io.BytesIO(busybox_tar())
    eng = Engine.open(str(tmp_path / "root"))
    try:
        eng.import_image(buffer, "pyc-test/busybox:1")
        yield eng
    finally:
        for record in eng.list_containers(all=True):
            eng.remove_container(record["id"], force=True)
        eng.close()


def _create(engine: Engine, project: ProjectIdentity, service: str, number: int, **kw) -> dict:  # type: ignore[no-untyped-def]
    image = engine.inspect_image("pyc-test/busybox:1")
    spec = ContainerSpec(
        id="",
        name=f"{project.name}-{service}-{number}",
        image_id=image.id,
        layer_dirs=(),
        process=Process(args=("true",)),
        image="pyc-test/busybox:1",
        labels=tuple(labels.container_labels(project, service, number, config_hash="h" * 64, **kw).items()),
    )
    return engine.create_container(spec)


def test_a_projects_containers_are_found_and_read_back_by_their_labels(engine: Engine) -> None:
    shop = ProjectIdentity("pyctest" + uuid.uuid4().hex[:6], "/srv/shop", ("/srv/shop/compose.yaml",))
    other = ProjectIdentity(shop.name + "x", "/srv/other", ("/srv/other/compose.yaml",))
    web1 = _create(engine, shop, "web", 1, depends_on=(DependencyLabel("db", "service_healthy"),))
    web2 = _create(engine, shop, "web", 2)
    db = _create(engine, shop, "db", 1)
    run = _create(engine, shop, "web", 3, oneoff=True)
    _create(engine, other, "web", 1)

    found = engine.list_containers(all=True, labels=labels.project_filter(shop.name))
    assert sorted(r["id"] for r in found) == sorted([web1["id"], web2["id"], db["id"]])
    webs = engine.list_containers(all=True, labels=labels.project_filter(shop.name, "web"))
    assert sorted(r["id"] for r in webs) == sorted([web1["id"], web2["id"]])
    with_oneoffs = engine.list_containers(all=True, labels=labels.project_filter(shop.name, oneoff=None))
    assert run["id"] in {r["id"] for r in with_oneoffs}

    doc = engine.inspect_container(web1["id"])
    got = doc["Config"]["Labels"]
    assert got[labels.CONTAINER_NUMBER] == "1" and got[labels.CONFIG_HASH] == "h" * 64
    assert labels.parse_depends_on(got[labels.DEPENDS_ON]) == [DependencyLabel("db", "service_healthy")]
    assert got[labels.CONFIG_FILES] == "/srv/shop/compose.yaml" and got[labels.WORKING_DIR] == "/srv/shop"
