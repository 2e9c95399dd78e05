#!/usr/bin/env bash
# Remakes crates/berth/symbol-order.txt: the functions a running node
# executes, hottest first, which the release build's linker places together
# at the start of the executable's code (crates/berth/build.rs says why;
# docs/performance.md, "Code layout", what it saves).
#
# Usage: scripts/symbol-order.sh
#
# Builds berth and berth-bench (release), starts `berth serve` under
# valgrind's callgrind on a fresh data directory, runs every benchmark
# scenario once with `berth-bench --quick` (start-up, pushes, pulls,
# listings, concurrent pushes of one blob), stops the server and writes each
# function of the executable that ran, by instructions executed in it.
# Needs valgrind (Debian: apt-get install valgrind) and python3. Remake the
# list after a toolchain or dependency update: symbol names carry hashes
# that change then, and names the list lacks fall back to the linker's own
# order (the build still works; only the saving is lost).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$repo/target}
command -v valgrind >/dev/null || { echo "valgrind is not installed (Debian: apt-get install valgrind)" >&2; exit 1; }

work=$(mktemp -d)
pid=
cleanup() {
    if [[ -n $pid ]]; then kill -KILL "$pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

echo "== building berth and berth-bench (release)" >&2
# berth is built on its own, as README.md builds it: built together with
# berth-bench, cargo unifies the features of their shared dependencies,
# which changes the hashes in many symbol names, and the list would match
# a different executable from the one people build.
(cd "$repo" && cargo build --release -p berth >&2)
cp "$target/release/berth" "$work/"
(cd "$repo" && cargo build --release -p berth-bench >&2)
cp "$target/release/berth-bench" "$work/"

echo "== running berth serve under callgrind (about a minute)" >&2
BERTH_LOG=warn valgrind --tool=callgrind --demangle=no --callgrind-out-file="$work/profile" \
    "$work/berth" serve --listen 127.0.0.1:0 --data-dir "$work/data" >"$work/out" 2>"$work/log" &
pid=$!
addr=
for _ in $(seq 1 600); do
    addr=$(sed -n 's/^listening on //p' "$work/out" | head -1)
    [[ -n $addr ]] && break
    kill -0 "$pid" 2>/dev/null || { cat "$work/log" >&2; exit 1; }
    sleep 0.1
done
[[ -n $addr ]] || { echo "berth did not start under valgrind in 60 s" >&2; exit 1; }
"$work/berth-bench" --url "http://$addr" --quick >&2
# SIGTERM lets the server shut down, and callgrind write its profile, on
# the ordinary path; the profile then covers shutdown too.
kill -TERM "$pid"
wait "$pid" || true
pid=

python3 "$repo/scripts/lib/symbol_order.py" "$work/profile" "$work/berth" \
    >"$repo/crates/berth/symbol-order.txt"
echo "== wrote crates/berth/symbol-order.txt ($(grep -vc '^#' "$repo/crates/berth/symbol-order.txt") functions)" >&2
