"""The knee search's logic (`rates = "auto"`) on a model server: which rates it tries, when
it believes a failure, and what it says when the client, not the server, stopped it. The
search against a real server is in test_client_speed."""

from lab.load import knee
from lab.load.samples import Measurement, Sample
from tests.conftest import measurement

SLO = 20.0


def model(capacity: float, glitch_at: set[float] | None = None, lag_ms: float = 0.0,
          lag_from: float = float("inf")) -> tuple[list[float], knee.RunAt]:
    """A server answering in 5 ms up to ``capacity`` req/s and in 200 ms beyond; a rate in
    ``glitch_at`` fails its first window only (a pause of the machine); from ``lag_from``
    req/s the client sends ``lag_ms`` late."""
    tried: list[float] = []
    glitches = set(glitch_at or ())

    def run_at(rate: float, seconds: float) -> Measurement:
        tried.append(rate)
        slow = rate > capacity or rate in glitches
        glitches.discard(rate)
        n = max(1, int(rate * seconds))
        samples = [Sample(i / rate, 0.2 if slow else 0.005, None, 1) for i in range(n)]
        lag = lag_ms if rate >= lag_from else 0.0
        return measurement(samples, seconds, 0.1 * seconds, answer_span_s=seconds,
                           send_lag_p99_ms=lag, client_behind=lag > 10)

    return tried, run_at


def behind(m: Measurement) -> bool:
    return bool(m.parts.open and m.parts.open.client_behind)


def test_the_knee_lies_within_ten_percent_below_the_capacity_and_is_confirmed() -> None:
    tried, run_at = model(3000)
    m, found = knee.search(run_at, behind, SLO, 0.5, 2.0, 100_000)
    record = found.to_json()
    assert record["knee_bound"] == "found"
    assert 3000 / 1.1 <= record["knee_rps"] <= 3000
    confirming = [p for p in record["knee_probes"] if p["confirming"]]
    assert confirming[-1]["holds"] and confirming[-1]["window_s"] == 2.0
    assert tried[:5] == [250, 500, 1000, 2000, 4000]  # doubling until one fails
    assert len(m.samples) == int(record["knee_rps"] * 2.0)  # the cell's figures: the confirmation


def test_a_single_glitch_does_not_end_the_search_low() -> None:
    tried, run_at = model(3000, glitch_at={500.0})
    _, found = knee.search(run_at, behind, SLO, 0.5, 2.0, 100_000)
    record = found.to_json()
    assert tried.count(500.0) == 2  # failed once, then held: believed only twice
    assert 3000 / 1.1 <= record["knee_rps"] <= 3000


def test_a_client_that_falls_behind_makes_the_knee_a_lower_bound() -> None:
    _, run_at = model(50_000, lag_ms=15.0, lag_from=4000)
    _, found = knee.search(run_at, behind, SLO, 0.5, 2.0, 100_000)
    record = found.to_json()
    assert record["knee_bound"] == "client" and record["knee_rps"] == 2000


def test_a_server_failing_far_beyond_the_clients_lag_is_still_the_servers_failure() -> None:
    """Past capacity the machine is saturated and the client sends late too, but a 200 ms
    p99 is not 15 ms of lateness: the search goes on and finds the server's knee."""
    _, run_at = model(3000, lag_ms=15.0, lag_from=3001)
    _, found = knee.search(run_at, behind, SLO, 0.5, 2.0, 100_000)
    record = found.to_json()
    assert record["knee_bound"] == "found" and 3000 / 1.1 <= record["knee_rps"] <= 3000


def test_a_server_that_holds_no_rate_has_no_knee() -> None:
    _, run_at = model(1.0)
    _, found = knee.search(run_at, behind, SLO, 0.5, 2.0, 100_000)
    record = found.to_json()
    assert record["knee_rps"] is None and record["knee_bound"] == "below"


def test_the_search_stops_at_knee_max_rps() -> None:
    tried, run_at = model(1e9)
    _, found = knee.search(run_at, behind, SLO, 0.5, 2.0, 3000)
    record = found.to_json()
    assert max(tried) == 3000 and record["knee_bound"] == "max"
    assert record["knee_rps"] == 3000
