"""Is ``lab.app`` an importable callable? Asked of a child process, never of the lab itself.
And, once it is served, does it answer each endpoint as the config expects?

An app module runs arbitrary code at import: it may call ``sys.exit(0)``, close fd 1,
sleep forever or print megabytes. In the lab's own process any of these would end or hang
the run with no clear word; in a supervised child (``lab.supervise.guard``: its own process group,
gone when the lab dies) each becomes one line: the key, the cause, exit code 2. The same
child finds the app's modules that would hide the lab's or a server's own imports.

At the run's first server start, ``ask`` sends each endpoint one request: a wrong answer is
said before any cell measures it, and its latency tells whether a closed loop's window
can hold a response at all.
"""

import json
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import httpx

from lab.errors import ConfigError
from lab.kinds import get
from lab.load.monitor import Window
from lab.load.params import request_target
from lab.load.samples import check
from lab.matrix.config import Experiment
from lab.matrix.endpoint import Endpoint
from lab.servers import ADAPTERS
from lab.servers.asgi_wrap import WORKER_HEADER
from lab.supervise.process import PROJECT_ROOT, Group, answer_text, log_tail

CHECK_TIMEOUT_S = 30.0
# The child, started where the servers start (the app's folder): check that neither the
# lab's own package nor a module a server imports is hidden by one of the app's, import,
# look the attribute up; write one JSON verdict to the file it is given.
CHILD = """
import importlib, importlib.util, json, os, sys
module, attr, out, lab_dir, imported = sys.argv[1:6]
def verdict(problem, key="lab.app"):
    with open(out, "w") as f:
        json.dump({"problem": problem, "key": key}, f)
spec = importlib.util.find_spec("lab")
found = list(spec.submodule_search_locations or []) if spec else []
if lab_dir and [os.path.realpath(p) for p in found] != [os.path.realpath(lab_dir)]:
    verdict(f"has a package or module named 'lab' ({', '.join(found)}) that hides the "
            "lab's own, which the servers import (lab.servers.asgi_wrap); rename it, or set "
            "lab.wrap = false", "lab.app_dir")
    sys.exit(0)
here = os.path.realpath(os.getcwd()) + os.sep  # the app's folder: what would hide them
for name, (dist, servers, home) in sorted(json.loads(imported).items()):
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        continue
    where = (list(spec.submodule_search_locations or []) or [spec.origin or ""])[0] \
        if spec else ""
    real = os.path.realpath(where) if os.path.isabs(where) else ""
    if real.startswith(here) and not real.startswith(home + os.sep):
        verdict(f"{where} hides the module {name!r} of {dist}, which "
                f"{' and '.join(servers)} import{'s' if len(servers) == 1 else ''}: "
                "rename it", "lab.app_dir")
        sys.exit(0)
try:
    loaded = importlib.import_module(module)
except BaseException as e:  # SystemExit and KeyboardInterrupt at import are answers too
    verdict(f"cannot import {module!r}: {type(e).__name__}: {e}")
else:
    try:
        for part in attr.split("."):
            loaded = getattr(loaded, part)
    except AttributeError:
        verdict(f"module {module!r} has no attribute {attr!r}")
    else:
        if not callable(loaded):
            verdict(f"{module}:{attr} is a {type(loaded).__name__}, not an ASGI callable")
        else:
            verdict(None)
"""


def imported_by(servers: Sequence[str]) -> dict[str, tuple[str, list[str], str]]:
    """Each top-level module the servers import from an installed distribution: (the
    distribution, the servers, the real path of the folder it is installed in)."""
    out: dict[str, tuple[str, list[str], str]] = {}
    for server in sorted(set(servers)):
        for module, dist in ADAPTERS[server].modules().items():
            home = os.path.realpath(str(metadata.distribution(dist).locate_file("")))
            out.setdefault(module, (dist, [], home))[1].append(server)
    return out


def check_app(app: str, check: Callable[[], None] = lambda: None,
              timeout_s: float = CHECK_TIMEOUT_S, app_dir: str | None = None,
              wrap: bool = False, servers: Sequence[str] = ()) -> None:
    """Raise ``ConfigError("lab.app", …)`` unless ``app`` imports from ``app_dir`` (the
    servers' working directory; default: the lab's project root) and names a callable;
    ``ConfigError("lab.app_dir", …)`` when the app's folder hides the lab (wrapped) or a
    module that one of ``servers`` imports."""
    module, _, attr = app.partition(":")
    with tempfile.TemporaryDirectory(prefix="lab-appcheck-") as tmp:
        out, log = Path(tmp, "verdict.json"), Path(tmp, "output.log")
        lab_dir = str(PROJECT_ROOT / "lab") if wrap else ""
        group = Group([sys.executable, "-c", CHILD, module, attr, str(out), lab_dir,
                       json.dumps(imported_by(servers))], log,
                      cwd=Path(app_dir) if app_dir else None,
                      path=[app_dir] if app_dir else [])
        try:
            code = group.wait(timeout_s, check)
        finally:
            group.stop(1.0)
        if code is None:
            raise ConfigError("lab.app", f"importing {module!r} took longer than "
                                         f"{timeout_s:g} s (does it wait or serve at import?)")
        try:
            verdict = json.loads(out.read_text())
            problem, key = verdict["problem"], verdict["key"]
        except (OSError, ValueError, KeyError):
            tail = log_tail(log, 3)[-300:].replace("\n", " | ")
            raise ConfigError("lab.app", f"importing {module!r} ended the process (exit code "
                                         f"{code}) before it could be checked"
                                         + (f": {tail}" if tail else "")) from None
    if problem:
        raise ConfigError(key, problem)


@dataclass(frozen=True)
class Answer:
    """One request of an endpoint, sent once at the run's first server start."""

    experiment: Experiment
    endpoint: Endpoint
    where: str  # "experiment 'b', endpoints[1]"
    request: str  # "GET /x?delay=0.1"
    problem: str | None  # why it fails the endpoint's check ("HTTP 500 'boom'"), or None
    latency_s: float
    server_cpu_s: float  # the server's CPU while it was answered
    max_gap_s: float  # the longest the lab went unscheduled meanwhile (its latency's doubt)


def endpoints_of(experiments: Sequence[Experiment]) -> list[tuple[Experiment, Endpoint, str]]:
    """Each endpoint an experiment requests, with where the config names it."""
    out = [(e, ep, f"experiment {e.name!r}, endpoints[{j}]")
           for e in experiments if get(e.kind).http_endpoints
           for j, ep in enumerate(e.endpoints)]
    return out + [(e, e.probe, f"experiment {e.name!r}, probe") for e in experiments
                  if "probe" in get(e.kind).settings]


async def ask(base_url: str, server_pids: list[int], experiments: Sequence[Experiment]
              ) -> list[Answer]:
    """One request of each endpoint, in turn, checked as the engines check every answer
    (``samples.check``): the status and the body, timed, with the server's CPU for it."""
    answers = []
    async with httpx.AsyncClient(base_url=base_url, trust_env=False,
                                 follow_redirects=False) as client:
        for exp, endpoint, where in endpoints_of(experiments):
            target = request_target(exp.params, endpoint)
            window = Window(server_pids)
            window.start()
            try:
                response = await client.request(
                    endpoint.method, target, headers=dict(endpoint.headers),
                    content=endpoint.body, timeout=exp.timeout_s)
                error, _ = check(response.status_code, response.headers.get(WORKER_HEADER),
                                 response.content, endpoint)
                problem = None if error is None else answer_text(response) + (
                    " (the body fails the endpoint's check)" if error == "bad_body" else "")
            except httpx.TimeoutException:
                problem = f"no answer within timeout_s = {exp.timeout_s:g} s"
            except httpx.HTTPError as e:
                problem = f"no answer ({type(e).__name__})"
            usage = window.end()
            answers.append(Answer(exp, endpoint, where, f"{endpoint.method} {target}", problem,
                                  usage.wall_s, usage.server_cpu_s or 0.0,
                                  usage.max_gap_s))
    return answers


def window_floor_s(answer: Answer, users_per_worker: float) -> float:
    """The least time a closed-loop response takes: its own latency, or, for work that
    holds the CPU (its server CPU, at most its latency: idle threads are not its work),
    the share of every user's request queued on a worker before it."""
    return max(answer.latency_s, min(answer.server_cpu_s, answer.latency_s) * users_per_worker)
