"""What the report says of the loop meter's figures: which endpoints hold their worker's
event loop, over every worker and repeat, and the In-short line that names them, their
site and the fix — and none for an endpoint that does not, nor for a library's one-off."""

from typing import Any

from lab.report import loop
from lab.report.model import Report
from tests.conftest import result


def _endpoint(calls: int, loop_ms: float, sites: list[tuple[str, int, float]] = ()
              ) -> dict[str, Any]:
    return {"calls": calls, "loop_ms_per_call": loop_ms, "cpu_ms_per_call": loop_ms / 50,
            "longest_step_ms": {"p50": loop_ms, "p99": loop_ms, "max": loop_ms * 1.1},
            "sites": [{"site": s, "count": n, "seconds": t} for s, n, t in sites]}


def _cell(server_id: str, workers: dict[str, dict[str, Any]]) -> Any:
    return result({"requests": 10, "ok": 10, "loop": {
        pid: {"busy_share": 0.5, "endpoints": endpoints} for pid, endpoints in workers.items()}},
        server_id=server_id)


SLEEP = "time.sleep at team.py:12 in slow"
ANYIO = "importlib._bootstrap_external._path_stat (no frame of the app)"


def test_an_endpoint_that_holds_the_loop_is_named_with_its_site_and_the_fix() -> None:
    report = Report.of_results([
        # two workers of one configuration: their calls add up, weighted
        _cell("uvicorn-w2", {"11": {"/slow": _endpoint(6, 50.0, [(SLEEP, 6, 0.3)]),
                                    "/fine": _endpoint(6, 0.2)},
                             "12": {"/slow": _endpoint(4, 40.0, [(SLEEP, 4, 0.16)])}}),
        _cell("granian-w1", {"21": {"/slow": _endpoint(10, 51.0, [(SLEEP, 10, 0.51)]),
                                    "/fine": _endpoint(10, 0.3)}}),
    ])
    slow = {h.server_id: h for h in report.holds if h.endpoint == "/slow"}
    assert slow["uvicorn-w2"].calls == 10
    assert abs(slow["uvicorn-w2"].loop_ms_per_call - 46.0) < 1e-9  # (6·50 + 4·40) / 10
    ((site, steps, seconds),) = slow["uvicorn-w2"].sites
    assert (site, steps) == (SLEEP, 10) and abs(seconds - 0.46) < 1e-9
    (line,) = loop.short(report)
    assert line.startswith("`/slow` holds its worker's event loop 46–51 ms per call, at "
                           f"`{SLEEP}` (on 2 of 2 configurations)")
    assert "make `slow` `def`" in line  # the function the site names
    assert "The loop meter was on" in loop.warning(report)[0]  # its cost is in every figure
    section = "\n".join(loop.section(report))
    assert section.index("`/slow`") < section.index("`/fine`")  # most loop time first


def test_a_library_one_off_and_short_steps_are_not_the_endpoint_s() -> None:
    """anyio imports its thread machinery at a `def` endpoint's first call: one 26 ms step
    in a library, 6 ms per call over ten calls — the table shows it, In short does not."""
    report = Report.of_results([_cell("uvicorn-w1", {
        "11": {"/threaded": _endpoint(10, 6.2, [(ANYIO, 1, 0.026)]),
               "/fine": _endpoint(10, 0.2)}}),
        # its very first call alone: 17 ms on the loop, all of it the library's
        _cell("granian-w1", {"21": {"/threaded": _endpoint(1, 17.0, [(ANYIO, 1, 0.017)])}}),
        # many short steps of its own, none past the watchdog's threshold: still a hold
        _cell("granian-w1", {"21": {"/busy": _endpoint(10, 12.0)}})])
    (busy,) = [h for h in report.holds if h.endpoint == "/busy"]
    assert busy.blocks
    report = Report.of_results([r for r in report.results
                                if r.figures and "/busy" not in str(r.figures.loop)])
    assert not any(h.blocks for h in report.holds)
    assert loop.short(report) == ["No endpoint held its worker's event loop ≥ 10 ms per call "
                                  "(2 measured inside the workers)."]
    assert ANYIO in "\n".join(loop.section(report))


def test_a_run_without_the_meter_says_nothing_of_the_loop() -> None:
    report = Report.of_results([result({"requests": 10, "ok": 10, "rps": 100.0})])
    assert report.holds == () and loop.section(report) == [] and loop.short(report) == []
    assert loop.warning(report) == []
