"""Where each side ran, as the report, ``compare`` and ``merge`` say it: results lines of a
run on remote hosts (a Dask scheduler) carry the server host and the load hosts in their
placement; runs in different places are compared and merged only with a warning."""

import tomllib
from dataclasses import replace
from pathlib import Path
from typing import Any

from lab import report
from lab.matrix.config import parse
from lab.report.where import places, remote_line, warning
from lab.store.results import RunDir
from lab.store.schema import LoadHostsFigures, Result
from tests.conftest import result, run_lab
from tests.test_report import CONFIG, make_run, record_for

SRV_A = {"name": "srv-a", "address": "10.231.0.1", "cores": 16, "cpu_model": "AMD EPYC 7R13"}
LOAD_B = {"name": "load-b", "address": "10.231.0.2", "cores": 4, "cpu_model": "Xeon E-2224"}
LOAD_C = {"name": "load-c", "address": "10.231.0.3", "cores": 4, "cpu_model": "Xeon E-2224"}
SCHEDULER = "tls://10.231.0.1:8786"


def remote(server: dict[str, Any] = SRV_A, load: tuple[dict[str, Any], ...] = (LOAD_B,),
           **more: Any) -> dict[str, Any]:
    """A placement as a run on remote hosts records it."""
    shared = any((h["name"], h["address"]) == (server["name"], server["address"])
                 for h in load)
    return {"server_cpus": "0-15", "client_cpus": "0-3", "server_cores": server["cores"],
            "shared": shared, "scheduler": SCHEDULER, "server_host": server,
            "load_hosts": list(load)} | more


def placed(*placements: dict[str, Any]) -> list[Result]:
    return [replace(result({}), placement=p) for p in placements]


def test_a_remote_run_names_each_side_s_host_the_scheduler_and_the_daemon_s_cost() -> None:
    line = remote_line(placed(remote(daemon_cpu_pct=3.1)))
    assert line == ("- placement: servers on srv-a (10.231.0.1, 16 cores, AMD EPYC 7R13), "
                    "load from load-b (10.231.0.2, 4 cores, Xeon E-2224) over the network via "
                    "the scheduler tls://10.231.0.1:8786; the Dask worker daemon on the "
                    "server host idled at 3.1 % of a core")


def test_the_daemon_s_cost_over_the_cells_is_its_range_and_unmeasured_is_not_said() -> None:
    assert "idled at 2.9–3.4 % of a core" in remote_line(placed(
        remote(daemon_cpu_pct=3.4), remote(daemon_cpu_pct=2.9)))
    assert "daemon" not in remote_line(placed(remote()))


def test_several_load_hosts_are_each_named() -> None:
    line = remote_line(placed(remote(load=(LOAD_C, LOAD_B))))
    assert "load from load-b (10.231.0.2, 4 cores, Xeon E-2224) and load-c (10.231.0.3" in line


def test_the_load_hosts_start_spread_is_the_widest_of_the_cells() -> None:
    two = remote(load=(LOAD_B, LOAD_C))
    cells = [replace(r, figures=replace(r.figures, load_hosts=LoadHostsFigures(2, spread,
                                                                               False)))
             for r, spread in zip(placed(two, two), (0.0012, 0.0042), strict=True)]
    assert "the load hosts started at most 4.2 ms apart" in remote_line(cells)
    alone = [replace(r, placement=remote()) for r in cells]
    assert "started" not in remote_line(alone)  # one load host: nothing to spread


def test_a_load_host_that_is_the_server_host_shared_it() -> None:
    alone = remote_line(placed(remote(load=(SRV_A,), client_cpus="12-15")))
    assert alone.startswith("- placement: servers and load on srv-a (10.231.0.1, 16 cores")
    assert "servers and load shared that host: servers on CPUs 0-15, load on 12-15" in alone
    assert "over the network" not in alone
    same_cores = remote_line(placed(remote(load=(SRV_A,), client_cpus="0-15")))
    assert "shared that host and its cores** (CPUs 0-15)" in same_cores
    assert "machine saturated" in same_cores
    both = remote_line(placed(remote(load=(SRV_A, LOAD_B))))
    assert "load from it (servers and load shared that host" in both
    assert "and from load-b (10.231.0.2, 4 cores, Xeon E-2224) over the network" in both


def test_places_differ_by_host_not_by_the_scheduler_s_port() -> None:
    a = places(placed(remote()))
    moved = places(placed(remote(scheduler="tls://10.231.0.1:9999", daemon_cpu_pct=5.0)))
    reordered = places(placed(remote(load=(LOAD_C, LOAD_B))))
    assert warning([("A", a), ("B", moved)]) is None
    assert warning([("A", places(placed(remote(load=(LOAD_B, LOAD_C))))), ("B", reordered)]) \
        is None
    for other in ({**SRV_A, "cores": 8}, {**SRV_A, "cpu_model": "AMD EPYC 9R14"},
                  {**SRV_A, "address": "10.231.0.9"}, {**SRV_A, "name": "srv-z"}):
        assert warning([("A", a), ("B", places(placed(remote(server=other))))]) is not None
    assert warning([("A", a), ("B", places(placed(remote(load=(LOAD_C,)))))]) == (
        "the runs ran in different places (A: servers on srv-a, load from load-b; B: servers "
        "on srv-a, load from load-c): their figures are not comparable as equals")


def run_of(tmp_path: Path, run_id: str, placement: dict[str, Any] | None = None,
           only: str | None = None) -> RunDir:
    """A run of CONFIG (only server ``only``'s cells if given), every line placed at
    ``placement`` (None: where the lab put it on this machine)."""
    matrix = parse(tomllib.loads(CONFIG))
    records = [record_for(c, matrix, run_id) for c in matrix.cells()
               if only in (None, c.server)]
    for r in records:
        r["placement"] = placement or r["placement"]
    return make_run(tmp_path, CONFIG, run_id, records)


def this_run(md: str) -> str:
    return md.split("## This run", 1)[1].split("\n## ", 1)[0]


def test_the_report_of_a_remote_run_says_where_each_side_ran(tmp_path: Path) -> None:
    run = run_of(tmp_path, "remote", remote())
    lines = [line | {"placement": remote(daemon_cpu_pct=2.9 + 0.5 * (i % 2))}
             for i, line in enumerate(r.to_json() for r in run.load().records)]
    md = report.build(make_run(tmp_path / "daemon", CONFIG, "remote", lines)).read_text()
    placement = next(x for x in this_run(md).splitlines() if x.startswith("- placement:"))
    # the daemon's CPU, measured per cell, is a range on the line, not a varied placement
    assert placement == remote_line(placed(remote(daemon_cpu_pct=2.9),
                                           remote(daemon_cpu_pct=3.4)))
    as_run = md.split("## Server configurations as run", 1)[1].split("\n## ", 1)[0]
    rows = [x for x in as_run.splitlines() if x.startswith("| uvicorn-w1 ")]
    hosts = next(x for x in rows if "srv-a" in x).strip("|").split("|")
    assert [c.strip() for c in hosts[1:5]] == ["0-15", "0-3", "srv-a", "load-b"]
    assert "the lab ran on this machine, the servers and the load on the hosts" in md


def test_cells_on_different_hosts_say_their_placement_varied(tmp_path: Path) -> None:
    run = run_of(tmp_path, "mixed")
    lines = [line | {"placement": remote()} if line["server"] == "granian" else line
             for line in (r.to_json() for r in run.load().records)]
    mixed = make_run(tmp_path / "again", CONFIG, "mixed", lines)
    md = report.build(mixed).read_text()
    assert "- placement: varied between cells (see *as run*)" in this_run(md)


def test_compare_of_a_local_and_a_remote_run_warns_they_ran_in_different_places(
        tmp_path: Path) -> None:
    base, new = run_of(tmp_path, "base"), run_of(tmp_path, "new", remote())
    out = run_lab("compare", base.path, new.path)
    assert out.returncode == 0, out.stderr
    header = out.stdout.split("## Cells", 1)[0]
    assert ("> **⚠ The runs ran in different places** (BASE: servers and load on one host; "
            "NEW: servers on srv-a, load from load-b): their figures are not comparable as "
            "equals") in header
    row = next(x for x in out.stdout.splitlines() if x.startswith("| placement "))
    assert "servers on srv-a, load from load-b" in row and "⚠ differs" in row


def test_compare_of_two_runs_in_one_place_gives_no_such_warning(tmp_path: Path) -> None:
    local = run_lab("compare", run_of(tmp_path, "a").path, run_of(tmp_path, "b").path)
    assert local.returncode == 0, local.stderr
    assert "different places" not in local.stdout and "| placement " not in local.stdout
    moved = remote(scheduler="tls://10.231.0.1:9999")
    hosts = run_lab("compare", run_of(tmp_path, "c", remote()).path,
                    run_of(tmp_path, "d", moved).path)
    assert hosts.returncode == 0, hosts.stderr
    assert "different places" not in hosts.stdout


def test_merge_of_runs_in_different_places_warns_and_its_report_says_so(
        tmp_path: Path) -> None:
    here = run_of(tmp_path, "run-here", only="uvicorn")
    there = run_of(tmp_path, "run-there", remote(), only="granian")
    out = tmp_path / "combined"
    merged = run_lab("report", here.path, there.path, "--out", out)
    assert merged.returncode == 0, merged.stderr
    assert ("warning: the runs ran in different places (run-here: servers and load on one "
            "host; run-there: servers on srv-a, load from load-b): their figures are not "
            "comparable as equals") in merged.stderr.splitlines()
    md = (out / "report.md").read_text()
    head = md.split("## These runs", 1)[0]
    assert "> **⚠ The runs ran in different places** (run-here: servers and load on one " \
           "host; run-there: servers on srv-a, load from load-b)" in head
    assert "- placement: varied between cells (see *as run*)" in md


def test_merge_of_two_local_runs_gives_no_such_warning(tmp_path: Path) -> None:
    a, b = run_of(tmp_path, "run-a", only="uvicorn"), run_of(tmp_path, "run-b", only="granian")
    merged = run_lab("report", a.path, b.path, "--out", tmp_path / "combined")
    assert merged.returncode == 0, merged.stderr
    assert "different places" not in merged.stderr
    assert "different places" not in (tmp_path / "combined" / "report.md").read_text()
