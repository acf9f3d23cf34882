#!/usr/bin/env python3
"""Load client for benches/blocking.sh: holds N blocking KV queries open
against one agent and measures (1) the agent's RSS cost of them, (2) that a
write elsewhere wakes none of them, (3) how fast the watcher of a changed
key returns, and (4) how long it takes until all N watchers of one prefix
have returned after a write under it. Prints a JSON summary.

Raw HTTP/1.1 over asyncio streams, one connection per query, so the
client's own overhead stays small next to the agent's."""

import asyncio
import json
import sys
import time
import urllib.request

HOST = "127.0.0.1"


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def http(port, method, path, body=b""):
    req = urllib.request.Request(f"http://{HOST}:{port}{path}", data=body or None, method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


def kv_index(port, path):
    _, headers, _ = http(port, "GET", path)
    return int(headers.get("x-consul-index", "0"))


async def blocking_get(port, path, started, done, returned):
    """Sends one blocking GET; records when its response has fully arrived."""
    reader, writer = await asyncio.open_connection(HOST, port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    started.append(1)
    try:
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        if length:
            await reader.readexactly(length)
        returned.append((path, time.monotonic()))
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
        pass
    finally:
        writer.close()
    done.append(1)


async def open_watchers(port, paths):
    started, done, returned = [], [], []
    tasks = []
    # Open in batches so the listen backlog never overflows.
    for i in range(0, len(paths), 500):
        for p in paths[i:i + 500]:
            tasks.append(asyncio.create_task(blocking_get(port, p, started, done, returned)))
        while len(started) < len(tasks):
            await asyncio.sleep(0.01)
    return tasks, returned


async def settle(pid, seconds=1.0):
    """Waits until the agent's RSS stops moving (the requests are parked)."""
    last = rss_kib(pid)
    while True:
        await asyncio.sleep(seconds)
        now = rss_kib(pid)
        if abs(now - last) < 256:
            return now
        last = now


async def main():
    port, pid, n = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    out = {"watchers": n}
    loop = asyncio.get_running_loop()

    # Phase 1: n watchers, each on its own (absent) key.
    base_rss = await settle(pid)
    idx = kv_index(port, "/v1/kv/bench/k/0")
    paths = [f"/v1/kv/bench/k/{i}?index={idx}&wait=120s" for i in range(n)]
    tasks, returned = await open_watchers(port, paths)
    loaded_rss = await settle(pid, 2.0)
    out["rss_before_kib"] = base_rss
    out["rss_with_watchers_kib"] = loaded_rss
    out["rss_per_watcher_bytes"] = round((loaded_rss - base_rss) * 1024 / n)

    # An unrelated write must wake nobody.
    await loop.run_in_executor(None, http, port, "PUT", "/v1/kv/bench/elsewhere", b"x")
    await asyncio.sleep(1.0)
    out["returned_after_unrelated_write"] = len(returned)

    # A write to one watched key wakes exactly its watcher, quickly.
    if out["returned_after_unrelated_write"]:
        raise SystemExit(f"watchers returned early: {out}")
    lat = []
    for k in (1, n // 2, n - 1):
        before = len(returned)
        t0 = time.monotonic()
        await loop.run_in_executor(None, http, port, "PUT", f"/v1/kv/bench/k/{k}", b"v")
        deadline = time.monotonic() + 10
        while len(returned) == before and time.monotonic() < deadline:
            await asyncio.sleep(0.0005)
        lat.append((returned[-1][1] - t0) * 1000)
    await asyncio.sleep(0.5)
    out["key_change_latency_ms"] = [round(x, 2) for x in lat]
    out["returned_after_3_key_writes"] = len(returned)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.sleep(1.0)

    # Phase 2: n watchers of one prefix; one write under it wakes them all.
    idx = kv_index(port, "/v1/kv/bench/p/?recurse")
    paths = [f"/v1/kv/bench/p/?recurse&index={idx}&wait=120s" for _ in range(n)]
    tasks, returned = await open_watchers(port, paths)
    await settle(pid, 2.0)
    t0 = time.monotonic()
    await loop.run_in_executor(None, http, port, "PUT", "/v1/kv/bench/p/changed", b"v")
    deadline = time.monotonic() + 30
    while len(returned) < n and time.monotonic() < deadline:
        await asyncio.sleep(0.001)
    times = sorted((t - t0) * 1000 for _, t in returned)
    out["prefix_returned"] = len(times)
    if times:
        out["prefix_first_ms"] = round(times[0], 1)
        out["prefix_p50_ms"] = round(times[len(times) // 2], 1)
        out["prefix_p99_ms"] = round(times[min(len(times) - 1, int(len(times) * 0.99))], 1)
        out["prefix_all_ms"] = round(times[-1], 1)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    print(json.dumps(out))


asyncio.run(main())
