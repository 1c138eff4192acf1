"""The report from a synthetic run directory: records shaped exactly as the runner writes them
(``describe`` + figures from ``summarize``), with known physics, so every verdict is known.
The facts are asserted on the model (`lab.report.model.Report`); the wording is the golden
report's (`test_the_golden_report_is_unchanged`)."""

import json
import os
import shutil
import tomllib
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from lab import report
from lab.kinds import get
from lab.load.samples import Sample
from lab.load.stats import summarize
from lab.matrix.config import Cell, Matrix, parse
from lab.report.facts import Serialised
from lab.report.findings import interference_finding
from lab.report.groups import Comparison, Row
from lab.report.model import Flag, Report, RowFacts, judged
from lab.run.runner import describe
from lab.store import environment
from lab.store.results import RUN_INFO, RunDir
from lab.store.schema import SCHEMA_VERSION, Failure, FailureKind, Process, Result
from tests.conftest import ROOT, json_lines, measurement, result, run_lab

GOLDEN = Path(__file__).parent / "golden" / "example"
DELAY = 0.05
N = 10

CONFIG = f"""
[servers.uvicorn]
workers = [1]

[servers.granian]
workers = [1, 2]

[[experiments]]
name = "article"
kind = "burst"
endpoints = ["/blocking", "/async-blocking"]
requests = [{N}]
params = {{ delay = {DELAY} }}
ways = true

[[experiments]]
name = "hello"
kind = "closed"
endpoints = ["/hello"]
users = [4]
duration_s = 1.0
warmup_s = 0.1
"""

# Burst wall times (s): /blocking overlaps (≈ one delay); /async-blocking is serialised per
# worker (busiest worker's share × delay). granian-w2 split the burst 6/4.
BLOCKING_WALL = {"uvicorn-w1": 0.055, "granian-w1": 0.060, "granian-w2": 0.066}
ASYNC_BLOCKING_WALL = {"uvicorn-w1": 0.52, "granian-w1": 0.51, "granian-w2": 0.31}
HELLO_RPS = {"uvicorn-w1": 900, "granian-w1": 1200}  # granian-w2 fails to start
HELLO_CPU = {"uvicorn-w1": 0.5, "granian-w1": 0.95}  # granian-w1's client was saturated
FAILED_REASON = "exited with code 1 before answering /health"
FAILED_LOG = "AttributeError: module 'apps.article' has no attribute 'boom'"


def burst_samples(cell: Cell, wall: float) -> list[Sample]:
    pids = [1000] * N if cell.workers == 1 else [1000] * 6 + [2000] * 4
    if cell.endpoint.path == "/async-blocking":  # one after another on each worker
        seen: dict[int, int] = {}
        out = []
        for pid in pids:
            seen[pid] = seen.get(pid, 0) + 1
            out.append(Sample(0.0, seen[pid] * DELAY, None, pid))
        return out
    return [Sample(0.0, wall - 0.002 * (i % 3), None, pid) for i, pid in enumerate(pids)]


def record_for(cell: Cell, matrix: Matrix, run_id: str) -> dict[str, Any]:
    """A results line as lab.run.runner.run_cell builds it."""
    failure, figures, process = None, None, None
    sid = cell.server_id
    if cell.experiment.kind == "closed" and sid not in HELLO_RPS:
        failure = Failure(FailureKind.START_FAILED, FAILED_REASON,
                          "Traceback (most recent call last):\n" + FAILED_LOG)
    else:
        if cell.experiment.kind == "burst":
            walls = BLOCKING_WALL if cell.endpoint.path == "/blocking" else ASYNC_BLOCKING_WALL
            wall = walls[sid]
            m = measurement(burst_samples(cell, wall), wall, 0.01)
        else:
            m = measurement([Sample(0.2 + i / 1e4, 0.004, None, 1000)
                             for i in range(HELLO_RPS[sid])], 1.0, HELLO_CPU[sid], clients=1)
        figures = summarize(m)
        process = Process(0.35, False, 40000, ("python", "-m", "x"), None)
    record = describe(cell, matrix.lab, run_id, cell.experiment.engine,
                      "2025-11-26T10:00:00+00:00", failure, figures, process)
    return replace(record, finished_at="2025-11-26T10:00:01+00:00", cell_wall_s=1.0).to_json()


def make_run(tmp_path: Path, config: str = CONFIG, run_id: str = "20251126-100000-synthetic",
             records: list[dict[str, Any]] | None = None) -> RunDir:
    matrix = parse(tomllib.loads(config))
    run = RunDir.create(tmp_path, run_id, config)
    cells = matrix.cells()
    for r in records if records is not None else [record_for(c, matrix, run_id) for c in cells]:
        run.append(Result.from_json(json.loads(json.dumps(r))))  # what survives the JSON line
    run.write_json(RUN_INFO, {"config": "synthetic.toml", "config_hash": "0" * 16,
                              "state": "finished", "cells_total": len(cells),
                              "started_at": "2025-11-26T10:00:00+00:00",
                              "finished_at": "2025-11-26T10:01:00+00:00"})
    run.write_json("environment.json", environment.collect(ROOT))
    return run


def sections(md: str) -> dict[str, str]:
    """### heading → the text up to the next heading."""
    out: dict[str, str] = {}
    current = None
    for line in md.splitlines():
        if line.startswith("#"):
            current = line if line.startswith("### ") else None
            if current:
                out[current] = ""
        elif current:
            out[current] += line + "\n"
    return out


def _parse(lines: list[str]) -> list[dict[str, str]]:
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    return [dict(zip(header, (c.strip() for c in x.strip("|").split("|")), strict=True))
            for x in lines[2:]]


def table_rows(section: str, main_only: bool = False) -> list[dict[str, str]]:
    """The rows of a section's main table, each with its detail table's columns too."""
    blocks: list[list[str]] = [[]]
    for line in section.splitlines():
        if line.startswith("|"):
            blocks[-1].append(line)
        elif blocks[-1]:
            blocks.append([])
    main, *detail = [_parse(b) for b in blocks if b]
    if not main_only:
        for table in detail:
            more = {r["configuration"]: r for r in table}
            main = [r | more.get(r["configuration"], {}) for r in main]
    return main


def section_for(md: str, endpoint: str) -> str:
    found = [body for title, body in sections(md).items() if f"`{endpoint}`" in title]
    assert len(found) == 1, f"expected one table for {endpoint}, got {len(found)}"
    return found[0]


@pytest.fixture
def run(tmp_path: Path) -> RunDir:
    return make_run(tmp_path)


@pytest.fixture
def built(run: RunDir) -> str:
    path = report.build(run)
    assert path == run.path / "report.md"
    return path.read_text()


@pytest.fixture
def facts(run: RunDir) -> Report:
    return model(run)


def model(run: RunDir) -> Report:
    """The report's model of a run, as `report.build` makes it."""
    return Report.of_results(run.read(lambda r: r)[0], run.info().baseline)


def rows_of(facts: Report, endpoint: str, experiment: str | None = None) -> dict[str, RowFacts]:
    (comp,) = [c for c in facts.comparisons if c.endpoint == endpoint
               and experiment in (None, c.experiment)]
    return {row.server_id: row for row in comp.rows}


def test_the_golden_report_is_unchanged(tmp_path: Path) -> None:
    """The report's wording, byte for byte, from a trimmed copy of reports/example (every
    kind, a failed repeat). After a deliberate change of wording, regenerate it with
    ``LAB_UPDATE_GOLDEN=1 python -m pytest tests/test_report.py -k golden`` and review the
    diff of tests/golden/example/report.md."""
    run = tmp_path / GOLDEN.name  # the report's title is its folder's name
    shutil.copytree(GOLDEN, run, ignore=shutil.ignore_patterns("report.md"))
    text = report.build(RunDir(run)).read_text(encoding="utf-8")
    if os.environ.get("LAB_UPDATE_GOLDEN") == "1":
        (GOLDEN / "report.md").write_text(text, encoding="utf-8")
    assert text == (GOLDEN / "report.md").read_text(encoding="utf-8")


def test_the_golden_run_s_facts() -> None:
    """What the golden report says, as facts. Closed: granian-w1 has more req/s than
    uvicorn-w1 but lost a repeat, uvicorn-w2 saturated the shared cores: uvicorn-w1 is
    the baseline, and uvicorn's scaling to 2 workers is not the server's to read. Burst:
    /async-blocking ran one after another everywhere, /blocking overlapped, uvicorn ×2 is
    its baseline. Interference: /async-blocking stalled the probe on every configuration,
    on uvicorn-w2 only its tail."""
    facts = model(RunDir(GOLDEN))
    hello = rows_of(facts, "/hello", "hello")
    assert [sid for sid, row in hello.items() if row.is_baseline] == ["uvicorn-w1"]
    assert Flag.MISSING_REPEATS in hello["granian-w1"].flags
    assert hello["uvicorn-w2"].limit_flags == [Flag.MACHINE_SATURATED]
    scaling = hello["uvicorn-w2"].scaling
    assert scaling is not None and scaling.limited and scaling.workers_used == 2
    assert hello["uvicorn-w1"].scaling is None and hello["granian-w1"].scaling is None
    assert all(r.serialised and r.serialised.serial
               for r in rows_of(facts, "/async-blocking", "article").values())
    blocking = rows_of(facts, "/blocking")
    assert not any(r.serialised and r.serialised.serial for r in blocking.values())
    assert blocking["uvicorn-w2"].is_baseline
    stall = rows_of(facts, "/async-blocking", "stall")
    assert {sid: r.effect for sid, r in stall.items()} == {
        "uvicorn-w1": "stalled", "uvicorn-w2": "stalled some", "granian-w1": "stalled"}
    assert all(r.knee_bounds == {"found"} for r in rows_of(facts, "/hello", "rate").values())


def test_a_table_per_comparison_with_every_server(built: str) -> None:
    tables = sections(built)
    assert len(tables) == 3
    for endpoint, servers in (("/blocking", BLOCKING_WALL), ("/async-blocking",
                                                             ASYNC_BLOCKING_WALL),
                              ("/hello", ["uvicorn-w1", "granian-w1", "granian-w2"])):
        rows = table_rows(section_for(built, endpoint))
        assert [r["configuration"] for r in rows] == list(servers)


@pytest.mark.parametrize(("endpoint", "walls"), [("/blocking", BLOCKING_WALL),
                                                 ("/async-blocking", ASYNC_BLOCKING_WALL)])
def test_relative_is_one_for_the_fastest_burst(built: str, facts: Report, endpoint: str,
                                                walls: dict[str, float]) -> None:
    rows = {r["configuration"]: r for r in table_rows(section_for(built, endpoint))}
    best = min(walls, key=walls.__getitem__)
    assert rows[best]["relative"] == "1.00"
    for sid, wall in walls.items():
        assert float(rows[sid]["relative"]) == pytest.approx(wall / walls[best], abs=0.006)
        assert rows[sid]["wall s"] == f"{wall:.3g}"
    judged_rows = rows_of(facts, endpoint)
    assert [sid for sid, row in judged_rows.items() if row.is_baseline] == [best]
    for row in judged_rows.values():  # one run per cell: no verdict either way
        assert row.verdict is not None and row.verdict.significant is None


def test_relative_is_one_for_the_best_comparable_rps_and_failed_row_says_why(
        built: str, facts: Report) -> None:
    rows = {r["configuration"]: r for r in table_rows(section_for(built, "/hello"))}
    # granian-w1 has the most req/s, but its client was at its limit: it cannot be the
    # baseline, and its figure gets no verdict rather than a win.
    assert rows["uvicorn-w1"]["relative"] == "1.00"
    assert float(rows["granian-w1"]["relative"]) == pytest.approx(900 / 1200, abs=0.006)
    assert float(rows["uvicorn-w1"]["req/s"]) == pytest.approx(900, rel=0.01)
    assert "start_failed" in rows["granian-w2"]["req/s"]
    hello = rows_of(facts, "/hello")
    assert hello["uvicorn-w1"].is_baseline and not hello["granian-w1"].is_baseline
    assert hello["granian-w1"].limit_flags == [Flag.CLIENT_LIMITED]
    assert hello["uvicorn-w1"].flags == ()
    verdict = hello["granian-w1"].verdict
    assert verdict is not None and verdict.significant is None
    assert hello["granian-w2"].verdict is None  # it never started: no figure to judge


def test_baseline_from_the_run_is_the_one(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    run.write_json(RUN_INFO, run.read_json(RUN_INFO) | {"baseline": "granian-w2"})
    md = report.build(run).read_text()
    rows = {r["configuration"]: r for r in table_rows(section_for(md, "/blocking"))}
    assert rows["granian-w2"]["relative"] == "1.00"
    assert rows_of(model(run), "/blocking")["granian-w2"].is_baseline
    assert float(rows["uvicorn-w1"]["relative"]) == pytest.approx(0.055 / 0.066, abs=0.006)


def test_requests_per_worker_split(built: str) -> None:
    rows = {r["configuration"]: r for r in table_rows(section_for(built, "/async-blocking"))}
    assert rows["granian-w2"]["requests per worker"] == "6/4"
    assert rows["uvicorn-w1"]["requests per worker"] == "10"


def test_failed_cells_section_has_reason_and_log(built: str) -> None:
    assert "## Failed cells" in built
    failed = built.split("## Failed cells", 1)[1].split("\n## ", 1)[0]
    assert "`granian-w2-hello-hello-c4`" in failed
    assert "start_failed" in failed and FAILED_REASON in failed
    assert FAILED_LOG in failed


def findings(md: str) -> list[str]:
    body = md.split("## Findings", 1)[1].split("\n## ", 1)[0]
    return [line for line in body.splitlines() if line.startswith("- ")]


def test_async_blocking_is_serialised_and_blocking_overlapped(facts: Report) -> None:
    """Per worker, from the split and the delay: /async-blocking's wall is its busiest
    worker's share × delay (granian-w2: 6 of 10, 0.3 s); /blocking's is one delay."""
    trap = rows_of(facts, "/async-blocking")
    assert {sid: row.serialised for sid, row in trap.items()} == {
        "uvicorn-w1": Serialised(True, 10 * DELAY), "granian-w1": Serialised(True, 10 * DELAY),
        "granian-w2": Serialised(True, 6 * DELAY)}
    blocking = rows_of(facts, "/blocking")
    assert not any(row.serialised and row.serialised.serial for row in blocking.values())


def test_findings_in_short_and_claims_speak_of_both_bursts(built: str) -> None:
    """Each burst has its finding; In short and the article's claims answer for both
    endpoints (their wording is the golden report's)."""
    for endpoint in ("/blocking", "/async-blocking"):
        assert sum(x.startswith(f"- **{endpoint}**") for x in findings(built)) == 1
        claims = built.split("## The article's claims, measured", 1)[1].split("\n## ", 1)[0]
        assert sum(x.startswith(f"- `{endpoint}`") for x in claims.splitlines()) == 1
    short = built.split("## In short", 1)[1].split("## Findings", 1)[0]
    assert sum(f"(`{e}`)" in short for e in ("/blocking", "/async-blocking")) == 2


def test_the_article_says_nothing_about_another_app(tmp_path: Path) -> None:
    """Same endpoints, same figures, but a team's own app: no article claims, no verdict on
    them; the findings from physics stay."""
    matrix = parse(tomllib.loads(CONFIG))
    records = [record_for(c, matrix, "own") | {"app": "myapp.main:app"}
               for c in matrix.cells()]
    md = report.build(make_run(tmp_path, run_id="own", records=records)).read_text()
    assert "## The article's claims" not in md and "`def` + `time.sleep`" not in md
    short = md.split("## In short", 1)[1].split("\n## ", 1)[0]
    ways = next(x for x in short.splitlines() if x.startswith("- `article` (10 requests"))
    assert ways.index("`/blocking` 0.055–0.066 s") < ways.index("`/async-blocking` 0.31–0.52 s")
    assert "**Which server?**" in short  # the questions any app's run answers
    assert any(x.startswith("- **/async-blocking**") for x in findings(md))


def test_main_table_is_short_and_the_rest_is_collapsed_under_it(built: str) -> None:
    section = section_for(built, "/hello")
    main = table_rows(section, main_only=True)
    assert list(main[0]) == ["configuration", "req/s", "relative", "verdict", "error rate",
                             "scaling vs 1 worker", "p99 ms"]
    details = section.split("<details><summary>", 1)[1]
    assert details.index("</summary>\n\n|") >= 0 and details.rstrip().endswith("</details>")
    detail_header = next(x for x in details.splitlines() if x.startswith("|"))
    for column in ("p50 ms", "p99.9 ms", "requests per worker", "server cores used",
                   "client CPU %", "peak RSS MB", "engine"):
        assert column in detail_header and column not in main[0]


def test_findings_mixed_verdict_names_each_side(tmp_path: Path) -> None:
    """A configuration that overlapped /async-blocking (impossible for this app, but the
    finding must say which side each configuration is on)."""
    matrix = parse(tomllib.loads(CONFIG))
    records = []
    for cell in matrix.cells():
        if cell.endpoint.path != "/async-blocking":
            continue
        r = record_for(cell, matrix, "mixed")
        if cell.server_id == "granian-w1":
            wall = 0.06
            r["figures"] = summarize(measurement(
                [Sample(0.0, wall, None, 1000) for _ in range(N)], wall, 0.01)).to_json()
        records.append(r)
    run = make_run(tmp_path, run_id="mixed", records=records)
    serial = {sid: row.serialised.serial
              for sid, row in rows_of(model(run), "/async-blocking").items() if row.serialised}
    assert serial == {"uvicorn-w1": True, "granian-w1": False, "granian-w2": True}
    line = next(x for x in findings(report.build(run).read_text())
                if x.startswith("- **/async-blocking**"))
    assert "serialised on uvicorn-w1, granian-w2; overlapped on granian-w1" in line


def test_client_limited_finding(built: str) -> None:
    line = next(x for x in findings(built) if "Client-limited" in x)
    assert "granian-w1-hello-hello-c4" in line
    assert "uvicorn-w1-hello-hello-c4" not in line


def test_environment_and_versions(built: str) -> None:
    env = built.split("## Environment", 1)[1]
    for server in ("uvicorn", "hypercorn", "granian", "fastapi"):
        assert f"{server} " in env
    assert "logical cores" in env


def test_figures_of_the_wrong_type_do_not_crash_the_report(tmp_path: Path) -> None:
    """A hand-edited or foreign line: strings for numbers, a list for a table, a broken
    histogram. The report is built, the row's sound figures stay, and no traceback."""
    matrix = parse(tomllib.loads(CONFIG))
    records = [record_for(c, matrix, "odd") for c in matrix.cells()]
    odd = next(r for r in records if r["cell_id"].startswith("uvicorn-w1-hello"))
    odd["figures"] |= {"requests": "many", "errors": [1, 2], "pids": "x",
                       "histogram": {"counts": 5}, "latency_ms": None, "engine": 3}
    run = make_run(tmp_path, run_id="odd", records=records)
    result = run_lab("report", run.path)
    assert result.returncode == 0, result.stderr
    row = next(r for r in table_rows(section_for((run.path / "report.md").read_text(),
                                                 "/hello"))
               if r["configuration"] == "uvicorn-w1")
    assert row["req/s"] == "900" and row["p99 ms"].startswith("–")


def test_truncated_last_line_gives_a_warning_not_a_crash(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    whole = run.results.read_text()
    run.results.write_text(whole + whole.splitlines()[0][:57])  # a crash mid-write
    md = report.build(run).read_text()
    assert "## Warnings" in md
    warnings = md.split("## Warnings", 1)[1].split("\n## ", 1)[0]
    assert "line 10" in warnings
    assert "cells: 9 finished" in md  # the complete lines all still count


@pytest.mark.parametrize("garbage", ["42", "[1, 2]"])
def test_a_corrupt_line_that_is_valid_json_is_a_warning_too(tmp_path: Path,
                                                             garbage: str) -> None:
    """RunDir.load: "a truncated or corrupt line is a warning, not a crash"."""
    run = make_run(tmp_path)
    lines = run.results.read_text().splitlines()
    run.results.write_text("\n".join([*lines[:3], garbage, *lines[3:]]) + "\n")
    loaded = run.load()
    assert len(loaded.records) == len(lines)
    assert len(loaded.warnings) == 1 and "line 4" in loaded.warnings[0]
    assert "line 4" in report.build(run).read_text()


def test_append_after_a_truncated_line_keeps_the_new_record(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    records = json_lines(run)
    run.results.write_text(run.results.read_text() + '{"schema_version": 1, "cell_')
    run.append(replace(run.load().records[0], cell_id="after-the-crash"))
    loaded = run.load()
    assert [r.cell_id for r in loaded.records][-1] == "after-the-crash"
    assert len(loaded.records) == len(records) + 1
    assert len(loaded.warnings) == 1


def test_resume_skips_a_cell_by_its_key_and_a_line_without_one_by_its_id(
        tmp_path: Path) -> None:
    run = make_run(tmp_path)
    matrix = parse(tomllib.loads(CONFIG))
    done = run.load().finished()
    assert all(done.covers(c.key(matrix.lab), c.id) for c in matrix.cells())
    # another delay is another measurement for every article cell, the same for hello's
    changed = parse(tomllib.loads(CONFIG.replace(f"delay = {DELAY}", "delay = 0.07")))
    covered = {c.id: done.covers(c.key(changed.lab), c.id) for c in changed.cells()}
    assert covered == {c.id: c.experiment.name == "hello" for c in changed.cells()}
    # more repeats: the finished cells are repeat 1 of each, though their ids now say -r1
    tripled = parse(tomllib.loads("[lab]\nrepeats = 3\n" + CONFIG))
    assert [c.repeat for c in tripled.cells() if done.covers(c.key(tripled.lab), c.id)] \
        == [1] * len(matrix.cells())
    # lines written before cells had keys are matched by id, as they always were
    old = RunDir.create(tmp_path, "old", CONFIG)
    for r in run.load().records:
        old.append(replace(r, cell_key=None))
    before_keys = old.load().finished()
    assert all(before_keys.covers(c.key(changed.lab), c.id) for c in changed.cells())


def test_report_says_when_a_resumed_session_ran_on_another_environment(
        tmp_path: Path) -> None:
    run = make_run(tmp_path)
    env = run.read_json("environment.json") | {"lab": {"commit": "a" * 40, "dirty": False}}
    run.write_json("environment.json", env)
    assert run.record_environment(env | {"cpu": env["cpu"] | {"load_avg_1m": 9.0}}) \
        == "environment-2.json"  # the same machine, only busier: not a change
    assert "changed between" not in report.build(run).read_text()
    other = env | {"versions": env["versions"] | {"granian": "9.9.9"},
                   "lab": {"commit": "f" * 40, "dirty": False}}
    assert run.record_environment(other) == "environment-3.json"
    md = report.build(run).read_text()
    (changed,) = [line for line in md.split("## Environment", 1)[1].splitlines()
                  if "changed between" in line]
    assert "session 3" in changed and f"granian {env['versions']['granian']} → 9.9.9" in changed
    assert "aaaaaaaaaaaa → ffffffffffff" in changed
    assert run.read_json("environment.json") == env  # the first session's, as written


def test_repeats_show_median_and_range(tmp_path: Path) -> None:
    config = "[lab]\nrepeats = 3\n" + CONFIG
    matrix = parse(tomllib.loads(config))
    records = []
    walls = {1: 0.50, 2: 0.60, 3: 0.52}
    for cell in matrix.cells():
        if cell.endpoint.path != "/async-blocking" or cell.server_id != "uvicorn-w1":
            continue
        r = record_for(cell, matrix, "repeats")
        m = measurement(burst_samples(cell, 0.5), walls[cell.repeat], 0.01)
        r["figures"] = summarize(m).to_json()
        records.append(r)
    md = report.build(make_run(tmp_path, config, "repeats", records)).read_text()
    row = table_rows(section_for(md, "/async-blocking"))[0]
    assert row["wall s"].startswith("0.52 (0.5–0.6) ⚠")  # spread 19 % of the median: noisy
    noise = md.split("## Noise", 1)[1].split("\n## ", 1)[0]
    listed = [[c.strip() for c in x.strip("|").split("|")] for x in noise.splitlines()
              if x.startswith("| article")]
    assert listed == [["article", "`/async-blocking`", "10", "uvicorn-w1", "19 %"]]


def repeated_async_blocking(tmp_path: Path, walls: dict[str, tuple[float, ...]]
                            ) -> dict[str, RowFacts]:
    config = f"[lab]\nrepeats = {len(next(iter(walls.values())))}\n" + CONFIG
    matrix = parse(tomllib.loads(config))
    records = []
    for cell in matrix.cells():
        if cell.endpoint.path != "/async-blocking" or cell.server_id not in walls:
            continue
        r = record_for(cell, matrix, "verdicts")
        wall = walls[cell.server_id][cell.repeat - 1]
        r["figures"] = summarize(measurement(burst_samples(cell, wall), wall, 0.01)).to_json()
        records.append(r)
    return rows_of(model(make_run(tmp_path, config, "verdicts", records)), "/async-blocking")


def test_overlapping_spreads_say_no_clear_difference(tmp_path: Path) -> None:
    """DESIGN: a "faster" verdict needs non-overlapping spreads, otherwise the report
    says "no clear difference"."""
    rows = repeated_async_blocking(tmp_path, {"uvicorn-w1": (0.50, 0.56, 0.60),
                                              "granian-w1": (0.52, 0.55, 0.58)})
    assert rows["granian-w1"].is_baseline  # the lower median
    assert rows["uvicorn-w1"].verdict is not None
    assert rows["uvicorn-w1"].verdict.significant is False


def test_separate_spreads_beyond_the_noise_are_significant(tmp_path: Path) -> None:
    rows = repeated_async_blocking(tmp_path, {"uvicorn-w1": (0.50, 0.51, 0.52),
                                              "granian-w1": (0.30, 0.31, 0.32)})
    assert rows["granian-w1"].is_baseline
    verdict = rows["uvicorn-w1"].verdict
    assert verdict is not None and verdict.significant is True
    assert verdict.ratio == pytest.approx(0.51 / 0.31)


def test_report_cli_rebuilds_from_files(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    result = run_lab("report", run.path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(run.path / "report.md")
    md = (run.path / "report.md").read_text()
    assert "granian-w2-hello-hello-c4" in md


def test_report_cli_nonexistent_dir(tmp_path: Path) -> None:
    result = run_lab("report", tmp_path / "no-such-run")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert "no-such-run" in lines[0]
    assert "Traceback" not in result.stderr + result.stdout


def test_report_cli_not_a_run_dir(tmp_path: Path) -> None:
    result = run_lab("report", tmp_path)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stderr.startswith("error: ")


def test_how_many_workers_says_the_scaling_and_names_limited_rows(tmp_path: Path) -> None:
    """granian: 2 workers gave 1.8× the req/s of 1 over 3 repeats each, apart: significant.
    uvicorn's 2-worker row saturated the shared machine: named, not judged."""
    config = ("[lab]\nrepeats = 3\n" + CONFIG).replace("workers = [1]", "workers = [1, 2]")
    matrix = parse(tomllib.loads(config))
    rps = {"granian-w1": (1000, 1010, 1020), "granian-w2": (1800, 1820, 1840),
           "uvicorn-w1": (900, 910, 920), "uvicorn-w2": (1500, 1510, 1520)}
    records = []
    for cell in matrix.cells():
        if cell.experiment.kind != "closed":
            continue
        r = record_for(cell, matrix, "workers")
        n = rps[cell.server_id][cell.repeat - 1]
        r["figures"] = summarize(measurement(
            [Sample(0.2 + i / 1e4, 0.004, None, 1000 + i % cell.workers) for i in range(n)],
            1.0, 0.2, clients=1)).to_json()
        r["figures"]["machine_saturated"] = cell.server_id == "uvicorn-w2"
        r["status"], r["failure"] = "ok", None
        records.append(r)
    rows = rows_of(model(make_run(tmp_path, config, "workers", records)), "/hello")
    granian, uvicorn = rows["granian-w2"].scaling, rows["uvicorn-w2"].scaling
    assert granian is not None and uvicorn is not None
    assert granian.ratio == pytest.approx(1.8, abs=0.01) and not granian.limited
    assert granian.verdict.significant is True and granian.workers_used == 2
    assert uvicorn.limited  # named, not judged
    assert rows["granian-w1"].scaling is None and rows["uvicorn-w1"].scaling is None


def test_threads_are_shown_per_configuration_and_each_value_scales_against_its_own(
        tmp_path: Path) -> None:
    """lab.threads = [40, 100]: the configurations as run say each one's threads, and 2
    workers are compared with 1 worker of the same threads (1.8× at 40, 3× at 100)."""
    config = ("[lab]\nrepeats = 3\nthreads = [40, 100]\n" + CONFIG).replace(
        "workers = [1]", "workers = [1, 2]")
    matrix = parse(tomllib.loads(config))
    rps = {(1, 40): 1000, (2, 40): 1800, (1, 100): 500, (2, 100): 1500}
    records = []
    for cell in matrix.cells():
        if cell.experiment.kind != "closed" or cell.server != "uvicorn":
            continue
        r = record_for(cell, matrix, "threads")
        n = round(rps[cell.workers, cell.threads] * (1 + cell.repeat / 100))
        r["figures"] = summarize(measurement(
            [Sample(0.2 + i / 1e4, 0.004, None, 1000 + i % cell.workers) for i in range(n)],
            1.0, 0.2, clients=1)).to_json()
        r["status"], r["failure"] = "ok", None
        records.append(r)
    run = make_run(tmp_path, config, "threads", records)
    rows = rows_of(model(run), "/hello")
    assert set(rows) == {"uvicorn-w1-t40", "uvicorn-w2-t40", "uvicorn-w1-t100",
                         "uvicorn-w2-t100"}
    at40, at100 = rows["uvicorn-w2-t40"].scaling, rows["uvicorn-w2-t100"].scaling
    assert at40 is not None and at100 is not None
    assert at40.ratio == pytest.approx(1.8, abs=0.01)
    assert at100.ratio == pytest.approx(3.0, abs=0.02)
    md = report.build(run).read_text()
    assert "uvicorn with 100 threads ×3.0" in md and "uvicorn with 40 threads ×1.8" in md
    settings = md.split("## Server configurations as run", 1)[1].split("\n## ", 1)[0]
    assert "*threads* is the size of anyio's default thread limiter" in settings
    assert "(40 threads)" not in settings  # not said of every server any more
    shown = {r["configuration"]: (r["workers"], r["threads"])
             for r in table_rows(settings, main_only=True)}
    assert shown == {"uvicorn-w1-t40": ("1", "40"), "uvicorn-w2-t40": ("2", "40"),
                     "uvicorn-w1-t100": ("1", "100"), "uvicorn-w2-t100": ("2", "100")}


def test_a_run_without_threads_has_no_threads_column(built: str) -> None:
    settings = built.split("## Server configurations as run", 1)[1].split("\n## ", 1)[0]
    assert all("threads" not in r for r in table_rows(settings, main_only=True))
    assert "(40 threads)" in settings


def _probe_row(sid: str, idle: tuple[float, float], loaded: tuple[float, float, float]
               ) -> Row:
    """An interference row of one repeat: idle probe (p50, p90), loaded (p50, p90, max)."""
    return Row(sid, sid.split("-")[0], 1, {}, get("interference").headline, (result({
        "requests": 10, "ok": 10,
        "idle_latency_ms": {"p50": idle[0], "p90": idle[1]},
        "latency_ms": dict(zip(("p50", "p90", "max"), loaded, strict=True))}, server_id=sid),))


def _stall(endpoint: str, params: dict[str, Any], *rows: Row) -> Comparison:
    return Comparison("stall", "interference", endpoint, {"background": 8, "probe": "/hello"},
                      params, "rawhttp", rows)


def test_a_probe_is_as_fast_as_idle_only_within_idle_s_own_spread() -> None:
    """24.2 ms against 9.22 ms idle is slowed, not as fast as idle (it was, under the old
    3× idle + 1 ms rule); 4.6 ms within idle's 4.0–5.0 ms is. A max of 1.5 s under a fine
    median is said, not hidden."""
    comp = judged(_stall("/db", {"delay": 0.05},
                         _probe_row("uvicorn-w1", (9.22, 10.5), (24.2, 24.6, 41.0)),
                         _probe_row("granian-w1", (4.0, 5.0), (4.6, 6.0, 1500.0)),
                         _probe_row("hypercorn-w1", (4.0, 5.0), (40.0, 45.0, 50.0))), 0.0)
    effect = {row.server_id: row.effect for row in comp.rows}
    assert effect == {"uvicorn-w1": "slowed", "granian-w1": "as idle",
                      "hypercorn-w1": "stalled"}
    found = interference_finding(comp)
    assert found is not None and "1500" in found and "41" in found  # every row's max


def test_a_probe_whose_tail_stalled_is_not_as_fast_as_idle() -> None:
    """uvicorn-w2 with /async-blocking busy: the p50 probe found the free worker (0.47 ms
    against 0.38 idle), one in ten the blocked one (p90 102 ms). It read "as fast as idle"
    and did not count as stalled in the In short."""
    comp = judged(_stall("/async-blocking", {"delay": 0.05},
                         _probe_row("uvicorn-w2", (0.378, 0.5), (0.471, 102.0, 204.0)),
                         _probe_row("uvicorn-w1", (0.4, 0.5), (0.45, 0.6, 0.9))), 0.0)
    assert [row.effect for row in comp.rows] == ["stalled some", "as idle"]
    assert [row.stalled for row in comp.rows] == [True, False]
    # Without a delay the bar is 10× idle: a `def` sqlite query's 4.4 ms p90 beside a
    # 0.38 ms idle p50 (0.8 ms idle p90) is a wait behind the GIL, not a stall.
    db = judged(_stall("/db/def", {}, _probe_row("uvicorn-w1", (0.38, 0.8),
                                                 (0.99, 4.42, 26.9))), 0.0)
    assert [row.effect for row in db.rows] == ["slowed"]


WAYS = """
[lab]
app = "apps.realistic:app"
repeats = 1

[servers.uvicorn]
workers = [1]

[[experiments]]
name = "ways"
kind = "burst"
endpoints = ["/blocking", "/async-blocking"]
requests = [10]
params = { delay = 0.05 }
ways = true

[[experiments]]
name = "mixed"
kind = "burst"
endpoints = ["/blocking", "/async-blocking"]
requests = [10]
params = { delay = 0.05 }
"""


def test_endpoints_are_ways_only_where_the_config_says_so(tmp_path: Path) -> None:
    """Two experiments measure the same endpoints; only the one with `ways = true` is
    ranked as ways of writing one thing (In short's `def` or `async def`)."""
    matrix = parse(tomllib.loads(WAYS))
    records = [record_for(c, matrix, "ways") for c in matrix.cells()]
    md = report.build(make_run(tmp_path, WAYS, "ways", records)).read_text()
    found = md.split("## Findings", 1)[1].split("\n## ", 1)[0]
    short = md.split("## In short", 1)[1].split("\n## ", 1)[0]
    lines = {x.split("`")[1]: x for x in found.splitlines() if " compared, `" in x}
    assert lines["ways"].startswith("- **Ways compared")
    assert lines["mixed"].startswith("- **Endpoints compared")
    assert "`ways`" in short and "`mixed`" not in short


def test_ways_must_be_a_boolean(tmp_path: Path) -> None:
    path = tmp_path / "ways.toml"
    path.write_text(WAYS.replace("ways = true", 'ways = "yes"'))
    result = run_lab("validate", path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: experiments[0].ways: must be true or false, got 'yes'"]


@pytest.mark.parametrize(("app", "claimed"), [("apps.article:app", True),
                                              ("shop.main:app", False)])
def test_the_thread_pool_is_stated_only_for_an_app_known_to_be_fastapi(
        tmp_path: Path, app: str, claimed: bool) -> None:
    config = f'[lab]\napp = "{app}"\n' + CONFIG
    matrix = parse(tomllib.loads(config))
    records = [record_for(c, matrix, "pool") for c in matrix.cells()]
    md = report.build(make_run(tmp_path, config, "pool", records)).read_text()
    settings = md.split("## Server configurations as run", 1)[1].split("\n## ", 1)[0]
    assert ("thread pool" in settings) is claimed


def test_an_open_model_heading_leaves_out_settings_it_does_not_use(tmp_path: Path) -> None:
    config = """
[servers.uvicorn]
workers = [1]

[[experiments]]
name = "rate"
kind = "open"
endpoints = ["/hello"]
rates = [100]
duration_s = 1
"""
    matrix = parse(tomllib.loads(config))
    records = [record_for(c, matrix, "open") for c in matrix.cells()]
    md = report.build(make_run(tmp_path, config, "open", records)).read_text()
    (heading,) = [x for x in md.splitlines() if x.startswith("### ")]
    assert "rates = 100" in heading and "None" not in heading and "slo" not in heading


def _open_line(sid: str, rate: int, p99: float, errors: int = 0) -> dict[str, Any]:
    return {"schema_version": SCHEMA_VERSION,
            "cell_id": f"{sid}-rate-hello-rps{rate}-r1", "repeat": 1, "experiment": "rate",
            "kind": "open", "endpoint": "/hello", "load": {"rates": rate, "slo_p99_ms": 20},
            "params": {}, "server_id": sid, "server": sid.split("-")[0], "workers": 1,
            "options": {}, "server_version": "1", "status": "ok", "failure": None,
            "figures": {"requests": 2000, "ok": 2000 - errors, "latency_samples": 2000,
                        "latency_ms": {"p99": p99},
                        "errors": {"http_500": errors} if errors else {}}}


def test_a_fixed_rate_knee_is_the_last_rate_within_the_slo_before_the_first_over_it() -> None:
    """uvicorn met the 20 ms SLO at 100 and 200 req/s, not at 400; granian's 200 req/s
    failed requests, so its 400 (within the SLO again) does not count."""
    facts = Report.of([_open_line("uvicorn-w1", 100, 5.0), _open_line("uvicorn-w1", 200, 15.0),
                       _open_line("uvicorn-w1", 400, 80.0), _open_line("granian-w1", 100, 4.0),
                       _open_line("granian-w1", 200, 6.0, errors=3),
                       _open_line("granian-w1", 400, 9.0)])
    assert {(k.server_id, k.held, k.over) for k in facts.knees} == {
        ("uvicorn-w1", 200, 400), ("granian-w1", 100, 200)}
