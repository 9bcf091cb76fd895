#!/usr/bin/env bash
# Latchkey against the Redis peer on the shared "session requests" workload
# (../shared/WORKLOAD.md), side by side on this machine: for each
# configuration below, alternately a Latchkey run (bench/session_bench through
# the client library against a fresh latchkeyd) and a Redis run (the peer's
# sessbench against a fresh redis-server), RUNS times each; then the medians
# and the Latchkey/Redis ratios against the targets of issue 8. Each round
# also runs bench/rt_floor, the machine's ceiling for this workload's shape,
# and the summary says how far each target is from it.
#
#   bench/vs_redis.sh [BUILD_DIR]          (default: build)
#   environment: RUNS (default 2), DURATION (seconds, default 10),
#                PEER (default ../shared/peers/redis from the repo root),
#                OUT (JSON lines, default bench/vs_redis-<date>.jsonl)
#
# The Redis peer is used where it lives and is never copied into this repo;
# its ./setup.sh (root, apt-get) installs redis-server and builds sessbench.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD="${1:-build}"
RUNS="${RUNS:-2}"
DURATION="${DURATION:-10}"
PEER="${PEER:-$(cd .. && pwd)/shared/peers/redis}"
OUT="${OUT:-bench/vs_redis-$(date +%Y%m%d-%H%M%S).jsonl}"
LK_PORT=7499
REDIS_PORT=6399

for tool in "$BUILD/latchkeyd" "$BUILD/bench/session_bench" "$BUILD/bench/rt_floor"; do
  if [ ! -x "$tool" ]; then
    echo "error: $tool is missing; build first: cmake --build $BUILD" >&2
    exit 2
  fi
done
if [ ! -x "$PEER/sessbench" ] || ! command -v redis-server >/dev/null; then
  echo "error: the Redis peer is not set up; run $PEER/setup.sh (as root) first" >&2
  exit 2
fi

work=$(mktemp -d)
server_pid=""
stop_server() {
  if [ -n "$server_pid" ]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
  fi
}
trap 'stop_server; rm -rf "$work"' EXIT
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$work/secret"

run_latchkey() {  # $1 fsync policy, then session_bench options
  local fsync=$1
  shift
  rm -rf "$work/lk"
  "$BUILD/latchkeyd" --listen 127.0.0.1:$LK_PORT --data-dir "$work/lk" \
    --secret-file "$work/secret" --fsync "$fsync" 2>"$work/latchkeyd.log" &
  server_pid=$!
  for _ in $(seq 100); do
    if grep -q "event=listening" "$work/latchkeyd.log" 2>/dev/null; then break; fi
    sleep 0.05
  done
  "$BUILD/bench/session_bench" --store 127.0.0.1:$LK_PORT --secret-file "$work/secret" \
    --duration "$DURATION" --persistence "fsync-$fsync" "$@" | tee -a "$OUT"
  stop_server
}

run_redis() {  # $1 none|always, $2 variant, then sessbench options
  local persistence=$1 variant=$2
  shift 2
  local persist=(--save "" --appendonly no)
  [ "$persistence" = always ] && persist=(--save "" --appendonly yes --appendfsync always)
  rm -rf "$work/redis" && mkdir -p "$work/redis"
  redis-server --port $REDIS_PORT --bind 127.0.0.1 --dir "$work/redis" --logfile redis.log \
    --daemonize no "${persist[@]}" &
  server_pid=$!
  for _ in $(seq 100); do
    redis-cli -p $REDIS_PORT ping >/dev/null 2>&1 && break
    sleep 0.05
  done
  "$PEER/sessbench" --port $REDIS_PORT --variant "$variant" --duration "$DURATION" \
    --persistence "$persistence" "$@" | tee -a "$OUT"
  stop_server
}

echo "# $(nproc) cores, $(uname -r); load generators share the cores with the servers" >&2
for run in $(seq "$RUNS"); do
  echo "# round $run of $RUNS" >&2
  run_latchkey never --affinity 0.9 --dist uniform
  run_redis none lock-spin --affinity 0.9 --dist uniform
  run_latchkey never --affinity 0.9 --dist zipf --zipf-s 0.99
  run_redis none lock-spin --affinity 0.9 --dist zipf --zipf-s 0.99
  run_latchkey never --affinity 0 --dist uniform
  run_redis none lock-spin --affinity 0 --dist uniform
  run_latchkey always --affinity 0.9 --dist uniform
  run_redis always lua-1rt --affinity 0.9 --dist uniform
  # The ceiling: the same 4x8 closed-loop threads, one round trip each to a
  # server that does nothing.
  "$BUILD/bench/rt_floor" --duration "$DURATION" | tee -a "$OUT"
done

python3 - "$OUT" <<'EOF'
import json, statistics, sys
lines = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
rows = [r for r in lines if r["peer"] != "floor"]
def med(peer, variant, persistence, affinity, dist, key):
    xs = [r[key] for r in rows if r["peer"] == peer and r["variant"] == variant
          and r["persistence"] == persistence and abs(r["affinity"] - affinity) < 1e-9
          and r["dist"] == dist]
    return statistics.median(xs) if xs else float("nan"), len(xs)
cases = [
    ("affinity 0.9 uniform", 0.9, "uniform", "fsync-never", "lock-spin", "none", 3, 1 / 3),
    ("affinity 0.9 zipf 0.99", 0.9, "zipf", "fsync-never", "lock-spin", "none", 3, 1 / 5),
    ("affinity 0 uniform", 0.0, "uniform", "fsync-never", "lock-spin", "none", 1, None),
    ("durable, affinity 0.9 uniform", 0.9, "uniform", "fsync-always", "lua-1rt", "always", 2, None),
]
targets = []
print("| workload | Latchkey rps | Redis variant | Redis rps | rps ratio (target) | Latchkey p99 us | Redis p99 us | p99 ratio (target) | Latchkey p99 home / other us | runs | lost updates |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for name, aff, dist, lk_p, variant, r_p, rps_target, p99_target in cases:
    lk_rps, n1 = med("latchkey", "latchkey", lk_p, aff, dist, "rps")
    rd_rps, n2 = med("redis", variant, r_p, aff, dist, "rps")
    lk_p99, _ = med("latchkey", "latchkey", lk_p, aff, dist, "p99_us")
    rd_p99, _ = med("redis", variant, r_p, aff, dist, "p99_us")
    home_p99, _ = med("latchkey", "latchkey", lk_p, aff, dist, "p99_home_us")
    other_p99, _ = med("latchkey", "latchkey", lk_p, aff, dist, "p99_other_us")
    lost = max([r["lost_updates"] for r in rows if abs(r["affinity"] - aff) < 1e-9
                and r["dist"] == dist] or [0])
    ratio = lk_rps / rd_rps if rd_rps else float("nan")
    p99r = lk_p99 / rd_p99 if rd_p99 else float("nan")
    t1 = f">= {rps_target}x {'met' if ratio >= rps_target else 'NOT met'}"
    t2 = (f"<= {p99_target:.2f} {'met' if p99r <= p99_target else 'NOT met'}" if p99_target
          else "-")
    print(f"| {name} | {lk_rps:,.0f} | {variant} ({r_p}) | {rd_rps:,.0f} | {ratio:.2f} ({t1}) "
          f"| {lk_p99:,.0f} | {rd_p99:,.0f} | {p99r:.2f} ({t2}) | {home_p99:,.0f} / {other_p99:,.0f} "
          f"| {n1}+{n2} | {lost} |")
    targets.append((name, rps_target * rd_rps, p99_target * rd_p99 if p99_target else None))
floor = [r for r in lines if r["peer"] == "floor"]
if floor:
    f_rps = statistics.median(r["rps"] for r in floor)
    f_p99 = statistics.median(r["p99_us"] for r in floor)
    print()
    print(f"Machine ceiling (bench/rt_floor, {len(floor)} runs): {f_rps:,.0f} requests/s, "
          f"p99 {f_p99:,.0f} us, for 4x8 threads making one round trip each to a "
          "do-nothing server.")
    for name, need_rps, need_p99 in targets:
        line = f"- {name}: the target needs {need_rps:,.0f} requests/s ({need_rps / f_rps:.2f} of the ceiling)"
        if need_p99:
            line += f" and a p99 of at most {need_p99:,.0f} us ({need_p99 / f_p99:.2f} of the ceiling's)"
        print(line)
EOF
echo "# JSON lines: $OUT" >&2
