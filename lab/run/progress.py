"""What ``run`` shows while it measures.

On a terminal: a live display (rich) of cells done of total, the current cell, the time
elapsed and an ETA, with each finished cell's line printed above it. Elsewhere (CI, a pipe,
a file): the plain line per finished cell, nothing redrawn. ``--quiet``: neither.

The ETA is the estimate of the cells left (`lab.run.estimate`) scaled by how long the cells
done so far really took against their estimate, so it learns this machine's pace.
Signals are not touched: the lab's handlers stay in charge, and a second Ctrl-C still
skips the grace period.
"""

import sys
import time
from typing import Protocol, TextIO

from lab.matrix.config import Cell
from lab.run.estimate import matrix_s


class Display(Protocol):
    def started(self, i: int, total: int, cell: Cell) -> None: ...
    def line(self, text: str) -> None: ...
    def close(self) -> None: ...


class Eta:
    """Seconds left after ``done`` of ``cells``, calibrated by the time they took."""

    def __init__(self, cells: list[Cell], restart: str) -> None:
        self.cells, self.restart = cells, restart
        self.t0 = time.monotonic()

    def left_s(self, done: int) -> float:
        rest = matrix_s(self.cells[done:], self.restart)
        estimated_done = matrix_s(self.cells[:done], self.restart) if done else 0.0
        elapsed = time.monotonic() - self.t0
        pace = elapsed / estimated_done if done and estimated_done > 0 else 1.0
        return rest * pace


def clock(seconds: float) -> str:
    s = max(0, round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 \
        else f"{s // 60}:{s % 60:02d}"


class Plain:
    """A line per finished cell, flushed, with the ETA after it: what CI logs and pipes
    get. The up-front estimate of an app it does not know is a floor; this one learns."""

    def __init__(self, stream: TextIO | None = None, cells: list[Cell] | None = None,
                 restart: str = "configuration") -> None:
        self.stream = stream or sys.stdout
        self.eta = Eta(cells or [], restart)
        self.done = 0

    def started(self, i: int, total: int, cell: Cell) -> None:
        self.done = i - 1

    def line(self, text: str) -> None:
        if text.startswith("[") and 0 <= self.done < len(self.eta.cells) - 1:
            text += f" · ETA {clock(self.eta.left_s(self.done + 1))}"  # a cell's line
        print(text, file=self.stream, flush=True)

    def close(self) -> None:
        pass


class Quiet(Plain):
    """Only warnings, on stderr."""

    def line(self, text: str) -> None:
        if text.startswith("warning:"):
            print(text, file=sys.stderr, flush=True)


class Live:
    """The live display of a terminal."""

    def __init__(self, cells: list[Cell], restart: str, stream: TextIO) -> None:
        # imported here: a run in CI or a pipe never needs it
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self.eta = Eta(cells, restart)
        self.progress = Progress(
            TextColumn("[bold]{task.fields[cell]}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("cells"), TimeElapsedColumn(), TextColumn("ETA {task.fields[eta]}"),
            console=Console(file=stream), transient=True)
        self.task = self.progress.add_task("run", total=len(cells), cell="starting",
                                           eta=clock(self.eta.left_s(0)))
        self.progress.start()

    def started(self, i: int, total: int, cell: Cell) -> None:
        self.progress.update(self.task, completed=i - 1, cell=cell.id,
                             eta=clock(self.eta.left_s(i - 1)))

    def line(self, text: str) -> None:
        self.progress.console.print(text, markup=False, highlight=False, soft_wrap=True)

    def close(self) -> None:
        self.progress.stop()


def display(cells: list[Cell], restart: str, quiet: bool = False,
            stream: TextIO | None = None) -> Display:
    stream = stream or sys.stdout
    if quiet:
        return Quiet(stream)
    if stream.isatty():
        return Live(cells, restart, stream)
    return Plain(stream, cells, restart)
