"""Where each side of a cell ran, in words, and whether two runs ran in the same places.

A results line's ``placement`` holds the CPUs of each side (`lab.matrix.placement`) and, for
a run on remote hosts (a Dask scheduler), the server host and the load hosts by name,
address, cores and CPU model. Two runs ran in the same place when their hosts are the same
by those four facts; the scheduler's address is how the lab reached them, not where the
figures came from, so a scheduler moved to another port is the same place.
"""

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lab.report.fmt import fmt
from lab.store.schema import Result

ONE_HOST = "servers and load on one host"  # a local run: the lab's own machine


@dataclass(frozen=True, order=True)
class Host:
    """A host a side ran on, as the results line recorded it."""

    name: str
    address: str
    cores: int | None
    cpu_model: str | None

    @classmethod
    def of(cls, entry: object) -> "Host | None":
        """A recorded host; None for an entry that is not one (a hand-edited line)."""
        if not isinstance(entry, Mapping):
            return None
        name, address = entry.get("name"), entry.get("address")
        cores, model = entry.get("cores"), entry.get("cpu_model")
        return cls(str(name or "?"), str(address or "?"),
                   cores if isinstance(cores, int) and not isinstance(cores, bool) else None,
                   model if isinstance(model, str) and model else None)

    def words(self) -> str:
        """``srv-a (10.231.0.1, 16 cores, AMD EPYC 7R13)``."""
        facts = [self.address, *([f"{self.cores} cores"] if self.cores else []),
                 *([self.cpu_model] if self.cpu_model else [])]
        return f"{self.name} ({', '.join(facts)})"

    def is_host(self, other: "Host") -> bool:
        """The same machine: a load host that is the server host shares it."""
        return (self.name, self.address) == (other.name, other.address)


@dataclass(frozen=True)
class Where:
    """The hosts of a cell's two sides; no server host: both on the lab's own machine."""

    server: Host | None
    load: tuple[Host, ...]  # sorted: the same hosts in another order are the same place

    @classmethod
    def of(cls, placement: Mapping[str, Any]) -> "Where":
        server = Host.of(placement.get("server_host"))
        if server is None:
            return cls(None, ())
        entries = placement.get("load_hosts")
        hosts = (Host.of(e) for e in entries) if isinstance(entries, list) else iter(())
        return cls(server, tuple(sorted(h for h in hosts if h is not None)))

    @property
    def remote(self) -> bool:
        return self.server is not None

    def _load_names(self) -> str:
        assert self.server is not None
        return _and([h.name + (" (shared)" if h.is_host(self.server) else "")
                     for h in self.load]) or "no load host recorded"

    def brief(self) -> str:
        """A few words for a warning: ``servers on srv-a, load from load-b``."""
        if self.server is None:
            return ONE_HOST
        if len(self.load) == 1 and self.load[0].is_host(self.server):
            return f"servers and load on {self.server.name}"
        return f"servers on {self.server.name}, load from {self._load_names()}"


def _and(words: Sequence[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    if len(words) < 2:
        return "".join(words)
    return ", ".join(words[:-1]) + " and " + words[-1]


def places(records: Iterable[Result]) -> frozenset[Where]:
    """Where a run's cells ran (lines without a placement, of older runs, say nothing)."""
    return frozenset(Where.of(r.placement) for r in records if r.placement)


def brief(where: frozenset[Where]) -> str:
    """A run's places in a few words (`Where.brief`; several: joined by "or")."""
    if not where:
        return "not recorded"
    return " or ".join(sorted(w.brief() for w in where))


def differ(runs: Sequence[tuple[str, frozenset[Where]]]) -> str | None:
    """Where each run ran, ``A: servers and load on one host; B: servers on srv-a, load
    from load-b``, when they did not all run in one place (runs that recorded no placement
    left out); else None."""
    known = [(name, p) for name, p in runs if p]
    if len({p for _, p in known}) < 2:
        return None
    return "; ".join(f"{name}: {brief(p)}" for name, p in known)


NOT_EQUALS = "their figures are not comparable as equals"


def warning(runs: Sequence[tuple[str, frozenset[Where]]]) -> str | None:
    """The line ``compare`` and ``merge`` warn with when the runs ran in different places."""
    where = differ(runs)
    return None if where is None else f"the runs ran in different places ({where}): {NOT_EQUALS}"


def _shared(placement: Mapping[str, Any]) -> str:
    """How the servers and the load shared the server host's CPUs."""
    server, client = placement.get("server_cpus"), placement.get("client_cpus")
    if server == client:
        cpus = "all of them" if server == "all" else f"CPUs {server}"
        return (f"**servers and load shared that host and its cores** ({cpus}): a "
                "figure where together they used nearly all of them (⚠ machine saturated) "
                "gets no verdict")
    return f"servers and load shared that host: servers on CPUs {server}, load on {client}"


def remote_line(records: Sequence[Result]) -> str:
    """"This run"'s placement when the servers ran on a remote host (one place, checked by
    the caller): each side's host, how load reached the servers, the worker daemon's cost."""
    first = records[0].placement
    server, load = (where := Where.of(first)).server, where.load
    assert server is not None
    others = [h for h in load if not h.is_host(server)]
    via = f" via the scheduler {at}" if (at := first.get("scheduler")) else ""
    net = f"{_and([h.words() for h in others])} over the network{via}"
    if not load:
        text = f"servers on {server.words()}{via}, load hosts not recorded"
    elif len(others) == len(load):
        text = f"servers on {server.words()}, load from {net}"
    elif not others:
        text = f"servers and load on {server.words()}{via}: {_shared(first)}"
    else:
        text = f"servers on {server.words()}, load from it ({_shared(first)}) and from {net}"
    spreads = [spread for r in records if r.figures and (hosts := r.figures.load_hosts)
               and (spread := hosts.start_spread_s) is not None]
    if len(load) > 1 and spreads:
        text += (f"; the load hosts started at most {fmt(1000 * max(spreads))} ms apart "
                 "(the widest of the cells)")
    if idle := [v for r in records
                if (v := _number(r.placement.get("daemon_cpu_pct"))) is not None]:
        low, high = min(idle), max(idle)
        pct = fmt(low) if low == high else f"{fmt(low)}–{fmt(high)}"
        text += f"; the Dask worker daemon on the server host idled at {pct} % of a core"
    return f"- placement: {text}"


def _number(value: object) -> float | None:
    """A recorded figure, or None for one absent or of another type (a hand-edited line)."""
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) \
        else None


__all__ = ["NOT_EQUALS", "ONE_HOST", "Host", "Where", "brief", "differ", "places", "remote_line",
           "warning"]
