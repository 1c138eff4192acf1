"""A rough duration for a matrix, so `validate` can say it and `run` can ask before long runs.

It assumes the endpoints behave as apps.article's do: a burst of /async-blocking takes
N × delay (servers may send every request to one worker), other sleeping endpoints a delay
per 40 requests (the thread pool); a probe stalled by /async-blocking waits for the
background users' requests, a few rounds of them.
"""

import math

from lab.config import Cell

SERVER_OVERHEAD_S = 0.9  # start-to-ready ~0.3-0.4 s, stop up to ~0.5 s, bookkeeping
STALLED_ROUNDS = 3  # measured here: a stalled probe waited ~2.7 × users × delay


def _delay(cell: Cell) -> float:
    d = cell.experiment.params.get("delay", 0)
    return float(d) if isinstance(d, int | float) else 0.0


def cell_s(cell: Cell) -> float:
    exp = cell.experiment
    if exp.kind in ("closed", "open"):
        return SERVER_OVERHEAD_S + exp.warmup_s + exp.duration_s + (0.5 if exp.clients > 1
                                                                     else 0.0)
    delay = _delay(cell)
    if exp.kind == "interference":
        stall = STALLED_ROUNDS * cell.load * delay if cell.endpoint == "/async-blocking" \
            else 0.01
        return (SERVER_OVERHEAD_S + exp.settle_s + 2 * exp.probes * exp.probe_interval_s
                + exp.probes * stall + delay)
    if cell.endpoint == "/async-blocking":
        return SERVER_OVERHEAD_S + cell.load * delay
    return SERVER_OVERHEAD_S + delay * math.ceil(cell.load / 40)


def matrix_s(cells: list[Cell]) -> float:
    return sum(cell_s(c) for c in cells)
