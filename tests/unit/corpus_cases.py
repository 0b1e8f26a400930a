"""Where the corpus of tests/corpus lives and how its placeholders expand; shared by the tests that use it."""

from __future__ import annotations

import os
from pathlib import Path

CORPUS = Path(__file__).resolve().parent.parent / "corpus"
GOOD = sorted(p for p in (CORPUS / "good").iterdir() if p.is_dir())
BAD = sorted(p for p in (CORPUS / "bad").iterdir() if p.is_dir())


def expand(text: str, case: Path) -> str:
    """`{{DIR}}` is the case folder, `{{HOME}}` the user's home (see tests/corpus/README.md)."""
    return text.replace("{{DIR}}", str(case)).replace("{{HOME}}", os.path.expanduser("~"))


def expected_output(case: Path) -> str:
    return expand((case / "expected.yaml").read_text(), case)
