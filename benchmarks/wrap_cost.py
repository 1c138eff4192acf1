"""What does lab.servers.asgi_wrap cost? For each server at 1 worker, /hello of apps.article with
wrk, served wrapped and unwrapped, side by side in alternating rounds: req/s, and the
server's CPU per request (less sensitive than req/s to other load on the machine).

    python -m benchmarks.wrap_cost [--rounds 3] [--users 64] [--duration 3] [--server NAME]
    python -m benchmarks.wrap_cost --loop-meter [...]
    python -m benchmarks.wrap_cost --in-process

``--loop-meter`` compares the wrapper with its loop meter (``lab.loop_meter = true``)
against the wrapper without it, the same way.

``--in-process`` times the wrapper alone, without a server or a socket: a bare ASGI app and
apps.article's /hello called directly, unwrapped, wrapped, wrapped with its in-flight
meter (``$LAB_METER_DIR``, as the lab serves it) and with its loop meter too, in alternating
batches. On a shared
2-core machine the end-to-end figures vary by ±20–30 % from run to run, far more than the
wrapper costs; this isolates what it and its meter add per request.

Each round starts a fresh server per (server, arm) in turn (one arm first in odd rounds,
the other in even ones), so drift favours neither. The figure is the median req/s
over the rounds; the spread is min–max. It holds the machine's measuring lock, as a lab
run does, so no run measures beside it. wrk must be installed (apt-get install wrk).
"""

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

from tabulate import tabulate

from lab.load import wrk
from lab.load.stats import MachineShare, Spread
from lab.matrix.config import Cell, Experiment, LabSettings
from lab.matrix.endpoint import Endpoint
from lab.run.runner import Context, Launch, measure
from lab.servers import ADAPTERS
from lab.servers.asgi_wrap import LOOP_METER_ENV, METER_DIR_ENV, Wrapped
from lab.store.results import RunDir
from lab.supervise.interrupt import Interrupts
from lab.supervise.lock import FileLock, measuring_lock
from lab.supervise.process import running


def _measure(name: str, lab: LabSettings, exp: Experiment, users: int, tmp: str
             ) -> tuple[float, float]:
    """(req/s, server CPU µs per request)."""
    adapter, launch = ADAPTERS[name], Launch.of(lab)
    run = RunDir(Path(tmp))
    run.logs.mkdir(exist_ok=True)
    ctx = Context(lab, run, Interrupts(), MachineShare(len(os.sched_getaffinity(0)), True))
    with running(lambda port: adapter.argv(sys.executable, launch.app, lab.host, port, 1, {}),
                 lab.host, 1, Path(tmp, f"{name}-{lab.wrap}.log"), lab.start_timeout_s,
                 lab.stop_grace_s, env=launch.env, readiness=launch.readiness) as server:
        f = measure(Cell(name, 1, (), exp, Endpoint("/hello"), users, 1), server, ctx,
                    exp.engine)
    if f.errors or (lab.wrap and sum(f.pids.values()) != f.ok):
        raise RuntimeError(f"{name} wrap={lab.wrap}: errors {f.errors}, pids {f.pids}")
    return float(f.rps or 0.0), 1000.0 * float(f.server_cpu_s_per_1000 or 0.0)


def _shown(s: Spread, digits: int) -> str:
    return f"{s.median:.{digits}f} ({s.low:.{digits}f}–{s.high:.{digits}f})"


async def _bare(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"ok"})


async def _per_call_us(app: Any, n: int) -> float:
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "GET", "scheme": "http", "path": "/hello", "raw_path": b"/hello",
             "query_string": b"", "root_path": "", "headers": [(b"host", b"lab")],
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 2)}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        pass

    t0 = time.perf_counter()
    for _ in range(n):
        await app(dict(scope), receive, send)
    return (time.perf_counter() - t0) / n * 1e6


def _wrapped(inner: Any, meter_dir: str | None, loop: bool = False) -> Wrapped:
    """``inner`` wrapped, after a first call (which opens the meters, as in a worker) with
    ``$LAB_METER_DIR`` set to ``meter_dir`` or unset, and the loop meter on or off."""
    app = Wrapped(inner)
    saved = {k: os.environ.pop(k, None) for k in (METER_DIR_ENV, LOOP_METER_ENV)}
    if meter_dir:
        os.environ[METER_DIR_ENV] = meter_dir
    if loop:
        os.environ[LOOP_METER_ENV] = "1"
    try:
        asyncio.run(_per_call_us(app, 1))
    finally:
        for k, v in saved.items():
            os.environ.pop(k, None)
            if v is not None:
                os.environ[k] = v
    return app


def in_process(batches: int = 9) -> list[list[str]]:
    from apps.article import app as article

    rows = []
    with TemporaryDirectory(prefix="wrap-cost-meter-") as meter_dir:
        for name, inner, n in (("bare ASGI callable", _bare, 20_000),
                               ("apps.article /hello (FastAPI)", article, 3_000)):
            apps = (inner, _wrapped(inner, None), _wrapped(inner, meter_dir),
                    _wrapped(inner, meter_dir, loop=True))
            times: tuple[list[float], ...] = ([], [], [], [])
            for _ in range(batches):
                for app, got in zip(apps, times, strict=True):
                    got.append(asyncio.run(_per_call_us(app, n)))
            a, b, c, d = (Spread.of(t) for t in times)
            rows.append([name, _shown(a, 2), _shown(b, 2), _shown(c, 2), _shown(d, 2),
                         f"{b.median - a.median:+.2f}", f"{c.median - b.median:+.2f}",
                         f"{d.median - c.median:+.2f}"])
    return rows


@contextmanager
def lock_held(lock: FileLock) -> Iterator[None]:
    try:
        yield
    finally:
        lock.release()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.wrap_cost",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--users", type=int, default=64)
    p.add_argument("--duration", type=int, default=3, help="seconds per measurement")
    p.add_argument("--server", action="append", choices=sorted(ADAPTERS))
    p.add_argument("--loop-meter", action="store_true",
                   help="wrapped with the loop meter vs wrapped without it")
    p.add_argument("--in-process", action="store_true",
                   help="time the wrapper alone, called directly (no server)")
    args = p.parse_args(argv)
    if args.in_process:
        print(tabulate(in_process(), headers=["app", "unwrapped µs/call", "wrapped µs/call",
                                              "wrapped + meter µs/call",
                                              "+ loop meter µs/call", "µs added by wrap",
                                              "µs added by meter", "µs added by loop meter"],
                       tablefmt="github", disable_numparse=True))
        return 0
    if not wrk.available():
        print("error: wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 2
    wrapped = LabSettings()
    # (the arm compared, the one it is compared with), as (label, settings)
    arms = (("loop meter", replace(wrapped, loop_meter=True)), ("wrapped", wrapped)) \
        if args.loop_meter else (("wrapped", wrapped), ("unwrapped", replace(wrapped, wrap=False)))
    exp = Experiment("wrap-cost", "closed", (Endpoint("/hello"),), (args.users,), {}, "wrk",
                     10.0, duration_s=args.duration, warmup_s=1.0)
    names = args.server or [n for n, a in ADAPTERS.items() if a.installed()]
    got: dict[tuple[str, str], list[float]] = {}
    cpu: dict[tuple[str, str], list[float]] = {}
    lock = measuring_lock()
    lock.acquire(None, wait=True, on_wait=lambda holder: print(
        f"waiting for the measuring lock held by {holder or 'another lab'}", file=sys.stderr,
        flush=True))
    with lock_held(lock), TemporaryDirectory(prefix="wrap-cost-") as tmp:
        for r in range(args.rounds):
            for name in names:
                for label, lab in arms if r % 2 == 0 else arms[::-1]:
                    rps, us = _measure(name, lab, exp, args.users, tmp)
                    got.setdefault((name, label), []).append(rps)
                    cpu.setdefault((name, label), []).append(us)
                    print(f"round {r + 1} {name} {label}: {rps:.0f} req/s, "
                          f"{us:.1f} µs server CPU per request", file=sys.stderr, flush=True)
    (on_label, _), (off_label, _) = arms
    rows = []
    for name in names:
        on, off = Spread.of(got[(name, on_label)]), Spread.of(got[(name, off_label)])
        con, coff = Spread.of(cpu[(name, on_label)]), Spread.of(cpu[(name, off_label)])
        rows.append([name, _shown(off, 0), _shown(on, 0), f"{on.median / off.median:.2f}",
                     _shown(coff, 1), _shown(con, 1), f"{con.median - coff.median:+.1f}"])
    print(tabulate(rows, headers=["server", f"{off_label} req/s", f"{on_label} req/s",
                                  f"{on_label} ÷ {off_label}", f"{off_label} CPU µs/req",
                                  f"{on_label} CPU µs/req", "CPU µs/req added"],
                   tablefmt="github", disable_numparse=True))
    return 0

if __name__ == "__main__":
    raise SystemExit(main())
