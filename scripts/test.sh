#!/usr/bin/env bash
# The whole test suite: lint, then unit, integration and e2e tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/python -m pytest -q -p no:cacheprovider tests "$@"
