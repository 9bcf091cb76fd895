#!/usr/bin/env bash
# Profile-guided build of `latchkey` and `bench/sim_bench` (GCC -fprofile-use):
# the simulator, the checker and the model checker about 9% faster than the
# default build (bench/RESULTS.md). For long fuzz campaigns and for the
# simulator benchmark; the results are the same as the default build's.
#
#   tools/pgo_build.sh [DIR]        (default: build-pgo)
#   then: DIR/latchkey fuzz ...,  DIR/bench/sim_bench --runs 5
#
# Stage 1 builds an instrumented `latchkey` in DIR/gen and runs what users
# run with it: the bundled scenarios, a fuzz campaign over every world in
# sim/configs and default-world simulations. The benchmark's own workload is
# left out of the training on purpose, so that its figure is not fitted to
# it. Stage 2 builds DIR with the counts that left in DIR/profile.
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

echo "== training: scenarios, fuzz campaigns over sim/configs, default-world runs"
# One job: the counters are updated without atomics.
"$gen/latchkey" run scenarios/requirements scenarios/adversarial >/dev/null
for world in sim/configs/*.json; do
  "$gen/latchkey" fuzz --scenario "$world" --seeds 300 --jobs 1 --quiet \
    --out "$gen/fuzz-failures" >/dev/null
done
"$gen/latchkey" sim --seed 1 --seeds 200 >/dev/null
"$gen/latchkey" check --processes 2 --threads 2 --requests-per-thread 1 --quiet >/dev/null

echo "== stage 2: optimised build ($out)"
cmake -S . -B "$out" "${common[@]}" \
  -DCMAKE_CXX_FLAGS="-fprofile-use=$profile -fprofile-partial-training -Wno-missing-profile -fprofile-prefix-path=$out" \
  >/dev/null
cmake --build "$out" --target latchkey sim_bench -j "$jobs" >/dev/null
echo "built $out/latchkey and $out/bench/sim_bench"
