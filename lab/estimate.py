"""A rough duration for a matrix, so `validate` can say it and `run` can ask before long runs.

It assumes the endpoints behave as apps.article's do: a burst of /async-blocking takes
N × delay (servers may send every request to one worker), other sleeping endpoints a delay
per 40 requests (the thread pool); a probe stalled by /async-blocking waits for the
background users' requests, a few rounds of them.
"""

import math

from lab.config import Cell

SERVER_OVERHEAD_S = 0.9  # start-to-ready ~0.3-0.4 s, stop up to ~0.5 s, bookkeeping
# Each worker imports the app (~0.3 s of CPU) and the lab waits for all of them: measured
# +0.1 s for the second worker on 2 cores; beyond the cores they start in turn. Counted as
# if there were one core, so the estimate errs long.
WORKER_START_S = 0.3
STALLED_ROUNDS = 3  # measured here: a stalled probe waited ~2.7 × users × delay


def _delay(cell: Cell) -> float:
    d = cell.experiment.params.get("delay", 0)
    return float(d) if isinstance(d, int | float) else 0.0


def _server_s(cell: Cell) -> float:
    """Starting and stopping the cell's server."""
    return SERVER_OVERHEAD_S + WORKER_START_S * (cell.workers - 1)


def cell_s(cell: Cell) -> float:
    exp = cell.experiment
    if exp.kind in ("closed", "open"):
        return _server_s(cell) + exp.warmup_s + exp.duration_s + (0.5 if exp.clients > 1
                                                                     else 0.0)
    delay = _delay(cell)
    if exp.kind == "interference":
        stall = STALLED_ROUNDS * cell.load * delay if cell.endpoint == "/async-blocking" \
            else 0.01
        return (_server_s(cell) + exp.settle_s + 2 * exp.probes * exp.probe_interval_s
                + exp.probes * stall + delay)
    if cell.endpoint == "/async-blocking":
        return _server_s(cell) + cell.load * delay
    return _server_s(cell) + delay * math.ceil(cell.load / 40)


def matrix_s(cells: list[Cell]) -> float:
    return sum(cell_s(c) for c in cells)
