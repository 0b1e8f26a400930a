#!/usr/bin/env bash
# Whole-process timings of the loader: `pycompose version`, `config -q` on the LNMP sample and on a generated
# 500-service file. Usage: bash bench/config.sh [--compare]
#   --compare also times docker-compose 1.29 (Debian) and podman-compose (PyPI, with Debian's podman) on the
#   same files. docker-compose 1.29 rejects the top-level `name:`, so every tool reads copies without it and
#   gets the name from -p. A tool that fails on a file fails the benchmark: no figure for a failed run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/samples" "$work/big/conf"
cp -r samples/lnmp samples/shared "$work/samples/"
sed -i '/^name:/d' "$work/samples/lnmp/compose.yaml"
.venv/bin/python bench/gen_services.py 500 | sed '/^name:/d' > "$work/big/compose.yaml"
lnmp="$work/samples/lnmp/compose.yaml"
big="$work/big/compose.yaml"
pc="$PWD/.venv/bin/pycompose"
runs=${RUNS:-20}
hyperfine -N --warmup 3 --runs "$runs" --export-markdown "$work/pycompose.md" \
    -n "pycompose version" "$pc version" \
    -n "pycompose config -q (LNMP)" "$pc -p lnmp -f $lnmp config -q" \
    -n "pycompose config -q (500 services)" "$pc -p bench -f $big config -q"
cat "$work/pycompose.md"
if [ "${1:-}" = "--compare" ]; then
    missing=()
    command -v docker-compose >/dev/null || missing+=(docker-compose)
    command -v podman >/dev/null || missing+=(podman runc)
    command -v bc >/dev/null || missing+=(bc)
    if ((${#missing[@]})); then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
    python3 -m venv "$work/pc-venv" && "$work/pc-venv/bin/pip" install -q podman-compose 2>/dev/null
    podman_compose="$work/pc-venv/bin/podman-compose"
    hyperfine -N --warmup 3 --runs "$runs" --export-markdown "$work/others.md" \
        -n "docker-compose 1.29 config -q (LNMP)" "docker-compose -p lnmp -f $lnmp config -q" \
        -n "docker-compose 1.29 config -q (500 services)" "docker-compose -p bench -f $big config -q" \
        -n "podman-compose config (LNMP)" "$podman_compose -p lnmp -f $lnmp config"
    cat "$work/others.md"
    # podman-compose resolves the 500-service depends_on chain for minutes: one run, bounded.
    limit=${PODMAN_COMPOSE_LIMIT:-120}
    start=$(date +%s.%N)
    if timeout "$limit" "$podman_compose" -p bench -f "$big" config >/dev/null 2>&1; then
        echo "podman-compose config (500 services): $(echo "$(date +%s.%N) - $start" | bc) s (one run)"
    else
        echo "podman-compose config (500 services): did not finish within ${limit} s"
    fi
fi
