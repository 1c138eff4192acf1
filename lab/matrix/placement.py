"""Placement: which CPUs the servers get and which the load client gets.

A throughput figure is the server's only if the client did not take the server's CPU. On a
machine with ≥ 4 usable cores the default gives the client a quarter of them (at least one)
and the servers the rest; on 2–3 cores both share every core, and the report says so.

The server's CPUs are applied by ``lab.supervise.guard`` before it starts the server, so the whole
process group (workers, granian's runtime threads) inherits them; the client's CPUs are
applied to the lab process itself (in-process engines, client processes it spawns) and, by
the guard, to wrk. Client and servers on different hosts would be another placement with
the same two questions answered: where does each side run, and did they share anything.
"""

import os
import re
from dataclasses import dataclass

from lab.errors import ConfigError

CPUS_ENV = "LAB_CPUS"  # read by lab.supervise.guard: the cpuset its child gets
PARTITION_MIN_CORES = 4


def usable_cpus() -> frozenset[int]:
    return frozenset(os.sched_getaffinity(0))


def parse_cpuset(text: object, path: str, usable: frozenset[int]) -> frozenset[int]:
    """``"1"``, ``"2-7"``, ``"0,2-3"`` → CPU numbers, each of which this lab may use."""
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(path, f"must be a cpuset string like \"1\" or \"2-7\", got {text!r}")
    cpus: set[int] = set()
    for part in text.split(","):
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part.strip())
        if m is None:
            raise ConfigError(path, f"{part.strip()!r} is not a CPU number or range "
                                    "(e.g. \"1\", \"2-7\", \"0,2-3\")")
        a, b = int(m[1]), int(m[2] or m[1])
        if b < a:
            raise ConfigError(path, f"{part.strip()!r} is not a valid range")
        cpus.update(range(a, b + 1))
    missing = cpus - usable
    if missing:
        raise ConfigError(path, f"CPU(s) {format_cpuset(frozenset(missing))} are not usable "
                                f"here (usable: {format_cpuset(usable)})")
    return frozenset(cpus)


def format_cpuset(cpus: frozenset[int]) -> str:
    """CPU numbers → the kernel's list format: ``0-3,6``."""
    runs: list[list[int]] = []
    for cpu in sorted(cpus):
        if runs and cpu == runs[-1][1] + 1:
            runs[-1][1] = cpu
        else:
            runs.append([cpu, cpu])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


@dataclass(frozen=True)
class Placement:
    """CPUs of each side on this host; ``None`` means every usable CPU."""

    server_cpus: frozenset[int] | None
    client_cpus: frozenset[int] | None

    @classmethod
    def default(cls, usable: frozenset[int]) -> "Placement":
        if len(usable) < PARTITION_MIN_CORES:
            return cls(None, None)
        ordered = sorted(usable)
        client = max(1, len(ordered) // 4)
        return cls(frozenset(ordered[:-client]), frozenset(ordered[-client:]))

    def server_set(self) -> frozenset[int]:
        return self.server_cpus if self.server_cpus is not None else usable_cpus()

    def client_set(self) -> frozenset[int]:
        return self.client_cpus if self.client_cpus is not None else usable_cpus()

    @property
    def shared(self) -> bool:
        """Client and servers could run on the same CPU."""
        return bool(self.server_set() & self.client_set())

    def server_env(self) -> dict[str, str]:
        return {CPUS_ENV: format_cpuset(self.server_cpus)} if self.server_cpus else {}

    def client_env(self) -> dict[str, str]:
        return {CPUS_ENV: format_cpuset(self.client_cpus)} if self.client_cpus else {}

    def pin_client(self) -> None:
        """The lab process is the client of in-process engines: give it the client's CPUs."""
        if self.client_cpus:
            os.sched_setaffinity(0, self.client_cpus)

    def as_record(self) -> dict[str, object]:
        return {"server_cpus": format_cpuset(self.server_set()),
                "client_cpus": format_cpuset(self.client_set()),
                "server_cores": len(self.server_set()), "shared": self.shared}


def apply_from_env() -> None:
    """In ``lab.supervise.guard``: restrict this process (and so its children) to ``LAB_CPUS``."""
    text = os.environ.pop(CPUS_ENV, "")
    if text:  # checked by the lab against its CPUs; this process may be pinned elsewhere
        os.sched_setaffinity(0, parse_cpuset(text, CPUS_ENV, frozenset(range(os.cpu_count()
                                                                            or 1))))
