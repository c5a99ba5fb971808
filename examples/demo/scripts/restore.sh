#!/bin/sh
set -eu
rm -rf "$GANTRY_REPO/deployed/$1"
cp -R "$GANTRY_REPO/snapshots/$1-$2" "$GANTRY_REPO/deployed/$1"
echo "restored $1 from attempt $2"
