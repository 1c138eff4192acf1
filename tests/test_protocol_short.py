""""In short"'s protocol answers from results lines: what keep-alive is worth and which
server for HTTP/2, each against the twin comparison of its own config experiment."""

import tomllib
from dataclasses import replace
from pathlib import Path
from typing import Any

from lab import report
from lab.load.samples import Sample
from lab.load.stats import summarize
from lab.matrix.config import Cell, parse
from lab.run.runner import describe
from lab.store.schema import Failure, FailureKind
from tests.conftest import measurement
from tests.test_report import make_run

CONFIG = """
[servers.uvicorn]
workers = [1]

[servers.gunicorn]
workers = [2]

[[experiments]]
name = "conn"
kind = "closed"
endpoints = ["/hello"]
users = [16]
connection = ["keep-alive", "close"]

[[experiments]]
name = "plain"
kind = "closed"
endpoints = ["/hello"]
users = [16]

[[experiments]]
name = "proto"
kind = "closed"
endpoints = ["/hello"]
users = [16]
http = ["1.1", "2"]
"""
# req/s of each (experiment, server id); a connection per request opened `OPENS` each
RPS = {("conn-keep-alive", "uvicorn-w1"): 1000, ("conn-close", "uvicorn-w1"): 400,
       ("conn-keep-alive", "gunicorn-w2"): 900, ("conn-close", "gunicorn-w2"): 600,
       ("plain", "uvicorn-w1"): 500, ("plain", "gunicorn-w2"): 450,
       ("proto-h1", "uvicorn-w1"): 800, ("proto-h1", "gunicorn-w2"): 700,
       ("proto-h2", "uvicorn-w1"): 1200}
OPENS = {"uvicorn-w1": 1.0, "gunicorn-w2": 0.5}  # gunicorn kept half of them open


def record(cell: Cell, run_id: str) -> dict[str, Any]:
    lab = parse(tomllib.loads(CONFIG)).lab
    rps = RPS.get((cell.experiment.name, cell.server_id))
    if rps is None:  # gunicorn has no h2c
        failure = Failure(FailureKind.NOT_SERVED, "not served: gunicorn does not speak h2c "
                          "(its uvicorn workers have no --http2)", "")
        return describe(cell, lab, run_id, "h2load", "2025-11-26T10:00:00+00:00",
                        failure).to_json()
    pids = [1000, 2000] if cell.workers == 2 else [1000]
    m = measurement([Sample(0.2 + i / 1e4, 0.004, None, pids[i % len(pids)])
                     for i in range(rps)], 1.0, 0.2, clients=1)
    close = cell.experiment.connection == "close"
    figures = replace(summarize(m), tcp_opens=round(rps * OPENS[cell.server_id]) if close
                      else 16)
    return describe(cell, lab, run_id, "wrk", "2025-11-26T10:00:00+00:00", None,
                    figures).to_json()


def short(tmp_path: Path) -> str:
    cells = parse(tomllib.loads(CONFIG)).cells()
    run = make_run(tmp_path, CONFIG, records=[record(c, "20251126-100000-x") for c in cells])
    md = report.build(run).read_text(encoding="utf-8")
    return md.split("## In short", 1)[1].split("## This run", 1)[0]


def answer(md: str, question: str) -> str:
    return md.split(f"**{question}**", 1)[1].split("\n\n", 2)[1]


def test_keep_alive_is_weighed_against_its_own_experiments_twin_and_a_kept_connection_is_flagged(
        tmp_path: Path) -> None:
    text = answer(short(tmp_path), "What is keep-alive worth?")
    # conn-keep-alive's 1000, not plain's 500 (the same endpoint, users and settings)
    assert "uvicorn-w1 2.50× (1000 vs 400 req/s)" in text
    assert "gunicorn-w2 1.50× (900 vs 600 req/s" in text
    assert "⚠ only 0.50 connections per request" in text.split("gunicorn-w2", 1)[1]
    assert "⚠" not in text.split("gunicorn-w2", 1)[0]
    assert "per-worker split 300/300 closing, 450/450 kept alive" in text


def test_http2_is_each_servers_own_ratio_to_http1_and_a_server_without_h2c_is_named(
        tmp_path: Path) -> None:
    md = short(tmp_path)
    text = answer(md, "Which server for HTTP/2?")
    assert text.startswith("- `/hello`, 16 users, HTTP/2 (h2c, 1 stream per connection): ")
    assert "uvicorn-w1 1200 req/s (1.50× its 800 over HTTP/1.1)" in text
    assert "not served (no h2c): gunicorn-w2" in text
    # the plain and h1 comparisons read alike in "Which server?": each names its experiment
    which = answer(md, "Which server?")
    assert "(`plain`)" in which and "(`proto-h1`)" in which
