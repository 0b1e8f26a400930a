#!/usr/bin/env bash
# No-op rebuild time of a 10-step Dockerfile (issue 6: target < 0.5 s).
# Usage: bash bench/build_noop.sh [RUNS]      (root: the first build runs RUN steps in containers)
# In a temp state root: the busybox test image is imported, the Dockerfile built once (cold: RUN and COPY
# for real), then rebuilt RUNS times with nothing changed. Two figures per no-op run:
#   in-process   Builder.build() alone (parse, plan, context digest, 10 cache lookups, tag)
#   process      a whole `python -c` doing the same (interpreter start + imports + state root open)
# Everything lives in a temp dir removed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
work=$(mktemp -d /var/tmp/pyc-bench-build.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/ctx/src"
for i in 1 2 3 4 5 6 7 8; do head -c 20000 /dev/urandom | base64 >"$work/ctx/src/file$i.txt"; done
cat >"$work/ctx/Dockerfile" <<'DOCKERFILE'
FROM pyc-test/busybox:1
ARG VERSION=1
ENV APP=/app PATH=/app/bin:$PATH
WORKDIR /app
COPY src/ /app/src/
RUN mkdir -p bin && cat src/*.txt | wc -c > size.txt
RUN echo "version $VERSION" > version.txt
LABEL org.example.bench=noop
EXPOSE 8080
USER nobody
CMD ["cat", "/app/size.txt"]
DOCKERFILE
export BENCH_ROOT="$work/root" BENCH_CTX="$work/ctx"
py=.venv/bin/python
$py - <<'PY'
import io, os, sys, time
sys.path.insert(0, "tests/integration")
from rootfs_fixture import busybox_tar
from engine.build.builder import Builder, BuildRequest
from engine.images.store import ImageStore
from engine.state.root import StateRoot
root = StateRoot.open(os.environ["BENCH_ROOT"])
ImageStore(root).import_rootfs(io.BytesIO(busybox_tar()), "pyc-test/busybox:1")
start = time.perf_counter()
Builder(root).build(BuildRequest(os.environ["BENCH_CTX"], tags=("pyc-bench/noop:1",), network="none"))
print(f"cold build (2 RUN, 1 COPY, 7 config steps): {time.perf_counter() - start:.3f} s")
root.close()
PY
echo "| run | in-process | process |"
echo "|---|---|---|"
for i in $(seq "$runs"); do
    start=$(date +%s.%N)
    inner=$($py -c '
import os, time
t0 = time.perf_counter()
from engine.build.builder import Builder, BuildRequest
from engine.state.root import StateRoot
root = StateRoot.open(os.environ["BENCH_ROOT"])
t1 = time.perf_counter()
Builder(root).build(BuildRequest(os.environ["BENCH_CTX"], tags=("pyc-bench/noop:1",), network="none"))
print(f"{time.perf_counter() - t1:.3f}")
')
    end=$(date +%s.%N)
    printf '| %d | %s s | %.3f s |\n' "$i" "$inner" "$(awk -v a="$start" -v b="$end" 'BEGIN { print b - a }')"
done
