"""interference: a fast endpoint's latency idle, then while users load a slow one."""

from lab.kinds import Fact, Headline, Kind, register
from lab.kinds.base import ms
from lab.matrix.config import PYTHON_ENGINES, Cell
from lab.run.estimate import CELL_OVERHEAD_S, STALLED_ROUNDS, blocks_loop, delay_s
from lab.store.schema import Figures


def estimate_s(cell: Cell) -> float:
    """The idle and loaded probes; a probe stalled by a blocked loop waits for the
    background users' requests, a few rounds of them."""
    exp, delay = cell.experiment, delay_s(cell)
    stall = STALLED_ROUNDS * cell.load * delay if blocks_loop(cell) else 0.01
    return (CELL_OVERHEAD_S + exp.settle_s + 2 * exp.probes * exp.probe_interval_s
            + exp.probes * stall + delay)


def progress(f: Figures) -> str:
    return f"probe idle p50 {ms(f.idle_ms('p50'))}, loaded"


KIND = register(Kind(
    name="interference",
    help="latency of a probe endpoint idle, then while c users load the slow endpoint",
    load_key="background", letter="bg",
    settings=("probe", "probes", "probe_interval_s", "settle_s", "probe_connect"),
    engines=PYTHON_ENGINES, default_engine="rawhttp",
    headline=Headline("probe p50 ms (loaded)", lambda f: f.latency_ms.get("p50"), False),
    estimate_s=estimate_s,
    run_at="lab.load.interference:run", columns_at="lab.report.tables:interference_columns",
    charts_at="lab.report.charts:interference_charts",
    lasts_as_endpoint=True, in_short=1, progress=progress,
    facts=frozenset({Fact.PROBE_EFFECT}),
))
