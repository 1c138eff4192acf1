"""wrk (Debian package `wrk`): the native closed-loop engine, the default for throughput.

A C client spends a fraction of the CPU a Python one does (~25–30 % of a core at 18k req/s
here, where aiohttp needs a whole core for half that), so its figure is the server's, not
the client's. The Lua script sends the endpoint's request (method, headers, body) and checks
every response as the lab's own clients do (``lab.matrix.endpoint``: the expected status, the body
check; the worker from the wrapper's header): a failed check is an error of its kind, never
a success; the script carries a small JSON decoder for the JSON-subset check. Latencies come
from wrk's own histogram (1 µs buckets), folded into the lab's mergeable one; wrk records a
latency for every response, so a row with errors says its latencies include them.

wrk runs like a server: under ``lab.supervise.guard`` in a process group of its own, in the run's
ledger, on the client's CPUs, bounded by the cell's timeout and stopped by Ctrl-C. It counts
whole seconds only, so durations are rounded up.
"""

import json
import math
import shutil
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from lab.load.histogram import Histogram
from lab.load.monitor import Window
from lab.load.params import request_target
from lab.load.samples import Measurement, Tally
from lab.matrix.config import Experiment
from lab.matrix.endpoint import Endpoint
from lab.store.schema import KindFigures, WrkFigures
from lab.supervise.process import Group

SCRIPT = Path(__file__).with_name("wrk.lua")
STOP_GRACE_S = 1.0
# wrk's own connection errors, named as the Python engines name them.
ERROR_KINDS = {"connect": "connect", "read": "transport", "write": "transport",
               "timeout": "timeout"}


def available() -> bool:
    return shutil.which("wrk") is not None


@dataclass(frozen=True)
class Supervision:
    """How the runner keeps a load generator on a leash: ``spawn`` runs an argv as a
    supervised group, ``check`` raises on an interrupt, ``deadline_s`` bounds the cell."""

    spawn: Callable[[list[str], str], Group]  # (argv, name for its log) → running group
    check: Callable[[], None]
    deadline: float  # time.monotonic() by which the cell must be done
    threads: int = 1  # wrk threads: the client's cores


def script_args(endpoint: Endpoint) -> list[str]:
    """The Lua script's arguments: see wrk.lua."""
    args = [endpoint.method, str(endpoint.status or ""),
            (endpoint.contains or "").encode().hex(),
            (endpoint.json_subset or "").encode().hex(),
            "-" if endpoint.body is None else endpoint.body.hex()]
    for name, value in endpoint.headers:
        args += [name, value]
    return args


def threads_for(users: int, threads: int) -> int:
    """wrk's threads for ``users`` connections: at most ``threads``, and a divisor of
    ``users``: wrk gives each thread connections / threads and drops the remainder (-t2 -c3
    opens 2 connections)."""
    return max(t for t in range(1, max(1, min(threads, users)) + 1) if users % t == 0)


def _wrk(url: str, endpoint: Endpoint, users: int, seconds: int, timeout_s: float,
         sup: Supervision, name: str) -> tuple[dict[str, Any], float]:
    """One wrk run: its LABJSON result and its own CPU seconds."""
    argv = ["wrk", f"-t{threads_for(users, sup.threads)}", f"-c{users}", f"-d{seconds}s",
            f"--timeout={math.ceil(timeout_s)}s", "-s", str(SCRIPT), url, "--",
            *script_args(endpoint)]
    group, code = supervised(argv, name, seconds + timeout_s, sup)
    lines = group.log_path.read_text(errors="replace").splitlines()
    for line in reversed(lines):  # the log may hold an earlier attempt's (resume)
        if line.startswith("LABJSON "):
            return json.loads(line.removeprefix("LABJSON ")), cpu_s(group)
    raise RuntimeError(f"wrk printed no result (exit {code}): {' | '.join(lines[-3:])}")


def supervised(argv: list[str], name: str, seconds: float, sup: Supervision
               ) -> tuple[Group, int]:
    """Run a load generator's ``argv`` to its end (its exit code), within the cell's
    deadline and ``seconds`` (its duration and its drain) plus a moment to start."""
    budget_s = max(0.0, min(sup.deadline - time.monotonic(), seconds + 5.0))
    group = sup.spawn(argv, name)
    try:
        code = group.wait(budget_s, sup.check)
    finally:
        group.stop(STOP_GRACE_S)  # no-op when it has exited; else stops it and its group
    if code is None:
        raise TimeoutError(f"{argv[0]} still running after {budget_s:g} s")
    return group, code


def cpu_s(group: Group) -> float:
    """A supervised group's own CPU seconds, from its guard's rusage."""
    try:
        assert group.rusage_path is not None, f"spawn {group.argv[0]} with a rusage_path"
        return float(json.loads(group.rusage_path.read_text())["cpu_s"])
    except (OSError, ValueError, KeyError) as e:
        raise RuntimeError(f"{group.argv[0]}'s CPU time was not recorded ({e})") from None


def tally(r: Mapping[str, Any]) -> Tally:
    """wrk's LABJSON line as the lab's counts."""
    errors: Counter[str] = Counter()
    for key, kind in ERROR_KINDS.items():
        errors[kind] += int(r[key])
    errors.update({k: int(v) for k, v in r["http"].items()})
    errors["bad_body"] += int(r["bad_body"])
    errors = Counter({k: n for k, n in errors.items() if n})
    ok = int(r["requests"]) - sum(int(v) for v in r["http"].values()) - int(r["bad_body"])
    hist = Histogram()
    for us, n in r["latency_us"]:
        hist.record(us / 1e6, int(n))
    return Tally(ok, errors, Counter({int(p): int(n) for p, n in r["pids"].items()}), hist)


def run(base_url: str, exp: Experiment, endpoint: Endpoint, users: int, window: Window,
        sup: Supervision) -> Measurement:
    url = base_url + request_target(exp.params, endpoint)
    settled_s = 0.0
    if exp.warmup_s > 0:
        _wrk(url, endpoint, users, math.ceil(exp.warmup_s), exp.timeout_s, sup, "wrk-warmup")
        settled_s = window.settle(exp.timeout_s, sup.check)
    window.start()
    r, cpu_s = _wrk(url, endpoint, users, math.ceil(exp.duration_s), exp.timeout_s, sup, "wrk")
    usage = window.end()
    wall = r["duration_us"] / 1e6 or usage.wall_s
    t = tally(r)
    return Measurement([], replace(usage, wall_s=wall, client_cpu_s=cpu_s),
                       KindFigures(wrk=WrkFigures(threads_for(users, sup.threads),
                                                  bool(sum(t.errors.values())), settled_s)),
                       counted=t)
