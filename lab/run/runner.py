"""Run a matrix: for each cell, server up → load → figures → one line on disk.

A failing cell is a result, with its reason and the server log's tail; the matrix goes on.
Only an interruption stops the loop, and then after the running server has been stopped.
"""

import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lab.errors import LabError, ServerStartError
from lab.kinds import get
from lab.kinds.base import ms
from lab.load import cell as load_cell
from lab.load import loop, wrk
from lab.load.monitor import Stalls, Window
from lab.load.stats import MachineShare, summarize
from lab.matrix.config import Cell, LabSettings, Matrix
from lab.matrix.endpoint import Endpoint
from lab.run import services
from lab.servers import ADAPTERS
from lab.servers.base import THREADS
from lab.store.results import RunDir, timestamp
from lab.store.schema import NOT_SERVED, Failure, FailureKind, Figures, Process, Result
from lab.supervise import appcheck
from lab.supervise.interrupt import Interrupts
from lab.supervise.launch import Launch
from lab.supervise.process import (
    AppNotReady,
    Group,
    Server,
    ServerExited,
    start,
)
from lab.supervise.reaper import Ledger

if TYPE_CHECKING:  # lab.remote imports Dask: only a run on remote hosts loads it
    from lab.remote.controller import RemoteRun, RemoteServer


@dataclass
class Outcome:
    ran: int
    failed: int
    skipped: int  # already finished (resume)


def describe(cell: Cell, lab: LabSettings, run_id: str, engine: str, started_at: str,
             failure: Failure | None = None, figures: Figures | None = None,
             process: Process | None = None, placement: dict[str, Any] | None = None
             ) -> Result:
    """A cell's results line: the cell, the engine that measured it, and what happened."""
    exp = cell.experiment
    adapter = ADAPTERS[cell.server]
    load: dict[str, Any] = {get(exp.kind).load_key: "auto" if cell.searched else cell.load}
    load |= exp.shown_settings()
    settings = adapter.settings(dict(cell.options))
    if cell.threads is not None:  # only when set: the lines of a run without it are as before
        settings[THREADS] = str(cell.threads)
    return Result(
        run_id=run_id, cell_id=cell.id, server_id=cell.server_id, server=cell.server,
        server_version=adapter.version(), workers=cell.workers,
        options=adapter.effective_options(dict(cell.options)),
        settings=settings, app=lab.app, app_dir=lab.app_dir,
        wrap=lab.wrap, experiment=exp.name, kind=exp.kind, endpoint=cell.endpoint.label,
        request=cell.endpoint.record(), params=dict(exp.params), load=load,
        engine=engine, engine_requested=exp.engine, ways=exp.ways, repeat=cell.repeat,
        cell_key=cell.key(lab),  # what resume matches: the id alone misses a changed config
        placement=placement or lab.placement.as_record(), process=process,
        status=status_of(failure), failure=failure, figures=figures,
        started_at=started_at, finished_at=timestamp())


def status_of(failure: Failure | None) -> str:
    if failure is None:
        return "ok"
    return NOT_SERVED if failure.kind is FailureKind.NOT_SERVED else "failed"


DISTURBED_GAP_S = 1.0  # the lab's sampler woke this late: SIGSTOP, suspend, a paused VM
# Failures a stopped lab causes by itself (its deadline passed, its client's timeouts fired):
# when the lab was stopped, the cell is disturbed, not failed by the server.
LAB_CAUSED = frozenset({FailureKind.CELL_TIMEOUT, FailureKind.CLIENT_FAILED})


@dataclass
class Context:
    """What every cell of a run shares."""

    lab: LabSettings
    run: RunDir
    interrupts: Interrupts
    machine: MachineShare
    remote: "RemoteRun | None" = None  # a run on remote hosts: where its two sides are

    @property
    def ledger(self) -> Ledger:
        return Ledger(self.run.path)

    @property
    def tools(self) -> frozenset[str] | None:
        """The native load generators where the load is sent from (None: this machine's)."""
        return self.remote.tools if self.remote is not None else None

    @property
    def placement(self) -> dict[str, Any]:
        """The results lines' placement: this host's CPUs, or each side's host."""
        if self.remote is None:
            return self.lab.placement.as_record()
        return self.remote.placement


def engine_for(cell: Cell, tools: frozenset[str] | None = None) -> str:
    """The engine a cell really uses: "auto" is h2load for HTTP/2, else wrk when installed
    where the load is sent from (``tools``: the native generators every load host has; None:
    this machine), else rawhttp."""
    engine = cell.experiment.engine
    if engine == "auto" and cell.experiment.http == "2":
        return "h2load"
    if engine == "auto":
        has_wrk = wrk.available() if tools is None else "wrk" in tools
        return "wrk" if has_wrk else "rawhttp"
    return engine


def measure(cell: Cell, server: Server, ctx: Context, engine: str) -> Figures:
    """The cell's figures, from whichever engine and number of client processes it uses."""
    loop_meter = server.loop if ctx.lab.loop_meter else None
    deadline = time.monotonic() + ctx.lab.cell_timeout_s

    def check() -> None:
        ctx.interrupts.check()
        if time.monotonic() > deadline:
            raise TimeoutError

    placement = ctx.lab.placement
    sup = wrk.Supervision(
        spawn=lambda argv, name: Group(
            argv, ctx.run.logs / f"{cell.id}.{name}.log", ctx.ledger, placement.client_env(),
            rusage_path=ctx.run.logs / f"{cell.id}.{name}.cpu.json"),
        check=check, deadline=deadline,
        threads=1 if placement.shared else len(placement.client_set()))
    m = load_cell.measure(cell, engine, server.base_url,
                          lambda: Window(server.pids(), server.meter, loop_meter), sup,
                          ctx.machine, ctx.interrupts.guard)
    return summarize(m, ctx.machine)


class Servers:
    """The server the next cell needs: reused while its configuration and repeat stay the
    same and it is healthy (``lab.restart = "configuration"``), else started afresh.

    A start failure that the next start would repeat is not tried again: a wrong answer of
    the ready path fails every later cell (it is the app's), a server that exited fails the
    later cells of its configuration; those are failed at once with the first one's reason.
    The first server that starts is asked each endpoint of ``plan`` once (``appcheck.ask``),
    and ``out`` gets a warning for each wrong answer and each closed-loop window that few or
    no responses may fit in."""

    def __init__(self, ctx: Context, env: dict[str, str] | None = None,
                 plan: Sequence[Cell] = (), out: Callable[[str], None] = print) -> None:
        self.ctx = ctx
        self.env = {**ctx.lab.placement.server_env(), **(env or {})}
        self.server: Server | RemoteServer | None = None
        self.key: tuple[object, ...] | None = None
        self.cells: list[str] = []
        self.healthy = False
        self.plan, self.out = plan, out
        self.checked = not plan
        # "app", or a configuration (Cell.configuration) → (first cell, its failure)
        self.refused: dict[object, tuple[str, ServerStartError]] = {}

    def __enter__(self) -> "Servers":
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()  # whatever ended the run: the last server goes with it

    def get(self, cell: Cell, log_path: Path) -> tuple["Server | RemoteServer", bool]:
        """(a ready server for ``cell``, whether it was just started)."""
        key = cell.start_key(self.ctx.lab.restart)
        if self.server is not None and key == self.key and self.healthy \
                and self.server.answers():
            self.cells.append(cell.id)
            return self.server, False
        self.stop()
        self.cells = []
        configuration = cell.configuration
        if refused := self.refused.get("app") or self.refused.get(configuration):
            first, e = refused
            raise ServerStartError(f"not started: {e.reason} (same as cell {first})",
                                   e.log_tail)
        try:
            self.server = self._start(cell, log_path)
        except AppNotReady as e:
            self.refused["app"] = (cell.id, e)
            raise
        except ServerExited as e:
            self.refused[configuration] = (cell.id, e)
            raise
        if not self.checked:
            self.checked = True
            self._check_app()
            # Started afresh: the check's requests warmed this server (a thread pool, a
            # cache) and may have left work in it or ended a worker; the others start cold.
            self.stop(app_check=True)
            self.server = self._start(cell, log_path)
        self.key, self.cells, self.healthy = key, [cell.id], True
        return self.server, True

    def _start(self, cell: Cell, log_path: Path) -> "Server | RemoteServer":
        if self.ctx.remote is not None:
            return self.ctx.remote.start(cell, self.ctx.lab, log_path)
        lab, adapter = self.ctx.lab, ADAPTERS[cell.server]
        launch = Launch.for_cell(lab, cell)
        h2c = cell.h2c
        assert isinstance(h2c, tuple), "run_cell serves no h2 cell to a server without h2c"
        return start(
            lambda port: adapter.argv(sys.executable, launch.app, lab.host, port,
                                      cell.workers, dict(cell.options), h2c),
            lab.host, cell.workers, log_path, lab.start_timeout_s,
            check=self.ctx.interrupts.check, ledger=self.ctx.ledger,
            env={**self.env, **launch.env}, readiness=launch.readiness,
            app_dir=launch.app_dir)

    def _check_app(self) -> None:
        """Ask the running server each endpoint of the plan once and warn about what the
        answers say."""
        assert self.server is not None
        server, pids = self.server, set(self.server.pids())
        experiments = list({c.experiment.name: c.experiment for c in self.plan}.values())
        answers = (self.ctx.remote.check_app(experiments) if self.ctx.remote is not None
                   else loop.run(self.ctx.interrupts.guard(
                       appcheck.ask(server.base_url, sorted(pids), experiments))))
        for a in answers:
            if a.problem:
                self.out(f"warning: {a.where}: {a.request} → {a.problem}, at the first "
                         "server start; its cells count every such answer as an error")
        for line in window_warnings(answers, self.plan):
            self.out(f"warning: {line}")

    def stop(self, app_check: bool = False) -> None:
        if self.server is None:
            return
        server, self.server = self.server, None
        report = server.stop(self.ctx.lab.stop_grace_s, lambda: self.ctx.interrupts.hurry)
        self.ctx.run.append_server({
            "argv": server.argv, "env": server.env, "cwd": str(server.cwd),
            "command": server.command, "port": server.port, "cells": self.cells,
            "start_to_ready_s": server.ready_s, "stop_s": report.seconds,
            "killed": report.killed, "exit_code": report.exit_code, "app_check": app_check})


def window_warnings(answers: list[appcheck.Answer], plan: Sequence[Cell]) -> list[str]:
    """Closed-loop endpoints whose one-request latency says that, with the most users per
    worker the plan gives them, few or no responses may complete in the window."""
    busiest: dict[tuple[str, Endpoint], Cell] = {}
    for c in plan:
        # Users who each wait for their answer (closed loops) queue on the workers: the
        # floor below is theirs; an open model's schedule does not wait, a burst has no window.
        if c.experiment.kind == "closed":
            top = busiest.setdefault((c.experiment.name, c.endpoint), c)
            if c.load / c.workers > top.load / top.workers:
                busiest[c.experiment.name, c.endpoint] = c
    lines = []
    for a in answers:
        if a.problem or a.max_gap_s > DISTURBED_GAP_S \
                or (a.experiment.name, a.endpoint) not in busiest:
            continue  # no latency, or one the lab's own stall made
        c = busiest[a.experiment.name, a.endpoint]
        floor = appcheck.window_floor_s(a, c.load / c.workers)
        if floor > a.experiment.duration_s:
            lines.append(
                f"{a.where}: one request took {a.latency_s:.2f} s ({a.server_cpu_s:.2f} s of "
                f"server CPU): with {c.load} users sharing {c.workers} "
                f"worker{'s' if c.workers > 1 else ''} a response may take ≈ {floor:.1f} s, "
                f"longer than the {a.experiment.duration_s:g} s window: few or no responses "
                "may complete in it (fewer users, more workers or a longer duration_s)")
    return lines


def run_cell(cell: Cell, ctx: Context, servers: Servers) -> Result:
    # the engine: decided once, here, for where the load is sent from
    started_at, engine = timestamp(), engine_for(cell, ctx.tools)
    run_id = ctx.run.path.name
    log_path = ctx.run.logs / f"{cell.id}.log"
    figures: Figures | None = None
    failure: Failure | None = None
    if isinstance(reason := cell.h2c, str):  # a result, not a failure: the matrix goes on
        return describe(cell, ctx.lab, run_id, engine, started_at, Failure(
            FailureKind.NOT_SERVED, f"not served: {cell.server} does not speak h2c "
            f"({reason})"), placement=ctx.placement)
    try:
        server, fresh = servers.get(cell, log_path)
    except ServerStartError as e:
        return describe(cell, ctx.lab, run_id, engine, started_at,
                        Failure(FailureKind.START_FAILED, e.reason, e.log_tail),
                        placement=ctx.placement)
    log_path = server.log_path
    pids_before = set(server.pids())
    stalls = Stalls()
    try:
        with stalls:
            if isinstance(server, Server):
                figures = measure(cell, server, ctx, engine)
            else:
                assert ctx.remote is not None, "a remote server in a local run"
                figures = ctx.remote.measure(cell, server, engine, ctx.lab, ctx.interrupts.check)
        ctx.interrupts.check()  # wrk gets the terminal's Ctrl-C too: never keep a cut cell
    except TimeoutError:
        failure = Failure(
            FailureKind.CELL_TIMEOUT,
            f"cell exceeded lab.cell_timeout_s = {ctx.lab.cell_timeout_s:g} s",
            server.log_tail())
    except (RuntimeError, EOFError, OSError, subprocess.SubprocessError) as e:
        # The load generator itself failed (a client process died, wrk broke):
        # the cell is a failed result, the matrix goes on.
        failure = Failure(FailureKind.CLIENT_FAILED, f"{type(e).__name__}: {e}",
                          server.log_tail())
    lost = pids_before - set(server.pids())
    if lost and failure is None:
        failure = Failure(
            FailureKind.SERVER_CRASHED,
            f"server process(es) {', '.join(map(str, sorted(lost)))} exited during the "
            "cell", server.log_tail())
    servers.healthy = failure is None and not lost
    process = Process(server.ready_s if fresh else None, not fresh, server.port,
                      tuple(server.argv), log_path.name)
    gap = max(stalls.max_gap_s, figures.client_max_gap_s or 0 if figures else 0)
    if gap > DISTURBED_GAP_S and (failure is None or failure.kind in LAB_CAUSED):
        failure = Failure(
            FailureKind.DISTURBED, f"the lab went unscheduled for {gap:.1f} s while it "
            "measured (stopped, suspended or starved): its figures are not the server's; "
            "--resume runs the cell again", "")
    if figures is not None and figures.ok == 0 and failure is None:
        failure = Failure(FailureKind.ALL_REQUESTS_FAILED, _no_answer(figures, cell),
                          server.log_tail())
    return describe(cell, ctx.lab, run_id, engine, started_at, failure, figures, process,
                    ctx.placement)


def _no_answer(figures: Figures, cell: Cell) -> str:
    """What happened in a window without one good answer, in words."""
    errors = ", ".join(f"{n} {kind}" for kind, n in sorted(figures.errors.items()))
    if figures.requests:
        return f"all {figures.requests} requests failed ({errors})"
    exp = cell.experiment
    return (f"no response completed within the {exp.duration_s:g} s window: every request "
            f"took longer (a request timeout is {exp.timeout_s:g} s); a longer duration_s "
            "or fewer users would let some finish")


def progress_line(i: int, total: int, r: Result) -> str:
    head = f"[{i}/{total}] {r.cell_id}"
    if r.status == NOT_SERVED and r.failure:
        return f"{head}: {r.failure.reason}"
    if r.failure or r.figures is None:
        kind, reason = (r.failure.kind, r.failure.reason) if r.failure else ("?", "?")
        return f"{head}: FAILED ({kind}: {reason})"
    f = r.figures
    return (f"{head}: {get(r.kind).progress(f)} p50 {ms(f.latency_ms.get('p50'))}, "
            f"{f.failed} errors, client CPU {f.client_cpu_pct:.0f} %")


def remaining(matrix: Matrix, run: RunDir) -> list[Cell]:
    """The matrix's cells that have no result line yet (all of them in a new run)."""
    finished = run.load().finished()
    return [c for c in matrix.cells() if not finished.covers(c.key(matrix.lab), c.id)]


def run_matrix(matrix: Matrix, run: RunDir, interrupts: Interrupts,
               out: Callable[[str], None] = print,
               on_start: Callable[[int, int, Cell], None] | None = None) -> Outcome:
    """Measure every cell without a result; ``out`` gets a line per finished cell,
    ``on_start`` (i, total, cell) is told before each cell starts."""
    for warning in run.load().warnings:
        out(f"warning: {warning}")
    cells = remaining(matrix, run)
    skipped = matrix.size() - len(cells)
    if matrix.lab.remote is not None:
        from lab.remote.controller import running

        with running(matrix, run.path.name, matrix.lab.stop_grace_s, out) as remote:
            ctx = Context(matrix.lab, run, interrupts, remote.machine, remote)
            with Servers(ctx, None, cells, out) as servers:
                return _run_cells(cells, ctx, servers, out, skipped, on_start)
    placement = matrix.lab.placement
    placement.pin_client()  # the lab is the client of its in-process engines
    machine = MachineShare(len(placement.server_set() | placement.client_set()),
                           placement.shared)
    ctx = Context(matrix.lab, run, interrupts, machine)
    with services.running(matrix.services, matrix.lab, run, interrupts.check,
                          lambda: interrupts.hurry) as env:
        with Servers(ctx, env, cells, out) as servers:
            return _run_cells(cells, ctx, servers, out, skipped, on_start)


def _run_cells(cells: list[Cell], ctx: Context, servers: Servers, out: Callable[[str], None],
               skipped: int, on_start: Callable[[int, int, Cell], None] | None = None
               ) -> Outcome:
    failed = 0
    for i, cell in enumerate(cells, 1):
        ctx.interrupts.check()
        if on_start is not None:
            on_start(i, len(cells), cell)
        t0 = time.monotonic()
        try:
            record = run_cell(cell, ctx, servers)
        except (LabError, KeyboardInterrupt):
            raise
        except Exception as e:  # a defect of the lab in one cell: that cell's failure
            servers.healthy = False
            record = describe(cell, ctx.lab, ctx.run.path.name,
                              engine_for(cell, ctx.tools), timestamp(),
                              Failure(FailureKind.LAB_ERROR, f"{type(e).__name__}: {e}",
                                      "".join(traceback.format_exception(e))[-4000:]),
                              placement=ctx.placement)
        if ctx.lab.restart == "cell":
            servers.stop()
        record = replace(record, cell_wall_s=time.monotonic() - t0)
        ctx.run.append(record)  # on disk before the next cell starts
        failed += record.status == "failed"
        out(progress_line(i, len(cells), record))
    return Outcome(len(cells), failed, skipped)
