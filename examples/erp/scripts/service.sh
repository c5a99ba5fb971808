#!/bin/sh
# service.sh deploy TARGET VERSION CONFIG_JSON | health TARGET | version TARGET
# A simulated ERP service: erp/<target>/version and config.json, and one line per operation in
# erp/<target>/log so you can see what each pass did.
set -eu
op="$1"; target="$2"
dir="$GANTRY_REPO/erp/$target"
mkdir -p "$dir"
case "$op" in
  deploy)
    printf '%s\n' "$3" > "$dir/version"
    printf '%s\n' "$4" > "$dir/config.json"
    echo "deploy $3" >> "$dir/log"
    echo "deployed $GANTRY_COMPONENT $3 to $target" ;;
  health)
    test -s "$dir/version"
    echo "$target healthy ($(cat "$dir/version"))" ;;
  version)
    cat "$dir/version" ;;
  *) echo "unknown operation $op" >&2; exit 2 ;;
esac
