"""wrk as an external closed-loop engine (Debian package `wrk`), parsed into the lab's
results schema. A C client spends a fraction of the CPU a Python one does, so its figure is
the server's, not the client's. Responses are checked by a Lua script (status 200 and a
pid in the body); wrk gives percentiles, not a mergeable histogram, and counts whole
seconds only, so durations are rounded up.
"""

import json
import math
import resource
import shutil
import subprocess
import time
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from lab.config import Experiment
from lab.load.engines import query_params
from lab.monitor import Window
from lab.stats import usage_figures

SCRIPT = Path(__file__).with_name("wrk.lua")
THREADS = 1  # one core at most for the client: the server needs the other


def available() -> bool:
    return shutil.which("wrk") is not None


def _wrk(url: str, users: int, seconds: int, timeout_s: float) -> dict[str, Any]:
    argv = ["wrk", f"-t{min(THREADS, users)}", f"-c{users}", f"-d{seconds}s",
            f"--timeout={math.ceil(timeout_s)}s", "-s", str(SCRIPT), url]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + timeout_s + 10)
    for line in out.stdout.splitlines():
        if line.startswith("LABJSON "):
            return json.loads(line.removeprefix("LABJSON "))
    raise RuntimeError(f"wrk printed no result (exit {out.returncode}): {out.stderr.strip()}")


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run(base_url: str, exp: Experiment, endpoint: str, users: int,
        window: Window) -> dict[str, Any]:
    """The cell's figures, keyed like ``lab.stats.summarize``'s."""
    query = urlencode(query_params(exp.params))
    url = f"{base_url}{endpoint}" + (f"?{query}" if query else "")
    if exp.warmup_s > 0:
        _wrk(url, users, math.ceil(exp.warmup_s), exp.timeout_s)
    cpu0 = _children_cpu()
    window.start()
    t0 = time.perf_counter()
    r = _wrk(url, users, math.ceil(exp.duration_s), exp.timeout_s)
    usage = window.end()
    client_cpu = _children_cpu() - cpu0
    wall = r["duration_us"] / 1e6 or time.perf_counter() - t0
    errors = {k: r[k] for k in ("connect", "read", "write", "timeout", "non200", "bad_body")
              if r[k]}
    ok = r["requests"] - r["non200"] - r["bad_body"]
    return {
        "requests": r["requests"] + r["connect"] + r["read"] + r["write"] + r["timeout"],
        "ok": ok, "errors": errors, "wall_s": wall, "rps": ok / wall,
        "latency_ms": {"p50": r["p50_us"] / 1e3, "p90": r["p90_us"] / 1e3,
                       "p99": r["p99_us"] / 1e3, "p99.9": r["p999_us"] / 1e3,
                       "max": r["max_us"] / 1e3, "mean": r["mean_us"] / 1e3},
        "histogram": None,  # wrk reports percentiles only
        "pids": dict(sorted(r["pids"].items(), key=lambda kv: -kv[1])),
        **usage_figures(replace(usage, wall_s=wall, client_cpu_s=client_cpu), ok),
        "external_engine": "wrk",
    }
