#!/usr/bin/env bash
# The Docker pipeline's latency: runs tests/pipeline.rs (cairn agent,
# cairn registrator on the Docker socket, web containers, cairn template
# rendering an nginx upstream, real nginx) N times in a release build and
# records, per run, the time from `docker stop` until nginx stops sending
# requests to that container, and from `docker run` until nginx answers
# from the new one. Writes docs/benchmarks.md (section "pipeline").
# Usage: benches/pipeline.sh [runs]
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh
RUNS=${1:-10}
OUT=$(mktemp)
trap 'rm -f "$OUT"' EXIT
for i in $(seq 1 "$RUNS"); do
  CAIRN_PIPELINE_TIMES="$OUT" cargo test --release --quiet --test pipeline -- --test-threads=1 >/dev/null
done
SECTION=$(mktemp)
python3 - "$OUT" "$RUNS" >"$SECTION" <<'PY'
import json, statistics, sys, time, os
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
runs = sys.argv[2]
def stat(key):
    xs = sorted(r[key] for r in rows)
    return f"{statistics.median(xs):.0f} ms | {xs[-1]:.0f} ms"
print("## Docker pipeline: container start/stop to nginx")
print()
print(f"Command: `benches/pipeline.sh {runs}` (tests/pipeline.rs in a release build: a `-dev` agent, `cairn registrator`,"
      " containers of a static web server built here, `cairn template` rendering an nginx upstream and reloading Debian's"
      " nginx; nginx proxies with `proxy_next_upstream off`, so a request to a stopped container fails rather than being"
      f" retried elsewhere). Run on {time.strftime('%Y-%m-%d', time.gmtime())}, {os.cpu_count()} cores, {len(rows)} runs.")
print()
print("| event | median | max |")
print("|---|---|---|")
print(f"| `docker stop` → nginx no longer sends to it | {stat('leave_ms')} |")
print(f"| `docker run` → nginx answers from it | {stat('join_ms')} |")
PY
replace_section docs/benchmarks.md pipeline "$SECTION"
rm -f "$SECTION"
echo "wrote docs/benchmarks.md (pipeline section)"
