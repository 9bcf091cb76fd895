#!/usr/bin/env bash
# The main job: builds Latchkey, then
#   1. the checked demonstration of the core,
#   2. every bundled scenario (scenarios/requirements, scenarios/adversarial)
#      on the real core, each compared with its expected outcome,
#   3. every planted bug (scenarios/mutants) on the mutant core: the checker
#      must catch each one as its scenario says,
#   4. the bounded model checker over two small worlds, exhaustively,
#   5. a short fuzz campaign per world in sim/configs (swarm faults, the
#      checker on every event, every clean seed run twice to compare trace
#      hashes); a failing seed is written as a scenario and shrunk.
# and prints a summary to read at a glance. Installs missing Debian packages
# first. LATCHKEY_SEEDS (default 2000) sets the seeds per fuzz campaign.
set -uo pipefail
cd "$(dirname "$0")"
tools/deps.sh || exit 1
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null || exit 1
cmake --build build --target latchkey latchkey-mutants -j "$(nproc 2>/dev/null || echo 2)" \
  >/dev/null || exit 1

seeds=${LATCHKEY_SEEDS:-2000}
jobs=$(nproc 2>/dev/null || echo 2)
summary=()
status=0
# step NAME COMMAND...: runs it, shows its output, records a summary line.
step() {
  local name=$1
  shift
  echo
  echo "== $name: $* =="
  local out rc
  out=$("$@" 2>&1)
  rc=$?
  echo "$out"
  local last
  last=$(echo "$out" | grep -E 'scenarios in|^fuzz |PASS: |FAIL: |^verified|^bounded|^VIOLATION' | sed 's/^ *//' | cut -c1-110 | tail -1)
  if [ "$rc" -eq 0 ]; then
    summary+=("$(printf '  PASS  %-42s %s' "$name" "$last")")
  else
    summary+=("$(printf '  FAIL  %-42s %s (exit %d)' "$name" "$last" "$rc")")
    status=1
  fi
}

step "demo" ./build/latchkey demo
step "scenarios (real core)" ./build/latchkey run scenarios/requirements scenarios/adversarial
step "planted bugs (mutant core)" ./build/latchkey-mutants run scenarios/mutants
step "model check 2 processes x 2 threads" ./build/latchkey check --processes 2 --threads 2 \
  --requests-per-thread 1 --quiet
step "model check with crash, loss, reordering" ./build/latchkey check --processes 2 --threads 1 \
  --requests-per-thread 1 --faults crash,loss,reorder --quiet
step "model check pipelined release, dup+reorder" ./build/latchkey check --processes 2 --threads 1 \
  --requests-per-thread 2 --keep-locks --release-when-contended --faults dup,reorder --quiet
for world in sim/configs/swarm.json sim/configs/contended.json sim/configs/two_stores.json; do
  step "fuzz $(basename "$world" .json), $seeds seeds" ./build/latchkey fuzz --scenario "$world" \
    --seeds "$seeds" --jobs "$jobs" --check-determinism --quiet --out fuzz-failures
done

echo
echo "== main job summary =="
printf '%s\n' "${summary[@]}"
if [ "$status" -eq 0 ]; then
  echo "main job: PASS"
else
  echo "main job: FAIL (the reports above name each failing scenario or seed and how to replay it;"
  echo "          fuzz failures are saved, shrunk, under fuzz-failures/)"
fi
exit "$status"
