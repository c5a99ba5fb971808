#!/usr/bin/env bash
# Daemon latency benchmark: commit → TARGETS targets converged, commit → first step, idle RSS and
# idle CPU of `gantry daemon`.
#
# Starts the release daemon on a temporary repository with TARGETS targets (default 50, policy
# maxParallel PARALLEL, default 4) whose deploy step only records its start time, makes COMMITS
# commits (each bumping every target by one patch release) and measures, per commit, from just
# before `git update-ref` moves the desired branch to (a) the first deploy step's own start and
# (b) the state branch recording every target converged at the new version (the time the
# state ref was last written). The floor, measured in the same run before each commit: the same
# TARGETS deploy processes run by a shell loop, plus 1 ms for a file event and a ref read. Prints
# the medians, p99, the ratio to the floor, the daemon's own gantry_commit_to_first_step_seconds
# histogram, idle RSS (VmRSS) and CPU used over IDLE seconds of idling (utime+stime from
# /proc/PID/stat).
#
# BUMP=N bumps only the first N targets per commit (default all): with a large TARGETS, what a
# one-target commit costs on a large fleet (load, plan, the checkout of every file).
#
# Usage: bench/daemon_latency.sh   (TARGETS=50 PARALLEL=4 COMMITS=20 IDLE=30 BUMP=TARGETS GANTRY_BIN=target/release/gantry
#                                   DAEMON_LOG=file: keep the daemon's log, e.g. with RUST_LOG=gantry=debug)
set -euo pipefail
COMMITS=${COMMITS:-20}
TARGETS=${TARGETS:-50}
BUMP=${BUMP:-$TARGETS}
PARALLEL=${PARALLEL:-4}
IDLE=${IDLE:-30}
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${GANTRY_BIN:-$root/target/release/gantry}
if [ ! -x "$bin" ]; then
  (cd "$root" && cargo build --release --quiet)
fi

work=$(mktemp -d)
cleanup() { [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null || true; [ -n "${DAEMON_LOG:-}" ] && cp "$work/daemon.log" "$DAEMON_LOG"; rm -rf "$work"; }
trap cleanup EXIT
repo=$work/repo
mkdir -p "$repo"/{components,releases,targets,scripts,policies}
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
echo "$2 $1 $(date +%s%N)" >> "$GANTRY_REPO/deployed/stamps"
SH
printf 'apiVersion: gantry.dev/v1\nkind: Policy\nmetadata: { name: fleet }\nspec:\n  rollout: { maxParallel: %s }\n' "$PARALLEL" > policies/fleet.yaml
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
target() { # the first $2 targets at 1.0.$1
  for t in $(seq -w 1 "$TARGETS" | head -n "$2"); do
    printf 'apiVersion: gantry.dev/v1\nkind: Target\nmetadata: { name: t%s }\nspec: { component: svc, version: "1.0.%s" }\n' "$t" "$1" > "targets/t$t.yaml"
  done
}
target 0 "$TARGETS"
git add -A && git commit -qm "initial"

"$bin" --repo "$repo" daemon --listen 127.0.0.1:0 2> "$work/daemon.log" &
pid=$!
addr=""
for _ in $(seq 1 500); do
  addr=$(sed -n "s/^listening on //p" "$work/daemon.log" 2>/dev/null | head -1)
  [ -n "$addr" ] && break
  sleep 0.01
done
[ -n "$addr" ] || { echo "daemon did not start:"; cat "$work/daemon.log"; exit 1; }
converged() { # how many targets the state branch records converged at 1.0.$1
  git grep -l -e "version: \"1.0.$1\"" refs/heads/gantry/state -- targets 2>/dev/null | wc -l
}
wait_converged() { # waits until $2 targets are recorded at 1.0.$1
  for _ in $(seq 1 30000); do
    [ "$(converged "$1")" -ge "$2" ] && return 0
    sleep 0.01
  done
  echo "timed out waiting for the state branch"; tail -20 "$work/daemon.log"; exit 1
}
wait_converged 0 "$TARGETS"

: > "$work/first"; : > "$work/all"; : > "$work/floor"
for i in $(seq 1 "$COMMITS"); do
  # The floor, just before: the same deploy processes from a shell loop.
  f0=$(date +%s%N)
  for t in $(seq -w 1 "$TARGETS" | head -n "$BUMP"); do GANTRY_REPO="$work/floor-repo" scripts/stamp.sh "t$t" "1.0.$i"; done
  f1=$(date +%s%N)
  echo $(( (f1 - f0) / 1000 + 1000 )) >> "$work/floor"   # µs, + 1 ms for the event and ref read
  target "$i" "$BUMP"
  git add targets
  commit=$(git commit-tree "$(git write-tree)" -p HEAD -m "svc 1.0.$i")
  t0=$(date +%s%N)
  git update-ref refs/heads/main "$commit"
  wait_converged "$i" "$BUMP"
  t1=$(awk -v v="1.0.$i" '$1 == v { print $3 }' deployed/stamps | sort -n | head -1)
  t2=$(stat -c %.9Y .git/refs/heads/gantry/state | tr -d .)
  echo $(( (t1 - t0) / 1000 )) >> "$work/first"   # µs
  echo $(( (t2 - t0) / 1000 )) >> "$work/all"
  sleep 0.2 # let the pass finish its bookkeeping, so each commit meets an idle daemon
done

python3 - "$work/first" "$work/all" "$work/floor" "$TARGETS" "$PARALLEL" "$BUMP" <<'PY'
import statistics, sys
first, every, floor = ([int(l) / 1000 for l in open(p)] for p in sys.argv[1:4])
targets, parallel, bump = sys.argv[4:7]
def p99(xs):
    xs = sorted(xs)
    return xs[max(0, -(-99 * len(xs) // 100) - 1)]
ratios = [a / f for a, f in zip(every, floor)]
print(f"over {len(every)} commits, {targets} targets ({bump} bumped per commit), maxParallel {parallel} (medians; p99 after /)")
print(f"commit -> first step          {statistics.median(first):7.1f} ms / {p99(first):7.1f} ms")
print(f"commit -> {bump} converged        {statistics.median(every):7.1f} ms / {p99(every):7.1f} ms  (aim <= 100 ms quiet)")
print(f"floor (shell loop + 1 ms)     {statistics.median(floor):7.1f} ms / {p99(floor):7.1f} ms")
print(f"ratio converged / floor       {statistics.median(ratios):7.2f}x")
PY
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
