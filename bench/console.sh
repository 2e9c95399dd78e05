#!/usr/bin/env bash
# The console's page timings (issue 14: pages that stay fast with 100,000
# tags). Fills a registry (crates/registry/examples/listing_fixture.rs) with
# IMAGES images in REPOSITORIES repositories, each tagged image carrying
# TAGS_PER_IMAGE tags, every FINDINGS_EVERY-th with vulnerability finding
# counts; serves it with `berth serve --auth`, signs in to the console as an
# administrator, and times each page RUNS times, one request at a time
# (curl's total time, on loopback), printing the median and p99 in ms. A
# bounded script: RUNS requests per page, nothing timed in tests.
#
# Usage: bench/console.sh
# Environment:
#   REPOSITORIES=1 IMAGES=10000 TAGS_PER_IMAGE=13 FINDINGS_EVERY=10 RUNS=200
#   QUICK=1            tiny sizes: checks this script, measures nothing
#   BERTH_BIN          the Berth binary (default: this checkout's release build)
#   BENCH_TMPDIR=/tmp  where the data directory goes
# The figures stay in $CARGO_TARGET_DIR/bench-last/console.txt.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$repo/target}
if [[ -n ${QUICK:-} ]]; then
    IMAGES=${IMAGES:-100} TAGS_PER_IMAGE=${TAGS_PER_IMAGE:-3} RUNS=${RUNS:-5}
fi
REPOSITORIES=${REPOSITORIES:-1}
IMAGES=${IMAGES:-10000}
TAGS_PER_IMAGE=${TAGS_PER_IMAGE:-13}
FINDINGS_EVERY=${FINDINGS_EVERY:-10}
RUNS=${RUNS:-200}

echo "== building the fixture and berth (release)" >&2
# Two builds: with --example, cargo builds only the examples.
(cd "$repo" && cargo build --release -p berth-registry --example listing_fixture >&2)
if [[ -z ${BERTH_BIN:-} ]]; then
    (cd "$repo" && cargo build --release -p berth >&2)
fi

work=$(mktemp -d "${BENCH_TMPDIR:-/tmp}/berth-console.XXXXXX")
server_pid=""
cleanup() {
    if [[ -n $server_pid ]]; then
        kill -TERM "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/data"
berth=${BERTH_BIN:-$target/release/berth}

echo "== filling: $IMAGES images in $REPOSITORIES repositories, $TAGS_PER_IMAGE tags per tagged image" >&2
"$target/release/examples/listing_fixture" --data-dir "$work/data" --repositories "$REPOSITORIES" \
    --images "$IMAGES" --tags-per-image "$TAGS_PER_IMAGE" --findings-every "$FINDINGS_EVERY" >&2
password=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
echo "$password" | "$berth" admin user create bench --admin --password-stdin \
    --data-dir "$work/data" >/dev/null

BERTH_LOG=warn "$berth" serve --auth --listen 127.0.0.1:0 --data-dir "$work/data" \
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
base="http://$address"
echo "== berth at $address (pid $server_pid)" >&2

# A console session, as a browser signs in.
jar="$work/cookies"
curl -sf -o /dev/null -c "$jar" -H 'Sec-Fetch-Site: same-origin' \
    --data-urlencode username=bench --data-urlencode "password=$password" \
    --data-urlencode next=/ "$base/sign-in"

repository=/repositories/ns-00/app-00000
# A deep keyset page: follow "Next page" 40 times (50 images a page).
deep=$repository
for _ in $(seq 1 40); do
    next=$(curl -sf -b "$jar" "$base$deep" | grep -o 'href="[^"]*cursor=[^"]*"' | head -1 |
        sed 's/^href="//; s/"$//; s/&amp;/\&/g') || true
    [[ -z $next ]] && break
    deep=$next
done

pages=(
    "overview|/"
    "namespace|/namespaces/ns-00"
    "repository, first page|$repository"
    "repository, deep keyset page|$deep"
    "tag search, substring (q=v99)|$repository?q=v99&sort=name"
    "tag search, no match (q=zzz)|$repository?q=zzz&sort=name"
    "tags by newest|$repository?q=&sort=newest"
)
results=$target/bench-last
mkdir -p "$results"
{
    echo "console pages: $IMAGES images, $(($IMAGES * 4 / 5 * $TAGS_PER_IMAGE)) tags, $RUNS requests each (ms)"
    printf '%-36s %8s %8s\n' page median p99
    for entry in "${pages[@]}"; do
        name=${entry%%|*}
        path=${entry#*|}
        status=$(curl -s -o /dev/null -w '%{http_code}' -b "$jar" "$base$path")
        [[ $status == 200 ]] || { echo "$name: HTTP $status" >&2; exit 1; }
        for _ in $(seq 1 "$RUNS"); do
            curl -s -o /dev/null -b "$jar" -w '%{time_total}\n' "$base$path"
        done | sort -n | awk -v name="$name" '
            { t[NR] = $1 * 1000 }
            END {
                median = (NR % 2) ? t[(NR + 1) / 2] : (t[NR / 2] + t[NR / 2 + 1]) / 2
                p = int(NR * 0.99 + 0.999); if (p > NR) p = NR
                printf "%-36s %8.2f %8.2f\n", name, median, t[p]
            }'
    done
} | tee "$results/console.txt"
