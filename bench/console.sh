#!/usr/bin/env bash
# The console's page timings (issue 14: pages that stay fast with 100,000
# tags, and every page within 20 ms of server time with 10,000
# repositories). Fills a registry (crates/registry/examples/
# listing_fixture.rs), serves it with `berth serve --auth`, signs in to the
# console as an administrator, and times each page RUNS times, one request
# at a time (curl's total time, on loopback), printing the median and p99
# in ms. A bounded script: RUNS requests per page, nothing timed in tests.
#
# Two fixtures (FIXTURE):
#   tags        IMAGES images in REPOSITORIES repositories, each tagged
#               image carrying TAGS_PER_IMAGE tags (104,000 tags in one
#               repository by default): the repository page, its paging
#               and its tag search.
#   registry    10,000 repositories in 100 namespaces with 100,000 images
#               (bench/listing.sh's registry): every kind of page.
# Both store finding counts for every FINDINGS_EVERY-th image.
#
# Usage: bench/console.sh
# Environment:
#   FIXTURE=tags       or registry
#   REPOSITORIES, IMAGES, TAGS_PER_IMAGE   the fixture's sizes (tags:
#                      1, 10000, 13; registry: 10000, 100000, 1)
#   FINDINGS_EVERY=10 RUNS=200
#   QUICK=1            tiny sizes: checks this script, measures nothing
#   BERTH_BIN          the Berth binary (default: this checkout's release build)
#   BENCH_TMPDIR=/tmp  where the data directory goes
#   DATA_DIR           a data directory this script filled before (with the
#                      same FIXTURE and sizes): used as it is, not filled
#                      again nor removed
# The figures stay in $CARGO_TARGET_DIR/bench-last/console-$FIXTURE.txt.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$repo/target}
FIXTURE=${FIXTURE:-tags}
case $FIXTURE in
tags)
    if [[ -n ${QUICK:-} ]]; then
        IMAGES=${IMAGES:-100} TAGS_PER_IMAGE=${TAGS_PER_IMAGE:-3} RUNS=${RUNS:-5}
    fi
    REPOSITORIES=${REPOSITORIES:-1}
    IMAGES=${IMAGES:-10000}
    TAGS_PER_IMAGE=${TAGS_PER_IMAGE:-13}
    ;;
registry)
    if [[ -n ${QUICK:-} ]]; then
        REPOSITORIES=${REPOSITORIES:-200} IMAGES=${IMAGES:-400} RUNS=${RUNS:-5}
    fi
    REPOSITORIES=${REPOSITORIES:-10000}
    IMAGES=${IMAGES:-100000}
    TAGS_PER_IMAGE=${TAGS_PER_IMAGE:-1}
    ;;
*)
    echo "FIXTURE is tags or registry, not $FIXTURE" >&2
    exit 2
    ;;
esac
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
berth=${BERTH_BIN:-$target/release/berth}
data=${DATA_DIR:-$work/data}
if [[ ! -e $data/berth.db ]]; then
    mkdir -p "$data"
    echo "== filling: $IMAGES images in $REPOSITORIES repositories, $TAGS_PER_IMAGE tags per tagged image" >&2
    "$target/release/examples/listing_fixture" --data-dir "$data" --repositories "$REPOSITORIES" \
        --images "$IMAGES" --tags-per-image "$TAGS_PER_IMAGE" --findings-every "$FINDINGS_EVERY" >&2
fi
# A user of its own per run, so that a kept DATA_DIR can be used again.
user=bench-$(date +%s)
password=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
echo "$password" | "$berth" admin user create "$user" --admin --password-stdin \
    --data-dir "$data" >/dev/null

# The fixture's images have metadata but no blobs, so scanning them would
# only fail and retry beside the measurement: the scanner is off.
BERTH_SCANNER_ENABLED=false BERTH_LOG=warn "$berth" serve --auth --listen 127.0.0.1:0 --data-dir "$data" \
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
    --data-urlencode username="$user" --data-urlencode "password=$password" \
    --data-urlencode next=/ "$base/sign-in"

repository=/repositories/ns-00/app-00000
if [[ $FIXTURE == tags ]]; then
    # A deep keyset page: follow "Next page" 40 times (50 images a page).
    deep=$repository
    for _ in $(seq 1 40); do
        next=$(curl -sf -b "$jar" "$base$deep" | grep -o 'href="[^"]*cursor=[^"]*"' | head -1 |
            sed 's/^href="//; s/"$//; s/&amp;/\&/g') || true
        [[ -z $next ]] && break
        deep=$next
    done
    title="$IMAGES images, $(($IMAGES * 4 / 5 * $TAGS_PER_IMAGE)) tags"
    pages=(
        "overview|/"
        "namespace|/namespaces/ns-00"
        "repository, first page|$repository"
        "repository, deep keyset page|$deep"
        "tag search, substring (q=v99)|$repository?q=v99&sort=name"
        "tag search, no match (q=zzz)|$repository?q=zzz&sort=name"
        "tags by newest|$repository?q=&sort=newest"
    )
else
    # A token and a replication rule, so that their pages list something.
    csrf=$(curl -sf -b "$jar" "$base/tokens" | grep -o 'name="csrf" value="[^"]*"' | head -1 |
        sed 's/.*value="//; s/"$//')
    curl -sf -o /dev/null -b "$jar" -H 'Sec-Fetch-Site: same-origin' \
        --data-urlencode "csrf=$csrf" --data-urlencode name=bench-bot \
        --data-urlencode scopes=ns-00:pull --data-urlencode expires=30d "$base/tokens" || true
    title="$REPOSITORIES repositories, $IMAGES images"
    # The fixture stores finding counts of every FINDINGS_EVERY-th image,
    # all in untagged repositories such as this one: its newest image, by
    # digest.
    image=$(curl -sf -b "$jar" "$base$repository?tagged=any" | grep -o 'href="[^"]*/-/images/sha256:[^"]*"' |
        head -1 | sed 's/^href="//; s/"$//')
    pages=(
        "overview|/"
        "namespaces|/namespaces"
        "a namespace (100 repositories)|/namespaces/ns-00"
        "a namespace, sorted by pulls|/namespaces/ns-00?sort=pulls"
        "a repository|$repository"
        "an image (with vulnerabilities)|$image"
        "exemptions|/namespaces/ns-00/exemptions"
        "lifecycle|/namespaces/ns-00/lifecycle"
        "trash|/namespaces/ns-00/trash"
        "tokens|/tokens"
        "account|/account"
        "users|/admin/users"
        "settings|/admin/settings"
        "replications|/admin/replications"
    )
fi
results=$target/bench-last
mkdir -p "$results"
{
    echo "console pages: $title, $RUNS requests each (ms), load average $(cut -d' ' -f1-3 /proc/loadavg)"
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
} | tee "$results/console-$FIXTURE.txt"
