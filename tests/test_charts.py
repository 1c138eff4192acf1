"""Charts beside report.md, from the committed real run (reports/example) copied away."""

import re
import shutil
import tomllib
from pathlib import Path

import pytest
from matplotlib.figure import Figure

from lab import report
from lab.kinds import get
from lab.matrix.config import parse
from lab.report import charts
from lab.report.groups import Comparison, Row
from lab.report.model import Report, judged
from lab.store.results import RunDir
from tests.conftest import ROOT, result
from tests.test_report import CONFIG, make_run, record_for

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    run = tmp_path_factory.mktemp("charts") / "example"
    shutil.copytree(ROOT / "reports" / "example", run)
    for old in run.glob("chart-*.png"):
        old.unlink()
    (run / "chart-stale-from-an-older-build.png").write_bytes(PNG)
    return run, report.build(RunDir(run)).read_text()


def test_every_kind_has_its_chart_and_report_links_each(example: tuple[Path, str]) -> None:
    run, md = example
    links = re.findall(r"!\[[^\]]+\]\(([^)]+)\)", md)
    assert {re.sub(r"-.*", "", name.removeprefix("chart-")) for name in links} == {
        "burst", "closed", "latency", "interference", "knee"}
    for name in links:
        assert "/" not in name  # relative, beside report.md
        data = (run / name).read_bytes()
        assert data.startswith(PNG) and len(data) > 10_000
    assert sorted(p.name for p in run.glob("chart-*.png")) == sorted(set(links))  # none stale


def test_the_first_screen_answers_with_a_chart(example: tuple[Path, str]) -> None:
    """In short comes before the run's details, with the three questions and the req/s
    chart of the first closed loop."""
    _, md = example
    short = md.split("## In short", 1)[1].split("\n## ", 1)[0]
    assert md.index("## In short") < md.index("## This run") < md.index("## Findings")
    for question in ("**`def` or `async def`?**", "**Which server?**", "**How many workers?**"):
        assert question in short
    assert "](chart-closed-hello-hello-c64.png)" in short


def test_charts_sit_under_their_experiment(example: tuple[Path, str]) -> None:
    _, md = example
    article = md.split("## Experiment `article`", 1)[1].split("\n## ", 1)[0]
    assert "](chart-burst-article.png)" in article
    rate = md.split("## Experiment `rate`", 1)[1].split("\n## ", 1)[0]
    assert "](chart-knee-rate.png)" in rate and "](chart-latency-rate.png)" in rate


def test_a_run_with_failed_cells_still_draws(tmp_path: Path) -> None:
    """The synthetic run: one repeat, a configuration that never started."""
    run = make_run(tmp_path)
    md = report.build(run).read_text()
    assert "](chart-burst-article.png)" in md
    assert "](chart-closed-hello-hello-c4.png)" in md
    assert (run.path / "chart-closed-hello-hello-c4.png").stat().st_size > 10_000


def test_the_headline_chart_is_of_a_comparison_with_a_baseline(tmp_path: Path) -> None:
    """Every closed row was client-limited: no row can be its baseline, so In short shows
    the burst chart instead of a req/s chart that ranks the client."""
    matrix = parse(tomllib.loads(CONFIG))
    records = [record_for(c, matrix, "limited") for c in matrix.cells()]
    for r in records:
        if r["kind"] == "closed" and r["figures"]:
            r["figures"]["client_limited"] = True
    md = report.build(make_run(tmp_path, CONFIG, "limited", records)).read_text()
    short = md.split("## In short", 1)[1].split("\n## ", 1)[0]
    assert "](chart-burst-article.png)" in short
    assert "chart-closed" not in short
    assert "](chart-closed-hello-hello-c4.png)" in md  # still drawn, under its experiment


def _limited_row(sid: str, workers: int, kind: str, limited: bool) -> Row:
    return Row(sid, sid.split("-")[0], workers, {}, get(kind).headline, tuple(result({
        "requests": 100, "ok": 100, "rps": 100 * v, "client_limited": limited,
        "client_cpu_pct": 95.0 if limited else 20.0, "latency_ms": {"p50": v},
        "idle_latency_ms": {"p50": 2.0}}, server_id=sid) for v in (10.0, 11.0, 12.0)))


def test_charts_mark_the_rows_the_tables_flag_as_limited(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The 1-worker rows' client was at its limit, the 2-worker rows' not: every bar chart
    marks exactly the rows whose table says "not comparable" (hatching shows workers)."""
    closed = Comparison("hello", "closed", "/hello", {"users": 4}, {}, "wrk",
                        (_limited_row("granian-w1", 1, "closed", True),
                         _limited_row("granian-w2", 2, "closed", False)))
    stall = Comparison("stall", "interference", "/slow", {"background": 4, "probe": "/hello"},
                       {}, "rawhttp", (_limited_row("uvicorn-w1", 1, "interference", True),
                                       _limited_row("uvicorn-w2", 2, "interference", False)))
    drawn: dict[str, Figure] = {}
    save = charts._save
    monkeypatch.setattr(charts, "_save", lambda fig, path: (drawn.update({path.name: fig}),
                                                            save(fig, path)))
    charts.draw(Report((), (judged(closed, 0.0), judged(stall, 0.0)), {}, None, ()), tmp_path)
    for name, comp in (("chart-closed-hello-hello-c4.png", closed),
                       ("chart-interference-stall.png", stall)):
        ticks = {t.get_text() for ax in drawn[name].axes for t in ax.get_xticklabels()}
        marked = {t.split()[0] for t in ticks if "⚠" in t}
        flagged = {row.server_id for row in comp.rows if row.limit() is not None}
        assert marked == flagged == {comp.rows[0].server_id}, (name, ticks)
