"""websocket: N clients each send M messages, each after the echo of the one before;
messages/s and round-trip percentiles.

Echo and broadcast are two kinds (this and ``ws_broadcast``), not one with a mode: a kind's
rows are ranked by one headline, and theirs point opposite ways (messages/s, higher is
better; the last client's delivery, lower is better), with settings of their own."""

from lab.kinds import Headline, Kind, register
from lab.matrix.config import Cell
from lab.run.estimate import CELL_OVERHEAD_S
from lab.store.schema import Figures

WS_ENGINES = ("rawws", "websockets")
# Round trips per second to plan with: about half what the slowest server here echoed
# (hypercorn 1 worker, 7.3-7.5k msgs/s at 10 and 100 clients, 2026-12-03)
PLANNED_MSGS_PER_S = 3000.0
HANDSHAKE_S = 0.003  # per client, opened at once before the window (and closed after it)


def estimate_s(cell: Cell) -> float:
    return (CELL_OVERHEAD_S + cell.load * HANDSHAKE_S
            + cell.load * cell.experiment.messages / PLANNED_MSGS_PER_S)


def progress(f: Figures) -> str:
    ws = f.websocket
    connected = f"{ws.ws_connected}/{ws.ws_clients} connected, " if ws else ""
    return f"{f.rps or 0:.0f} msgs/s ({connected}round trip)"


KIND = register(Kind(
    name="websocket",
    help="N WebSocket clients each send `messages` messages of `message_bytes`, each after "
         "the echo of the one before; messages/s and round-trip percentiles",
    load_key="connections", letter="ws", settings=("messages", "message_bytes"),
    engines=WS_ENGINES, default_engine="rawws",
    headline=Headline("msgs/s", lambda f: f.rps, True),
    estimate_s=estimate_s,
    run_at="lab.load.websocket:run_echo", columns_at="lab.report.websocket:echo_columns",
    charts_at="lab.report.websocket:charts",
    in_short=4, progress=progress, http_endpoints=False,
))
