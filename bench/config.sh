#!/usr/bin/env bash
# Whole-process timings of the loader: `pycompose version`, `config -q` on the LNMP sample and on a generated
# 500-service file. Usage: bash bench/config.sh [--compare]   (--compare also times docker-compose 1.29 and
# podman-compose on the same files, installing them first: Debian's docker-compose, podman-compose from PyPI).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
.venv/bin/python bench/gen_services.py 500 > "$work/compose.yaml"
mkdir -p "$work/conf"
pc="$PWD/.venv/bin/pycompose"
lnmp="$PWD/samples/lnmp/compose.yaml"
runs=${RUNS:-20}
hyperfine -N --warmup 3 --runs "$runs" --export-markdown "$work/pycompose.md" \
    -n "pycompose version" "$pc version" \
    -n "pycompose config -q (LNMP)" "$pc -f $lnmp config -q" \
    -n "pycompose config -q (500 services)" "$pc -f $work/compose.yaml config -q"
cat "$work/pycompose.md"
if [ "${1:-}" = "--compare" ]; then
    command -v docker-compose >/dev/null || { apt-get update -qq && apt-get install -y -qq docker-compose >/dev/null; }
    if [ ! -x "$work/pc-venv/bin/podman-compose" ]; then
        python3 -m venv "$work/pc-venv" && "$work/pc-venv/bin/pip" install -q podman-compose
    fi
    hyperfine -N --warmup 3 --runs "$runs" -i --export-markdown "$work/others.md" \
        -n "docker-compose 1.29 config -q (LNMP)" "docker-compose -f $lnmp config -q" \
        -n "docker-compose 1.29 config -q (500 services)" "docker-compose -f $work/compose.yaml config -q" \
        -n "podman-compose config (LNMP)" "$work/pc-venv/bin/podman-compose -f $lnmp config" \
        -n "podman-compose config (500 services)" "$work/pc-venv/bin/podman-compose -f $work/compose.yaml config"
    cat "$work/others.md"
fi
