#!/usr/bin/env bash
# `gantry status` on a long history, next to its floor (issue #12 item 8, issue #17's aim:
# status with 10,000 commits ≤ 100 ms).
#
# Builds two repositories with bench/gen_repo.py, the same fleet in both (TARGETS targets, 3
# policies of which two require approvals, 5 windows):
#   long   HISTORY more commits on main (each a config edit of one target, so the approvals walk
#          has to read every one of them) and STATE commits on gantry/state (outcome commits);
#   floor  the same fleet without that history (5 commits on main, 1 on the state branch).
# Prints median wall and CPU times of `status --format json` for: the floor, the long history
# with the cache cold (no .git/gantry/cache), and warm (the cache file a previous status wrote),
# with the ratios to the floor. Aim: warm within 1.5× of the floor.
#
#   bench/status_history.sh                  # 552 targets, 10,000 commits, 3,000 state commits
#   HISTORY=2000 STATE=500 bench/status_history.sh
#   NO_BUILD=1 bench/status_history.sh       # use target/release/gantry as it is
#   GANTRY=/path/to/gantry bench/status_history.sh   # another binary (before/after)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
runs="${RUNS:-5}"
targets="${TARGETS:-552}"
history="${HISTORY:-10000}"
state="${STATE:-3000}"
now="2026-11-21T10:00:00Z"

NAME=gantry-status-bench
# shellcheck source=bench/common.sh
source "$here/common.sh"

generate() { # DIR ARGS...
    local dir="$1"
    shift
    git init --quiet --initial-branch=main "$dir"
    python3 "$here/gen_repo.py" --targets "$targets" --releases 20 "$@" | git -C "$dir" fast-import --quiet --done
}
generate "$work/floor"
generate "$work/long" --history "$history" --state-history "$state"

# median_ms COLD|WARM DIR: median wall and CPU time (ms) of RUNS `status --format json` runs; COLD
# removes the cache file before each run.
median_ms() {
    python3 - "$1" "$2" "$runs" "$gantry" "$now" <<'PY'
import os, resource, shutil, statistics, subprocess, sys, time
mode, repo, n, gantry, now = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
cache = os.path.join(repo, ".git", "gantry", "cache")
argv = [gantry, "--repo", repo, "status", "--format", "json", "--now", now]
subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # warm-up (page cache)
walls, cpus = [], []
for _ in range(n):
    if mode == "COLD":
        shutil.rmtree(cache, ignore_errors=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    walls.append((time.perf_counter() - start) * 1000)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpus.append((after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) * 1000)
    if done.returncode not in (0, 2):
        sys.exit(f"status failed ({done.returncode}): {done.stderr.decode()[-500:]}")
print(f"{statistics.median(walls):.1f} {statistics.median(cpus):.1f}")
PY
}

echo "gantry status bench: $targets targets; $history extra commits on main, $state on the state branch; $runs runs; load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "main: $(git -C "$work/long" rev-list --count main) commits; gantry/state: $(git -C "$work/long" rev-list --count gantry/state) commits"
floor=$(median_ms WARM "$work/floor")
cold=$(median_ms COLD "$work/long")
warm=$(median_ms WARM "$work/long")
# Wall time is what the aim is about; CPU time (user + sys) is what contention on a busy
# machine disturbs least.
python3 - "$floor" "$cold" "$warm" <<'PY'
import sys
(floor, floor_cpu), (cold, cold_cpu), (warm, warm_cpu) = (map(float, a.split()) for a in sys.argv[1:])
print(f"{'':35}{'wall ms':>9} {'ratio':>7}  {'cpu ms':>8} {'ratio':>7}")
for label, wall, cpu, note in [
    ("floor (same fleet, 5 commits)", floor, floor_cpu, ""),
    ("long history, cache cold", cold, cold_cpu, ""),
    ("long history, cache warm", warm, warm_cpu, "   (aim: <= 100 ms wall)"),
]:
    print(f"{label:<35}{wall:9.1f} {wall / floor:6.2f}x  {cpu:8.1f} {cpu / floor_cpu:6.2f}x{note}")
PY
echo "stages of one warm run (RUST_LOG=gantry=debug, tracing spans):"
RUST_LOG=gantry=debug "$gantry" --repo "$work/long" status --format json --now "$now" 2>&1 >/dev/null \
    | sed -n 's/.*DEBUG \([a-z_.:]*\): close time.busy=\([^ ]*\).*/  \1 \2/p'
