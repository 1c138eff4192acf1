"""The results line, written and read by one class (`lab.store.schema`), and its docs."""

import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from lab.store.results import RunDir
from lab.store.schema import (
    PARTS,
    Failure,
    FailureKind,
    Figures,
    KneeProbe,
    LoopEndpoint,
    LoopSite,
    LoopWorker,
    MergedRun,
    Process,
    Result,
    RunInfo,
)
from tests.conftest import ROOT

EXAMPLE = ROOT / "reports" / "example" / "results.jsonl"


def example_lines() -> dict[str, dict[str, Any]]:
    """The first line of each kind in the example run (version 1 lines, as committed)."""
    out: dict[str, dict[str, Any]] = {}
    for text in EXAMPLE.read_text(encoding="utf-8").splitlines():
        line = json.loads(text)
        out.setdefault(line["kind"], line)
    return out


def v2(line: dict[str, Any]) -> dict[str, Any]:
    return Result.from_json(line).to_json()


def failed(line: dict[str, Any], kind: str = "server_crashed") -> dict[str, Any]:
    return line | {"status": "failed", "figures": None, "process": None,
                   "failure": {"kind": kind, "reason": "exited with 1", "log_tail": "boom"}}


def with_clients(line: dict[str, Any]) -> dict[str, Any]:
    """A closed line measured by 2 client processes (``clients = 2``)."""
    return line | {"figures": line["figures"] | {"clients": 2,
                                                   "client_cpu_busiest_pct": 61.5}}


def lines_of_each_kind() -> list[dict[str, Any]]:
    lines = example_lines()
    return [*lines.values(), with_clients(lines["closed"]), failed(lines["burst"])]


def read_file(tmp_path: Path, lines: list[dict[str, Any]]) -> tuple[list[Result], list[str]]:
    run = RunDir.create(tmp_path, "r", "")
    run.results.write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    loaded = run.load()
    return loaded.records, loaded.warnings


# ---- round trip ---------------------------------------------------------------------------

@pytest.mark.parametrize("line", lines_of_each_kind(),
                         ids=lambda x: f"{x['kind']}-{x['engine']}-{x['status']}")
def test_a_line_read_back_is_the_line_written(line: dict[str, Any]) -> None:
    result = Result.from_json(line)
    written = result.to_json()
    assert Result.from_json(written) == result
    assert json.loads(json.dumps(written)) == written  # plain JSON, nothing lost on disk
    assert written["schema_version"] == 2


def test_lines_read_from_one_file_share_their_repeats_and_stay_apart(tmp_path: Path) -> None:
    """Two lines of one file share equal options, but each keeps its own figures."""
    line = example_lines()["burst"]
    other = line | {"cell_id": line["cell_id"].replace("-r1", "-r2"), "repeat": 2,
                    "figures": line["figures"] | {"wall_s": 9.5}}
    (a, b), warnings = read_file(tmp_path, [line, other])
    assert warnings == []
    assert a.options == b.options == line["options"]
    assert a.figures and b.figures and (a.figures.wall_s, b.figures.wall_s) == \
        (line["figures"]["wall_s"], 9.5)
    assert [r.to_json() for r in (a, b)] == [v2(line), v2(other)]


# ---- version 1 lines ----------------------------------------------------------------------

def test_a_v1_burst_line_has_the_figures_the_report_shows() -> None:
    raw = example_lines()["burst"]
    r = Result.from_json(raw)
    assert r.figures and r.figures.burst
    assert r.figures.wall_s == raw["figures"]["wall_s"]
    assert r.figures.burst.send_spread_ms == raw["figures"]["send_spread_ms"]
    assert r.figures.burst.connect == "warm"
    assert r.figures.inflight_peak == raw["figures"]["inflight_peak"]
    assert r.figures.histogram and r.figures.histogram.total == raw["figures"]["ok"]
    assert r.engine == "rawhttp" and "engine" not in r.to_json()["figures"]
    assert r.start_to_ready_s == raw["process"]["start_to_ready_s"]


def test_a_v1_closed_wrk_line_has_wrks_figures() -> None:
    raw = example_lines()["closed"]
    r = Result.from_json(raw)
    assert r.engine == "wrk" and r.figures and r.figures.wrk
    assert r.figures.rps == raw["figures"]["rps"]
    assert r.figures.wrk.client_threads == raw["figures"]["client_threads"]
    assert r.figures.latency_ms["p99"] == raw["figures"]["latency_ms"]["p99"]
    assert r.figures.burst is None and r.figures.open is None


def test_a_v1_knee_line_has_its_knee_and_every_probe() -> None:
    raw = example_lines()["open"]
    r = Result.from_json(raw)
    assert r.figures and r.figures.knee and r.figures.open
    assert r.figures.knee.knee_rps == raw["figures"]["knee_rps"]
    assert r.figures.knee.knee_bound == raw["figures"]["knee_bound"]
    assert [p.rate for p in r.figures.knee.knee_probes] == \
        [p["rate"] for p in raw["figures"]["knee_probes"]]
    assert r.load == raw["load"] and r.load["rates"] == "auto"


def test_a_v1_interference_line_has_the_probe_idle_and_loaded() -> None:
    raw = example_lines()["interference"]
    r = Result.from_json(raw)
    assert r.figures and r.figures.interference
    assert r.figures.idle_ms("p50") == raw["figures"]["idle_latency_ms"]["p50"]
    assert r.figures.latency_ms["p50"] == raw["figures"]["latency_ms"]["p50"]
    assert r.figures.interference.background_requests == \
        raw["figures"]["background_requests"]


def test_a_v1_line_before_latency_samples_counts_its_successful_requests() -> None:
    raw = example_lines()["burst"]
    figures = {k: v for k, v in raw["figures"].items() if k != "latency_samples"}
    r = Result.from_json(raw | {"figures": figures})
    assert r.figures and r.figures.latency_samples == raw["figures"]["ok"]


def test_a_v1_crashed_line_reads_as_a_crashed_server() -> None:
    """``crashed`` is what older labs called ``server_crashed``."""
    r = Result.from_json(failed(example_lines()["burst"], kind="crashed"))
    assert r.failure == Failure(FailureKind.SERVER_CRASHED, "exited with 1", "boom")
    assert not r.ok


def test_a_line_with_an_unknown_failure_kind_is_skipped_naming_the_kind(
        tmp_path: Path) -> None:
    line = example_lines()["burst"]
    records, warnings = read_file(tmp_path, [failed(line, kind="server_start"), line])
    assert [r.cell_id for r in records] == [line["cell_id"]]
    assert len(warnings) == 1 and "line 1" in warnings[0] and "'server_start'" in warnings[0]


# ---- lines no reader can use ---------------------------------------------------------------

def test_a_malformed_line_names_the_key(tmp_path: Path) -> None:
    line = example_lines()["burst"]
    records, warnings = read_file(tmp_path, [line | {"workers": "two"}])
    assert records == []
    assert warnings == ["results.jsonl line 1 has no valid 'workers'; that cell counts as "
                        "not finished"]


def test_a_line_of_a_future_schema_is_skipped_with_a_warning(tmp_path: Path) -> None:
    burst, closed = example_lines()["burst"], example_lines()["closed"]
    records, warnings = read_file(tmp_path, [v2(burst) | {"schema_version": 3}, v2(closed)])
    assert [r.cell_id for r in records] == [closed["cell_id"]]
    assert len(warnings) == 1 and "line 1" in warnings[0] and "schema_version 3" in warnings[0]
    assert "skipped" in warnings[0]


# ---- docs/results.md ------------------------------------------------------------------------

DOC = ROOT / "docs" / "results.md"


def populated() -> dict[str, set[str]]:
    """What the model writes, by the doc's table heading: the keys of a fully populated
    instance of each class (every optional part and field present)."""
    line = example_lines()["burst"]
    figures = Figures(**{name: part.from_json({}) for name, part in PARTS.items()})
    result = replace(Result.from_json(line), figures=figures, source_run="a-run",
                     failure=Failure(FailureKind.LAB_ERROR, "r", "t"),
                     process=Process.from_json({}))
    info = replace(RunInfo(planned=[]), merged_from=[MergedRun.from_json({})])
    common = set(figures.to_json()) - {k for part in PARTS.values() for k in part.keys()}
    return {
        "A results.jsonl line": set(result.to_json()),
        "failure": set(Failure(FailureKind.LAB_ERROR, "r").to_json()),
        "failure kind": {k.value for k in FailureKind},
        "process": set(Process.from_json({}).to_json()),
        "figures": common,
        **{name: set(getattr(figures, name).to_json()) for name in PARTS},
        "figures.knee_probes": set(KneeProbe.from_json({}).to_json()),
        "figures.loop": set(LoopWorker.from_json({  # the heartbeat's and limiter's too
            "outside_cpu_share": 0.1, "lag_ms": {"p99": 1.0}, "held_outside_share": 0.1,
            "held_outside": [{}], "threads": {}}).to_json()),
        "figures.loop.endpoints": set(LoopEndpoint.from_json(
            {"thread_wait_ms_per_call": 1.0}).to_json()),
        "figures.loop.endpoints.sites": set(LoopSite.from_json({}).to_json()),
        "run.json": set(info.to_json()),
        "run.json merged_from": set(MergedRun.from_json({}).to_json()),
    }


def documented() -> dict[str, set[str]]:
    """The backticked names in the first column of each table of the doc's schema, by its
    section's heading, or by its own first header cell when that is not "key" (a figures
    part: "burst", "knee (open with …)")."""
    text = DOC.read_text(encoding="utf-8").split("\n## A `results.jsonl` line", 1)[1]
    out: dict[str, set[str]] = {}
    heading, table = "A results.jsonl line", None
    for row in text.splitlines():
        if row.startswith("#"):
            heading, table = row.lstrip("# ").replace("`", ""), None
        elif row.startswith("|") and not row.startswith("|---"):
            first = row.split("|")[1].strip()
            if table is None:  # the header row
                table = heading if first == "key" else first.split(" (")[0]
                out.setdefault(table, set())
            else:
                out[table] |= set(re.findall(r"`([^`]+)`", first))
        elif not row.startswith("|"):
            table = None
    return out


def test_the_docs_name_every_key_a_line_has_and_no_other() -> None:
    model, doc = populated(), documented()
    assert sorted(doc) == sorted(model)
    for table, keys in model.items():
        assert doc[table] == keys, (table, keys ^ doc[table])
