#!/usr/bin/env python3
"""Check failure -> DNS propagation on one node.

For each trial the driver makes a check fail and polls the agent's DNS
server every millisecond until the instance is gone from the A answer of
<service>.service.consul, and reports the time from the failure being
observed to the instance leaving DNS:

* ttl:  a TTL check is failed with PUT /v1/agent/check/fail/<id>; the clock
        starts just before the request is sent (the request returns once the
        catalog has the change).
* http: an HTTP check's target starts answering 500; the clock starts when
        the target sends its first 500, i.e. when the check observes it.

Usage: checks_probe.py HTTP_PORT DNS_PORT TRIALS
Prints one line per scenario: name trials median_ms max_ms.
"""
import http.server
import json
import socket
import statistics
import struct
import sys
import threading
import time
import urllib.request

HTTP_PORT, DNS_PORT, TRIALS = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
BASE = f"http://127.0.0.1:{HTTP_PORT}"


def put(path, body=None):
    data = json.dumps(body).encode() if body is not None else b""
    req = urllib.request.Request(BASE + path, data=data, method="PUT")
    with urllib.request.urlopen(req, timeout=30) as r:
        r.read()


def dns_query(name):
    qname = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    return struct.pack(">HHHHHH", 0x4242, 0x0100, 1, 0, 0, 0) + qname + struct.pack(">HH", 1, 1)


class Dns:
    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.settimeout(1.0)

    def answers(self, name):
        self.sock.sendto(dns_query(name), ("127.0.0.1", DNS_PORT))
        while True:
            data, _ = self.sock.recvfrom(4096)
            if data[:2] == b"\x42\x42":
                return struct.unpack(">H", data[6:8])[0]


def wait_dns(dns, name, present, limit=30.0):
    """Polls every ms until the A answer is non-empty (present) or empty; returns the time."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            n = dns.answers(name)
        except socket.timeout:
            continue
        if (n > 0) == present:
            return time.monotonic()
        time.sleep(0.001)
    raise SystemExit(f"{name}: DNS never became {'present' if present else 'empty'}")


class Target:
    """An HTTP check target; records when it first answers with a failure."""

    def __init__(self):
        self.code = 200
        self.first_failure = None
        target = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                code = target.code
                if code != 200 and target.first_failure is None:
                    target.first_failure = time.monotonic()
                self.send_response(code)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def ttl_trials(dns):
    put("/v1/agent/service/register", {"Name": "bench-ttl", "Check": {"TTL": "600s", "Status": "passing"}})
    name = "bench-ttl.service.consul"
    out = []
    for _ in range(TRIALS):
        put("/v1/agent/check/pass/service:bench-ttl")
        wait_dns(dns, name, True)
        time.sleep(0.05)
        t0 = time.monotonic()
        put("/v1/agent/check/fail/service:bench-ttl")
        out.append((wait_dns(dns, name, False) - t0) * 1000)
    return out


def http_trials(dns):
    target = Target()
    put("/v1/agent/service/register", {
        "Name": "bench-http",
        "Check": {"HTTP": f"http://127.0.0.1:{target.port}/", "Interval": "1s", "Status": "passing"},
    })
    name = "bench-http.service.consul"
    out = []
    for _ in range(TRIALS):
        target.code = 200
        wait_dns(dns, name, True)
        target.first_failure = None
        target.code = 500
        gone = wait_dns(dns, name, False)
        out.append((gone - target.first_failure) * 1000)
    target.server.shutdown()
    return out


def main():
    dns = Dns()
    for scenario, fn in (("ttl", ttl_trials), ("http", http_trials)):
        samples = fn(dns)
        print(f"{scenario} {len(samples)} {statistics.median(samples):.2f} {max(samples):.2f}")


main()
