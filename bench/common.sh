# Sourced by the bench scripts: the gantry binary to measure and a scratch directory.
#   NO_BUILD=1       use target/release/gantry as it is
#   GANTRY=PATH      measure another binary (before/after)
# Sets: root (the repository), gantry (the binary), work (a temp dir removed on exit).
# Needs: here (the bench directory) and NAME (the temp dir's prefix).
root="$(dirname "$here")"
if [[ -z "${NO_BUILD:-}" && -z "${GANTRY:-}" ]]; then
    (cd "$root" && cargo build --release --quiet)
fi
gantry="${GANTRY:-$root/target/release/gantry}"
[[ -x "$gantry" ]] || { echo "no $gantry; build it first" >&2; exit 1; }
command -v python3 >/dev/null || { echo "python3 is needed (generator and measurement)" >&2; exit 1; }
work="$(mktemp -d "${TMPDIR:-/tmp}/${NAME}.XXXXXX")"
trap 'rm -rf "$work"' EXIT
