"""``python -m lab compare``: two synthetic runs of 3 repeats each, with known differences."""

import tomllib
from pathlib import Path
from typing import Any

from lab.load.stats import summarize
from lab.matrix.config import parse
from lab.report.compare import EXIT_REGRESSED, compare_runs
from lab.store.results import RunDir
from tests.conftest import measurement, run_lab
from tests.test_report import CONFIG, burst_samples, make_run, record_for

REPEATED = "[lab]\nrepeats = 3\n" + CONFIG
SLOWED = "uvicorn-w1-article-async-blocking-n10"


def records(run_id: str, slower: dict[str, float] | None = None,
            shift: float = 1.0) -> list[dict[str, Any]]:
    """Every cell of REPEATED; burst walls within ±1 % over the repeats (tight spreads),
    all of them ``shift`` times the reference, the cells named in ``slower`` that many
    times slower again."""
    matrix = parse(tomllib.loads(REPEATED))
    out = []
    for cell in matrix.cells():
        r = record_for(cell, matrix, run_id)
        if cell.experiment.kind == "burst":
            name = cell.id.rsplit("-r", 1)[0]
            wall = r["figures"]["wall_s"] * (1 + 0.01 * (cell.repeat - 2)) \
                * shift * (slower or {}).get(name, 1.0)
            r["figures"] = summarize(measurement(burst_samples(cell, wall), wall, 0.01)).to_json()
        out.append(r)
    return out


def two_runs(tmp_path: Path, slower: dict[str, float] | None = None) -> tuple[RunDir, RunDir]:
    base = make_run(tmp_path, REPEATED, "base", records("base"))
    new = make_run(tmp_path, REPEATED, "new", records("new", slower))
    return base, new


def verdicts(md: str) -> dict[str, str]:
    rows = [x for x in md.split("## Cells", 1)[1].splitlines() if x.startswith("| `")]
    return {cells[0].strip(" `"): cells[-1].strip(" *")
            for cells in (row.strip("|").split("|") for row in rows)}


def test_a_cell_30_percent_slower_is_a_regression_and_fails_the_gate(tmp_path: Path) -> None:
    base, new = two_runs(tmp_path, {SLOWED: 1.3})
    result = run_lab("compare", base.path, new.path)
    assert result.returncode == EXIT_REGRESSED, result.stderr
    found = verdicts(result.stdout)
    assert found[SLOWED] == "regressed"
    assert f"**1 regression(s):** `{SLOWED}` (+30.0 %)" in result.stdout
    assert f"regression: {SLOWED}: regressed" in result.stderr
    others = {k: v for k, v in found.items() if k != SLOWED}
    assert set(others.values()) <= {"no clear difference", "no verdict (failed in both)",
                                     "no verdict (client at its limit in BASE and NEW)"}
    assert others["uvicorn-w1-hello-hello-c4"] == "no clear difference"
    assert others["granian-w2-hello-hello-c4"] == "no verdict (failed in both)"
    assert others["granian-w1-hello-hello-c4"] == \
        "no verdict (client at its limit in BASE and NEW)"


def test_threshold_above_the_change_passes_the_gate(tmp_path: Path) -> None:
    base, new = two_runs(tmp_path, {SLOWED: 1.3})
    assert compare_runs(base, new, threshold_pct=25).regressions
    result = run_lab("compare", base.path, new.path, "--threshold", "35",
                     "--out", tmp_path / "diff.md")
    assert result.returncode == 0, result.stderr
    md = (tmp_path / "diff.md").read_text()
    assert verdicts(md)[SLOWED] == "regressed"  # still said, but not beyond 35 %
    assert "**No regression.**" in md


def test_a_faster_cell_is_improved_not_a_regression(tmp_path: Path) -> None:
    base, new = two_runs(tmp_path, {SLOWED: 0.7})
    result = compare_runs(base, new)
    assert not result.regressions
    assert {c.cell: c.verdict for c in result.cells}[SLOWED] == "improved"


def test_the_same_configuration_twice_is_no_clear_difference(tmp_path: Path) -> None:
    """Two runs of one configuration: NEW 1 % slower everywhere, inside the repeats' ±1 %."""
    base = make_run(tmp_path, REPEATED, "base", records("base"))
    new = make_run(tmp_path, REPEATED, "new", records("new", shift=1.01))
    result = run_lab("compare", base.path, new.path)
    assert result.returncode == 0, result.stderr
    assert verdicts(result.stdout)[SLOWED] == "no clear difference"
    assert "**No regression.**" in result.stdout
    assert "Same environment" in result.stdout
    assert "environments differ" not in result.stdout
    burst = [v for k, v in verdicts(result.stdout).items() if "article" in k]
    assert set(burst) == {"no clear difference"} and len(burst) == 6


def test_too_few_repeats_give_no_verdict(tmp_path: Path) -> None:
    base = make_run(tmp_path, CONFIG, "once")  # one run per cell
    new = make_run(tmp_path, REPEATED, "thrice", records("thrice", {SLOWED: 1.3}))
    result = compare_runs(base, new)
    assert not result.regressions
    assert {c.cell: c.verdict for c in result.cells}[SLOWED] \
        == "no verdict (1 vs 3 repeats, needs 3 each)"


def test_cells_in_one_run_only_are_listed(tmp_path: Path) -> None:
    base = make_run(tmp_path, REPEATED, "base", records("base"))
    new = make_run(tmp_path, REPEATED, "new", [r for r in records("new")
                                                if r["server_id"] != "granian-w2"])
    md = run_lab("compare", base.path, new.path).stdout
    only = md.split("## Only in BASE", 1)[1].split("\n## ", 1)[0]
    assert "`granian-w2-article-blocking-n10`" in only
    assert "`granian-w2-hello-hello-c4`" in only
    assert "## Only in NEW" not in md


def test_a_cell_that_fails_in_new_is_a_regression(tmp_path: Path) -> None:
    base = make_run(tmp_path, REPEATED, "base", records("base"))
    broken = []
    for r in records("new"):
        if r["cell_id"].startswith("uvicorn-w1-hello-hello-c4"):
            r |= {"status": "failed", "figures": None,
                  "failure": {"kind": "server_crashed", "reason": "exited with code 1"}}
        broken.append(r)
    new = make_run(tmp_path, REPEATED, "new", broken)
    result = compare_runs(base, new)
    assert [(c.cell, c.verdict) for c in result.regressions] == [
        ("uvicorn-w1-hello-hello-c4", "failed in NEW (server_crashed)")]


def test_differing_environments_are_said_first(tmp_path: Path) -> None:
    base, new = two_runs(tmp_path)
    env = new.read_json("environment.json")
    new.write_json("environment.json", env | {
        "python": "3.12.1", "versions": env["versions"] | {"granian": "9.9.9"}})
    result = run_lab("compare", base.path, new.path)
    assert result.returncode == 0, result.stderr
    header = result.stdout.split("## Cells")[0]
    assert "⚠ The runs' environments differ" in header
    warning = next(x for x in result.stdout.splitlines()
                   if x.startswith("> **⚠ The environments differ:**"))
    assert "Python " in warning and "→ 3.12.1" in warning and "→ 9.9.9" in warning
    assert "weaker evidence than side-by-side repeats" in warning


def test_compare_a_missing_run_is_a_usage_error(tmp_path: Path) -> None:
    base, _ = two_runs(tmp_path)
    result = run_lab("compare", base.path, tmp_path / "nope")
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and "nope" in result.stderr


def test_a_cell_measured_with_another_delay_gets_no_verdict(tmp_path: Path) -> None:
    base = make_run(tmp_path, REPEATED, "base", records("base"))
    changed = []
    for r in records("new", {SLOWED: 1.3}):
        if r["cell_id"].startswith(SLOWED):
            r["params"] = {"delay": 0.1}
        changed.append(r)
    new = make_run(tmp_path, REPEATED, "new", changed)
    result = compare_runs(base, new)
    assert not result.regressions
    found = {c.cell: c.verdict for c in result.cells}
    assert found.pop(SLOWED) == "no verdict (measured differently: params.delay 0.05 → 0.1)"
    assert not any("measured differently" in v for v in found.values())


def test_runs_without_a_cell_in_common_are_exit_2_not_no_regression(tmp_path: Path) -> None:
    """Two runs of different configs: a CI gate must not pass on nothing compared."""
    base = make_run(tmp_path, REPEATED, "base", [r for r in records("base")
                                                 if r["server"] == "granian"])
    new = make_run(tmp_path, REPEATED, "new", [r for r in records("new")
                                               if r["server"] == "uvicorn"])
    out = tmp_path / "diff.md"
    result = run_lab("compare", base.path, new.path, "--out", out)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "No regression" not in result.stdout and not out.exists()
    [line] = result.stderr.splitlines()
    assert line == ("error: compare: no cell is in both runs, so nothing was compared: BASE "
                    "has 6 cells (granian-w1, granian-w2; experiment article, hello), NEW has "
                    "3 cells (uvicorn-w1; experiment article, hello)")
