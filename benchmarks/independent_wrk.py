"""An independent check of the lab's throughput figures: no lab code at all.

Starts each server by hand (plain `python -m <server>` with the matrix's options), waits
for it to answer, runs `wrk -t1 -c64` on /hello, and reads the server's CPU from psutil.
Prints req/s, cores used and req/s per core per server and worker count, to set beside
a lab report of the same hour.

    python benchmarks/independent_wrk.py [--seconds 5] [--rounds 2]
"""

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import psutil

APP = "apps.article:app"
SERVERS = {
    "uvicorn": lambda port, w: ["-m", "uvicorn", APP, "--port", str(port), "--workers", str(w),
                                "--no-access-log", "--loop", "uvloop", "--http", "httptools"],
    "hypercorn": lambda port, w: ["-m", "hypercorn", APP, "--bind", f"127.0.0.1:{port}",
                                  "--workers", str(w), "--worker-class", "uvloop"],
    "granian": lambda port, w: ["-m", "granian", "--interface", "asgi", "--port", str(port),
                                "--workers", str(w), "--loop", "uvloop", "--no-access-log",
                                APP],
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_up(url: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer")


def tree_cpu(proc: psutil.Process) -> float:
    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            continue
    return total


def measure(server: str, workers: int, seconds: int) -> tuple[float, float]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, *SERVERS[server](port, workers)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        wait_up(f"http://127.0.0.1:{port}/health")
        time.sleep(1.0)  # every worker up
        url = f"http://127.0.0.1:{port}/hello"
        subprocess.run(["wrk", "-t1", "-c64", "-d1s", url], capture_output=True, check=True)
        ps = psutil.Process(proc.pid)
        cpu0, t0 = tree_cpu(ps), time.monotonic()
        out = subprocess.run(["wrk", "-t1", "-c64", f"-d{seconds}s", url],
                             capture_output=True, text=True, check=True).stdout
        cores = (tree_cpu(ps) - cpu0) / (time.monotonic() - t0)
        m = re.search(r"Requests/sec:\s+([\d.]+)", out)
        assert m and "Non-2xx" not in out, out
        return float(m[1]), cores
    finally:
        stop(proc)


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the server's session, SIGKILL after 5 s."""
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=int, default=5)
    p.add_argument("--rounds", type=int, default=2)
    args = p.parse_args()
    print(f"{'server':10} {'workers':>7} {'req/s':>16} {'cores used':>11} {'req/s/core':>11}")
    for workers in (1, 2):
        for server in SERVERS:
            runs = [measure(server, workers, args.seconds) for _ in range(args.rounds)]
            rps = [r for r, _ in runs]
            cores = sum(c for _, c in runs) / len(runs)
            print(f"{server:10} {workers:7} {min(rps):7.0f}–{max(rps):<7.0f} {cores:11.2f} "
                  f"{sum(rps) / len(rps) / cores:11.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
