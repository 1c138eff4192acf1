"""Assemble report.md: findings, one table per comparison, settings, failures, environment."""

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tabulate import tabulate

from lab.kinds import get, kinds
from lab.load.stats import Spread
from lab.matrix.config import PYTHON_ENGINES
from lab.report import article, loop, stream, websocket
from lab.report.facts import Knee
from lab.report.findings import findings
from lab.report.fmt import fmt
from lab.report.groups import CLIENT_SHARE_BAR, Comparison
from lab.report.merge import environment_warnings
from lab.report.model import NOISY_SPREAD_PCT, Report, noisy
from lab.report.summary import in_short
from lab.report.tables import notes, table
from lab.report.ways import ways_findings, ways_short
from lab.report.where import NOT_EQUALS, Where, differ, places, remote_line
from lab.servers.base import FACTS, THREADS
from lab.store.results import ENVIRONMENT, RunDir, current, write_atomically
from lab.store.schema import NOT_SERVED, MergedRun, Result, RunInfo

if TYPE_CHECKING:
    from lab.report.charts import Chart

REPORT = "report.md"
HOSTS_NOTE = ("*server host* / *load hosts* are where each side ran (its CPUs are that "
              "host's; the lab's: the machine the lab ran on). ")
SETTINGS = (*FACTS, "other options")  # the results store sorts keys: restore the order
THREADS_NOTE = ("*threads* is the size of anyio's default thread limiter in each worker "
                "(`lab.threads`; *default*: the app's own, 40 unless it changes it), which "
                "FastAPI and Starlette run `def` endpoints and sync dependencies in. ")


def _title(comp: Comparison) -> str:
    load = ", ".join(f"{k} = {v:g}" if isinstance(v, float) else f"{k} = {v}"
                     for k, v in comp.load.items() if v is not None)  # an unset setting
    params = ", ".join(f"{k} = {v}" for k, v in comp.params.items())
    return f"`{comp.endpoint}` — {load}" + (f"; {params}" if params else "") \
        + f" (engine {comp.engine})"


def _warnings(info: RunInfo, records: Sequence[Result]) -> list[str]:
    """What a reader must know before any figure: a run that did not finish, runs merged,
    a client that measured itself."""
    lines = []
    if info.merged_from is not None:
        lines += _merged_warnings(info, info.merged_from, records)
    elif info.state == "interrupted":
        lines += [f"> **This run was interrupted** (signal {info.signal}): the report "
                  "covers only the cells that finished.", ""]
    elif info.state == "running":
        lines += ["> **This run had not finished** when the report was written.", ""]
    return lines + _client_warnings(records)


def _or(value: object, missing: str = "?") -> object:
    """A run.json value as the report shows it; one an older run.json lacks as ``missing``."""
    return missing if value is None else value


def _counts(records: Sequence[Result]) -> str:
    """"9 ok, 1 failed", and how many a server could not serve (not failures) if any."""
    failed = sum(r.status == "failed" for r in records)
    refused = sum(r.status == NOT_SERVED for r in records)
    return (f"{len(records) - failed - refused} ok, {failed} failed"
            + (f", {refused} not served" if refused else ""))


def _this_run(info: RunInfo, records: Sequence[Result]) -> list[str]:
    if info.merged_from is not None:
        return _merged_runs(info, info.merged_from, records)
    return [
        "## This run", "",
        f"- config: `{_or(info.config)}` (sha256 {_or(info.config_hash)}, "
        f"copy in `config.toml`)",
        f"- cells: {len(records)} finished ({_counts(records)})"
        + (f" of {info.cells_total} planned" if info.cells_total is not None else ""),
        f"- repeats: {_or(info.repeats)}, run {_or(info.order)} (seed "
        f"{_or(info.seed)}): every repeat of a point ran all configurations side by "
        "side; baseline: " + (f"`{info.baseline}`" if info.baseline
                              else "the best row of each table"),
        f"- started {_or(info.started_at)}, finished {_or(info.finished_at, '–')}",
        _placement_line(records),
        "",
    ]


def _stale(stale: list[str]) -> list[str]:
    """Results the run holds of cells its current config no longer has: named, not shown."""
    if not stale:
        return []
    ids = ", ".join(f"`{cell_id}`" for cell_id in stale)
    return [f"{len(stale)} stale results, of cells that the config no longer has (it was "
            f"changed and the run resumed with --force), are kept in the results file and "
            f"left out of every table: {ids}.", ""]


def _merged_warnings(info: RunInfo, sources: list[MergedRun], records: Sequence[Result]
                     ) -> list[str]:
    """Rows of merged runs did not run side by side (louder when the runs' environments
    or their hosts differ)."""
    if len(sources) == 1:
        lines = [f"> **A copy of run `{sources[0].run}`** (`lab report --out`).", ""]
    else:
        lines = [f"> **This report merges {len(sources)} runs.** Rows from different runs did "
                 "not run side by side: a difference between them is weaker evidence than "
                 "one between repeats of the same run (the machine may have been busier during "
                 "one run).", ""]
    if env := environment_warnings(info):
        lines += ["> **⚠ The runs' environments differ:** " + "; ".join(env) + ". Differences "
                  "between runs in different environments are weaker evidence still: they "
                  "may be the environment's, not the servers'.", ""]
    if where := differ([(src.run, places(r for r in records if r.source_run == src.run))
                        for src in sources]):
        lines += [f"> **⚠ The runs ran in different places** ({where}): {NOT_EQUALS}; a "
                  "difference between them may be the hosts', not the servers'.", ""]
    return lines


def _merged_runs(info: RunInfo, sources: list[MergedRun], records: Sequence[Result]
                 ) -> list[str]:
    """Which runs, and how each ended."""
    lines = ["## These runs", ""]
    for src in sources:
        state = src.state or "unknown"
        lines.append(f"- run `{src.run}` (`{src.path}`): config `{src.config}` "
                     f"(sha256 {src.config_hash}), {src.repeats} repeats, "
                     f"started {src.started_at}, {state}"
                     + (" — **not finished**: only its finished cells are here"
                        if state != "finished" else ""))
    lines += [f"- cells: {len(records)} finished ({_counts(records)})"
              + (f" of {info.cells_total} planned" if info.cells_total is not None else ""),
              f"- repeats: {_or(info.repeats)}, run {_or(info.order)} within "
              "each run; baseline: the best row of each table",
              _placement_line(records), "",
              "Rebuild with `python -m lab report` on this folder; the environment below is "
              f"the first run's (`{sources[0].run}`).", ""]
    return lines




def _could_use_wrk(r: Result) -> bool:
    """A throughput kind (closed loops): its figure is wrk's, or a Python client's."""
    return "wrk" in get(r.kind).engines


def _client_warnings(records: Sequence[Result]) -> list[str]:
    """Loud, first: throughput measured with a Python client ranks the client."""
    python = sorted({str(r.engine) for r in records if _could_use_wrk(r)
                     and r.engine in PYTHON_ENGINES})
    if not python:
        return []
    return [f"> **⚠ Throughput figures measure the client: install wrk.** Closed-loop cells "
            f"ran with {', '.join(python)}, a Python client that needs most of a core at "
            "these rates and takes it from the server; it has inverted server rankings on "
            "this kind of machine. `apt-get install wrk` and run again (the default "
            "engine, `auto`, then uses wrk).", ""]


def _placement_line(records: Sequence[Result]) -> str:
    placed = [r for r in records if r.placement]
    # the daemon's idle CPU is measured per cell: a range on one line, not another place
    seen = {(p.get("server_cpus"), p.get("client_cpus"), p.get("shared"), Where.of(p),
             p.get("scheduler")) for p in (r.placement for r in placed)}
    if not seen:
        return "- placement: not recorded"
    if len(seen) > 1:
        return "- placement: varied between cells (see *as run*)"
    server, client, shared, where, _ = seen.pop()
    if where.remote:
        return remote_line(placed)
    if shared:
        return (f"- placement: **client and servers shared the same cores** (servers on CPUs "
                f"{server}, client on {client}): a figure where together they used nearly "
                "all of them (⚠ machine saturated) gets no verdict; set `lab.server_cpus` "
                "and `lab.client_cpus` on a machine with ≥ 4 cores")
    return f"- placement: servers on CPUs {server}, the client on CPUs {client} (no sharing)"


HOW_TO_READ = f"""## How to read this report

- Every server configuration ran in its own process group on 127.0.0.1, started and
  checked ready (`lab.ready_path` answered `lab.ready_status` and every worker had
  started); one start served all cells of a configuration and repeat (checked between
  cells, restarted after a failed cell) unless `lab.restart = "cell"`. Unless
  `wrap = false`, the app ran inside lab.servers.asgi_wrap, whose `x-lab-worker` header names the
  worker of each response.
- **Burst**: N requests written at once (`connect = "warm"`: on N connections opened and
  checked before the window; `"cold"`: a new connection per request inside it); *wall s*
  runs from the first request written to the last response read. *peak in flight per
  worker* is counted inside each worker by lab.servers.asgi_wrap: N on one worker means fully
  concurrent, 1 means one after another. *send spread* is how far apart the client wrote
  the first and the last request.
- **Closed**: c users each send the next request when the last one answered; *req/s* over
  the measured window after a warm-up, with wrk unless the *engine* column says otherwise.
  *scaling vs 1 worker* = req/s at w workers ÷ req/s at 1, and its efficiency ÷ w.
- **Open**: requests arrive at a fixed rate whether or not earlier ones answered; latency
  counts from each request's *scheduled* time, so queueing shows (no coordinated omission).
  If the client itself sent late (send lag p99 > 10 ms) the row says so.
- **Interference**: a probe endpoint's latency, idle and then while c users keep a slow
  endpoint busy; each probe is a new connection, as an unrelated user's would be, opened
  and answered once before the probe is timed (`probe_connect = "warm"`). The findings
  call a probe *stalled* when its p50 under load is ≥ half the delay (≥ 10× idle without
  one), *stalled some* when only its p90 is, and is also ≥ 10× idle's p90 (one probe in
  ten or more waited: with two workers, those that reached the blocked one), *as fast as
  idle* when its p50 is no higher than the idle probes' p90 (within idle's own spread), and
  *slowed* in between.
- Each table shows the headline figure, its verdict and the few figures that explain it;
  *More figures* under it (collapsed) holds the rest: latency percentiles over all repeats
  merged, errors by kind, *requests per worker* (how the server split requests across its
  worker processes) and client CPU of the repeat nearest the median, and the server's
  CPU and memory (medians of the repeats).
- Latency percentiles are over successful requests; errors are counted by kind.
- *relative*: the row's headline figure (the table's first figure) against the baseline
  (1.00; 2.00 = twice as slow, whichever way the figure points). With repeats a figure
  reads `median (min–max)`, and ⚠ noisy marks a spread ≥ {NOISY_SPREAD_PCT:g} % of the median.
- *verdict*: "significant" only with ≥ 3 repeats on each side whose ranges do not overlap
  *and* whose difference exceeds the noise floor (see Noise); otherwise "no clear
  difference" or "no verdict". A row whose client was at its limit or whose shared cores
  were saturated is "not comparable"; it, and a row without every repeat ok, is never the
  baseline (without one, *relative* reads `–`); a row with failed requests cannot win a
  time figure.
- **The client was the limit** (⚠ client-limited, "not comparable") when, in any repeat,
  its busiest process used ≥ 90 % of a core per client thread, a burst's sends spread
  over more than 5 % of the delay (5 ms without one), an open-model schedule was sent
  late (send lag p99 > 10 ms), or connections could not be opened (`connect` errors).
  Such a row gets no verdict and is never the baseline.
- *client CPU %* is the client's CPU during the window (wrk's own, or all Python client
  processes); ⚠ machine saturated when client and server shared the cores, together used
  ≥ 90 % of them, and the client's CPU was ≥ {100 * CLIENT_SHARE_BAR:g} % of the server's:
  the server could have had at most the client's CPU more, so below that its figure is its
  own. *server cores used* is the server's whole process tree's CPU ÷ wall time.
- p99 needs ≥ 1,000 latencies and p99.9 ≥ 10,000 (merged over repeats), else `– (n=…)`.
"""


def _sections(report: Report, drawn: list["Chart"]) -> list[str]:
    lines: list[str] = []
    experiment = None
    for comp in report.comparisons:
        if comp.experiment != experiment:
            experiment = comp.experiment
            lines += [f"## Experiment `{comp.experiment}` ({comp.kind}: "
                      f"{get(comp.kind).help})", ""]
            lines += [get(comp.kind).note, ""] if get(comp.kind).note else []
            lines += [f"![{c.alt}]({c.file})\n" for c in drawn if c.experiment == experiment]
        said = notes(comp)
        lines += [f"### {_title(comp)}", "", table(comp), "", *(x for n in said
                                                                for x in (n, ""))]
    return lines


def _noise(comps: Sequence[Comparison], noise: Mapping[str, float]) -> list[str]:
    repeated = [(c, r, s) for c in comps for r in c.rows if (s := r.spread()) and s.n > 1]
    if not repeated:
        return ["## Noise", "", "Each cell ran once (`repeats = 1`): no spread was measured, "
                "so no difference in this report is called significant. Set `repeats = 3` or "
                "more in `[lab]` for verdicts.", ""]
    wide = sorted(((c, r, s) for c, r, s in repeated if noisy(s)),
                   key=lambda x: -x[2].spread_pct)
    lines = ["## Noise", "",
             "Spread = (max − min) ÷ median over the repeats of one cell. The noise floor is "
             "the median spread of a kind's cells; a verdict needs non-overlapping ranges "
             "*and* a difference beyond it.", "",
             tabulate([[k, f"{v:.1f} %"] for k, v in noise.items()],
                      headers=["kind", "noise floor (median spread)"], tablefmt="github"), ""]
    if wide:
        table = tabulate([[c.experiment, f"`{c.endpoint}`", c.n, r.server_id,
                           f"{s.spread_pct:.0f} %"] for c, r, s in wide],
                         headers=["experiment", "endpoint", "load", "configuration",
                                  "spread"], tablefmt="github", disable_numparse=True)
        lines += [f"{len(wide)} of {len(repeated)} repeated cells had a spread ≥ "
                  f"{NOISY_SPREAD_PCT:g} % of their median (⚠ noisy in the tables): their "
                  "differences are not to be trusted.", "",
                  f"<details><summary>The {len(wide)} noisy cells, widest spread first"
                  "</summary>", "", table, "", "</details>", ""]
    return lines


def _knees(rows: Sequence[Knee]) -> list[str]:
    if not rows:
        return []
    return ["## Saturation knee (open model)", "",
            "The highest arrival rate tried at which the median p99 stayed within the SLO "
            "with no errors and the client on schedule; a finer `rates` axis narrows it.", "",
            tabulate([[k.experiment, k.server_id, fmt(k.slo_p99_ms), fmt(k.held, 6),
                       "none tried" if k.over is None else str(k.over)] for k in rows],
                     headers=["experiment", "configuration", "SLO p99 ms",
                              "highest rate within SLO", "first rate over it"],
                     tablefmt="github", disable_numparse=True), ""]


def _settings(records: Sequence[Result], servers: list[dict[str, Any]]) -> list[str]:
    rows: dict[str, list[Result]] = {}
    for r in records:
        rows.setdefault(r.server_id, []).append(r)
    server_of = {cell: entry for entry in servers for cell in entry.get("cells", [])}
    sized = any(THREADS in r.settings for r in records)  # lab.threads set (in a run merged)
    remote = any(w.remote for w in places(records))
    settings: list[list[Any]] = []
    placed: list[list[Any]] = []
    for sid, rs in rows.items():
        first = rs[0]
        starts = [r.start_to_ready_s for r in rs if r.start_to_ready_s is not None]
        stopped = {id(e): e for r in rs if (e := server_of.get(r.cell_id))}.values()
        stops = [e["stop_s"] for e in stopped]
        killed = sum(bool(e.get("killed")) for e in stopped)
        place = first.placement
        cores = place.get("server_cores")
        flag = " ⚠ more workers than server cores" if cores and first.workers > cores else ""
        engines = ", ".join(sorted({r.engine or "?" for r in rs if _could_use_wrk(r)}))
        threads = [first.settings.get(THREADS, "default")] if sized else []
        settings.append([sid, first.server_version, f"{first.workers}{flag}", *threads,
                         *(first.settings.get(k, "–") for k in SETTINGS)])
        placed.append([sid, place.get("server_cpus", "all"), place.get("client_cpus", "all"),
                       *(_hosts(Where.of(place)) if remote else ()), engines or "–",
                       f"{len(starts)} for {len(rs)} cells",
                       _range(starts), _range(stops), killed])
    return ["## Server configurations as run", "",
            "What actually ran, to judge whether a comparison is like for like: the lab's "
            "defaults plus the config's options, and each server's own default where neither "
            "set it. " + (THREADS_NOTE if sized else
                          article.thread_pool_note({r.app for r in records}))
            + "*server CPUs* / *client CPUs* are the cores each side was pinned to "
            "(the same cores: they competed). " + (HOSTS_NOTE if remote else "")
            + "*starts* counts server starts (a server serves "
            "all cells of its configuration and repeat unless a cell failed, or "
            "`lab.restart = \"cell\"`). Start-to-ready and stop times are medians (min–max); "
            "SIGKILLed counts stops that needed SIGKILL.", "",
            tabulate(settings, headers=["configuration", "version", "workers",
                                        *([THREADS] if sized else []), *SETTINGS],
                     tablefmt="github", disable_numparse=True), "",
            tabulate(placed,
                     headers=["configuration", "server CPUs", "client CPUs",
                              *(["server host", "load hosts"] if remote else []),
                              "closed-loop engine", "starts", "start-to-ready s", "stop s",
                              "SIGKILLed"], tablefmt="github", disable_numparse=True), ""]


def _hosts(where: Where) -> tuple[str, str]:
    """The *as run* table's server host and load hosts of a configuration."""
    if where.server is None:
        return "the lab's", "the lab's"
    return where.server.name, ", ".join(h.name for h in where.load) or "?"


def _range(values: Iterable[float]) -> str:
    vals = list(values)
    if not vals:
        return "–"
    s = Spread.of(vals)
    return f"{fmt(s.median)} ({fmt(s.low)}–{fmt(s.high)})" if s.n > 1 else fmt(s.median)


def _failures(records: Sequence[Result]) -> list[str]:
    lines = []
    for r in records:
        if (f := r.failure) is None or r.status == NOT_SERVED:  # in its table, not a failure
            continue
        lines += [f"- `{r.cell_id}`: **{f.kind}** — {f.reason}"]
        if f.log_tail:
            tail = "\n".join("      " + x for x in f.log_tail.splitlines()[-8:])
            lines += ["", "  server log, last lines:", "", tail, ""]
    return ["## Failed cells", "", *lines, ""] if lines else []


def _environment(env: dict[str, Any], changed: list[str], remote: bool) -> list[str]:
    if not env:
        return ["## Environment", "", "(environment.json missing)", ""]
    cpu = env.get("cpu", {})
    versions = ", ".join(f"{k} {v}" for k, v in sorted(env.get("versions", {}).items()) if v)
    lab = env.get("lab", {})
    return ["## Environment", "",
            f"- CPU: {cpu.get('model')} — {cpu.get('logical_cores')} logical cores "
            f"({cpu.get('usable_cores')} usable), load average at start "
            f"{cpu.get('load_avg_1m', 0):.2f}",
            f"- memory: {env.get('memory_gib')} GiB; OS: {env.get('os')}; Python "
            f"{env.get('python')} ({env.get('python_implementation')})",
            f"- versions: {versions}",
            f"- lab commit: {lab.get('commit') or 'unknown'}"
            + (" (with uncommitted changes)" if lab.get("dirty") else ""),
            *([f"- ⚠ the environment changed between the run's sessions (--resume): "
               f"{'; '.join(changed)}"] if changed else []),
            ("- the lab ran on this machine, the servers and the load on the hosts named "
             "under *This run*; compare ratios within one run, not absolute figures across "
             "runs." if remote else
             "- the client (the lab) and the servers share this machine's cores; compare "
             "ratios within one run, not absolute figures across runs."), ""]


def _in_short(short: list[tuple[str, list[str]]], drawn: list["Chart"]) -> list[str]:
    """The three questions with their answers, and the run's headline chart."""
    lines = []
    for question, answers in short:
        lines += [f"**{question}**", "", *(f"- {x}" for x in answers), ""]
    if not lines:
        return []
    # The first judged chart of the kind that shows the most at a glance (`Kind.in_short`);
    # a percentile chart (its kind "latency") is a detail, never the headline.
    rank = {name: k.in_short for name, k in kinds().items()}
    chart = min((c for c in drawn if c.judged and c.kind in rank),
                key=lambda c: rank[c.kind], default=None)
    return ["## In short", "", *lines,
            *([f"![{chart.alt}]({chart.file})", ""] if chart else [])]


def _read(run: RunDir, planned: list[str] | None
          ) -> tuple[list[Result], list[str], list[str]]:
    """The run's results typed as they are read, the ids of its stale ones (see
    `lab.store.results.current`) and the warnings."""
    is_current = current(planned)

    def typed(r: Result) -> Result | str:
        return r if is_current(r) else r.cell_id

    read, warnings = run.read(typed)
    return ([r for r in read if isinstance(r, Result)], [r for r in read if isinstance(r, str)],
            warnings)


def build(run: RunDir) -> Path:
    """Write report.md (and its charts) from the run's files; a file that cannot be written
    is a `StorageError`, and leaves its previous version whole."""
    info = run.info()
    results, stale, warnings = _read(run, info.planned)
    env = run.read_json(ENVIRONMENT)
    report = Report.of_results(results, info.baseline)
    comps, records = report.comparisons, report.results
    drawn: list[Chart] = []
    if comps:
        from lab.report import charts  # matplotlib takes ~0.5 s to import: only to draw

        drawn = charts.draw(report, run.path)
    lines = [f"# asgi-lab report — {run.path.name}", "", *_warnings(info, records)]
    lines += loop.warning(report)
    if warnings:
        lines += ["## Warnings", "", *(f"- {w}" for w in warnings), ""]
    short = in_short(report, (article.in_short(comps) or ways_short(comps))
                     + loop.short(report)) + stream.short(comps) + websocket.short(comps)
    lines += _in_short(short, drawn)
    lines += _this_run(info, records) + _stale(stale)
    if claimed := article.claims(comps) + loop.article(report):
        lines += ["## The article's claims, measured", "", *(f"- {x}" for x in claimed), ""]
    found = findings(comps) + ways_findings(comps) + loop.explained(report)
    none = "(none)" if any(r.status == "ok" for r in records) else "(none: no finished cells)"
    lines += ["## Findings", "", *(f"- {x}" for x in found or [none]),
              ""]
    lines += loop.section(report)
    lines += _sections(report, drawn)
    lines += _knees(report.knees)
    lines += _noise(comps, report.noise)
    lines += _failures(records)
    if records:
        lines += _settings(records, run.servers())
    remote = any(w.remote for w in places(records))
    lines += _environment(env, run.environment_changes(), remote)
    # A run on remote hosts: its servers listened on the server host's own address.
    lines += [HOW_TO_READ.replace("group on 127.0.0.1", "group on the server host's address "
                                  "(see *This run*)") if remote else HOW_TO_READ]
    path = run.path / REPORT
    text = "\n".join(lines)
    write_atomically(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return path
