#!/usr/bin/env bash
# Write throughput on one node with fsync on (LMDB's default durable
# commits): HTTP catalog registrations and KV PUTs per second, driven by wrk.
# Usage: benches/writes.sh [seconds] [connections]
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh
DURATION=${1:-10}
CONNS=${2:-32}
command -v wrk >/dev/null || { echo "wrk is required (apt-get install wrk)" >&2; exit 1; }

start_dev_agent

# Shared by both scripts: a per-thread id and a request counter.
PRELUDE='local counter = 0
local tid = 0
local threads = {}
function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end'
{ echo "$PRELUDE"; cat <<'LUA'
request = function()
  counter = counter + 1
  local id = tid .. "-" .. counter
  local body = '{"Node":"bench-' .. id .. '","Address":"10.1.' .. (counter % 250) .. '.1",'
    .. '"Service":{"Service":"bench","ID":"b' .. id .. '","Port":8080,"Tags":["v1"]}}'
  return wrk.format("PUT", "/v1/catalog/register", {["Content-Type"] = "application/json"}, body)
end
LUA
} >"$WORK/register.lua"
{ echo "$PRELUDE"; cat <<'LUA'
request = function()
  counter = counter + 1
  return wrk.format("PUT", "/v1/kv/bench/" .. tid .. "/" .. counter, nil, "value-" .. counter)
end
LUA
} >"$WORK/kv.lua"

run() {
  local name=$1 script=$2 out
  out="$WORK/$(basename "$script" .lua).out"
  wrk -t2 -c"$CONNS" -d"${DURATION}s" --latency -s "$script" "http://127.0.0.1:$HTTP" >"$out" 2>&1
  local rps p50 p99 non2xx
  rps=$(awk '/Requests\/sec/ {print $2}' "$out")
  p50=$(awk '$1=="50%" {print $2}' "$out")
  p99=$(awk '$1=="99%" {print $2}' "$out")
  non2xx=$(awk '/Non-2xx/ {print $NF}' "$out"); non2xx=${non2xx:-0}
  printf '| %s | %s | %s | %s | %s |\n' "$name" "$rps" "$p50" "$p99" "$non2xx"
}

{
  echo "| workload | writes/s | p50 | p99 | non-2xx |"
  echo "|---|---|---|---|---|"
  run "catalog register (PUT /v1/catalog/register)" "$WORK/register.lua"
  run "kv put (PUT /v1/kv/...)" "$WORK/kv.lua"
} | tee "$WORK/table.md"

{
  echo "## Writes on one node, fsync on"
  echo
  echo "Command: \`benches/writes.sh $DURATION $CONNS\` (wrk, 2 threads, $CONNS connections, ${DURATION}s each, release build, one \`-dev\` server; every acknowledged write is fsynced in the raft log (group-committed) before it is acknowledged)."
  echo "Run on $(date -u +%Y-%m-%d), $(nproc) cores."
  echo
  cat "$WORK/table.md"
} >"$WORK/section.md"
replace_section docs/benchmarks.md writes "$WORK/section.md"
echo "wrote docs/benchmarks.md (writes section)"
