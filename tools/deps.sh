#!/usr/bin/env bash
# Installs the Debian packages Latchkey needs, if any are missing.
# Usage: tools/deps.sh [extra-package ...]
# Needs root (or sudo) only when something is missing.
set -euo pipefail

packages=(
  g++ cmake ninja-build pkg-config  # toolchain
  libgtest-dev libgmock-dev         # GoogleTest: unit tests
  librapidcheck-dev                 # RapidCheck: property and stateful tests
  libcli11-dev                      # CLI11: every command line
  nlohmann-json3-dev                # nlohmann_json: scenarios, traces, configs
  libasio-dev                       # standalone Asio: the latchkeyd event loop
  libssl-dev                        # OpenSSL: HMAC authentication (TLS later)
  zlib1g-dev                        # zlib: CRC32 of write-ahead log records
  libmimalloc-dev                   # mimalloc: a faster malloc for the simulator
  clang-format                      # the format check
  python3-jsonschema                # checks scenarios against scenarios/scenario.schema.json
  chromium                          # headless, for the HTML timeline's browser test (a big package)
  "$@"
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
  echo "error: missing packages (${missing[*]}) and no apt-get: Latchkey's set-up expects Debian 12." >&2
  exit 1
fi
if [ "$(id -u)" -eq 0 ]; then
  sudo=()
elif command -v sudo >/dev/null 2>&1; then
  sudo=(sudo)
else
  echo "error: missing packages (${missing[*]}); run as root or install sudo." >&2
  exit 1
fi
echo "installing Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
if ! "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1; then
  # The package lists may be stale or absent on a fresh machine.
  "${sudo[@]}" apt-get update -qq
  if ! "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"; then
    echo "error: could not install: ${missing[*]}" >&2
    exit 1
  fi
fi
