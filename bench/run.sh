#!/usr/bin/env bash
# Runs the benchmark of issue 7 side by side: CNCF Distribution and Berth on
# loopback, each on fresh storage, every scenario against both alternately
# (Distribution then Berth, ROUNDS times), then prints the medians, the ratio
# Berth / Distribution and the machine's limits, and removes everything.
#
# Usage: bench/run.sh
# Environment:
#   ROUNDS=3               rounds (each runs every scenario once per registry)
#   SCENARIOS="a b ..."    a subset of scenarios (default: all of them)
#   QUICK=1                pass --quick (tiny sizes: checks this script, measures nothing)
#   REGISTRIES="distribution berth"   which registries to start (e.g. only one)
#   BENCH_TMPDIR=/tmp      where the registries' data directories go (its disk is measured)
#   DISTRIBUTION_BIN       the Distribution binary (default: docker-registry, else registry)
#   BERTH_BIN              the Berth binary to measure (default: this checkout's release
#                          build); set, berth is not built, so two commits can be compared
#                          with the same berth-bench (A/B runs, docs/performance.md)
# Raw figures and the table stay in $CARGO_TARGET_DIR/bench-last/ (target/ by default).
set -euo pipefail

ROUNDS=${ROUNDS:-3}
SCENARIOS=${SCENARIOS:-"push_small push_large_chunked push_large_mono pull_blob manifest_get head_blob tags_list catalog same_blob"}
REGISTRIES=${REGISTRIES:-"distribution berth"}
repo=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$repo/target}
quick_flag=${QUICK:+--quick}

wants() { [[ " $REGISTRIES " == *" $1 "* ]]; }

echo "== building berth and berth-bench (release)" >&2
# berth is built on its own, as README.md builds it: built together with
# berth-bench, cargo unifies the features of their shared dependencies,
# which changes the symbol names the release code layout lists
# (crates/berth/build.rs), and the measured binary would lose that layout.
if wants berth && [[ -z ${BERTH_BIN:-} ]]; then
    (cd "$repo" && cargo build --release -p berth >&2)
fi
(cd "$repo" && cargo build --release -p berth-bench >&2)

distribution_bin=${DISTRIBUTION_BIN:-$(command -v docker-registry || command -v registry || true)}
if wants distribution && [[ -z $distribution_bin ]]; then
    echo "CNCF Distribution is not installed (Debian: apt-get install docker-registry)" >&2
    exit 1
fi

declare -A pid url

# Stops only the processes this script started, gently first.
stop() {
    local p=$1
    kill -TERM "$p" 2>/dev/null || return 0
    for _ in $(seq 1 100); do
        kill -0 "$p" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -KILL "$p" 2>/dev/null || true
}
cleanup() {
    for name in "${!pid[@]}"; do stop "${pid[$name]}"; done
    rm -rf "$work"
}
work=$(mktemp -d "${BENCH_TMPDIR:-/tmp}/berth-bench.XXXXXX")
trap cleanup EXIT

# The binaries are copied because a shared target directory may be rebuilt
# from another branch while the benchmark runs.
mkdir -p "$work/bin"
cp "$target/release/berth-bench" "$work/bin/"
if wants berth; then cp "${BERTH_BIN:-$target/release/berth}" "$work/bin/berth"; fi
bench_bin=$work/bin/berth-bench
berth_bin=$work/bin/berth
results=$target/bench-last
rm -rf "$results" && mkdir -p "$results"
: >"$results/distribution.txt"
: >"$results/berth.txt"
: >"$results/hardware.txt"

# A loopback port nobody listens on; Distribution cannot bind port 0 and
# report it, so one is chosen here (bounded attempts).
free_port() {
    local port
    for _ in $(seq 1 100); do
        port=$((20000 + RANDOM % 40000))
        if ! ss -Htln "sport = :$port" | grep -q .; then
            echo "$port"
            return 0
        fi
    done
    echo "no free port found" >&2
    return 1
}

wait_for_v2() {
    for _ in $(seq 1 200); do
        if curl -fs -o /dev/null "$1/v2/"; then return 0; fi
        sleep 0.1
    done
    echo "registry at $1 did not answer /v2/ within 20 s" >&2
    return 1
}

start_distribution() {
    local port dir=$work/distribution
    port=$(free_port)
    mkdir -p "$dir/data"
    # Filesystem storage with deletes, as the Debian and Docker Hub images
    # ship it (including the in-memory blob descriptor cache), but with the
    # access log off and logs at warn so logging costs both servers alike.
    cat >"$dir/config.yml" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  cache:
    blobdescriptor: inmemory
  filesystem:
    rootdirectory: $dir/data
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
EOF
    "$distribution_bin" serve "$dir/config.yml" >"$dir/log" 2>&1 &
    pid[distribution]=$!
    url[distribution]=http://127.0.0.1:$port
    wait_for_v2 "${url[distribution]}"
}

start_berth() {
    local dir=$work/berth
    mkdir -p "$dir/data"
    BERTH_LOG=warn "$berth_bin" serve --listen 127.0.0.1:0 --data-dir "$dir/data" >"$dir/stdout" 2>"$dir/log" &
    pid[berth]=$!
    # Berth prints "listening on ADDR" once its socket is bound.
    for _ in $(seq 1 200); do
        if grep -q '^listening on ' "$dir/stdout"; then
            url[berth]=http://$(sed -n 's/^listening on //p' "$dir/stdout" | head -1)
            wait_for_v2 "${url[berth]}"
            return 0
        fi
        kill -0 "${pid[berth]}" 2>/dev/null || break
        sleep 0.1
    done
    echo "berth did not report its address; its log:" >&2
    cat "$dir/log" >&2
    return 1
}

wants distribution && start_distribution
wants berth && start_berth
for name in "${!url[@]}"; do echo "== $name at ${url[$name]} (pid ${pid[$name]})" >&2; done

failures=0
for round in $(seq 1 "$ROUNDS"); do
    echo "== round $round of $ROUNDS: machine limits" >&2
    "$bench_bin" hw --dir "$work" $quick_flag | tee -a "$results/hardware.txt" >&2
    for scenario in $SCENARIOS; do
        for name in distribution berth; do
            wants "$name" || continue
            echo "== round $round: $scenario on $name" >&2
            # Distribution never fsyncs, so its writes are still being written
            # back when the next run starts and would slow whichever registry
            # comes next; flushing them here, untimed, keeps runs independent.
            sync
            # VmHWM is since process start, so per-scenario runs would repeat
            # it; it is reported once at the end instead.
            if ! "$bench_bin" --url "${url[$name]}" --pid "${pid[$name]}" --scenario "$scenario" $quick_flag \
                | grep -v '^server_vmhwm:' | tee -a "$results/$name.txt" >&2; then
                echo "!! $scenario failed on $name" >&2
                failures=$((failures + 1))
            fi
        done
    done
done
for name in distribution berth; do
    wants "$name" || continue
    hwm_kib=$(awk '/^VmHWM:/ {print $2}' "/proc/${pid[$name]}/status")
    echo "server_vmhwm: $((hwm_kib * 1024 / 1000000)) MB" >>"$results/$name.txt"
done

{
    echo "Machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(date -u +%Y-%m-%d)"
    echo "Rounds: $ROUNDS${QUICK:+ (quick)}; medians; MB = 10^6 bytes"
    echo
    "$bench_bin" compare "$results/distribution.txt" "$results/berth.txt" --hardware "$results/hardware.txt"
} | tee "$results/table.md"

if ((failures > 0)); then
    echo "$failures scenario runs failed (see the lines starting with 'error:' above)" >&2
    exit 1
fi
