#!/usr/bin/env bash
# The web UI at 5,000 services x 2 instances, in headless Chromium: services
# page load, filtering, live-update latency, and the internal endpoint it
# reads. One release `-dev` agent on 127.0.124.1; catalog registered through
# PUT /v1/catalog/register. Target: render and filter under 1 s, a change on
# the page within 1 s. Usage: benches/ui.sh [trials]
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh
TRIALS=${1:-10}
IP=127.0.124.1

for tool in chromium chromedriver; do
  command -v "$tool" >/dev/null 2>&1 || { echo "missing required tool: $tool (apt-get install chromium chromium-driver)" >&2; exit 1; }
done

cargo build --release --quiet
BIN=${CARGO_TARGET_DIR:-target}/release/cairn
WORK=$(mktemp -d)
port() {
  python3 -c 'import socket,sys; s=socket.socket(); s.bind((sys.argv[1],0)); print(s.getsockname()[1])' "$IP"
}
HTTP=$(port); DNS=$(port); RPC=$(port); SERF=$(port)
"$BIN" agent -dev -node=bench -data-dir="$WORK/data" -client="$IP" -bind="$IP" \
  -http-port="$HTTP" -dns-port="$DNS" -server-port="$RPC" -serf-lan-port="$SERF" -serf-wan-port="$(free_port)" \
  -log-level=warn >"$WORK/agent.log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null; rm -rf "$WORK"' EXIT
wait_http "http://$IP:$HTTP/v1/status/leader"
sleep 1

LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
python3 benches/ui_probe.py "http://$IP:$HTTP" "$TRIALS" "$WORK/rows.md"
RSS=$(awk '/VmRSS/ {print int($2/1024)}' /proc/$PID/status)

{
  echo "## Web UI at 5,000 services"
  echo
  echo "Command: \`benches/ui.sh $TRIALS\` (release build, one \`-dev\` server, 5,000 services x 2"
  echo "instances on 100 nodes registered through \`PUT /v1/catalog/register\`, headless"
  echo "$(chromium --version 2>/dev/null | head -1 | sed 's/ built on.*//') through chromedriver, 1280x900)."
  echo "Run on $(date -u +%Y-%m-%d), $(nproc) cores, load average $LOAD at the start. Times are taken inside the page with"
  echo "\`performance.now()\`, polled every animation frame; the endpoint from Python over loopback."
  echo "Agent RSS after the run: ${RSS} MiB. Target: render and filter under 1 s, live update within 1 s."
  echo
  echo "| measure | trials | median | p90 | max |"
  echo "|---|---|---|---|---|"
  cat "$WORK/rows.md"
} >"$WORK/section.md"
replace_section docs/benchmarks.md ui "$WORK/section.md"
echo "wrote docs/benchmarks.md (ui section)"
