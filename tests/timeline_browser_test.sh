#!/usr/bin/env bash
# The timeline page in a real browser: replays a planted-bug scenario with
# --html, loads the page in headless Chromium with the network switched off,
# reads the page's structure from the DOM after its scripts ran (lanes, bars,
# messages, the violation and the events that led to it) and saves a
# screenshot. Fails (does not skip) when Chromium is missing: tools/deps.sh
# installs it.
# Also: fuzz and run --timelines write their pages.
# Usage: timeline_browser_test.sh LATCHKEY_MUTANTS SOURCE_DIR SCREENSHOT.png
set -u
mutants=$1
src=$2
screenshot=$3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failures=0
fail() {
  echo "FAIL: $*"
  failures=$((failures + 1))
}

# fuzz writes a timeline next to the failing case and its shrunk copy; run
# --timelines writes one per scenario that ended in a violation.
"$mutants" fuzz --mutant lifo_queue --scenario "$src/scenarios/mutants/lifo_queue.json" --seeds 5 \
  --out "$work/fuzz" --shrink-budget 10 --quiet >"$work/fuzz.out" 2>&1
for f in lifo_queue-seed1.json lifo_queue-seed1.html lifo_queue-seed1.min.json lifo_queue-seed1.min.html; do
  [[ -s "$work/fuzz/$f" ]] || fail "fuzz did not write $f"
done
"$mutants" run "$src/scenarios/mutants/lifo_queue.json" --timelines "$work/timelines" >"$work/run.out" 2>&1
[[ -s "$work/timelines/lifo_queue.html" ]] || fail "run --timelines did not write lifo_queue.html"

browser=$(command -v chromium || command -v chromium-browser || true)
if [[ -z "$browser" ]]; then
  echo "FAIL: chromium is not installed (tools/deps.sh installs the Debian package chromium)"
  exit 1
fi

# A store crash makes the recovered store hand out token 1 again: the
# checker stops the run with token_validity.
scenario="$src/scenarios/mutants/token_reset_on_recover.json"
if ! "$mutants" replay "$scenario" --seed 2 --html "$work/run.html" --trace "$work/run.jsonl" \
  >"$work/replay.out" 2>&1; then
  cat "$work/replay.out"
  fail "replay --html exited non-zero"
fi
[[ -s "$work/run.html" ]] || { echo "FAIL: no page written"; exit 1; }
tail -1 "$work/run.jsonl" | grep -q '"ev":"violation"' || fail "the trace does not end with the violation"
# Self-contained: nothing to fetch.
if grep -Eq 'https?://|<script[^>]* src=|<link ' "$work/run.html"; then
  fail "the page refers to something outside itself"
fi

# Headless, no sandbox (CI runs as root), nothing from the network, a fresh
# profile; scripts run before --dump-dom prints the page.
flags=(--headless --no-sandbox --disable-gpu --disable-dev-shm-usage
  --disable-background-networking --disable-component-update --disable-sync
  --disable-default-apps --disable-extensions --disable-breakpad
  --no-first-run --no-default-browser-check --metrics-recording-only
  --user-data-dir="$work/profile" --window-size=1400,1000 --hide-scrollbars)
timeout 120 "$browser" "${flags[@]}" --dump-dom "file://$work/run.html" >"$work/dom.html" \
  2>"$work/chromium.err"
if ! grep -q 'data-ready="yes"' "$work/dom.html"; then
  tail -20 "$work/chromium.err"
  echo "FAIL: the page's script did not finish (no data-ready in the DOM)"
  exit 1
fi

summary=$(grep -o '<div id="summary"[^>]*>' "$work/dom.html")
attr() { echo "$summary" | sed -n "s/.* data-$1=\"\([^\"]*\)\".*/\1/p"; }
echo "page summary: $summary"
# One store, four processes with two threads each.
[[ "$(attr lanes)" == 13 ]] || fail "lanes: $(attr lanes), expected 13"
[[ "$(attr stores)" == 1 ]] || fail "stores: $(attr stores), expected 1"
[[ "$(attr processes)" == 4 ]] || fail "processes: $(attr processes), expected 4"
[[ "$(attr threads)" == 8 ]] || fail "threads: $(attr threads), expected 8"
[[ "$(attr bars)" -gt 50 ]] || fail "bars: $(attr bars), expected more than 50"
[[ "$(attr arrows)" -gt 50 ]] || fail "messages: $(attr arrows), expected more than 50"
[[ "$(attr violation)" == token_validity ]] || fail "violation: '$(attr violation)'"
for lane in s0 p1 p1.t0 p4 p4.t1; do
  grep -q "<li [^>]*>$lane</li>" "$work/dom.html" || fail "no lane $lane in the lane list"
done
grep -q '<div id="violation" data-invariant="token_validity"' "$work/dom.html" ||
  fail "no violation panel"
grep -q 'id="violation-message">store s0 granted session' "$work/dom.html" ||
  fail "the violation panel lacks the invariant's message"
events=$(grep -o '<li value="[0-9]*" data-ev=' "$work/dom.html" | wc -l)
[[ "$events" -eq 50 ]] || fail "the violation lists $events events that led to it, expected 50"

# Hovering: the page's own hit-testing finds a tenure bar and a message at
# their drawn positions, and their details include the trace event.
# (A script after the page's end still runs, inside its body.)
cat "$work/run.html" - >"$work/probe.html" <<'PROBE'
<script>
{  // a block: the page's own top-level names stay out of the way
const tl = window.timeline, B = tl.model.bars, A = tl.model.arrows, out = {};
tl.fit();  // the whole run in view
document.getElementById('messages').click();  // messages off: bars are not covered
let bar = -1;  // the longest tenure as a process saw it
B.kind.forEach((k, i) => { if (k === 1 && (bar < 0 || B.t1[i] - B.t0[i] > B.t1[bar] - B.t0[bar])) bar = i; });
const l = tl.lanes[B.lane[bar]];
const hb = tl.hit((Math.max(tl.X(B.t0[bar]), 70) + Math.min(tl.X(B.t1[bar]), 1300)) / 2,
                  l.y + 3 + B.slot[bar] * l.row + l.row / 2);
out.bar = hb && hb.type === 'bar' ? tl.describe(hb) : 'none';
document.getElementById('messages').click();
const a = A.fate.indexOf(0), lf = tl.lanes[A.from[a]], lt = tl.lanes[A.to[a]];
const ha = tl.hit((tl.X(A.t0[a]) + tl.X(A.t1[a])) / 2, (lf.y + lf.h / 2 + lt.y + lt.h / 2) / 2);
out.arrow = ha && ha.type === 'arrow' ? tl.describe(ha) : 'none';
const d = document.createElement('pre');
d.id = 'probe';
d.textContent = JSON.stringify(out);
document.body.appendChild(d);
}
</script>
PROBE
timeout 120 "$browser" "${flags[@]}" --dump-dom "file://$work/probe.html" >"$work/probe.dom" \
  2>>"$work/chromium.err"
grep -q '"bar":"&lt;b&gt;process tenure on p' "$work/probe.dom" ||
  fail "hovering a tenure bar shows no details: $(grep -o '<pre id="probe">.\{0,200\}' "$work/probe.dom")"
grep -q '"arrow":"&lt;b&gt;[A-Za-z]* [ps][0-9]* \\u2192\|"arrow":"&lt;b&gt;[A-Za-z]* [ps][0-9]* →' "$work/probe.dom" ||
  fail "hovering a message shows no details: $(grep -o '"arrow":.\{0,200\}' "$work/probe.dom")"
grep -q 'event #[0-9]*:' "$work/probe.dom" || fail "the details lack the trace event"

timeout 120 "$browser" "${flags[@]}" --screenshot="$work/shot.png" "file://$work/run.html" \
  >/dev/null 2>>"$work/chromium.err"
if [[ -s "$work/shot.png" ]] && [[ "$(head -c 8 "$work/shot.png" | od -An -tx1 | tr -d ' \n')" == 89504e470d0a1a0a ]]; then
  cp "$work/shot.png" "$screenshot"
  echo "screenshot: $screenshot"
else
  fail "no screenshot"
fi

if [[ $failures -ne 0 ]]; then
  echo "$failures failure(s)"
  exit 1
fi
echo "timeline browser test: ok"
