#!/usr/bin/env bash
# The webhook benchmark (issue 16: "webhook delivery adds nothing to the
# push's latency"). Two Berths on the same machine, identical but for one
# registry-wide webhook on `push` events in the second, delivered to a
# local receiver that answers 200 at once. berth-bench's push_small (500
# images of a 4 KiB layer and a config, with 16 clients and with 1) runs
# against each in turn, ROUNDS times (A B A B …, so that both data
# directories grow alike and drift on the machine hits both), and reports
# each round's images/s, per-image push time (median and 99th percentile)
# and server CPU seconds, the receiver's deliveries, and how long after the
# round's last push the last delivery arrived.
#
# Usage: bench/webhooks.sh
# Environment:
#   ROUNDS=3          rounds per server
#   CLIENTS="16 1"    push_small's clients, each round in turn: 16 saturate
#                     the machine, 1 leaves it room (the push's own latency)
#   QUICK=1           one round of 20 images: checks this script, measures nothing
#   BERTH_BIN         the Berth binary (default: this checkout's release build)
#   BENCH_TMPDIR=/tmp where the data directories go
# The figures stay in $CARGO_TARGET_DIR/bench-last/webhooks.txt.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$repo/target}
ROUNDS=${ROUNDS:-3}
CLIENTS=${CLIENTS:-16 1}
quick_flag=""
if [[ -n ${QUICK:-} ]]; then
    quick_flag=--quick
    ROUNDS=1
fi

echo "== building berth-bench and berth (release)" >&2
packages=(-p berth-bench)
[[ -z ${BERTH_BIN:-} ]] && packages+=(-p berth)
(cd "$repo" && cargo build --release "${packages[@]}" >&2)

# shellcheck source=bench/lib.sh
source "$repo/bench/lib.sh"
bench_workdir webhooks
mkdir -p "$work/bin" "$work/plain" "$work/hooked" "$work/home"
cp "$target/release/berth-bench" "$work/bin/"
cp "${BERTH_BIN:-$target/release/berth}" "$work/bin/berth"
berth=$work/bin/berth

# The receiver: answers every POST with 200 and appends its arrival time
# (seconds since the epoch, with nanoseconds) to a file, one line each.
cat >"$work/receiver.py" <<'EOF'
import http.server, sys, time

arrivals = open(sys.argv[1], "a", buffering=1)

class Receiver(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", "0")))
        arrivals.write(f"{time.time():.6f}\n")
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass

server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
print(server.server_address[1], flush=True)
server.serve_forever()
EOF
: >"$work/arrivals"
python3 "$work/receiver.py" "$work/arrivals" >"$work/receiver.port" &
pids+=("$!")
for _ in $(seq 1 100); do
    [[ -s $work/receiver.port ]] && break
    sleep 0.1
done
receiver="http://127.0.0.1:$(cat "$work/receiver.port")/hook"

# The hooked server's webhook, added through the API as an administrator;
# then both serve without access control (berth-bench pushes anonymously),
# the hooked one allowed to deliver to a loopback address.
password=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
echo "$password" | "$berth" admin user create bencher --admin --password-stdin \
    --data-dir "$work/hooked" >/dev/null
start hooked --auth --outbound-allow-private
export HOME=$work/home
echo "$password" | "$berth" login "$address" -u bencher --password-stdin >/dev/null
"$berth" webhook add '*' "$receiver" --events push -q >/dev/null
stop "$pid"
start plain
plain_address=$address plain_pid=$pid
start hooked --outbound-allow-private
hooked_address=$address hooked_pid=$pid
echo "== plain at $plain_address (pid $plain_pid), hooked at $hooked_address (pid $hooked_pid)," \
    "receiver at $receiver" >&2

# push NAME ADDRESS PID CLIENTS: one push_small round with CLIENTS clients;
# prints images/s, the per-image push time (median, 99th percentile) and
# the server's CPU.
push() {
    local name=$1 address=$2 pid=$3 clients=$4 before out figure
    before=$(cpu "$pid")
    out=$("$work/bin/berth-bench" --url "http://$address" --scenario push_small \
        --push-clients "$clients" $quick_flag)
    round_end=$(date +%s.%N)
    figure() { echo "$out" | awk -v name="$1" '$1 == name ":" {print $2}'; }
    echo "$name: $(figure push_small) images/s, per image p50 $(figure push_small.image_p50) ms" \
        "p99 $(figure push_small.image_p99) ms, server CPU $(echo "$(cpu "$pid") - $before" | bc)s"
}

results=$target/bench-last
mkdir -p "$results"
{
    echo "webhooks: push_small (4 KiB layer + config per image, $CLIENTS clients) against a Berth" \
        "without webhooks and one with a '*' webhook on push, $ROUNDS rounds each, loopback"
    for round in $(seq 1 "$ROUNDS"); do
        for clients in $CLIENTS; do
            echo "round $round, $clients clients"
            push "  without" "$plain_address" "$plain_pid" "$clients"
            before=$(wc -l <"$work/arrivals")
            push "  with webhook" "$hooked_address" "$hooked_pid" "$clients"
            # Deliveries of this round: every push event, at least once. Waits
            # (bounded: 60 s) until the count stops growing for two seconds.
            last=-1
            for _ in $(seq 1 120); do
                now=$(wc -l <"$work/arrivals")
                [[ $now == "$last" ]] && break
                last=$now
                sleep 2
            done
            delivered=$((now - before))
            last_arrival=$(tail -n 1 "$work/arrivals")
            lag=$(echo "scale=3; $last_arrival - $round_end" | bc)
            echo "  deliveries: $delivered, the last ${lag}s after the round's last push"
        done
    done
} | tee "$results/webhooks.txt"
