#!/usr/bin/env bash
# Runs the OCI distribution-spec conformance program against Berth, in the
# profiles the team reports, and prints passed/failed/skipped per profile.
#
#   scripts/conformance.sh            one node: SQLite + filesystem
#   scripts/conformance.sh --lb       two nodes on PostgreSQL + S3 (SeaweedFS)
#                                     behind nginx round-robin, as
#                                     docs/deploy.md describes
#   scripts/conformance.sh --url URL  a registry that is already running
#
# Berth is started with its default settings (cache_ttl = 1s included) on
# loopback, built from this checkout first (`cargo build -p berth`), and
# everything started is stopped and deleted on exit. Flags after `--` go to
# every `berth serve`, e.g. `scripts/conformance.sh --lb -- --cache-ttl 0s`.
#
# Options:
#   --lb                 the two-node deployment behind nginx
#   --url URL            test URL (http:// or https://) instead of starting Berth
#   --profile NAME       run only this profile (repeatable); default: all of
#                        stable-sha256  OCI_VERSION=stable, OCI_DATA_SHA512=false
#                        stable-sha512  OCI_VERSION=stable (sha512 data on)
#                        dev            OCI_VERSION=dev (upload cancel, digest
#                                       headers and tag parameters on)
#   --release            build and run the release binary (slow to build)
#
# Environment:
#   OCI_CONFORMANCE_BIN  (required) the conformance program, built from the
#                        conformance/ directory of opencontainers/distribution-spec.
#                        Neither its source nor a recipe that builds it lives in
#                        this repository: fetch the repository (with the team's
#                        `fetch` tool: github:opencontainers/distribution-spec,
#                        and for its Go module dependencies github:goccy/go-yaml,
#                        github:opencontainers/go-digest and
#                        github:opencontainers/image-spec), check it out outside
#                        this repository and build it there as its README says.
#                        docs/conformance.md has the details.
#   BERTH_BIN            run this berth binary instead of building one
#   OCI_*                passed through to the program (OCI_LOG=debug,
#                        OCI_USERNAME/OCI_PASSWORD with --url, OCI_TLS=insecure, ...),
#                        except what a profile sets
#   CONFORMANCE_NAMESPACE=conformance  first component of the repositories
#                        the program pushes to (each profile and run gets its own)
#   CONFORMANCE_OUT      where the reports go (default: see below; emptied first)
#   BERTH_NODE_LOG, BENCH_TMPDIR, PG_BIN, WEED_BIN, NGINX_BIN: see
#                        scripts/lib/deployment.sh
#
# Reports (junit.xml, report.html, results.yaml, the program's output, the
# failing tests) go to $CARGO_TARGET_DIR/conformance/SETUP/PROFILE/ (SETUP is
# single, lb or url), the summary to .../SETUP/summary.txt, and the nodes' and
# nginx's logs next to them. Exit status: 0 if no test failed, 1 if one did,
# 2 if the run could not be set up.
#
# Not part of CI: CI has no access to GitHub, where the program comes from.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$repo/target}

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
    exit 2
}

setup=single
registry_url=
profiles=()
cargo_profile=debug
berth_flags=()
while (($# > 0)); do
    case $1 in
    --lb) setup=lb ;;
    --url)
        [[ $# -ge 2 ]] || usage
        setup=url registry_url=$2
        shift
        ;;
    --profile)
        [[ $# -ge 2 ]] || usage
        profiles+=("$2")
        shift
        ;;
    --release) cargo_profile=release ;;
    --) shift && berth_flags=("$@") && break ;;
    -h | --help) usage ;;
    *)
        echo "unknown argument: $1" >&2
        usage
        ;;
    esac
    shift
done
if ((${#profiles[@]} == 0)); then profiles=(stable-sha256 stable-sha512 dev); fi

# The variables that make each profile, given to the program on top of the
# caller's environment.
profile_env() {
    case $1 in
    stable-sha256) echo OCI_VERSION=stable OCI_DATA_SHA512=false ;;
    stable-sha512) echo OCI_VERSION=stable OCI_DATA_SHA512=true ;;
    dev) echo OCI_VERSION=dev ;;
    *) return 1 ;;
    esac
}
for profile in "${profiles[@]}"; do
    if ! profile_env "$profile" >/dev/null; then
        echo "unknown profile $profile (stable-sha256, stable-sha512 or dev)" >&2
        exit 2
    fi
done

conformance_bin=${OCI_CONFORMANCE_BIN:-}
if [[ -z $conformance_bin || ! -x $conformance_bin ]]; then
    echo "OCI_CONFORMANCE_BIN must name the built conformance program (see docs/conformance.md)" >&2
    exit 2
fi
conformance_bin=$(readlink -f "$conformance_bin")
if [[ $setup == url && $registry_url != http://* && $registry_url != https://* ]]; then
    echo "--url takes http://HOST:PORT or https://HOST:PORT" >&2
    exit 2
fi
if [[ $setup == url && ${#berth_flags[@]} -gt 0 ]]; then
    echo "flags after -- are for a Berth this script starts, not for --url" >&2
    exit 2
fi

out=${CONFORMANCE_OUT:-$target/conformance/$setup}
rm -rf "$out"
mkdir -p "$out"

source "$repo/scripts/lib/deployment.sh"

# Keeps the logs of what was started, for reading failures afterwards; runs
# from the exit trap, before the deployment is stopped and deleted.
# shellcheck disable=SC2317 # called through $deployment_on_exit
keep_logs() {
    local name
    for name in "${!pid[@]}"; do
        case $name in
        postgres) cp "$work/postgres/server.log" "$out/postgres.log" 2>/dev/null || true ;;
        seaweedfs) cp "$work/seaweedfs/log" "$out/seaweedfs.log" 2>/dev/null || true ;;
        lb)
            cp "$work/lb/access.log" "$out/nginx-access.log" 2>/dev/null || true
            cp "$work/lb/error.log" "$out/nginx-error.log" 2>/dev/null || true
            ;;
        *) cp "$work/$name/log" "$out/$name.log" 2>/dev/null || true ;;
        esac
    done
}

if [[ $setup != url ]]; then
    if [[ -n ${BERTH_BIN:-} ]]; then
        built=$BERTH_BIN
    else
        echo "== building berth ($cargo_profile)" >&2
        cargo_flags=(-p berth)
        [[ $cargo_profile == release ]] && cargo_flags+=(--release)
        (cd "$repo" && cargo build "${cargo_flags[@]}" >&2)
        built=$target/$cargo_profile/berth
    fi
    if [[ $setup == lb ]]; then
        find_postgres || exit 2
        find_seaweedfs || exit 2
    fi
    deployment_init berth-conformance
    deployment_on_exit=keep_logs
    # The binary is copied because a shared target directory may be rebuilt
    # while the suite runs.
    mkdir -p "$work/bin"
    cp "$built" "$work/bin/berth"
    berth_bin=$work/bin/berth
    if [[ $setup == lb ]]; then
        echo "== starting PostgreSQL, SeaweedFS, two nodes and nginx" >&2
        start_postgres || exit 2
        start_seaweedfs || exit 2
        start_node node1 "${berth_flags[@]}" || exit 2
        start_node node2 "${berth_flags[@]}" || exit 2
        start_nginx lb node1 node2 || exit 2
        registry_url=${url[lb]}
    else
        echo "== starting one node (SQLite + filesystem)" >&2
        start_berth node "${berth_flags[@]}" || exit 2
        registry_url=${url[node]}
    fi
fi

registry=${registry_url#*://}
registry=${registry%%/*}
if [[ $registry_url == https://* ]]; then tls=${OCI_TLS:-enabled}; else tls=disabled; fi
namespace=${CONFORMANCE_NAMESPACE:-conformance}
run_id=$(date +%s)

# Reads a profile's junit.xml: prints "pass fail error skip disabled total"
# on the first line, then one line per failed test (name: first error line).
read_junit() {
    python3 - "$1" <<'EOF'
import sys
import xml.etree.ElementTree as ET

suites = ET.parse(sys.argv[1]).getroot()
count = {k: int(suites.get(k, "0")) for k in ("tests", "failures", "errors", "skipped", "disabled")}
passed = count["tests"] - count["failures"] - count["errors"] - count["skipped"] - count["disabled"]
print(passed, count["failures"], count["errors"], count["skipped"], count["disabled"], count["tests"])
for case in suites.iter("testcase"):
    if case.get("status") in ("failure", "error"):
        detail = (case.findtext("system-out") or "").strip().splitlines()
        print(f"{case.get('name')}: {detail[0] if detail else case.get('status')}")
EOF
}

summary=$out/summary.txt
{
    echo "Berth OCI conformance, $setup: $registry_url"
    if [[ $setup == url ]]; then
        echo "A registry this script did not start, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    else
        echo "Berth $(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$repo" diff --quiet HEAD 2>/dev/null || echo ' (modified)'), flags: ${berth_flags[*]:-(defaults)}, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    fi
    echo "Counts are the program's own (one per check); disabled: turned off by the profile; skip: an optional feature the registry lacks."
    echo
    printf '%-14s %6s %6s %6s %6s %9s %6s %8s\n' profile pass fail error skip disabled total seconds
} >"$summary"
failed=0
for profile in "${profiles[@]}"; do
    dir=$out/$profile
    mkdir -p "$dir"
    echo "== $profile against $registry_url" >&2
    read -ra settings <<<"$(profile_env "$profile")"
    started=$EPOCHREALTIME
    # The program reads oci-conformance.yaml from its working directory, so it
    # runs in the (fresh) results directory. It exits 0 whatever the results.
    (cd "$dir" && env "${settings[@]}" OCI_REGISTRY="$registry" OCI_TLS="$tls" \
        OCI_REPO1="$namespace/$run_id-$profile/repo1" OCI_REPO2="$namespace/$run_id-$profile/repo2" \
        OCI_RESULTS_DIR="$dir" "$conformance_bin" >"$dir/output.txt" 2>"$dir/stderr.txt") || true
    seconds=$(awk -v a="$started" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
    # Results against a deployment that went away part-way are noise.
    if [[ $setup != url ]] && ! deployment_check; then
        printf '%-14s %s\n' "$profile" "aborted: the deployment stopped during the run" >>"$summary"
        cat "$summary"
        exit 2
    fi
    if [[ ! -s $dir/junit.xml ]]; then
        echo "!! $profile: the program wrote no junit.xml; its output:" >&2
        tail -20 "$dir/output.txt" "$dir/stderr.txt" >&2
        printf '%-14s %s\n' "$profile" "did not run (see $dir/stderr.txt)" >>"$summary"
        failed=1
        continue
    fi
    read_junit "$dir/junit.xml" >"$dir/counts.txt"
    read -r pass fail error skip disabled total <"$dir/counts.txt"
    tail -n +2 "$dir/counts.txt" >"$dir/failures.txt"
    rm "$dir/counts.txt"
    printf '%-14s %6d %6d %6d %6d %9d %6d %8s\n' "$profile" "$pass" "$fail" "$error" "$skip" \
        "$disabled" "$total" "$seconds" >>"$summary"
    if ((fail + error > 0)); then failed=1; fi
done
{
    for profile in "${profiles[@]}"; do
        list=$out/$profile/failures.txt
        [[ -s $list ]] || continue
        echo
        echo "$profile: $(wc -l <"$list") failed tests (all in $list)"
        head -20 "$list" | sed 's/^/  /'
    done
    echo
    # The program records the distribution-spec commit it was built from
    # (from Go's VCS stamp, or -ldflags "-X main.Version=COMMIT").
    commit=$(sed -n 's/^  commit: //p' "$out/${profiles[0]}/results.yaml" 2>/dev/null | head -1)
    echo "Conformance program: distribution-spec ${commit:-unknown}"
    echo "Reports: $out/PROFILE/{junit.xml,report.html,results.yaml}"
} >>"$summary"
cat "$summary"
exit "$failed"
