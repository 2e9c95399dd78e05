#!/usr/bin/env bash
# The pull-through cache benchmark (issue 16): "a cached pull through the
# proxy namespace is within 5% of a local pull; a cold pull adds ≤ 1 ms of
# server CPU per MiB over the upstream's own cost".
#
# A CNCF Distribution (Debian's `docker-registry`) is the upstream, holding
# IMAGES images of one LAYER_MIB MiB layer of random bytes each; a Berth
# serves `--upstream cache=…` and holds images of the same shape (a layer
# of other random bytes) in a namespace of its own (`local`). For each
# image:
#   cold:   the first pull through `cache/` (manifest, config, layer, as a
#           client pulls), with Berth's and Distribution's CPU seconds
#           around it (Berth's read once its background store is done) and
#           Berth's minor page faults per MiB;
#   cached: the layer GET through `cache/` again, and from `local/`, in
#           turn, PULLS times each: MB/s of each (curl's average speed).
#
# Usage: bench/proxy.sh
# Environment:
#   IMAGES=3 LAYER_MIB=256 PULLS=5
#   QUICK=1           one image of 4 MiB, one pull: checks this script, measures nothing
#   BERTH_BIN         the Berth binary (default: this checkout's release build)
#   BENCH_TMPDIR=/tmp where the data directories go
# The figures stay in $CARGO_TARGET_DIR/bench-last/proxy.txt.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$repo/target}
IMAGES=${IMAGES:-3}
LAYER_MIB=${LAYER_MIB:-256}
PULLS=${PULLS:-5}
if [[ -n ${QUICK:-} ]]; then
    IMAGES=1 LAYER_MIB=4 PULLS=1
fi
command -v docker-registry >/dev/null || {
    echo "docker-registry (Debian's package of the same name) is needed" >&2
    exit 1
}

if [[ -z ${BERTH_BIN:-} ]]; then
    echo "== building berth (release)" >&2
    (cd "$repo" && cargo build --release -p berth >&2)
fi

# shellcheck source=bench/lib.sh
source "$repo/bench/lib.sh"
bench_workdir proxy
berth=${BERTH_BIN:-$target/release/berth}

# The upstream.
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat >"$work/distribution.yml" <<EOF
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $work/distribution
http:
  addr: 127.0.0.1:$port
EOF
docker-registry serve "$work/distribution.yml" >"$work/distribution.log" 2>&1 &
upstream_pid=$!
pids+=("$upstream_pid")
upstream=127.0.0.1:$port
for _ in $(seq 1 100); do
    curl -sf "http://$upstream/v2/" >/dev/null && break
    sleep 0.1
done

start berth --upstream "cache=http://$upstream"
berth_pid=$pid

# push.py REGISTRY REPOSITORY TAG LAYER: an image of one layer (monolithic
# uploads); prints the layer's digest.
cat >"$work/push.py" <<'EOF'
import hashlib, json, sys, urllib.request

registry, repository, tag, layer_path = sys.argv[1:5]

def request(method, url, data=None, headers=None):
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    with urllib.request.urlopen(req) as response:
        return response

def blob(data):
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    start = request("POST", f"http://{registry}/v2/{repository}/blobs/uploads/")
    location = start.headers["Location"]
    if location.startswith("/"):
        location = f"http://{registry}{location}"
    joiner = "&" if "?" in location else "?"
    request("PUT", f"{location}{joiner}digest={digest}", data,
            {"Content-Type": "application/octet-stream"})
    return digest, len(data)

layer = open(layer_path, "rb").read()
layer_digest, layer_size = blob(layer)
config = json.dumps({"architecture": "amd64", "os": "linux",
                     "rootfs": {"type": "layers", "diff_ids": [layer_digest]}}).encode()
config_digest, config_size = blob(config)
manifest = json.dumps({
    "schemaVersion": 2,
    "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
               "digest": config_digest, "size": config_size},
    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": layer_digest, "size": layer_size}],
}).encode()
request("PUT", f"http://{registry}/v2/{repository}/manifests/{tag}", manifest,
        {"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
print(layer_digest)
EOF

# get URL: the body's average MB/s (curl's figure, bytes per second).
get() {
    curl -sf -o /dev/null -w '%{speed_download}' \
        -H 'Accept: application/vnd.oci.image.manifest.v1+json' "$1"
}

# minor_faults PID: the minor page faults of a process so far (fresh pages
# it touched: memory kept rather than reused shows here).
minor_faults() { awk '{print $10}' "/proc/$1/stat"; }

# settle PID: waits until a process's CPU time stops moving for half a
# second (at most 10 s) and prints it.
settle() {
    local last="" now
    for _ in $(seq 1 20); do
        now=$(cpu "$1")
        [[ $now == "$last" ]] && break
        last=$now
        sleep 0.5
    done
    echo "$now"
}

median() { sort -n | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }

results=$target/bench-last
mkdir -p "$results"
{
    echo "proxy: $IMAGES images of one ${LAYER_MIB} MiB layer, upstream Distribution, loopback"
    for image in $(seq 1 "$IMAGES"); do
        head -c "$((LAYER_MIB << 20))" /dev/urandom >"$work/layer"
        digest=$(python3 "$work/push.py" "$upstream" "bench/big$image" v1 "$work/layer")
        # The local image's layer has other bytes of the same size: with the
        # same bytes, the blob would already be stored when the cold pull
        # fetches it, and the pull would measure a fetch whose copy is
        # discarded rather than one that stores a new blob.
        head -c "$((LAYER_MIB << 20))" /dev/urandom >"$work/layer"
        local_digest=$(python3 "$work/push.py" "$address" "local/big$image" v1 "$work/layer")
        rm "$work/layer"
        # What the pushes above set off in Berth (the scan of the local
        # image, its statistics) is not the cold pull's: wait until its CPU
        # stops moving (bounded: 10 s) before counting.
        settle "$berth_pid" >/dev/null
        berth_before=$(cpu "$berth_pid") upstream_before=$(cpu "$upstream_pid")
        faults_before=$(minor_faults "$berth_pid")
        start_ns=$(date +%s%N)
        manifest=$(curl -sf -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
            "http://$address/v2/cache/bench/big$image/manifests/v1")
        config=$(echo "$manifest" | python3 -c 'import json, sys; print(json.load(sys.stdin)["config"]["digest"])')
        get "http://$address/v2/cache/bench/big$image/blobs/$config" >/dev/null
        cold=$(get "http://$address/v2/cache/bench/big$image/blobs/$digest")
        end_ns=$(date +%s%N)
        # The background store of the manifest ends shortly after the last
        # blob: wait until Berth's CPU stops moving.
        now=$(settle "$berth_pid")
        berth_cpu=$(echo "$now - $berth_before" | bc)
        faults=$((($(minor_faults "$berth_pid") - faults_before) / LAYER_MIB))
        upstream_cpu=$(echo "$(cpu "$upstream_pid") - $upstream_before" | bc)
        per_mib=$(echo "scale=3; $berth_cpu * 1000 / $LAYER_MIB" | bc)
        upstream_per_mib=$(echo "scale=3; $upstream_cpu * 1000 / $LAYER_MIB" | bc)
        cold_mbs=$(echo "scale=1; $cold / 1000000" | bc)
        wall=$(echo "scale=3; ($end_ns - $start_ns) / 1000000000" | bc)
        echo "image $image cold: ${wall}s, layer at $cold_mbs MB/s; Berth CPU ${berth_cpu}s" \
            "(${per_mib} ms/MiB, $faults page faults/MiB), Distribution CPU ${upstream_cpu}s (${upstream_per_mib} ms/MiB)"
        : >"$work/cached" && : >"$work/local"
        for _ in $(seq 1 "$PULLS"); do
            get "http://$address/v2/cache/bench/big$image/blobs/$digest" >>"$work/cached"
            echo >>"$work/cached"
            get "http://$address/v2/local/big$image/blobs/$local_digest" >>"$work/local"
            echo >>"$work/local"
        done
        cached=$(median <"$work/cached") local_speed=$(median <"$work/local")
        echo "image $image cached: $(echo "scale=1; $cached / 1000000" | bc) MB/s," \
            "local: $(echo "scale=1; $local_speed / 1000000" | bc) MB/s" \
            "(cached / local $(echo "scale=3; $cached / $local_speed" | bc); medians of $PULLS)"
    done
} | tee "$results/proxy.txt"
