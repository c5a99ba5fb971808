#!/bin/sh
# rules.sh TARGET VERSION: loads a rule pack into its installation's engine.
set -eu
installation="${1%-rules}"
dir="$GANTRY_REPO/installations/$installation"
test -s "$dir/version" || { echo "no diagnostics engine at $installation"; exit 1; }
printf '%s\n' "$2" > "$dir/rules"
echo "loaded rule pack $2 at $installation"
