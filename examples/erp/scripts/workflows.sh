#!/bin/sh
# workflows.sh stop|start TARGET: stops (quiesce) or restarts (resume) a service's workflows
# around an upgrade; erp/<target>/workflows says which, and the service's log records it.
set -eu
op="$1"; target="$2"
dir="$GANTRY_REPO/erp/$target"
mkdir -p "$dir"
case "$op" in
  stop)  echo stopped > "$dir/workflows"; echo "workflows stopped" >> "$dir/log" ;;
  start) echo running > "$dir/workflows"; echo "workflows started" >> "$dir/log" ;;
  *) echo "unknown operation $op" >&2; exit 2 ;;
esac
echo "workflows of $target: $op"
