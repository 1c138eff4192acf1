"""A rough duration for a matrix, so `validate` can say it and `run` can ask before long runs.

Closed and open windows last what the config says. A burst or a probe lasts what its
endpoint takes, which a config says only through a ``delay`` parameter, read as
apps.article's endpoints use it: a burst of /async-blocking takes N × delay (servers may
send every request to one worker), other sleeping endpoints a delay per 40 requests (the
thread pool, or ``lab.threads``); a probe stalled by /async-blocking waits for the
background users' requests, a few rounds of them. Other bursts and probes count only their
overhead, and the estimate says it is a floor: a real app's took twice as long. The live
ETA (``lab.run.progress``) learns the pace from the cells measured.
"""

from dataclasses import dataclass

from lab.kinds import get
from lab.matrix.config import Cell

SERVER_OVERHEAD_S = 0.9  # start-to-ready ~0.3-0.4 s, stop up to ~0.5 s, bookkeeping
CELL_OVERHEAD_S = 0.05  # a reused server: a /health check and the results line
WRK_START_S = 0.1  # wrk under its guard: a Python start-up, twice per cell
# Each worker imports the app (~0.3 s of CPU) and the lab waits for all of them: measured
# +0.1 s for the second worker on 2 cores; beyond the cores they start in turn. Counted as
# if there were one core, so the estimate errs long.
WORKER_START_S = 0.3
KNEE_PROBES = 13  # a search from 250 req/s to a few thousand, bisected to 10 %, repeats
STALLED_ROUNDS = 3  # measured here: a stalled probe waited ~2.7 × users × delay


def delay_s(cell: Cell) -> float:
    """The cell's ``delay`` parameter (0 when it has none)."""
    d = cell.experiment.params.get("delay", 0)
    return float(d) if isinstance(d, int | float) else 0.0


def window_s(cell: Cell) -> float:
    """A closed or open window: its warm-up and duration, and the client processes' start."""
    exp = cell.experiment
    return CELL_OVERHEAD_S + exp.warmup_s + exp.duration_s + (0.5 if exp.clients > 1 else 0.0)


def blocks_loop(cell: Cell) -> bool:
    """apps.article's endpoint that blocks its worker's event loop for the delay."""
    return cell.endpoint.path == "/async-blocking"


def _server_s(cell: Cell) -> float:
    """Starting and stopping the cell's server."""
    return SERVER_OVERHEAD_S + WORKER_START_S * (cell.workers - 1)


def cell_s(cell: Cell) -> float:
    """The cell's own time, its server's start and stop not included."""
    return get(cell.experiment.kind).estimate_s(cell)


def unknown(cell: Cell) -> bool:
    """Does the cell last as long as its endpoint takes, which the config does not say?"""
    return get(cell.experiment.kind).lasts_as_endpoint and delay_s(cell) == 0


@dataclass(frozen=True)
class Estimate:
    seconds: float
    unknown: int  # cells of those whose time is a floor (their endpoint's latency unknown)
    cells: int

    @classmethod
    def of(cls, cells: list[Cell], restart: str = "configuration") -> "Estimate":
        return cls(matrix_s(cells, restart), sum(map(unknown, cells)), len(cells))

    @property
    def minutes(self) -> float:
        return self.seconds / 60

    def text(self) -> str:
        """"estimated 5.6 min", and when it is a floor, why."""
        head = f"estimated {self.minutes:.1f} min"
        if not self.unknown:
            return head
        return (f"{head} at least: {self.unknown} of {self.cells} cells last as long as "
                "their endpoints take, which the config does not say (the ETA learns it)")


def matrix_s(cells: list[Cell], restart: str = "configuration") -> float:
    """Every cell, plus a server start and stop per cell (``restart = "cell"``) or per run
    of consecutive cells of one configuration and repeat."""
    starts = [c for i, c in enumerate(cells)
              if i == 0 or c.start_key(restart) != cells[i - 1].start_key(restart)]
    return sum(cell_s(c) for c in cells) + sum(_server_s(c) for c in starts)
