#!/usr/bin/env bash
# The scenario commands end to end: exit codes (0 pass, 1 violation or
# mismatch, 2 bad input), error messages that name the file and JSON path,
# fuzz writing a failing case that replays to the same trace hash, shrink,
# and the JSON Schema accepting what the tools write and refusing a typo.
# Usage: cli_scenario_test.sh LATCHKEY LATCHKEY_MUTANTS SOURCE_DIR
set -u
latchkey=$1
mutants=$2
src=$3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failures=0

# expect_code CODE DESCRIPTION COMMAND...: runs it, keeps its output in $out.
expect_code() {
  local want=$1 what=$2
  shift 2
  out=$("$@" 2>&1)
  local got=$?
  if [[ $got -ne $want ]]; then
    echo "FAIL: $what: exit $got, expected $want"
    echo "$out" | tail -20
    failures=$((failures + 1))
  else
    echo "ok: $what (exit $got)"
  fi
}
# expect_text TEXT DESCRIPTION: the last command's output contains TEXT.
expect_text() {
  if [[ "$out" != *"$1"* ]]; then
    echo "FAIL: $2: output lacks: $1"
    echo "$out" | tail -20
    failures=$((failures + 1))
  fi
}

cat >"$work/pass.json" <<'EOF'
{"description": "a small clean world", "seeds": {"first": 1, "count": 2},
 "workload": {"requests_per_thread": 3},
 "timing": {"fault_phase_us": 100000, "quiet_phase_us": 400000},
 "expect": {"outcome": "pass", "at_least": {"requests_completed": 1}}}
EOF
cat >"$work/mismatch.json" <<'EOF'
{"description": "expects recalls that never come", "seed": 1,
 "topology": {"servers": 1, "processes_per_server": 1},
 "workload": {"requests_per_thread": 3},
 "timing": {"fault_phase_us": 100000, "quiet_phase_us": 400000},
 "expect": {"outcome": "pass", "at_least": {"recalls": 5}}}
EOF
printf '{"description": "typo", "network": {"latency_min_us": -5}, "expect": {"outcome": "pass"}}' \
  >"$work/negative.json"
printf '{"description": "x", "expect": {"outcome": "pass"}, }' >"$work/malformed.json"
printf '{"description": "no expectation"}' >"$work/noexpect.json"

expect_code 0 "run: a passing scenario" "$latchkey" run "$work/pass.json"
expect_text "1 as expected, 0 mismatched" "run: summary line"
expect_code 1 "run: a mismatch" "$latchkey" run "$work/pass.json" "$work/mismatch.json"
expect_text "recalls was 0, expected at least 5" "run: says why it mismatched"
expect_code 2 "run: a negative latency" "$latchkey" run "$work/negative.json"
expect_text "$work/negative.json: /network/latency_min_us: expected microseconds in [0," \
  "run: names the file and the JSON path"
expect_text "found number -5" "run: says what it found"
expect_code 2 "run: malformed JSON" "$latchkey" run "$work/malformed.json"
expect_text "$work/malformed.json: not valid JSON" "run: malformed JSON named"
expect_code 2 "run: no expectation" "$latchkey" run "$work/noexpect.json"
expect_text "/expect: missing" "run: a scenario must state its outcome"
expect_code 2 "run: a missing file" "$latchkey" run "$work/nope.json"
expect_code 2 "run: an unknown option" "$latchkey" run --frobnicate "$work/pass.json"
# Bad input anywhere wins over a mismatch, but the good files still run.
expect_code 2 "run: bad input among good files" "$latchkey" run "$work/pass.json" "$work/negative.json"
expect_text "1 as expected, 0 mismatched, 0 skipped, 1 bad input" "run: the rest still ran"
expect_code 0 "run: a planted bug is skipped by the real core" \
  "$latchkey" run "$src/scenarios/mutants/lifo_queue.json"
expect_text "run it with latchkey-mutants" "run: says where a planted bug runs"

# replay: the same run, the same trace hash, a trace file.
expect_code 0 "replay" "$latchkey" replay "$work/pass.json" --trace "$work/trace.jsonl"
first_hash=$(echo "$out" | sed -n 's/.*trace hash \([0-9a-f]\{16\}\).*/\1/p' | tail -1)
[[ -s "$work/trace.jsonl" ]] || { echo "FAIL: replay wrote no trace"; failures=$((failures + 1)); }
expect_code 0 "replay again" "$latchkey" replay "$work/pass.json"
expect_text "trace hash $first_hash" "replay: same trace hash as before"
expect_code 2 "replay: bad input" "$latchkey" replay "$work/negative.json"

# fuzz: clean seeds pass; a planted bug is found, written, shrunk, replayable.
expect_code 0 "fuzz: clean seeds" "$latchkey" fuzz --seeds 30 --jobs 2 --swarm --out "$work/f0"
expect_text "0 violations" "fuzz: summary"
expect_code 1 "fuzz: a planted bug" "$mutants" fuzz --seeds 40 --jobs 2 --mutant lifo_queue \
  --scenario "$src/scenarios/mutants/lifo_queue.json" --out "$work/f1"
expect_text "VIOLATION queue_order" "fuzz: report"
expect_text "failing case written to $work/f1/lifo_queue-seed" "fuzz: wrote the case"
case_file=$(ls "$work"/f1/*-seed*.json | grep -v '\.min\.json' | head -1)
min_file=$(ls "$work"/f1/*.min.json | head -1)
expect_code 0 "replay the fuzz case (the violation is what it expects)" "$mutants" replay "$case_file"
expect_text "(as recorded)" "replay: fuzz case hashes as recorded"
expect_code 0 "replay the shrunk case" "$mutants" replay "$min_file"
expect_text "(as recorded)" "replay: shrunk case hashes as recorded"
expect_code 0 "run the shrunk case" "$mutants" run "$min_file"
expect_code 2 "fuzz: a planted bug needs the mutant build" "$latchkey" fuzz --seeds 2 --mutant lifo_queue
expect_code 2 "fuzz: bad base scenario" "$latchkey" fuzz --seeds 2 --scenario "$work/negative.json"

# shrink: a failing file shrinks (exit 1: it still fails); a passing one cannot.
expect_code 1 "shrink" "$mutants" shrink "$case_file" -o "$work/again.min.json"
expect_text "written to $work/again.min.json" "shrink: output file"
expect_code 2 "shrink: nothing fails" "$latchkey" shrink "$work/pass.json"
expect_text "nothing to shrink" "shrink: says why"

# The schema accepts what the tools write and refuses a typo.
if python3 -c 'import jsonschema' 2>/dev/null; then
  expect_code 0 "schema: accepts the tools' files" python3 "$src/tests/scenario_schema_check.py" \
    "$src/scenarios/scenario.schema.json" "$case_file" "$min_file" "$work/pass.json"
  printf '{"description": "x", "workload": {"sesions": 2}, "expect": {"outcome": "pass"}}' \
    >"$work/typo.json"
  expect_code 1 "schema: refuses a typo" python3 "$src/tests/scenario_schema_check.py" \
    "$src/scenarios/scenario.schema.json" "$work/typo.json"
  expect_text "sesions" "schema: names the field"
fi

# check: the model checker verifies a small world, finds a planted bug with
# its shortest path, and refuses bad input.
expect_code 0 "check: a small world verified" "$latchkey" check --processes 2 --threads 1 \
  --requests-per-thread 1 --faults crash --quiet
expect_text "verified (exhaustive)" "check: says it was exhaustive"
expect_code 1 "check: a planted bug" "$mutants" check --processes 2 --threads 2 \
  --requests-per-thread 1 --mutant no_progress_rule --quiet --out "$work/cex.json"
expect_text "VIOLATION liveness" "check: names the invariant"
[[ -s "$work/cex.json" ]] || { echo "FAIL: check wrote no counterexample"; failures=$((failures + 1)); }
expect_text "replayed in the simulator: the same violation (liveness)" "check: replays it"
# The counterexample is a scenario: replay reproduces it in the simulator, run
# accepts it, and a script that no longer fits is refused, naming the step.
expect_code 0 "replay: the counterexample" "$mutants" replay "$work/cex.json"
expect_text "observed violation liveness; trace hash" "replay: the same violation"
expect_text "(as recorded)" "replay: the recorded trace hash"
expect_code 0 "run: the counterexample" "$mutants" run "$work/cex.json"
python3 - "$work/cex.json" "$work/cex-edited.json" <<'PY'
import json, sys
case = json.load(open(sys.argv[1]))
step = next(i for i, s in enumerate(case["script"]) if s["step"] == "deliver")
case["script"][step]["message"]["session"] = 9
json.dump(case, open(sys.argv[2], "w"))
PY
expect_code 2 "replay: a script that does not fit" "$mutants" replay "$work/cex-edited.json"
expect_text "(deliver): no message in flight is" "replay: names the step"
if python3 -c 'import jsonschema' 2>/dev/null; then
  expect_code 0 "schema: accepts a counterexample" python3 "$src/tests/scenario_schema_check.py" \
    "$src/scenarios/scenario.schema.json" "$work/cex.json"
fi
expect_code 2 "check: an unknown fault" "$latchkey" check --faults meteor
expect_text "unknown fault \"meteor\"" "check: names the fault"
expect_code 2 "check: a planted bug needs the mutant build" "$latchkey" check --mutant lifo_queue
printf '{"processes": 2, "treads": 1}' >"$work/check.json"
expect_code 2 "check: a typo in the config file" "$latchkey" check --config "$work/check.json"
expect_text "/treads: unknown field" "check: names the field"

if [[ $failures -ne 0 ]]; then
  echo "$failures check(s) failed"
  exit 1
fi
echo "all scenario command checks passed"
