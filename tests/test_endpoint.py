"""Endpoints as tables, app_dir and readiness settings: parsed, checked, named; and the one
response check every Python engine applies (wrk's script mirrors it)."""

import json
import os
import tomllib
import uuid
from pathlib import Path

import pytest

from lab.errors import ConfigError
from lab.load.samples import check
from lab.load.wrk import script_args
from lab.matrix.config import Cell, Matrix, parse
from lab.matrix.endpoint import Endpoint, is_subset
from lab.store.results import RunDir
from tests.conftest import TOKEN_ENV, json_lines, leftovers, run_lab

SERVERS = """
[servers.uvicorn]
workers = [1]
"""


def matrix(lab: str = "", endpoints: str = '["/hello"]', engine: str = "",
           base_dir: Path | None = None) -> Matrix:
    text = f"""
[lab]
{lab}
{SERVERS}
[[experiments]]
name = "e"
kind = "closed"
endpoints = {endpoints}
users = [1]
{engine}
"""
    return parse(tomllib.loads(text), base_dir=base_dir)


def error(**kwargs: str) -> str:
    with pytest.raises(ConfigError) as e:
        matrix(**kwargs)
    return str(e.value)


def cells(m: Matrix) -> list[Cell]:
    return m.cells()


def test_a_table_endpoint_carries_its_request_and_check() -> None:
    m = matrix(endpoints='["/", { path = "/items", method = "post", json = { name = "x", '
                         'n = 2 }, status = 201, query = { a = 1, b = true }, headers = { '
                         '"x-key" = "k" }, expect = { json = { name = "x" } } }]')
    plain, post = m.experiments[0].endpoints
    assert plain == Endpoint("/")
    assert post.method == "POST" and post.path == "/items" and post.status == 201
    assert post.body == b'{"name":"x","n":2}'
    assert ("content-type", "application/json") in post.headers
    assert ("x-key", "k") in post.headers
    assert post.query == (("a", "1"), ("b", "true"))
    assert [c.id for c in cells(m)] == ["uvicorn-w1-e-root-c1", "uvicorn-w1-e-post-items-c1"]
    assert post.label == "POST /items?a=1&b=true"


def test_two_requests_to_one_path_need_names() -> None:
    same = '["/items", { path = "/items", query = { page = 2 } }]'
    assert "gives the same cell id" in error(endpoints=same)
    named = '["/items", { path = "/items", query = { page = 2 }, name = "items-p2" }]'
    assert [c.id for c in cells(matrix(endpoints=named))] == [
        "uvicorn-w1-e-items-c1", "uvicorn-w1-e-items-p2-c1"]


@pytest.mark.parametrize(("endpoints", "says"), [
    ('[{ method = "GET" }]', "experiments[0].endpoints[0].path: is required"),
    ('[{ path = "items" }]', "experiments[0].endpoints[0].path: must be a path"),
    ('[{ path = "/a", method = "BREW" }]', "experiments[0].endpoints[0].method: must be one"),
    ('[{ path = "/a", method = "HEAD" }]', "experiments[0].endpoints[0].method: must be one"),
    ('[{ path = "/a", status = 999 }]', "experiments[0].endpoints[0].status: must be an HTTP"),
    ('[{ path = "/a", json = 1, body = "x" }]', "experiments[0].endpoints[0].body: give"),
    ('[{ path = "/a", expect = { regex = "x" } }]',
     "experiments[0].endpoints[0].expect.regex: unknown key"),
    ('[{ path = "/a", headers = { "bad name" = "x" } }]',
     "experiments[0].endpoints[0].headers: 'bad name' is not a valid header name"),
    ('[{ path = "/a", json = { x = nan } }]',
     "experiments[0].endpoints[0].json.x: must be a finite number"),
    ('[{ path = "/a", colour = "red" }]', "experiments[0].endpoints[0].colour: unknown key"),
    ('[{ path = "/a", headers = { "X-U" = "é" } }]',
     "experiments[0].endpoints[0].headers.X-U: must be printable ASCII"),
    ('[{ path = "/a", headers = { "X-A" = "a\\tb" } }]',
     "experiments[0].endpoints[0].headers.X-A: must be printable ASCII"),
    ('[{ path = "/a", headers = { "X-A" = "a " } }]',
     "experiments[0].endpoints[0].headers.X-A: must not start or end with a space"),
    ('[{ path = "/a", headers = { "X-²" = "a" } }]',
     "experiments[0].endpoints[0].headers: 'X-²' is not a valid header name"),
    # the engines frame the body themselves: a second length breaks each one its own way
    ('[{ path = "/a", headers = { "Content-Length" = "5" } }]',
     "experiments[0].endpoints[0].headers.Content-Length: is set by the lab"),
    ('[{ path = "/a", headers = { "transfer-encoding" = "chunked" } }]',
     "experiments[0].endpoints[0].headers.transfer-encoding: is set by the lab"),
])
def test_bad_endpoint_tables_name_their_key(endpoints: str, says: str) -> None:
    assert error(endpoints=endpoints).startswith(says)


def test_app_dir_is_relative_to_the_config_and_must_exist(tmp_path: Path) -> None:
    (tmp_path / "myapp").mkdir()
    m = matrix(lab='app = "main:app"\napp_dir = "myapp"', base_dir=tmp_path)
    assert m.lab.app_dir == str(tmp_path / "myapp")
    missing = error(lab='app = "main:app"\napp_dir = "nope"', base_dir=tmp_path)
    assert missing.startswith(f"lab.app_dir: no such folder: {tmp_path / 'nope'}")


def test_readiness_and_wrap_settings() -> None:
    m = matrix(lab='ready_path = "/"\nready_status = 204\nwrap = false')
    assert (m.lab.ready_path, m.lab.ready_status, m.lab.wrap) == ("/", 204, False)
    assert error(lab='ready_path = "health"').startswith("lab.ready_path: must be a path")
    assert error(lab="ready_status = 42").startswith("lab.ready_status: must be ≥ 100")
    assert error(lab='wrap = "yes"').startswith("lab.wrap: must be true or false")
    assert error(lab='app = "a b:app"').startswith("lab.app: must be 'module:attribute'")


def test_the_cell_key_changes_with_wrap_and_the_request() -> None:
    lab_on, lab_off = matrix().lab, matrix(lab="wrap = false").lab
    cell = cells(matrix())[0]
    assert cell.key(lab_on) != cell.key(lab_off)
    post = cells(matrix(endpoints='[{ path = "/hello", method = "POST" }]'))[0]
    assert post.key(lab_on) != cell.key(lab_on)


def interference(probe: str) -> Matrix:
    return parse(tomllib.loads(f"""{SERVERS}
[[experiments]]
name = "i"
kind = "interference"
endpoints = ["/async-blocking"]
background = [2]
{probe}
"""))


def test_a_probe_is_a_path_or_an_endpoint_table_as_endpoints_are() -> None:
    assert interference("").experiments[0].probe == Endpoint("/hello")
    assert interference('probe = "/up"').experiments[0].probe == Endpoint("/up")
    table = interference('probe = { path = "/cpu", query = { n = 10 }, headers = { "X-K" = '
                         '"k" }, status = 200, expect = { json = { n = 10 } } }')
    probe = table.experiments[0].probe
    assert (probe.path, probe.query, probe.headers, probe.status) == (
        "/cpu", (("n", "10"),), (("X-K", "k"),), 200)
    assert probe.body_problem(b'{"n": 10, "pid": 1}') is False
    assert probe.body_problem(b'{"n": 11}') is True
    # another probe is another measurement: --resume runs it again
    (bare,), (tabled,) = (m.cells() for m in (interference(""), table))
    assert bare.key(table.lab) != tabled.key(table.lab)


# ---- the response check ----------------------------------------------------------------

def test_any_2xx_by_default_and_the_worker_from_the_header() -> None:
    ep = Endpoint("/")
    assert check(200, "123", b"<html>", ep) == (None, 123)
    assert check(204, None, b"", ep) == (None, None)  # unwrapped: no worker
    assert check(404, "123", b"", ep) == ("http_404", None)
    assert check(301, "123", b"", ep) == ("http_301", None)


def test_an_expected_status_and_body_checks() -> None:
    created = Endpoint("/items", "POST", status=201, contains='"id"')
    assert check(201, "7", b'{"id": 1}', created) == (None, 7)
    assert check(200, "7", b'{"id": 1}', created) == ("http_200", None)
    assert check(201, "7", b'{"no": 1}', created) == ("bad_body", 7)
    subset = Endpoint("/", json_subset='{"a": {"b": [1, 2]}}')
    assert check(200, "7", b'{"a": {"b": [1, 2], "c": 3}, "d": 4}', subset) == (None, 7)
    assert check(200, "7", b'{"a": {"b": [1]}}', subset) == ("bad_body", 7)
    assert check(200, "7", b"not json", subset) == ("bad_body", 7)


def test_json_subset_is_exact_about_types() -> None:
    assert is_subset({"n": 1}, {"n": 1.0})
    assert not is_subset({"n": True}, {"n": 1})
    assert not is_subset({"n": 1}, {"n": "1"})
    assert not is_subset([1], [1, 2])


def test_wrk_gets_the_request_and_its_check_as_script_arguments() -> None:
    ep = Endpoint("/items", "POST", headers=(("content-type", "application/json"),),
                  body=b'{"a":1}', status=201, contains="ok")
    assert script_args(ep) == ["POST", "201", b"ok".hex(), "", b'{"a":1}'.hex(),
                               "content-type", "application/json"]
    assert script_args(Endpoint("/")) == ["GET", "", "", "", "-"]


# ---- every engine sends what the config allows, alike ----------------------------------

ECHO = '''
import json


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    seen = {}
    for name, value in scope["headers"]:
        seen.setdefault(name.decode("latin-1"), []).append(value.decode("latin-1"))
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": json.dumps(seen).encode()})
'''
# A header value with inner spaces and quotes, and a Host of the user's: each engine must
# send exactly these, and one Host (the JSON subset's lists match element by element).
SENT = ('headers = { "X-Token" = \'a b;c="d"\', host = "shop.example" }, '
        'expect = { json = { x-token = [\'a b;c="d"\'], host = ["shop.example"] } }')
ENGINE_EXPERIMENTS = "".join(f"""
[[experiments]]
name = "{engine}"
kind = "burst"
engine = "{engine}"
endpoints = [{{ path = "/", {SENT} }}]
requests = [2]
""" for engine in ("rawhttp", "httpx", "aiohttp")) + f"""
[[experiments]]
name = "wrk"
kind = "closed"
engine = "wrk"
endpoints = [{{ path = "/", {SENT} }}]
users = [1]
duration_s = 0.3
warmup_s = 0

[[experiments]]
name = "probe"
kind = "interference"
endpoints = ["/"]
background = [1]
probes = 3
probe = {{ path = "/probe", {SENT} }}

[[experiments]]
name = "wrongprobe"
kind = "interference"
endpoints = ["/"]
background = [1]
probes = 3
probe = {{ path = "/probe", expect = {{ json = {{ x-token = ["other"] }} }} }}
"""


@pytest.mark.servers
def test_every_engine_and_a_probe_table_send_the_configured_headers_alike(
        tmp_path: Path) -> None:
    (tmp_path / "echo").mkdir()
    (tmp_path / "echo" / "echo.py").write_text(ECHO, encoding="utf-8")
    config = tmp_path / "echo.toml"
    config.write_text('[lab]\napp = "echo:app"\napp_dir = "echo"\nready_path = "/"\n'
                      "start_timeout_s = 20\ncell_timeout_s = 30\n" + SERVERS
                      + ENGINE_EXPERIMENTS, encoding="utf-8")
    out, token = tmp_path / "out", uuid.uuid4().hex
    result = run_lab("run", config, "--out", out, "--run-id", "echo", timeout=120,
                     env={**os.environ, TOKEN_ENV: token})
    assert leftovers(token) == []
    assert "Traceback" not in result.stdout + result.stderr
    records = {r["experiment"]: r for r in json_lines(RunDir(out / "echo"))}
    assert set(records) == {"rawhttp", "httpx", "aiohttp", "wrk", "probe", "wrongprobe"}
    for name, r in records.items():
        if name == "wrongprobe":
            continue
        assert r["status"] == "ok", (name, r["failure"])
        assert r["figures"]["errors"] == {} and r["figures"]["ok"] > 0, name
    assert records["probe"]["figures"]["probe"] == "/probe"
    # the probe's own check applies: its answer lacks the expected header
    wrong = records["wrongprobe"]
    assert wrong["status"] != "ok" and "bad_body" in json.dumps(wrong["failure"])
    assert result.returncode == 3, result.stdout + result.stderr
