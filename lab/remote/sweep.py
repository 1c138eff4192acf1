"""Before and after a run on remote hosts, every worker reaps the groups of runs whose
controller is gone (``Client.run``): the remote analogue of ``lab.supervise.reaper.reap``.

A run's groups on a host are in its folder's ledger (``lab.remote.hostdir``); a run whose
lease there has expired has no controller to stop them, whatever the guard's parent (the
worker, still alive) says. Its groups are killed; a folder with nothing left open is
removed, its logs with it (the controller copied each server's log when it stopped it).
"""

import os
import shutil

from lab.remote import hostdir
from lab.supervise.reaper import Ledger, reap_ledger


def sweep(finished: str | None = None) -> list[str]:
    """Runs on a worker: reap every expired run's groups, and ``finished``'s (the run that is
    ending: its controller has stopped what it knew of); one message per group reaped."""
    messages: list[str] = []
    root = hostdir.root()
    if not root.is_dir():
        return messages
    host = os.uname().nodename
    for path in sorted(p for p in root.iterdir() if p.is_dir()):
        if path.name != finished and not hostdir.expired(path):
            continue  # a live controller holds it
        ledger = Ledger(path)
        messages += [f"{host}: {m}" for m in reap_ledger(ledger, path.name, lambda _: False)]
        if not ledger.open_groups():
            shutil.rmtree(path, ignore_errors=True)
    return messages
