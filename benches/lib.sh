# Shared helpers for the benchmark scripts (sourced).

free_port() {
  python3 - <<'PY'
import socket
while True:
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        u.bind(("127.0.0.1", p)); print(p); break
    except OSError:
        pass
PY
}

# wait_http URL [seconds]
wait_http() {
  local url=$1 limit=${2:-30} i=0
  until curl -sf "$url" >/dev/null 2>&1; do
    i=$((i + 1))
    [ "$i" -gt $((limit * 10)) ] && { echo "timed out waiting for $url" >&2; return 1; }
    sleep 0.1
  done
}

# replace_section FILE NAME CONTENT_FILE: rewrite the block between
# <!-- NAME:begin --> and <!-- NAME:end --> (appending it if absent).
replace_section() {
  local file=$1 name=$2 content=$3
  python3 - "$file" "$name" "$content" <<'PY'
import sys, os
path, name, content_path = sys.argv[1:4]
body = open(content_path).read().rstrip() + "\n"
begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
text = open(path).read() if os.path.exists(path) else "# Benchmarks\n"
block = f"{begin}\n{body}{end}"
if begin in text and end in text:
    pre = text.split(begin)[0]
    post = text.split(end, 1)[1]
    text = pre + block + post
else:
    text = text.rstrip() + "\n\n" + block + "\n"
open(path, "w").write(text)
PY
}

# start_dev_agent: builds the release binary and starts one `-dev` agent on
# free ports. Sets WORK (a temp dir removed on exit), HTTP, DNS, PID and BIN.
start_dev_agent() {
  cargo build --release --quiet
  BIN=target/release/cairn
  WORK=$(mktemp -d)
  HTTP=$(free_port); DNS=$(free_port); local rpc serf; rpc=$(free_port); serf=$(free_port)
  "$BIN" agent -dev -node=bench -data-dir="$WORK/data" -http-port="$HTTP" -dns-port="$DNS" \
    -server-port="$rpc" -serf-lan-port="$serf" -serf-wan-port="$(free_port)" -log-level=warn >"$WORK/agent.log" 2>&1 &
  PID=$!
  trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null; rm -rf "$WORK"' EXIT
  wait_http "http://127.0.0.1:$HTTP/v1/status/leader"
  sleep 1
}
