"""The second line of defence against orphans: a ledger of the process groups a run
started, so that a later run can end any that outlived a lab killed with SIGKILL before
its guards could act (the guards are the first line).

Each group is recorded with its owner, the lab process that started it. Only a group whose
owner is gone is an orphan: the servers of a lab still running are never touched.
"""

import json
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lab.supervise import pgroup
from lab.supervise.lock import writer_lock

LEDGER = "pgroups.jsonl"
TOKEN_ENV = "LAB_GROUP_TOKEN"  # set in every server's environment; proves a group is ours


def _start_ticks(pid: int) -> int | None:
    """When ``pid`` started (clock ticks after boot, /proc/<pid>/stat field 22); None if
    it is gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()  # field 3 onwards
    return None if fields[0] == "Z" else int(fields[19])


@dataclass(frozen=True)
class Owner:
    """A lab process, by pid *and* start time: a reused pid is not taken for the owner."""

    pid: int
    start: int

    @classmethod
    def current(cls) -> "Owner":
        start = _start_ticks(os.getpid())
        assert start is not None  # we are running
        return cls(os.getpid(), start)

    def alive(self) -> bool:
        return _start_ticks(self.pid) == self.start


@dataclass(frozen=True)
class Group:
    pgid: int
    owner: Owner | None  # None in ledgers written before owners were recorded


class Ledger:
    def __init__(self, run_path: Path) -> None:
        self.path = run_path / LEDGER

    def _write(self, entry: dict[str, object]) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(entry) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def started(self, pgid: int, token: str) -> None:
        owner = Owner.current()
        self._write({"event": "start", "pgid": pgid, "token": token,
                     "owner_pid": owner.pid, "owner_start": owner.start})

    def stopped(self, pgid: int, token: str) -> None:
        self._write({"event": "stop", "pgid": pgid, "token": token})

    def open_groups(self) -> dict[str, Group]:
        """token → group, for groups started and not recorded as stopped."""
        groups: dict[str, Group] = {}
        try:
            lines = self.path.read_text().splitlines()
        except OSError:
            return groups
        for line in lines:
            try:
                e = json.loads(line)
            except ValueError:
                continue  # a line cut short by the crash that made this ledger matter
            if e.get("event") == "start":
                owner = (Owner(e["owner_pid"], e["owner_start"]) if "owner_pid" in e
                         else None)
                groups[e["token"]] = Group(e["pgid"], owner)
            else:
                groups.pop(e.get("token"), None)
        return groups


def _carries(pid: int, token: str) -> bool:
    try:
        env = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False
    return f"{TOKEN_ENV}={token}".encode() in env.split(b"\0")


def reap(root: Path, writing: Path | None = None) -> list[str]:
    """SIGKILL every still-running group, recorded in any run under ``root``, whose owner is
    gone; one message per group reaped. ``writing`` is the run folder this lab holds.

    Run folders another lab is writing are skipped whole. A group without a recorded owner
    (an older ledger) is reaped only if its folder is not being written. A pid reused by an
    unrelated process lacks the token and is left alone."""
    messages = []
    mine = writing.resolve() if writing else None
    for ledger_path in sorted(root.glob(f"*/{LEDGER}")):
        run_dir = ledger_path.parent
        if run_dir.resolve() != mine and writer_lock(run_dir).held_elsewhere():
            continue  # a live lab is writing it: its groups are its own
        messages += reap_ledger(Ledger(run_dir), run_dir.name,
                                lambda group: group.owner is not None and group.owner.alive())
    return messages


def reap_ledger(ledger: Ledger, name: str, held: Callable[[Group], bool]) -> list[str]:
    """SIGKILL each open group of ``ledger`` that is not ``held`` (its owner still wants it)
    and still carries its token; one message per group reaped, named after ``name``."""
    messages = []
    for token, group in ledger.open_groups().items():
        if held(group):
            continue
        ours = [p for p in pgroup.members(group.pgid) if _carries(p, token)]
        if ours:
            for pid in ours:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            messages.append(f"reaped {len(ours)} leftover server process(es) of "
                            f"{name} (process group {group.pgid})")
        ledger.stopped(group.pgid, token)
    return messages
