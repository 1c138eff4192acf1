"""open: a fixed arrival rate whatever the answers, or the highest rate within an SLO."""

from lab.kinds import Fact, Headline, Kind, register
from lab.matrix.config import PYTHON_ENGINES, Cell
from lab.report.groups import MIN_SAMPLES
from lab.run.estimate import CELL_OVERHEAD_S, KNEE_PROBES, window_s
from lab.store.schema import Figures


def p99(f: Figures) -> float | None:
    return f.latency_ms.get("p99") if f.latency_samples >= MIN_SAMPLES["p99"] else None


def estimate_s(cell: Cell) -> float:
    exp = cell.experiment
    if cell.searched:  # about ten short probes, then the confirming window
        return CELL_OVERHEAD_S + KNEE_PROBES * (exp.warmup_s + exp.knee_window_s) \
            + exp.warmup_s + exp.duration_s
    return window_s(cell)


def progress(f: Figures) -> str:
    if f.knee:
        knee = f"{f.knee.knee_rps:.0f} req/s" if f.knee.knee_rps else "none"
        return f"knee {knee} ({f.knee.knee_bound}, {len(f.knee.knee_probes)} probes),"
    target = f.open.target_rps if f.open else None
    return f"{f.rps:.0f} req/s" + ("," if target is None else f" of {target:g},")


KIND = register(Kind(
    name="open",
    help="a fixed arrival rate (req/s) whatever the answers; latency from the scheduled "
         'time; rates = "auto" finds the highest rate within slo_p99_ms',
    load_key="rates", letter="rps",
    settings=("duration_s", "warmup_s", "clients", "connection", "max_connections",
              "slo_p99_ms", "knee_window_s", "knee_max_rps"),
    engines=PYTHON_ENGINES, default_engine="rawhttp",
    headline=Headline("p99 ms", p99, False),
    searched_headline=Headline("knee req/s", lambda f: f.knee.knee_rps if f.knee else None,
                               True),
    estimate_s=estimate_s,
    run_at="lab.load.open_model:run", columns_at="lab.report.tables:open_columns",
    charts_at="lab.report.charts:open_charts",
    split="rate", in_short=3, progress=progress,
    facts=frozenset({Fact.KNEES}),
))
