"""Requests in flight inside each worker, as ``lab.servers.asgi_wrap`` counts them: the lab's side.

Each wrapped worker keeps, in a file of the server's meter folder named by its pid, how many
HTTP requests are inside the app's call now, the most at once since the lab's window began,
how many started and on how many client connections; the lab begins a window by bumping the
folder's ``generation``.

Why files in shared memory: a route would add an endpoint to the user's app and a request
to every measurement, and a socket would put the meter on the network it measures. A file
per worker has one writer, so the worker needs no lock between processes and no system call
per request (a few stores into its mapping), and the lab reads every worker's file, also of
a worker that has just crashed, at any time. A worker writes ``seq`` odd while it updates
its fields and even once done; a reading that saw the same even ``seq`` before and after
is whole (a seqlock).
"""

import mmap
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from lab.servers.asgi_wrap import (
    CONNECTIONS,
    CURRENT,
    GENERATION,
    GENERATION_FILE,
    METER_SLOTS,
    PEAK,
    SEQ,
    STARTED,
    TOTAL,
)

RETRY_S = 0.1  # how long a reading waits for a worker caught mid-update (then takes it)


@dataclass(frozen=True)
class Reading:
    """One worker's meter file."""

    pid: int
    generation: int  # the window of its last request start
    peak: int  # the most requests in flight at once in that window
    current: int  # in flight now
    started: int  # requests that started in that window
    total: int  # requests that started since the worker's first
    connections: int  # client connections that sent a request in that window


class InFlightMeter:
    """The meter folder of one server (``$LAB_METER_DIR`` of its workers)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._control = folder / GENERATION_FILE

    def begin(self) -> None:
        """A new window: from the next request each worker starts, its peak counts the
        requests then in flight (also those begun before) and the ones after."""
        bump(self._control)

    def generation(self) -> int:
        """The current window (0 before the first ``begin``: the servers' whole life)."""
        try:
            raw = self._control.read_bytes()
        except FileNotFoundError:
            return 0
        return int.from_bytes(raw[:8], sys.byteorder) if len(raw) >= 8 else 0

    def peaks(self) -> dict[int, int]:
        """Worker pid → the most requests it had in flight at once in the current window,
        for the workers that saw a request start in it. A worker that started none is
        absent: its count only fell in the window, from what it was at ``begin``."""
        return {pid: r.peak for pid, r in self.window().items()}

    def window(self) -> dict[int, Reading]:
        """Worker pid → its reading, for the workers that saw a request start in the
        current window (its peak and its connections are that window's)."""
        generation = self.generation()
        return {pid: r for pid, r in self.readings().items() if r.generation == generation}

    def in_flight(self) -> int:
        """Requests inside the app now, over every worker."""
        return sum(r.current for r in self.readings().values())

    def readings(self) -> dict[int, Reading]:
        """Every worker's file (any window), by pid; the files of workers that have not
        yet counted a request, or are being created, are left out."""
        try:
            names = [n for n in os.listdir(self.folder) if n.isdigit()]
        except FileNotFoundError:
            return {}
        found = {}
        for name in names:
            try:
                fields = _read(self.folder / name)
            except (FileNotFoundError, ValueError):  # gone, or not yet its full size
                continue
            if fields[TOTAL]:
                found[int(name)] = Reading(int(name), fields[GENERATION], fields[PEAK],
                                           fields[CURRENT], fields[STARTED], fields[TOTAL],
                                           fields[CONNECTIONS])
        return dict(sorted(found.items()))


def bump(path: Path) -> int:
    """Add one to the u64 counter at ``path`` (created as 0), which only the lab writes;
    the new value."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    with open(fd, "r+b"):
        if os.fstat(fd).st_size < 8:
            os.ftruncate(fd, 8)  # zeros; the workers may have created it too
        with _u64s(fd, 1, write=True) as counter:
            counter[0] += 1  # one aligned 8-byte store: a worker reads old or new
            return counter[0]


@contextmanager
def _u64s(fd: int, slots: int, write: bool) -> Iterator["memoryview[int]"]:
    with (mmap.mmap(fd, slots * 8, access=mmap.ACCESS_WRITE if write else mmap.ACCESS_READ)
          as mapped, memoryview(mapped) as raw, raw.cast("Q") as u64):
        yield u64


def _read(path: Path) -> list[int]:
    """A whole reading of a worker's fields: ``seq`` even and unchanged around them."""
    with open(path, "rb") as f, _u64s(f.fileno(), METER_SLOTS, write=False) as u64:
        deadline = time.monotonic() + RETRY_S
        while True:
            seq = u64[SEQ]
            fields = u64.tolist()
            if (seq % 2 == 0 and u64[SEQ] == seq) or time.monotonic() > deadline:
                # past the deadline the worker died mid-update (or is stopped): each field
                # is still one aligned store, and the update was one request's
                return fields
            time.sleep(0)  # let the writer finish its few stores
