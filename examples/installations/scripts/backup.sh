#!/bin/sh
# backup.sh INSTALLATION ATTEMPT: the pre-update backup, kept per attempt.
set -eu
dir="$GANTRY_REPO/installations/$1"
mkdir -p "$dir" "$GANTRY_REPO/backups"
rm -rf "$GANTRY_REPO/backups/$1-$2"
cp -R "$dir" "$GANTRY_REPO/backups/$1-$2"
echo "backed up $1 before attempt $2"
