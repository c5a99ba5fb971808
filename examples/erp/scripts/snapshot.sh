#!/bin/sh
# snapshot.sh backup|restore TARGET ATTEMPT: the service's data before an upgrade, per attempt.
set -eu
op="$1"; target="$2"; attempt="$3"
dir="$GANTRY_REPO/erp/$target"; copy="$GANTRY_REPO/erp/.backups/$target-$attempt"
if [ "$op" = backup ]; then
  mkdir -p "$dir" "$GANTRY_REPO/erp/.backups"
  rm -rf "$copy"; cp -R "$dir" "$copy"
else
  rm -rf "$dir"; cp -R "$copy" "$dir"; echo "restored" >> "$dir/log"
fi
echo "$op of $target for attempt $attempt"
