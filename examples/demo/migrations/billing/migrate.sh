#!/bin/sh
# Demo migration: appends to the target's migration log (up) or removes the line (down).
set -eu
direction="$1"; id="$2"; target="$3"
log="$GANTRY_REPO/deployed/$target/migrations"
mkdir -p "$(dirname "$log")"
touch "$log"
if [ "$direction" = up ]; then
  grep -qx "$id" "$log" || echo "$id" >> "$log"
else
  grep -vx "$id" "$log" > "$log.tmp" || true
  mv "$log.tmp" "$log"
fi
echo "migration $id $direction on $target"
