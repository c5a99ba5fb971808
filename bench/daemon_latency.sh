#!/usr/bin/env bash
# Daemon latency benchmark: commit → first step, idle RSS and idle CPU of `gantry daemon`.
#
# Starts the release daemon on a temporary repository with one target whose deploy step only
# records its start time, makes N commits (each bumping the target's version by one patch
# release) and measures, per commit, the time from just before `git update-ref` moves the
# desired branch to the deploy step's own start. Prints p50/p99, the daemon's own
# gantry_commit_to_first_step_seconds histogram, idle RSS (VmRSS) and CPU used over IDLE
# seconds of idling (utime+stime from /proc/PID/stat).
#
# Usage: bench/daemon_latency.sh            (COMMITS=50 IDLE=30 GANTRY_BIN=target/release/gantry)
set -euo pipefail
COMMITS=${COMMITS:-50}
IDLE=${IDLE:-30}
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${GANTRY_BIN:-$root/target/release/gantry}
if [ ! -x "$bin" ]; then
  (cd "$root" && cargo build --release --quiet)
fi

work=$(mktemp -d)
cleanup() { [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
repo=$work/repo
mkdir -p "$repo"/{components,releases,targets,scripts}
cd "$repo"
git init -q -b main
git config user.name bench
git config user.email bench@example.com
printf 'desired_branch = "main"\n\n[executors.local]\ntype = "shell"\n' > gantry.toml
printf 'deployed/\n' > .gitignore
cat > scripts/stamp.sh <<'SH'
#!/bin/sh
# Records when this deploy step started (ns since the epoch) for version $2.
mkdir -p "$GANTRY_REPO/deployed"
echo "$2 $(date +%s%N)" >> "$GANTRY_REPO/deployed/stamps"
SH
chmod +x scripts/stamp.sh
cat > components/svc.yaml <<'Y'
apiVersion: gantry.dev/v1
kind: Component
metadata: { name: svc }
spec:
  steps:
    deploy: ["scripts/stamp.sh", "{{ target.name }}", "{{ version }}"]
Y
for i in $(seq 0 "$COMMITS"); do
  printf -- '---\napiVersion: gantry.dev/v1\nkind: Release\nmetadata: { name: svc-1.0.%s }\nspec: { component: svc, version: 1.0.%s }\n' "$i" "$i"
done > releases/svc.yaml
target() {
  printf 'apiVersion: gantry.dev/v1\nkind: Target\nmetadata: { name: one }\nspec: { component: svc, version: "1.0.%s" }\n' "$1" > targets/one.yaml
}
target 0
git add -A && git commit -qm "initial"

"$bin" --repo "$repo" daemon --listen 127.0.0.1:0 2> "$work/daemon.log" &
pid=$!
addr=""
for _ in $(seq 1 500); do
  addr=$(head -1 "$work/daemon.log" 2>/dev/null | sed -n 's/^listening on //p')
  [ -n "$addr" ] && break
  sleep 0.01
done
[ -n "$addr" ] || { echo "daemon did not start:"; cat "$work/daemon.log"; exit 1; }
wait_state() { # waits until the state branch moves off $1
  for _ in $(seq 1 1000); do
    now=$(git rev-parse -q --verify refs/heads/gantry/state || true)
    [ -n "$now" ] && [ "$now" != "$1" ] && return 0
    sleep 0.01
  done
  echo "timed out waiting for the state branch"; tail -20 "$work/daemon.log"; exit 1
}
wait_state ""

: > "$work/latencies"
for i in $(seq 1 "$COMMITS"); do
  state=$(git rev-parse refs/heads/gantry/state)
  target "$i"
  git add targets/one.yaml
  commit=$(git commit-tree "$(git write-tree)" -p HEAD -m "svc 1.0.$i")
  t0=$(date +%s%N)
  git update-ref refs/heads/main "$commit"
  wait_state "$state"
  t1=$(awk -v v="1.0.$i" '$1 == v { print $2 }' deployed/stamps | tail -1)
  echo $(( (t1 - t0) / 1000 )) >> "$work/latencies"   # µs
  sleep 0.1 # let the pass finish its bookkeeping, so each commit meets an idle daemon
done

sort -n "$work/latencies" > "$work/sorted"
n=$(wc -l < "$work/sorted")
pct() { sed -n "$(( ($1 * n + 99) / 100 ))p" "$work/sorted"; }
ms() { awk -v us="$1" 'BEGIN { printf "%.1f ms", us / 1000 }'; }
echo "commit → first step over $n commits: p50 $(ms "$(pct 50)")  p99 $(ms "$(pct 99)")  max $(ms "$(tail -1 "$work/sorted")")"
metrics=$(curl -s "http://$addr/metrics")
count=$(echo "$metrics" | awk '/^gantry_commit_to_first_step_seconds_count/ { print $2 }')
sum=$(echo "$metrics" | awk '/^gantry_commit_to_first_step_seconds_sum/ { print $2 }')
awk -v c="$count" -v s="$sum" 'BEGIN { if (c > 0) printf "daemon histogram (ref event → first step): %d observations, mean %.1f ms\n", c, s / c * 1000 }'
echo "$metrics" | grep '^gantry_commit_to_first_step_seconds_bucket' | sed 's/^/  /'

ticks() { awk '{ print $14 + $15 }' "/proc/$pid/stat"; }
hz=$(getconf CLK_TCK)
sleep 1
before=$(ticks)
sleep "$IDLE"
after=$(ticks)
rss=$(awk '/^VmRSS/ { print $2 }' "/proc/$pid/status")
echo "idle RSS: $(( rss / 1024 )) MB ($rss kB)"
awk -v t="$(( after - before ))" -v hz="$hz" -v s="$IDLE" \
  'BEGIN { printf "idle CPU over %d s: %.2f s (%.3f%%)\n", s, t / hz, t / hz / s * 100 }'
kill -TERM "$pid"
wait "$pid" && echo "daemon exited 0 on SIGTERM"
pid=""
