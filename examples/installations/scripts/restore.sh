#!/bin/sh
# restore.sh INSTALLATION ATTEMPT: puts the pre-update backup back.
set -eu
rm -rf "$GANTRY_REPO/installations/$1"
cp -R "$GANTRY_REPO/backups/$1-$2" "$GANTRY_REPO/installations/$1"
echo "restored $1 from the backup of attempt $2"
