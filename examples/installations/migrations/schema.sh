#!/bin/sh
# schema.sh up|down ID INSTALLATION: applies or reverts one database migration, recorded in the
# installation's schema_migrations file (one id per line, in the order applied).
set -eu
direction="$1"; id="$2"; installation="$3"
log="$GANTRY_REPO/installations/$installation/schema_migrations"
mkdir -p "$(dirname "$log")"
touch "$log"
if [ "$direction" = up ]; then
  grep -qx "$id" "$log" || echo "$id" >> "$log"
else
  grep -vx "$id" "$log" > "$log.tmp" || true
  mv "$log.tmp" "$log"
fi
echo "migration $id $direction on $installation"
