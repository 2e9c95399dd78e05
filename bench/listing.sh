#!/usr/bin/env bash
# The management API's listing benchmark (issue 12): fills a registry with
# REPOSITORIES repositories and IMAGES images (crates/registry/examples/
# listing_fixture.rs, straight into a fresh SQLite store), serves it with
# `berth serve --auth`, then runs `berth-bench --scenario api_listing`:
# each kind of page one at a time, then from 64 clients at once, with the
# server's CPU seconds and peak RSS. Everything is removed afterwards.
#
# Usage: bench/listing.sh
# Environment:
#   REPOSITORIES=10000 IMAGES=100000   the registry's size
#   QUICK=1            tiny sizes and 1 s runs: checks this script, measures nothing
#   BERTH_BIN          the Berth binary (default: this checkout's release build)
#   BENCH_TMPDIR=/tmp  where the data directory goes
# The figures stay in $CARGO_TARGET_DIR/bench-last/listing.txt (target/ by default).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$repo/target}
if [[ -n ${QUICK:-} ]]; then
    REPOSITORIES=${REPOSITORIES:-50} IMAGES=${IMAGES:-200}
fi
REPOSITORIES=${REPOSITORIES:-10000}
IMAGES=${IMAGES:-100000}
quick_flag=${QUICK:+--quick}

echo "== building berth-bench, the fixture and berth (release)" >&2
packages=(-p berth-bench)
[[ -z ${BERTH_BIN:-} ]] && packages+=(-p berth)
(cd "$repo" && cargo build --release "${packages[@]}" >&2 &&
    cargo build --release -p berth-registry --example listing_fixture >&2)

work=$(mktemp -d "${BENCH_TMPDIR:-/tmp}/berth-listing.XXXXXX")
server_pid=""
cleanup() {
    if [[ -n $server_pid ]]; then
        kill -TERM "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/bin" "$work/data"
cp "$target/release/berth-bench" "$target/release/examples/listing_fixture" "$work/bin/"
cp "${BERTH_BIN:-$target/release/berth}" "$work/bin/berth"

echo "== filling: $REPOSITORIES repositories, $IMAGES images" >&2
"$work/bin/listing_fixture" --data-dir "$work/data" --repositories "$REPOSITORIES" --images "$IMAGES" >&2
password=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
echo "$password" | "$work/bin/berth" admin user create bench --admin --password-stdin \
    --data-dir "$work/data" >/dev/null

# The fixture's images have metadata but no blobs, so scanning them would
# only fail and retry beside the measurement: the scanner is off.
BERTH_SCANNER_ENABLED=false BERTH_LOG=warn "$work/bin/berth" serve --auth --listen 127.0.0.1:0 --data-dir "$work/data" \
    >"$work/stdout" 2>"$work/log" &
server_pid=$!
address=""
for _ in $(seq 1 300); do
    address=$(sed -n 's/^listening on //p' "$work/stdout" | head -1)
    [[ -n $address ]] && break
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.1
done
if [[ -z $address ]]; then
    echo "berth did not report its address; its log:" >&2
    cat "$work/log" >&2
    exit 1
fi
echo "== berth at $address (pid $server_pid)" >&2

results=$target/bench-last
mkdir -p "$results"
BERTH_BENCH_CREDENTIALS="bench:$password" "$work/bin/berth-bench" --url "http://$address" \
    --pid "$server_pid" --scenario api_listing $quick_flag | tee "$results/listing.txt"
