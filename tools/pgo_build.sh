#!/usr/bin/env bash
# Profile-guided build of `latchkey` and `bench/sim_bench` (GCC -fprofile-use):
# the simulator about 8% faster than the default build, 11% with the
# checker on (bench/RESULTS.md). For long fuzz campaigns and for the
# simulator benchmark; the results are the same as the default build's
# (CI checks it with tests/same_results_check.sh).
#
#   tools/pgo_build.sh [DIR]        (default: build-pgo)
#   then: DIR/latchkey fuzz ...,  DIR/bench/sim_bench --runs 5
#
# Stage 1 builds an instrumented `latchkey` in DIR/gen and runs what users
# run with it: the bundled scenarios, a fuzz campaign over every world in
# sim/configs and default-world simulations. The benchmark's own workload is
# left out of the training on purpose, so that its figure is not fitted to
# it. Stage 2 builds DIR with the counts left in DIR/profile.
set -euo pipefail
cd "$(dirname "$0")/.."

out=$(realpath -m "${1:-build-pgo}")
gen="$out/gen"
profile="$out/profile"
jobs=$(nproc 2>/dev/null || echo 2)
# Warnings are the default build's job: another inlining may raise others.
common=(-G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLATCHKEY_MUTANTS=OFF -DLATCHKEY_WERROR=OFF)

tools/deps.sh
rm -rf "$gen" "$profile"
mkdir -p "$profile"

echo "== stage 1: instrumented build ($gen)"
# -fprofile-prefix-path names each object's counts by its path inside the
# build directory, so that stage 2, built elsewhere, finds them.
cmake -S . -B "$gen" "${common[@]}" \
  -DCMAKE_CXX_FLAGS="-fprofile-generate=$profile -fprofile-update=single -fprofile-prefix-path=$gen" \
  >/dev/null
cmake --build "$gen" --target latchkey -j "$jobs" >/dev/null

echo "== training: scenarios, fuzz campaigns over sim/configs, default-world runs, a model check"
# One fuzz job, so that the counters (updated without atomics) are nearly
# exact. A step that fails (a violation, a mismatched scenario) stops the
# build and shows its output.
log="$gen/training.log"
train() {
  if ! "$@" >>"$log" 2>&1; then
    echo "error: training step failed: $*" >&2
    tail -20 "$log" >&2
    exit 1
  fi
}
train "$gen/latchkey" run scenarios/requirements scenarios/adversarial
for world in sim/configs/*.json; do
  train "$gen/latchkey" fuzz --scenario "$world" --seeds 300 --jobs 1 --quiet \
    --out "$gen/fuzz-failures"
done
train "$gen/latchkey" sim --seed 1 --seeds 200
train "$gen/latchkey" check --processes 2 --threads 2 --requests-per-thread 1 --quiet

echo "== stage 2: optimised build ($out)"
cmake -S . -B "$out" "${common[@]}" \
  -DCMAKE_CXX_FLAGS="-fprofile-use=$profile -fprofile-partial-training -Wno-missing-profile -fprofile-prefix-path=$out" \
  >/dev/null
# Clean first: ninja does not know the objects depend on the profile.
cmake --build "$out" --target latchkey sim_bench -j "$jobs" --clean-first >/dev/null
echo "built $out/latchkey and $out/bench/sim_bench"
