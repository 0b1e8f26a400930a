#!/usr/bin/env bash
# CLI start-up: whole-process time of `pycompose version`, `config -q` on samples/lnmp, and `ps` and a no-op
# `up -d` on a running 3-service project (issue 7: no command pays for networkx/rich/anyio/httpx/pyroute2
# unless it uses them). Usage: bash bench/cli_startup.sh [RUNS]     (root: real containers, temp state root)
# Bytecode is cached first and PYTHONDONTWRITEBYTECODE unset: that is what users run. Prints hyperfine's
# table, then which heavy modules each command imports and its slowest imports (python -X importtime).
# BASELINE=DIR also times a tree holding an older compose/ and engine/ (e.g.
# `git archive REV compose engine schemas | tar -x -C DIR`), through PYTHONPATH, in the same hyperfine session.
# Everything (containers, network, supervisor, temp dir) is removed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-20}
repo=$(pwd)
work=$(mktemp -d /var/tmp/pyc-bench-startup.XXXXXX)
export PYCOMPOSE_ROOT="$work/root" PYTHONPATH="$repo"
export PYCOMPOSE_CGROUP_PARENT="pyc-bench-$$"
unset PYTHONDONTWRITEBYTECODE
py="$repo/.venv/bin/python"
pc="$repo/.venv/bin/pycompose"
cleanup() {
    (cd "$work/proj" && "$pc" --progress quiet down -t 1 >/dev/null 2>&1) || true
    "$py" "$repo/bench/release_root.py" "$PYCOMPOSE_ROOT" "$PYCOMPOSE_CGROUP_PARENT" || true
    [ -n "${KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT

"$py" -m compileall -q compose engine >/dev/null || true
[ -z "${BASELINE:-}" ] || "$py" -m compileall -q "$BASELINE" >/dev/null || true
mkdir -p "$work/proj"
cat >"$work/proj/compose.yaml" <<'EOF'
name: pycstartup
services:
  db:
    image: pyc-test/busybox:1
    command: ["sh", "-c", "trap 'exit 0' TERM; sleep 1000 & wait"]
  app:
    image: pyc-test/busybox:1
    command: ["sh", "-c", "trap 'exit 0' TERM; sleep 1000 & wait"]
    depends_on: [db]
  web:
    image: pyc-test/busybox:1
    command: ["sh", "-c", "trap 'exit 0' TERM; sleep 1000 & wait"]
    depends_on: [app]
  debug:
    image: pyc-test/busybox:1
    profiles: [debug]
EOF
"$py" - <<'PY'
import io, os, sys
sys.path.insert(0, "tests/integration")
from rootfs_fixture import busybox_tar
from engine.api import Engine
with Engine.open(os.environ["PYCOMPOSE_ROOT"]) as engine:
    engine.import_image(io.BytesIO(busybox_tar()), "pyc-test/busybox:1")
PY
(cd "$work/proj" && "$pc" --progress quiet up -d >/dev/null)

lnmp="$repo/samples/lnmp/compose.yaml"
proj="$work/proj/compose.yaml"
commands=("version" "-f $lnmp config -q" "-f $proj ps" "-f $proj --progress quiet up -d")
labels=("version" "config -q (LNMP)" "ps (3 running)" "up -d (no-op, 3 running)")
args=()
for i in "${!commands[@]}"; do
    [ -z "${BASELINE:-}" ] || args+=(-n "before: ${labels[$i]}" "env PYTHONPATH=$BASELINE $pc ${commands[$i]}")
    args+=(-n "pycompose ${labels[$i]}" "$pc ${commands[$i]}")
done
hyperfine -N --warmup 3 --runs "$runs" --export-markdown "$work/startup.md" "${args[@]}" >/dev/null
cat "$work/startup.md"

heavy="networkx rich anyio httpx pyroute2 jsonschema zstandard"
for cmd in "${commands[@]}"; do
    "$py" -X importtime -m compose.cli.main $cmd >/dev/null 2>"$work/imports"
    loaded=$(for m in $heavy; do grep -qE "\| +$m$" "$work/imports" && printf '%s ' "$m"; done || true)
    total=$(awk -F'|' '{gsub(/[^0-9]/, "", $1); sum += $1} END {printf "%.0f", sum / 1000}' "$work/imports")
    echo "--- $cmd: imports ${total} ms self-time in all; heavy modules: ${loaded:-none}"
    sort -t'|' -k2 -n -r "$work/imports" | head -6
done
