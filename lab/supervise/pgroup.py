"""Process groups, read straight from /proc (stdlib only: the guard imports this too)."""

import os
import signal
import time
from pathlib import Path


def _stats() -> list[tuple[int, list[str]]]:
    """(pid, the fields of /proc/<pid>/stat after the command name) of every process."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # exited while we looked
        # Fields after the command name, which may itself contain spaces and parentheses.
        out.append((int(entry.name), stat[stat.rindex(")") + 2:].split()))
    return out


def members(pgid: int) -> list[int]:
    """Live (non-zombie) pids whose process group is ``pgid``."""
    return [pid for pid, fields in _stats() if fields[0] != "Z" and int(fields[2]) == pgid]


def alive(pgid: int, exclude: int | None = None) -> bool:
    return any(p != exclude for p in members(pgid))


def children(pid: int) -> list[int]:
    """Live (non-zombie) pids whose parent is ``pid``."""
    return [p for p, fields in _stats() if fields[0] != "Z" and int(fields[1]) == pid]


def signal_group(pgid: int, signum: int, exclude: int | None = None) -> None:
    """Signal every member of the group; with ``exclude``, every member but that one."""
    if exclude is None:
        try:
            os.killpg(pgid, signum)
        except ProcessLookupError:
            pass
        return
    for pid in members(pgid):
        if pid != exclude:
            try:
                os.kill(pid, signum)
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
    signal_group(pgid, signal.SIGKILL, exclude)
    wait_gone(pgid, 1.0, exclude)
    return True
