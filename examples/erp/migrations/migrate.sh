#!/bin/sh
# migrate.sh up|down ID TARGET: one schema change of a tenant's service (expand/contract),
# recorded in erp/<target>/migrations (one id per line, in the order applied).
set -eu
direction="$1"; id="$2"; target="$3"
log="$GANTRY_REPO/erp/$target/migrations"
mkdir -p "$(dirname "$log")"
touch "$log"
if [ "$direction" = up ] && grep -qx "$target $id" simulate/failing-migrations; then
  echo "migrate up $id failed" >> "$GANTRY_REPO/erp/$target/log"
  echo "$id failed on $target: 3 open items have no legal entity" >&2
  exit 1
fi
if [ "$direction" = up ]; then
  grep -qx "$id" "$log" || echo "$id" >> "$log"
else
  grep -vx "$id" "$log" > "$log.tmp" || true
  mv "$log.tmp" "$log"
fi
echo "migrate $direction $id" >> "$GANTRY_REPO/erp/$target/log"
echo "migration $id $direction on $target"
