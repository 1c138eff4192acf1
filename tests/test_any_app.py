"""A user's own app, in a folder outside the project, measured by writing one config: a
Starlette app with no /health and no pid in its bodies, on all three servers at 1 and 2
workers through ``python -m lab run``; the same app unwrapped; a bare ASGI callable without
lifespan; and each bad app refused with one line before any server starts."""

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from lab.load import wrk
from lab.store.results import RunDir
from tests.conftest import ROOT, TOKEN_ENV, json_lines, leftovers, run_lab

SHOP = '''
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route


async def home(request: Request) -> PlainTextResponse:
    return PlainTextResponse("welcome to the shop")


async def create(request: Request) -> JSONResponse:
    item = await request.json()
    return JSONResponse({"created": item["name"]}, status_code=201)


app = Starlette(routes=[Route("/", home), Route("/items", create, methods=["POST"])])
'''

BARE = '''
async def app(scope, receive, send):
    assert scope["type"] == "http", "this app knows nothing of lifespan"
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"bare"})
'''

SERVERS = """
[servers.uvicorn]
workers = {workers}

[servers.hypercorn]
workers = {workers}

[servers.granian]
workers = {workers}
"""

POST = ('{ path = "/items", method = "POST", json = { name = "lamp" }, status = 201, '
        'expect = { contains = "lamp" } }')


def config(lab: str, workers: str, experiments: str) -> str:
    return (f"[lab]\nstart_timeout_s = 20\nstop_grace_s = 3\ncell_timeout_s = 30\n{lab}\n"
            + SERVERS.format(workers=workers) + experiments)


SHOP_EXPERIMENTS = f"""
[[experiments]]
name = "shop"
kind = "burst"
endpoints = ["/", {POST}]
requests = [8]
timeout_s = 10

[[experiments]]
name = "load"
kind = "closed"
endpoints = ["/", {POST}]
users = [4]
duration_s = 1
warmup_s = 0
timeout_s = 5

[[experiments]]
name = "wrong"
kind = "burst"
endpoints = [{{ path = "/items", method = "POST", json = {{ name = "lamp" }}, status = 200 }}]
requests = [4]
timeout_s = 10
"""


def lab_run(tmp_path: Path, text: str, name: str) -> tuple[int, str, RunDir]:
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    out, run_id, token = tmp_path / "out", f"{name}-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    result = run_lab("run", path, "--out", out, "--run-id", run_id, timeout=240,
                     env={**os.environ, TOKEN_ENV: token})
    assert leftovers(token) == []
    assert "Traceback" not in result.stdout + result.stderr
    return result.returncode, result.stdout + result.stderr, RunDir(out / run_id)


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    folder = tmp_path / "shop"
    folder.mkdir()
    (folder / "shop.py").write_text(SHOP)
    return folder


def by_id(run: RunDir) -> dict[str, dict[str, Any]]:
    return {r["cell_id"]: r for r in json_lines(run)}


@pytest.mark.servers
def test_a_starlette_app_of_ones_own_on_every_server(shop: Path, tmp_path: Path) -> None:
    text = config('app = "shop:app"\napp_dir = "shop"\nready_path = "/"', "[1, 2]",
                  SHOP_EXPERIMENTS)
    code, output, run = lab_run(tmp_path, text, "shop")
    assert code == 3, output  # the wrong expected status fails its cells, and only those
    records = by_id(run)
    assert len(records) == 6 * 5
    split = {}
    for cid, r in records.items():
        f = r["figures"]
        if r["experiment"] == "wrong":
            assert r["failure"]["kind"] == "all_requests_failed", cid
            assert f["errors"] == {"http_201": 4} and f["ok"] == 0, cid
            continue
        assert r["status"] == "ok", (cid, r["failure"])
        assert f["errors"] == {} and f["ok"] == f["requests"] > 0, cid
        # every answer named its worker in the header: the split covers every success
        assert sum(f["pids"].values()) == f["ok"], cid
        assert 1 <= len(f["pids"]) <= r["workers"], cid
        assert r["wrap"] is True and r["app_dir"] == str(shop)
        if r["experiment"] == "load":
            assert r["engine"] in ("wrk", "aiohttp")
            split[r["server_id"]] = max(split.get(r["server_id"], 0), len(f["pids"]))
    assert records["uvicorn-w1-shop-post-items-n8"]["endpoint"] == "POST /items"
    assert records["uvicorn-w1-shop-post-items-n8"]["request"]["status"] == 201
    assert max(split[f"{s}-w2"] for s in ("uvicorn", "hypercorn", "granian")) == 2
    for entry in run.servers():  # ready on the configured path, every worker marked
        assert entry["start_to_ready_s"] is not None
    report = (run.path / "report.md").read_text()
    assert "### `POST /items`" in report and "4 http_201" in report


@pytest.mark.servers
def test_the_same_app_unwrapped_has_no_per_worker_split(shop: Path, tmp_path: Path) -> None:
    text = config('app = "shop:app"\napp_dir = "shop"\nready_path = "/"\nwrap = false', "[1]",
                  SHOP_EXPERIMENTS.split("[[experiments]]\nname = \"load\"")[0])
    code, output, run = lab_run(tmp_path, text, "unwrapped")
    assert code == 0, output
    for r in json_lines(run):
        assert r["status"] == "ok", (r["cell_id"], r["failure"])
        assert r["figures"]["pids"] == {} and r["wrap"] is False
        assert "lab.servers.asgi_wrap" not in " ".join(r["process"]["argv"])
    report = (run.path / "report.md").read_text()
    assert "No per-worker split" in report and "not wrapped: wrap = false" in report


@pytest.mark.servers
def test_a_bare_asgi_callable_without_lifespan_starts_everywhere(tmp_path: Path) -> None:
    (tmp_path / "bare").mkdir()
    (tmp_path / "bare" / "bare.py").write_text(BARE)
    text = config('app = "bare:app"\napp_dir = "bare"\nready_path = "/anything"', "[1, 2]", """
[[experiments]]
name = "bare"
kind = "burst"
endpoints = [{ path = "/", expect = { contains = "bare" } }]
requests = [6]
""")
    code, output, run = lab_run(tmp_path, text, "bare")
    assert code == 0, output
    for r in json_lines(run):
        assert r["status"] == "ok", (r["cell_id"], r["failure"])
        assert sum(r["figures"]["pids"].values()) == 6
    # --resume reads the run's copy of the config, in the run folder: app_dir stays
    # relative to the folder of the config the run started with
    resumed = run_lab("run", "--resume", run.path)
    assert resumed.returncode == 0 and "nothing to do" in resumed.stdout, resumed.stderr


@pytest.mark.servers
def test_a_server_never_ready_names_the_path_and_the_last_answer(shop: Path,
                                                                 tmp_path: Path) -> None:
    """A ready path that answers 503 may still become ready: waited for until the start
    timeout, and named with its last answer."""
    (shop / "shop.py").write_text(SHOP + """
async def warming(request: Request) -> PlainTextResponse:
    return PlainTextResponse("warming up", status_code=503)

app.router.routes.append(Route("/warming", warming))
""")
    text = config('app = "shop:app"\napp_dir = "shop"\nready_path = "/warming"\n'
                  "start_timeout_s = 2", "[1]", """
[[experiments]]
name = "x"
kind = "burst"
endpoints = ["/"]
requests = [1]
""").replace("start_timeout_s = 20\n", "")
    text = text.split("[servers.hypercorn]")[0] + "[[experiments]]" + \
        text.split("[[experiments]]")[1]
    code, output, run = lab_run(tmp_path, text, "never")
    assert code == 3, output
    (record,) = json_lines(run)
    assert record["failure"]["kind"] == "start_failed"
    reason = record["failure"]["reason"]
    assert reason.startswith("not ready within 2 s (GET /warming must answer 200") \
        and "HTTP 503 'warming up'" in reason, reason


BAD_APPS = [
    ('app = "missing:app"\napp_dir = "shop"', "lab.app: cannot import 'missing'"),
    ('app = "shop:nope"\napp_dir = "shop"', "lab.app: module 'shop' has no attribute 'nope'"),
    ('app = "shop:Route"\napp_dir = "shop"', None),  # a class is callable: accepted
    ('app = "shop:SHOP_NAME"\napp_dir = "shop"', "lab.app: shop:SHOP_NAME is a str, not an "
                                                  "ASGI callable"),
    ('app = "shop:app"\napp_dir = "elsewhere"', "lab.app_dir: no such folder"),
    ('app = "shop:app"', "lab.app: cannot import 'shop'"),  # without app_dir: not found
]


@pytest.mark.parametrize(("lab", "says"), BAD_APPS)
def test_a_bad_app_is_exit_2_and_one_line(lab: str, says: str | None, shop: Path,
                                          tmp_path: Path,
                                          write_config: Callable[..., Path]) -> None:
    (shop / "shop.py").write_text(SHOP + '\nSHOP_NAME = "shop"\n')
    path = tmp_path / "bad.toml"
    path.write_text(config(lab, "[1]", """
[[experiments]]
name = "x"
kind = "burst"
endpoints = ["/"]
requests = [1]
"""))
    for command in (["validate", path], ["run", path, "--out", tmp_path / "out"])[
            : 1 if says is None else 2]:
        result = run_lab(*command)
        if says is None:
            assert result.returncode == 0, result.stderr
            continue
        assert result.returncode == 2, result.stdout + result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"error: {says}"), result.stderr
    assert not (tmp_path / "out").exists()


def test_results_name_the_request_and_the_wrap(tmp_path: Path) -> None:
    """describe() writes what the report and a reader need to know the request."""
    import tomllib

    from lab.matrix.config import parse
    from lab.run.runner import describe
    m = parse(tomllib.loads(config("", "[1]", SHOP_EXPERIMENTS)))
    cell = next(c for c in m.cells() if c.endpoint.method == "POST")
    record = describe(cell, m.lab, "r", cell.experiment.engine, "t").to_json()
    assert record["endpoint"] == "POST /items" and record["wrap"] is True
    assert json.loads(json.dumps(record["request"]))["json"] is None
    assert record["request"]["body"] == '{"name":"lamp"}'


# Writes into the run's data folder at start-up: a relative LAB_DATA_DIR would point into
# the app's folder (the servers' working directory), not the run's.
DATA_WRITER = '''
import os
from pathlib import Path

if "LAB_DATA_DIR" in os.environ:  # the lab's import check runs without it
    Path(os.environ["LAB_DATA_DIR"], f"started-{os.getpid()}").touch()


async def app(scope, receive, send):
    assert scope["type"] == "http"
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})
'''

ONE_BURST = """
[lab]
{lab}
start_timeout_s = 20

[servers.uvicorn]
workers = [2]

[[experiments]]
name = "b"
kind = "burst"
endpoints = ["{endpoint}"]
requests = [2]
params = {{ delay = 0.01 }}
"""


def run_in(cwd: Path, config: Path, out: str) -> tuple[str, RunDir]:
    """``python -m lab run CONFIG --out OUT`` from ``cwd``, OUT relative to it."""
    token = uuid.uuid4().hex
    result = subprocess.run(
        [sys.executable, "-m", "lab", "run", str(config), "--out", out, "--run-id", "rel"],
        cwd=cwd, capture_output=True, text=True, encoding="utf-8", timeout=120,
        env={**os.environ, TOKEN_ENV: token})
    assert leftovers(token) == []
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr, RunDir(cwd / out / "rel")


@pytest.mark.servers
def test_a_relative_out_folder_from_any_working_directory_starts_every_server(
        tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    config = tmp_path / "article.toml"
    config.write_text(ONE_BURST.format(lab='app = "apps.article:app"',
                                       endpoint="/non-blocking"))
    _, run = run_in(elsewhere, config, "relout")
    assert [r["status"] for r in json_lines(run)] == ["ok"]

    (tmp_path / "writer").mkdir()
    (tmp_path / "writer" / "writer.py").write_text(DATA_WRITER)
    config = tmp_path / "writer.toml"
    config.write_text(ONE_BURST.format(lab='app = "writer:app"\napp_dir = "writer"\n'
                                           'ready_path = "/"', endpoint="/"))
    _, run = run_in(ROOT, config, os.path.relpath(tmp_path / "relout", ROOT))
    assert [r["status"] for r in json_lines(run)] == ["ok"]
    starts = len(run.servers())  # the app check's server and the measured one
    assert starts == 2
    assert len(list((run.path / "data").glob("started-*"))) == 2 * starts  # every worker


def until_answered(url: str, proc: subprocess.Popen[bytes], timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        assert proc.poll() is None, f"the pasted command exited with {proc.returncode}"
        try:
            if httpx.get(url, trust_env=False, timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, f"{url} never answered"
        time.sleep(0.05)


@pytest.mark.servers
@pytest.mark.skipif(not wrk.available(), reason="wrk is not installed")
def test_the_recorded_server_and_wrk_commands_reproduce_a_cell_when_pasted(
        shop: Path, tmp_path: Path, leak_token: str) -> None:
    text = """
[lab]
app = "shop:app"
app_dir = "shop"
ready_path = "/"

[servers.uvicorn]
workers = [1]

[[experiments]]
name = "load"
kind = "closed"
engine = "wrk"
endpoints = ["/"]
users = [2]
duration_s = 1
warmup_s = 0
"""
    code, output, run = lab_run(tmp_path, text, "paste")
    assert code == 0, output
    (entry,) = [s for s in run.servers() if not s["app_check"]]
    assert entry["env"]["LAB_APP"] == "shop:app" and entry["env"]["LAB_APP_DIR"] == str(shop)
    assert entry["cwd"] == str(shop)
    command = entry["command"]
    assert command.startswith(f"cd {shop} && ") and "LAB_APP=shop:app" in command
    assert f"$ {command}" in (run.logs / "uvicorn-w1-load-root-c2.log").read_text().splitlines()
    wrk_line = (run.logs / "uvicorn-w1-load-root-c2.wrk.log").read_text().splitlines()[0]
    server = subprocess.Popen(["bash", "-c", command], start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        until_answered(f"http://127.0.0.1:{entry['port']}/", server)
        pasted = subprocess.run(["bash", "-c", wrk_line.removeprefix("$ ")],
                                capture_output=True, text=True, timeout=30)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(10)
    assert pasted.returncode == 0, pasted.stdout + pasted.stderr
    result = json.loads(next(line for line in pasted.stdout.splitlines()
                             if line.startswith("LABJSON ")).removeprefix("LABJSON "))
    assert result["requests"] > 0 and result["http"] == {} and result["bad_body"] == 0
