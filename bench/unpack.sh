#!/usr/bin/env bash
# Layer unpacking throughput: GNU `tar -xf` vs engine/images/unpack.py on a Debian minbase root filesystem.
# Usage: bash bench/unpack.sh [RUNS]     (root: mmdebstrap builds the tarball once, then it is cached)
# The tarball is built once with `mmdebstrap --variant=minbase bookworm` and cached in
# $XDG_CACHE_HOME/pycompose-bench (if set) or /var/cache/pycompose-bench. Extraction goes to tmpfs
# (/dev/shm) so the disk is not what is measured; BENCH_DIR overrides it. The gzip and zstd copies of the
# tarball are timed too (informative; the target is on the uncompressed tarball).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-${RUNS:-11}}
cache=${XDG_CACHE_HOME:+$XDG_CACHE_HOME/pycompose-bench}
cache=${cache:-/var/cache/pycompose-bench}
tarball="$cache/minbase-bookworm.tar"
if [ ! -s "$tarball" ]; then
    if ! command -v mmdebstrap >/dev/null; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mmdebstrap >/dev/null
    fi
    mkdir -p "$cache"
    # Build under a temporary name so an interrupted build is never taken for a cached one.
    mmdebstrap --quiet --format=tar --variant=minbase bookworm "$tarball.tmp"
    mv "$tarball.tmp" "$tarball"
fi
# Registry layers are mostly gzip (some zstd): time those too, compressed once from the same tarball.
[ -s "$tarball.gz" ] || { gzip -c "$tarball" > "$tarball.gz.tmp" && mv "$tarball.gz.tmp" "$tarball.gz"; }
extra=("$tarball.gz")
if command -v zstd >/dev/null; then
    [ -s "$tarball.zst" ] || { zstd -q -c "$tarball" > "$tarball.zst.tmp" && mv "$tarball.zst.tmp" "$tarball.zst"; }
    extra+=("$tarball.zst")
fi
python=.venv/bin/python
[ -x "$python" ] || python=python3
"$python" bench/unpack_bench.py "$tarball" "${extra[@]}" --runs "$runs" --dir "${BENCH_DIR:-/dev/shm}"
