#!/usr/bin/env bash
# same_results_check.sh must fail on two builds that differ: here the second
# "build" runs every simulation one seed later.
#   tests/same_results_selftest.sh PATH/TO/latchkey
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
real=$(realpath "$1")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cat >"$work/latchkey" <<WRAPPER
#!/usr/bin/env bash
args=()
shift_next=0
for a in "\$@"; do
  if [ "\$shift_next" = 1 ]; then a=\$((a + 1)); shift_next=0; fi
  [ "\$a" = --seed ] && shift_next=1
  args+=("\$a")
done
exec "$real" "\${args[@]}"
WRAPPER
chmod +x "$work/latchkey"
if tests/same_results_check.sh "$real" "$work/latchkey" 5 >"$work/out.txt" 2>&1; then
  echo "FAIL: the check passed two builds with different results" >&2
  cat "$work/out.txt" >&2
  exit 1
fi
grep -q "give different results" "$work/out.txt" || { cat "$work/out.txt" >&2; exit 1; }
echo "PASS: the check tells two different builds apart"
