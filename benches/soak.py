#!/usr/bin/env python3
"""Soak under mixed load: 3 servers and 3 client agents (release build) on
loopback, for --minutes (default 10), all of these at once:

- KV writes at a steady rate (--kv-rate, default 200/s), spread over all six
  agents, each writer cycling over its own --kv-keys keys (default 2000, a
  data set that stays the same size; 0 writes a new key every time, so the
  data set grows with the run); the last acknowledged value of every key is
  read back at the end with ?consistent from a server;
- DNS from dnsperf (one process per agent, --dns-qps each), A and SRV
  queries of the flapping services, latencies bucketed per minute;
- --watchers blocking queries (default 1000), half on KV keys and half on
  /v1/health/service, spread over the agents, each re-armed with the
  returned X-Consul-Index on every wake;
- 100 services with one instance on every client agent and a TTL check
  each, set passing or critical at random (--flaps per second in all), so
  the health-filtered DNS answers change all the time.

Every 10 s the RSS (anonymous and file-backed) and open file descriptors of
every agent are sampled; their least-squares slope per hour is reported.

Checks (exit status 1 if one fails): every acknowledged KV write present at
the end; every check's last acknowledged status in the catalog and in the
DNS answers of every agent; no KV write, check update, DNS (SERVFAIL,
timeout) or watcher error (non-200, dropped connection, index going
backwards, no answer within the wait); every agent still running; every
minute's DNS p99 within 2x the first minute's. Writes the figures into
docs/benchmarks.md (section "mixed-soak") unless --no-doc.

Usage: benches/soak.py [--minutes 10] [--no-doc]
"""
import argparse, asyncio, base64, json, os, random, shutil, signal, socket, struct, subprocess, sys, tempfile, threading, time

import benchlib
import cluster
from benchlib import ROOT, http, replace_section, wait

NET = "127.0.110"
SERVERS = [f"{NET}.{i}" for i in (1, 2, 3)]
CLIENTS = [f"{NET}.{i}" for i in (11, 12, 13)]
SERVICES = 100
PAGE = os.sysconf("SC_PAGE_SIZE")
WAIT_S = 20
REPLACED = [0]                        # kept-alive connections found closed and replaced


# ---------------------------------------------------------------- sampling

def proc_sample(pid):
    """(RssAnon KiB, RssFile KiB, open fds, of which sockets) of a process."""
    anon = filed = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                anon = int(line.split()[1])
            elif line.startswith("RssFile:"):
                filed = int(line.split()[1])
    fds = sockets = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        fds += 1
        try:
            sockets += os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")
        except OSError:
            pass
    return anon, filed, fds, sockets


def ring_sample(ip):
    """(entries, KiB) in a server's feed ring, from its metrics."""
    code, body = http("GET", f"http://{ip}:8500/v1/agent/metrics", timeout=2)
    if code != 200:
        return 0, 0
    g = {x["Name"]: x["Value"] for x in json.loads(body)["Gauges"]}
    return int(g.get("cairn.feed.ring_entries", 0)), g.get("cairn.feed.ring_bytes", 0) / 1024


def slope_per_hour(points):
    """Least-squares slope of [(seconds, value)] in value per hour."""
    n = len(points)
    if n < 2:
        return 0.0
    mx = sum(t for t, _ in points) / n
    my = sum(v for _, v in points) / n
    sxx = sum((t - mx) ** 2 for t, _ in points)
    sxy = sum((t - mx) * (v - my) for t, v in points)
    return sxy / sxx * 3600 if sxx else 0.0


# ---------------------------------------------------------------- HTTP client

class Conn:
    """One keep-alive HTTP/1.1 connection (asyncio streams)."""

    def __init__(self, ip, src=None, port=8500):
        self.ip, self.src, self.port = ip, src, port
        self.r = self.w = None

    async def close(self):
        if self.w:
            self.w.close()
            self.r = self.w = None

    async def request(self, method, path, body=b"", timeout=10.0):
        """(status, headers, body); raises on a connection failure or timeout.
        A kept-alive connection the server closed while idle is replaced
        once, as HTTP clients do (every request sent here is idempotent)."""
        reused = self.w is not None
        if not reused:
            local = (self.src, 0) if self.src else None
            self.r, self.w = await asyncio.wait_for(
                asyncio.open_connection(self.ip, self.port, local_addr=local), 5)
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.ip}\r\nContent-Length: {len(body)}\r\n\r\n"
        self.w.write(head.encode() + body)
        try:
            return await asyncio.wait_for(self._response(), timeout)
        except asyncio.IncompleteReadError as e:
            await self.close()
            if reused and not e.partial:
                REPLACED[0] += 1
                return await self.request(method, path, body, timeout)
            raise
        except BaseException:
            await self.close()
            raise

    async def _response(self):
        raw = await self.r.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                headers[k.strip().lower()] = v.strip()
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = b""
            while True:
                size = int((await self.r.readuntil(b"\r\n")).strip().split(b";")[0], 16)
                body += await self.r.readexactly(size + 2)
                body = body[:-2]
                if size == 0:
                    break
        else:
            body = await self.r.readexactly(int(headers.get("content-length", "0")))
        if headers.get("connection", "").lower() == "close":
            await self.close()
        return status, headers, body


class Pool:
    """Keep-alive connections to one agent, one per request in flight."""

    def __init__(self, ip, src=None):
        self.ip, self.src = ip, src
        self.idle = []

    async def request(self, method, path, body=b"", timeout=10.0):
        conn = self.idle.pop() if self.idle else Conn(self.ip, self.src)
        result = await conn.request(method, path, body, timeout)
        self.idle.append(conn)
        return result

    async def close(self):
        for c in self.idle:
            await c.close()
        self.idle = []


def source(role, i):
    """The local address a load connection comes from. Agents allow 200
    connections per client IP (Consul's limits.http_max_conns_per_client),
    so the load, standing in for many clients, spreads over addresses:
    four watchers per address, one address per writer."""
    if role == "watcher":
        return f"127.0.111.{1 + i % 250}"
    if role == "kv":
        return f"127.0.112.{1 + i}"
    return f"127.0.113.{1 + i + (100 if role == 'flapper' else 0)}"


class Errors:
    def __init__(self):
        self.counts, self.samples = {}, []

    def add(self, kind, detail):
        self.counts[kind] = self.counts.get(kind, 0) + 1
        if len(self.samples) < 30:
            self.samples.append(f"{time.strftime('%H:%M:%S')} {kind}: {detail}")

    def total(self, prefix):
        return sum(v for k, v in self.counts.items() if k.startswith(prefix))


# ---------------------------------------------------------------- load

class Load:
    def __init__(self, args, agents_ips):
        self.args = args
        self.ips = agents_ips
        self.err = Errors()
        self.stop = False
        self.kv_acked = {}            # key -> value of its last acknowledged write
        self.kv_ok = 0                # KV writes acknowledged
        self.kv_maybe = {}            # key -> values of writes sent since its last acknowledged one
        self.kv_sent = 0
        self.kv_lat = {"server": [], "client": []}
        self.watch_acked = {}         # soak/watch/j -> last acknowledged value
        self.check_state = {}         # (client ip, service n) -> "passing" | "critical"
        self.flaps_acked = 0
        self.wakes = 0
        self.watchers_armed = 0

    async def paced(self, rate, step, in_flight=1):
        """Starts step(n) rate times a second until stopped, with at most
        in_flight of them running at once (so a slow answer delays the
        schedule instead of piling up requests)."""
        t0, n = time.monotonic(), 0
        slots = asyncio.Semaphore(in_flight)
        running = set()

        async def one(n):
            try:
                await step(n)
            finally:
                slots.release()
        while not self.stop:
            await slots.acquire()
            t = asyncio.create_task(one(n))
            running.add(t)
            t.add_done_callback(running.discard)
            n += 1
            delay = t0 + n / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -1:          # far behind: do not burst to catch up
                t0 = time.monotonic() - n / rate
        if running:
            await asyncio.wait(running)

    async def kv_writer(self, w, ip, rate):
        pool = Pool(ip, source("kv", w))

        async def step(n):
            if self.args.kv_keys:
                # A steady data set: each writer cycles over its own keys,
                # one write per key in flight, so the last acknowledged
                # value of a key is the one that must be there.
                key = f"soak/kv/w{w}/{n % self.args.kv_keys}"
            else:
                minute = int((time.monotonic() - self.t0) // 60)
                key = f"soak/kv/w{w}/m{minute}/{n}"
            value = f"v{w}-{n}-{random.getrandbits(32):08x}"
            self.kv_sent += 1
            t = time.monotonic()
            # A write that failed may still have been applied: until a later
            # write to the key is acknowledged, its value is allowed too.
            self.kv_maybe.setdefault(key, set()).add(value)
            try:
                st, _, body = await pool.request("PUT", f"/v1/kv/{key}", value.encode())
            except Exception as e:
                self.err.add("kv write", f"{ip} {key}: {type(e).__name__} {e}")
                return
            if st == 200 and body.strip() == b"true":
                self.kv_acked[key] = value
                self.kv_maybe[key] = set()
                self.kv_ok += 1
                self.kv_lat["server" if ip in SERVERS else "client"].append(time.monotonic() - t)
            else:
                self.err.add("kv write", f"{ip} {key}: {st} {body[:200]!r}")
        await self.paced(rate, step, in_flight=64)
        await pool.close()

    async def watch_writer(self, rate):
        """Updates the keys the KV watchers block on."""
        conns = [Conn(ip, source("watch-writer", 0)) for ip in self.ips]

        async def step(n):
            j = n % 100
            key = f"soak/watch/{j}"
            value = str(n)
            conn = conns[n % len(conns)]
            try:
                st, _, body = await conn.request("PUT", f"/v1/kv/{key}", value.encode())
            except Exception as e:
                self.err.add("kv write", f"{conn.ip} {key}: {type(e).__name__} {e}")
                return
            if st == 200 and body.strip() == b"true":
                self.watch_acked[key] = value
            else:
                self.err.add("kv write", f"{conn.ip} {key}: {st} {body[:200]!r}")
        await self.paced(rate, step)
        for c in conns:
            await c.close()

    async def set_check(self, conn, n, status):
        verb = "pass" if status == "passing" else "fail"
        try:
            st, _, body = await conn.request("PUT", f"/v1/agent/check/{verb}/service:svc-{n}?note=soak")
        except Exception as e:
            self.err.add("check update", f"{conn.ip} svc-{n}: {type(e).__name__} {e}")
            return False
        if st != 200:
            self.err.add("check update", f"{conn.ip} svc-{n}: {st} {body[:200]!r}")
            return False
        self.check_state[(conn.ip, n)] = status
        return True

    async def flapper(self, rate):
        pools = {ip: Pool(ip, source("flapper", k)) for k, ip in enumerate(CLIENTS)}
        conns = {ip: Conn(ip, source("flapper", 10 + k)) for k, ip in enumerate(CLIENTS)}

        async def step(_):
            ip, n = random.choice(CLIENTS), random.randrange(SERVICES)
            if await self.set_check(pools[ip], n, random.choice(("passing", "critical"))):
                self.flaps_acked += 1
        await self.paced(rate, step, in_flight=16)
        for p in pools.values():
            await p.close()
        # A final, known state for every check, verified afterwards.
        for ip in CLIENTS:
            for n in range(SERVICES):
                await self.set_check(conns[ip], n, random.choice(("passing", "critical", "passing")))
        for c in conns.values():
            await c.close()

    async def watcher(self, i, ip, path):
        """A blocking query re-armed on every wake, on its own connection."""
        conn = Conn(ip, source("watcher", i))
        index = 0
        while not self.stop:
            sep = "&" if "?" in path else "?"
            t = time.monotonic()
            try:
                st, headers, body = await conn.request("GET", f"{path}{sep}index={index}&wait={WAIT_S}s",
                                                       timeout=WAIT_S * 1.2 + 10)
            except asyncio.TimeoutError:
                self.err.add("watcher", f"{ip} {path}: no answer after {time.monotonic() - t:.0f}s (wait {WAIT_S}s)")
                continue
            except Exception as e:
                if not self.stop:
                    self.err.add("watcher", f"{ip} {path}: {type(e).__name__} {e}")
                    await asyncio.sleep(0.5)
                continue
            if st not in (200, 404) or (st == 404 and "/kv/" not in path):
                self.err.add("watcher", f"{ip} {path}: {st} {body[:200]!r}")
                await asyncio.sleep(0.5)
                continue
            new = int(headers.get("x-consul-index", "0"))
            if new < index:
                self.err.add("watcher", f"{ip} {path}: index went back {index} -> {new}")
            if index == 0:
                self.watchers_armed += 1
            elif new > index:
                self.wakes += 1
            index = max(new, 1)
        await conn.close()


# ---------------------------------------------------------------- DNS

class Dnsperf:
    """One dnsperf process against one agent; latencies bucketed per minute."""

    def __init__(self, ip, qps, datafile, t0):
        self.ip, self.t0 = ip, t0
        self.lat = {}                 # minute -> [seconds]
        self.rcodes = {}
        self.timeouts = 0
        self.other = []
        self.proc = subprocess.Popen(
            ["dnsperf", "-s", ip, "-p", "8600", "-d", datafile, "-T", "1", "-c", "2", "-q", "50", "-Q", str(qps),
             "-t", "2", "-l", "100000", "-v"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1 << 16)
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        for line in self.proc.stdout:
            parts = line.split()
            if line.startswith("> ") and len(parts) == 5 and parts[1].isupper():
                # "> NOERROR name type latency"
                rcode = parts[1]
                self.rcodes[rcode] = self.rcodes.get(rcode, 0) + 1
                minute = int((time.monotonic() - self.t0) // 60)
                if rcode in ("NOERROR", "NXDOMAIN"):
                    self.lat.setdefault(minute, []).append(float(parts[-1]))
            elif line.startswith("> T ") or "timed out" in line.lower():
                self.timeouts += 1
            elif line.startswith("> I "):
                pass                  # still outstanding when dnsperf was stopped
            elif line.strip() and len(self.other) < 20 and not line.startswith(("DNS Performance", "Version",
                                                                                    "[Status]", "  ", "Statistics")):
                self.other.append(line.strip())

    def stop(self):
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.thread.join(5)


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))] if xs else float("nan")


def dns_a(server, name, timeout=2.0):
    """(rcode, set of A addresses) for name from server:8600."""
    qname = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    qid = random.getrandbits(16)
    query = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + qname + struct.pack(">HH", 1, 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(timeout)
    try:
        s.sendto(query, (server, 8600))
        while True:
            data, _ = s.recvfrom(65535)
            if struct.unpack(">H", data[:2])[0] == qid:
                break
    finally:
        s.close()
    rcode = data[3] & 0xF
    an = struct.unpack(">H", data[6:8])[0]
    pos = 12 + len(qname) + 4
    addrs = set()
    for _ in range(an):
        # Names in answers are compression pointers or labels.
        while True:
            ln = data[pos]
            if ln & 0xC0 == 0xC0:
                pos += 2
                break
            pos += 1 + ln
            if ln == 0:
                break
        rtype, _, _, rdlen = struct.unpack(">HHIH", data[pos:pos + 10])
        pos += 10
        if rtype == 1:
            addrs.add(socket.inet_ntoa(data[pos:pos + 4]))
        pos += rdlen
    return rcode, addrs


# ---------------------------------------------------------------- main

def release_bin():
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    return os.path.join(target, "release", "cairn")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--kv-rate", type=float, default=200)
    ap.add_argument("--kv-keys", type=int, default=2000,
                    help="keys each of the six KV writers cycles over (0: a new key for every write, so the data set grows)")
    ap.add_argument("--dns-qps", type=int, default=800, help="per agent")
    ap.add_argument("--watchers", type=int, default=1000)
    ap.add_argument("--flaps", type=float, default=5, help="check status changes per second")
    ap.add_argument("--no-doc", action="store_true")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (logs, data)")
    ap.add_argument("--bin", help="the cairn binary to run (default: build and run the release binary)")
    args = ap.parse_args()
    if not shutil.which("dnsperf"):
        sys.exit("dnsperf is required (apt-get install dnsperf)")
    if args.bin:
        cluster.BIN = os.path.abspath(args.bin)
    else:
        subprocess.run(["cargo", "build", "--release", "--quiet", "--bin", "cairn"], cwd=ROOT, check=True)
        cluster.BIN = release_bin()
    work = tempfile.mkdtemp(prefix="cairn-mixed-soak-")
    joins = [f"-retry-join={ip}" for ip in SERVERS]
    agents = [cluster.Agent(work, f"s{i+1}", ip, ["-server", "-bootstrap-expect=3"] +
                            [j for j in joins if not j.endswith(ip)]) for i, ip in enumerate(SERVERS)]
    agents += [cluster.Agent(work, f"c{i+1}", ip, joins) for i, ip in enumerate(CLIENTS)]
    ips = SERVERS + CLIENTS
    dnsperfs = []
    failures = []
    try:
        for a in agents:
            a.start()
        if not wait(lambda: cluster.agreed(agents[:3]), 30):
            sys.exit("no leader")
        if not wait(lambda: len([m for m in json.loads(http("GET", f"http://{SERVERS[0]}:8500/v1/agent/members")[1] or "[]")
                                 if m["Status"] == 1]) == 6, 30, 0.2):
            sys.exit("members did not converge")
        for ip in CLIENTS:
            for n in range(SERVICES):
                body = json.dumps({"Name": f"svc-{n}", "ID": f"svc-{n}", "Port": 8000 + n,
                                   "Check": {"TTL": "10m", "Status": "passing"}})
                st, text = http("PUT", f"http://{ip}:8500/v1/agent/service/register", body)
                if st != 200:
                    sys.exit(f"register svc-{n} on {ip}: {st} {text}")
        # Every agent's DNS has all services before the load starts.
        for ip in ips:
            if not wait(lambda: len(dns_a(ip, f"svc-{SERVICES - 1}.service.consul")[1]) == 3, 30, 0.2):
                sys.exit(f"{ip}: services not in DNS")
        data = os.path.join(work, "queries.txt")
        with open(data, "w") as f:
            for n in range(SERVICES):
                f.write(f"svc-{n}.service.consul A\nsvc-{n}.service.consul SRV\n")
        t0 = time.monotonic()
        load = Load(args, ips)
        load.t0 = t0
        samples = {a.name: [] for a in agents}
        sampler_stop = threading.Event()

        terms = []
        loads = []

        def raft_term():
            ts = []
            for ip in SERVERS:
                code, body = http("GET", f"http://{ip}:8500/v1/agent/self", timeout=2)
                if code == 200:
                    ts.append(int(json.loads(body)["Stats"]["raft"]["term"]))
            return max(ts) if ts else None

        def sampler():
            while True:
                now = time.monotonic() - t0
                for a in agents:
                    if a.proc and a.proc.poll() is None:
                        ring = ring_sample(a.ip) if a.ip in SERVERS else (0, 0)
                        samples[a.name].append((now,) + proc_sample(a.proc.pid) + ring)
                t = raft_term()
                if t is not None:
                    terms.append(t)
                loads.append(os.getloadavg()[0])
                if sampler_stop.wait(10):
                    return
        st = threading.Thread(target=sampler, daemon=True)
        st.start()

        # False failure detections: every agent's member list, polled every
        # 0.5 s; any member seen other than alive (no agent is stopped
        # during the run) is one.
        not_alive = []
        member_polls = [0]

        def member_watch():
            while not sampler_stop.wait(0.5):
                for ip in ips:
                    code, body = http("GET", f"http://{ip}:8500/v1/agent/members", timeout=2)
                    if code != 200:
                        continue
                    member_polls[0] += 1
                    for m in json.loads(body or "[]"):
                        if m.get("Status") != 1:
                            not_alive.append((round(time.monotonic() - t0, 1), ip, m.get("Name"), m.get("Status")))
        mw = threading.Thread(target=member_watch, daemon=True)
        mw.start()
        dnsperfs = [Dnsperf(ip, args.dns_qps, data, t0) for ip in ips]

        async def run():
            tasks = []
            # Watchers first, opened in batches, then the writers.
            half = args.watchers // 2
            for i in range(args.watchers):
                ip = ips[i % len(ips)]
                path = (f"/v1/kv/soak/watch/{i % 100}" if i < half
                        else f"/v1/health/service/svc-{i % SERVICES}?passing")
                tasks.append(asyncio.create_task(load.watcher(i, ip, path)))
                if i % 100 == 99:
                    await asyncio.sleep(0.05)
            per = args.kv_rate / len(ips)
            tasks += [asyncio.create_task(load.kv_writer(w, ip, per)) for w, ip in enumerate(ips)]
            tasks.append(asyncio.create_task(load.watch_writer(20)))
            tasks.append(asyncio.create_task(load.flapper(args.flaps)))
            end = t0 + args.minutes * 60
            last = 0
            while time.monotonic() < end:
                await asyncio.sleep(1)
                m = int((time.monotonic() - t0) // 60)
                if m != last:
                    last = m
                    q = sum(len(d.lat.get(m - 1, [])) for d in dnsperfs)
                    p99 = pct([x for d in dnsperfs for x in d.lat.get(m - 1, [])], 0.99)
                    print(f"minute {m}: kv acked {load.kv_ok}, flaps {load.flaps_acked}, "
                          f"wakes {load.wakes}, armed {load.watchers_armed}, dns {q / 60:.0f}/s p99 {p99 * 1000:.2f} ms, "
                          f"errors {load.err.counts}", flush=True)
            load.stop = True
            load.end = time.monotonic() - t0
            await asyncio.wait(tasks, timeout=WAIT_S * 1.2 + 15)
            for t in tasks:
                t.cancel()
        asyncio.run(run())
        elapsed = time.monotonic() - t0
        for d in dnsperfs:
            d.stop()
        sampler_stop.set()
        st.join()
        for a in agents:
            if a.proc.poll() is not None:
                failures.append(f"agent {a.name} exited with {a.proc.returncode}")

        # ---- verification
        leader = cluster.agreed(agents[:3]).split(":")[0] or SERVERS[0]
        missing = wrong = 0
        for prefix in sorted({k.rsplit("/", 1)[0] for k in load.kv_acked}):
            code, body = http("GET", f"http://{leader}:8500/v1/kv/{prefix}/?recurse&consistent", timeout=30)
            got = {}
            if code == 200:
                got = {e["Key"]: base64.b64decode(e["Value"] or "").decode() for e in json.loads(body)}
            for k, v in load.kv_acked.items():
                if k.rsplit("/", 1)[0] == prefix:
                    if k not in got:
                        missing += 1
                    elif got[k] != v and got[k] not in load.kv_maybe.get(k, ()):
                        wrong += 1
        for k, v in load.watch_acked.items():
            code, body = http("GET", f"http://{leader}:8500/v1/kv/{k}?raw&consistent")
            if code != 200:
                missing += 1
            elif body != v:
                wrong += 1
        if missing or wrong:
            failures.append(f"KV: {missing} acknowledged writes missing, {wrong} with another value")
        # Checks: the catalog, then every agent's DNS, agree with the last acknowledged status.
        check_bad = 0
        for n in range(SERVICES):
            want = {ip for ip in CLIENTS if load.check_state.get((ip, n)) == "passing"}
            code, body = http("GET", f"http://{leader}:8500/v1/health/service/svc-{n}?passing&consistent")
            got = {e["Node"]["Address"] for e in json.loads(body)} if code == 200 else None
            if got != want:
                check_bad += 1
                if check_bad <= 5:
                    failures.append(f"svc-{n}: catalog passing {got}, expected {want}")
        dns_bad = 0
        for ip in ips:
            for n in range(SERVICES):
                want = {c for c in CLIENTS if load.check_state.get((c, n)) == "passing"}

                def ok():
                    try:
                        return dns_a(ip, f"svc-{n}.service.consul")[1] == want
                    except socket.timeout:
                        return False
                if not wait(ok, 10, 0.1):
                    dns_bad += 1
                    if dns_bad <= 5:
                        failures.append(f"{ip} svc-{n}: DNS {dns_a(ip, f'svc-{n}.service.consul')[1]}, expected {want}")
        if check_bad or dns_bad:
            failures.append(f"checks: {check_bad} services wrong in the catalog, {dns_bad} (agent, service) wrong in DNS")
    finally:
        for d in dnsperfs:
            if d.proc.poll() is None:
                d.proc.kill()
        for a in agents:
            a.kill()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    # ---- figures
    minutes = sorted({m for d in dnsperfs for m in d.lat if m < int(args.minutes)})
    dns_rows = []
    first_p99 = None
    for m in minutes:
        lat = [x for d in dnsperfs for x in d.lat.get(m, [])]
        p50, p99 = pct(lat, 0.5), pct(lat, 0.99)
        if first_p99 is None:
            first_p99 = p99
        dns_rows.append((m + 1, len(lat) / 60, p50 * 1000, p99 * 1000, p99 / first_p99))
        if p99 > 2 * first_p99:
            failures.append(f"DNS p99 of minute {m + 1} ({p99 * 1000:.2f} ms) above 2x minute 1 ({first_p99 * 1000:.2f} ms)")
    rcodes = {}
    for d in dnsperfs:
        for k, v in d.rcodes.items():
            rcodes[k] = rcodes.get(k, 0) + v
    dns_timeouts = sum(d.timeouts for d in dnsperfs)
    dns_errors = sum(v for k, v in rcodes.items() if k not in ("NOERROR", "NXDOMAIN")) + dns_timeouts
    answered = sum(rcodes.values())
    err = load.err
    for kind in ("kv write", "check update", "watcher"):
        if err.total(kind):
            failures.append(f"{err.total(kind)} {kind} errors")
    if dns_errors:
        failures.append(f"{dns_errors} DNS errors (timeouts {dns_timeouts}, rcodes {rcodes})")
    if load.watchers_armed < args.watchers:
        failures.append(f"only {load.watchers_armed} of {args.watchers} watchers answered at all")
    for d in dnsperfs:
        for line in d.other:
            print(f"dnsperf {d.ip}: {line}")

    mem_rows = []
    for a in agents:
        s = [x for x in samples[a.name] if x[0] <= load.end]
        if not s:
            continue
        half = [x for x in s if x[0] >= s[-1][0] / 2]
        mib = lambda rows, i: [(x[0], x[i] / 1024) for x in rows]
        # RSS anon less the feed ring's estimated size: what is not the ring.
        rest = lambda rows: [(x[0], (x[1] - x[6]) / 1024) for x in rows]
        mem_rows.append((a.name, s[0][1] / 1024, s[-1][1] / 1024, slope_per_hour(mib(s, 1)), slope_per_hour(mib(half, 1)),
                         s[-1][5], s[-1][6] / 1024, slope_per_hour(rest(half)),
                         s[0][2] / 1024, s[-1][2] / 1024, slope_per_hour(mib(s, 2)),
                         s[0][3], s[-1][3], slope_per_hour([(x[0], x[3]) for x in s]),
                         slope_per_hour([(x[0], x[3]) for x in half]), s[0][4], s[-1][4]))
    date = time.strftime('%Y-%m-%d', time.gmtime())
    lines = [
        "## Soak: 10 minutes of mixed load" if args.minutes == 10 else f"## Soak: {args.minutes:g} minutes of mixed load",
        "",
        f"Command: `benches/soak.py --minutes {args.minutes:g}{'' if args.kv_keys == 2000 else f' --kv-keys {args.kv_keys}'}` (release build; 3 servers + 3 client agents on loopback; "
        f"run on {date}, {os.cpu_count()} cores; 1-minute load average, the soak's own processes included, "
        f"{sum(loads) / max(len(loads), 1):.1f} on average over the run, {max(loads, default=0):.1f} at most). "
        f"All at once for {elapsed / 60:.1f} minutes: KV PUTs at {args.kv_rate:g}/s spread over the six agents "
        f"({'each writing a new key every time' if not args.kv_keys else f'cycling over {6 * args.kv_keys} keys'}); "
        f"dnsperf against every agent at {args.dns_qps}/s each (A and SRV of the 100 services); "
        f"{args.watchers} blocking queries (half KV keys rewritten 20 times a second, half `/v1/health/service/<svc>?passing`), "
        f"re-armed on every wake; {args.flaps:g} TTL-check status changes a second over 100 services x 3 client agents.",
        "",
        f"- KV writes: {load.kv_ok} of {load.kv_sent} acknowledged ({load.kv_ok / elapsed:.0f}/s); latency through a server "
        f"p50 {pct(load.kv_lat['server'], 0.5) * 1000:.1f} ms, p99 {pct(load.kv_lat['server'], 0.99) * 1000:.1f} ms, "
        f"through a client agent p50 {pct(load.kv_lat['client'], 0.5) * 1000:.1f} ms, p99 {pct(load.kv_lat['client'], 0.99) * 1000:.1f} ms",
        f"- KV writes acknowledged: {len(load.kv_acked) + len(load.watch_acked)} unique keys checked "
        f"({len(load.kv_acked)} by the KV writers, {len(load.watch_acked)} by the watchers' writer; last acknowledged value of each); "
        f"missing or wrong at the end (`?consistent`): **{missing + wrong}**",
        f"- check status changes acknowledged: {load.flaps_acked}; services whose final health differs from the last "
        f"acknowledged status: catalog **{check_bad}**, DNS of any agent **{dns_bad}**",
        f"- watcher wakes: {load.wakes}; errors: **{err.total('watcher')}**",
        f"- kept-alive connections found closed by an agent and replaced: {REPLACED[0]}",
        f"- raft terms started during the run (leader elections): {terms[-1] - terms[0] if terms else '?'}",
        f"- false failure detections (a member seen not alive in {member_polls[0]} polls of every agent's member "
        f"list, every 0.5 s): **{len(not_alive)}**" + (f" {not_alive[:5]}" if not_alive else ""),
        f"- errors: KV writes **{err.total('kv write')}**, check updates **{err.total('check update')}**, "
        f"DNS **{dns_errors}** of {answered + dns_timeouts} queries (rcodes {rcodes}, timeouts {dns_timeouts})",
        "",
        "| minute | DNS queries/s | p50 | p99 | p99 / minute 1 |",
        "|---|---|---|---|---|",
    ] + [f"| {m} | {q:.0f} | {p50:.2f} ms | {p99:.2f} ms | {r:.2f} |" for m, q, p50, p99, r in dns_rows] + [
        "",
        "Every agent sampled every 10 s (`/proc/<pid>/status`, `/proc/<pid>/fd`, and on servers the feed ring's "
        "`cairn.feed.ring_entries` / `cairn.feed.ring_bytes` from `/v1/agent/metrics`); slope: least squares, "
        "per hour; \"less ring\" is RSS anon minus the ring's estimated size:",
        "",
        "| agent | RSS anon start → end | slope | 2nd half | ring at end | less ring, 2nd half | RSS file start → end | slope | fds start → end | slope | 2nd half | sockets start → end |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ] + [f"| {n} | {a0:.1f} → {a1:.1f} MiB | {sa:+.1f} MiB/h | {sa2:+.1f} MiB/h | "
         f"{(f'{re} entries, {rk:.1f} MiB' if re else '-')} | {sr:+.1f} MiB/h | {f0:.1f} → {f1:.1f} MiB | "
         f"{sf:+.1f} MiB/h | {d0} → {d1} | {sd:+.0f}/h | {sd2:+.0f}/h | {k0} → {k1} |"
         for n, a0, a1, sa, sa2, re, rk, sr, f0, f1, sf, d0, d1, sd, sd2, k0, k1 in mem_rows] + [
        "",
        f"Checks: {'all passed' if not failures else 'FAILED: ' + '; '.join(failures)}.",
        "",
        "Reading the figures: every process here (the six agents, dnsperf, the Python load) shares the machine's "
        "cores, so write latencies reflect a loaded machine (the cluster section above has the write latency of a "
        "quiet one). Health reads wake on any catalog change, so most watcher wakes are the health watchers "
        "returning on each check change. A server's memory includes its feed ring (the recent entries client "
        "agents resume from), which grows until it holds 200,000 entries or an estimated 64 MiB and is then "
        "trimmed from its oldest end.",
    ]
    body = "\n".join(lines) + "\n"
    print(body)
    if err.samples:
        print("first errors:\n  " + "\n  ".join(err.samples))
    if not args.no_doc:
        replace_section(os.path.join(ROOT, "docs", "benchmarks.md"), "mixed-soak", body)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
