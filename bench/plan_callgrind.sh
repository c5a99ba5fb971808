#!/usr/bin/env bash
# Instructions executed by `gantry plan --format json` on the generated fleet (issue #17), counted
# by valgrind's callgrind: unlike wall time, the count is the same on a busy or an idle machine
# for the same binary and input, so a change to the planner can be judged by it. Prints the total
# instructions (Ir) of the whole process and of its busiest functions (inclusive), next to the
# floor counted the same way: `git cat-file --batch` reading every blob of the same tree.
#
#   bench/plan_callgrind.sh                  # 10,000 targets, 100 releases
#   TARGETS=2000 bench/plan_callgrind.sh     # smaller (about 5x faster)
#   NO_BUILD=1 / GANTRY=/path/to/gantry      # as the other bench scripts
#   TOP=30 bench/plan_callgrind.sh           # more functions
#
# Needs valgrind (Debian package `valgrind`). Takes about a minute at 10,000 targets.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
targets="${TARGETS:-10000}"
releases="${RELEASES:-100}"
top="${TOP:-15}"
now="2026-11-21T10:00:00Z"
command -v valgrind >/dev/null || { echo "valgrind is needed: apt-get install valgrind" >&2; exit 1; }

NAME=gantry-callgrind
# shellcheck source=bench/common.sh
source "$here/common.sh"

repo="$work/repo"
git init --quiet --initial-branch=main "$repo"
python3 "$here/gen_repo.py" --targets "$targets" --releases "$releases" | git -C "$repo" fast-import --quiet --done

# callgrind runs a process's threads one at a time: the count is of the work, whatever the
# thread count (the planner's result does not depend on it; thread start-up is a few thousand).
total() { # OUT_FILE: the total Ir callgrind wrote
    sed -n 's/^summary: \([0-9]*\).*/\1/p' "$1"
}
# The floor's pipeline, every process of it counted (--trace-children).
valgrind --tool=callgrind --trace-children=yes --callgrind-out-file="$work/floor.%p.out" \
    /bin/sh -c 'git -C "$1" ls-tree -r --object-only main | git -C "$1" cat-file --batch >/dev/null' sh "$repo" \
    2>/dev/null
floor=0
for f in "$work"/floor.*.out; do floor=$((floor + $(total "$f"))); done
# One run outside valgrind first: the strict template check of a new commit (every step template
# against every target; cached by commit in .git/gantry/cache/templates) is not the planner, and
# under valgrind it alone takes many minutes. bench/plan_10k.sh shows its wall time.
"$gantry" --repo "$repo" plan --format json --now "$now" >/dev/null 2>&1 || true
valgrind --tool=callgrind --callgrind-out-file="$work/plan.out" \
    "$gantry" --repo "$repo" plan --format json --now "$now" >/dev/null 2>"$work/valgrind.log" || {
    code=$?
    # 2: the plan has violations (a valid outcome for the generated fleet); anything else failed.
    [[ $code -eq 2 ]] || { cat "$work/valgrind.log" >&2; exit "$code"; }
}
plan=$(total "$work/plan.out")
python3 - "$targets" "$plan" "$floor" <<'PY'
import sys
targets, plan, floor = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
print(f"callgrind: {targets} targets")
print(f"floor: git reads every blob      {floor:>15,} instructions")
print(f"gantry plan --format json        {plan:>15,} instructions  {plan / floor:6.1f}x floor  ({plan / targets:,.0f} per target)")
PY
echo "gantry's busiest functions (inclusive instructions, share of the total):"
callgrind_annotate --inclusive=yes "$work/plan.out" 2>/dev/null \
    | grep -E '^ *[0-9,]+ .*gantry::' | grep -vE 'gantry::(main|cli::)' | head -n "$top" \
    | sed -E 's/ \[[^]]*\]$//; s/\?\?\?://' | cut -c1-150
