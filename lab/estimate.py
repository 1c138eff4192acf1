"""A rough duration for a matrix, so `validate` can say it and `run` can ask before long runs.

It assumes the endpoints behave as apps.article's do: a burst of /async-blocking takes
N × delay (servers may send every request to one worker), other sleeping endpoints a delay
per 40 requests (the thread pool); a probe stalled by /async-blocking waits for the
background users' requests, a few rounds of them.
"""

import math

from lab.config import Cell

SERVER_OVERHEAD_S = 0.9  # start-to-ready ~0.3-0.4 s, stop up to ~0.5 s, bookkeeping
CELL_OVERHEAD_S = 0.05  # a reused server: a /health check and the results line
WRK_START_S = 0.1  # wrk under its guard: a Python start-up, twice per cell
# Each worker imports the app (~0.3 s of CPU) and the lab waits for all of them: measured
# +0.1 s for the second worker on 2 cores; beyond the cores they start in turn. Counted as
# if there were one core, so the estimate errs long.
WORKER_START_S = 0.3
KNEE_PROBES = 13  # a search from 250 req/s to a few thousand, bisected to 10 %, repeats
STALLED_ROUNDS = 3  # measured here: a stalled probe waited ~2.7 × users × delay


def _delay(cell: Cell) -> float:
    d = cell.experiment.params.get("delay", 0)
    return float(d) if isinstance(d, int | float) else 0.0


def _server_s(cell: Cell) -> float:
    """Starting and stopping the cell's server."""
    return SERVER_OVERHEAD_S + WORKER_START_S * (cell.workers - 1)


def cell_s(cell: Cell) -> float:
    """The cell's own time, its server's start and stop not included."""
    exp = cell.experiment
    if exp.kind == "closed" and exp.engine in ("auto", "wrk"):  # wrk counts whole seconds
        return CELL_OVERHEAD_S + 2 * WRK_START_S + math.ceil(exp.warmup_s) \
            + math.ceil(exp.duration_s)
    if cell.searched:  # about ten short probes, then the confirming window
        return CELL_OVERHEAD_S + KNEE_PROBES * (exp.warmup_s + exp.knee_window_s) \
            + exp.warmup_s + exp.duration_s
    if exp.kind in ("closed", "open"):
        return CELL_OVERHEAD_S + exp.warmup_s + exp.duration_s + (0.5 if exp.clients > 1
                                                                   else 0.0)
    delay = _delay(cell)
    if exp.kind == "interference":
        stall = STALLED_ROUNDS * cell.load * delay if cell.endpoint.path == "/async-blocking" \
            else 0.01
        return (CELL_OVERHEAD_S + exp.settle_s + 2 * exp.probes * exp.probe_interval_s
                + exp.probes * stall + delay)
    if cell.endpoint.path == "/async-blocking":
        return CELL_OVERHEAD_S + cell.load * delay
    return CELL_OVERHEAD_S + delay * math.ceil(cell.load / 40)


def matrix_s(cells: list[Cell], restart: str = "configuration") -> float:
    """Every cell, plus a server start and stop per cell (``restart = "cell"``) or per run
    of consecutive cells of one configuration and repeat."""
    starts = [c for i, c in enumerate(cells)
              if i == 0 or c.start_key(restart) != cells[i - 1].start_key(restart)]
    return sum(cell_s(c) for c in cells) + sum(_server_s(c) for c in starts)
