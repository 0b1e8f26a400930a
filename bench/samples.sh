#!/usr/bin/env bash
# The sample stacks' start and stop (issue 8): time from the start of `up -d` (images already built, fresh
# volumes) to the first successful HTTP answer, LNMP's PHP page ("LNMP OK", which needs the database) and
# WordPress's installer (wp-admin/install.php, 200), polled every 20 ms from the moment `up -d` is launched;
# then the wall time of `down`. Targets: LNMP < 1.0 s, WordPress < 2.5 s, down < 0.4 s (docker compose here:
# 1.44 s / 3.75 s / 0.8 s).
# Usage: bash bench/samples.sh [RUNS] [SAMPLE...]     (root; samples default to "lnmp wordpress")
# State root: /var/cache/pycompose-bench/samples-root (PYCOMPOSE_BENCH_ROOT overrides), kept between runs so
# the base image and the samples' images are made once (bootstrap + build, untimed, before any timing).
# Projects are named pyctbench-<sample> and published on ports free at run time (the samples' port
# variables), so stacks running on the default ports are left alone. On exit, whatever happens: `down -v`
# of both projects, the root's supervisor stopped and its networks removed, the private cgroup parent gone.
# Columns: `up -d` = wall time of the CLI (it waits for the database's healthcheck before starting what
# depends on it); db started / db healthy = the database container's StartedAt and the end of its first
# passing probe, both from the launch of `up -d`; first answer = the figure the targets are about.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
shift || true
samples=("$@")
[ ${#samples[@]} -gt 0 ] || samples=(lnmp wordpress)
repo=$(pwd)
export PYCOMPOSE_BENCH_ROOT=${PYCOMPOSE_BENCH_ROOT:-/var/cache/pycompose-bench/samples-root}
export PYCOMPOSE_CGROUP_PARENT="pyct-bench-samples-$$"
export PYTHONPATH="$repo"
unset PYTHONDONTWRITEBYTECODE  # measure what users run: with cached bytecode
py="$repo/.venv/bin/python"
cli() { "$repo/.venv/bin/pycompose" --root "$PYCOMPOSE_BENCH_ROOT" --progress quiet "$@"; }

cleanup() {
    for sample in lnmp wordpress; do
        (cd "samples/$sample" && cli -p "pyctbench-$sample" down -v -t 1 >/dev/null 2>&1) || true
    done
    "$py" "$repo/bench/release_root.py" "$PYCOMPOSE_BENCH_ROOT" "$PYCOMPOSE_CGROUP_PARENT" || true
}
trap cleanup EXIT

mkdir -p "$PYCOMPOSE_BENCH_ROOT"
cli image bootstrap debian:bookworm-slim -q >/dev/null
for sample in "${samples[@]}"; do
    echo "building $sample (untimed)..." >&2
    (cd "samples/$sample" && cli -p "pyctbench-$sample" build >/dev/null)
done

echo "| run | sample | up -d (CLI) | db started | db healthy | first answer | down |"
echo "|---|---|---|---|---|---|---|"
for i in $(seq "$runs"); do
    for sample in "${samples[@]}"; do
        "$py" - "$sample" "$i" <<'PY'
import os, re, socket, subprocess, sys, threading, time, urllib.error, urllib.request
from datetime import datetime

sample, run = sys.argv[1], sys.argv[2]
root = os.environ["PYCOMPOSE_BENCH_ROOT"]
directory = os.path.join("samples", sample)
project = f"pyctbench-{sample}"
# the sample's port variable (LNMP_HTTP_PORT, WORDPRESS_PORT) set to a port free right now
variable = re.search(r"\$\{(\w*PORT)\b", open(os.path.join(directory, "compose.yaml")).read()).group(1)
with socket.socket() as sock:
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
env = {**os.environ, variable: str(port)}
base = [".venv/bin/pycompose", "--root", root, "--progress", "quiet", "-p", project]
base[0] = os.path.abspath(base[0])
path, needle = {"lnmp": ("/", "LNMP OK"), "wordpress": ("/wp-admin/install.php", "")}[sample]


def cli(*args):
    done = subprocess.run(base + list(args), cwd=directory, env=env, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"pycompose {' '.join(args)} failed:\n{done.stderr}")


def answered() -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as resp:
            return resp.status == 200 and needle in resp.read().decode("utf-8", "replace")
    except (OSError, urllib.error.URLError):
        return False


def stamp(value: str | float) -> float:
    """Epoch seconds from an epoch number or an RFC 3339 time (nanoseconds cut to micro)."""
    if isinstance(value, (int, float)):
        return float(value)
    value = re.sub(r"(\.\d{6})\d+", r"\1", value).replace("Z", "+00:00")
    return datetime.fromisoformat(value).timestamp()


def database_times(wall0: float) -> tuple[str, str]:
    """The database container's start and the end of its first passing probe, from the launch of up -d."""
    from engine.api import Engine

    with Engine.open(root) as engine:
        for record in engine.list_containers(labels={"com.docker.compose.project": project}):
            state = engine.inspect_container(record["id"])["State"]
            if "Health" not in state:
                continue
            passed = [p for p in state["Health"].get("Log", []) if p["ExitCode"] == 0]
            healthy = f"{stamp(passed[0]['End']) - wall0:.2f} s" if passed else "?"
            return f"{stamp(state['StartedAt']) - wall0:.2f} s", healthy
    return "?", "?"


cli("down", "-v", "-t", "1")  # fresh volumes: the database initialises as on a first start
wall0, t0 = time.time(), time.monotonic()
up = subprocess.Popen(base + ["up", "-d"], cwd=directory, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
up_seconds: list[float] = []
waiter = threading.Thread(target=lambda: (up.wait(), up_seconds.append(time.monotonic() - t0)))
waiter.start()
while not answered():
    if up.poll() not in (None, 0):
        sys.exit(f"pycompose up -d failed:\n{up.stderr.read()}")
    if time.monotonic() - t0 > 180:
        sys.exit(f"{sample}: no answer on {path} within 180 s")
    time.sleep(0.02)
first = time.monotonic() - t0
waiter.join()
if up.returncode:
    sys.exit(f"pycompose up -d failed:\n{up.stderr.read()}")
db_started, db_healthy = database_times(wall0)
t1 = time.monotonic()
cli("down")
down = time.monotonic() - t1
print(f"| {run} | {sample} | {up_seconds[0]:.2f} s | {db_started} | {db_healthy} | {first:.2f} s | {down:.2f} s |")
PY
    done
done
