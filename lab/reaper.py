"""The second line of defence against orphans: a ledger of the process groups a run
started, so that the next run can end any that outlived a lab killed with SIGKILL before
its guards could act (the guards are the first line)."""

import json
import os
import signal
from pathlib import Path

from lab import pgroup

LEDGER = "pgroups.jsonl"
TOKEN_ENV = "LAB_GROUP_TOKEN"  # set in every server's environment; proves a group is ours


class Ledger:
    def __init__(self, run_path: Path) -> None:
        self.path = run_path / LEDGER

    def _write(self, entry: dict[str, object]) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(entry) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def started(self, pgid: int, token: str) -> None:
        self._write({"event": "start", "pgid": pgid, "token": token})

    def stopped(self, pgid: int, token: str) -> None:
        self._write({"event": "stop", "pgid": pgid, "token": token})

    def open_groups(self) -> dict[str, int]:
        """token → pgid of groups started and not recorded as stopped."""
        groups: dict[str, int] = {}
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
                groups[e["token"]] = e["pgid"]
            else:
                groups.pop(e.get("token"), None)
        return groups


def _carries(pid: int, token: str) -> bool:
    try:
        env = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False
    return f"{TOKEN_ENV}={token}".encode() in env.split(b"\0")


def reap(root: Path) -> list[str]:
    """SIGKILL every still-running group recorded in any run under ``root``; one message per
    group reaped. A pid reused by an unrelated process lacks the token and is left alone."""
    messages = []
    for ledger_path in sorted(root.glob(f"*/{LEDGER}")):
        ledger = Ledger(ledger_path.parent)
        for token, pgid in ledger.open_groups().items():
            ours = [p for p in pgroup.members(pgid) if _carries(p, token)]
            if ours:
                for pid in ours:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                messages.append(f"reaped {len(ours)} leftover server process(es) of "
                                f"{ledger_path.parent.name} (process group {pgid})")
            ledger.stopped(pgid, token)
    return messages
