#!/usr/bin/env bash
# Time from a check observing failure to the instance leaving DNS answers,
# on one -dev node (release build, fsync on): a TTL check failed through
# the API, and an HTTP check whose target starts answering 500.
# Target: <= 100 ms. Usage: benches/checks.sh [trials]
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh
TRIALS=${1:-30}

start_dev_agent

python3 benches/checks_probe.py "$HTTP" "$DNS" "$TRIALS" >"$WORK/results.txt"
cat "$WORK/results.txt"

{
  echo "## Check failure to DNS"
  echo
  echo "Command: \`benches/checks.sh $TRIALS\` (release build, one \`-dev\` server, fsync on, $TRIALS trials each)."
  echo "Run on $(date -u +%Y-%m-%d), $(nproc) cores. Time from the failure being observed to the"
  echo "instance's A record leaving \`<service>.service.consul\`, polling the DNS server every millisecond."
  echo "TTL: from just before \`PUT /v1/agent/check/fail/<id>\` is sent. HTTP (interval 1s): from the"
  echo "target sending its first 500. Target: 100 ms."
  echo
  echo "| check | trials | median (ms) | max (ms) |"
  echo "|---|---|---|---|"
  while read -r name n median max; do
    echo "| $name | $n | $median | $max |"
  done <"$WORK/results.txt"
} >"$WORK/section.md"
replace_section docs/benchmarks.md checks "$WORK/section.md"
echo "wrote docs/benchmarks.md (checks section)"
