"""A run's folder on a host of a run on remote hosts: its groups' ledger, logs and lease.

On every host the lab's tasks keep, per run, what the local lab keeps in its run folder:
the ledger of the process groups they started (``lab.supervise.reaper``), the groups' logs,
and ``lease``, whose modification time is the last time the controller renewed its lease
there. A sweep (``lab.remote.sweep``) reaps the groups of a run whose lease has expired.
"""

import json
import os
import time
from pathlib import Path

ROOT_ENV = "LAB_HOSTS_DIR"  # where the folders go (default: ~/.cache/asgi-lab/hosts)
LEASE = "lease"


def root() -> Path:
    default = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "asgi-lab"
    return Path(os.environ.get(ROOT_ENV) or default / "hosts")


def folder(run_id: str, lease_s: float) -> Path:
    """The run's folder on this host, created with its lease renewed now."""
    path = root() / run_id
    (path / "logs").mkdir(parents=True, exist_ok=True)
    lease = path / LEASE
    if not lease.exists():
        lease.write_text(json.dumps({"lease_s": lease_s}))
    renew(path)
    return path


def renew(path: Path) -> None:
    os.utime(path / LEASE)


def expired(path: Path, now: float | None = None) -> bool:
    """Has the run's lease on this host gone unrenewed for longer than its term?"""
    lease = path / LEASE
    try:
        term = float(json.loads(lease.read_text())["lease_s"])
        age = (time.time() if now is None else now) - lease.stat().st_mtime
    except (OSError, ValueError, KeyError, TypeError):
        return True  # no readable lease: nobody holds the run here
    return age > term
