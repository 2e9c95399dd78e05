#!/usr/bin/env bash
# The replication benchmark (issue 16): IMAGES small images (berth-bench's
# push_small: a 4 KiB layer and a config each, in 16 repositories) pushed to
# a source Berth, then copied to a second Berth by a push rule
# (`berth replication run --wait`), both local, both with access control on
# (the rule authenticates with Basic credentials through the target's token
# flow). Reports images/s of the first run (everything copied) and of a
# second run (everything skipped), with each server's CPU seconds.
#
# Usage: bench/replication.sh
# Environment:
#   IMAGES=1000       images to replicate (a multiple of 500: push_small's size)
#   QUICK=1           40 images: checks this script, measures nothing
#   BERTH_BIN         the Berth binary (default: this checkout's release build)
#   BENCH_TMPDIR=/tmp where the data directories go
# The figures stay in $CARGO_TARGET_DIR/bench-last/replication.txt.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$repo/target}
IMAGES=${IMAGES:-1000}
quick_flag=""
per_push=500
if [[ -n ${QUICK:-} ]]; then
    quick_flag=--quick
    per_push=$(grep -A3 'pub fn quick' "$repo/crates/bench/src/scenarios.rs" |
        sed -n 's/.*small_images: \([0-9]*\).*/\1/p')
    IMAGES=$((per_push * 2))
fi

echo "== building berth-bench and berth (release)" >&2
packages=(-p berth-bench)
[[ -z ${BERTH_BIN:-} ]] && packages+=(-p berth)
(cd "$repo" && cargo build --release "${packages[@]}" >&2)

# shellcheck source=bench/lib.sh
source "$repo/bench/lib.sh"
bench_workdir replication
mkdir -p "$work/bin" "$work/source" "$work/target" "$work/home"
cp "$target/release/berth-bench" "$work/bin/"
cp "${BERTH_BIN:-$target/release/berth}" "$work/bin/berth"
berth=$work/bin/berth

echo "== filling the source: $IMAGES images" >&2
start source
for _ in $(seq 1 $((IMAGES / per_push))); do
    "$work/bin/berth-bench" --url "http://$address" --scenario push_small $quick_flag >&2
done
stop "$pid"

password=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
for side in source target; do
    echo "$password" | "$berth" admin user create replicator --admin --password-stdin \
        --data-dir "$work/$side" >/dev/null
done
start source --auth --outbound-allow-private
source_address=$address source_pid=$pid
start target --auth
target_address=$address target_pid=$pid
echo "== source at $source_address (pid $source_pid), target at $target_address (pid $target_pid)" >&2

export HOME=$work/home
echo "$password" | "$berth" login "$source_address" -u replicator --password-stdin >/dev/null
echo "replicator:$password" >"$work/target.creds"
"$berth" replication add bench --target "http://$target_address" \
    --creds-file "$work/target.creds" --repos 'bench/**' -q

results=$target/bench-last
mkdir -p "$results"
{
    echo "replication: $IMAGES images (4 KiB layer + config each, 16 repositories), Berth to Berth, both --auth, loopback"
    for pass in copy skip; do
        source_cpu=$(cpu "$source_pid") target_cpu=$(cpu "$target_pid")
        start_ns=$(date +%s%N)
        run=$("$berth" replication run bench --wait -o json)
        end_ns=$(date +%s%N)
        seconds=$(echo "scale=3; ($end_ns - $start_ns) / 1000000000" | bc)
        copied=$(echo "$run" | grep -o '"images_copied": *[0-9]*' | grep -o '[0-9]*$')
        skipped=$(echo "$run" | grep -o '"images_skipped": *[0-9]*' | grep -o '[0-9]*$')
        rate=$(echo "scale=1; ($copied + $skipped) / $seconds" | bc)
        echo "$pass: ${seconds}s, copied $copied, skipped $skipped: $rate images/s;" \
            "source CPU $(echo "$(cpu "$source_pid") - $source_cpu" | bc)s," \
            "target CPU $(echo "$(cpu "$target_pid") - $target_cpu" | bc)s"
    done
} | tee "$results/replication.txt"
