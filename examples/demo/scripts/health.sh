#!/bin/sh
# Demo health check: the target must have a recorded version.
set -eu
test -s "$GANTRY_REPO/deployed/$1/version"
echo "$1 healthy ($(cat "$GANTRY_REPO/deployed/$1/version"))"
