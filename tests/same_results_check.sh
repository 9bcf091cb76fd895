#!/usr/bin/env bash
# Two builds of `latchkey` must give the same results: the same trace hash
# and event count for every seed of every world, the same verdicts on the
# bundled scenarios, the same model-checker state counts. Run by CI on the
# default and the profile-guided build (tools/pgo_build.sh).
#   tests/same_results_check.sh A/latchkey B/latchkey [SEEDS]
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
if [ $# -lt 2 ]; then
  echo "usage: tests/same_results_check.sh LATCHKEY_A LATCHKEY_B [SEEDS]" >&2
  exit 2
fi
a=$1 b=$2 seeds=${3:-50}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Everything a build decides, without timings: per-seed lines (events, hash),
# scenario verdicts, model-checker counts.
results() {
  local bin=$1
  "$bin" sim --seed 1 --seeds "$seeds" | grep ' hash '
  for world in sim/configs/*.json scenarios/requirements/*.json scenarios/adversarial/*.json; do
    echo "# $world"
    "$bin" sim --seed 1 --seeds "$seeds" --config "$world" | grep ' hash '
  done
  "$bin" run scenarios/requirements scenarios/adversarial | grep -v ' in [0-9.]* s' |
    sed -E 's/ [0-9]+\.[0-9]+s / /'
  "$bin" check --processes 2 --threads 2 --requests-per-thread 1 --quiet |
    grep -o 'verified ([a-z]*): [0-9]* states generated, [0-9]* distinct'
}

results "$a" >"$work/a.txt" 2>&1
results "$b" >"$work/b.txt" 2>&1
lines=$(wc -l <"$work/a.txt")
if [ "$lines" -lt 100 ]; then
  echo "FAIL: only $lines result lines from $a; see below" >&2
  head -20 "$work/a.txt" >&2
  exit 1
fi
if ! diff -u "$work/a.txt" "$work/b.txt" >"$work/diff.txt"; then
  echo "FAIL: $a and $b give different results:" >&2
  head -40 "$work/diff.txt" >&2
  exit 1
fi
echo "PASS: $a and $b give the same $lines result lines (hashes, verdicts, state counts)"
