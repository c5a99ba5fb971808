#!/bin/sh
# install.sh INSTALLATION VERSION BUNDLE: installs the release bundle (its integrity was checked
# by gantry against the Release's sha256 before any step ran) and records the version.
set -eu
dir="$GANTRY_REPO/installations/$1"
mkdir -p "$dir"
cp "$3" "$dir/bundle.json"
printf '%s\n' "$2" > "$dir/version"
echo "installed diagnostics $2 at $1"
