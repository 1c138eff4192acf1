"""closed: c users loop on the endpoint for a window; req/s and latency percentiles."""

import math

from lab.kinds import Fact, Headline, Kind, register
from lab.matrix.config import ENGINE_NAMES, Cell
from lab.run.estimate import CELL_OVERHEAD_S, WRK_START_S, window_s


def estimate_s(cell: Cell) -> float:
    exp = cell.experiment
    if exp.engine in ("auto", "wrk"):  # wrk counts whole seconds, and starts twice
        return CELL_OVERHEAD_S + 2 * WRK_START_S + math.ceil(exp.warmup_s) \
            + math.ceil(exp.duration_s)
    return window_s(cell)


KIND = register(Kind(
    name="closed",
    help="c users loop on the endpoint for duration_s after warmup_s; req/s and percentiles",
    load_key="users", letter="c",
    settings=("duration_s", "warmup_s", "clients", "connection", "http", "streams"),
    # "auto": wrk when it is installed, else rawhttp — decided per cell and recorded, so a
    # report always says which client produced a throughput figure.
    engines=("auto", *ENGINE_NAMES), default_engine="auto",
    headline=Headline("req/s", lambda f: f.rps, True),
    estimate_s=estimate_s,
    run_at="lab.load.closed:run", columns_at="lab.report.tables:closed_columns",
    charts_at="lab.report.charts:closed_charts",
    split="users", in_short=0,
    facts=frozenset({Fact.THROUGHPUT, Fact.SCALING}),
))
