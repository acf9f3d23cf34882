#!/usr/bin/env bash
# Brings up compose/multi-dc.yml (two datacenters of 3 servers + 1 client,
# each on its own docker network, the servers joined over WAN on a third)
# and shows, against the containers:
#   - the WAN pool (`consul members -wan` inside a server) and the
#     datacenter list;
#   - a cross-datacenter query over HTTP and over DNS, from a client agent;
#   - a prepared query failing over to dc2 when dc1's instance goes
#     critical, and back;
#   - a WAN partition (dc2's servers off the wan network) that leaves each
#     datacenter reading and writing on its own, fails cross-datacenter
#     requests in bounded time, and heals once the network is back.
# Tears everything down; exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."

if docker compose version >/dev/null 2>&1; then DC=(docker compose); else DC=(docker-compose); fi
PROJECT=cairnmdc
FILE=compose/multi-dc.yml
compose() { "${DC[@]}" -p "$PROJECT" -f "$FILE" "$@"; }
fail() { echo "FAIL: $*" >&2; compose logs --tail=30 >&2 || true; exit 1; }
cleanup() { compose down -v --remove-orphans >/dev/null 2>&1 || true; }
trap cleanup EXIT

D1S=(172.28.6.11 172.28.6.12 172.28.6.13)
D2S=(172.28.7.11 172.28.7.12 172.28.7.13)
D1C=172.28.6.21
D2C=172.28.7.21

[ "${SKIP_IMAGE_BUILD:-}" = 1 ] || compose/build-image.sh cairn:local
cleanup
compose up -d >/dev/null

wait_until() { # seconds, command...
  local limit=$1; shift
  local end=$((SECONDS + limit))
  until "$@"; do [ $SECONDS -ge $end ] && return 1; sleep 0.3; done
}
leader_of() { curl -s -m 2 "http://$1:8500/v1/status/leader" 2>/dev/null | tr -d '"'; }
agreed() {
  local l; l=$(leader_of "$1")
  [ -n "$l" ] || return 1
  for ip in "${@:2}"; do [ "$(leader_of "$ip")" = "$l" ] || return 1; done
}
get() { curl -s -m 30 "http://$1$2"; }
code() { curl -s -m 30 -o /dev/null -w '%{http_code}' "http://$1$2"; }

echo "==> leaders in both datacenters"
wait_until 60 agreed "${D1S[@]}" || fail "dc1 elected no leader"
wait_until 60 agreed "${D2S[@]}" || fail "dc2 elected no leader"

echo "==> the WAN pool"
wan_alive() { [ "$(get "${D1S[0]}:8500" /v1/agent/members?wan=1 | grep -o '"Status":1' | wc -l)" -eq 6 ]; }
wait_until 60 wan_alive || fail "expected 6 alive WAN members"
S1=$(compose ps -q d1s1)
out=$(docker exec "$S1" sh -c 'consul members -wan') || fail "consul members -wan: $out"
echo "$out"
for n in d1s1.dc1 d1s2.dc1 d1s3.dc1 d2s1.dc2 d2s2.dc2 d2s3.dc2; do
  awk -v n="$n" 'NR > 1 && $1 == n && $3 == "alive" { ok = 1 } END { exit !ok }' <<<"$out" \
    || fail "members -wan: $n not alive"
done
[ "$(get "$D1C:8500" /v1/catalog/datacenters)" = '["dc1","dc2"]' ] || fail "datacenters from dc1's client"
[ "$(get "$D2C:8500" /v1/catalog/datacenters)" = '["dc2","dc1"]' ] || fail "datacenters from dc2's client"

echo "==> cross-datacenter queries"
reg() { # agent, id, port
  curl -sf -m 10 -X PUT "http://$1:8500/v1/agent/service/register" \
    -d "{\"Name\":\"web\",\"ID\":\"$2\",\"Port\":$3,\"Check\":{\"CheckID\":\"$2-ttl\",\"TTL\":\"300s\",\"Status\":\"passing\"}}" >/dev/null
}
reg "$D2C" web-dc2 8082 || fail "register in dc2"
reg "$D1C" web-dc1 8081 || fail "register in dc1"
has_dc2_web() { get "$D1C:8500" '/v1/health/service/web?dc=dc2&passing' | grep -q '"Port":8082'; }
wait_until 20 has_dc2_web || fail "dc2's web not answered through dc1's client"
if get "$D1C:8500" '/v1/health/service/web?dc=dc2' | grep -q '"Port":8081'; then fail "dc1's instance in dc2's answer"; fi
dns_dc2() { [ "$(dig @"$D1C" -p 8600 +short web.service.dc2.consul A)" = "$D2C" ]; }
wait_until 20 dns_dc2 || fail "web.service.dc2.consul from dc1's client: $(dig @"$D1C" -p 8600 +short web.service.dc2.consul A)"
dig @"$D1C" -p 8600 web.service.dc2.consul SRV | grep -q '8082 d2c1.node.dc2.consul.' || fail "SRV for dc2 from dc1"
[ "$(dig @"$D1C" -p 8600 +short web.service.consul A)" = "$D1C" ] || fail "dc1's own web over DNS"
[ "$(code "$D1C:8500" '/v1/catalog/nodes?dc=dc9')" = 500 ] || fail "unknown datacenter not 500"

echo "==> prepared-query failover"
curl -sf -m 10 -X POST "http://${D1S[0]}:8500/v1/query" \
  -d '{"Name":"web-anywhere","Service":{"Service":"web","OnlyPassing":true,"Failover":{"NearestN":1}}}' >/dev/null \
  || fail "create the query"
served_by() { get "$D1C:8500" /v1/query/web-anywhere/execute | grep -o '"Datacenter":"[^"]*"' | head -1; }
in_dc() { [ "$(served_by)" = "\"Datacenter\":\"$1\"" ]; }
wait_until 10 in_dc dc1 || fail "query not served by dc1: $(served_by)"
curl -sf -m 10 -X PUT "http://$D1C:8500/v1/agent/check/fail/web-dc1-ttl" >/dev/null || fail "fail dc1's check"
wait_until 10 in_dc dc2 || fail "no failover to dc2: $(served_by)"
get "$D1C:8500" /v1/query/web-anywhere/execute | grep -q '"Failovers":1' || fail "Failovers is not 1"
curl -sf -m 10 -X PUT "http://$D1C:8500/v1/agent/check/pass/web-dc1-ttl" >/dev/null || fail "pass dc1's check"
wait_until 10 in_dc dc1 || fail "query not back in dc1: $(served_by)"

echo "==> a WAN partition"
NET=$(docker network ls --format '{{.Name}}' | grep -E "^${PROJECT}_wan$" || true)
[ -n "$NET" ] || fail "no ${PROJECT}_wan network"
declare -A WANIP=([d2s1]=172.28.8.21 [d2s2]=172.28.8.22 [d2s3]=172.28.8.23)
for s in d2s1 d2s2 d2s3; do docker network disconnect "$NET" "$(compose ps -q $s)" || fail "disconnect $s"; done
[ "$(curl -s -m 10 -X PUT "http://$D1C:8500/v1/kv/during" -d dc1)" = true ] || fail "dc1 write during the partition"
[ "$(curl -s -m 10 -X PUT "http://$D2C:8500/v1/kv/during" -d dc2)" = true ] || fail "dc2 write during the partition"
[ "$(get "$D2C:8500" '/v1/kv/during?raw')" = dc2 ] || fail "dc2 read during the partition"
start=$SECONDS
c=$(code "$D1C:8500" '/v1/kv/during?dc=dc2')
[ "$c" = 500 ] || fail "cross-datacenter request during the partition answered $c"
[ $((SECONDS - start)) -le 25 ] || fail "cross-datacenter request took $((SECONDS - start)) s"
no_path() { [ "$(get "$D1C:8500" '/v1/kv/during?dc=dc2')" = "No path to datacenter" ]; }
wait_until 40 no_path || fail "dc2 never became no path"
echo "dc2 unreachable: No path to datacenter"
for s in d2s1 d2s2 d2s3; do
  docker network connect --ip "${WANIP[$s]}" "$NET" "$(compose ps -q $s)" || fail "reconnect $s"
done
healed() { [ "$(get "$D1C:8500" '/v1/kv/during?dc=dc2&raw')" = dc2 ]; }
wait_until 90 healed || fail "the WAN did not heal"
healed_back() { [ "$(get "$D2C:8500" '/v1/kv/during?dc=dc1&raw')" = dc1 ]; }
wait_until 90 healed_back || fail "dc2 -> dc1 after healing"
echo "multi-datacenter compose test passed"
