#!/usr/bin/env bash
# The main job: builds Latchkey and runs its checked demonstration.
# (Once the simulator lands: the bundled scenarios and a short fuzz campaign.)
# Installs missing Debian packages first.
set -euo pipefail
cd "$(dirname "$0")"
tools/deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build --target latchkey -j "$(nproc 2>/dev/null || echo 2)" >/dev/null
./build/latchkey demo
