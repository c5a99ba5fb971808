#!/usr/bin/env bash
# Benchmark: converge N targets (default 1000) whose deploy step is a trivial command, and compare
# with the floor: a plain shell loop spawning the same N processes. Prints both and the ratio.
# Each of RUNS rounds (default 3) runs the floor, then a fresh apply on a fresh copy of the repo,
# so both see the same machine load; the figures are the medians.
# Usage: bench/apply_1000.sh [N] [maxParallel]      (RUNS=3, NO_BUILD=1, GANTRY=path: common.sh)
set -euo pipefail
n="${1:-1000}"
parallel="${2:-4}"
runs="${RUNS:-3}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
NAME=gantry-apply-bench
# shellcheck source=bench/common.sh
source "$here/common.sh"
dir="$work/fleet"

mkdir -p "$dir/components" "$dir/releases" "$dir/targets" "$dir/policies"
cat > "$dir/components/app.yaml" <<YAML
apiVersion: gantry.dev/v1
kind: Component
metadata: { name: app }
spec:
  steps:
    deploy: ["/bin/true", "{{ target.name }}", "{{ version }}"]
YAML
cat > "$dir/releases/app.yaml" <<YAML
apiVersion: gantry.dev/v1
kind: Release
metadata: { name: app-1.0.0 }
spec: { component: app, version: 1.0.0 }
YAML
cat > "$dir/policies/fleet.yaml" <<YAML
apiVersion: gantry.dev/v1
kind: Policy
metadata: { name: fleet }
spec:
  rollout: { maxParallel: $parallel }
YAML
python3 - "$dir/targets" "$n" <<'PY'
import sys
out, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    with open(f"{out}/t{i:05d}.yaml", "w") as f:
        f.write(f"apiVersion: gantry.dev/v1\nkind: Target\nmetadata: {{ name: t{i:05d} }}\nspec: {{ component: app, version: 1.0.0 }}\n")
PY
git -C "$dir" init -q -b main
git -C "$dir" add -A
git -C "$dir" -c user.name=bench -c user.email=bench@localhost commit -q -m "fleet"

git -C "$dir" config gc.auto 0
timings="$work/timings"
: > "$timings"
for run in $(seq "$runs"); do
    rm -rf "$work/run" && cp -a "$dir" "$work/run"
    floor_start=$(date +%s.%N)
    for i in $(seq "$n"); do /bin/true "t$i" 1.0.0; done
    floor_end=$(date +%s.%N)
    apply_start=$(date +%s.%N)
    "$gantry" --repo "$work/run" apply --now 2026-11-21T10:00:00Z 2>"$work/apply.log" || { tail -5 "$work/apply.log"; exit 1; }
    apply_end=$(date +%s.%N)
    echo "$floor_start $floor_end $apply_start $apply_end" >> "$timings"
done
tail -1 "$work/apply.log"

converged=$("$gantry" --repo "$work/run" status --format json --now 2026-11-21T10:00:00Z | grep -c '"status": "converged"' || true)
python3 - "$timings" "$n" "$converged" "$parallel" <<'PY'
import statistics, sys
path, n, conv, par = sys.argv[1], *map(float, sys.argv[2:])
rows = [list(map(float, line.split())) for line in open(path)]
floors = [fe - fs for fs, fe, _, _ in rows]
applies = [ae - a_s for _, _, a_s, ae in rows]
ratios = [a / f for f, a in zip(floors, applies)]
floor, apply, ratio = statistics.median(floors), statistics.median(applies), statistics.median(ratios)
print(f"targets            {int(n)} (maxParallel {int(par)}), converged {int(conv)}; median of {len(rows)} runs")
print(f"floor (shell loop) {floor*1000:8.0f} ms  ({floor/n*1e6:6.0f} us/process)")
print(f"gantry apply       {apply*1000:8.0f} ms  ({apply/n*1e6:6.0f} us/target)")
print(f"ratio              {ratio:8.2f}x  (aim <= 1.5x; per run: {', '.join(f'{r:.2f}' for r in ratios)})")
PY
