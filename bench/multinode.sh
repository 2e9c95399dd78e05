#!/usr/bin/env bash
# Measures Berth in its several-node mode (issue 5): a throwaway PostgreSQL
# cluster and a throwaway SeaweedFS (S3) on loopback, two `berth serve` nodes
# on them, and the scenarios of bench/run.sh run (a) against node 1 alone and
# (b) against both nodes (clients round-robin), ROUNDS times. A third node
# with `redirect = true` serves `pull_blob` once more, so that pulls that
# redirect to the object store can be compared with pulls the node streams,
# and a fourth with `cache_ttl = 0s` serves `manifest_get` and `head_blob`
# once more, so that the database's cost per lookup shows.
# Prints the medians side by side with the CPU that PostgreSQL and SeaweedFS
# used in each measured section, then stops everything and deletes its data.
#
# Usage: bench/multinode.sh
# Environment:
#   ROUNDS=3                     rounds
#   SCENARIOS="a b ..."          scenarios of the one-node runs (default: all)
#   TWO_NODE_SCENARIOS="a b ..." scenarios of the two-node runs (default: the
#                                ones with many clients; a one-client scenario
#                                talks to node 1 only and would repeat (a))
#   REDIRECT=1                   also pull through a node with redirect = true (0: skip)
#   UNCACHED=1                   also run manifest_get and head_blob on a node with
#                                cache_ttl = 0s (0: skip)
#   QUICK=1                      pass --quick (tiny sizes: checks this script, measures nothing)
#   HOLD=1                       measure nothing: start the deployment, print the
#                                nodes' URLs, keep it up until interrupted
#   BENCH_TMPDIR=/tmp            where PostgreSQL's and SeaweedFS's data go (keep
#                                10 GB free: every round pushes about 5 GB)
#   PG_BIN                       PostgreSQL's server binaries (default: the newest
#                                /usr/lib/postgresql/*/bin, or initdb on PATH)
#   WEED_BIN                     SeaweedFS's `weed` (default: pip's scripts directory, or PATH)
#   BERTH_NODE_LOG=warn          the nodes' log filter (no other BERTH_* or AWS_*
#                                variable of the caller reaches them)
# Raw figures and the table stay in $CARGO_TARGET_DIR/bench-multinode-last/.
set -euo pipefail

ROUNDS=${ROUNDS:-3}
SCENARIOS=${SCENARIOS:-"push_small push_large_chunked push_large_mono pull_blob manifest_get head_blob tags_list catalog same_blob"}
TWO_NODE_SCENARIOS=${TWO_NODE_SCENARIOS-"push_small manifest_get head_blob same_blob"}
REDIRECT=${REDIRECT:-1}
UNCACHED=${UNCACHED:-1}
repo=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$repo/target}
quick_flag=${QUICK:+--quick}

# PostgreSQL, SeaweedFS and the nodes are started by the functions shared
# with scripts/conformance.sh.
source "$repo/scripts/lib/deployment.sh"

echo "== building berth and berth-bench (release)" >&2
# berth is built on its own, as README.md builds it: built together with
# berth-bench, cargo unifies the features of their shared dependencies,
# which changes the symbol names the release code layout lists
# (crates/berth/build.rs), and the measured binary would lose that layout.
(cd "$repo" && cargo build --release -p berth >&2)
(cd "$repo" && cargo build --release -p berth-bench >&2)

find_postgres
find_seaweedfs
deployment_init berth-multinode

# The binaries are copied because a shared target directory may be rebuilt
# from another branch while the benchmark runs.
mkdir -p "$work/bin"
cp "$target/release/berth-bench" "$target/release/berth" "$work/bin/"
bench_bin=$work/bin/berth-bench
berth_bin=$work/bin/berth
results=$target/bench-multinode-last
rm -rf "$results" && mkdir -p "$results"
: >"$results/one.txt"
: >"$results/two.txt"
: >"$results/hardware.txt"
: >"$results/loadavg.txt"

start_postgres
start_seaweedfs
start_node node1
start_node node2
if [[ $REDIRECT == 1 ]]; then start_node node3 --redirect true; fi
if [[ $UNCACHED == 1 ]]; then start_node node4 --cache-ttl 0s; fi
for name in "${!pid[@]}"; do echo "== $name: pid ${pid[$name]} ${url[$name]:-}" >&2; done

# HOLD=1: no benchmark; the deployment stays up for other tools (the OCI
# conformance suite, real clients) until this script is interrupted, and the
# exit trap then stops and deletes everything as usual.
if [[ ${HOLD:-0} == 1 ]]; then
    echo "== holding: nodes ${url[node1]} ${url[node2]}; interrupt to stop" >&2
    while kill -0 "${pid[node1]}" 2>/dev/null; do sleep 1; done
    exit 0
fi

# Runs berth-bench on the given nodes, with the services watched; its figures
# go to the file named first (prefixed with $rename, when set).
bench() {
    local file=$1 scenario=$2 rename=$3
    shift 3
    local args=(--scenario "$scenario" $quick_flag
        --watch "postgres=${pid[postgres]}" --watch "seaweedfs=${pid[seaweedfs]}")
    for node in "$@"; do args+=(--url "${url[$node]}" --pid "${pid[$node]}"); done
    # Writes of the previous run still being flushed would slow this one.
    sync
    echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
    echo "$scenario $* $(cut -d' ' -f1-3 /proc/loadavg)" >>"$results/loadavg.txt"
    # VmHWM is since process start, so per-scenario runs would repeat it; it
    # is reported once at the end instead.
    if ! "$bench_bin" "${args[@]}" | grep -v '^server_vmhwm' \
        | sed "s/^$scenario/${rename:-$scenario}/" | tee -a "$file" >&2; then
        echo "!! $scenario failed on $*" >&2
        failures=$((failures + 1))
    fi
}

failures=0
echo "== machine limits" >&2
"$bench_bin" hw --dir "$work" $quick_flag | tee -a "$results/hardware.txt" >&2
for round in $(seq 1 "$ROUNDS"); do
    for scenario in $SCENARIOS; do
        echo "== round $round: $scenario on node 1" >&2
        bench "$results/one.txt" "$scenario" "" node1
        if [[ " $TWO_NODE_SCENARIOS " == *" $scenario "* ]]; then
            echo "== round $round: $scenario on nodes 1 and 2" >&2
            bench "$results/two.txt" "$scenario" "" node1 node2
        fi
        if [[ $scenario == pull_blob && $REDIRECT == 1 ]]; then
            echo "== round $round: pull_blob on node 3 (redirect = true)" >&2
            bench "$results/one.txt" pull_blob pull_blob_redirect node3
        fi
        if [[ ($scenario == manifest_get || $scenario == head_blob) && $UNCACHED == 1 ]]; then
            echo "== round $round: $scenario on node 4 (cache_ttl = 0s)" >&2
            bench "$results/one.txt" "$scenario" "${scenario}_uncached" node4
        fi
    done
done
for node in node1 node2 node3 node4; do
    [[ -n ${pid[$node]:-} ]] || continue
    hwm_kib=$(awk '/^VmHWM:/ {print $2}' "/proc/${pid[$node]}/status")
    echo "server_vmhwm.$node: $((hwm_kib * 1024 / 1000000)) MB" >>"$results/one.txt"
done

{
    echo "Machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(date -u +%Y-%m-%d)"
    echo "Rounds: $ROUNDS${QUICK:+ (quick)}; medians; MB = 10^6 bytes; PostgreSQL $("$pg_bin/postgres" --version | awk '{print $3}'), SeaweedFS $("$weed_bin" version 2>/dev/null | head -1 | awk '{print $3}')"
    echo "Load average (1, 5, 15 min) before each run: $(awk '{print $(NF-2)}' "$results/loadavg.txt" | sort -n | head -1) to $(awk '{print $(NF-2)}' "$results/loadavg.txt" | sort -n | tail -1) (1 min)"
    echo
    "$bench_bin" compare "$results/one.txt" "$results/two.txt" \
        --a-label "1 node" --b-label "2 nodes" --hardware "$results/hardware.txt"
} | tee "$results/table.md"

if ((failures > 0)); then
    echo "$failures scenario runs failed (see the lines starting with 'error:' above)" >&2
    exit 1
fi
