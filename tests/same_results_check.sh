#!/usr/bin/env bash
# Two builds of `latchkey` must give the same results: the same trace hash
# and event count for every seed of every world, the same verdicts on the
# bundled scenarios, the same model-checker verdict and state counts, and
# the same exit statuses. Run by CI on the default and the profile-guided
# build (tools/pgo_build.sh).
#   tests/same_results_check.sh A/latchkey B/latchkey [SEEDS]
set -uo pipefail
if [ $# -lt 2 ]; then
  echo "usage: tests/same_results_check.sh LATCHKEY_A LATCHKEY_B [SEEDS]" >&2
  exit 2
fi
a=$(realpath "$1") b=$(realpath "$2") seeds=${3:-50}
cd "$(dirname "$0")/.." || exit 2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Everything a build decides, without timings: per-seed lines (events, hash),
# scenario verdicts, model-checker counts, and each command's exit status
# (so that a command failing alike in both builds is still noticed).
results() {
  local bin=$1
  "$bin" sim --seed 1 --seeds "$seeds" 2>&1 | grep -E ' hash |^error'
  echo "exit ${PIPESTATUS[0]}"
  for world in sim/configs/*.json scenarios/requirements/*.json scenarios/adversarial/*.json; do
    echo "# $world"
    "$bin" sim --seed 1 --seeds "$seeds" --config "$world" 2>&1 | grep -E ' hash |^error'
    echo "exit ${PIPESTATUS[0]}"
  done
  "$bin" run scenarios/requirements scenarios/adversarial 2>&1 | grep -v ' in [0-9.]* s' |
    sed -E 's/ +[0-9]+\.[0-9]+s +/  /'
  echo "exit ${PIPESTATUS[0]}"
  "$bin" check --processes 2 --threads 2 --requests-per-thread 1 --quiet 2>&1 |
    grep -oE '^(verified|bounded|VIOLATION)[^:]*: [0-9]+ states generated, [0-9]+ distinct, [0-9]+ transitions, [0-9]+ terminal, depth [0-9]+'
  echo "exit ${PIPESTATUS[0]}"
}

results "$a" >"$work/a.txt"
results "$b" >"$work/b.txt"
lines=$(wc -l <"$work/a.txt")
if [ "$lines" -lt 100 ] || grep -qv '^exit 0$' <(grep '^exit' "$work/a.txt"); then
  echo "FAIL: $a did not run cleanly ($lines result lines, a non-zero exit status or too few lines):" >&2
  grep -n -B3 '^exit [1-9]' "$work/a.txt" | head -20 >&2
  exit 1
fi
if ! diff -u "$work/a.txt" "$work/b.txt" >"$work/diff.txt"; then
  echo "FAIL: $a and $b give different results:" >&2
  head -40 "$work/diff.txt" >&2
  exit 1
fi
echo "PASS: $a and $b give the same $lines result lines (hashes, verdicts, state counts, exit statuses)"
