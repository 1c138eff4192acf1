"""``python -m lab``: run, validate, report, compare, list.

Exit codes: 0 all cells ok; 2 bad config or arguments, or refused because another lab
holds a lock the command needs; 3 the run finished but some cells failed (the report
lists them); 4 ``compare`` found a regression; 128 + signal when interrupted (130 Ctrl-C,
143 SIGTERM), and 141 (SIGPIPE's) when the reader of the output left early (``| head``).
"""

import argparse
import io
import math
import os
import re
import shutil
import signal
import sys
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import NoReturn

from lab import config as config_mod
from lab import environment, placement, progress, report
from lab.appcheck import check_app
from lab.config import KINDS, Matrix
from lab.errors import (
    Busy,
    ConfigError,
    Interrupted,
    LabError,
    ServiceError,
    StorageError,
    UsageError,
)
from lab.estimate import Estimate
from lab.interrupt import Interrupts
from lab.load import wrk
from lab.lock import FileLock, Holder, measuring_lock, writer_lock
from lab.process import PROJECT_ROOT
from lab.reaper import reap
from lab.report.compare import EXIT_REGRESSED, compare_runs
from lab.report.compare import render as render_comparison
from lab.report.merge import merge
from lab.results import (
    PLANNED,
    RUN_INFO,
    RunDir,
    config_hash,
    new_run_id,
    timestamp,
    write_atomically,
)
from lab.runner import remaining, run_matrix
from lab.servers import ADAPTERS

EXIT_CELLS_FAILED = 3
EXIT_BROKEN_PIPE = 128 + signal.SIGPIPE  # the shell's code for a tool SIGPIPE ended
DEFAULT_MAX_MINUTES = 15.0


class Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as one line and exit code 2, like every error."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message} (see --help)")


def _minutes(text: str) -> float:
    """--max-minutes: a finite number ≥ 0 (nan would pass every estimate)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of minutes, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number ≥ 0, got {text}")
    return value


def _percent(text: str) -> float:
    try:
        value = float(text.rstrip("%"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a percentage, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite percentage ≥ 0, got {text}")
    return value


def _add_filters(p: argparse.ArgumentParser) -> None:
    p.add_argument("--server", action="append", metavar="NAME",
                   help="only this server (repeatable), e.g. --server uvicorn")
    p.add_argument("--workers", action="append", type=int, metavar="N",
                   help="only this worker count (repeatable)")
    p.add_argument("--experiment", action="append", metavar="NAME",
                   help="only the experiment with this name (repeatable)")
    p.add_argument("--allow-non-loopback", action="store_true",
                   help="allow lab.host to be an address other than 127.0.0.1/localhost/::1")


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="python -m lab", description=(
        "Measure ASGI servers (uvicorn, hypercorn, granian) at several worker counts and "
        "options, from a TOML config matrix, and write a markdown comparison report."),
        epilog="exit codes: 0 ok, 1 the run folder could not be written (disk full), "
               "2 bad config/arguments or a lock held by another lab, 3 some cells failed, "
               "4 compare found a regression, "
               "128+N interrupted by signal N (130 SIGINT, 143 SIGTERM, 129 SIGHUP; 141 "
               "when the output's reader left early, as with | head)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)

    run = sub.add_parser("run", help="run a config matrix and write reports/<run-id>/report.md",
                         description="Start every server configuration of CONFIG in turn, run "
                         "its experiments, append each finished cell to results.jsonl and "
                         "write report.md. One run measures at a time on a machine: a second "
                         "run waits for the first (see --no-wait). Before measuring, it "
                         "stops servers left running by a lab that died (never those of a "
                         "lab still running).")
    run.add_argument("config", type=Path, nargs="?",
                     help="TOML config, e.g. configs/matrix.toml (optional with --resume)")
    _add_filters(run)
    run.add_argument("--out", type=Path, default=Path("reports"),
                     help="where run directories go (default: reports)")
    run.add_argument("--run-id", help="name of the run directory (default: time-config)")
    run.add_argument("--resume", type=Path, metavar="RUN_DIR",
                     help="finish an interrupted run: only cells not in its results.jsonl "
                          "(refused while another lab is still writing RUN_DIR)")
    run.add_argument("--force", action="store_true",
                     help="with --resume: accept a config that changed since the run started")
    run.add_argument("--no-wait", action="store_true",
                     help="if another run is measuring on this machine, exit 2 at once "
                          "instead of waiting for it to finish")
    run.add_argument("--yes", action="store_true",
                     help="run even if the estimate exceeds --max-minutes")
    run.add_argument("--quiet", action="store_true",
                     help="print no line per cell and no live progress; only warnings, "
                          "errors and the report's path (on a terminal the progress is a "
                          "live display with an ETA, elsewhere a plain line per cell)")
    run.add_argument("--max-minutes", type=_minutes, default=DEFAULT_MAX_MINUTES,
                     help=f"refuse longer estimated runs without --yes "
                          f"(default {DEFAULT_MAX_MINUTES:g})")

    val = sub.add_parser("validate", help="check a config; print its cells and an estimate",
                         description="Parse and check CONFIG without starting anything; print "
                         "every cell it would run and the estimated duration.")
    val.add_argument("config", type=Path, help="TOML config")
    _add_filters(val)

    rep = sub.add_parser("report", help="rebuild report.md of a run, or merge runs into one",
                         description="Rebuild RUN_DIR/report.md from its results files only. "
                         "With several RUN_DIRs and --out DIR: merge the runs (e.g. the "
                         "three `tox -e uvicorn|hypercorn|granian` runs) into one report in "
                         "DIR, saying when their environments differ.")
    rep.add_argument("run_dirs", type=Path, nargs="+", metavar="RUN_DIR",
                     help="e.g. reports/20261126-101500-matrix")
    rep.add_argument("--out", type=Path, metavar="DIR",
                     help="write the (merged) report to DIR, a new folder, instead of "
                          "RUN_DIR; needed with several RUN_DIRs")

    cmp = sub.add_parser(
        "compare", help="what changed from one run to another, cell by cell",
        description="Write a markdown diff of NEW_RUN against BASE_RUN: each cell's headline "
        "figure BASE → NEW with its change and a verdict (improved / regressed / no clear "
        "difference / no verdict), using the report's rule: ≥ 3 repeats per side, ranges "
        "that do not overlap and a change beyond the noise floor. Also lists the cells in "
        "only one run and compares the runs' environments.",
        epilog=f"exit codes: 0 no regression, {EXIT_REGRESSED} a regression (a 'regressed' "
               "verdict beyond --threshold, or a cell that worked in BASE_RUN and failed in "
               "NEW_RUN): use it to gate CI; 2 bad arguments")
    cmp.add_argument("base", type=Path, metavar="BASE_RUN", help="the run to compare against")
    cmp.add_argument("new", type=Path, metavar="NEW_RUN", help="the run to judge")
    cmp.add_argument("--threshold", type=_percent, metavar="PCT",
                     help="only a regression worse by more than PCT %% counts for the exit "
                          "code (default: any 'regressed' verdict, i.e. beyond the noise "
                          "floor); it never makes a change inside the noise count")
    cmp.add_argument("--out", type=Path, metavar="FILE",
                     help="write the markdown here (default: print it)")

    sub.add_parser("list", help="servers installed (with versions), experiment kinds, engines",
                   description="What this installation can measure.")
    return p


def _matrix(args: argparse.Namespace, path: Path, base_dir: Path | None = None) -> Matrix:
    """``base_dir``: what ``lab.app_dir`` is relative to (default: the config's folder)."""
    matrix = config_mod.load(path, args.allow_non_loopback, base_dir)
    matrix = matrix.only(set(args.server or ()) or None, set(args.workers or ()) or None,
                         set(args.experiment or ()) or None)
    for spec in matrix.servers:
        if not ADAPTERS[spec.name].installed():
            raise ConfigError(f"servers.{spec.name}", f"{spec.name} is not installed "
                              f"(pip install 'asgi-lab[{spec.name}]', or --server to skip it)")
    for i, exp in enumerate(matrix.experiments):
        if exp.engine == "wrk" and not wrk.available():
            raise ConfigError(f"experiments[{i}].engine", "wrk is not installed "
                              "(apt-get install wrk), or use engine = \"rawhttp\"")
    check_app(matrix.lab.app, timeout_s=matrix.lab.start_timeout_s,
              app_dir=matrix.lab.app_dir, wrap=matrix.lab.wrap,
              servers=[spec.name for spec in matrix.servers])
    return matrix


def _warn_about_cores(matrix: Matrix) -> None:
    """More workers than usable cores is allowed (it is a question the lab can answer), but
    rarely meant: say so before the time is spent."""
    cores = len(os.sched_getaffinity(0))
    for spec in matrix.servers:
        for w in spec.workers:
            if w > cores:
                print(f"warning: servers.{spec.name}.workers: {w} is more than this "
                      f"machine's {cores} usable cores: the workers share them, and starting "
                      "them takes longer", file=sys.stderr)


def cmd_validate(args: argparse.Namespace) -> int:
    matrix = _matrix(args, args.config)
    _warn_about_cores(matrix)
    cells = matrix.cells()
    for cell in cells:
        print(cell.id)
    estimate = Estimate.of(cells, matrix.lab.restart)
    print(f"{args.config}: ok — {len(cells)} cells, {estimate.text()}")
    return 0


def cmd_list(_: argparse.Namespace) -> int:
    print("servers:")
    for a in ADAPTERS.values():
        state = f"{a.version()}" if a.installed() else "not installed"
        print(f"  {a.name:10} {state}")
        for key, opt in a.options.items():
            allowed = "|".join(opt.choices) if opt.choices else opt.type.__name__
            default = f" (lab default {a.defaults[key]})" if key in a.defaults else ""
            print(f"      {key:22} {allowed:26} {opt.help}{default}")
    print("experiment kinds:")
    for name, kind in KINDS.items():
        print(f"  {name:10} {kind.help} (axis: {kind.load_key})")
    wrk_state = (f"installed ({shutil.which('wrk')}): closed loops use it by default"
                 if wrk.available() else
                 "NOT installed: closed loops fall back to rawhttp and their throughput "
                 "measures the client; apt-get install wrk")
    print("engines:")
    print(f"  wrk        {wrk_state}")
    print("  rawhttp    Python, the lab's own (asyncio protocol on httptools, uvloop); bursts,")
    print("             probes and the open model (default), closed loops without wrk")
    print("  aiohttp    Python; when asked (engine = \"aiohttp\")")
    print("  httpx      Python; when asked (engine = \"httpx\"; closed: a client per user)")
    print(f"placement: {_placement_text(placement.Placement.default(placement.usable_cpus()))}")
    return 0


def _placement_text(p: placement.Placement) -> str:
    if p.shared:
        return (f"{len(placement.usable_cpus())} usable cores: client and servers share them "
                "by default (set lab.server_cpus / lab.client_cpus to pin)")
    return (f"servers on CPUs {placement.format_cpuset(p.server_set())}, the client on "
            f"{placement.format_cpuset(p.client_set())} by default")


def cmd_report(args: argparse.Namespace) -> int:
    runs = [RunDir.existing(path) for path in args.run_dirs]
    for run in runs:
        if not run.has_results():
            raise UsageError(f"{run.path}: has no results yet (results.jsonl is empty)")
    if len(runs) > 1 and args.out is None:
        raise UsageError("report: several RUN_DIRs need --out DIR (where the merged report "
                         "goes)")
    try:
        if args.out is not None:
            merged, warnings = merge(runs, args.out)
            for warning in warnings:
                print(f"warning: {warning}", file=sys.stderr)
            runs = [merged]
        print(report.build(runs[0]))
    except StorageError as e:  # a folder the user cannot write: an argument to change
        elsewhere = "" if args.out else (f"; write it elsewhere with: python -m lab report "
                                         f"{runs[0].path} --out DIR")
        raise UsageError(f"{e}{elsewhere}") from None
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    base, new = RunDir.existing(args.base), RunDir.existing(args.new)
    for run in (base, new):
        if not run.has_results():
            raise UsageError(f"{run.path}: has no results yet (results.jsonl is empty)")
    result = compare_runs(base, new, threshold_pct=args.threshold)
    text = render_comparison(result)
    if args.out:
        try:
            write_atomically(args.out, lambda tmp: tmp.write_text(text, encoding="utf-8"))
        except StorageError as e:
            raise UsageError(f"--out {e}") from None
        print(args.out)
    else:
        print(text)
    for c in result.regressions:
        print(f"regression: {c.cell}: {c.verdict}", file=sys.stderr)
    return EXIT_REGRESSED if result.regressions else 0


def _take_measuring_lock(args: argparse.Namespace, run_dir: Path | None,
                         interrupts: Interrupts) -> FileLock:
    """The machine's measuring lock: wait for it (saying for whom) or, with --no-wait,
    refuse. A signal while waiting raises ``Interrupted``."""
    lock = measuring_lock()

    def say_waiting(holder: Holder | None) -> None:
        print(f"waiting for the measuring lock held by {holder or 'another lab process'} "
              f"… (one measuring run per machine; Ctrl-C to give up)", file=sys.stderr,
              flush=True)

    if not lock.acquire(run_dir, not args.no_wait, say_waiting, interrupts.check):
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


def cmd_run(args: argparse.Namespace) -> int:
    # Before any wait for a lock, so that Ctrl-C or SIGTERM while waiting exits cleanly.
    interrupts = Interrupts()
    interrupts.install()
    locks = ExitStack()
    try:
        try:
            run, info, matrix = _open_run(args, interrupts, locks)
        except Interrupted as e:
            print(f"interrupted by signal {e.signum} while waiting for the measuring lock; "
                  "nothing was run", file=sys.stderr)
            return e.exit_code
        return _measure(args, run, info, matrix, interrupts)
    finally:
        locks.close()  # the kernel would drop them at exit too, even after SIGKILL


def _open_run(args: argparse.Namespace, interrupts: Interrupts, locks: ExitStack
              ) -> tuple[RunDir, dict[str, object], Matrix]:
    """Check the arguments and take the locks: the run folder's writer lock, which never
    waits, and the machine's measuring lock. A resume takes them in that order; a new run
    takes the measuring lock first and creates its folder after, so that a run that waits,
    gives up or is refused writes nothing."""
    if args.resume:
        run = RunDir.existing(args.resume)
        locks.callback(_take_writer_lock(run.path).release)
        info = run.read_json(RUN_INFO)
        if args.run_id:
            raise UsageError("--run-id: not with --resume (the run keeps its folder's name)")
        if not info and (run.path / RUN_INFO).exists():
            raise UsageError(f"{run.path / RUN_INFO}: corrupt, so the config it ran with "
                             "cannot be checked; start a new run")
        path = args.config or run.path / "config.toml"
        text = path.read_text(encoding="utf-8") if path.is_file() else ""
        changed = bool(args.config) and config_hash(text) != info.get("config_hash")
        if changed and not args.force:
            raise UsageError(f"{args.config}: changed since {run.path.name} started "
                             "(config hash differs); use --force to resume anyway")
        # The run's copy of its config is in the run folder: its app_dir stays relative to
        # the folder of the config the run was started with.
        base = None if args.config else Path(str(info["config_dir"])) \
            if info.get("config_dir") else None
        matrix = _matrix(args, path, base)
        if changed:  # the run goes on with this config: a later plain --resume too
            kept = run.replace_config(text)
            info |= {"config": str(args.config), "config_hash": config_hash(text),
                     "config_dir": str(args.config.resolve().parent)}
            print(f"config changed: cells whose measurement changed run again; the previous "
                  f"config is kept as {kept}", flush=True)
        locks.callback(_take_measuring_lock(args, run.path, interrupts).release)
        return run, info, matrix
    if args.config is None:
        raise UsageError("run: CONFIG is required (or --resume RUN_DIR)")
    if args.run_id and not re.fullmatch(r"[\w.-]{1,100}", args.run_id) \
            or args.run_id in (".", ".."):
        raise UsageError(f"--run-id: {args.run_id[:100]!r} must be 1 to 100 letters, digits, "
                         "'.', '-' or '_' (it names a folder under --out)")
    if args.run_id:
        RunDir.check_new(args.out / args.run_id)  # before waiting, not after
    matrix = _matrix(args, args.config)
    _warn_about_cores(matrix)
    text = args.config.read_text(encoding="utf-8")
    estimate = Estimate.of(matrix.cells(), matrix.lab.restart).minutes
    if not estimate <= args.max_minutes and not args.yes:  # nan asks too
        raise UsageError(f"{args.config}: estimated {estimate:.1f} min exceeds "
                         f"--max-minutes {args.max_minutes:g}; pass --yes to run it")
    measuring = _take_measuring_lock(args, None, interrupts)
    locks.callback(measuring.release)
    run = RunDir.create(args.out, args.run_id or new_run_id(args.config), text)
    locks.callback(_take_writer_lock(run.path).release)  # a new folder: free at once
    measuring.name(run.path)
    info = {"config": str(args.config), "config_dir": str(args.config.resolve().parent),
            "config_hash": config_hash(text),
            "started_at": timestamp(), "argv": sys.argv, "order": matrix.lab.order,
            "seed": matrix.lab.seed, "baseline": matrix.lab.baseline,
            "repeats": matrix.lab.repeats}
    return run, info, matrix


def _measure(args: argparse.Namespace, run: RunDir, info: dict[str, object], matrix: Matrix,
             interrupts: Interrupts) -> int:
    for message in reap(args.out if not args.resume else run.path.parent, writing=run.path):
        print(message, file=sys.stderr)
    cells = matrix.cells()
    todo = remaining(matrix, run)
    info |= {"cells_total": len(cells), PLANNED: sorted({c.key(matrix.lab) for c in cells})}
    if args.resume and not todo:
        run.write_json(RUN_INFO, info)  # the plan of a config changed with --force
        print(f"nothing to do: all {len(cells)} cells of {run.path} have results; "
              f"report: {report.build(run)}", flush=True)
        return _planned_outcome(run, len(cells))
    info["state"] = "running"
    run.write_json(RUN_INFO, info)
    run.record_environment(environment.collect(PROJECT_ROOT))
    if not args.quiet:
        print(f"running {len(todo)} cells"
              + (f" of {len(cells)}" if len(todo) < len(cells) else "")
              + f" ({Estimate.of(todo, matrix.lab.restart).text()}) → {run.path}/",
              flush=True)
    code = 0
    shown = progress.display(todo, matrix.lab.restart, args.quiet)
    try:
        try:
            outcome = run_matrix(matrix, run, interrupts, out=shown.line,
                                 on_start=shown.started)
        finally:
            shown.close()
        info["state"] = "finished"
        code = _planned_outcome(run, len(cells), outcome.failed)
    except Interrupted as e:
        info |= {"state": "interrupted", "signal": e.signum}
        print(f"interrupted by signal {e.signum}: servers stopped, finished cells kept; "
              f"resume with: python -m lab run --resume {run.path}", file=sys.stderr)
        code = e.exit_code
    except (StorageError, ServiceError) as e:
        info |= {"state": "failed", "error": str(e)}
        print(f"error: {e}; servers stopped; resume with: python -m lab run --resume "
              f"{run.path}", file=sys.stderr)
        code = e.exit_code
    finally:
        info["finished_at"] = timestamp()
        try:
            run.write_json(RUN_INFO, info)
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
    loaded.stale(run.read_json(RUN_INFO).get(PLANNED))
    failed = loaded.failed()
    if not failed:
        return 0
    earlier = f" ({failed - failed_now} in an earlier session)" if failed > failed_now else ""
    print(f"{failed} of {planned} cells failed{earlier}; see the report's 'Failed cells'",
          file=sys.stderr)
    return EXIT_CELLS_FAILED


COMMANDS = {"run": cmd_run, "validate": cmd_validate, "report": cmd_report,
            "compare": cmd_compare, "list": cmd_list}


def _utf8_output() -> None:
    """Under an ASCII locale (``LC_ALL=C``) the first "—" printed would be a traceback: write
    UTF-8, as every file of the lab is, and escape what even that cannot encode (a path's
    undecodable bytes)."""
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(encoding="utf-8", errors="backslashreplace")


def main(argv: Sequence[str] | None = None) -> int:
    _utf8_output()
    try:
        try:
            args = build_parser().parse_args(argv)
            code = COMMANDS[args.command](args)
        except LabError as e:
            print(f"error: {e}", file=sys.stderr)
            code = e.exit_code
        sys.stdout.flush()  # here, not at exit: a reader gone (``| head``) fails this
        return code
    except BrokenPipeError:
        # Quiet, as a shell tool that SIGPIPE ends, and its exit code, not 0: the output was
        # cut short. What is left to write (the interpreter flushes at exit) goes to
        # /dev/null instead of failing again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        for stream in (sys.stdout, sys.stderr):
            os.dup2(devnull, stream.fileno())
        return EXIT_BROKEN_PIPE
