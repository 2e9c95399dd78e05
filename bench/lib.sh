# Shared by the benchmark scripts that start Berth servers of their own
# (replication.sh, webhooks.sh, proxy.sh): source it, then call
# `bench_workdir NAME` before anything else is started.
#
# bench_workdir NAME: makes $work (under $BENCH_TMPDIR, default /tmp), and
# stops every process whose pid is added to $pids, then removes $work, when
# the script exits.
bench_workdir() {
    work=$(mktemp -d "${BENCH_TMPDIR:-/tmp}/berth-$1.XXXXXX")
    pids=()
    trap bench_cleanup EXIT
}

bench_cleanup() {
    for pid in "${pids[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$work"
}

# start NAME ARGS…: `$berth serve` on a loopback port with the data
# directory $work/NAME and ARGS; sets $address and $pid (added to $pids).
# Its log goes to $work/NAME.log.
start() {
    local name=$1
    shift
    BERTH_LOG=warn "$berth" serve --listen 127.0.0.1:0 --data-dir "$work/$name" "$@" \
        >"$work/$name.stdout" 2>>"$work/$name.log" &
    pid=$!
    pids+=("$pid")
    address=""
    for _ in $(seq 1 300); do
        address=$(sed -n 's/^listening on //p' "$work/$name.stdout" | head -1)
        [[ -n $address ]] && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if [[ -z $address ]]; then
        echo "berth ($name) did not report its address; its log:" >&2
        cat "$work/$name.log" >&2
        exit 1
    fi
}

# stop PID: stops a server and waits for it.
stop() {
    kill -TERM "$1"
    wait "$1" 2>/dev/null || true
}

# cpu PID: the CPU seconds (user + system) a process has used so far.
cpu() {
    local ticks
    ticks=$(awk '{print $14 + $15}' "/proc/$1/stat")
    echo "scale=3; $ticks / $(getconf CLK_TCK)" | bc
}
