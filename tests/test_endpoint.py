"""Endpoints as tables, app_dir and readiness settings: parsed, checked, named; and the one
response check every Python engine applies (wrk's script mirrors it)."""

import tomllib
from pathlib import Path

import pytest

from lab.config import Cell, Matrix, parse
from lab.endpoint import Endpoint, is_subset
from lab.errors import ConfigError
from lab.load.samples import check
from lab.load.wrk import script_args

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
