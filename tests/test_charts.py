"""Charts beside report.md, from the committed real run (reports/example) copied away."""

import re
import shutil
from pathlib import Path

import pytest

from lab import report
from lab.results import RunDir
from tests.conftest import ROOT
from tests.test_report import make_run

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
