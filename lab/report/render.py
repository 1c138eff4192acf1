"""Assemble report.md: findings, one table per comparison, settings, failures, environment."""

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tabulate import tabulate

from lab.report.findings import findings
from lab.report.groups import Comparison, comparisons
from lab.report.tables import NOISY_SPREAD_PCT, fmt, table
from lab.results import ENVIRONMENT, RUN_INFO, RunDir
from lab.stats import Spread

REPORT = "report.md"


def _title(comp: Comparison) -> str:
    load = ", ".join(f"{k} = {v:g}" if isinstance(v, float) else f"{k} = {v}"
                     for k, v in comp.load.items())
    params = ", ".join(f"{k} = {v}" for k, v in comp.params.items())
    return f"`{comp.endpoint}` — {load}" + (f"; {params}" if params else "") \
        + f" (engine {comp.engine})"


def _header(info: dict[str, Any], records: list[dict[str, Any]], run: RunDir) -> list[str]:
    failed = sum(r["status"] == "failed" for r in records)
    state = info.get("state", "unknown")
    lines = [f"# asgi-lab report — {run.path.name}", ""]
    if state == "interrupted":
        lines += [f"> **This run was interrupted** (signal {info.get('signal')}): the report "
                  "covers only the cells that finished.", ""]
    elif state == "running":
        lines += ["> **This run had not finished** when the report was written.", ""]
    lines += [
        f"- config: `{info.get('config', '?')}` (sha256 {info.get('config_hash', '?')}, "
        f"copy in `config.toml`)",
        f"- cells: {len(records)} finished ({len(records) - failed} ok, {failed} failed)"
        + (f" of {info['cells_total']} planned" if "cells_total" in info else ""),
        f"- started {info.get('started_at', '?')}, finished {info.get('finished_at', '–')}",
        "",
    ]
    return lines


HOW_TO_READ = f"""## How to read this report

- Every server configuration ran in a fresh process group on 127.0.0.1, started and
  checked ready (`/health` answered 200 by every worker) before each cell.
- **Burst**: N requests sent at once; *wall s* is the batch's time. *concurrency ≈
  N·delay/wall* says how many requests were really in progress together: ≈ N means fully
  concurrent, ≈ 1 per worker means one after another.
- **Closed**: c users each send the next request when the last one answered; *req/s* over
  the measured window after a warm-up.
- Latency percentiles are over successful requests; errors are counted by kind.
  *requests per worker* is how the server split requests across its worker processes.
- *relative*: the row's headline figure against the best row (1.00 = best, 2.00 = twice as
  slow). With several repeats a figure reads `median (min–max)`; ⚠ marks a spread ≥
  {NOISY_SPREAD_PCT:g} % of the median, where differences are not to be trusted.
- *client CPU %* is the lab's own CPU during the window; at ≥ 90 % the client, not the
  server, may be the limit and the figure is a lower bound (⚠ client-limited).
"""


def _sections(comps: list[Comparison]) -> list[str]:
    lines: list[str] = []
    experiment = None
    for comp in comps:
        if comp.experiment != experiment:
            experiment = comp.experiment
            lines += [f"## Experiment `{comp.experiment}` ({comp.kind})", ""]
        lines += [f"### {_title(comp)}", "", table(comp), ""]
    return lines


def _settings(records: list[dict[str, Any]], cores: int | None) -> list[str]:
    rows: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        rows.setdefault(r["server_id"], []).append(r)
    body = []
    for sid, rs in rows.items():
        first = rs[0]
        starts = [r["process"]["start_to_ready_s"] for r in rs
                  if r.get("process") and r["process"]["start_to_ready_s"] is not None]
        stops = [r["process"]["stop_s"] for r in rs if r.get("process")]
        killed = sum(bool(r.get("process", {}).get("killed")) for r in rs)
        opts = ", ".join(f"{k}={v}" for k, v in sorted(first["options"].items()))
        flag = " ⚠ more workers than cores" if cores and first["workers"] > cores else ""
        body.append([sid, first["server_version"], f"{first['workers']}{flag}", opts,
                     _range(starts), _range(stops), killed])
    return ["## Server configurations as run", "",
            "Options are what the lab passed (its defaults plus the config's); anything not "
            "listed is the server's own default. Start-to-ready and stop times are over all "
            "cells of that configuration (median, min–max).", "",
            tabulate(body, headers=["configuration", "version", "workers", "options",
                                    "start-to-ready s", "stop s", "SIGKILLed"],
                     tablefmt="github", disable_numparse=True), ""]


def _range(values: Iterable[float]) -> str:
    vals = list(values)
    if not vals:
        return "–"
    s = Spread.of(vals)
    return f"{fmt(s.median)} ({fmt(s.low)}–{fmt(s.high)})" if s.n > 1 else fmt(s.median)


def _failures(records: list[dict[str, Any]]) -> list[str]:
    failed = [r for r in records if r["status"] == "failed"]
    if not failed:
        return []
    lines = ["## Failed cells", ""]
    for r in failed:
        f = r["failure"]
        lines += [f"- `{r['cell_id']}`: **{f['kind']}** — {f['reason']}"]
        if f.get("log_tail"):
            tail = "\n".join("      " + x for x in f["log_tail"].splitlines()[-8:])
            lines += ["", "  server log, last lines:", "", tail, ""]
    return lines + [""]


def _environment(env: dict[str, Any]) -> list[str]:
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
            "- the client (the lab) and the servers share this machine's cores; compare "
            "ratios within one run, not absolute figures across runs.", ""]


def build(run: RunDir) -> Path:
    loaded = run.load()
    records = loaded.records
    info = run.read_json(RUN_INFO)
    env = run.read_json(ENVIRONMENT)
    comps = comparisons(records)
    lines = _header(info, records, run)
    if loaded.warnings:
        lines += ["## Warnings", "", *(f"- {w}" for w in loaded.warnings), ""]
    found = findings(comps)
    lines += ["## Findings", "", *(f"- {x}" for x in found or ["(none: no finished cells)"]),
              ""]
    lines += _sections(comps)
    lines += _failures(records)
    if records:
        lines += _settings(records, env.get("cpu", {}).get("usable_cores"))
    lines += _environment(env)
    lines += [HOW_TO_READ]
    path = run.path / REPORT
    path.write_text("\n".join(lines))
    return path
