#!/usr/bin/env bash
# Brings up compose/cluster.yml (3 servers + 2 clients), checks the leader
# and members over HTTP and with `consul members` and `consul operator raft
# list-peers` from a shell inside a server's container, kills the leader's
# container and checks for a new leader with intact data, stops a client's
# container and checks its services leave DNS, then tears everything down.
# Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."

if docker compose version >/dev/null 2>&1; then DC=(docker compose); else DC=(docker-compose); fi
PROJECT=cairnci
FILE=compose/cluster.yml
compose() { "${DC[@]}" -p "$PROJECT" -f "$FILE" "$@"; }
S=(172.28.5.11 172.28.5.12 172.28.5.13)
declare -A NAME=([172.28.5.11]=s1 [172.28.5.12]=s2 [172.28.5.13]=s3)
fail() { echo "FAIL: $*" >&2; compose logs --tail=40 >&2 || true; exit 1; }
cleanup() { compose down -v --remove-orphans >/dev/null 2>&1 || true; }
trap cleanup EXIT

compose/build-image.sh cairn:local
cleanup
compose up -d >/dev/null

leader_of() { curl -s -m 2 "http://$1:8500/v1/status/leader" 2>/dev/null | tr -d '"'; }
wait_until() { # seconds, command...
  local limit=$1; shift
  local end=$((SECONDS + limit))
  until "$@"; do [ $SECONDS -ge $end ] && return 1; sleep 0.2; done
}
agreed_leader() {
  local l; l=$(leader_of "$1")
  [ -n "$l" ] || return 1
  for ip in "${@:2}"; do [ "$(leader_of "$ip")" = "$l" ] || return 1; done
  LEADER=$l
}

echo "==> waiting for a leader"
wait_until 60 agreed_leader "${S[@]}" || fail "no leader elected"
echo "leader: $LEADER"

echo "==> members"
wait_until 30 bash -c "[ \$(curl -s http://${S[0]}:8500/v1/agent/members | grep -o '\"Status\":1' | wc -l) -eq 5 ]" \
  || fail "expected 5 alive members"

echo "==> consul CLI from a shell inside s1"
S1=$(compose ps -q s1)
[ -n "$S1" ] || fail "no container for s1"
rows() { awk 'NR > 1 && NF { print }'; } # table body without the header
out=$(docker exec "$S1" sh -c 'consul members') || fail "consul members in s1: $out"
echo "$out"
[ "$(rows <<<"$out" | wc -l)" -eq 5 ] || fail "consul members: expected 5 rows"
for n in s1 s2 s3 c1 c2; do
  rows <<<"$out" | awk -v n="$n" '$1 == n && $3 == "alive" { ok = 1 } END { exit !ok }' \
    || fail "consul members: $n is not listed alive"
done
out=$(docker exec "$S1" sh -c 'consul operator raft list-peers') || fail "consul operator raft list-peers in s1: $out"
echo "$out"
[ "$(rows <<<"$out" | grep -cw leader)" -eq 1 ] || fail "raft list-peers: expected exactly one leader"
for n in c1 c2; do
  if rows <<<"$out" | awk '{ print $1 }' | grep -qx "$n"; then fail "raft list-peers lists client $n"; fi
done
[ "$(rows <<<"$out" | awk '{ print $1 }' | sort | tr '\n' ' ')" = "s1 s2 s3 " ] \
  || fail "raft list-peers: expected exactly s1 s2 s3"

echo "==> writes and registrations"
[ "$(curl -s -X PUT http://172.28.5.21:8500/v1/kv/compose/key -d intact)" = "true" ] || fail "kv put via client"
curl -sf -X PUT http://172.28.5.22:8500/v1/agent/service/register -d '{"Name":"web","ID":"web-c2","Port":80}' >/dev/null \
  || fail "register on c2"
wait_until 10 bash -c "dig @${S[0]} -p 8600 +short web.service.consul A | grep -q 172.28.5.22" || fail "web not in DNS"

echo "==> killing the leader's container"
LIP=${LEADER%%:*}
docker kill "${PROJECT}_${NAME[$LIP]}_1" >/dev/null 2>&1 || docker kill "${PROJECT}-${NAME[$LIP]}-1" >/dev/null
REST=()
for ip in "${S[@]}"; do [ "$ip" = "$LIP" ] || REST+=("$ip"); done
new_leader() { agreed_leader "${REST[@]}" && [ "${LEADER%%:*}" != "$LIP" ]; }
wait_until 30 new_leader || fail "no new leader after killing $LIP"
echo "new leader: $LEADER"
[ "$(curl -s "http://${REST[0]}:8500/v1/kv/compose/key?raw")" = "intact" ] || fail "data lost after failover"
[ "$(curl -s -X PUT "http://${REST[1]}:8500/v1/kv/compose/after" -d ok)" = "true" ] || fail "write after failover"

echo "==> stopping client c2"
docker kill "${PROJECT}_c2_1" >/dev/null 2>&1 || docker kill "${PROJECT}-c2-1" >/dev/null
gone() { ! dig @"${REST[0]}" -p 8600 +short web.service.consul A | grep -q 172.28.5.22; }
wait_until 30 gone || fail "c2's service still in DNS"
echo "c2's service left DNS"
echo "compose test passed"
