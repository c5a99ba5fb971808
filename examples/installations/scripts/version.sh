#!/bin/sh
# version.sh INSTALLATION: prints the version it runs (drift detection).
set -eu
cat "$GANTRY_REPO/installations/$1/version"
