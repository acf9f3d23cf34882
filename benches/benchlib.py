"""Helpers shared by the Python benchmark scripts."""
import os, time, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "cairn")


def http(method, url, body=None, timeout=5.0):
    """(status, body text); status 0 when the request did not complete."""
    data = body.encode() if isinstance(body, str) else body
    req = urllib.request.Request(url, data=data, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except Exception:
        return 0, ""


def wait(pred, limit, step=0.05):
    end = time.monotonic() + limit
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(step)
    return False


def replace_section(path, name, body):
    """Rewrites the block between <!-- NAME:begin --> and <!-- NAME:end -->
    in docs/benchmarks.md (appending it if absent), as benches/lib.sh does."""
    body = body.rstrip() + "\n"
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    text = open(path).read() if os.path.exists(path) else "# Benchmarks\n"
    block = f"{begin}\n{body}{end}"
    if begin in text and end in text:
        text = text.split(begin)[0] + block + text.split(end, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    open(path, "w").write(text)
