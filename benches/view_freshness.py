#!/usr/bin/env python3
"""How soon a change committed on the leader shows in a client agent's DNS.

3 servers and 2 client agents on loopback. Each trial registers a new
service through the leader's HTTP API (`PUT /v1/catalog/register`, which
answers once the write is committed and applied on the leader), then asks
each client agent's DNS for it over UDP every half millisecond until the
answer carries the instance's address. The client agents answer from their
views, fed by subscriptions to followers; the time measured is commit on
the leader -> follower applies -> feed -> client view -> DNS index rebuilt.

Writes the results into docs/benchmarks.md (section "view-freshness").
Usage: benches/view_freshness.py [--trials 200]
"""
import argparse, json, os, signal, socket, statistics, struct, subprocess, sys, tempfile, time

from benchlib import BIN, ROOT, http, replace_section, wait


def query(name, qid):
    q = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    for label in name.rstrip(".").split("."):
        q += bytes([len(label)]) + label.encode()
    return q + b"\x00" + struct.pack(">HH", 1, 1)


def has_answer(sock, addr, name, qid):
    sock.sendto(query(name, qid), addr)
    try:
        data, _ = sock.recvfrom(4096)
    except socket.timeout:
        return False
    rid, _flags, _qd, an = struct.unpack(">HHHH", data[:8])
    return rid == qid and an > 0


def agent(work, name, ip, args):
    log = open(os.path.join(work, name + ".log"), "ab")
    cmd = [BIN, "agent", f"-node={name}", f"-bind={ip}", f"-client={ip}",
           f"-data-dir={os.path.join(work, name)}", "-retry-interval=1s", "-log-level=warn"] + args
    return subprocess.Popen(cmd, stdout=log, stderr=log)


def leader_of(ip):
    code, body = http("GET", f"http://{ip}:8500/v1/status/leader", timeout=1)
    return json.loads(body) if code == 200 and body else ""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=200)
    args = ap.parse_args()
    subprocess.run(["cargo", "build", "--release", "--quiet", "--bin", "cairn"], cwd=ROOT, check=True)
    work = tempfile.mkdtemp(prefix="cairn-fresh-")
    sips = [f"127.0.62.{i}" for i in (1, 2, 3)]
    cips = ["127.0.62.4", "127.0.62.5"]
    procs = [agent(work, f"s{i + 1}", ip, ["-server", "-bootstrap-expect=3"] +
                   [f"-retry-join={o}" for o in sips if o != ip]) for i, ip in enumerate(sips)]
    procs += [agent(work, f"c{i + 4}", ip, [f"-retry-join={sips[0]}"]) for i, ip in enumerate(cips)]
    try:
        if not wait(lambda: leader_of(sips[0]) and all(leader_of(ip) == leader_of(sips[0]) for ip in sips + cips), 30):
            sys.exit("no leader known everywhere")
        leader = leader_of(sips[0]).split(":")[0]
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.settimeout(0.05)
        times = {ip: [] for ip in cips}
        for t in range(args.trials):
            name = f"fresh{t}"
            body = json.dumps({"Node": f"ext-{t}", "Address": f"10.7.{t // 250}.{t % 250 + 1}",
                               "Service": {"Service": name, "Port": 80}})
            code, resp = http("PUT", f"http://{leader}:8500/v1/catalog/register", body)
            committed = time.monotonic()
            if code != 200:
                sys.exit(f"register failed: {code} {resp}")
            pending = set(cips)
            qid = 1
            while pending and time.monotonic() - committed < 5:
                for ip in list(pending):
                    qid = (qid + 1) & 0xFFFF
                    if has_answer(sock, (ip, 8600), f"{name}.service.consul", qid):
                        times[ip].append((time.monotonic() - committed) * 1000)
                        pending.discard(ip)
                time.sleep(0.0005)
            if pending:
                sys.exit(f"trial {t}: {sorted(pending)} never answered {name}")
            time.sleep(0.02)
    finally:
        for p in procs:
            p.send_signal(signal.SIGKILL)
            p.wait()

    all_times = sorted(x for v in times.values() for x in v)

    def pct(xs, p):
        return xs[min(len(xs) - 1, int(len(xs) * p))]

    lines = ["| client agent | trials | median | p90 | p99 | max |", "|---|---|---|---|---|---|"]
    for ip in cips + ["both"]:
        xs = sorted(times[ip]) if ip != "both" else all_times
        lines.append(f"| {ip} | {len(xs)} | {statistics.median(xs):.1f} ms | {pct(xs, 0.9):.1f} ms | "
                     f"{pct(xs, 0.99):.1f} ms | {xs[-1]:.1f} ms |")
    table = "\n".join(lines)
    print(table)
    text = ("## From a commit on the leader to a client agent's DNS\n\n"
            f"Command: `benches/view_freshness.py --trials {args.trials}` (3 servers and 2 client agents on "
            f"loopback, release build; each trial registers a new service through the leader and polls both "
            f"client agents' DNS over UDP every 0.5 ms from the moment the leader acknowledged the write). "
            f"Run on {time.strftime('%Y-%m-%d', time.gmtime())}, {os.cpu_count()} cores.\n\n" + table + "\n")
    replace_section(os.path.join(ROOT, "docs", "benchmarks.md"), "view-freshness", text)
    print("wrote docs/benchmarks.md (view-freshness section)")


if __name__ == "__main__":
    main()
