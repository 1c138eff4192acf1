"""An independent reference measurement of the servers: the ground truth the lab is checked against.

It imports no code from ``lab`` (only the standard library; the load generator ``wrk`` runs
as a subprocess), so that a bug in the lab's server start-up, readiness check, HTTP client,
timing or parsing cannot also be in the figures it is compared with. Each server is started
by hand (``python -m <server>``, its own process group, 127.0.0.1, a free port, ``--workers``
workers, uvloop, no access log) serving ``apps.article:app``, and stopped at the end
(SIGTERM to the group, SIGKILL after 5 s), also on errors and Ctrl-C.

Per server it measures:

* **warm bursts**: N keep-alive connections are opened and each checked by one
  ``GET /hello``; then the N requests are written in one event-loop turn (a plain loop of
  ``writer.write``) and the wall time runs from just before the first write to the last
  response fully read (status 200, Content-Length body). For each N of ``--n`` on
  ``/non-blocking?delay=D`` and for N=60 on ``/blocking?delay=D`` (60 > the 40 threads of
  the pool: two waves), ``--rounds`` rounds with fresh connections after one untimed warm-up
  round; median, min and max, and the send spread (first to last write call).
* **idle probe**: 200 sequential ``GET /hello`` on one keep-alive connection (after 20
  warm-up requests): p50 and p90 latency.
* **wrk, one connection**: ``wrk -t1 -c1 -d2s --latency /hello``: its p50 and req/s.
* **wrk ceiling**: ``wrk -t1 -c64 -d3s /hello``: req/s, an upper bound for any open-model
  "knee" of that server on this machine.

    .venv/bin/python benchmarks/reference.py [--server uvicorn ...] [--workers 1]
        [--delay 0.1] [--n 10 50] [--rounds 5] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import importlib.metadata
import json
import os
import platform
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent  # /work/main: the app is imported from here
APP = "apps.article:app"
HOST = "127.0.0.1"
WRK = "wrk"
SERVERS = ("uvicorn", "hypercorn", "granian")
BLOCKING_N = 60  # > the 40 threads of anyio's default limiter: two waves
PROBE_WARMUP = 20
PROBE_COUNT = 200
READY_TIMEOUT_S = 30.0
STOP_GRACE_S = 5.0
WARMUP_ROUNDS = 1

Argv = Callable[[int, int], list[str]]


def _uvicorn(port: int, workers: int) -> list[str]:
    return ["-m", "uvicorn", APP, "--host", HOST, "--port", str(port), "--workers", str(workers),
            "--loop", "uvloop", "--http", "httptools", "--no-access-log"]


def _hypercorn(port: int, workers: int) -> list[str]:
    # Hypercorn writes no access log unless --access-logfile is given (default None).
    return ["-m", "hypercorn", APP, "--bind", f"{HOST}:{port}", "--workers", str(workers),
            "--worker-class", "uvloop"]


def _granian(port: int, workers: int) -> list[str]:
    # `python -m granian --help` (2.x): --access-log / --no-access-log, default disabled.
    return ["-m", "granian", "--interface", "asgi", "--host", HOST, "--port", str(port),
            "--workers", str(workers), "--loop", "uvloop", "--no-access-log", APP]


ARGVS: dict[str, Argv] = {"uvicorn": _uvicorn, "hypercorn": _hypercorn, "granian": _granian}


# --------------------------------------------------------------------------- server process


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # a member we cannot signal: still alive
        return True
    return True


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


@dataclass
class Server:
    name: str
    port: int
    proc: subprocess.Popen[bytes]
    log_path: Path
    stop_note: str = ""

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


def _health_ok(port: int) -> tuple[bool, int | None]:
    """One GET /health on a fresh connection (http.client: no proxy settings apply)."""
    conn = http.client.HTTPConnection(HOST, port, timeout=2.0)
    try:
        conn.request("GET", "/health")
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            return False, None
        pid = json.loads(body).get("pid")
        return True, int(pid) if pid is not None else None
    except (OSError, http.client.HTTPException, ValueError):
        return False, None
    finally:
        conn.close()


def wait_ready(server: Server, workers: int, timeout_s: float = READY_TIMEOUT_S) -> float:
    """Poll GET /health with backoff until 200; returns the seconds it took."""
    t0 = time.monotonic()
    deadline = t0 + timeout_s
    pause = 0.02
    while True:
        if server.proc.poll() is not None:
            raise RuntimeError(f"{server.name} exited with {server.proc.returncode} before "
                               f"answering:\n{server.log_tail()}")
        ok, pid = _health_ok(server.port)
        if ok:
            break
        if time.monotonic() + pause > deadline:
            raise RuntimeError(f"{server.name}: /health did not answer 200 within "
                               f"{timeout_s:.0f} s:\n{server.log_tail()}")
        time.sleep(pause)
        pause = min(pause * 1.5, 0.5)
    ready_s = time.monotonic() - t0
    if workers > 1:
        # Best effort: /health answering means one worker is up; wait to see `workers`
        # distinct pids on fresh connections (the kernel or the master spreads them).
        pids = {pid}
        while len(pids) < workers and time.monotonic() < deadline:
            ok, pid = _health_ok(server.port)
            if ok:
                pids.add(pid)
            else:
                time.sleep(0.05)
        if len(pids) < workers:
            print(f"  warning: {server.name}: saw {len(pids)} of {workers} workers answer",
                  file=sys.stderr)
    return ready_s


def stop(server: Server) -> None:
    """SIGTERM to the whole group, SIGKILL after STOP_GRACE_S; no member left behind."""
    pgid = server.proc.pid  # start_new_session: the leader's pid is the group id
    interrupted: BaseException | None = None
    _signal_group(pgid, signal.SIGTERM)
    try:
        server.proc.wait(STOP_GRACE_S)
        server.stop_note = f"exit {server.proc.returncode} on SIGTERM"
    except subprocess.TimeoutExpired:
        server.stop_note = "SIGKILL after 5 s"
    except KeyboardInterrupt as exc:  # a second Ctrl-C: do not wait, kill
        interrupted = exc
        server.stop_note = "SIGKILL (interrupted)"
    # Children (workers) may outlive the leader: wait for the group, then kill it.
    deadline = time.monotonic() + STOP_GRACE_S
    while _group_alive(pgid) and time.monotonic() < deadline and interrupted is None:
        time.sleep(0.05)
    if _group_alive(pgid):
        _signal_group(pgid, signal.SIGKILL)
        if "SIGKILL" not in server.stop_note:
            server.stop_note += "; SIGKILL to leftover group members"
    server.proc.wait()
    deadline = time.monotonic() + 2.0
    while _group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.02)
    if _group_alive(pgid):
        print(f"  warning: process group {pgid} still has members", file=sys.stderr)
    if interrupted is not None:
        raise interrupted


@contextmanager
def running(name: str, workers: int, log_dir: Path) -> Iterator[Server]:
    port = free_port()
    log_path = log_dir / f"{name}-{port}.log"
    argv = [sys.executable, *ARGVS[name](port, workers)]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(argv, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    server = Server(name, port, proc, log_path)
    try:
        yield server
    finally:
        stop(server)


# --------------------------------------------------------------------------- raw HTTP/1.1


Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


def request_bytes(path: str, port: int) -> bytes:
    return (f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nConnection: keep-alive\r\n"
            f"Accept: */*\r\n\r\n").encode("ascii")


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One HTTP/1.1 response: status line, headers, Content-Length (or chunked) body."""
    line = await reader.readline()
    if not line:
        raise ConnectionError("connection closed before the status line")
    parts = line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
        raise ValueError(f"bad status line {line!r}")
    status = int(parts[1])
    length: int | None = None
    chunked = False
    while True:
        h = await reader.readline()
        if h in (b"\r\n", b"\n"):
            break
        if not h:
            raise ConnectionError("connection closed in the headers")
        key, _, value = h.partition(b":")
        key = key.strip().lower()
        if key == b"content-length":
            length = int(value.strip())
        elif key == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    if chunked:
        body = bytearray()
        while True:
            size = int((await reader.readline()).split(b";")[0].strip(), 16)
            if size == 0:
                while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return status, bytes(body)
            body += await reader.readexactly(size)
            await reader.readexactly(2)
    if length is None:
        raise ValueError("response without Content-Length (keep-alive needs one)")
    return status, await reader.readexactly(length)


def check_ok(status: int, body: bytes, endpoint: str) -> None:
    if status != 200:
        raise RuntimeError(f"{endpoint}: status {status}: {body[:200]!r}")
    got = json.loads(body).get("endpoint")
    if got != endpoint:
        raise RuntimeError(f"expected a body from {endpoint}, got {got!r}")


async def get(conn: Conn, path: str, port: int) -> tuple[int, bytes]:
    reader, writer = conn
    writer.write(request_bytes(path, port))
    return await read_response(reader)


async def close_all(conns: list[Conn]) -> None:
    for _, writer in conns:
        writer.close()
    for _, writer in conns:
        try:
            await writer.wait_closed()
        except OSError:
            pass


# --------------------------------------------------------------------------- measurements


@dataclass
class Burst:
    endpoint: str
    n: int
    delay: float
    walls_s: list[float] = field(default_factory=list)
    spreads_s: list[float] = field(default_factory=list)
    first_done_s: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "endpoint": self.endpoint, "n": self.n, "delay_s": self.delay,
            "rounds": len(self.walls_s),
            "median_s": statistics.median(self.walls_s),
            "min_s": min(self.walls_s), "max_s": max(self.walls_s),
            "walls_s": self.walls_s,
            "first_response_s": self.first_done_s,
            "send_spread_median_us": statistics.median(self.spreads_s) * 1e6,
            "send_spread_max_us": max(self.spreads_s) * 1e6,
        }


async def _read_timed(reader: asyncio.StreamReader) -> tuple[int, bytes, float]:
    status, body = await read_response(reader)
    return status, body, time.perf_counter()


async def burst_round(port: int, endpoint: str, n: int, delay: float) -> tuple[float, float,
                                                                                float]:
    """One round: N fresh checked connections, N writes in one loop turn, all read."""
    path = f"{endpoint}?delay={delay:g}"
    conns: list[Conn] = []
    try:
        for _ in range(n):
            conns.append(await asyncio.open_connection(HOST, port))
        for conn in conns:  # each connection accepted and serving
            status, body = await get(conn, "/hello", port)
            check_ok(status, body, "/hello")
        await asyncio.sleep(0.05)  # let the server finish its /hello bookkeeping
        req = request_bytes(path, port)
        writers = [w for _, w in conns]
        t0 = time.perf_counter()
        for w in writers:  # one loop turn: no await in between
            w.write(req)
        t_sent = time.perf_counter()
        async with asyncio.timeout(30.0 + 4 * n * delay):
            results = await asyncio.gather(*(_read_timed(r) for r, _ in conns))
        for status, body, _ in results:
            check_ok(status, body, endpoint)
        done = [t for _, _, t in results]
        return max(done) - t0, t_sent - t0, min(done) - t0
    finally:
        await close_all(conns)


async def measure_bursts(port: int, delay: float, ns: list[int], rounds: int) -> list[Burst]:
    plan = [("/non-blocking", n) for n in ns] + [("/blocking", BLOCKING_N)]
    out: list[Burst] = []
    for endpoint, n in plan:
        b = Burst(endpoint, n, delay)
        for _ in range(WARMUP_ROUNDS):  # untimed: thread pool started, code paths warm
            await burst_round(port, endpoint, n, delay)
        for _ in range(rounds):
            wall, spread, first = await burst_round(port, endpoint, n, delay)
            b.walls_s.append(wall)
            b.spreads_s.append(spread)
            b.first_done_s.append(first)
        out.append(b)
    return out


def quantile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    s = sorted(values)
    pos = (len(s) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


async def measure_probe(port: int) -> dict[str, Any]:
    reader, writer = await asyncio.open_connection(HOST, port)
    conn: Conn = (reader, writer)
    try:
        for _ in range(PROBE_WARMUP):
            status, body = await get(conn, "/hello", port)
            check_ok(status, body, "/hello")
        lat: list[float] = []
        for _ in range(PROBE_COUNT):
            t0 = time.perf_counter()
            status, body = await get(conn, "/hello", port)
            lat.append(time.perf_counter() - t0)
            check_ok(status, body, "/hello")
    finally:
        await close_all([conn])
    ms = [x * 1e3 for x in lat]
    return {"count": len(ms), "p50_ms": quantile(ms, 0.5), "p90_ms": quantile(ms, 0.9),
            "min_ms": min(ms), "max_ms": max(ms)}


async def measure_http(port: int, delay: float, ns: list[int], rounds: int) -> dict[str, Any]:
    probe = await measure_probe(port)  # first, on the idle server
    bursts = await measure_bursts(port, delay, ns, rounds)
    return {"probe": probe, "bursts": [b.summary() for b in bursts]}


_UNIT_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


def _to_ms(value: str, unit: str) -> float:
    return float(value) * _UNIT_MS[unit]


def run_wrk(port: int, connections: int, seconds: int, latency: bool) -> dict[str, Any]:
    argv = [WRK, "-t1", f"-c{connections}", f"-d{seconds}s"]
    if latency:
        argv.append("--latency")
    argv.append(f"http://{HOST}:{port}/hello")
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30)
    out = proc.stdout
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr}{out}")
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", out, re.M)
    total = re.search(r"^\s*(\d+) requests in ([\d.]+)(\w+)", out, re.M)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                     out)
    if rps is None or total is None:
        raise RuntimeError(f"cannot parse wrk output:\n{out}")
    res: dict[str, Any] = {
        "argv": argv, "requests_per_s": float(rps[1]), "requests": int(total[1]),
        "non_2xx": int(non2xx[1]) if non2xx else 0,
        "socket_errors": [int(x) for x in sock.groups()] if sock else [0, 0, 0, 0],
    }
    if latency:
        pcts = {m[1]: _to_ms(m[2], m[3])
                for m in re.finditer(r"^\s+(50|75|90|99)%\s+([\d.]+)(us|ms|s|m|h)\b", out, re.M)}
        if "50" not in pcts:
            raise RuntimeError(f"no 50% line in wrk output:\n{out}")
        res.update({f"p{k}_ms": v for k, v in pcts.items()})
    if res["non_2xx"] or any(res["socket_errors"]):
        print(f"  warning: wrk -c{connections}: non-2xx {res['non_2xx']}, socket errors "
              f"{res['socket_errors']}", file=sys.stderr)
    return res


# --------------------------------------------------------------------------- one server


def measure_server(name: str, workers: int, delay: float, ns: list[int], rounds: int,
                   log_dir: Path) -> dict[str, Any]:
    with running(name, workers, log_dir) as server:
        ready_s = wait_ready(server, workers)
        print(f"  {name}: pid {server.proc.pid}, port {server.port}, ready in {ready_s:.2f} s",
              file=sys.stderr)
        result = asyncio.run(measure_http(server.port, delay, ns, rounds))
        result["wrk_c1"] = run_wrk(server.port, 1, 2, latency=True)
        result["wrk_c64"] = run_wrk(server.port, 64, 3, latency=False)
        if server.proc.poll() is not None:
            raise RuntimeError(f"{name} died during the measurement:\n{server.log_tail()}")
        result.update({"port": server.port, "ready_s": ready_s,
                       "argv": ARGVS[name](server.port, workers), "log": str(server.log_path)})
    result["stop"] = server.stop_note
    return result


# --------------------------------------------------------------------------- report


def _rng(b: dict[str, Any], scale: float = 1.0, fmt: str = ".3f") -> str:
    return (f"{b['median_s'] * scale:{fmt}} [{b['min_s'] * scale:{fmt}}–"
            f"{b['max_s'] * scale:{fmt}}]")


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def report(results: dict[str, dict[str, Any]], delay: float, ns: list[int], rounds: int) -> str:
    names = list(results)
    first = results[names[0]]
    burst_cols = [f"{b['endpoint']} N={b['n']} (s)" for b in first["bursts"]]
    out: list[str] = []

    out.append(f"### Warm bursts (delay={delay:g} s, {rounds} rounds, median [min–max])\n")
    out.append(_table(["server", *burst_cols],
                      [[n, *(_rng(b) for b in results[n]["bursts"])] for n in names]))
    out.append("\n### Send spread: first to last write call (µs, median [max])\n")
    out.append(_table(
        ["server", *(c.replace("(s)", "(µs)") for c in burst_cols)],
        [[n, *(f"{b['send_spread_median_us']:.0f} [{b['send_spread_max_us']:.0f}]"
               for b in results[n]["bursts"])] for n in names]))
    out.append(f"\n### Idle probe: {PROBE_COUNT} sequential GET /hello, one keep-alive "
               "connection (ms)\n")
    out.append(_table(["server", "p50", "p90", "min", "max"],
                      [[n, *(f"{results[n]['probe'][k]:.3f}"
                             for k in ("p50_ms", "p90_ms", "min_ms", "max_ms"))]
                       for n in names]))
    out.append("\n### wrk -t1 -c1 -d2s --latency /hello\n")
    out.append(_table(["server", "p50 ms", "p90 ms", "p99 ms", "req/s"],
                      [[n, *(f"{results[n]['wrk_c1'].get(k, float('nan')):.3f}"
                             for k in ("p50_ms", "p90_ms", "p99_ms")),
                        f"{results[n]['wrk_c1']['requests_per_s']:.0f}"] for n in names]))
    out.append("\n### wrk -t1 -c64 -d3s /hello (ceiling)\n")
    out.append(_table(["server", "req/s", "non-2xx", "socket errors c/r/w/t"],
                      [[n, f"{results[n]['wrk_c64']['requests_per_s']:.0f}",
                        str(results[n]["wrk_c64"]["non_2xx"]),
                        "/".join(map(str, results[n]["wrk_c64"]["socket_errors"]))]
                       for n in names]))
    out.append("\n### Summary\n")
    summary_cols = [f"burst {burst_cols[0]}", *(c.split(" ", 1)[1] if c.startswith(
        "/non-blocking") else c for c in burst_cols[1:])]
    out.append(_table(
        ["server", *summary_cols, "probe p50 ms", "wrk c1 p50 ms", "wrk c64 req/s"],
        [[n, *(_rng(b) for b in results[n]["bursts"]), f"{results[n]['probe']['p50_ms']:.3f}",
          f"{results[n]['wrk_c1']['p50_ms']:.3f}",
          f"{results[n]['wrk_c64']['requests_per_s']:.0f}"] for n in names]))
    return "\n".join(out)


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _wrk_version() -> str:
    proc = subprocess.run([WRK, "-v"], capture_output=True, text=True)
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    return lines[0] if lines else "?"


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    # Handled as Ctrl-C: asyncio.run cancels its task cleanly, then KeyboardInterrupt
    # unwinds through the finally blocks, which stop the server.
    signal.raise_signal(signal.SIGINT)


def main(argv: list[str] | None = None) -> int:
    doc = __doc__ or ""
    p = argparse.ArgumentParser(description=doc.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--server", action="append", choices=SERVERS,
                   help="repeatable; default: all three")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--delay", type=float, default=0.1, help="seconds (default 0.1)")
    p.add_argument("--n", type=int, nargs="+", default=[10, 50],
                   help="burst sizes on /non-blocking (default 10 50)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--json", type=Path, metavar="PATH", help="write all figures as JSON")
    args = p.parse_args(argv)
    servers: list[str] = list(dict.fromkeys(args.server or SERVERS))
    if args.workers < 1 or args.rounds < 1 or min(args.n) < 1 or args.delay < 0:
        p.error("--workers, --rounds and --n must be >= 1, --delay >= 0")

    # A shell starts background jobs with SIGINT ignored; Ctrl-C and SIGTERM must stop us.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return _run(args, servers)
    except KeyboardInterrupt:
        print("\ninterrupted: the server was stopped", file=sys.stderr)
        return 130


def _run(args: argparse.Namespace, servers: list[str]) -> int:
    meta: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "host": platform.node(),
        "python": sys.version.split()[0], "cpus": os.cpu_count(),
        "loadavg_start": os.getloadavg(), "wrk": _wrk_version(),
        "versions": {d: _version(d) for d in (*SERVERS, "uvloop", "httptools", "fastapi")},
        "args": {"servers": servers, "workers": args.workers, "delay": args.delay,
                 "n": args.n, "rounds": args.rounds, "warmup_rounds": WARMUP_ROUNDS},
    }
    results: dict[str, dict[str, Any]] = {}
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="asgi-reference-") as log_dir:
        for name in servers:
            print(f"measuring {name} (workers={args.workers}) ...", file=sys.stderr)
            results[name] = measure_server(name, args.workers, args.delay, args.n,
                                           args.rounds, Path(log_dir))
            results[name].pop("log", None)  # the temp dir is gone at the end
    meta["loadavg_end"] = os.getloadavg()
    meta["duration_s"] = time.monotonic() - t0

    print(f"Reference measurement, workers={args.workers}, {meta['cpus']} CPUs, load "
          f"{meta['loadavg_start'][0]:.2f} → {meta['loadavg_end'][0]:.2f}, "
          f"{meta['duration_s']:.0f} s\n")
    print(report(results, args.delay, args.n, args.rounds))
    for name in servers:
        print(f"\n{name}: stopped ({results[name]['stop']})", file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps({"meta": meta, "servers": results}, indent=2) + "\n")
        print(f"\nJSON: {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
