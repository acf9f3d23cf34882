#!/usr/bin/env bash
# What ACLs cost on reads: two -dev agents side by side in one run, one with
# ACLs off and one with ACLs on (default_policy = "deny") read with a scoped
# token, loaded with the same data, and wrk on the same three reads of each.
# Rounds alternate which agent goes first so that machine noise lands on
# both. Cost is the agent's CPU time per request (from /proc, user +
# system), which other load on the machine disturbs far less than
# requests/s; requests/s are shown too. Target: ACLs on costs at most 10%
# more per read.
# Usage: benches/acl_overhead.sh [seconds] [rounds] [connections]
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh
DURATION=${1:-5}
ROUNDS=${2:-3}
CONNS=${3:-16}
SERVICES=50
INSTANCES=3
ROOT=7c1d9e0f2a3b4c5d6e7f8091a2b3c4d5
command -v wrk >/dev/null || { echo "wrk is required (apt-get install wrk)" >&2; exit 1; }

cargo build --release --quiet
BIN=${CARGO_TARGET_DIR:-target}/release/cairn
WORK=$(mktemp -d)
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done; rm -rf "$WORK"' EXIT

# start NAME [config file]: a -dev agent on free ports; sets PORT_<NAME>.
start() {
  local name=$1 conf=${2:-} http dns rpc serf
  http=$(free_port); dns=$(free_port); rpc=$(free_port); serf=$(free_port)
  local args=(agent -dev -node="bench-$name" -data-dir="$WORK/$name" -http-port="$http" -dns-port="$dns"
    -server-port="$rpc" -serf-lan-port="$serf" -serf-wan-port="$(free_port)" -log-level=warn)
  [ -n "$conf" ] && args+=(-config-file="$conf")
  "$BIN" "${args[@]}" >"$WORK/$name.log" 2>&1 &
  PIDS+=($!)
  printf -v "PID_$name" '%s' "$!"
  printf -v "PORT_$name" '%s' "$http"
  wait_http "http://127.0.0.1:$http/v1/status/leader"
}

echo "{\"acl\": {\"enabled\": true, \"default_policy\": \"deny\", \"tokens\": {\"initial_management\": \"$ROOT\"}}}" >"$WORK/acl.json"
start off
start on "$WORK/acl.json"

put() { # PORT PATH BODY [TOKEN]
  curl -sf -X PUT -H "X-Consul-Token: ${4:-}" --data-binary "$3" "http://127.0.0.1:$1$2" >/dev/null
}

# The same data on both: one KV key, SERVICES services with INSTANCES
# passing instances each, every instance on its own node.
load() {
  local port=$1 token=${2:-} s i
  put "$port" /v1/kv/bench/key "$(head -c 100 /dev/zero | tr '\0' v)" "$token"
  for s in $(seq 1 "$SERVICES"); do
    for i in $(seq 1 "$INSTANCES"); do
      put "$port" /v1/catalog/register "{\"Node\":\"n$s-$i\",\"Address\":\"127.0.0.$i\",
        \"Service\":{\"Service\":\"svc$s\",\"ID\":\"svc$s-$i\",\"Port\":8000,\"Tags\":[\"v1\"]},
        \"Check\":{\"CheckID\":\"svc$s-$i\",\"Name\":\"alive\",\"Status\":\"passing\",\"ServiceID\":\"svc$s-$i\"}}" "$token"
    done
  done
}
# The ACL agent needs its leader to have made the builtin ACL objects.
until curl -sf -H "X-Consul-Token: $ROOT" "http://127.0.0.1:$PORT_on/v1/acl/token/self" >/dev/null; do sleep 0.1; done
load "$PORT_off"
load "$PORT_on" "$ROOT"

# A scoped token: reads exactly what the three endpoints return, no more.
put "$PORT_on" /v1/acl/policy '{"Name":"bench-read","Rules":"key_prefix \"bench/\" { policy = \"read\" }\nservice_prefix \"\" { policy = \"read\" }\nnode_prefix \"\" { policy = \"read\" }"}' "$ROOT"
TOKEN=$(curl -sf -X PUT -H "X-Consul-Token: $ROOT" --data-binary '{"Policies":[{"Name":"bench-read"}]}' \
  "http://127.0.0.1:$PORT_on/v1/acl/token" | python3 -c 'import json,sys; print(json.load(sys.stdin)["SecretID"])')

ENDPOINTS=("/v1/kv/bench/key" "/v1/health/service/svc7?passing" "/v1/catalog/services")
# Both agents must answer every endpoint with the same body (the scoped
# token hides nothing), or the comparison would not be like for like.
for path in "${ENDPOINTS[@]}"; do
  a=$(curl -sf "http://127.0.0.1:$PORT_off$path" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(len(d))')
  b=$(curl -sf -H "X-Consul-Token: $TOKEN" "http://127.0.0.1:$PORT_on$path" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(len(d))')
  [ "$a" = "$b" ] || { echo "$path: $a items with ACLs off, $b with ACLs on" >&2; exit 1; }
done

# cpu_ticks PID: the process's user + system time, in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# bench AGENT PATH: one wrk run; prints "<requests/s> <requests> <CPU ticks>"
# (fails if any answer was not 2xx).
bench() {
  local agent=$1 path=$2 port pid out before after hdr=()
  if [ "$agent" = off ]; then port=$PORT_off pid=$PID_off; else port=$PORT_on pid=$PID_on; fi
  [ "$agent" = on ] && hdr=(-H "X-Consul-Token: $TOKEN")
  out="$WORK/wrk.out"
  before=$(cpu_ticks "$pid")
  wrk -t2 -c"$CONNS" -d"${DURATION}s" "${hdr[@]}" "http://127.0.0.1:$port$path" >"$out" 2>&1
  after=$(cpu_ticks "$pid")
  if grep -q "Non-2xx" "$out"; then echo "$agent $path: non-2xx answers" >&2; cat "$out" >&2; exit 1; fi
  echo "$(awk '/Requests\/sec/ {print $2}' "$out") $(awk '/requests in/ {print $1}' "$out") $((after - before))"
}

: >"$WORK/runs.txt"
for round in $(seq 1 "$ROUNDS"); do
  order=(off on); [ $((round % 2)) -eq 0 ] && order=(on off)
  for path in "${ENDPOINTS[@]}"; do
    for agent in "${order[@]}"; do
      echo "$round $agent $path $(bench "$agent" "$path")" | tee -a "$WORK/runs.txt"
    done
  done
done

python3 - "$WORK/runs.txt" "$(getconf CLK_TCK)" "${ENDPOINTS[@]}" >"$WORK/table.md" <<'PY'
import sys
runs, hz, endpoints = sys.argv[1], float(sys.argv[2]), sys.argv[3:]
rows = [l.split() for l in open(runs) if l.strip()]
print("| endpoint | ACLs off: req/s per round | ACLs on: req/s per round | CPU per request, off / on (µs) | cost on / off |")
print("|---|---|---|---|---|")
worst = 0.0
for ep in endpoints:
    def pick(agent):
        return [r for r in rows if r[2] == ep and r[1] == agent]
    def cost(rs):  # agent CPU µs per request over all rounds
        return 1e6 * sum(float(r[5]) for r in rs) / hz / sum(float(r[4]) for r in rs)
    off, on = pick("off"), pick("on")
    ratio = cost(on) / cost(off)
    worst = max(worst, ratio)
    rps = lambda rs: ", ".join(f"{float(r[3]):.0f}" for r in rs)
    print(f"| `{ep}` | {rps(off)} | {rps(on)} | {cost(off):.1f} / {cost(on):.1f} | **{ratio:.3f}** |")
print()
print(f"Largest extra cost with ACLs on: {100 * (worst - 1):+.1f}% CPU per read (target: at most +10%).")
PY
cat "$WORK/table.md"

{
  echo "## ACL overhead on reads"
  echo
  echo "Command: \`benches/acl_overhead.sh $DURATION $ROUNDS $CONNS\` (release build; two \`-dev\` agents in one run, one with ACLs off,"
  echo "one with ACLs on and \`default_policy = \"deny\"\`, read with a token whose policy is \`key_prefix \"bench/\"\`,"
  echo "\`service_prefix \"\"\` and \`node_prefix \"\"\` read, so both return the same bodies; $SERVICES services x $INSTANCES"
  echo "passing instances, each on its own node, and one 100-byte key on each; wrk, 2 threads, $CONNS connections,"
  echo "${DURATION}s per endpoint per agent, $ROUNDS rounds, alternating which agent goes first). CPU per request is the"
  echo "agent's user + system time (\`/proc/<pid>/stat\`) over the requests wrk completed, summed over the rounds; the cost"
  echo "ratio is ACLs on over ACLs off."
  echo "Run on $(date -u +%Y-%m-%d) ($(git rev-parse --short HEAD)), $(nproc) cores, wrk and both agents on the same machine."
  echo
  cat "$WORK/table.md"
} >"$WORK/section.md"
replace_section docs/benchmarks.md acl-overhead "$WORK/section.md"
echo "wrote docs/benchmarks.md (acl-overhead section)"
