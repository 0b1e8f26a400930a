#!/usr/bin/env bash
# Time to make debian:bookworm-slim with `pycompose image bootstrap` (mmdebstrap from the host's Debian mirror).
# Usage: bash bench/bootstrap.sh [REF]      (root; needs mmdebstrap and the Debian mirror)
# Three figures, each a whole `pycompose` process:
#   cold    empty cache dir and empty state root: mmdebstrap downloads, installs, packs; then the import
#   tar     the cached tar imported into a fresh state root (no mmdebstrap)
#   image   the same command again on that state root: the image with the same key is returned as is
# Everything lives in a temp dir removed on exit; the default cache (/var/cache/pycompose/bootstrap) is untouched.
set -euo pipefail
cd "$(dirname "$0")/.."
ref=${1:-debian:bookworm-slim}
work=$(mktemp -d /var/tmp/pyc-bench-bootstrap.XXXXXX)
trap 'rm -rf "$work"' EXIT
pyc=(.venv/bin/pycompose)

run() {  # run LABEL ROOT [ARGS...]: one timed bootstrap, prints seconds
    local label=$1 root=$2
    shift 2
    local start end
    start=$(date +%s.%N)
    "${pyc[@]}" --root "$root" image bootstrap "$ref" --cache-dir "$work/cache" -q "$@" >"$work/$label.id"
    end=$(date +%s.%N)
    printf '| %-6s | %8.3f s | %s |\n' "$label" "$(awk -v a="$start" -v b="$end" 'BEGIN { print b - a }')" "$(cut -c1-19 "$work/$label.id")"
}

echo "| run    |     time   | image id |"
echo "|---|---|---|"
run cold "$work/root1"
run tar "$work/root2"
run image "$work/root2"
size=$(stat -c %s "$work"/cache/*.tar)
echo
echo "tar: $((size / 1000000)) MB, $(tar tf "$work"/cache/*.tar | wc -l) entries; packages: $(tar xOf "$work"/cache/*.tar ./var/lib/dpkg/status | grep -c '^Status: install ok installed')"
