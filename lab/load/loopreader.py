"""How long each endpoint held the event loop inside each worker: the lab's side of the loop
meter (``lab.servers.loopmeter`` has the format, ``lab.servers.asgi_wrap`` the worker's side).

A worker writes its snapshot every ``WRITE_S`` when it changed; a window's edges must not wait
for that, nor miss the last calls: the lab bumps the folder's ``loop.flush`` counter and
waits until every worker with a snapshot has written one that answers it (its watchdog looks
at least every `LAB_LOOP_BLOCK_MS`, also while the loop is blocked).
"""

import json
import os
import time
from pathlib import Path

from lab.load.inflight import bump
from lab.servers import loopmeter
from lab.servers.loopmeter import Snapshot

FLUSH_TIMEOUT_S = 0.5  # a worker that has not answered by then (stopped, dead) keeps its last
POLL_S = 0.002


class LoopReader:
    """The loop meter snapshots in one server's meter folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def snapshots(self, timeout_s: float = FLUSH_TIMEOUT_S) -> dict[int, Snapshot]:
        """Every worker's snapshot by pid, as of now."""
        want = bump(self.folder / loopmeter.FLUSH_FILE)
        deadline = time.monotonic() + timeout_s
        while True:
            found = self._read()
            if all(s["flush"] >= want for s in found.values()) or time.monotonic() > deadline:
                return found
            time.sleep(POLL_S)

    def window(self, start: dict[int, Snapshot]) -> dict[int, Snapshot]:
        """Each worker's counts since ``start`` (`snapshots` at the window's start)."""
        return {pid: loopmeter.diff(start.get(pid), end)
                for pid, end in self.snapshots().items()}

    def _read(self) -> dict[int, Snapshot]:
        found = {}
        try:
            names = [n for n in os.listdir(self.folder) if n.endswith(loopmeter.SUFFIX)]
        except FileNotFoundError:
            return {}
        for name in names:
            try:
                snapshot = loopmeter.parse(json.loads((self.folder / name).read_text()))
            except (OSError, ValueError):  # gone (its worker's folder removed), or foreign
                continue
            if snapshot is not None:
                found[snapshot["pid"]] = snapshot
        return dict(sorted(found.items()))
