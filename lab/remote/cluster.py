"""The controller's link to the remote hosts: a Dask client of the configured scheduler,
and what each worker (one per host) is: its roles, cores, CPU and versions.

Roles are worker resources: ``dask worker … --resources "server=1"`` (or ``loadgen=1``)."""

import logging
import os
import platform
import re
import shutil
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from typing import TYPE_CHECKING, Any

from lab.errors import LabError
from lab.matrix.remote import Remote
from lab.servers import ADAPTERS
from lab.store.environment import collect_cpu, collect_git
from lab.supervise.process import PROJECT_ROOT

if TYPE_CHECKING:
    import distributed

ROLES = ("server", "loadgen")
LAB = "asgi-lab"  # the lab's own entry in Host.versions
TOOLS = ("wrk", "h2load")


class SchedulerUnreachable(LabError):
    """No scheduler answered at the configured address (exit code 2)."""

    def __init__(self, address: str, timeout_s: float, why: str = "") -> None:
        reason = why or f"no answer within {timeout_s:g} s"
        super().__init__(f"scheduler {address} is unreachable: {reason} (is `dask scheduler` "
                         "running there?)")
        self.address = address


@contextmanager
def _quiet_distributed() -> Iterator[None]:
    """While connecting, Dask logs each retry and the final failure as warnings on the
    terminal; the one line of SchedulerUnreachable says it all."""
    loggers = [logging.getLogger(name) for name in
               ("distributed", "distributed.comm", "distributed.client", "distributed.core")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def connect(remote: Remote, timeout_s: float = 5.0) -> "distributed.Client":
    """A client of ``remote.scheduler`` (not the process's default client); raises
    ``SchedulerUnreachable`` when none answers within ``timeout_s``."""
    import distributed

    with _quiet_distributed():
        try:
            return distributed.Client(remote.scheduler, security=remote.security(),
                                      timeout=timeout_s, set_as_default=False)
        except TimeoutError:
            raise SchedulerUnreachable(remote.scheduler, timeout_s) from None
        except OSError as e:  # refused, reset (tcp:// to a TLS scheduler), an unknown name
            why = "" if "Timed out" in str(e) else re.sub(r"^in <[^>]*>: ", "", str(e))
            raise SchedulerUnreachable(remote.scheduler, timeout_s, why) from None


def live_workers(client: "distributed.Client") -> dict[str, Any]:
    """The scheduler's workers now (address → its info), asked for each call:
    ``Client.scheduler_info()`` returns a cache that the client's own periodic refresh
    overwrites with an empty worker list."""
    return dict(client.sync(client.scheduler.identity, n_workers=-1)["workers"])


@dataclass(frozen=True)
class Host:
    """One worker of the scheduler, as the results and ``python -m lab hosts`` show it."""

    worker: str  # the worker's address, e.g. "tcp://127.0.0.1:40123"
    address: str  # its host part as the scheduler reports it: where load may go
    name: str  # socket.gethostname() on that worker
    roles: tuple[str, ...]  # from its resources: ("server",), ("loadgen",), both or none
    cores: int  # usable cores there
    cpu_model: str
    python: str
    versions: dict[str, str]  # LAB and each server adapter's name → its version there
    tools: tuple[str, ...] = ()  # the native load generators installed there (wrk, h2load)

    def record(self) -> dict[str, object]:
        """What a results line keeps of the host a role ran on."""
        return {"name": self.name, "address": self.address, "cores": self.cores,
                "cpu_model": self.cpu_model}


def facts() -> dict[str, Any]:
    """Runs on a worker (``Client.run``): what that host is."""
    cpu = collect_cpu()
    return {"name": socket.gethostname(), "cores": len(os.sched_getaffinity(0)),
            "cpu_model": cpu["model"], "python": platform.python_version(),
            "versions": versions(), "tools": [t for t in TOOLS if shutil.which(t)]}


def versions() -> dict[str, str]:
    """The lab's version and commit, and each server's version, on this host."""
    try:
        lab = metadata.version(LAB)
    except metadata.PackageNotFoundError:
        lab = "not installed"
    commit = collect_git(PROJECT_ROOT)["commit"]
    out = {LAB: f"{lab} ({commit[:12]})" if commit else lab}
    for name, adapter in ADAPTERS.items():
        out[name] = adapter.version() or "not installed"
    return out


def hosts(client: "distributed.Client") -> list[Host]:
    """Every worker the scheduler sees, in its address order."""
    workers = live_workers(client)
    found = client.run(facts)
    out = []
    for worker, info in sorted(workers.items()):
        if worker not in found:  # left between the two calls
            continue
        f = found[worker]
        resources = info.get("resources", {})
        out.append(Host(worker=worker, address=str(info.get("host", "")), name=f["name"],
                        roles=tuple(r for r in ROLES if resources.get(r, 0) > 0),
                        cores=int(f["cores"]), cpu_model=f["cpu_model"], python=f["python"],
                        versions=dict(f["versions"]), tools=tuple(f["tools"])))
    return out
