#!/usr/bin/env bash
# Runs every fuzz target (fuzz/fuzz_targets) for a bounded time each.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#
# SECONDS per target (default: FUZZ_SECONDS, else 60); all targets unless
# some are named. FUZZ_JOBS targets run at once (default: the number of
# cores; each libFuzzer process uses one). Needs a nightly toolchain and
# cargo-fuzz (`cargo install cargo-fuzz`). Each target starts from its
# committed seeds (fuzz/seeds/TARGET, read only) and its working corpus
# (fuzz/corpus/TARGET, ignored by git, kept between runs). A crash fails the
# script with the failing input under fuzz/artifacts/TARGET; reproduce it with
#   cd fuzz && cargo +nightly fuzz run TARGET artifacts/TARGET/crash-…
# The last line of each run ("DONE … cov: … exec/s: …") gives the figures
# docs/security.md records; a summary table ends the script.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

seconds="${1:-${FUZZ_SECONDS:-60}}"
shift || true
if [ "$#" -gt 0 ]; then
  targets=("$@")
else
  # The targets are the files of fuzz_targets/ (`cargo fuzz list` would
  # also name the seed-making helper binary).
  mapfile -t targets < <(basename -s .rs fuzz_targets/*.rs)
fi
jobs="${FUZZ_JOBS:-$(nproc)}"

echo "== building ${#targets[@]} fuzz targets"
cargo +nightly fuzz build -O >/dev/null

logs="$(mktemp -d)"
trap 'rm -rf "$logs"' EXIT

# Fuzzes one target into $logs/TARGET.log and leaves its exit status in
# $logs/TARGET.rc.
fuzz_one() {
  local target="$1"
  mkdir -p "corpus/$target"
  local dirs=("corpus/$target")
  [ -d "seeds/$target" ] && dirs+=("seeds/$target")
  # -timeout: one input taking 10 s is a hang worth reporting;
  # -rss_limit_mb: a parser that balloons memory is a bug too.
  local rc=0
  cargo +nightly fuzz run -O "$target" "${dirs[@]}" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 >"$logs/$target.log" 2>&1 || rc=$?
  echo "$rc" >"$logs/$target.rc"
}

echo "== fuzzing ${#targets[@]} targets for ${seconds}s each, ${jobs} at a time"
for target in "${targets[@]}"; do
  while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do
    wait -n || true
  done
  fuzz_one "$target" &
done
wait

failed=0
summary=()
for target in "${targets[@]}"; do
  log="$logs/$target.log"
  if [ "$(cat "$logs/$target.rc" 2>/dev/null || echo 1)" != "0" ]; then
    tail -n 60 "$log"
    echo "!! $target failed; the input is under fuzz/artifacts/$target"
    failed=1
    continue
  fi
  done_line="$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -n 1 || true)"
  runs="$(grep -E '^stat::number_of_executed_units:' "$log" | awk '{print $2}' || true)"
  summary+=("$(printf '%-18s %12s runs  %s' "$target" "${runs:-?}" "$(echo "$done_line" | grep -oE 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+/[^ ]+ .*exec/s: [0-9]+' || true)")")
done

echo
echo "== fuzzing summary (${seconds}s per target)"
printf '%s\n' "${summary[@]}"
exit "$failed"
