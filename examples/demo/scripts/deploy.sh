#!/bin/sh
# Demo deploy: records the version a target runs under the demo repository's deployed/ folder.
set -eu
target="$1"; version="$2"
dir="$GANTRY_REPO/deployed/$target"
mkdir -p "$dir"
printf '%s\n' "$version" > "$dir/version"
echo "deployed $GANTRY_COMPONENT $version to $target"
