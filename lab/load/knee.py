"""rates = "auto": the highest arrival rate a server holds within a latency objective.

A rate *holds* when its p99 (from the scheduled send times) stays within ``slo_p99_ms``
with fewer than 0.1 % errors, and the client kept its own schedule. The search probes
short windows (``knee_window_s``): it doubles the rate from ``KNEE_START_RPS`` while it
holds, bisects (geometrically) between the last rate that held and the first that failed
until they are within ``KNEE_PRECISION``, then confirms the rate that held with a window of
the configured ``duration_s``, stepping down by the precision while that fails. Every
probe is recorded; a failing probe is repeated once and believed only if it fails again.
A probe the client could not hold (its send lag p99 over 10 ms or its CPU at its limit)
ends the search — unless the p99 overshot the SLO by more than the client's lag, which is
the server failing — and the knee is then a lower bound, and says so.
"""

import math
from collections.abc import Callable

from lab.load.histogram import latency_figures
from lab.load.samples import Measurement
from lab.store.schema import KneeFigures, KneeProbe

KNEE_START_RPS = 250.0
KNEE_MIN_RPS = 5.0
KNEE_PRECISION = 1.10  # stop when the failing rate is within 10 % of the holding one
MAX_ERROR_RATE = 0.001
MAX_PROBES = 30  # a bound on the search, whatever the rates do

# (rate, window seconds) → the measurement of one open-model window at that rate
RunAt = Callable[[float, float], Measurement]
ClientLimited = Callable[[Measurement], bool]


def probe(m: Measurement, rate: float, window_s: float, slo_p99_ms: float,
          client_limited: bool, confirming: bool = False) -> KneeProbe:
    t = m.tally()
    total = t.ok + sum(t.errors.values())
    p99 = latency_figures(t.histogram).get("p99") if t.ok else None
    error_rate = (total - t.ok) / total if total else 1.0
    span = m.span_s or float("nan")
    lag = m.parts.open.send_lag_p99_ms or 0.0 if m.parts.open else 0.0
    # A client that fell behind cannot vouch for a rate that held; but a p99 beyond the
    # SLO by more than the client's own lateness is the server's failure all the same.
    server_failed = error_rate >= MAX_ERROR_RATE or p99 is None or p99 > slo_p99_ms + lag
    limited = client_limited and not server_failed
    holds = not client_limited and p99 is not None and p99 <= slo_p99_ms \
        and error_rate < MAX_ERROR_RATE
    return KneeProbe(rate, window_s, p99, error_rate, t.ok / span, lag, limited, holds,
                     confirming)


def search(run_at: RunAt, limited: ClientLimited, slo_p99_ms: float, window_s: float,
           duration_s: float, max_rps: float) -> tuple[Measurement, KneeFigures]:
    """The confirming window's measurement (else the last probe's), and the search's record
    for its cell."""
    probes: list[tuple[Measurement, KneeProbe]] = []

    def once(rate: float, seconds: float, confirming: bool) -> KneeProbe:
        m = run_at(rate, seconds)
        p = probe(m, rate, seconds, slo_p99_ms, limited(m), confirming)
        probes.append((m, p))
        return p

    def attempt(rate: float, seconds: float, confirming: bool = False) -> KneeProbe:
        """A probe whose failure (or client limit) is believed only when a second window
        at the same rate shows it too: a short window's p99 is its few slowest requests,
        and one pause of the shared machine would otherwise end the search far below the
        server's knee."""
        p = once(rate, seconds, confirming)
        if p.holds or not budget():
            return p
        return once(rate, seconds, confirming)

    def budget() -> bool:
        return len(probes) < MAX_PROBES

    held: float | None = None  # the highest rate that held
    failed: float | None = None  # the lowest rate above it that failed
    stop = ""  # why the search could not bracket the knee: client, max, below
    rate = min(KNEE_START_RPS, max_rps)
    while budget():  # bracket: double while it holds, halve while it fails
        p = attempt(rate, window_s)
        if p.client_limited:
            stop = "client"
            break
        if p.holds:
            held = rate
            if failed is not None:
                break
            if rate >= max_rps:
                stop = "max"
                break
            rate = min(2 * rate, max_rps)
        else:
            failed = rate
            if held is not None:
                break
            rate /= 2
            if rate < KNEE_MIN_RPS:
                stop = "below"
                break
    while not stop and held and failed and failed / held > KNEE_PRECISION and budget():
        rate = math.sqrt(held * failed)
        p = attempt(rate, window_s)
        if p.client_limited:
            stop = "client"
            break
        held, failed = (rate, failed) if p.holds else (held, rate)
    confirmed: tuple[Measurement, KneeProbe] | None = None
    rate = held or 0.0
    while rate >= KNEE_MIN_RPS and budget():  # the configured window; step down on failure
        p = attempt(rate, duration_s, confirming=True)
        if p.holds:
            confirmed = probes[-1]
            break
        failed, rate = rate, rate / KNEE_PRECISION
    m = confirmed[0] if confirmed else probes[-1][0]
    return m, KneeFigures(knee_rps=confirmed[1].rate if confirmed else None,
                          knee_bound=stop or ("found" if confirmed else "unconfirmed"),
                          knee_failed_rps=failed, knee_probes=tuple(p for _, p in probes))
