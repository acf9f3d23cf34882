#!/usr/bin/env python3
"""Cluster benchmarks, each run side by side in one go:

1. KV write throughput with p50/p99 on a 3-server cairn cluster and on a
   3-member etcd cluster on the same machine (loopback), same load generator
   (wrk), same connection count, PUTs sent to the leader, fsync on in both.
2. Failover: SIGKILL the leader, time until a write is acknowledged by a
   surviving server; N trials.
3. Detection: SIGKILL a client agent with a registered service, time until
   the service is gone from DNS answers on a server; N trials.

Writes the results into docs/benchmarks.md (section "cluster").
Usage: benches/cluster.py [--seconds 10] [--conns 64] [--trials 10]
"""
import argparse, json, os, shutil, signal, statistics, subprocess, sys, tempfile, time

import benchlib
from benchlib import BIN, ROOT, http, replace_section


class Agent:
    def __init__(self, work, name, ip, args):
        self.name, self.ip, self.args = name, ip, args
        self.data = os.path.join(work, name)
        self.log = open(os.path.join(work, name + ".log"), "ab")
        self.proc = None

    def start(self):
        cmd = [BIN, "agent", f"-node={self.name}", f"-bind={self.ip}", f"-client={self.ip}",
               f"-data-dir={self.data}", "-retry-interval=1s", "-log-level=warn"] + self.args
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=self.log)

    def kill(self):
        if self.proc:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
            self.proc = None

    def leader(self):
        code, body = http("GET", f"http://{self.ip}:8500/v1/status/leader", timeout=1)
        return json.loads(body) if code == 200 and body else ""


def wait(pred, limit, step=0.02):
    return benchlib.wait(pred, limit, step)


def agreed(agents, exclude=""):
    ls = [a.leader() for a in agents]
    return ls[0] if ls[0] and ls[0] != exclude and all(l == ls[0] for l in ls) else ""


def wrk(url, script, seconds, conns):
    out = subprocess.run(["wrk", "-t2", f"-c{conns}", f"-d{seconds}s", "--latency", "-s", script, url],
                         capture_output=True, text=True).stdout
    rps = p50 = p99 = "?"
    non2xx = "0"
    for line in out.splitlines():
        parts = line.split()
        if line.startswith("Requests/sec"):
            rps = parts[1]
        elif parts[:1] == ["50%"]:
            p50 = parts[1]
        elif parts[:1] == ["99%"]:
            p99 = parts[1]
        elif "Non-2xx" in line:
            non2xx = parts[-1]
    return rps, p50, p99, non2xx, out


CAIRN_LUA = """
local counter = 0
request = function()
  counter = counter + 1
  return wrk.format("PUT", "/v1/kv/bench/" .. math.random(1, 1000000000) .. "-" .. counter, nil, "value-" .. counter)
end
"""

ETCD_LUA = """
local b='ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'
local function enc(data)
  return ((data:gsub('.', function(x)
    local r,b='',x:byte()
    for i=8,1,-1 do r=r..(b%2^i-b%2^(i-1)>0 and '1' or '0') end
    return r;
  end)..'0000'):gsub('%d%d%d?%d?%d?%d?', function(x)
    if (#x < 6) then return '' end
    local c=0
    for i=1,6 do c=c+(x:sub(i,i)=='1' and 2^(6-i) or 0) end
    return b:sub(c+1,c+1)
  end)..({ '', '==', '=' })[#data%3+1])
end
local counter = 0
request = function()
  counter = counter + 1
  local body = '{"key":"' .. enc("bench/" .. math.random(1, 1000000000) .. "-" .. counter) .. '","value":"' .. enc("value-" .. counter) .. '"}'
  return wrk.format("POST", "/v3/kv/put", {["Content-Type"]="application/json"}, body)
end
"""


def bench_writes(work, seconds, conns):
    ips = [f"127.0.20.{i}" for i in (1, 2, 3)]
    agents = [Agent(work, f"s{i+1}", ip, ["-server", "-bootstrap-expect=3"] +
                    [f"-retry-join={o}" for o in ips if o != ip]) for i, ip in enumerate(ips)]
    for a in agents:
        a.start()
    if not wait(lambda: agreed(agents), 30):
        sys.exit("cairn cluster did not elect a leader")
    leader_ip = agreed(agents).split(":")[0]
    lua = os.path.join(work, "cairn.lua")
    open(lua, "w").write(CAIRN_LUA)
    time.sleep(1)
    cairn = wrk(f"http://{leader_ip}:8500", lua, seconds, conns)
    for a in agents:
        a.kill()

    # etcd: three members on loopback, same machine, fsync on (its default).
    etcd = shutil.which("etcd")
    if not etcd:
        sys.exit("etcd is required (apt-get install etcd-server)")
    eips = [f"127.0.21.{i}" for i in (1, 2, 3)]
    cluster = ",".join(f"e{i+1}=http://{ip}:2380" for i, ip in enumerate(eips))
    procs = []
    for i, ip in enumerate(eips):
        d = os.path.join(work, f"etcd{i+1}")
        log = open(os.path.join(work, f"etcd{i+1}.log"), "ab")
        procs.append(subprocess.Popen([etcd, f"--name=e{i+1}", f"--data-dir={d}",
            f"--listen-client-urls=http://{ip}:2379", f"--advertise-client-urls=http://{ip}:2379",
            f"--listen-peer-urls=http://{ip}:2380", f"--initial-advertise-peer-urls=http://{ip}:2380",
            f"--initial-cluster={cluster}", "--initial-cluster-state=new", "--initial-cluster-token=bench"],
            stdout=log, stderr=log))

    def etcd_leader():
        for ip in eips:
            code, body = http("POST", f"http://{ip}:2379/v3/maintenance/status", "{}")
            if code == 200:
                st = json.loads(body)
                if st.get("leader") and st.get("leader") == st.get("header", {}).get("member_id"):
                    return ip
        return ""
    if not wait(lambda: etcd_leader() != "", 30, 0.2):
        sys.exit("etcd cluster did not elect a leader")
    elua = os.path.join(work, "etcd.lua")
    open(elua, "w").write(ETCD_LUA)
    time.sleep(1)
    etcdr = wrk(f"http://{etcd_leader()}:2379", elua, seconds, conns)
    version = subprocess.run([etcd, "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    for p in procs:
        p.send_signal(signal.SIGKILL)
        p.wait()
    return cairn, etcdr, version


def bench_failover(work, trials):
    ips = [f"127.0.22.{i}" for i in (1, 2, 3)]
    agents = [Agent(work, f"f{i+1}", ip, ["-server", "-bootstrap-expect=3"] +
                    [f"-retry-join={o}" for o in ips if o != ip]) for i, ip in enumerate(ips)]
    for a in agents:
        a.start()
    if not wait(lambda: agreed(agents), 30):
        sys.exit("failover cluster did not elect a leader")
    times = []
    for t in range(trials):
        leader = agreed(agents)
        victim = next(a for a in agents if leader.startswith(a.ip + ":"))
        rest = [a for a in agents if a is not victim]
        victim.kill()
        t0 = time.monotonic()
        ok = wait(lambda: any(http("PUT", f"http://{a.ip}:8500/v1/kv/failover/{t}", "x", timeout=1)[1].strip() == "true"
                              for a in rest), 30, 0.01)
        if not ok:
            sys.exit(f"trial {t}: no write acknowledged after killing the leader")
        times.append(time.monotonic() - t0)
        victim.start()
        # Let the cluster settle with all three back before the next trial.
        wait(lambda: agreed(agents) != "" and http("GET", f"http://{victim.ip}:8500/v1/kv/failover/{t}?stale")[0] == 200, 30, 0.1)
        time.sleep(2)
    for a in agents:
        a.kill()
    return times


def dig_has(server_ip, ip):
    out = subprocess.run(["dig", f"@{server_ip}", "-p", "8600", "+short", "+time=1", "+tries=1", "web.service.consul", "A"],
                         capture_output=True, text=True).stdout
    return ip in out


def bench_detection(work, trials):
    s = Agent(work, "d1", "127.0.23.1", ["-server", "-bootstrap-expect=1"])
    s.start()
    if not wait(lambda: s.leader() != "", 30):
        sys.exit("detection server has no leader")
    c = Agent(work, "dc2", "127.0.23.2", ["-retry-join=127.0.23.1"])
    c.start()
    body = '{"Name":"web","ID":"web1","Port":80}'
    if not wait(lambda: http("PUT", "http://127.0.23.2:8500/v1/agent/service/register", body)[0] == 200, 30, 0.2):
        sys.exit("could not register on the client agent")
    times = []
    for t in range(trials):
        if not wait(lambda: dig_has("127.0.23.1", "127.0.23.2"), 30, 0.1):
            sys.exit(f"trial {t}: service not in DNS before the kill")
        time.sleep(2)
        c.kill()
        t0 = time.monotonic()
        if not wait(lambda: not dig_has("127.0.23.1", "127.0.23.2"), 30, 0.01):
            sys.exit(f"trial {t}: service still in DNS 30 s after the kill")
        times.append(time.monotonic() - t0)
        c.start()
    c.kill()
    s.kill()
    return times


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--conns", type=int, default=64)
    ap.add_argument("--trials", type=int, default=10)
    a = ap.parse_args()
    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    work = tempfile.mkdtemp(prefix="cairn-cluster-bench-")
    try:
        cairn, etcd, etcd_version = bench_writes(work, a.seconds, a.conns)
        fo = bench_failover(work, a.trials)
        de = bench_detection(work, a.trials)
    finally:
        subprocess.run(["pkill", "-9", "-f", work], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
    ratio = float(cairn[0]) / float(etcd[0]) if etcd[0] not in ("?", "0") else float("nan")
    ms = lambda xs: f"median {statistics.median(xs)*1000:.0f} ms, max {max(xs)*1000:.0f} ms"
    body = f"""## Cluster: writes against etcd, failover, failure detection

Command: `benches/cluster.py --seconds {a.seconds} --conns {a.conns} --trials {a.trials}` (release build; all processes on this machine's loopback; run on {time.strftime('%Y-%m-%d', time.gmtime())}, {os.cpu_count()} cores).

KV writes, 3 servers, PUT to the leader with wrk (2 threads, {a.conns} connections, {a.seconds} s), fsync on in both systems:

| system | writes/s | p50 | p99 | non-2xx |
|---|---|---|---|---|
| cairn (PUT /v1/kv) | {cairn[0]} | {cairn[1]} | {cairn[2]} | {cairn[3]} |
| {etcd_version} (POST /v3/kv/put) | {etcd[0]} | {etcd[1]} | {etcd[2]} | {etcd[3]} |

cairn / etcd write throughput: **{ratio:.2f}x**

Failover (SIGKILL the leader → first write acknowledged by a survivor), {a.trials} trials: {ms(fo)}.

Failure detection (SIGKILL a client agent → its service gone from DNS answers on a server), {a.trials} trials: {ms(de)}.
"""
    print(body)
    replace_section(os.path.join(ROOT, "docs", "benchmarks.md"), "cluster", body)


if __name__ == "__main__":
    main()
