"""One report across runs: ``python -m lab report RUN_DIR [RUN_DIR …] --out DIR``.

The runs' result lines are copied into DIR, which is then a run directory like any other
(``lab report DIR`` rebuilds it, ``lab compare`` reads it), and ``run.json`` says which
runs it merged and what each ran on. Rows of different runs did not run side by side, so
the report says so, and says loudly when the runs' environments differ or when they ran in
different places (on the lab's own host, or on other server and load hosts).

A cell measured in several runs keeps the line of the run named last, with a warning.
"""

import filecmp
import json
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from lab.errors import UsageError
from lab.report.where import Where, places, warning
from lab.store.environment import changes
from lab.store.results import ENVIRONMENT, RESULTS, SERVERS, RunDir, write_atomically
from lab.store.schema import MergedRun, Result, RunInfo


def _check_runs(runs: list[RunDir]) -> None:
    """A run merged with itself would read as two runs that never ran side by side: refuse
    one folder given twice, and two copies of one run (its id and its results alike)."""
    for i, run in enumerate(runs):
        for other in runs[:i]:
            if run.path.resolve() == other.path.resolve():
                raise UsageError(f"report: {other.path} and {run.path} are the same run; "
                                 "merge different runs")
            if run.path.name == other.path.name and run.results.is_file() \
                    and other.results.is_file() \
                    and filecmp.cmp(run.results, other.results, shallow=False):
                raise UsageError(f"report: {other.path} and {run.path} are copies of one run "
                                 f"({run.path.name}, the same results); merge different runs")


def _check_out(out: Path, runs: list[RunDir]) -> None:
    if any(out.resolve() == run.path.resolve() for run in runs):
        raise UsageError(f"--out {out}: is one of the runs to merge; pick a new folder")
    if out.exists() and not (out.is_dir() and RunDir(out).info().merged_from is not None):
        raise UsageError(f"--out {out}: already exists and is not a merged report; pick a "
                         "new folder")


def environment_warnings(info: RunInfo) -> list[str]:
    """How each merged run's environment differs from the first's, one entry per run."""
    sources = info.merged_from or []
    if not sources:
        return []
    first = sources[0]
    out = []
    for src in sources[1:]:
        if not first.environment or not src.environment:
            out.append(f"{src.run} vs {first.run}: an environment.json is missing")
        elif changed := changes(first.environment, src.environment):
            out.append(f"{src.run} vs {first.run}: {', '.join(changed)}")
    return out


def merge(runs: list[RunDir], out: Path) -> tuple[RunDir, list[str]]:
    """Write DIR's results, servers, environment and run.json from ``runs``; returns the
    merged run and the warnings (duplicate cells, differing environments and places)."""
    _check_runs(runs)
    _check_out(out, runs)
    warnings: list[str] = []
    # Two passes over the results files, so that no run's lines are held in memory: which
    # line each cell keeps (the last run's; within a run, its last), then those lines.
    keep: dict[str, tuple[int, int]] = {}
    sources: list[MergedRun] = []
    servers: list[dict[str, Any]] = []
    where: list[tuple[str, frozenset[Where]]] = []
    for i, run in enumerate(runs):
        name = run.path.name
        placed: set[Where] = set()  # a few places, not the lines: those stay on disk
        for n, record in run.lines():
            if isinstance(record, str):
                warnings.append(f"{run.path}: {record}")
                continue
            placed |= places((record,))
            cell = record.cell_id
            if (before := keep.get(cell)) is not None:
                warnings.append(f"{run.path}: {cell} was measured again with a changed "
                                "config; the later line counts" if before[0] == i else
                                f"{cell} is in {runs[before[0]].path.name} and {name}: the "
                                f"line from {name} counts")
            keep[cell] = (i, n)
        where.append((name, frozenset(placed)))
        servers += run.servers()
        info = run.info()
        sources.append(MergedRun(
            name, str(run.path), run.read_json(ENVIRONMENT), info.config, info.config_hash,
            info.state, info.started_at, info.finished_at, info.repeats, info.order,
            info.seed, info.cells_total))
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"--out {out}: cannot create it ({e.strerror or e})") from None
    merged = RunDir(out)
    _write_lines(out / RESULTS, (r.to_json() for r in _kept(runs, keep)))
    _write_lines(out / SERVERS, servers)
    merged.write_json(ENVIRONMENT, sources[0].environment)
    for stale in out.glob("environment-*.json"):  # the sessions of a run: not these runs'
        stale.unlink()
    info = _info(sources)
    merged.write_info(info)
    env = environment_warnings(info)
    if env:
        warnings.append("the runs' environments differ (" + "; ".join(env) + "): "
                        "differences between them are weaker evidence than side-by-side "
                        "repeats in one run")
    if elsewhere := warning(where):
        warnings.append(elsewhere)
    return merged, warnings


def _same(sources: list[MergedRun], key: str) -> Any:
    values = {json.dumps(getattr(s, key)) for s in sources}
    return getattr(sources[0], key) if len(values) == 1 else "varied"


def _info(sources: list[MergedRun]) -> RunInfo:
    started = [s.started_at for s in sources if s.started_at]
    finished = [s.finished_at for s in sources if s.finished_at]
    totals = [s.cells_total for s in sources]
    states = {s.state for s in sources}
    return RunInfo(
        config=" + ".join(str(s.config) for s in sources),
        config_hash=" + ".join(str(s.config_hash) for s in sources),
        state=states.pop() if len(states) == 1 else "interrupted"
        if "interrupted" in states else "running",
        started_at=min(started, default=None), finished_at=max(finished, default=None),
        repeats=_same(sources, "repeats"), order=_same(sources, "order"),
        seed=_same(sources, "seed"), baseline=None,
        cells_total=sum(t for t in totals if t is not None)
        if all(isinstance(t, int) for t in totals) else None,
        merged_from=sources)


def _kept(runs: list[RunDir], keep: dict[str, tuple[int, int]]) -> Iterator[Result]:
    """The lines ``keep`` names, each saying which run it came from."""
    for i, run in enumerate(runs):
        for n, record in run.lines():
            if isinstance(record, Result) and keep.get(record.cell_id) == (i, n):
                yield replace(record, source_run=run.path.name)


def _write_lines(path: Path, lines: Iterable[Mapping[str, Any]]) -> None:
    def write(tmp: Path) -> None:
        with tmp.open("w", encoding="utf-8") as f:
            for line in lines:
                f.write(json.dumps(line, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())

    write_atomically(path, write)
