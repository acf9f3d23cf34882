"""Runs py-consul's tests inside the private network namespace scripts/py-consul made.

Usage: run.py <cairn binary> <sdist dir> <results dir> <venv python> [pytest args...]

Brings the namespace's loopback up, starts the Docker Engine API stand-in
(dockerd.py) on a Unix socket, runs pytest with DOCKER_HOST pointing at it,
writing junit xml and the full output to the results dir, then stops the
stand-in, which stops every agent it started.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

PER_TEST_TIMEOUT = "60"


def main() -> int:
    cairn, src, results, python, *extra = sys.argv[1:]
    here = os.path.dirname(os.path.abspath(__file__))
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    sock = os.path.join(results, "docker.sock")
    with open(os.path.join(results, "dockerd.log"), "wb") as log:
        dockerd = subprocess.Popen(
            [python, os.path.join(here, "dockerd.py"), sock, cairn, os.path.join(results, "containers")],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.time() + 10
        while not os.path.exists(sock):
            if dockerd.poll() is not None or time.time() > deadline:
                print("py-consul: the docker stand-in did not start; see dockerd.log", file=sys.stderr)
                return 1
            time.sleep(0.05)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CONSUL_", "DOCKER_"))}
        env["DOCKER_HOST"] = f"unix://{sock}"
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        env["PYTHONPATH"] = os.pathsep.join(p for p in [here, env.get("PYTHONPATH", "")] if p)
        cmd = [
            python, "-m", "pytest",
            "-o", "addopts=",
            "-p", "no:cacheprovider",
            "-p", "one_version",
            f"--timeout={PER_TEST_TIMEOUT}",
            f"--junitxml={os.path.join(results, 'junit.xml')}",
            "-q", "-rfE",
            *extra,
            "tests",
        ]  # fmt: skip
        with open(os.path.join(results, "pytest.log"), "wb") as out:
            proc = subprocess.Popen(cmd, cwd=src, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            assert proc.stdout is not None
            for line in proc.stdout:
                sys.stdout.buffer.write(line)
                sys.stdout.flush()
                out.write(line)
                out.flush()
            return proc.wait()
    finally:
        dockerd.terminate()
        try:
            dockerd.wait(30)
        except subprocess.TimeoutExpired:
            dockerd.kill()


if __name__ == "__main__":
    sys.exit(main())
