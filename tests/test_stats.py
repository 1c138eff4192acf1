"""Histogram, per-cell figures and the spread over repeats: pure, known data."""

import json
import math
import random

import pytest

from lab.load.histogram import Histogram, latency_figures
from lab.load.samples import Sample
from lab.load.stats import Spread, median, summarize
from tests.conftest import measurement

ONE_TO_THOUSAND_MS = [i / 1000 for i in range(1, 1001)]  # seconds


def filled(values_s: list[float]) -> Histogram:
    h = Histogram()
    for v in values_s:
        h.record(v)
    return h


def nearest_rank(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q / 100 * len(ordered))) - 1]


# ---- Histogram -------------------------------------------------------------------------

@pytest.mark.parametrize("q", [1, 10, 25, 50, 75, 90, 95, 99, 99.9])
def test_percentile_within_one_percent_on_known_data(q: float) -> None:
    h = filled(ONE_TO_THOUSAND_MS)
    expected_ms = nearest_rank(ONE_TO_THOUSAND_MS, q) * 1e3
    got = h.percentile_ms(q)
    assert got is not None
    assert got == pytest.approx(expected_ms, rel=0.01)


def test_known_percentiles_named() -> None:
    h = filled(ONE_TO_THOUSAND_MS)
    assert h.total == 1000
    assert h.percentile_ms(50) == pytest.approx(500, rel=0.01)
    assert h.percentile_ms(99) == pytest.approx(990, rel=0.01)
    figures = latency_figures(h)
    assert set(figures) >= {"p50", "p90", "p99", "p99.9", "max", "mean"}
    assert figures["mean"] == pytest.approx(500.5, rel=1e-9)  # the sum is exact
    assert figures["max"] == pytest.approx(1000.0)


def test_percentile_is_exact_at_100_and_0() -> None:
    h = filled(ONE_TO_THOUSAND_MS)
    assert h.percentile_ms(100) == pytest.approx(1000.0, rel=1e-12)
    # the docstring promises "exact at 0 and 100": p0 is the smallest value recorded
    assert h.percentile_ms(0) == pytest.approx(1.0, rel=1e-12)


def test_percentile_within_one_percent_on_random_data() -> None:
    rng = random.Random(20251126)
    values = [rng.lognormvariate(-4, 1.5) for _ in range(5000)]  # ~0.1 ms .. seconds
    h = filled(values)
    for q in (5, 50, 90, 99, 99.9):
        assert h.percentile_ms(q) == pytest.approx(nearest_rank(values, q) * 1e3, rel=0.01)


def test_percentiles_are_monotonic() -> None:
    h = filled(ONE_TO_THOUSAND_MS)
    qs = [0, 1, 10, 50, 90, 99, 99.9, 100]
    ps = [h.percentile_ms(q) for q in qs]
    assert ps == sorted(ps)


def test_single_value() -> None:
    h = filled([0.0123])
    for q in (0, 50, 99.9, 100):
        assert h.percentile_ms(q) == pytest.approx(12.3, rel=1e-9)  # clamped to min = max


def test_empty_histogram_gives_none() -> None:
    h = Histogram()
    assert h.total == 0
    for q in (0, 50, 99, 100):
        assert h.percentile_ms(q) is None
    assert all(v is None for v in latency_figures(h).values())


def test_merge_equals_recording_everything_into_one() -> None:
    rng = random.Random(7)
    a_values = [rng.uniform(0.001, 0.2) for _ in range(700)]
    b_values = [rng.uniform(0.05, 2.0) for _ in range(300)]
    a, b = filled(a_values), filled(b_values)
    a_counts = a.counts.copy()
    merged = a.merge(b)
    whole = filled(a_values + b_values)
    assert merged.counts == whole.counts
    assert (merged.min_us, merged.max_us) == (whole.min_us, whole.max_us)
    assert merged.sum_us == pytest.approx(whole.sum_us, rel=1e-12)
    assert merged.total == 1000
    for q in (0, 50, 90, 99, 99.9, 100):
        assert merged.percentile_ms(q) == whole.percentile_ms(q)
    assert a.counts == a_counts  # merging does not change its inputs


def test_merge_with_empty_is_identity() -> None:
    h = filled(ONE_TO_THOUSAND_MS)
    for merged in (h.merge(Histogram()), Histogram().merge(h)):
        assert merged.counts == h.counts
        assert (merged.min_us, merged.max_us, merged.sum_us) == (h.min_us, h.max_us, h.sum_us)


@pytest.mark.parametrize("values", [ONE_TO_THOUSAND_MS, [0.5], []], ids=["1..1000", "one",
                                                                          "empty"])
def test_json_roundtrip(values: list[float]) -> None:
    h = filled(values)
    back = Histogram.from_json(json.loads(json.dumps(h.to_json())))
    assert back == h
    assert back.total == len(values)
    for q in (0, 50, 99.9, 100):
        assert back.percentile_ms(q) == h.percentile_ms(q)


# ---- summarize -------------------------------------------------------------------------

def samples(n: int, latency_s: float = 0.01, error: str | None = None,
            pid: int | None = 100) -> list[Sample]:
    return [Sample(float(i), latency_s, error, None if error else pid) for i in range(n)]


def test_summarize_counts_errors_by_kind_and_never_drops_them() -> None:
    ss = (samples(7, 0.01, pid=100) + samples(3, 0.02, pid=200) + samples(2, 5.0, "timeout")
          + samples(1, 0.001, "http_500") + samples(4, 0.001, "connect"))
    f = summarize(measurement(ss, wall_s=2.0, client_cpu_s=0.2)).to_json()
    assert f["requests"] == 17
    assert f["ok"] == 10
    assert f["errors"] == {"timeout": 2, "http_500": 1, "connect": 4}
    assert f["ok"] + sum(f["errors"].values()) == f["requests"]
    assert f["pids"] == {"100": 7, "200": 3}
    assert f["rps"] == pytest.approx(10 / 2.0)
    assert f["wall_s"] == 2.0
    # latencies are over successful requests: the 5 s timeouts do not count
    assert f["latency_ms"]["max"] == pytest.approx(20.0)
    assert f["histogram"]["counts"] and sum(f["histogram"]["counts"].values()) == 10


def test_summarize_all_failed() -> None:
    m = measurement(samples(5, 1.0, "disconnected"), wall_s=1.0, client_cpu_s=0.1)
    f = summarize(m).to_json()
    assert (f["requests"], f["ok"], f["errors"]) == (5, 0, {"disconnected": 5})
    assert f["pids"] == {}
    assert f["latency_ms"]["p50"] is None
    assert f["rps"] == 0


@pytest.mark.parametrize(("cpu_s", "limited"), [
    (0.5, False), (0.89, False), (0.9, True), (0.95, True), (1.0, True),
])
def test_client_limited_at_90_percent_cpu(cpu_s: float, limited: bool) -> None:
    f = summarize(measurement(samples(10), wall_s=1.0, client_cpu_s=cpu_s)).to_json()
    assert f["client_cpu_pct"] == pytest.approx(100 * cpu_s)
    assert f["client_limited"] is limited


def test_summarize_keeps_kind_specific_info() -> None:
    f = summarize(measurement(samples(3), wall_s=1.0, client_cpu_s=0.1, clients=4)).to_json()
    assert f["clients"] == 4


# ---- Spread --------------------------------------------------------------------------

def test_spread_of_odd_count() -> None:
    s = Spread.of([3.0, 1.0, 2.0])
    assert (s.median, s.low, s.high, s.n) == (2.0, 1.0, 3.0, 3)
    assert s.spread_pct == pytest.approx(100.0)


def test_spread_of_even_count() -> None:
    s = Spread.of([10.0, 12.0, 11.0, 13.0])
    assert s.median == 11.5
    assert (s.low, s.high, s.n) == (10.0, 13.0, 4)
    assert s.spread_pct == pytest.approx(100 * 3 / 11.5)


def test_spread_of_one_value() -> None:
    s = Spread.of([0.25])
    assert (s.median, s.low, s.high, s.n, s.spread_pct) == (0.25, 0.25, 0.25, 1, 0.0)


def test_spread_of_zero_median_does_not_divide_by_zero() -> None:
    assert Spread.of([0.0, 0.0, 0.0]).spread_pct == 0.0


def test_spread_of_nothing_is_an_error() -> None:
    with pytest.raises(ValueError):
        Spread.of([])
    with pytest.raises(ValueError):
        median([])
