#!/usr/bin/env bash
# The example shop server (examples/shop_server.cc) end to end: one latchkeyd,
# two shop servers (process ids 1 and 2) serving the same users, so each
# user's session lock moves between the processes by recall. Checks that 20
# concurrent visits split across both servers lose no update, that the cart
# keeps every item added from either server, that both servers recalled, and
# that bad requests get a 4xx with a message and crash nothing.
# Usage: shop_example_test.sh BUILD_DIR
set -euo pipefail
build=$1
work=$(mktemp -d)
pids=()

cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

show_logs() {
  for log in "$work"/*.log; do
    echo "--- $(basename "$log")"
    tail -20 "$log"
  done
}

# wait_for_port FILE PID: the port a server wrote to FILE (first line).
wait_for_port() {
  local file=$1 pid=$2
  for _ in $(seq 100); do
    if [[ -s $file ]]; then
      head -n 1 "$file"
      return
    fi
    if ! kill -0 "$pid" 2>/dev/null; then break; fi
    sleep 0.1
  done
  echo "FAIL: no port in $file" >&2
  show_logs >&2
  exit 1
}

printf 'shop-example-secret-%s\n' "$RANDOM$RANDOM" >"$work/secret"
# --fsync never: durability is not what this test is about, speed is.
"$build/latchkeyd" --listen 127.0.0.1:0 --port-file "$work/store.port" --data-dir "$work/data" \
  --secret-file "$work/secret" --fsync never 2>"$work/latchkeyd.log" &
pids+=($!)
store_port=$(wait_for_port "$work/store.port" $!)

shop_ports=()
for id in 1 2; do
  "$build/examples/shop_server" --listen 127.0.0.1:0 --port-file "$work/shop$id.port" \
    --store "127.0.0.1:$store_port" --process-id "$id" --secret-file "$work/secret" \
    --threads 8 2>"$work/shop$id.log" &
  pids+=($!)
  port=$(wait_for_port "$work/shop$id.port" $!)
  shop_ports+=("$port")
done

status=0
python3 - "${shop_ports[@]}" <<'EOF' || status=$?
import json
import socket
import sys
import threading
import urllib.error
import urllib.request

servers = [f"http://127.0.0.1:{port}" for port in sys.argv[1:3]]
failures = []


def check(condition, what):
    print(("ok: " if condition else "FAIL: ") + what)
    if not condition:
        failures.append(what)


def call(method, server, path):
    """(status, parsed JSON body) of one request."""
    request = urllib.request.Request(servers[server] + path, method=method)
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        body = error.read()
        try:
            return error.code, json.loads(body)
        except ValueError:
            return error.code, {"unparsed": body.decode(errors="replace")}


def raw(port, data):
    """The status line of the answer to raw bytes (for requests urllib won't send)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(data)
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    return answer.split(b"\r\n", 1)[0].decode(errors="replace"), answer


# Sequential requests, alternating servers, on three users: every one must
# succeed (nothing else contends), and each switch makes the store recall.
expected_items = {}
expected_visits = {}
for round_number in range(4):
    for user in (101, 102, 103):
        server = (round_number + user) % 2
        item = f"item-{user}-{round_number}"
        code, body = call("POST", server, f"/u/{user}/cart?item={item}")
        check(code == 200, f"add {item} via server {server + 1}: {code} {body}")
        expected_items.setdefault(user, []).append(item)
        code, body = call("GET", 1 - server, f"/u/{user}")
        expected_visits[user] = expected_visits.get(user, 0) + 1
        check(code == 200 and body.get("visits") == expected_visits[user]
              and body.get("cart") == expected_items[user],
              f"visit {user} via server {2 - server} sees its cart and count: {code} {body}")

# Escaped item names arrive decoded.
code, body = call("POST", 0, "/u/101/cart?item=green+tea")
expected_items[101].append("green tea")
code, body = call("POST", 1, "/u/101/cart?item=caf%C3%A9")
expected_items[101].append("café")
code, body = call("GET", 0, "/u/101/cart")
check(code == 200 and body.get("cart") == expected_items[101],
      f"the cart read via server 1 holds every item, in order: {body}")

# 20 concurrent visits to one user, and 10 concurrent cart adds, split across
# both servers: the lock moves back and forth under contention.
USER = 200
results = []
results_lock = threading.Lock()


def visit(index):
    outcome = call("GET", index % 2, f"/u/{USER}")
    with results_lock:
        results.append(("visit", index, outcome))


def add(index):
    outcome = call("POST", index % 2, f"/u/{USER}/cart?item=thing-{index}")
    with results_lock:
        results.append(("add", index, outcome))


threads = [threading.Thread(target=visit, args=(i,)) for i in range(20)]
threads += [threading.Thread(target=add, args=(i,)) for i in range(10)]
for t in threads:
    t.start()
for t in threads:
    t.join()

visits_ok = [body["visits"] for kind, _, (code, body) in results if kind == "visit" and code == 200]
visits_unknown = [body for kind, _, (code, body) in results
                  if kind == "visit" and body.get("error") == "unknown_outcome"]
added = [f"thing-{i}" for kind, i, (code, _) in results if kind == "add" and code == 200]
for kind, index, (code, body) in results:
    if code != 200:
        # Under contention a request may time out, but it must say so.
        check(code in (409, 503) and "error" in body and "message" in body,
              f"concurrent {kind} {index} failed cleanly: {code} {body}")
print(f"concurrent: {len(visits_ok)}/20 visits and {len(added)}/10 adds succeeded")
check(len(visits_ok) > 0, "some concurrent visit succeeded")
check(len(set(visits_ok)) == len(visits_ok), f"every successful visit saw its own count: {visits_ok}")

code, body = call("GET", 0, f"/u/{USER}")
check(code == 200, f"final visit: {code} {body}")
final_visits = body.get("visits", -1) - 1  # without this request's own +1
if visits_unknown:
    # A commit whose outcome is unknown may or may not have applied.
    check(len(visits_ok) <= final_visits <= len(visits_ok) + len(visits_unknown),
          f"visit count {final_visits} within the successful ones plus the unknown ones")
else:
    check(final_visits == len(visits_ok),
          f"visit count {final_visits} == successful visits {len(visits_ok)} (no lost update)")
check(sorted(body.get("cart", [])) == sorted(added),
      f"the cart holds every item added: {sorted(body.get('cart', []))}")

# Both servers had to recall locks from each other.
for server in (0, 1):
    code, stats = call("GET", server, "/stats")
    check(code == 200 and stats.get("process_id") == server + 1 and stats.get("recalls", 0) > 0,
          f"server {server + 1} /stats shows recalls: {stats}")

# Emptying the cart and logging out, each via a different server.
code, body = call("DELETE", 1, "/u/101/cart")
check(code == 200 and body.get("cart") == [], f"empty the cart: {code} {body}")
code, body = call("GET", 0, "/u/101/cart")
check(code == 200 and body.get("cart") == [], f"the emptied cart reads empty: {body}")
code, body = call("POST", 0, "/u/102/logout")
check(code == 200 and body.get("logged_out") is True, f"logout: {code} {body}")
code, body = call("GET", 1, "/u/102")
check(code == 200 and body.get("visits") == 1 and body.get("cart") == [],
      f"after logout the session starts over: {body}")

# Bad requests: a 4xx and a message naming the problem.
for method, path, want, error in [
    ("GET", "/u/abc", 400, "bad_user"),
    ("GET", "/u/99999999999999999999999", 400, "bad_user"),
    ("GET", "/nowhere", 404, "no_route"),
    ("GET", "/u/5/wishlist", 404, "no_route"),
    ("POST", "/u/5/cart", 400, "missing_item"),
    ("POST", "/u/5/cart?item=%zz", 400, "bad_query"),
    ("PUT", "/u/5", 405, "method_not_allowed"),
]:
    code, body = call(method, 0, path)
    check(code == want and body.get("error") == error and body.get("message"),
          f"{method} {path} -> {want} {error}: {code} {body}")

port = int(sys.argv[1])
for data, want, what in [
    (b"GARBAGE\r\n\r\n", "400", "a bad request line"),
    (b"GET /u/1 HTTP/1.1\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n", "431", "a header above 8 KiB"),
    (b"GET /u/1 HTTP/1.1\r\nno colon here\r\n\r\n", "400", "a malformed header line"),
    (bytes(range(256)) * 40, "431", "binary noise"),
]:
    status_line, answer = raw(port, data)
    check(want in status_line and b'"message"' in answer, f"{what} -> {want}: {status_line}")

for server in (0, 1):
    code, _ = call("GET", server, "/stats")
    check(code == 200, f"server {server + 1} still serves after the bad requests")

print(f"{len(failures)} failure(s)")
sys.exit(1 if failures else 0)
EOF

for pid in "${pids[@]}"; do
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "FAIL: process $pid exited during the test"
    status=1
  fi
done
if [[ $status -ne 0 ]]; then
  show_logs
  exit 1
fi
echo "PASS"
