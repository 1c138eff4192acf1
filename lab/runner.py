"""Run a matrix: for each cell, server up → load → figures → one line on disk.

A failing cell is a result, with its reason and the server log's tail; the matrix goes on.
Only an interruption stops the loop, and then after the running server has been stopped.
"""

import asyncio
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from lab.config import KINDS, Cell, LabSettings, Matrix
from lab.errors import ServerStartError
from lab.interrupt import Interrupts
from lab.load import MULTI_PROCESS, RUNNERS, processes, wrk
from lab.load.window import quiet_gc
from lab.monitor import Window
from lab.process import Server, log_tail, running
from lab.reaper import Ledger
from lab.results import RunDir
from lab.servers import ADAPTERS
from lab.stats import summarize


@dataclass
class Outcome:
    ran: int
    failed: int
    skipped: int  # already finished (resume)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def describe(cell: Cell, lab: LabSettings, run_id: str) -> dict[str, Any]:
    """The identifying part of a cell's results line."""
    exp = cell.experiment
    adapter = ADAPTERS[cell.server]
    load: dict[str, Any] = {KINDS[exp.kind].load_key: cell.load}
    load |= {k: getattr(exp, k) for k in KINDS[exp.kind].settings}
    return {
        "run_id": run_id, "cell_id": cell.id, "server_id": cell.server_id,
        "server": cell.server, "server_version": adapter.version(), "workers": cell.workers,
        "options": adapter.effective_options(dict(cell.options)),
        "settings": adapter.settings(dict(cell.options)), "app": lab.app,
        "experiment": exp.name, "kind": exp.kind, "endpoint": cell.endpoint,
        "params": dict(exp.params), "load": load, "engine": exp.engine,
        "repeat": cell.repeat,
        "cell_key": cell.key(lab),  # what resume matches: the id alone misses a changed config
    }


def _failure(kind: str, reason: str, log: str) -> dict[str, str]:
    return {"kind": kind, "reason": reason, "log_tail": log}


def measure(cell: Cell, server: Server, lab: LabSettings, interrupts: Interrupts
            ) -> dict[str, Any]:
    """The cell's figures, from whichever engine and number of client processes it uses."""
    exp = cell.experiment
    window = Window(server.pids())
    if exp.engine == "wrk":
        return wrk.run(server.base_url, exp, cell.endpoint, cell.load, window)
    with quiet_gc():
        if exp.clients > 1 and exp.kind in MULTI_PROCESS:
            m = processes.run(exp.kind, server.base_url, exp, cell.endpoint, cell.load, window,
                              interrupts.check)
        else:
            coro = RUNNERS[exp.kind](server.base_url, exp, cell.endpoint, cell.load, window)
            m = asyncio.run(interrupts.guard(asyncio.wait_for(coro, lab.cell_timeout_s)))
    return summarize(m)


def run_cell(cell: Cell, lab: LabSettings, run: RunDir, interrupts: Interrupts
             ) -> dict[str, Any]:
    record = describe(cell, lab, run.path.name) | {"started_at": _now(), "failure": None,
                                                   "figures": None}
    adapter = ADAPTERS[cell.server]
    log_path = run.logs / f"{cell.id}.log"
    server: Server | None = None
    figures: dict[str, Any] | None = None
    try:
        with running(
            lambda port: adapter.argv(sys.executable, lab.app, lab.host, port, cell.workers,
                                      dict(cell.options)),
            lab.host, cell.workers, log_path, lab.start_timeout_s, lab.stop_grace_s,
            check=interrupts.check, hurry=lambda: interrupts.hurry, ledger=Ledger(run.path),
        ) as server:
            pids_before = set(server.pids())
            try:
                figures = measure(cell, server, lab, interrupts)
                interrupts.check()  # wrk gets the terminal's Ctrl-C too: never keep a cut cell
            except TimeoutError:
                record["failure"] = _failure(
                    "cell_timeout", f"cell exceeded lab.cell_timeout_s = {lab.cell_timeout_s:g} s",
                    log_tail(log_path))
            except (RuntimeError, EOFError, OSError, subprocess.SubprocessError) as e:
                # The load generator itself failed (a client process died, wrk broke):
                # the cell is a failed result, the matrix goes on.
                record["failure"] = _failure("client_failed", f"{type(e).__name__}: {e}",
                                             log_tail(log_path))
            lost = pids_before - set(server.pids())
            if lost and record["failure"] is None:
                record["failure"] = _failure(
                    "server_crashed",
                    f"server process(es) {', '.join(map(str, sorted(lost)))} exited during the "
                    "cell", log_tail(log_path))
    except ServerStartError as e:
        record["failure"] = _failure("start_failed", e.reason, e.log_tail)
    if server is not None and server.last_stop is not None:
        record["process"] = {
            "start_to_ready_s": server.ready_s, "stop_s": server.last_stop.seconds,
            "killed": server.last_stop.killed, "exit_code": server.last_stop.exit_code,
            "port": server.port, "argv": server.argv,
        }
    if figures is not None:
        record["figures"] = figures
        if figures["ok"] == 0 and record["failure"] is None:
            record["failure"] = _failure(
                "all_requests_failed", f"all {figures['requests']} requests failed: "
                f"{figures['errors']}", log_tail(log_path))
    record["status"] = "failed" if record["failure"] else "ok"
    record["finished_at"] = _now()
    return record


def progress_line(i: int, total: int, record: dict[str, Any]) -> str:
    head = f"[{i}/{total}] {record['cell_id']}"
    if record["failure"]:
        return f"{head}: FAILED ({record['failure']['kind']}: {record['failure']['reason']})"
    f = record["figures"]
    errors = sum(f["errors"].values())
    kind = record["kind"]
    if kind == "burst":
        main = f"{f['wall_s']:.3f} s wall,"
    elif kind == "interference":
        main = f"probe idle p50 {_ms(f['idle_latency_ms']['p50'])}, loaded"
    else:
        main = f"{f['rps']:.0f} req/s" + (f" of {f['target_rps']:g}" if kind == "open" else "")
        main += ","
    return (f"{head}: {main} p50 {_ms(f['latency_ms']['p50'])}, {errors} errors, "
            f"client CPU {f['client_cpu_pct']:.0f} %")


def _ms(x: float | None) -> str:
    return "–" if x is None else f"{x:.1f} ms"


def run_matrix(matrix: Matrix, run: RunDir, interrupts: Interrupts,
               out: Callable[[str], None] = print) -> Outcome:
    loaded = run.load()
    for warning in loaded.warnings:
        out(f"warning: {warning}")
    finished = loaded.finished()
    cells = [c for c in matrix.cells() if not finished.covers(c.key(matrix.lab), c.id)]
    skipped = len(matrix.cells()) - len(cells)
    failed = 0
    for i, cell in enumerate(cells, 1):
        interrupts.check()
        t0 = time.monotonic()
        record = run_cell(cell, matrix.lab, run, interrupts)
        record["cell_wall_s"] = time.monotonic() - t0
        run.append(record)  # on disk before the next cell starts
        failed += record["status"] == "failed"
        out(progress_line(i, len(cells), record))
    return Outcome(len(cells), failed, skipped)
