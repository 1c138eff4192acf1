"""A run's life, from the command line's request to its exit code: the locks (one measuring
run per machine, one writer per run folder), a new run or a resume (its config checked
against the one it started with), reaping what a killed lab left, measuring, and the report
at the end, whatever happened."""

import argparse
import os
import re
import sys
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from lab import report
from lab.errors import Busy, ConfigError, Interrupted, ServiceError, StorageError, UsageError
from lab.load import h2load, wrk
from lab.matrix import config as config_mod
from lab.matrix.config import Matrix
from lab.matrix.remote import NO_OVERRIDE, Override
from lab.run import progress
from lab.run.estimate import Estimate
from lab.run.runner import remaining, run_matrix
from lab.servers import ADAPTERS
from lab.store import environment
from lab.store.results import RUN_INFO, RunDir, config_hash, new_run_id, timestamp
from lab.store.schema import RunInfo
from lab.supervise.appcheck import check_app
from lab.supervise.interrupt import Interrupts
from lab.supervise.lock import FileLock, Holder, measuring_lock, writer_lock
from lab.supervise.process import PROJECT_ROOT
from lab.supervise.reaper import reap

EXIT_CELLS_FAILED = 3


@dataclass(frozen=True)
class Filters:
    """Which part of a config a command runs (``--server``, ``--workers``,
    ``--experiment``), whether it may leave loopback, and the scheduler and TLS files that
    replace the config's (``--scheduler``, ``--tls-*``)."""

    server: tuple[str, ...] = ()
    workers: tuple[int, ...] = ()
    experiment: tuple[str, ...] = ()
    allow_non_loopback: bool = False
    remote: Override = NO_OVERRIDE

    @classmethod
    def of(cls, args: argparse.Namespace) -> "Filters":
        return cls(tuple(args.server or ()), tuple(args.workers or ()),
                   tuple(args.experiment or ()), args.allow_non_loopback, override(args))


def override(args: argparse.Namespace) -> Override:
    """``--scheduler`` and ``--tls-*`` (run, validate, hosts)."""
    return Override(args.scheduler, args.tls_ca_file, args.tls_cert, args.tls_key)


@dataclass(frozen=True)
class Request:
    """What ``python -m lab run`` was asked: a new run of ``config``, or ``resume`` of a
    run folder (with ``config``, a changed one needs ``force``)."""

    config: Path | None
    resume: Path | None
    filters: Filters
    out: Path
    run_id: str | None = None
    force: bool = False
    no_wait: bool = False
    yes: bool = False
    quiet: bool = False
    max_minutes: float = 15.0

    @classmethod
    def of(cls, args: argparse.Namespace) -> "Request":
        return cls(args.config, args.resume, Filters.of(args), args.out, args.run_id,
                   args.force, args.no_wait, args.yes, args.quiet, args.max_minutes)


def checked_matrix(filters: Filters, path: Path, base_dir: Path | None = None) -> Matrix:
    """The config at ``path``, filtered, checked against this machine: its servers and wrk
    installed, its app importable. ``base_dir``: what ``lab.app_dir`` is relative to
    (default: the config's folder)."""
    matrix = config_mod.load(path, filters.allow_non_loopback, base_dir, filters.remote)
    matrix = matrix.only(set(filters.server) or None, set(filters.workers) or None,
                         set(filters.experiment) or None)
    for spec in matrix.servers:
        if not ADAPTERS[spec.name].installed():
            raise ConfigError(f"servers.{spec.name}", f"{spec.name} is not installed "
                              f"(pip install 'asgi-lab[{spec.name}]', or --server to skip it)")
    for i, exp in enumerate(matrix.experiments):
        if exp.engine == "wrk" and not wrk.available():
            raise ConfigError(f"experiments[{i}].engine", "wrk is not installed "
                              "(apt-get install wrk), or use engine = \"rawhttp\"")
        if (exp.engine == "h2load" or exp.http == "2") and not h2load.available():
            raise ConfigError(f"experiments[{i}].engine", "h2load, the HTTP/2 engine, is not "
                              "installed (apt-get install nghttp2-client)")
    check_app(matrix.lab.app, timeout_s=matrix.lab.start_timeout_s,
              app_dir=matrix.lab.app_dir, wrap=matrix.lab.wrap,
              servers=[spec.name for spec in matrix.servers])
    return matrix


def warn_about_cores(matrix: Matrix) -> None:
    """More workers than usable cores is allowed (it is a question the lab can answer), but
    rarely meant: say so before the time is spent."""
    cores = len(os.sched_getaffinity(0))
    for spec in matrix.servers:
        for w in spec.workers:
            if w > cores:
                print(f"warning: servers.{spec.name}.workers: {w} is more than this "
                      f"machine's {cores} usable cores: the workers share them, and starting "
                      "them takes longer", file=sys.stderr)


def reachable(matrix: Matrix) -> None:
    """A run on remote hosts is refused before it waits for a lock or writes a folder when
    its scheduler does not answer (``SchedulerUnreachable``: one line, exit 2) or it asks
    for what only a local run does: services (they run beside the lab), client processes
    (each load host sends its share from one process: more load hosts split it further)."""
    remote = matrix.lab.remote
    if remote is None:
        return
    if matrix.services:
        raise ConfigError("services", "a run on remote hosts does not start services (they "
                                      "run on the lab's own host); run it without a scheduler")
    for exp in matrix.experiments:
        if exp.clients > 1:
            raise ConfigError("experiments.clients",
                              f"experiment {exp.name!r} has clients = {exp.clients}: with a "
                              "scheduler each load host sends its share from one process; "
                              "add load hosts instead of client processes")
    from lab.remote.cluster import connect

    connect(remote).close()


def _take_measuring_lock(req: Request, run_dir: Path | None,
                         interrupts: Interrupts) -> FileLock:
    """The machine's measuring lock: wait for it (saying for whom) or, with --no-wait,
    refuse. A signal while waiting raises ``Interrupted``."""
    lock = measuring_lock()

    def say_waiting(holder: Holder | None) -> None:
        print(f"waiting for the measuring lock held by {holder or 'another lab process'} "
              f"… (one measuring run per machine; Ctrl-C to give up)", file=sys.stderr,
              flush=True)

    if not lock.acquire(run_dir, not req.no_wait, say_waiting, interrupts.check):
        raise Busy(f"the measuring lock ({lock.path}) is held by "
                   f"{lock.holder() or 'another lab process'}: one measuring run per "
                   "machine; run again without --no-wait to wait for it")
    return lock


def _take_writer_lock(run_dir: Path) -> FileLock:
    lock = writer_lock(run_dir)
    if not lock.acquire(run_dir, wait=False):
        holder = lock.holder()
        who = f"pid {holder.pid}" if holder else "another lab process"
        raise Busy(f"{run_dir} is being written by {who}; wait for it or stop it")
    return lock


def run(req: Request) -> int:
    """``python -m lab run``: the whole life of a run, from its locks to its report; the
    exit code."""
    # Before any wait for a lock, so that Ctrl-C or SIGTERM while waiting exits cleanly.
    interrupts = Interrupts()
    interrupts.install()
    locks = ExitStack()
    try:
        try:
            run, info, matrix = _open_run(req, interrupts, locks)
        except Interrupted as e:
            print(f"interrupted by signal {e.signum} while waiting for the measuring lock; "
                  "nothing was run", file=sys.stderr)
            return e.exit_code
        return _measure(req, run, info, matrix, interrupts)
    finally:
        locks.close()  # the kernel would drop them at exit too, even after SIGKILL


def _open_run(req: Request, interrupts: Interrupts, locks: ExitStack
              ) -> tuple[RunDir, RunInfo, Matrix]:
    """Check the arguments and take the locks: the run folder's writer lock, which never
    waits, and the machine's measuring lock. A resume takes them in that order; a new run
    takes the measuring lock first and creates its folder after, so that a run that waits,
    gives up or is refused writes nothing."""
    if req.resume:
        run = RunDir.existing(req.resume)
        locks.callback(_take_writer_lock(run.path).release)
        info = run.info()
        if req.run_id:
            raise UsageError("--run-id: not with --resume (the run keeps its folder's name)")
        if not run.read_json(RUN_INFO) and (run.path / RUN_INFO).exists():
            raise UsageError(f"{run.path / RUN_INFO}: corrupt, so the config it ran with "
                             "cannot be checked; start a new run")
        path = req.config or run.path / "config.toml"
        text = path.read_text(encoding="utf-8") if path.is_file() else ""
        changed = bool(req.config) and config_hash(text) != info.config_hash
        if changed and not req.force:
            raise UsageError(f"{req.config}: changed since {run.path.name} started "
                             "(config hash differs); use --force to resume anyway")
        # The run's copy of its config is in the run folder: its app_dir stays relative to
        # the folder of the config the run was started with.
        base = None if req.config else Path(info.config_dir) if info.config_dir else None
        matrix = checked_matrix(req.filters, path, base)
        if matrix.lab.remote is None and any(a.split("=")[0] == "--scheduler"
                                             for a in info.argv):
            raise UsageError(f"{run.path.name} was measured on remote hosts (--scheduler "
                             "in its command line): resume it with --scheduler ADDRESS, "
                             "or start a new run to measure locally")
        reachable(matrix)
        if changed and req.config is not None:  # it goes on with this config from now on
            kept = run.replace_config(text)
            info.config, info.config_hash = str(req.config), config_hash(text)
            info.config_dir = str(req.config.resolve().parent)
            print(f"config changed: cells whose measurement changed run again; the previous "
                  f"config is kept as {kept}", flush=True)
        locks.callback(_take_measuring_lock(req, run.path, interrupts).release)
        return run, info, matrix
    if req.config is None:
        raise UsageError("run: CONFIG is required (or --resume RUN_DIR)")
    if req.run_id and not re.fullmatch(r"[\w.-]{1,100}", req.run_id) \
            or req.run_id in (".", ".."):
        raise UsageError(f"--run-id: {req.run_id[:100]!r} must be 1 to 100 letters, digits, "
                         "'.', '-' or '_' (it names a folder under --out)")
    if req.run_id:
        RunDir.check_new(req.out / req.run_id)  # before waiting, not after
    matrix = checked_matrix(req.filters, req.config)
    reachable(matrix)
    warn_about_cores(matrix)
    text = req.config.read_text(encoding="utf-8")
    estimate = Estimate.of(matrix.cells(), matrix.lab.restart).minutes
    if not estimate <= req.max_minutes and not req.yes:  # nan asks too
        raise UsageError(f"{req.config}: estimated {estimate:.1f} min exceeds "
                         f"--max-minutes {req.max_minutes:g}; pass --yes to run it")
    measuring = _take_measuring_lock(req, None, interrupts)
    locks.callback(measuring.release)
    run = RunDir.create(req.out, req.run_id or new_run_id(req.config), text)
    locks.callback(_take_writer_lock(run.path).release)  # a new folder: free at once
    measuring.name(run.path)
    info = RunInfo(config=str(req.config), config_dir=str(req.config.resolve().parent),
                   config_hash=config_hash(text), started_at=timestamp(), argv=sys.argv,
                   order=matrix.lab.order, seed=matrix.lab.seed, baseline=matrix.lab.baseline,
                   repeats=matrix.lab.repeats)
    return run, info, matrix


def _measure(req: Request, run: RunDir, info: RunInfo, matrix: Matrix,
             interrupts: Interrupts) -> int:
    for message in reap(req.out if not req.resume else run.path.parent, writing=run.path):
        print(message, file=sys.stderr)
    cells = matrix.cells()
    todo = remaining(matrix, run)
    info.cells_total, info.planned = len(cells), sorted({c.key(matrix.lab) for c in cells})
    if req.resume and not todo:
        run.write_info(info)  # the plan of a config changed with --force
        print(f"nothing to do: all {len(cells)} cells of {run.path} have results; "
              f"report: {report.build(run)}", flush=True)
        return _planned_outcome(run, len(cells))
    info.state = "running"
    run.write_info(info)
    run.record_environment(environment.collect(PROJECT_ROOT))
    if not req.quiet:
        print(f"running {len(todo)} cells"
              + (f" of {len(cells)}" if len(todo) < len(cells) else "")
              + f" ({Estimate.of(todo, matrix.lab.restart).text()}) → {run.path}/",
              flush=True)
    code = 0
    shown = progress.display(todo, matrix.lab.restart, req.quiet)
    try:
        try:
            outcome = run_matrix(matrix, run, interrupts, out=shown.line,
                                 on_start=shown.started)
        finally:
            shown.close()
        info.state = "finished"
        code = _planned_outcome(run, len(cells), outcome.failed)
    except Interrupted as e:
        info.state, info.signal = "interrupted", e.signum
        print(f"interrupted by signal {e.signum}: servers stopped, finished cells kept; "
              f"resume with: python -m lab run --resume {run.path}", file=sys.stderr)
        code = e.exit_code
    except (StorageError, ServiceError) as e:
        info.state, info.error = "failed", str(e)
        print(f"error: {e}; servers stopped; resume with: python -m lab run --resume "
              f"{run.path}", file=sys.stderr)
        code = e.exit_code
    finally:
        info.finished_at = timestamp()
        try:
            run.write_info(info)
            print(f"report: {report.build(run)}", flush=True)
        except (StorageError, OSError) as e:  # the disk that failed the run may fail these
            print(f"error: could not write run.json or report.md ({e}); the results are "
                  f"in {run.results}", file=sys.stderr)
            code = code or StorageError.exit_code
    return code


def _planned_outcome(run: RunDir, planned: int, failed_now: int = 0) -> int:
    """The exit code says whether every planned cell is ok, also those that failed in an
    earlier session of a resumed run (and stay failed: a failure is a result)."""
    loaded = run.load()
    loaded.stale(run.info().planned)
    failed = loaded.failed()
    if not failed:
        return 0
    earlier = f" ({failed - failed_now} in an earlier session)" if failed > failed_now else ""
    print(f"{failed} of {planned} cells failed{earlier}; see the report's 'Failed cells'",
          file=sys.stderr)
    return EXIT_CELLS_FAILED
