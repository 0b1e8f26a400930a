#!/usr/bin/env bash
# Container create+start latency to the exit of /bin/true (median of RUNS, default 50), without and with
# a cgroup per container. Needs root and busybox-static (the test root filesystem is built from it once).
# Usage: sudo bash bench/container_start.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-${RUNS:-50}}
[ -x /bin/busybox ] || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq busybox-static >/dev/null
.venv/bin/python bench/container_start.py --runs "$runs"
.venv/bin/python bench/container_start.py --runs "$runs" --cgroup
