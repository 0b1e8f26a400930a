"""The architecture's one rule between the halves, checked on the source: compose/ reaches the engine only
through engine.api (and its error family), and engine/ never imports compose/."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def imported_modules(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module in ("engine", "compose"):  # `from engine import api` imports engine.api
                names.extend(f"{node.module}.{alias.name}" for alias in node.names)
            else:
                names.append(node.module)
    return names


def test_compose_talks_to_the_engine_only_through_its_api():
    offenders = [
        f"{path.relative_to(ROOT)}: {name}"
        for path in sorted((ROOT / "compose").rglob("*.py"))
        for name in imported_modules(path)
        if (name == "engine" or name.startswith("engine.")) and name not in ("engine.api", "engine.errors")
    ]
    assert offenders == []


def test_engine_knows_nothing_of_compose():
    offenders = [
        f"{path.relative_to(ROOT)}: {name}"
        for path in sorted((ROOT / "engine").rglob("*.py"))
        for name in imported_modules(path)
        if name == "compose" or name.startswith("compose.")
    ]
    assert offenders == []
