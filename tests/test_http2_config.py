"""HTTP/2 as an axis: the http and streams settings, their experiments and errors, the start
keys of h2 cells, h2load's argv and report read as the lab's counts, and the new results
fields through a round trip. Pure: no server, no process."""

import tomllib
from dataclasses import replace
from pathlib import Path

import pytest

from lab.errors import ConfigError
from lab.load import h2load
from lab.matrix.config import Matrix, parse
from lab.matrix.endpoint import Endpoint
from lab.report.model import Report
from lab.report.tables import notes, table
from lab.run.runner import status_of
from lab.store.schema import (
    NOT_SERVED,
    Failure,
    FailureKind,
    Figures,
    H2loadFigures,
    Result,
)
from tests.conftest import result

SERVERS = """
[servers.uvicorn]
workers = [1]

[servers.granian]
workers = [1]

[servers.gunicorn]
workers = [1]
"""


def closed(**settings: str) -> str:
    extra = "\n".join(f"{k} = {v}" for k, v in settings.items())
    return f"""
[[experiments]]
name = "hello"
kind = "closed"
endpoints = ["/hello"]
users = [16]
{extra}
"""


def matrix(text: str) -> Matrix:
    return parse(tomllib.loads(text))


def test_http_and_streams_multiply_into_named_experiments() -> None:
    m = matrix(SERVERS + closed(http='["1.1", "2"]', streams="[1, 10]"))
    # HTTP/1.1 has one stream per connection: it is made once, at streams 1
    assert [(e.name, e.http, e.streams) for e in m.experiments] == [
        ("hello-h1", "1.1", 1), ("hello-h2-s1", "2", 1), ("hello-h2-s10", "2", 10)]
    assert {c.id for c in m.cells()} >= {"uvicorn-w1-hello-h1-hello-c16",
                                         "granian-w1-hello-h2-s10-hello-c16"}


def test_http_1_1_is_made_even_when_no_streams_value_is_1() -> None:
    m = matrix(SERVERS + closed(http='["1.1", "2"]', streams="[10, 100]"))
    assert [(e.name, e.streams) for e in m.experiments] == [
        ("hello-h1", 1), ("hello-h2-s10", 10), ("hello-h2-s100", 100)]


def test_a_single_value_keeps_the_experiments_name() -> None:
    m = matrix(SERVERS + closed(http='"2"', streams="[1, 10]"))
    assert [e.name for e in m.experiments] == ["hello-s1", "hello-s10"]
    assert [e.name for e in matrix(SERVERS + closed(http='"2"')).experiments] == ["hello"]


def test_an_experiment_without_the_new_keys_keeps_its_cell_ids_and_keys() -> None:
    """Earlier runs' --resume matches keys: http 1.1 and streams 1, the defaults, are left
    out of a cell's key and results line, so stating them changes nothing."""
    plain, stated = (matrix(SERVERS + closed()),
                     matrix(SERVERS + closed(http='"1.1"', streams="1")))
    assert [c.id for c in plain.cells()] == [c.id for c in stated.cells()]
    assert [c.key(plain.lab) for c in plain.cells()] == \
        [c.key(stated.lab) for c in stated.cells()]
    assert "http" not in plain.experiments[0].shown_settings()
    h2 = matrix(SERVERS + closed(http='"2"')).cells()[0]
    assert h2.key(plain.lab) != plain.cells()[0].key(plain.lab)
    assert h2.experiment.shown_settings()["http"] == "2"


def test_the_burst_connect_axis_names_experiments_as_before() -> None:
    m = matrix(SERVERS + """
[[experiments]]
name = "a"
kind = "burst"
endpoints = ["/hello"]
requests = [10]
connect = ["warm", "cold"]
""")
    assert [e.name for e in m.experiments] == ["a-warm", "a-cold"]


@pytest.mark.parametrize(("settings", "path", "says"), [
    ({"streams": "[1, 10]"}, "experiments[0].streams", 'streams > 1 needs http = "2"'),
    ({"http": '"2"', "engine": '"wrk"'}, "experiments[0].engine", "wrk does not speak HTTP/2"),
    ({"http": '["1.1", "2"]', "engine": '"rawhttp"'}, "experiments[0].engine",
     "rawhttp does not speak HTTP/2"),
    ({"http": '"2"', "clients": "2"}, "experiments[0].clients", "runs on h2load"),
    ({"http": '"3"'}, "experiments[0].http", "must be one of 1.1, 2"),
    ({"http": '["2", "1.2"]'}, "experiments[0].http[1]", "must be one of 1.1, 2"),
    ({"http": '"2"', "streams": "[1, 0]"}, "experiments[0].streams[1]", "must be ≥ 1"),
    ({"http": '"2"', "streams": "1001"}, "experiments[0].streams", "must be ≤ 1000"),
])
def test_bad_protocol_settings_name_their_key(settings: dict[str, str], path: str,
                                              says: str) -> None:
    with pytest.raises(ConfigError) as e:
        matrix(SERVERS + closed(**settings))
    assert e.value.path == path and says in str(e.value)


def test_the_open_model_refuses_http_and_says_why() -> None:
    with pytest.raises(ConfigError) as e:
        matrix(SERVERS + """
[[experiments]]
name = "r"
kind = "open"
endpoints = ["/hello"]
rates = [100]
http = "2"
""")
    assert e.value.path == "experiments[0].http"
    assert "coordinated omission" in str(e.value)


def test_each_server_declares_how_it_serves_h2c() -> None:
    m = matrix(SERVERS + closed(http='["1.1", "2"]')
               + '\n[servers.hypercorn]\nworkers = [1]\n')
    by = {(c.server, c.experiment.http): c for c in m.cells()}
    assert by["uvicorn", "2"].h2c == ("--http", "zttp", "--http2")
    assert by["granian", "2"].h2c == () and by["hypercorn", "2"].h2c == ()
    assert "--http2" in by["gunicorn", "2"].h2c  # a reason: not served
    assert all(by[s, "1.1"].h2c == () for s in ("uvicorn", "granian", "gunicorn"))
    # one start serves granian's and hypercorn's h1 and h2 cells; uvicorn's h2 needs its own
    for server, shared in (("granian", True), ("hypercorn", True), ("uvicorn", False)):
        keys = {by[server, v].start_key("configuration") for v in ("1.1", "2")}
        assert (len(keys) == 1) is shared, server


def test_options_that_rule_out_h2c_say_so() -> None:
    m = matrix("""
[servers.uvicorn]
workers = [1]
options = { http = ["httptools", "zttp"] }

[servers.granian]
workers = [1]
options = { http = "1" }
""" + closed(http='"2"'))
    h2c = {(c.server, dict(c.options).get("http")): c.h2c for c in m.cells()}
    assert h2c["uvicorn", "zttp"] == ("--http2",)
    assert "httptools has no HTTP/2" in h2c["uvicorn", "httptools"]
    assert "HTTP/1.1 only" in h2c["granian", "1"]


def test_h2load_argv_asks_streams_prior_knowledge_and_the_request() -> None:
    get = h2load.argv("http://127.0.0.1:1/hello", Endpoint("/hello"), 16, 10, 2.0, 5.0, 4,
                      True, Path("/t/log"), None)
    assert get[:6] == ["h2load", "-t4", "-c16", "-m10", "-D2000ms", "-N5000ms"]
    assert "--h1" not in get and get[-1] == "http://127.0.0.1:1/hello"
    put = h2load.argv("u", Endpoint("/x", method="PUT", headers=(("x-a", "1"),), body=b"{}"),
                      2, 1, 1.0, 1.0, 4, False, Path("/t/log"), Path("/t/body"))
    assert "-t2" in put and "--h1" in put and "-d/t/body" in put
    assert ":method: PUT" in put and "x-a: 1" in put


REPORT = """starting benchmark...
Application protocol: h2c
finished in 2.00s, 30.00 req/s, 2KB/s
requests: 64 total, 66 started, 64 done, 60 succeeded, 4 failed, 3 errored, 1 timeout
status codes: 60 2xx, 0 3xx, 2 4xx, 0 5xx
"""
LOG = "\n".join([*(f"17963{i}\t200\t{1000 + i}" for i in range(60)),
                 "1796400\t404\t900", "1796401\t404\t950", "1796402\t-1\t0",
                 "1796403\t0\t800"])


def test_h2load_report_is_counted_by_the_endpoints_rules() -> None:
    r = h2load.parse(REPORT, LOG, Endpoint("/hello"))
    assert r.protocol == "h2c" and r.wall_s == pytest.approx(2.0)
    assert r.tally.ok == 60 and r.tally.histogram.total == 60  # successes only
    assert dict(r.tally.errors) == {"http_404": 2, "transport": 3, "timeout": 1,
                                    "no_status": 1}  # an answer whose status it misread
    assert not r.tally.pids  # no worker header: no per-worker split
    assert r.tally.histogram.max_us == 1059
    # an endpoint that expects 404 counts those as its successes
    assert h2load.parse(REPORT, LOG, Endpoint("/x", status=404)).tally.ok == 2
    h1 = h2load.parse(REPORT.replace("h2c", "http/1.1").replace("2.00s", "750.5ms"), LOG,
                      Endpoint("/hello"))
    assert h1.protocol == "http/1.1" and h1.wall_s == pytest.approx(0.7505)


def test_h2load_figures_and_a_not_served_line_round_trip() -> None:
    f = Figures(ok=5, requests=5, rps=2.5, h2load=H2loadFigures("h2c", 2, 0.01))
    assert Figures.from_json(f.to_json()) == f
    line = result(f.to_json()).to_json()
    assert Result.from_json(line).figures == f
    refused = Failure(FailureKind.NOT_SERVED, "not served: gunicorn does not speak h2c (x)")
    assert status_of(refused) == NOT_SERVED and status_of(None) == "ok"
    r = Result.from_json(line | {"status": NOT_SERVED, "figures": None,
                                 "failure": refused.to_json()})
    assert r.status == NOT_SERVED and r.failure == refused and not r.ok
    assert Result.from_json(r.to_json()) == r


def h2_result(server_id: str, protocol: str | None = "h2c", settle_s: float = 0.0,
              refused: str | None = None) -> Result:
    figures = Figures(requests=100, ok=100, rps=1000.0, wall_s=0.1,
                      h2load=H2loadFigures(protocol, 1, settle_s))
    r = replace(result(figures.to_json(), server_id=server_id), engine="h2load",
                load={"users": 16, "http": "2"})
    if refused:
        r = replace(r, status=NOT_SERVED, figures=None,
                    failure=Failure(FailureKind.NOT_SERVED, refused))
    return r


def test_the_report_shows_the_protocol_spoken_and_what_h2load_cannot_check() -> None:
    (comp,) = Report.of_results([
        h2_result("granian-w1"), h2_result("uvicorn-w1", protocol="http/1.1"),
        h2_result("hypercorn-w1", settle_s=5.0),
        h2_result("gunicorn-w1", refused="not served: gunicorn does not speak h2c (x)"),
    ]).comparisons
    main = table(comp).split("<details>")[0]
    rows = {line.split("|")[1].strip(): line for line in main.splitlines() if "-w1 " in line}
    assert "| h2c " in rows["granian-w1"] and "⚠" not in rows["granian-w1"]
    assert "http/1.1 ⚠ not the HTTP 2 asked" in rows["uvicorn-w1"]  # fell back: said so
    assert "not served: gunicorn does not speak h2c (x)" in rows["gunicorn-w1"]
    said = notes(comp)
    assert "no body check" in said[0] and "no per-worker split" in said[0]
    assert len(said) == 2 and said[1].startswith("hypercorn-w1 still had requests in flight")
