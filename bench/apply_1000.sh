#!/usr/bin/env bash
# Benchmark: converge N targets (default 1000) whose deploy step is a trivial command, and compare
# with the floor: a plain shell loop spawning the same N processes. Prints both and the ratio.
# Usage: bench/apply_1000.sh [N] [maxParallel]
set -euo pipefail
n="${1:-1000}"
parallel="${2:-4}"
root="$(cd "$(dirname "$0")/.." && pwd)"
cargo build --release --quiet --manifest-path "$root/Cargo.toml"
gantry="$root/target/release/gantry"
dir="$(mktemp -d)"
trap 'rm -rf "$dir"' EXIT

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

floor_start=$(date +%s.%N)
for i in $(seq "$n"); do /bin/true "t$i" 1.0.0; done
floor_end=$(date +%s.%N)

apply_start=$(date +%s.%N)
"$gantry" --repo "$dir" apply --now 2026-11-21T10:00:00Z 2>"$dir.apply.log" || { tail -5 "$dir.apply.log"; exit 1; }
apply_end=$(date +%s.%N)
tail -1 "$dir.apply.log"
rm -f "$dir.apply.log"

converged=$("$gantry" --repo "$dir" status --format json --now 2026-11-21T10:00:00Z | grep -c '"status": "converged"' || true)
python3 - "$floor_start" "$floor_end" "$apply_start" "$apply_end" "$n" "$converged" "$parallel" <<'PY'
import sys
fs, fe, a_s, a_e, n, conv, par = map(float, sys.argv[1:])
floor, apply = fe - fs, a_e - a_s
print(f"targets            {int(n)} (maxParallel {int(par)}), converged {int(conv)}")
print(f"floor (shell loop) {floor*1000:8.0f} ms  ({floor/n*1e6:6.0f} us/process)")
print(f"gantry apply       {apply*1000:8.0f} ms  ({apply/n*1e6:6.0f} us/target)")
print(f"ratio              {apply/floor:8.2f}x  (aim <= 1.5x)")
PY
