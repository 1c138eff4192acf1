"""burst: N requests written at once on open connections; the batch's wall time."""

import math

from lab.kinds import Fact, Headline, Kind, register
from lab.matrix.config import DEFAULT_THREADS, PYTHON_ENGINES, Cell
from lab.run.estimate import CELL_OVERHEAD_S, blocks_loop, delay_s
from lab.store.schema import Figures


def estimate_s(cell: Cell) -> float:
    """N × delay where the servers may send every request to one blocked worker, else a
    delay per thread pool's worth of requests (lab.threads, by default 40)."""
    if blocks_loop(cell):
        return CELL_OVERHEAD_S + cell.load * delay_s(cell)
    return CELL_OVERHEAD_S + delay_s(cell) * math.ceil(cell.load / (cell.threads
                                                                     or DEFAULT_THREADS))


def progress(f: Figures) -> str:
    peak = "/".join(map(str, sorted(f.inflight_peak.values(), reverse=True)))
    spread = f.burst.send_spread_ms if f.burst else None
    return (f"{f.wall_s:.3f} s wall (sends spread "
            + ("–" if spread is None else f"{spread:.2f} ms")
            + (f", peak in flight {peak}" if peak else "") + "),")


KIND = register(Kind(
    name="burst",
    help="N requests written at once on open connections; batch wall time, send spread and "
         "the peak in flight in each worker",
    load_key="requests", letter="n", settings=("connect",),
    engines=PYTHON_ENGINES, default_engine="rawhttp",
    headline=Headline("wall s", lambda f: f.wall_s, False),
    estimate_s=estimate_s,
    run_at="lab.load.burst:run", columns_at="lab.report.tables:burst_columns",
    charts_at="lab.report.charts:burst_charts",
    lasts_as_endpoint=True, in_short=2, progress=progress,
    facts=frozenset({Fact.SERIALISED}),
))
