#!/usr/bin/env bash
# `up -d` / `down` of a 20-service stack, and scaling one service to 50 (and 100) and back (issue 7:
# targets 20-service up -d < 0.6 s, down < 0.5 s, 50 replicas up < 2 s, down < 1 s).
# Usage: bash bench/up_down.sh [RUNS]     (root: real containers, in a temp state root)
# Each service is `sh -c 'trap "exit 0" TERM; sleep 1000 & wait'` on the busybox test image, on the
# project's default network. Figures are wall time of the whole CLI process (/usr/bin/time: elapsed and
# max RSS). CPU=1 adds where the CPU of an `up -d` goes (from /proc); PROFILE=1 also writes a cProfile of one `up -d` and one `down` (top entries printed).
# Everything (containers, networks, supervisor, temp dir) is removed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
repo=$(pwd)
work=$(mktemp -d /var/tmp/pyc-bench-up.XXXXXX)
export PYCOMPOSE_ROOT="$work/root" PYTHONPATH="$repo"
export PYCOMPOSE_CGROUP_PARENT="pyc-bench-$$"
unset PYTHONDONTWRITEBYTECODE  # measure what users run: with cached bytecode
py="$repo/.venv/bin/python"
cli() { (cd "$work/proj" && "$py" -m compose.cli.main --progress quiet "$@"); }
cleanup() {
    cli down -t 1 >/dev/null 2>&1 || true
    "$py" "$repo/bench/release_root.py" "$PYCOMPOSE_ROOT" "$PYCOMPOSE_CGROUP_PARENT" || true
    [ -n "${KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT

mkdir -p "$work/proj"
{
    echo "name: pycbench"
    echo "services:"
    for i in $(seq -w 1 20); do
        echo "  svc$i:"
        echo "    image: pyc-test/busybox:1"
        echo "    command: [\"sh\", \"-c\", \"trap 'exit 0' TERM; sleep 1000 & wait\"]"
        echo "    stop_grace_period: 2s"
    done
} >"$work/proj/compose.yaml"

"$py" - <<'PY'
import io, os, sys
sys.path.insert(0, "tests/integration")
from rootfs_fixture import busybox_tar
from engine.api import Engine
with Engine.open(os.environ["PYCOMPOSE_ROOT"]) as engine:
    engine.import_image(io.BytesIO(busybox_tar()), "pyc-test/busybox:1")
PY

# one step: elapsed seconds and max RSS (MB) of the CLI process
timed() {
    /usr/bin/time -o "$work/time" -f "%e %M" "$py" -m compose.cli.main --progress quiet "$@" >/dev/null 2>"$work/err" || {
        echo "FAILED: $*" >&2; cat "$work/err" >&2
        return 1
    }
    awk '{printf "%.2f s (%d MB)", $1, $2 / 1024}' "$work/time"
}
step() { (cd "$work/proj" && timed "$@"); }
running() { "$py" -c 'import os; from engine.api import Engine; e = Engine.open(os.environ["PYCOMPOSE_ROOT"]); print(len(e.list_containers()))'; }

# host veths being deleted in the background (the supervisor's deleter, ~25 ms of kernel time each) after
# a `down` of 119: wait for them, so each run's first `up -d` is measured on a settled host
veths() { ls /sys/class/net | grep -c '^pv' || true; }
baseline=$(veths)
settle() { for _ in $(seq 100); do [ "$(veths)" -le "$baseline" ] && return; sleep 0.1; done; }

echo "| run | up -d (20) | up -d again | down | up --scale svc01=50 | back to 1 | --scale 100 | down (119) |"
echo "|---|---|---|---|---|---|---|---|"
for i in $(seq "$runs"); do
    settle
    up=$(step up -d)
    [ "$(running)" = 20 ] || { echo "expected 20 running" >&2; exit 1; }
    again=$(step up -d)
    down=$(step down)
    cli up -d >/dev/null 2>&1
    s50=$(step up -d --scale svc01=50)
    [ "$(running)" = 69 ] || { echo "expected 69 running" >&2; exit 1; }
    s1=$(step up -d --scale svc01=1)
    s100=$(step up -d --scale svc01=100)
    [ "$(running)" = 119 ] || { echo "expected 119 running" >&2; exit 1; }
    down2=$(step down)
    [ "$(running)" = 0 ] || { echo "expected nothing running" >&2; exit 1; }
    echo "| $i | $up | $again | $down | $s50 | $s1 | $s100 | $down2 |"
done

# CPU=1: where the CPU of one 20-service `up -d` goes, from /proc (3 ups, each followed by a down):
# the CLI process (user+sys), the supervisor's own threads, its spawn workers (`pyc-spawner`, children
# of the keeper that live on between ups), the containers (reaped by the keeper, so counted over the up
# and its down), and the whole host's busy time.
if [ "${CPU:-0}" = 1 ]; then
    ours() { pgrep -f "engine.supervise.$1 --root $PYCOMPOSE_ROOT" || true; }
    pid_of() { for p in $(ours "$1"); do [ "$(cat "/proc/$p/comm")" != pyc-spawner ] && echo "$p" && return; done; }
    own() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
    # the workers' own CPU, per pid, as "pid ticks" lines
    workers() { for p in $(ours daemon); do [ "$(cat "/proc/$p/comm" 2>/dev/null)" = pyc-spawner ] && echo "$p $(own "$p")"; done; }
    spent() { awk 'NR == FNR {before[$1] = $2; next} {total += $2 - before[$1]} END {print total + 0}' "$1" "$2"; }
    reaped() { awk '{print $16 + $17}' "/proc/$1/stat"; }
    busy() { awk '/^cpu /{print $2 + $3 + $4 + $7 + $8}' /proc/stat; }
    hz=$(getconf CLK_TCK)
    echo "| up -d (wall) | host busy | CLI | supervisor | spawn workers | containers (up+down) |"
    echo "|---|---|---|---|---|---|"
    for _ in 1 2 3; do
        settle
        d=$(pid_of daemon); k=$(pid_of keeper)
        workers >"$work/w0"; d0=$(own "$d"); c0=$(reaped "$k"); b0=$(busy)
        (cd "$work/proj" && /usr/bin/time -o "$work/time" -f "%e %U %S" "$py" -m compose.cli.main --progress quiet up -d >/dev/null)
        b1=$(busy); d1=$(own "$d"); workers >"$work/w1"; h=$(spent "$work/w0" "$work/w1")
        cli down >/dev/null 2>&1
        c1=$(reaped "$k")
        read -r wall user sys <"$work/time"
        awk -v w="$wall" -v u="$user" -v s="$sys" -v hz="$hz" -v b="$((b1 - b0))" -v d="$((d1 - d0))" \
            -v h="$h" -v c="$((c1 - c0))" \
            'BEGIN {printf "| %.2f s | %.2f s | %.2f s | %.2f s | %.2f s | %.2f s |\n", w, b/hz, u+s, d/hz, h/hz, c/hz}'
    done
fi

if [ "${PROFILE:-0}" = 1 ]; then
    for what in "up -d" "down"; do
        # main() in-process: `-m cProfile -m compose.cli.main` never writes its file, as the command
        # ends with os._exit (compose.cli.main.run)
        (cd "$work/proj" && "$py" -c 'import cProfile, sys; from compose.cli.main import main
out, sys.argv = sys.argv[1], ["pycompose", "--progress", "quiet", *sys.argv[2:]]
cProfile.run("main()", out)' "$work/prof" $what >/dev/null 2>&1)
        echo "--- cProfile: $what (cumulative, top 25)"
        "$py" -c "import pstats, sys; pstats.Stats(sys.argv[1]).sort_stats('cumulative').print_stats(25)" "$work/prof" |
            grep -E '^ +[0-9]' | head -25
    done
    (cd "$work/proj" && "$py" -X importtime -m compose.cli.main --progress quiet down >/dev/null 2>"$work/imports") || true
    echo "--- slowest imports (cumulative us) of down"
    sort -t'|' -k2 -n -r "$work/imports" | head -8
fi
