#!/usr/bin/env bash
# The main job on the embedded defaults: validate and print the LNMP sample's canonical model.
# (Later issues make this bring the stack up.)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
cd samples/lnmp
../../.venv/bin/pycompose config -q
../../.venv/bin/pycompose config
