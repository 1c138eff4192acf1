"""lab.report.verdict: when is a difference between two rows real? Pure, synthetic repeats.

A verdict needs both non-overlapping ranges over repeats and a difference beyond the noise
floor (the median spread of repeated cells); otherwise "no clear difference". The ratio is
always "how many times worse than the baseline": ≥ 1 is worse, < 1 is better.
"""

import math
from collections.abc import Callable
from pathlib import Path

import pytest

from lab.kinds import get
from lab.load.stats import Spread
from lab.report.groups import Comparison, Row
from lab.report.model import Report, judged
from lab.report.verdict import Verdict, compare, noise_floor_pct
from lab.store.results import RunDir
from tests.conftest import json_lines, result, run_lab

# Higher is better (req/s) and lower is better (seconds), each with a row that is clearly
# worse than its baseline by a factor of 2.
RPS_BASE = [1000.0, 1010.0, 1020.0]
RPS_HALF = [500.0, 505.0, 510.0]
SECONDS_BASE = [0.50, 0.51, 0.52]
SECONDS_DOUBLE = [1.00, 1.02, 1.04]


# ---- overlap: never a winner ------------------------------------------------------------

@pytest.mark.parametrize("higher_is_better", [True, False])
def test_overlapping_ranges_are_no_clear_difference(higher_is_better: bool) -> None:
    # medians 20 % apart, far beyond a 1 % noise floor, but the ranges overlap (110 in both)
    row, base = [100.0, 110.0, 125.0], [90.0, 100.0, 110.0]
    v = compare(row, base, higher_is_better, noise_pct=1.0)
    assert v.significant is False
    assert v.text == "no clear difference"
    assert "faster" not in v.text and "slower" not in v.text


def test_touching_ranges_overlap() -> None:
    """Ranges that share an end point are not apart: U > 0 in the Mann–Whitney sense."""
    v = compare([10.0, 11.0, 12.0], [12.0, 13.0, 14.0], higher_is_better=False, noise_pct=0.0)
    assert v.significant is False
    assert v.text == "no clear difference"


def test_identical_rows_are_no_clear_difference() -> None:
    v = compare(SECONDS_BASE, SECONDS_BASE, higher_is_better=False, noise_pct=0.0)
    assert v.significant is False
    assert v.ratio == pytest.approx(1.0)


# ---- apart but inside the noise floor ----------------------------------------------------

@pytest.mark.parametrize("higher_is_better", [True, False])
def test_apart_but_within_the_noise_floor_is_not_significant(higher_is_better: bool) -> None:
    # ranges apart, medians 5 % apart; repeats of one cell typically spread 8 % here
    row, base = [105.0, 105.5, 106.0], [99.5, 100.0, 100.5]
    v = compare(row, base, higher_is_better, noise_pct=8.0)
    assert v.significant is False
    assert v.text == "no clear difference"
    # the same data with a quiet machine is a verdict: only the noise floor held it back
    quiet = compare(row, base, higher_is_better, noise_pct=1.0)
    assert quiet.significant is True


# ---- apart and beyond the noise floor: a verdict, with its direction ---------------------

def test_fewer_requests_per_second_is_slower() -> None:
    v = compare(RPS_HALF, RPS_BASE, higher_is_better=True, noise_pct=5.0)
    assert v.significant is True
    assert v.ratio == pytest.approx(1010.0 / 505.0)
    assert v.ratio >= 1  # worse than the baseline
    assert v.text == f"{1010.0 / 505.0:.2f}× slower (significant)"


def test_more_requests_per_second_is_faster() -> None:
    v = compare(RPS_BASE, RPS_HALF, higher_is_better=True, noise_pct=5.0)
    assert v.significant is True
    assert v.ratio == pytest.approx(505.0 / 1010.0)
    assert v.ratio < 1  # better than the baseline
    assert v.text == f"{1010.0 / 505.0:.2f}× faster (significant)"


def test_more_seconds_is_slower() -> None:
    v = compare(SECONDS_DOUBLE, SECONDS_BASE, higher_is_better=False, noise_pct=5.0)
    assert v.significant is True
    assert v.ratio == pytest.approx(1.02 / 0.51)
    assert v.ratio >= 1
    assert v.text == "2.00× slower (significant)"


def test_fewer_seconds_is_faster() -> None:
    v = compare(SECONDS_BASE, SECONDS_DOUBLE, higher_is_better=False, noise_pct=5.0)
    assert v.significant is True
    assert v.ratio == pytest.approx(0.51 / 1.02)
    assert v.ratio < 1
    assert v.text == "2.00× faster (significant)"


@pytest.mark.parametrize(("row", "base", "higher_is_better"), [
    (RPS_HALF, RPS_BASE, True),
    (SECONDS_DOUBLE, SECONDS_BASE, False),
])
def test_ratio_of_at_least_one_means_worse_whatever_the_direction(
        row: list[float], base: list[float], higher_is_better: bool) -> None:
    worse = compare(row, base, higher_is_better, noise_pct=0.0)
    better = compare(base, row, higher_is_better, noise_pct=0.0)
    assert worse.ratio > 1 > better.ratio
    assert worse.ratio * better.ratio == pytest.approx(1.0)
    assert "slower" in worse.text and "faster" in better.text


def test_the_noise_floor_is_a_strict_bar() -> None:
    # medians 1.00 and 1.10 s: a 10 % difference
    row, base = [1.09, 1.10, 1.11], [0.99, 1.00, 1.01]
    assert compare(row, base, False, noise_pct=9.9).significant is True
    assert compare(row, base, False, noise_pct=10.1).significant is False


@pytest.mark.parametrize("higher_is_better", [True, False])
@pytest.mark.parametrize("noise_pct", [5.0, 12.0, 20.0])
def test_the_verdict_does_not_depend_on_which_row_is_the_baseline(
        higher_is_better: bool, noise_pct: float) -> None:
    """Whether two rows differ is a property of the pair: swapping row and baseline must
    give the same answer and the same factor, only the direction word changes. (With
    ``lab.baseline`` set, rows faster than the baseline are compared the other way round.)

    Here the medians are 100 and 113: a factor 1.13, i.e. 13 % one way and 11.5 % the
    other, straddling a 12 % noise floor."""
    a, b = [99.0, 100.0, 101.0], [112.0, 113.0, 114.0]
    ab = compare(a, b, higher_is_better, noise_pct)
    ba = compare(b, a, higher_is_better, noise_pct)
    assert ab.ratio * ba.ratio == pytest.approx(1.0)
    assert ab.significant == ba.significant, (ab, ba)
    if ab.significant:
        assert ab.text.split("×")[0] == ba.text.split("×")[0]  # the same factor shown
        assert {ab.text.split()[1], ba.text.split()[1]} == {"faster", "slower"}


# ---- too few repeats, zero figures -------------------------------------------------------

@pytest.mark.parametrize(("row", "base"), [
    ([0.5], [1.0]),
    ([0.5], [1.0, 1.01, 1.02]),
    ([0.5, 0.51, 0.52], [1.0]),
])
def test_a_single_repeat_gives_no_verdict(row: list[float], base: list[float]) -> None:
    v = compare(row, base, higher_is_better=False, noise_pct=0.0)
    assert v.significant is None
    assert v.text == "single run: no verdict"
    # the ratio is still given, for the relative column
    assert v.ratio == pytest.approx(Spread.of(row).median / Spread.of(base).median)


def test_two_repeats_give_no_verdict_three_do() -> None:
    v = compare([2.0, 2.02], [1.0, 1.01], higher_is_better=False, noise_pct=1.0)
    assert v.significant is None and v.text == "2 vs 2 repeats: no verdict (needs 3 each)"
    v = compare([2.0, 2.02, 2.01], [1.0, 1.01, 1.02], higher_is_better=False, noise_pct=1.0)
    assert v.significant is True


@pytest.mark.parametrize("higher_is_better", [True, False])
def test_a_zero_median_gives_no_verdict_not_a_division_error(higher_is_better: bool) -> None:
    v = compare([0.0, 0.0, 0.0], [10.0, 11.0, 12.0], higher_is_better, noise_pct=0.0)
    assert v.significant is None
    assert math.isinf(v.ratio)
    assert "no verdict" in v.text


def test_verdict_is_a_frozen_value() -> None:
    v = Verdict(1.5, True, "1.50× slower (significant)")
    with pytest.raises(AttributeError):
        v.ratio = 2.0  # type: ignore[misc]


# ---- the noise floor ---------------------------------------------------------------------

def test_noise_floor_is_the_median_spread_of_repeated_cells() -> None:
    spreads = [Spread.of(v) for v in ([95.0, 100.0, 105.0],    # 10 %
                                      [90.0, 100.0, 110.0],    # 20 %
                                      [99.0, 100.0, 101.0],    # 2 %
                                      [50.0, 100.0, 150.0])]   # 100 %
    assert [round(s.spread_pct) for s in spreads] == [10, 20, 2, 100]
    assert noise_floor_pct(spreads) == pytest.approx(15.0)  # median of 2, 10, 20, 100


def test_noise_floor_ignores_single_runs() -> None:
    # a single run has no spread (0 %); counting it would drag the floor down to nothing
    singles = [Spread.of([v]) for v in (1.0, 2.0, 3.0, 4.0, 5.0)]
    repeated = [Spread.of([95.0, 100.0, 105.0])]
    assert noise_floor_pct(singles + repeated) == pytest.approx(10.0)
    assert noise_floor_pct(singles) == 0.0


def test_noise_floor_of_nothing_is_zero() -> None:
    assert noise_floor_pct([]) == 0.0
    assert noise_floor_pct(iter([])) == 0.0


def test_noise_floor_feeds_the_verdict() -> None:
    """The floor measured on the same run decides: a 5 % difference is real on a quiet
    machine (1 % spreads) and not on a noisy one (8 % spreads)."""
    row, base = [104.5, 105.0, 105.5], [99.5, 100.0, 100.5]
    quiet = noise_floor_pct([Spread.of([99.5, 100.0, 100.5])] * 3)
    noisy = noise_floor_pct([Spread.of([96.0, 100.0, 104.0])] * 3)
    assert quiet == pytest.approx(1.0) and noisy == pytest.approx(8.0)
    assert compare(row, base, False, quiet).significant is True
    assert compare(row, base, False, noisy).significant is False


# ---- verdicts in a table: limited rows and failed requests -----------------------------

def _rows(kind: str, values: dict[str, list[float]], limited: set[str] = frozenset(),
          errors: dict[str, int] | None = None, failed_repeats: dict[str, int] | None = None,
          usage: dict[str, dict[str, float | bool]] | None = None) -> Comparison:
    """A comparison whose rows have the given headline per repeat; ``limited`` rows had
    their client at its limit, ``errors`` rows failed that many requests per repeat,
    ``failed_repeats`` rows also had that many repeats fail, ``usage`` rows these CPU
    figures (client_cpu_pct, server_cores_used, machine_saturated) in every repeat."""
    key = "rps" if kind == "closed" else "wall_s"
    rows = []
    for sid, vals in values.items():
        failed = (errors or {}).get(sid, 0)
        results = [result({key: v, "client_limited": sid in limited, "machine_saturated": False,
                           "requests": 1000, "errors": {"http_500": failed} if failed else {},
                           **(usage or {}).get(sid, {})}, server_id=sid) for v in vals]
        results += [result(None, "failed", sid, {"kind": "cell_timeout",
                                                 "reason": "took too long"})
                    for _ in range((failed_repeats or {}).get(sid, 0))]
        rows.append(Row(sid, sid.split("-")[0], 1, {}, get(kind).headline, tuple(results)))
    return Comparison("x", kind, "/e", {"requests": 10}, {}, "wrk", tuple(rows))


def _judged(comp: Comparison, preferred: str | None = None
            ) -> tuple[str | None, dict[str, Verdict]]:
    """The baseline the report takes, and the verdict of every measured row."""
    facts = judged(comp, noise_pct=2.0, preferred=preferred)
    v = {row.server_id: row.verdict for row in facts.measured if row.verdict}
    assert set(v) == {row.server_id for row in comp.measured}
    return (facts.baseline.server_id if facts.baseline else None), v


def test_a_client_limited_row_is_never_significant_nor_the_winner() -> None:
    # granian "wins" by far, but its client was at its limit: the figure may be the client's
    comp = _rows("closed", {"uvicorn-w1": [10_000, 10_100, 10_050],
                            "granian-w1": [5_000, 5_050, 5_100],
                            "hypercorn-w1": [3_000, 3_050, 3_020]}, limited={"granian-w1"})
    v = _judged(comp)[1]
    assert v["uvicorn-w1"].text == "baseline"
    assert v["granian-w1"].significant is None
    assert v["granian-w1"].text == "not comparable: client at its limit (CPU at its limit)"
    assert v["hypercorn-w1"].significant is True  # two unlimited rows still compare


def test_a_limited_baseline_makes_every_comparison_not_comparable() -> None:
    comp = _rows("closed", {"uvicorn-w1": [10_000, 10_100, 10_050],
                            "granian-w1": [5_000, 5_050, 5_100]},
                 limited={"uvicorn-w1", "granian-w1"})
    v = _judged(comp)[1]
    assert not any(x.significant for x in v.values())
    assert v["granian-w1"].text == "not comparable: client at its limit (CPU at its limit)"


def test_a_row_without_all_its_repeats_is_never_the_baseline() -> None:
    """uvicorn's one surviving repeat is the fastest figure, but two of its three repeats
    failed: granian, with all three, is the baseline; uvicorn gets no verdict."""
    comp = _rows("closed", {"uvicorn-w1": [20_000], "granian-w1": [10_000, 10_100, 10_050],
                            "hypercorn-w1": [5_000, 5_050, 5_100]},
                 failed_repeats={"uvicorn-w1": 2})
    base, v = _judged(comp)
    assert base == "granian-w1"
    assert v["uvicorn-w1"].significant is None
    assert v["hypercorn-w1"].significant is True


def test_a_limited_row_is_not_the_baseline_even_when_named_or_when_every_row_is() -> None:
    named = _rows("closed", {"uvicorn-w1": [10_000, 10_100, 10_050],
                             "granian-w1": [5_000, 5_050, 5_100]}, limited={"uvicorn-w1"})
    assert _judged(named, preferred="uvicorn-w1")[0] == "granian-w1"
    every = _rows("closed", {"uvicorn-w1": [10_000, 10_100, 10_050],
                             "granian-w1": [5_000, 5_050, 5_100]},
                  limited={"uvicorn-w1", "granian-w1"})
    base, v = _judged(every)
    assert base is None
    assert not any("baseline" in x.text or x.significant for x in v.values())


def test_a_saturated_machine_withholds_a_verdict_only_when_the_client_took_a_share() -> None:
    """Both 2-worker rows used every core with the client's. wrk took 9 % of a core beside
    granian's 1.9 cores: at most ~5 % more CPU for the server had the client not run, so
    granian's figure is the server's. The Python client took 60 % beside uvicorn's 1.3
    cores: its figure may be the machine's."""
    comp = _rows("closed", {"granian-w2": [20_000, 20_100, 20_050],
                            "uvicorn-w2": [15_000, 15_050, 15_100],
                            "hypercorn-w1": [5_000, 5_050, 5_100]},
                 usage={"granian-w2": {"client_cpu_pct": 9.0, "server_cores_used": 1.9,
                                       "machine_saturated": True},
                        "uvicorn-w2": {"client_cpu_pct": 60.0, "server_cores_used": 1.3,
                                       "machine_saturated": True}})
    base, v = _judged(comp)
    assert base == "granian-w2"
    assert v["hypercorn-w1"].significant is True
    assert v["uvicorn-w2"].significant is None
    assert "60 % of a core" in v["uvicorn-w2"].text  # the share that could have changed it


def test_a_fast_failure_does_not_win_a_time_verdict() -> None:
    # uvicorn answers the burst fastest, but 10 % of its requests failed
    comp = _rows("burst", {"uvicorn-w1": [0.10, 0.11, 0.10], "granian-w1": [0.50, 0.51, 0.52]},
                 errors={"uvicorn-w1": 100})
    v = _judged(comp)[1]
    assert v["granian-w1"].text == "baseline"
    assert v["uvicorn-w1"].significant is None
    assert v["uvicorn-w1"].text == "no verdict: 10 % of its requests failed"


# ---- A/A: the rule's false positives on real servers -------------------------------------

AA = """
[lab]
repeats = 3

[servers.uvicorn]
workers = [1]
options = { backlog = [2048, 2047] }

[[experiments]]
name = "aa"
kind = "closed"
endpoints = ["/hello"]
users = [1, 2, 3, 4, 5, 6, 7, 8]
duration_s = 1
warmup_s = 0
"""


@pytest.mark.servers
def test_aa_configurations_that_differ_in_a_no_op_are_rarely_significant(
        write_config: Callable[..., Path], tmp_path: Path, leak_token: str) -> None:
    """uvicorn with a listen backlog of 2048 vs 2047 (64 connections at most): the same
    server. Over 8 tables of 3 repeats, non-overlap alone would call ~10 % of them
    significant (2 of the 20 orderings of 3 + 3 values); the noise floor lowers that.
    More than 3 of 8 would happen by chance less than 1 % of the time at 10 %."""
    result = run_lab("run", write_config(AA), "--out", tmp_path, "--run-id", "aa", "--yes",
                     timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    comps = Report.of(json_lines(RunDir(tmp_path / "aa"))).comparisons
    assert len(comps) == 8
    others = [row.verdict for c in comps for row in c.rows
              if row.verdict and row.verdict.text != "baseline"]
    stated = [x for x in others if x.significant is not None]
    assert len(stated) >= 6, [x.text for x in others]  # the test is not vacuous
    assert sum(bool(x.significant) for x in stated) <= 3, [x.text for x in others]
