"""A stand-in for the Docker Engine API that runs cairn as "hashicorp/consul".

py-consul's test fixtures (its conftest.py) start Consul with the Docker
SDK: `docker.from_env().containers.run("hashicorp/consul:<v>", "agent -dev
...", ports={8500: None}, environment={"CONSUL_LOCAL_CONFIG": ...})`, read
the published host port from the container's attributes, and later fetch
its logs, stop and remove it. This server answers those Engine API calls
on a Unix socket (point DOCKER_HOST at it) and, for each "container":

* does what the hashicorp/consul image's entrypoint does: writes
  CONSUL_LOCAL_CONFIG to <config dir>/local.json and runs
  `cairn agent -data-dir=<dir> -config-dir=<dir> <command args>`;
* runs it in a network namespace and UTS namespace of its own, as a
  container has, so the agent binds its default ports and reaches itself
  on 127.0.0.1:8500 (the tests register HTTP checks against that address)
  whichever other instance is running, with the container ID's first 12
  characters as its hostname (and so its node name);
* publishes port 8500 as docker does: a listener on a free port of this
  namespace forwards each connection into the container's namespace.

It is used only by scripts/py-consul; nothing else in the project needs it.
Usage: dockerd.py <socket path> <cairn binary> <state dir>
"""

from __future__ import annotations

import ctypes
import http.server
import json
import os
import re
import secrets
import shutil
import signal
import socket
import socketserver
import struct
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from urllib.parse import parse_qs, urlparse

API_VERSION = "1.45"
CLONE_NEWNET = 0x40000000
CONTAINER_HTTP_PORT = 8500
LIBC = ctypes.CDLL(None, use_errno=True)


def now() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


def enter_netns(pid: int) -> None:
    """Moves the calling thread (only) into process `pid`'s network namespace."""
    with open(f"/proc/{pid}/ns/net", "rb") as f:
        if LIBC.setns(f.fileno(), CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))


def pump(src: socket.socket, dst: socket.socket) -> None:
    """Copies src to dst until src ends, then half-closes dst."""
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass


class Container:
    """One cairn agent started as a hashicorp/consul container."""

    def __init__(self, state_dir: str, cairn: str, name: str, spec: dict) -> None:
        self.id = secrets.token_hex(32)
        self.name = name or f"cairn_{self.id[:12]}"
        self.spec = spec
        self.cairn = cairn
        self.dir = os.path.join(state_dir, self.id[:12])
        os.makedirs(os.path.join(self.dir, "config"))
        os.makedirs(os.path.join(self.dir, "data"))
        self.log_path = os.path.join(self.dir, "output.log")
        self.created = now()
        self.started_at = "0001-01-01T00:00:00Z"
        self.finished_at = "0001-01-01T00:00:00Z"
        self.proc: subprocess.Popen | None = None
        self.listener: socket.socket | None = None
        self.host_port = ""
        self.lock = threading.Lock()

    # -- lifecycle --------------------------------------------------------

    def command(self) -> list[str]:
        cmd = self.spec.get("Cmd") or []
        if isinstance(cmd, str):
            cmd = cmd.split()
        if cmd and cmd[0].startswith("-"):
            cmd = ["agent", *cmd]
        if cmd and cmd[0] == "agent":
            # The image's entrypoint: its data and config directories first.
            return [
                "agent",
                f"-data-dir={self.dir}/data",
                f"-config-dir={self.dir}/config",
                *cmd[1:],
            ]
        return cmd

    def start(self) -> None:
        with self.lock:
            if self.running():
                return
            for item in self.spec.get("Env") or []:
                key, _, value = item.partition("=")
                if key == "CONSUL_LOCAL_CONFIG":
                    with open(os.path.join(self.dir, "config", "local.json"), "w") as f:
                        f.write(value + "\n")
            log = open(self.log_path, "ab")
            inner = 'ip link set lo up && hostname "$CONTAINER_HOSTNAME" && exec "$@"'
            env = dict(os.environ, CONTAINER_HOSTNAME=self.id[:12])
            self.proc = subprocess.Popen(
                ["unshare", "--net", "--uts", "--", "sh", "-c", inner, "sh", self.cairn, *self.command()],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
            )
            log.close()
            self.started_at = now()
            self.publish()

    def publish(self) -> None:
        bindings = (self.spec.get("HostConfig") or {}).get("PortBindings") or {}
        if f"{CONTAINER_HTTP_PORT}/tcp" not in bindings or self.listener is not None:
            return
        wanted = bindings[f"{CONTAINER_HTTP_PORT}/tcp"] or [{}]
        port = int(wanted[0].get("HostPort") or 0)
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("0.0.0.0", port))
        listener.listen(128)
        self.listener = listener
        self.host_port = str(listener.getsockname()[1])
        threading.Thread(target=self.accept_loop, args=(listener,), daemon=True).start()

    def accept_loop(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=self.forward, args=(client,), daemon=True).start()

    def forward(self, client: socket.socket) -> None:
        """Runs in its own thread: connects inside the container's namespace."""
        proc = self.proc
        try:
            if proc is None or proc.poll() is not None:
                raise OSError("container not running")
            enter_netns(proc.pid)
            upstream = socket.create_connection(("127.0.0.1", CONTAINER_HTTP_PORT), timeout=5)
            upstream.settimeout(None)
        except OSError:
            client.close()
            return
        back = threading.Thread(target=pump, args=(upstream, client), daemon=True)
        back.start()
        pump(client, upstream)
        back.join()
        client.close()
        upstream.close()

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float) -> bool:
        """Stops the agent as `docker stop` does; False if it was not running."""
        with self.lock:
            if self.listener is not None:
                self.listener.close()
                self.listener = None
            if not self.running():
                return False
            assert self.proc is not None
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
            self.finished_at = now()
            return True

    def remove(self) -> None:
        self.stop(0)
        shutil.rmtree(self.dir, ignore_errors=True)

    def logs(self) -> bytes:
        try:
            with open(self.log_path, "rb") as f:
                return f.read()
        except FileNotFoundError:
            return b""

    # -- inspection -------------------------------------------------------

    def state(self) -> dict:
        code = None if self.proc is None else self.proc.poll()
        running = self.proc is not None and code is None
        if running:
            status = "running"
        elif self.proc is None:
            status = "created"
        else:
            status = "exited"
        return {
            "Status": status,
            "Running": running,
            "Paused": False,
            "Restarting": False,
            "OOMKilled": False,
            "Dead": False,
            "Pid": self.proc.pid if running and self.proc else 0,
            "ExitCode": code or 0,
            "Error": "",
            "StartedAt": self.started_at,
            "FinishedAt": self.finished_at,
        }

    def inspect(self) -> dict:
        ports: dict = {}
        for port in (self.spec.get("ExposedPorts") or {}).keys():
            ports[port] = None
        if self.host_port:
            ports[f"{CONTAINER_HTTP_PORT}/tcp"] = [
                {"HostIp": "0.0.0.0", "HostPort": self.host_port},
            ]
        return {
            "Id": self.id,
            "Created": self.created,
            "Path": self.cairn,
            "Args": self.command(),
            "State": self.state(),
            "Image": self.spec.get("Image", ""),
            "Name": "/" + self.name,
            "Config": {
                "Hostname": self.id[:12],
                "Image": self.spec.get("Image", ""),
                "Cmd": self.spec.get("Cmd"),
                "Env": self.spec.get("Env") or [],
                "Tty": False,
                "ExposedPorts": self.spec.get("ExposedPorts") or {},
                "Labels": self.spec.get("Labels") or {},
            },
            "HostConfig": self.spec.get("HostConfig") or {},
            "NetworkSettings": {"Ports": ports, "IPAddress": "127.0.0.1"},
        }


class Daemon:
    def __init__(self, cairn: str, state_dir: str) -> None:
        self.cairn = cairn
        self.state_dir = state_dir
        self.containers: dict[str, Container] = {}
        self.lock = threading.Lock()

    def find(self, ref: str) -> Container | None:
        with self.lock:
            for c in self.containers.values():
                if ref in (c.id, c.name) or (len(ref) >= 4 and c.id.startswith(ref)):
                    return c
        return None

    def create(self, name: str, spec: dict) -> Container:
        c = Container(self.state_dir, self.cairn, name, spec)
        with self.lock:
            self.containers[c.id] = c
        return c

    def forget(self, c: Container) -> None:
        with self.lock:
            self.containers.pop(c.id, None)

    def shutdown(self) -> None:
        with self.lock:
            all_containers = list(self.containers.values())
        for c in all_containers:
            c.remove()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "cairn-dockerd"
    daemon: Daemon

    def address_string(self) -> str:  # Unix socket peers have no address
        return "unix"

    def log_message(self, format: str, *args) -> None:  # noqa: A002
        sys.stderr.write("dockerd: " + (format % args) + "\n")

    def reply(self, status: int, body: bytes | dict | list | None = None, ctype: str = "application/json") -> None:
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        body = body or b""
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Api-Version", API_VERSION)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def error(self, status: int, message: str) -> None:
        self.reply(status, {"message": message})

    def route(self) -> tuple[str, dict]:
        url = urlparse(self.path)
        path = re.sub(r"^/v[0-9.]+", "", url.path)
        return path, {k: v[-1] for k, v in parse_qs(url.query).items()}

    def body(self) -> dict:
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        return json.loads(raw) if raw.strip() else {}

    def container(self, ref: str) -> Container | None:
        c = self.daemon.find(ref)
        if c is None:
            self.error(404, f"No such container: {ref}")
        return c

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        path, query = self.route()
        if path == "/_ping":
            self.reply(200, b"OK", "text/plain")
        elif path == "/version":
            self.reply(200, {"ApiVersion": API_VERSION, "MinAPIVersion": "1.24", "Version": "cairn", "Os": "linux"})
        elif path == "/containers/json":
            with self.daemon.lock:
                items = list(self.daemon.containers.values())
            self.reply(200, [{"Id": c.id, "Names": ["/" + c.name], "State": c.state()["Status"]} for c in items])
        elif m := re.fullmatch(r"/containers/([^/]+)/json", path):
            if c := self.container(m.group(1)):
                self.reply(200, c.inspect())
        elif m := re.fullmatch(r"/containers/([^/]+)/logs", path):
            if c := self.container(m.group(1)):
                data = c.logs() if query.get("stdout", "0") in ("1", "true", "True") else b""
                # The multiplexed stream of a container without a TTY.
                frames = b"".join(
                    struct.pack(">BxxxL", 1, len(chunk)) + chunk
                    for chunk in (data[i : i + 65536] for i in range(0, len(data), 65536))
                )
                self.reply(200, frames, "application/vnd.docker.multiplexed-stream")
        elif re.fullmatch(r"/images/(.+)/json", path):
            self.reply(200, {"Id": "sha256:" + "0" * 64, "RepoTags": []})
        else:
            self.error(404, f"page not found: {path}")

    def do_POST(self) -> None:
        path, query = self.route()
        if path == "/containers/create":
            name = query.get("name", "")
            if name and self.daemon.find(name):
                self.error(409, f'Conflict. The container name "/{name}" is already in use')
                return
            c = self.daemon.create(name, self.body())
            self.reply(201, {"Id": c.id, "Warnings": []})
        elif path == "/images/create":
            self.reply(200, b'{"status":"Image is up to date"}\n')
        elif m := re.fullmatch(r"/containers/([^/]+)/start", path):
            self.body()
            if c := self.container(m.group(1)):
                if c.running():
                    self.reply(304)
                    return
                try:
                    c.start()
                except OSError as e:
                    self.error(500, f"starting container: {e}")
                    return
                self.reply(204)
        elif m := re.fullmatch(r"/containers/([^/]+)/(stop|kill)", path):
            self.body()
            if c := self.container(m.group(1)):
                timeout = 0.0 if m.group(2) == "kill" else float(query.get("t", "10"))
                self.reply(204 if c.stop(timeout) else 304)
        elif m := re.fullmatch(r"/containers/([^/]+)/wait", path):
            if c := self.container(m.group(1)):
                while c.running():
                    time.sleep(0.1)
                self.reply(200, {"StatusCode": c.state()["ExitCode"]})
        else:
            self.error(404, f"page not found: {path}")

    def do_DELETE(self) -> None:
        path, query = self.route()
        if m := re.fullmatch(r"/containers/([^/]+)", path):
            if c := self.container(m.group(1)):
                if c.running() and query.get("force") not in ("1", "true", "True"):
                    self.error(409, f"cannot remove container {c.name}: container is running")
                    return
                c.remove()
                self.daemon.forget(c)
                self.reply(204)
        else:
            self.error(404, f"page not found: {path}")


class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


def main() -> None:
    sock_path, cairn, state_dir = sys.argv[1:4]
    os.makedirs(state_dir, exist_ok=True)
    daemon = Daemon(cairn, state_dir)
    Handler.daemon = daemon
    if os.path.exists(sock_path):
        os.unlink(sock_path)
    server = Server(sock_path, Handler)

    def stop(*_args) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        server.serve_forever()
    finally:
        daemon.shutdown()
        os.unlink(sock_path)


if __name__ == "__main__":
    main()
