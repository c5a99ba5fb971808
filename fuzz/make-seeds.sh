#!/bin/sh
# Builds manifest_load seeds from the fixtures: gantry.toml \0 every YAML of a case \0 (no TOML).
set -eu
cd "$(dirname "$0")"
mkdir -p seeds/manifest_load
for case in ../fixtures/bad/* ../fixtures/good/*; do
    [ -d "$case" ] || continue
    name=$(basename "$case")
    {
        cat "$case/gantry.toml" 2>/dev/null || true
        printf '\0'
        find "$case" -name '*.yaml' -not -path '*/expected/*' -exec cat {} + 2>/dev/null || true
        printf '\0'
        find "$case" -name '*.toml' -not -name gantry.toml -not -path '*/expected/*' -exec cat {} + 2>/dev/null || true
    } | head -c 65536 > "seeds/manifest_load/$name"
done
