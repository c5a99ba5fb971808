#!/bin/sh
# health.sh INSTALLATION: the installation runs a version and has its bundle.
set -eu
dir="$GANTRY_REPO/installations/$1"
test -s "$dir/version" && test -s "$dir/bundle.json"
echo "$1 healthy ($(cat "$dir/version"))"
