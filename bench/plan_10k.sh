#!/usr/bin/env bash
# The planner benchmark: `gantry plan --format json` and `gantry validate` on a generated
# repository of 10,000 targets and 100 releases (5 components, migrations, upgradeFrom),
# 3 policies (approvals on major, waves canary → 25% → 100% with soak), 5 windows (zones,
# allow + deny) and a recorded state on `gantry/state`.
#
#   bench/plan_10k.sh                 # per-target layout (one file per target), 5 runs each
#   RUNS=9 bench/plan_10k.sh          # more runs
#   LAYOUTS="per-target multi" bench/plan_10k.sh   # also 10 files of 1,000 documents each
#   TARGETS=2000 bench/plan_10k.sh    # another size
#   NO_BUILD=1 bench/plan_10k.sh      # use target/release/gantry as it is
#   GANTRY=/path/to/gantry bench/plan_10k.sh   # measure another binary (before/after)
#
# Aim (issue): ≤ 300 ms wall and ≤ 150 MB peak RSS for plan on a 2-core machine. Wall time is
# only meaningful on an otherwise idle machine: the load average is printed next to the
# figures, and CPU time (user + sys) is reported as well, which contention affects less.
# Stage timings of one extra run (RUST_LOG=gantry=debug, tracing spans) show where the time goes.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
runs="${RUNS:-5}"
targets="${TARGETS:-10000}"
releases="${RELEASES:-100}"
layouts="${LAYOUTS:-per-target}"
now="2026-11-21T10:00:00Z"

NAME=gantry-bench
# shellcheck source=bench/common.sh
source "$here/common.sh"

# measure LABEL RUNS ARGS...: runs `gantry ARGS` RUNS times with stdout to /dev/null and prints
# one table row: wall min/median/max (ms), CPU user+sys median (ms), peak RSS max (MB), exit code,
# and the median's ratio to $floor (ms) when set. `measure_cmd` runs ARGS itself (not gantry).
measure() {
    local label="$1" n="$2"
    shift 2
    measure_cmd "$label" "$n" "$gantry" "$@"
}
measure_cmd() {
    local label="$1" n="$2"
    shift 2
    FLOOR="${floor:-}" python3 - "$label" "$n" "$@" <<'PY'
import os, resource, statistics, subprocess, sys, time
label, n, argv = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
floor = float(os.environ["FLOOR"]) if os.environ.get("FLOOR") else None
walls, cpus, rss, codes = [], [], [], set()
for _ in range(n):
    # A fresh child per run: its own rusage, so ru_maxrss is this run's peak.
    r, w = os.pipe()
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        os.execv(argv[0], argv)
    os.close(w)
    _, status, usage = os.wait4(pid, 0)
    walls.append((time.perf_counter() - start) * 1000)
    os.close(r)
    cpus.append((usage.ru_utime + usage.ru_stime) * 1000)
    rss.append(usage.ru_maxrss / 1024)  # KiB on Linux
    codes.add(os.waitstatus_to_exitcode(status))
ratio = f"  {statistics.median(walls) / floor:6.1f}x floor" if floor else ""
print(f"{label:<30} {min(walls):>8.0f} {statistics.median(walls):>8.0f} {max(walls):>8.0f} "
      f"{statistics.median(cpus):>9.0f} {max(rss):>8.1f}  {','.join(map(str, sorted(codes)))}{ratio}")
if os.environ.get("MEDIAN_TO"):
    with open(os.environ["MEDIAN_TO"], "w") as f:
        f.write(f"{statistics.median(walls):.3f}")
PY
}

echo "gantry bench: $targets targets, $releases releases, $runs runs; $(nproc) CPUs; load average $(cut -d' ' -f1-3 /proc/loadavg)"
for layout in $layouts; do
    repo="$work/$layout"
    git init --quiet --initial-branch=main "$repo"
    gen_start=$(date +%s%N)
    python3 "$here/gen_repo.py" --targets "$targets" --releases "$releases" --layout "$layout" \
        | git -C "$repo" fast-import --quiet --done
    files=$(git -C "$repo" ls-tree -r --name-only main | grep -c '^targets/')
    records=$(git -C "$repo" ls-tree -r --name-only gantry/state | grep -c '^targets/' || true)
    printf '\nlayout %s: %s target files, %s recorded targets, %s commits (generated in %d ms)\n' \
        "$layout" "$files" "$records" "$(git -C "$repo" rev-list --count main)" \
        "$(( ($(date +%s%N) - gen_start) / 1000000 ))"
    printf '%-30s %8s %8s %8s %9s %8s  %s\n' "command" "min ms" "med ms" "max ms" "cpu ms" "peak MB" "exit"
    # The floor, in the same run: git itself reading every blob of the commit's tree (what any
    # planner must at least do), nothing parsed.
    floor=""
    MEDIAN_TO="$work/floor" measure_cmd "floor: git reads every blob" "$runs" \
        /bin/sh -c 'git -C "$1" ls-tree -r --object-only main | git -C "$1" cat-file --batch >/dev/null' sh "$repo"
    floor=$(cat "$work/floor")
    # The first run of a commit also renders every step template against every target (the
    # strict template check, then cached by commit in .git/gantry/cache/templates): shown on
    # its own, since the runs after it do not pay it.
    measure "first plan (template check)" 1 --repo "$repo" plan --format json --now "$now"
    measure "plan --format json" "$runs" --repo "$repo" plan --format json --now "$now"
    measure "validate" "$runs" --repo "$repo" validate
    bytes=$("$gantry" --repo "$repo" plan --format json --now "$now" | wc -c || true)
    echo "plan JSON: $bytes bytes"
    echo "stages of one plan run (RUST_LOG=gantry=debug: tracing spans, busy time when they close):"
    RUST_LOG=gantry=debug "$gantry" --repo "$repo" plan --format json --now "$now" 2>&1 >/dev/null \
        | sed -n 's/.*DEBUG \([a-z_.:]*\): close time.busy=\([^ ]*\).*/  \1 \2/p'
done
echo
echo "aim: plan ≤ 300 ms wall, ≤ 150 MB peak RSS (2 cores, idle machine)"
