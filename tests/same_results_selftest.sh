#!/usr/bin/env bash
# same_results_check.sh must fail on two builds whose results differ. The
# second "build" here is the same binary with one thing changed, in turn:
#   - the first trace hash it prints (seed numbers and event counts stay);
#   - the exit status of its model check (its output stays).
#   tests/same_results_selftest.sh PATH/TO/latchkey
set -uo pipefail
real=$(realpath "$1")
cd "$(dirname "$0")/.." || exit 2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cat >"$work/other_hash" <<WRAPPER
#!/usr/bin/env bash
set -o pipefail
"$real" "\$@" | sed -E '0,/hash [0-9a-f]{16}/s//hash 0000000000000000/'
WRAPPER
cat >"$work/check_fails" <<WRAPPER
#!/usr/bin/env bash
"$real" "\$@"
status=\$?
[ "\$1" = check ] && exit 1
exit \$status
WRAPPER
chmod +x "$work/other_hash" "$work/check_fails"

for variant in other_hash check_fails; do
  if tests/same_results_check.sh "$real" "$work/$variant" 3 >"$work/out.txt" 2>&1; then
    echo "FAIL: the check passed a build with different results ($variant)" >&2
    cat "$work/out.txt" >&2
    exit 1
  fi
  if ! grep -q "give different results" "$work/out.txt"; then
    echo "FAIL: the check failed for another reason ($variant):" >&2
    cat "$work/out.txt" >&2
    exit 1
  fi
done
echo "PASS: the check tells apart a build with another trace hash and one with another exit status"
