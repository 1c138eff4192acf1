"""Process groups, read straight from /proc (stdlib only: the guard imports this too)."""

import os
import signal
import time
from pathlib import Path


def members(pgid: int) -> list[int]:
    """Live (non-zombie) pids whose process group is ``pgid``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # exited while we looked
        # Fields after the command name, which may itself contain spaces and parentheses.
        fields = stat[stat.rindex(")") + 2:].split()
        if fields[0] != "Z" and int(fields[2]) == pgid:
            pids.append(int(entry.name))
    return pids


def alive(pgid: int, exclude: int | None = None) -> bool:
    return any(p != exclude for p in members(pgid))


def signal_group(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        pass


def wait_gone(pgid: int, timeout_s: float, exclude: int | None = None) -> bool:
    """Poll until no member of the group (but ``exclude``) is left; True if it emptied."""
    deadline = time.monotonic() + timeout_s
    while alive(pgid, exclude):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)
    return True


def terminate(pgid: int, grace_s: float, exclude: int | None = None) -> bool:
    """SIGTERM the group, SIGKILL what is left after ``grace_s``; True if SIGKILL was needed."""
    signal_group(pgid, signal.SIGTERM)
    if wait_gone(pgid, grace_s, exclude):
        return False
    signal_group(pgid, signal.SIGKILL)
    wait_gone(pgid, 1.0, exclude)
    return True
