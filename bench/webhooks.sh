#!/usr/bin/env bash
# The webhook benchmark (issue 16: "webhook delivery adds nothing to the
# push's latency"). Two Berths on the same machine, identical but for one
# registry-wide webhook on `push` events in the second, delivered to a
# local receiver that answers 200 at once. berth-bench's push_small (500
# images of a 4 KiB layer and a config, 16 clients) runs against each in
# turn, ROUNDS times (A B A B …, so that both data directories grow alike
# and drift on the machine hits both), and reports each round's images/s and
# server CPU seconds, the receiver's deliveries, and how long after the
# round's last push the last delivery arrived.
#
# Usage: bench/webhooks.sh
# Environment:
#   ROUNDS=3          rounds per server
#   QUICK=1           one round of 20 images: checks this script, measures nothing
#   BERTH_BIN         the Berth binary (default: this checkout's release build)
#   BENCH_TMPDIR=/tmp where the data directories go
# The figures stay in $CARGO_TARGET_DIR/bench-last/webhooks.txt.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$repo/target}
ROUNDS=${ROUNDS:-3}
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

# push NAME ADDRESS PID: one push_small round; prints images/s and CPU.
push() {
    local name=$1 address=$2 pid=$3 before rate out
    before=$(cpu "$pid")
    out=$("$work/bin/berth-bench" --url "http://$address" --scenario push_small $quick_flag)
    rate=$(echo "$out" | awk '$1 == "push_small:" && $3 == "images/s" {print $2}')
    round_end=$(date +%s.%N)
    echo "$name: $rate images/s, server CPU $(echo "$(cpu "$pid") - $before" | bc)s"
}

results=$target/bench-last
mkdir -p "$results"
{
    echo "webhooks: push_small (4 KiB layer + config per image, 16 clients) against a Berth" \
        "without webhooks and one with a '*' webhook on push, $ROUNDS rounds each, loopback"
    for round in $(seq 1 "$ROUNDS"); do
        echo "round $round"
        push "  without" "$plain_address" "$plain_pid"
        before=$(wc -l <"$work/arrivals")
        push "  with webhook" "$hooked_address" "$hooked_pid"
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
} | tee "$results/webhooks.txt"
