"""A rough duration for a matrix, so `validate` can say it and `run` can ask before long runs.

It assumes the endpoints behave as apps.article's do: a burst of /async-blocking takes
N × delay ÷ workers, other sleeping endpoints a delay per 40 requests (the thread pool).
"""

import math

from lab.config import Cell

SERVER_OVERHEAD_S = 1.0  # start-to-ready ~0.3-0.4 s, stop up to ~0.7 s, bookkeeping


def cell_s(cell: Cell) -> float:
    exp = cell.experiment
    if exp.kind == "closed":
        return SERVER_OVERHEAD_S + exp.warmup_s + exp.duration_s
    delay = exp.params.get("delay", 0)
    delay = float(delay) if isinstance(delay, int | float) else 0.0
    if cell.endpoint == "/async-blocking":
        # Servers split unevenly (uvicorn sent 10 of 10 to one worker here): assume none.
        work = cell.load * delay
    else:
        work = delay * math.ceil(cell.load / 40)
    return SERVER_OVERHEAD_S + work


def matrix_s(cells: list[Cell]) -> float:
    return sum(cell_s(c) for c in cells)
