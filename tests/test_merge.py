"""``python -m lab report RUN_DIR RUN_DIR --out DIR``: one report from several runs, as from
the three ``tox -e uvicorn|hypercorn|granian`` runs."""

import shutil
import tomllib
from pathlib import Path

from lab.matrix.config import parse
from lab.store.results import RunDir
from tests.conftest import json_lines, run_lab
from tests.test_report import CONFIG, make_run, record_for, section_for, table_rows


def server_run(tmp_path: Path, server: str) -> RunDir:
    """A run of CONFIG restricted to one server (as ``--server NAME`` makes it)."""
    matrix = parse(tomllib.loads(CONFIG))
    records = [record_for(c, matrix, server) for c in matrix.cells() if c.server == server]
    return make_run(tmp_path, CONFIG, f"run-{server}", records)


def test_merge_of_runs_on_different_environments_warns_and_has_every_row(
        tmp_path: Path) -> None:
    uvicorn, granian = server_run(tmp_path, "uvicorn"), server_run(tmp_path, "granian")
    env = granian.read_json("environment.json")
    granian.write_json("environment.json", env | {
        "versions": env["versions"] | {"granian": "9.9.9"},
        "lab": {"commit": "f" * 40, "dirty": False}})
    out = tmp_path / "combined"
    result = run_lab("report", uvicorn.path, granian.path, "--out", out)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(out / "report.md")
    assert "warning: the runs' environments differ" in result.stderr
    assert "→ 9.9.9" in result.stderr
    md = (out / "report.md").read_text()
    assert "This report merges 2 runs" in md
    warning = next(x for x in md.splitlines() if "The runs' environments differ" in x)
    assert "run-granian vs run-uvicorn" in warning and "→ 9.9.9" in warning
    assert "lab commit" in warning and "weaker evidence" in warning
    for endpoint in ("/blocking", "/async-blocking", "/hello"):
        rows = table_rows(section_for(md, endpoint), main_only=True)
        assert [r["configuration"] for r in rows] == ["uvicorn-w1", "granian-w1", "granian-w2"]
        # each row says which run measured it: they did not run side by side
        assert [r["run"] for r in rows] == ["run-uvicorn", "run-granian", "run-granian"]
        # a verdict against a baseline of another run says so; within one run it does not
        base = next(r["run"] for r in rows if r["verdict"] == "baseline")
        for r in rows:
            if r["verdict"] and r["verdict"] != "baseline":
                assert r["verdict"].endswith("; rows from different runs") == (r["run"] != base)
    assert "## Failed cells" in md and "granian-w2-hello-hello-c4" in md
    # the merged folder is a run folder: it rebuilds from its own files
    (out / "report.md").unlink()
    again = run_lab("report", out)
    assert again.returncode == 0, again.stderr
    assert (out / "report.md").read_text() == md


def test_merge_of_runs_on_one_environment_says_only_that_they_did_not_run_together(
        tmp_path: Path) -> None:
    runs = [server_run(tmp_path, s) for s in ("uvicorn", "granian")]
    out = tmp_path / "combined"
    result = run_lab("report", *(r.path for r in runs), "--out", out)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    md = (out / "report.md").read_text()
    assert "This report merges 2 runs" in md and "environments differ" not in md


def test_a_cell_in_two_runs_keeps_the_later_line_and_says_so(tmp_path: Path) -> None:
    first = make_run(tmp_path, run_id="first")
    second = make_run(tmp_path, run_id="second")
    result = run_lab("report", first.path, second.path, "--out", tmp_path / "both")
    assert result.returncode == 0, result.stderr
    assert "uvicorn-w1-article-blocking-n10 is in first and second: the line from second " \
           "counts" in result.stderr
    merged = json_lines(RunDir(tmp_path / "both"))
    assert len(merged) == 9 and {r["source_run"] for r in merged} == {"second"}


def test_several_runs_need_out_and_out_is_never_a_run(tmp_path: Path) -> None:
    a, b = make_run(tmp_path, run_id="a"), make_run(tmp_path, run_id="b")
    for args in ((a.path, b.path), (a.path, b.path, "--out", b.path),
                 (a.path, "--out", tmp_path)):
        result = run_lab("report", *args)
        assert result.returncode == 2, args
        assert result.stderr.startswith("error: ") and len(result.stderr.splitlines()) == 1


def test_one_run_with_out_is_a_copy_that_says_so(tmp_path: Path) -> None:
    run = make_run(tmp_path, run_id="only")
    result = run_lab("report", run.path, "--out", tmp_path / "copy")
    assert result.returncode == 0, result.stderr
    md = (tmp_path / "copy" / "report.md").read_text()
    assert "A copy of run `only`" in md and "merges" not in md
    assert len(table_rows(section_for(md, "/hello"))) == 3
    assert not (run.path / "report.md").exists()  # the run itself is left as it was


def test_merging_a_run_with_itself_or_with_a_copy_of_it_is_refused(tmp_path: Path) -> None:
    run = make_run(tmp_path / "a", run_id="x")
    copy = tmp_path / "b" / "x"
    shutil.copytree(run.path, copy)
    link = tmp_path / "link"
    link.symlink_to(run.path)
    for other in (run.path, link, copy):
        result = run_lab("report", run.path, other, "--out", tmp_path / "merged")
        assert result.returncode == 2, (other, result.stderr)
        [line] = result.stderr.splitlines()
        assert line.startswith(f"error: report: {run.path} and {other} are ")
        assert line.endswith("; merge different runs")
    assert "copies of one run (x, the same results)" in line
    assert not (tmp_path / "merged").exists()
    # the same id with other results (a copy taken before the run finished) is two runs
    results = (copy / "results.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)
    (copy / "results.jsonl").write_text("".join(results[:-1]), encoding="utf-8")
    assert run_lab("report", run.path, copy, "--out", tmp_path / "merged").returncode == 0
