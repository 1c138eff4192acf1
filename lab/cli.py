"""``python -m lab``: run, validate, report, compare, list, hosts.

Exit codes: 0 all cells ok; 2 bad config or arguments, or refused because another lab
holds a lock the command needs; 3 the run finished but some cells failed (the report
lists them); 4 ``compare`` found a regression; 128 + signal when interrupted (130 Ctrl-C,
143 SIGTERM), and 141 (SIGPIPE's) when the reader of the output left early (``| head``).
"""

import argparse
import io
import math
import os
import shutil
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from lab import report
from lab.errors import (
    LabError,
    StorageError,
    UsageError,
)
from lab.kinds import kinds
from lab.load import h2load, wrk
from lab.matrix import config as config_mod
from lab.matrix import placement
from lab.matrix.remote import of_flags
from lab.report.compare import EXIT_REGRESSED, compare_runs
from lab.report.compare import render as render_comparison
from lab.report.merge import merge
from lab.run import session
from lab.run.estimate import Estimate
from lab.servers import ADAPTERS
from lab.store.results import (
    RunDir,
    write_atomically,
)

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
    _add_remote(p)


def _add_remote(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="the Dask scheduler of the remote hosts, replacing lab.scheduler: "
                        "tls://HOST:PORT, or tcp://127.0.0.1:PORT on loopback only")
    p.add_argument("--tls-ca-file", metavar="FILE",
                   help="the scheduler's CA certificate (replaces lab.tls.ca_file)")
    p.add_argument("--tls-cert", metavar="FILE",
                   help="this side's certificate (replaces lab.tls.cert_file)")
    p.add_argument("--tls-key", metavar="FILE",
                   help="this side's private key (replaces lab.tls.key_file)")


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="python -m lab", description=(
        "Measure ASGI servers (uvicorn, hypercorn, granian, gunicorn) at several worker "
        "counts and options, from a TOML config matrix, and write a markdown comparison "
        "report."),
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
                         "`tox -e uvicorn|hypercorn|granian|gunicorn` runs) into one report "
                         "in DIR, saying when their environments differ.")
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

    hst = sub.add_parser("hosts", help="the remote hosts a scheduler sees: roles, cores, "
                         "versions", description="List the Dask workers of the scheduler "
                         "(--scheduler, or CONFIG's lab.scheduler) with their roles (server, "
                         "loadgen), cores, CPU model, Python and asgi-lab version, and say "
                         "where server and load hosts differ in the versions that matter.")
    hst.add_argument("config", type=Path, nargs="?",
                     help="TOML config whose lab.scheduler to use (optional with --scheduler)")
    _add_remote(hst)
    return p


def cmd_validate(args: argparse.Namespace) -> int:
    matrix = session.checked_matrix(session.Filters.of(args), args.config)
    session.warn_about_cores(matrix)
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
    for name, kind in kinds().items():
        print(f"  {name:10} {kind.help} (axis: {kind.load_key})")
    wrk_state = (f"installed ({shutil.which('wrk')}): closed loops use it by default"
                 if wrk.available() else
                 "NOT installed: closed loops fall back to rawhttp and their throughput "
                 "measures the client; apt-get install wrk")
    h2load_state = (f"installed ({shutil.which('h2load')}): closed loops with http = \"2\" "
                    "use it" if h2load.available() else
                    "NOT installed: http = \"2\" cannot run; apt-get install nghttp2-client")
    print("engines:")
    print(f"  wrk        {wrk_state}")
    print(f"  h2load     {h2load_state}")
    print("  rawhttp    Python, the lab's own (asyncio protocol on httptools, uvloop); bursts,")
    print("             probes and the open model (default), closed loops without wrk")
    print("  aiohttp    Python; when asked (engine = \"aiohttp\")")
    print("  httpx      Python; when asked (engine = \"httpx\"; closed: a client per user)")
    print("  rawws      Python, the lab's own WebSocket client (asyncio protocol, uvloop);\n"
          "             the websocket kinds (default)")
    print("  websockets Python, the websockets library's client; websocket kinds, when asked")
    print(f"placement: {_placement_text(placement.Placement.default(placement.usable_cpus()))}")
    return 0


def _placement_text(p: placement.Placement) -> str:
    if p.shared:
        return (f"{len(placement.usable_cpus())} usable cores: client and servers share them "
                "by default (set lab.server_cpus / lab.client_cpus to pin)")
    return (f"servers on CPUs {placement.format_cpuset(p.server_set())}, the client on "
            f"{placement.format_cpuset(p.client_set())} by default")


def _with_results(path: Path) -> RunDir:
    """A run folder with a line some report can read; else why not, in one line."""
    run = RunDir.existing(path)
    if not run.has_results():
        problems = run.load().warnings
        why = f"{problems[0]}" + (f" (and {len(problems) - 1} more lines)"
                                  if len(problems) > 1 else "") if problems \
            else "results.jsonl is empty"
        raise UsageError(f"{run.path}: has no results yet ({why})")
    return run


def cmd_report(args: argparse.Namespace) -> int:
    runs = [_with_results(path) for path in args.run_dirs]
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
    base, new = _with_results(args.base), _with_results(args.new)
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


def cmd_run(args: argparse.Namespace) -> int:
    return session.run(session.Request.of(args))


def cmd_hosts(args: argparse.Namespace) -> int:
    flags = session.override(args)
    remote = (of_flags(flags) if args.config is None
              else config_mod.load(args.config, override=flags).lab.remote)
    if remote is None:
        raise UsageError(f"{args.config}: has no lab.scheduler; give --scheduler ADDRESS")
    from lab.remote import hosts  # imports distributed: only for this command

    print(hosts.render(hosts.listed(remote)))
    return 0


COMMANDS = {"run": cmd_run, "validate": cmd_validate, "report": cmd_report,
            "compare": cmd_compare, "list": cmd_list, "hosts": cmd_hosts}


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
