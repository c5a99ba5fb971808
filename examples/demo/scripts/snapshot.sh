#!/bin/sh
# Demo snapshot: copies the target's folder aside, keyed by attempt.
set -eu
dir="$GANTRY_REPO/deployed/$1"
mkdir -p "$dir" "$GANTRY_REPO/snapshots"
rm -rf "$GANTRY_REPO/snapshots/$1-$2"
cp -R "$dir" "$GANTRY_REPO/snapshots/$1-$2"
echo "snapshot of $1 for attempt $2"
