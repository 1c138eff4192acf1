"""h2load (Debian package `nghttp2-client`): the native engine of HTTP/2 closed loops.

``users`` connections (``-c``) each keep ``streams`` requests in flight (``-m``), h2c by
prior knowledge (``--h1`` for an HTTP/1.1 cell), for the window (``-D``), after a warm-up
run as wrk's. It runs like wrk: supervised in its own process group, on the client's CPUs,
within the cell's timeout, its own CPU seconds from its guard's rusage (`lab.load.wrk`).

Its ``--log-file`` holds one line per answered request (start µs, status, µs to its end):
the lab's histogram and status counts come from it, by the endpoint's expected status
(`Endpoint.status_ok`). Requests that got no answer are its report's ``errored`` and
``timeout``. h2load cannot check a body nor read the wrapper's worker header: its cells
have no body check and no per-worker split, and the report says so. The protocol a cell
spoke is the one h2load's report names (``Application protocol: h2c``), not the one asked.
"""

import re
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

from lab.load.histogram import Histogram
from lab.load.monitor import Window
from lab.load.params import request_target
from lab.load.samples import Measurement, Tally
from lab.load.wrk import Supervision, cpu_s, supervised
from lab.matrix.config import Experiment
from lab.matrix.endpoint import Endpoint
from lab.store.schema import H2loadFigures, KindFigures

_PROTOCOL = re.compile(r"^Application protocol: (\S+)", re.M)
_FINISHED = re.compile(r"^finished in ([\d.]+)(us|ms|s),", re.M)
_REQUESTS = re.compile(r"^requests: (\d+) total, .* (\d+) errored, (\d+) timeout", re.M)
_SECONDS = {"us": 1e-6, "ms": 1e-3, "s": 1.0}


def available() -> bool:
    return shutil.which("h2load") is not None


@dataclass(frozen=True)
class Report:
    """One h2load run: what its report and request log say."""

    tally: Tally
    wall_s: float | None
    protocol: str | None


def argv(url: str, endpoint: Endpoint, users: int, streams: int, seconds: float,
         timeout_s: float, threads: int, h2: bool, log: Path, body: Path | None) -> list[str]:
    args = ["h2load", f"-t{min(threads, users)}", f"-c{users}", f"-m{streams}",
            f"-D{max(1, round(seconds * 1000))}ms",
            f"-N{max(1, round(timeout_s * 1000))}ms", f"--log-file={log}"]
    if not h2:
        args.append("--h1")
    if body is not None:
        args.append(f"-d{body}")  # h2load then sends a POST, unless :method says otherwise
    if endpoint.method != ("POST" if body is not None else "GET"):
        args += ["-H", f":method: {endpoint.method}"]
    for name, value in endpoint.headers:
        args += ["-H", f"{name}: {value}"]
    return [*args, url]


def parse(output: str, log: str, endpoint: Endpoint) -> Report:
    """h2load's report and request log as the lab's counts."""
    ok, errors, hist = 0, Counter[str](), Histogram()
    for line in log.splitlines():
        fields = line.split("\t")
        if len(fields) != 3 or not fields[1].isdigit():
            continue  # no answer (status -1): counted by the report's errored and timeout
        status, latency_us = int(fields[1]), int(fields[2])
        if not 100 <= status <= 599:
            # An answer whose status h2load did not read: its HTTP/1.1 parser (1.52) reads
            # hypercorn's status line, with an empty reason phrase ("HTTP/1.1 200 "), as 0.
            errors["no_status"] += 1
        elif endpoint.status_ok(status):
            ok += 1
            hist.record(latency_us / 1e6)
        else:
            errors[f"http_{status}"] += 1
    if requests := _REQUESTS.search(output):
        errors["transport"] += int(requests[2])
        errors["timeout"] += int(requests[3])
    finished = _FINISHED.search(output)
    protocol = _PROTOCOL.search(output)
    return Report(Tally(ok, +errors, Counter(), hist),
                  float(finished[1]) * _SECONDS[finished[2]] if finished else None,
                  protocol[1] if protocol else None)


def _h2load(url: str, exp: Experiment, endpoint: Endpoint, users: int, seconds: float,
            sup: Supervision, name: str) -> tuple[Report, float]:
    """One h2load run: its report and its own CPU seconds."""
    with tempfile.TemporaryDirectory(prefix="lab-h2load-") as tmp:
        log = Path(tmp) / "requests.tsv"
        body = None
        if endpoint.body is not None:
            body = Path(tmp) / "body"
            body.write_bytes(endpoint.body)
        args = argv(url, endpoint, users, exp.streams, seconds, exp.timeout_s, sup.threads,
                    exp.http == "2", log, body)
        group, code = supervised(args, name, seconds + exp.timeout_s, sup)
        output = group.log_path.read_text(errors="replace")
        if not _FINISHED.search(output):  # its exit code is 0 even when every request failed
            tail = " | ".join(output.splitlines()[-3:])
            raise RuntimeError(f"h2load printed no result (exit {code}): {tail}")
        report = parse(output[output.rfind("starting benchmark"):],  # this attempt's
                       log.read_text(errors="replace") if log.exists() else "", endpoint)
    return report, cpu_s(group)


def run(base_url: str, exp: Experiment, endpoint: Endpoint, users: int, window: Window,
        sup: Supervision) -> Measurement:
    url = base_url + request_target(exp.params, endpoint)
    settled_s = 0.0
    if exp.warmup_s > 0:
        _h2load(url, exp, endpoint, users, exp.warmup_s, sup, "h2load-warmup")
        settled_s = window.settle(exp.timeout_s, sup.check)
    window.start()
    report, client_cpu_s = _h2load(url, exp, endpoint, users, exp.duration_s, sup, "h2load")
    usage = window.end()
    return Measurement(
        [], replace(usage, wall_s=report.wall_s or usage.wall_s, client_cpu_s=client_cpu_s),
        KindFigures(h2load=H2loadFigures(report.protocol, min(sup.threads, users), settled_s)),
        counted=report.tally)
