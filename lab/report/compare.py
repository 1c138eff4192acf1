"""``python -m lab compare BASE NEW``: did NEW get better or worse than BASE, cell by cell?

Cells are matched by their id without the repeat suffix (``uvicorn-w1-hello-hello-c64``);
the repeats of a cell on each side give two ranges, and the verdict is the report's rule
(`lab.report.verdict.compare`): "improved" or "regressed" only with ≥ 3 repeats per side, ranges
that do not overlap and a change beyond the noise floor, else "no clear difference" — or
"no verdict (…)" when the rule cannot speak. Two runs are weaker evidence than repeats that
ran side by side: a machine that was busier during one run moves every figure of it, so the
environments are compared too, and so are the places the runs ran in (the lab's own host,
or server and load hosts: `lab.report.where`); a difference in either is said first.
"""

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tabulate import tabulate

from lab.errors import UsageError
from lab.load.stats import Spread
from lab.report.fmt import fmt_spread
from lab.report.groups import Comparison, Row, noise_by_kind
from lab.report.model import LIMIT_TEXT, Report
from lab.report.verdict import MIN_REPEATS, compare
from lab.report.where import NOT_EQUALS, Where, brief, differ, places
from lab.servers import ADAPTERS
from lab.store.environment import changes, facts
from lab.store.results import ENVIRONMENT, RunDir

EXIT_REGRESSED = 4  # a regression beyond --threshold: for CI gates

IMPROVED, REGRESSED, UNCLEAR = "improved", "regressed", "no clear difference"
# What of two environments can change a comparison: the machine, Python, each server the lab
# knows (its registry, not a list of names here), the framework, the lab itself.
ENV_FACTS = ("CPU", "logical cores", "usable cores", "Python",
             *sorted({a.distribution for a in ADAPTERS.values()}), "fastapi", "lab commit")


@dataclass(frozen=True)
class CellChange:
    """One cell in both runs: its headline figure over the repeats on each side."""

    cell: str  # the cell id without the repeat suffix
    headline: str  # its figure's name: "req/s", "knee req/s"…
    base: Spread | None  # None: no usable figure (the cell failed on that side)
    new: Spread | None
    verdict: str  # improved, regressed, no clear difference, no verdict (…), failed in NEW…
    worse_pct: float | None  # how much worse NEW is than BASE, in % (negative: better)
    gates: bool  # counts as a regression for the exit code

    @property
    def change_pct(self) -> float | None:
        """The headline's own change (NEW − BASE) ÷ BASE, signed as the figure moves."""
        if self.base is None or self.new is None or not self.base.median:
            return None
        return 100.0 * (self.new.median - self.base.median) / self.base.median


@dataclass
class RunComparison:
    base: Path
    new: Path
    threshold_pct: float | None
    noise: dict[str, float]
    cells: list[CellChange] = field(default_factory=list)
    only_base: list[str] = field(default_factory=list)
    only_new: list[str] = field(default_factory=list)
    env_base: dict[str, Any] = field(default_factory=dict)
    env_new: dict[str, Any] = field(default_factory=dict)
    env_changes: list[str] = field(default_factory=list)
    where_base: frozenset[Where] = frozenset()  # where BASE's cells ran (`where.places`)
    where_new: frozenset[Where] = frozenset()

    @property
    def regressions(self) -> list[CellChange]:
        return [c for c in self.cells if c.gates]

    @property
    def places_differ(self) -> str | None:
        """Where each run ran, when not in the same places (`where.differ`)."""
        return differ([("BASE", self.where_base), ("NEW", self.where_new)])


def _rows(comps: Iterable[Comparison]) -> dict[str, tuple[Comparison, Row]]:
    return {row.results[0].cell: (comp, row) for comp in comps for row in comp.rows}


def _failure(row: Row) -> str:
    return ", ".join(row.failures()) or "no usable figure"


def _no_verdict(base_n: int, new_n: int, text: str) -> str:
    if min(base_n, new_n) >= MIN_REPEATS:
        return text  # "no verdict (zero figure)"
    return f"no verdict ({base_n} vs {new_n} repeats, needs {MIN_REPEATS} each)"


def _setup(row: Row) -> dict[str, Any]:
    """What a cell measured, beyond its name: a changed delay or duration is another
    measurement, not a regression."""
    first = row.results[0]
    return {"load": first.load, "params": first.params, "options": first.options,
            "engine": first.engine}


def _differently(base: dict[str, Any], new: dict[str, Any]) -> str | None:
    """What changed between two setups, e.g. ``params.delay 0.05 → 0.1``, or None."""
    changed = []
    for part, before in base.items():
        after = new[part]
        if not isinstance(before, dict):
            if before != after:
                changed.append(f"{part} {before} → {after}")
            continue
        for k in sorted({*before, *after}):
            if before.get(k) != after.get(k):
                changed.append(f"{part}.{k} {before.get(k)} → {after.get(k)}")
    return ", ".join(changed) or None


def _change(name: str, comp: Comparison, base: Row, new: Row, noise_pct: float,
            threshold_pct: float | None) -> CellChange:
    b, n = base.values(), new.values()
    bs, ns = (Spread.of(b) if b else None), (Spread.of(n) if n else None)
    if (why := _differently(_setup(base), _setup(new))) is not None:
        return CellChange(name, comp.headline.name, bs, ns, f"no verdict (measured differently: "
                          f"{why})", None, False)
    if bs is None or ns is None:
        if bs is not None:  # worked in BASE, not in NEW: a regression whatever the threshold
            return CellChange(name, comp.headline.name, bs, None,
                              f"failed in NEW ({_failure(new)})", None, True)
        where = "both" if ns is None else "BASE"
        return CellChange(name, comp.headline.name, bs, ns, f"no verdict (failed in {where})", None,
                          False)
    v = compare(n, b, comp.headline.higher_is_better, noise_pct)
    worse_pct = 100.0 * (v.ratio - 1) if v.ratio != float("inf") else None
    limit = new.limit() or base.limit()
    if limit is not None:
        side = " and ".join(name for name, row in (("BASE", base), ("NEW", new))
                            if row.limit() is not None)
        verdict = f"no verdict ({LIMIT_TEXT[limit].split(': ')[1]} in {side})"
    elif v.significant is None:
        verdict = _no_verdict(len(b), len(n), v.text)
    elif not v.significant:
        verdict = UNCLEAR
    elif v.ratio > 1:
        verdict = REGRESSED
    elif not comp.headline.higher_is_better and new.error_rate() > 0:
        verdict = f"no verdict ({100 * new.error_rate():.2g} % of NEW's requests failed)"
    else:
        verdict = IMPROVED
    gates = verdict == REGRESSED and (threshold_pct is None or
                                      (worse_pct is not None and worse_pct > threshold_pct))
    return CellChange(name, comp.headline.name, bs, ns, verdict, worse_pct, gates)


def _cells(rows: dict[str, tuple[Comparison, Row]]) -> str:
    """A run's cells in brief: how many, of which configurations and experiments."""
    configs = sorted({row.server_id for _, row in rows.values()})
    experiments = sorted({comp.experiment for comp, _ in rows.values()})
    return (f"{len(rows)} cells ({', '.join(configs)}; experiment "
            f"{', '.join(experiments)})")


def compare_runs(base: RunDir, new: RunDir, threshold_pct: float | None = None
                 ) -> RunComparison:
    base_records, new_records = base.load().records, new.load().records
    base_comps = Report.of_results(base_records).comparisons
    new_comps = Report.of_results(new_records).comparisons
    noise = noise_by_kind(base_comps + new_comps)  # over both runs' repeated cells
    out = RunComparison(base.path, new.path, threshold_pct, noise,
                        where_base=places(base_records), where_new=places(new_records))
    base_rows, new_rows = _rows(base_comps), _rows(new_comps)
    if not base_rows.keys() & new_rows.keys():  # "no regression" would pass a CI gate
        raise UsageError(f"compare: no cell is in both runs, so nothing was compared: BASE "
                         f"has {_cells(base_rows)}, NEW has {_cells(new_rows)}")
    for name, (comp, row) in base_rows.items():
        if name not in new_rows:
            out.only_base.append(name)
            continue
        out.cells.append(_change(name, comp, row, new_rows[name][1],
                                 noise.get(comp.kind, 0.0), threshold_pct))
    out.only_new = [name for name in new_rows if name not in base_rows]
    out.env_base, out.env_new = base.read_json(ENVIRONMENT), new.read_json(ENVIRONMENT)
    out.env_changes = changes(out.env_base, out.env_new)
    return out


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{x:+.1f} %"


def _environment(rc: RunComparison) -> list[str]:
    b, n = facts(rc.env_base), facts(rc.env_new)
    rows = [[k, b.get(k) or "–", n.get(k) or "–", "" if b.get(k) == n.get(k) else "⚠ differs"]
            for k in ENV_FACTS]
    if any(w.remote for w in rc.where_base | rc.where_new):  # a local pair: the machine says it
        rows.append(["placement", brief(rc.where_base), brief(rc.where_new),
                     "⚠ differs" if rc.places_differ else ""])
    if not rc.env_base or not rc.env_new:
        lead = ["> **⚠ An environment is unknown** (environment.json missing): the two runs "
                "may not be comparable at all.", ""]
    elif rc.env_changes:
        lead = [f"> **⚠ The environments differ:** {'; '.join(rc.env_changes)}. Differences "
                "between runs in different environments are weaker evidence than "
                "side-by-side repeats in one run: they may be the environment's, not the "
                "change's.", ""]
    else:
        lead = ["Same environment (machine, Python, versions, lab commit). Two runs are still "
                "weaker evidence than side-by-side repeats in one run: the machine may have "
                "been busier during one of them.", ""]
    return ["## Environments", "", *lead,
            tabulate(rows, headers=["", "BASE", "NEW", ""], tablefmt="github",
                     disable_numparse=True), ""]


def render(rc: RunComparison) -> str:
    bad = rc.regressions
    threshold = ("a regressed verdict (beyond the noise floor)" if rc.threshold_pct is None
                 else f"a regressed verdict worse by more than {rc.threshold_pct:g} %")
    lines = [f"# asgi-lab compare — {rc.base.name} → {rc.new.name}", "",
             f"- BASE: `{rc.base}`", f"- NEW: `{rc.new}`",
             f"- {len(rc.cells)} cells in both runs; {len(rc.only_base)} only in BASE, "
             f"{len(rc.only_new)} only in NEW",
             f"- a regression is {threshold}, or a cell that worked in BASE and failed in NEW",
             ""]
    if rc.env_changes:
        lines += ["> **⚠ The runs' environments differ** (see Environments): weaker evidence "
                  "than side-by-side repeats.", ""]
    if where := rc.places_differ:
        lines += [f"> **⚠ The runs ran in different places** ({where}): {NOT_EQUALS}; a "
                  "change between them may come from the hosts, not from what changed.", ""]
    if bad:
        lines += [f"**{len(bad)} regression(s):** " + ", ".join(
            f"`{c.cell}` ({_pct(c.change_pct)})" for c in bad), ""]
    else:
        lines += ["**No regression.**", ""]
    lines += ["## Cells", "",
              f"Headline figure per cell, median (min–max) over its repeats. A verdict needs "
              f"≥ {MIN_REPEATS} repeats per side, ranges that do not overlap and a change "
              "beyond the noise floor (" + ", ".join(
                  f"{k} {v:.1f} %" for k, v in sorted(rc.noise.items())) + ").", ""]
    body = [[f"`{c.cell}`", c.headline, fmt_spread(c.base, 4),
             fmt_spread(c.new, 4), _pct(c.change_pct),
             f"**{c.verdict}**" if c.gates else c.verdict] for c in rc.cells]
    lines += [tabulate(body, headers=["cell", "headline", "BASE", "NEW", "change", "verdict"],
                       tablefmt="github", disable_numparse=True), ""]
    for title, names in (("Only in BASE", rc.only_base), ("Only in NEW", rc.only_new)):
        if names:
            lines += [f"## {title}", "", *(f"- `{n}`" for n in names), ""]
    lines += _environment(rc)
    return "\n".join(lines)


__all__ = ["EXIT_REGRESSED", "CellChange", "RunComparison", "compare_runs", "render"]
