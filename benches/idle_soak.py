#!/usr/bin/env python3
"""Failure-detection false positives on a healthy idle cluster: 3 servers and
2 client agents on loopback, left alone for N minutes while every second the
member list and every node's serfHealth check are read from a server. Any
member not alive, or any serfHealth that is not passing or whose ModifyIndex
moved, counts as a false failure. Writes the result to docs/benchmarks.md
(section "soak"). Usage: benches/idle_soak.py [--minutes 10]
"""
import argparse, json, os, shutil, signal, subprocess, sys, tempfile, time, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "cairn")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster import Agent, agreed, wait, replace_section  # noqa: E402


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return json.loads(r.read().decode())
    except Exception:
        return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=10)
    a = ap.parse_args()
    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    work = tempfile.mkdtemp(prefix="cairn-soak-")
    ips = [f"127.0.24.{i}" for i in (1, 2, 3)]
    agents = [Agent(work, f"s{i+1}", ip, ["-server", "-bootstrap-expect=3"] +
                    [f"-retry-join={o}" for o in ips if o != ip]) for i, ip in enumerate(ips)]
    agents += [Agent(work, f"c{i}", f"127.0.24.{10+i}", [f"-retry-join={ips[0]}"]) for i in (1, 2)]
    try:
        for ag in agents:
            ag.start()
        if not wait(lambda: agreed(agents[:3]), 30):
            sys.exit("no leader")
        base = f"http://{ips[0]}:8500"
        if not wait(lambda: len([m for m in (get(base + "/v1/agent/members") or []) if m["Status"] == 1]) == 5, 30, 0.2):
            sys.exit("members did not converge")
        time.sleep(3)
        baseline = {c["Node"]: c["ModifyIndex"] for c in get(base + "/v1/health/state/any") or [] if c["CheckID"] == "serfHealth"}
        false_failures = []
        polls = 0
        end = time.monotonic() + a.minutes * 60
        while time.monotonic() < end:
            polls += 1
            for m in get(base + "/v1/agent/members") or []:
                if m["Status"] != 1:
                    false_failures.append((time.strftime("%H:%M:%S"), m["Name"], "member status", m["Status"]))
            for c in get(base + "/v1/health/state/any") or []:
                if c["CheckID"] != "serfHealth":
                    continue
                if c["Status"] != "passing" or baseline.get(c["Node"]) != c["ModifyIndex"]:
                    false_failures.append((time.strftime("%H:%M:%S"), c["Node"], "serfHealth", c["Status"]))
                    baseline[c["Node"]] = c["ModifyIndex"]
            time.sleep(1)
    finally:
        for ag in agents:
            ag.kill()
        shutil.rmtree(work, ignore_errors=True)
    body = f"""## Idle cluster: false failure detections

Command: `benches/idle_soak.py --minutes {a.minutes:g}` (3 servers + 2 client agents on loopback, release build, run on {time.strftime('%Y-%m-%d', time.gmtime())}, {os.cpu_count()} cores, with other work running on the machine).

{polls} polls of the member list and serfHealth checks over {a.minutes:g} minutes: **{len(false_failures)} false failures**.
"""
    if false_failures:
        body += "\n" + "\n".join(f"- {t} {n}: {what} {st}" for t, n, what, st in false_failures[:20]) + "\n"
    print(body)
    replace_section(os.path.join(ROOT, "docs", "benchmarks.md"), "soak", body)


if __name__ == "__main__":
    main()
