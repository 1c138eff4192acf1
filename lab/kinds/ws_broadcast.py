"""ws_broadcast: one message fanned out to N WebSocket clients, `rounds` times; the delivery
to the last client, and the clients that missed it."""

from lab.kinds import Headline, Kind, register
from lab.kinds.base import ms
from lab.kinds.websocket import HANDSHAKE_S, WS_ENGINES
from lab.matrix.config import Cell
from lab.run.estimate import CELL_OVERHEAD_S
from lab.store.schema import Figures

PLANNED_DELIVERY_S = 0.0001  # per client and round: a round at N = 100 took 5-9 ms here


def estimate_s(cell: Cell) -> float:
    return (CELL_OVERHEAD_S + cell.load * HANDSHAKE_S
            + cell.experiment.rounds * cell.load * PLANNED_DELIVERY_S)


def last_ms(f: Figures) -> float | None:
    return f.websocket.ws_last_p50_ms if f.websocket else None


def progress(f: Figures) -> str:
    missed = f.websocket.ws_missed if f.websocket else 0
    return f"last client {ms(last_ms(f))} ({missed} missed), delivery"


KIND = register(Kind(
    name="ws_broadcast",
    help="one message of `message_bytes` fanned out to the N WebSocket clients of each "
         "worker, `rounds` times; delivery to the last client (p50 of rounds) and misses",
    load_key="connections", letter="ws", settings=("rounds", "message_bytes"),
    engines=WS_ENGINES, default_engine="rawws",
    headline=Headline("last client ms", last_ms, False),
    estimate_s=estimate_s,
    run_at="lab.load.websocket:run_broadcast",
    columns_at="lab.report.websocket:broadcast_columns",
    charts_at="lab.report.websocket:charts",
    in_short=5, progress=progress, http_endpoints=False,
))
