"""Charts beside report.md, drawn from the same comparisons as the tables (so from the
results files only: ``lab report`` redraws them).

Each chart stands on its own — title, axes with units, legend — because a reader looks at
the picture before the text. A configuration keeps its colour (the server) and line style
or hatch (the worker count) in every chart. Error bars are the repeats' range (min–max)
around the median, as the tables' ``median (min–max)``.
"""

import math
import re
import textwrap
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: never a window, never a display needed

from matplotlib.axes import Axes  # noqa: E402  (after the backend is chosen)
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter  # noqa: E402

from lab.kinds import kinds  # noqa: E402
from lab.load.histogram import Histogram  # noqa: E402
from lab.load.stats import Spread  # noqa: E402
from lab.report.model import ComparisonFacts, Report, RowFacts  # noqa: E402
from lab.store.results import write_atomically  # noqa: E402

PREFIX = "chart-"
SERVER_COLOURS = {"uvicorn": "#1f77b4", "hypercorn": "#ff7f0e", "granian": "#2ca02c"}
OTHER_COLOURS = ("#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")
LINE_STYLES = ("-", "--", ":", "-.")
MARKERS = ("o", "s", "^", "D")
HATCHES = ("", "//", "xx", "..")
# Percentiles of the latency curves: each is drawn only from enough samples that ≥ 10 of
# them lie above it (the tables' rule for p99 and p99.9).
CURVE_PERCENTILES = (50.0, 75.0, 90.0, 95.0, 99.0, 99.9)
MIN_TAIL_SAMPLES = 10


@dataclass(frozen=True)
class Chart:
    """One PNG of a run: which experiment's section shows it, and what it shows."""

    experiment: str
    kind: str  # burst, closed, latency, interference, open
    file: str  # beside report.md
    alt: str
    comparisons: tuple[ComparisonFacts, ...] = field(default=(), compare=False, repr=False)

    @property
    def judged(self) -> bool:
        """Some comparison it draws has a baseline: a ranking fit to head the report."""
        return any(c.baseline is not None for c in self.comparisons)


class Styles:
    """A configuration's colour and line style, the same in every chart of a report."""

    def __init__(self, rows: Iterable[RowFacts]) -> None:
        self._workers: dict[str, list[int]] = {}
        self._others: dict[str, str] = {}
        for row in rows:
            counts = self._workers.setdefault(row.server, [])
            if row.workers not in counts:
                counts.append(row.workers)
        for server in self._workers:
            if server not in SERVER_COLOURS:
                self._others[server] = OTHER_COLOURS[len(self._others) % len(OTHER_COLOURS)]

    def colour(self, row: RowFacts) -> str:
        return SERVER_COLOURS.get(row.server) or self._others.get(row.server, "black")

    def _rank(self, row: RowFacts) -> int:
        counts = sorted(self._workers.get(row.server, [row.workers]))
        return counts.index(row.workers) if row.workers in counts else 0

    def line(self, row: RowFacts) -> dict[str, Any]:
        k = self._rank(row)
        return {"color": self.colour(row), "linestyle": LINE_STYLES[k % len(LINE_STYLES)],
                "marker": MARKERS[k % len(MARKERS)]}

    def bar(self, row: RowFacts) -> dict[str, Any]:
        k = self._rank(row)
        return {"color": self.colour(row), "hatch": HATCHES[k % len(HATCHES)],
                "edgecolor": "black", "linewidth": 0.6}


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "root"


def _err(spreads: list[Spread]) -> list[list[float]]:
    """matplotlib's asymmetric error bars: the repeats' range around the median."""
    return [[s.median - s.low for s in spreads], [s.high - s.median for s in spreads]]


def _figure(panels: int, width: float = 6.4, height: float = 4.2,
            most_per_row: int = 3) -> tuple[Figure, list[Axes]]:
    cols = min(panels, most_per_row)
    rows = math.ceil(panels / cols)
    fig = Figure(figsize=(width * cols, height * rows + 0.6), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel().tolist()
    for extra in axes[panels:]:
        extra.set_visible(False)
    return fig, axes[:panels]


def _save(fig: Figure, path: Path) -> None:
    """Whole or not at all (a `StorageError` when the folder cannot take it)."""
    write_atomically(path, lambda tmp: fig.savefig(tmp, dpi=100, format="png"))


def _by_experiment(comps: Iterable[ComparisonFacts], kind: str
                   ) -> dict[str, list[ComparisonFacts]]:
    out: dict[str, list[ComparisonFacts]] = {}
    for comp in comps:
        if comp.kind == kind:
            out.setdefault(comp.experiment, []).append(comp)
    return out


def _by_endpoint(comps: list[ComparisonFacts]) -> dict[str, list[ComparisonFacts]]:
    out: dict[str, list[ComparisonFacts]] = {}
    for comp in comps:
        out.setdefault(comp.endpoint, []).append(comp)
    return out


Point = tuple[float, Spread, RowFacts]  # a load axis value, its figure, the row behind it


def _series(comps: list[ComparisonFacts], get: Callable[[RowFacts], Spread | None]
            ) -> dict[str, tuple[RowFacts, list[Point]]]:
    """Per configuration: its points over the comparisons, by load."""
    out: dict[str, tuple[RowFacts, list[Point]]] = {}
    for comp in sorted(comps, key=lambda c: c.n):
        for row in comp.rows:
            if (s := get(row)) is not None:
                out.setdefault(row.server_id, (row, []))[1].append((comp.n, s, row))
    return out


# One limit rule with the tables (`RowFacts.limit_flags`, from `Row.limit`): a limited row's
# bar is pale and its tick marked ⚠, a limited point hollow. Hatch and line style show
# the worker count only.
LIMITED = "⚠ pale or hollow: client or machine at its limit, not the server's figure"


def _limited(row: RowFacts) -> bool:
    return bool(row.limit_flags)


def _tick(row: RowFacts) -> str:
    return row.server_id + (" ⚠" if _limited(row) else "")


def _line(ax: Axes, xs: list[float], points: list[Point], label: str,
          style: dict[str, Any]) -> None:
    """A configuration's medians with their ranges; its limited points hollow."""
    ss = [s for _, s, _ in points]
    ax.errorbar(xs, [s.median for s in ss], yerr=_err(ss), label=label, capsize=3, **style)
    hollow = [(x, s.median) for x, (_, s, row) in zip(xs, points, strict=True) if _limited(row)]
    if hollow:
        ax.plot([x for x, _ in hollow], [y for _, y in hollow], linestyle="none",
                marker=style["marker"], markerfacecolor="white", markeredgecolor=style["color"],
                markersize=8)


def _dodge(xs: list[float], k: int, m: int, span: float) -> list[float]:
    """Shift series k of m sideways by a little, so that error bars at one x do not hide
    each other (the ticks stay at the true x)."""
    return [x + (k - (m - 1) / 2) * 0.012 * span for x in xs]


def _legend(ax: Axes, **kw: Any) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small", **kw)


def _shared_legend(fig: Figure, axes: list[Axes]) -> None:
    """One legend for all panels, outside them: never over the data, never repeated."""
    seen: dict[str, Any] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            seen.setdefault(label, handle)
    if seen:
        fig.legend(list(seen.values()), list(seen), loc="outside lower center",
                   ncols=min(len(seen), 4), fontsize="small")


def _suptitle(fig: Figure, text: str) -> None:
    """A title wrapped to the figure's width, so that a narrow chart does not cut it."""
    chars = int(fig.get_figwidth() * 12)
    fig.suptitle("\n".join(textwrap.wrap(text, chars)))


def _plain(x: float, _: object = None) -> str:
    """Tick labels a reader can read: 0.05, 2, 500, not 5×10⁻²."""
    return f"{x:g}"


def _log_y(ax: Axes) -> None:
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0), numticks=30))
    ax.yaxis.set_major_formatter(FuncFormatter(_plain))
    ax.yaxis.set_minor_formatter(NullFormatter())


def _burst(experiment: str, comps: list[ComparisonFacts], styles: Styles, out: Path
           ) -> Chart | None:
    groups = _by_endpoint(comps)
    if not groups:
        return None
    fig, axes = _figure(len(groups))
    for ax, (endpoint, group) in zip(axes, groups.items(), strict=True):
        ns = sorted({c.n for c in group})
        delay = group[0].delay
        series = _series(group, lambda r: r.spread())
        span = float(max(ns) - min(ns) or max(ns))
        for k, (sid, (row, points)) in enumerate(series.items()):
            _line(ax, _dodge([x for x, _, _ in points], k, len(series), span), points, sid,
                  styles.line(row))
        if delay:
            ends = [min(ns), max(ns)] if len(ns) > 1 else [ns[0] * 0.8, ns[0] * 1.2]
            ax.plot(ends, [n * delay for n in ends], color="grey", linewidth=2, alpha=0.5,
                    label=f"one after another (N × {delay:g} s)")
            ax.plot(ends, [delay, delay], color="grey", linewidth=2, alpha=0.5,
                    linestyle="--", label=f"all at once (1 × {delay:g} s)")
        _log_y(ax)
        ax.set_xticks(ns)
        ax.set_title(f"{endpoint}" + (f" (delay {delay:g} s)" if delay else ""))
        ax.set_xlabel("requests sent at once (N)")
        ax.set_ylabel("batch wall time (s, log scale)")
        ax.grid(True, which="both", alpha=0.3)
    _shared_legend(fig, axes)
    _suptitle(fig, f"Burst {experiment!r}: time for N simultaneous requests "
                 f"(median, bars: min–max of repeats; {LIMITED})")
    file = f"{PREFIX}burst-{_slug(experiment)}.png"
    _save(fig, out / file)
    return Chart(experiment, "burst", file, f"burst wall time vs N, {experiment}", tuple(comps))


def _closed(comp: ComparisonFacts, styles: Styles, out: Path) -> Chart | None:
    rows = [r for r in comp.rows if r.values()]
    if not rows:
        return None
    per_core = {r.server_id: s for r in rows
                if (s := r.spread(lambda f: f.rps_per_server_core)) is not None}
    fig, axes = _figure(2 if per_core else 1, width=max(5.0, 1.1 * len(rows) + 1.5))
    panels: list[tuple[str, dict[str, Spread]]] = [
        ("req/s", {r.server_id: s for r in rows if (s := r.spread())})]
    if per_core:
        panels.append(("req/s per server core (CPU time the server used)", per_core))
    for ax, (label, spreads) in zip(axes, panels, strict=True):
        shown = [r for r in rows if r.server_id in spreads]
        ss = [spreads[r.server_id] for r in shown]
        xs = list(range(len(shown)))
        for x, row, s in zip(xs, shown, ss, strict=True):
            ax.bar(x, s.median, alpha=0.45 if _limited(row) else 0.9,
                   label=row.server_id + "".join(f" ({f.value})" for f in row.limit_flags),
                   **styles.bar(row))
        ax.errorbar(xs, [s.median for s in ss], yerr=_err(ss), fmt="none", ecolor="black",
                    capsize=4)
        ax.set_xticks(xs, [_tick(r) for r in shown], rotation=30, ha="right")
        ax.set_ylabel(label.split(" (")[0])
        ax.set_title(label)
        ax.grid(True, axis="y", alpha=0.3)
    _shared_legend(fig, axes[:1])
    _suptitle(fig, f"Closed loop {comp.experiment!r}: {comp.endpoint}, {comp.n} users "
                 f"(engine {comp.engine}); median, bars: min–max of repeats; hatch: worker "
                 f"count; {LIMITED}")
    file = f"{PREFIX}closed-{_slug(comp.experiment)}-{_slug(comp.endpoint)}-c{comp.n}.png"
    _save(fig, out / file)
    return Chart(comp.experiment, "closed", file,
                 f"req/s per configuration, {comp.endpoint}", (comp,))


def _merged(row: RowFacts) -> Histogram | None:
    hists = [f.histogram for f in row.ok]
    merged = Histogram()
    for h in hists:
        if h is None:
            return None
        merged = merged.merge(h)
    return merged if hists else None


def _nines(q: float) -> float:
    """The percentile axis: 90 → 1, 99 → 2, 99.9 → 3 ("nines")."""
    return -math.log10(1 - q / 100)


def _percentiles(experiment: str, kind: str, comps: list[ComparisonFacts], styles: Styles,
                 out: Path, load: Callable[[ComparisonFacts], str]) -> Chart | None:
    """Each comparison's latency curve, titled by its ``load`` ("8 users"); an SLO the
    experiment set is drawn with it."""
    comps = [c for c in comps if any(_merged(r) for r in c.rows)]
    if not comps:
        return None
    fig, axes = _figure(len(comps))
    for ax, comp in zip(axes, comps, strict=True):
        counts: list[int] = []
        for row in comp.rows:
            h = _merged(row)
            if h is None or not h.total:
                continue
            qs = [q for q in CURVE_PERCENTILES
                  if h.total * (1 - q / 100) >= MIN_TAIL_SAMPLES or q == 50.0]
            points = [(_nines(q), ms) for q in qs if (ms := h.percentile_ms(q)) is not None]
            ax.plot([x for x, _ in points], [y for _, y in points], label=row.server_id,
                    **styles.line(row))
            counts.append(h.total)
        ticks = list(CURVE_PERCENTILES)
        ax.set_xticks([_nines(q) for q in ticks], [f"p{q:g}" for q in ticks])
        _log_y(ax)
        ax.set_xlabel("percentile (only where ≥ 10 samples lie above it)")
        ax.set_ylabel("latency (ms, log scale)")
        fewest = f"; ≥ {min(counts):,} samples each" if counts else ""
        ax.set_title(f"{comp.endpoint}, {load(comp)}{fewest}")
        ax.grid(True, which="both", alpha=0.3)
        if slo := comp.load.get("slo_p99_ms"):
            ax.axhline(float(slo), color="red", linestyle="--", label=f"SLO p99 {slo:g} ms")
    _shared_legend(fig, axes)
    _suptitle(fig, f"Latency percentiles {experiment!r} ({kind}; all repeats merged)")
    file = f"{PREFIX}latency-{_slug(experiment)}.png"
    _save(fig, out / file)
    return Chart(experiment, "latency", file, f"latency percentiles, {experiment}",
                 tuple(comps))


def _interference(experiment: str, comps: list[ComparisonFacts], styles: Styles, out: Path
                  ) -> Chart | None:
    comps = [c for c in comps if any(r.values() for r in c.rows)]
    if not comps:
        return None
    fig, axes = _figure(len(comps), width=max(6.0, 1.2 * len(comps[0].rows) + 2))
    for ax, comp in zip(axes, comps, strict=True):
        rows = [r for r in comp.rows if r.values()]
        idle = [r.spread(lambda f: f.idle_ms("p50")) for r in rows]
        loaded = [r.spread() for r in rows]
        xs = list(range(len(rows)))
        width = 0.38
        for x, row, i, s in zip(xs, rows, idle, loaded, strict=True):
            style = styles.bar(row)
            if i is not None:
                ax.bar(x - width / 2, i.median, width, color="lightgrey", edgecolor="black",
                       linewidth=0.6, label="idle" if x == 0 else None)
                ax.errorbar([x - width / 2], [i.median], yerr=_err([i]), fmt="none",
                            ecolor="black", capsize=3)
            if s is not None:
                ax.bar(x + width / 2, s.median, width, alpha=0.45 if _limited(row) else 0.9,
                       label=f"while {comp.endpoint} is busy" if x == 0 else None,
                       **(style | {"color": "#c0392b"}))
                ax.errorbar([x + width / 2], [s.median], yerr=_err([s]), fmt="none",
                            ecolor="black", capsize=3)
        _log_y(ax)
        ax.set_xticks(xs, [_tick(r) for r in rows], rotation=30, ha="right")
        ax.set_ylabel("probe latency p50 (ms, log scale)")
        probe = comp.load.get("probe", "probe")
        ax.set_title(f"{probe} while {comp.n} users keep {comp.endpoint} busy")
        ax.grid(True, axis="y", which="both", alpha=0.3)
        _legend(ax)
    _suptitle(fig, f"Interference {experiment!r}: does a slow endpoint stall unrelated "
                 f"requests? (median; bars: min–max; hatch: worker count; {LIMITED})")
    file = f"{PREFIX}interference-{_slug(experiment)}.png"
    _save(fig, out / file)
    return Chart(experiment, "interference", file,
                 f"probe latency idle vs loaded, {experiment}", tuple(comps))


def _p99_axes(ax: Axes, slo: Any, title: str) -> None:
    """An open-model panel's y axis: p99 from the schedule, log scale, the SLO's line."""
    if slo:
        ax.axhline(float(slo), color="red", linestyle="--", label=f"SLO p99 {slo:g} ms")
    _log_y(ax)
    ax.set_ylabel("p99 latency from the scheduled send (ms, log scale)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)


def _open(experiment: str, comps: list[ComparisonFacts], styles: Styles, out: Path
          ) -> Chart | None:
    groups = _by_endpoint(comps)
    fig, axes = _figure(len(groups))
    drawn = False
    for ax, (endpoint, group) in zip(axes, groups.items(), strict=True):
        series = _series(group, lambda r: r.spread())
        rates = sorted({c.n for c in group})
        span = float(max(rates) - min(rates) or max(rates))
        for k, (sid, (row, points)) in enumerate(series.items()):
            _line(ax, _dodge([x for x, _, _ in points], k, len(series), span), points, sid,
                  styles.line(row))
            drawn = True
        _p99_axes(ax, next((c.load["slo_p99_ms"] for c in group if c.load.get("slo_p99_ms")),
                           None), f"{endpoint}")
        ax.set_xticks(sorted({c.n for c in group}))
        ax.set_xlabel("offered rate (requests per second)")
    if not drawn:
        return None
    _shared_legend(fig, axes)
    _suptitle(fig, f"Open model {experiment!r}: p99 vs offered rate (median; bars: min–max; "
                 f"{LIMITED})")
    file = f"{PREFIX}open-{_slug(experiment)}.png"
    _save(fig, out / file)
    return Chart(experiment, "open", file, f"p99 vs offered rate, {experiment}", tuple(comps))


def _knee(experiment: str, comps: list[ComparisonFacts], styles: Styles, out: Path
          ) -> Chart | None:
    """rates = "auto": every probe's p99 against its offered rate, per configuration, the
    confirmed knee marked with a star on its line."""
    fig, axes = _figure(len(comps))
    drawn = False
    for ax, comp in zip(axes, comps, strict=True):
        for row in comp.rows:
            typical = row.typical()
            if typical is None:
                continue
            probes = sorted((p.rate, p.p99_ms) for p in typical.knee.knee_probes
                            if p.p99_ms is not None and p.rate) if typical.knee else []
            if not probes:
                continue
            # points, not a line: a failing rate is probed twice and the search jumps back
            ax.plot([r for r, _ in probes], [ms for _, ms in probes], label=row.server_id,
                    **(styles.line(row) | {"linestyle": "none"}), alpha=0.7)
            knee = typical.knee.knee_rps if typical.knee else None
            at = [ms for r, ms in probes if r == knee]
            if knee and at:
                ax.plot([knee], [at[0]], marker="*", markersize=16, color=styles.colour(row),
                        linestyle="none")
                ax.annotate(f"{knee:,.0f}", (knee, at[0]), textcoords="offset points",
                            xytext=(4, 6), fontsize=8)
            drawn = True
        _p99_axes(ax, comp.load.get("slo_p99_ms"),
                  f"{comp.endpoint} (★ the knee: confirmed with a full window)")
        ax.set_xscale("log")
        ax.set_xlabel("offered rate (requests per second, log scale)")
    if not drawn:
        return None
    _shared_legend(fig, axes)
    _suptitle(fig, f"Open model {experiment!r}: the search for the highest rate within the "
                   "SLO (every probe of the repeat nearest the median)")
    file = f"{PREFIX}knee-{_slug(experiment)}.png"
    _save(fig, out / file)
    return Chart(experiment, "open", file, f"p99 vs offered rate and the knee, {experiment}",
                 tuple(comps))


def _stream(experiment: str, comps: list[ComparisonFacts], styles: Styles, out: Path
            ) -> Chart | None:
    """TTFB p50 against readers, per endpoint, beside the endpoint's pacing: a server that
    streams stays far below it, one that buffers sits at it."""
    groups = {e: g for e, g in _by_endpoint(comps).items() if any(r.values() for c in g
                                                                   for r in c.rows)}
    if not groups:
        return None
    fig, axes = _figure(len(groups))
    for ax, (endpoint, group) in zip(axes, groups.items(), strict=True):
        ns = sorted({c.n for c in group})
        series = _series(group, lambda r: r.spread())
        span = float(max(ns) - min(ns) or max(ns))
        for k, (sid, (row, points)) in enumerate(series.items()):
            _line(ax, _dodge([x for x, _, _ in points], k, len(series), span), points, sid,
                  styles.line(row))
        paced = next((f.stream.paced_ms for c in group for r in c.rows for f in r.ok
                      if f.stream and f.stream.paced_ms), None)
        if paced:
            ends = [min(ns), max(ns)] if len(ns) > 1 else [ns[0] * 0.8, ns[0] * 1.2]
            ax.plot(ends, [paced, paced], color="grey", linewidth=2, alpha=0.5,
                    linestyle="--", label=f"pacing {paced:g} ms: a buffered TTFB is at least this")
        _log_y(ax)
        ax.set_xticks(ns)
        ax.set_title(endpoint)
        ax.set_xlabel("concurrent readers (N)")
        ax.set_ylabel("time to first body byte, p50 (ms, log scale)")
        ax.grid(True, which="both", alpha=0.3)
    _shared_legend(fig, axes)
    _suptitle(fig, f"Stream {experiment!r}: when the first chunk arrives (median, bars: "
                 f"min–max of repeats; {LIMITED})")
    file = f"{PREFIX}stream-{_slug(experiment)}.png"
    _save(fig, out / file)
    return Chart(experiment, "stream", file, f"time to first body byte vs readers, "
                 f"{experiment}", tuple(comps))


def stream_charts(experiment: str, comps: list[ComparisonFacts], styles: Styles, out: Path
                  ) -> list[Chart | None]:
    return [_stream(experiment, comps, styles, out)]


def burst_charts(experiment: str, comps: list[ComparisonFacts], styles: Styles, out: Path
                 ) -> list[Chart | None]:
    return [_burst(experiment, comps, styles, out)]


def interference_charts(experiment: str, comps: list[ComparisonFacts], styles: Styles, out: Path
                        ) -> list[Chart | None]:
    return [_interference(experiment, comps, styles, out)]


def closed_charts(experiment: str, comps: list[ComparisonFacts], styles: Styles, out: Path
                  ) -> list[Chart | None]:
    return [*(_closed(c, styles, out) for c in comps),
            _percentiles(experiment, "closed", comps, styles, out, lambda c: f"{c.n} users")]


def open_charts(experiment: str, comps: list[ComparisonFacts], styles: Styles, out: Path
                ) -> list[Chart | None]:
    fixed = [c for c in comps if not c.searched]
    searched = [c for c in comps if c.searched]
    return [*([_open(experiment, fixed, styles, out)] if fixed else []),
            *([_knee(experiment, searched, styles, out)] if searched else []),
            _percentiles(experiment, "open", comps, styles, out,
                         lambda c: "at the knee" if c.searched else f"{c.n} req/s offered")]


def draw(report: Report, out: Path) -> list[Chart]:
    """Draw every chart of the report into ``out`` (replacing those of an earlier build)
    and say which experiment each belongs to."""
    comps = report.comparisons
    for old in out.glob(f"{PREFIX}*.png"):
        old.unlink()
    styles = Styles(row for comp in comps for row in comp.rows)
    charts: list[Chart | None] = []
    for kind in kinds().values():
        for experiment, group in _by_experiment(comps, kind.name).items():
            charts += kind.charts(experiment, group, styles, out)
    return [c for c in charts if c is not None]
