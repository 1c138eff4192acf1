"""What the lab checks of the user's app before and at the first server start: modules in
the app's folder that hide a server's own imports, a ready path or endpoint that does not
answer, and a start failure that every later cell would repeat."""

import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from lab.store.results import RunDir
from tests.conftest import json_lines, leftovers, run_lab

APP = '''
async def app(scope, receive, send):
    assert scope["type"] == "http"
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})
'''

CONFIG = """
[lab]
app = "mine:app"
app_dir = "mine"
ready_path = "/"
start_timeout_s = 20

[servers.{server}]
workers = [1]

[[experiments]]
name = "b"
kind = "burst"
endpoints = ["/"]
requests = [2]
"""


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


@pytest.mark.parametrize(("server", "shadow", "module"), [
    ("hypercorn", "h2.py", "h2"),  # a dependency's module
    ("granian", "granian.py", "granian"),  # the server's own: `python -m granian` runs it
    ("hypercorn", "hpack/__init__.py", "hpack"),  # a dependency's dependency, a package
])
def test_a_module_in_the_apps_folder_that_hides_a_servers_import_is_refused(
        server: str, shadow: str, module: str, tmp_path: Path,
        write_config: Callable[..., Path]) -> None:
    folder = tmp_path / "mine"
    (folder / shadow).parent.mkdir(parents=True)
    (folder / "mine.py").write_text(APP)
    (folder / shadow).write_text("raise SystemExit(0)\n")
    path = write_config(CONFIG.format(server=server))
    for command in ("validate", "run"):
        extra = ("--out", tmp_path / "out") if command == "run" else ()
        line = one_line_error(run_lab(command, path, *extra))
        assert line.startswith("error: lab.app_dir: "), line
        assert str(folder / shadow.split("/")[0]) in line and f"'{module}'" in line, line
        assert server in line, line
    assert not (tmp_path / "out").exists()


def test_a_module_no_configured_server_imports_is_fine(tmp_path: Path,
                                                        write_config: Callable[..., Path]
                                                        ) -> None:
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "mine.py").write_text(APP)
    (folder / "h2.py").write_text("")  # hypercorn's, but only uvicorn is configured
    result = run_lab("validate", write_config(CONFIG.format(server="uvicorn")))
    assert result.returncode == 0, result.stderr


# No /health, a failing endpoint, an endpoint that works the CPU and one that only waits.
NO_HEALTH = '''
import asyncio, time

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path == "/cpu":
        end = time.process_time() + 0.4
        while time.process_time() < end:
            pass
    elif path == "/sleep":
        await asyncio.sleep(0.2)
    status = 200 if path in ("/", "/cpu", "/sleep") else 500 if path == "/boom" else 404
    await send({"type": "http.response.start", "status": status, "headers": []})
    await send({"type": "http.response.body", "body": b"boom" if status == 500 else b"ok"})
'''

TWO_SERVERS = """
[lab]
app = "mine:app"
app_dir = "mine"
start_timeout_s = 20
stop_grace_s = 2
{lab}

[servers.uvicorn]
workers = [1]

[servers.granian]
workers = [1]
{servers}

[[experiments]]
name = "b"
kind = "burst"
endpoints = {endpoints}
requests = [2]
{experiments}
"""


@pytest.fixture
def mine(tmp_path: Path) -> Path:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "mine.py").write_text(NO_HEALTH)
    return tmp_path / "mine"


def lab_run(tmp_path: Path, write_config: Callable[..., Path], lab: str = "",
            servers: str = "", endpoints: str = '["/", "/sleep"]', experiments: str = ""
            ) -> tuple[subprocess.CompletedProcess[str], dict[str, dict[str, Any]], float]:
    path = write_config(TWO_SERVERS.format(lab=lab, servers=servers, endpoints=endpoints,
                                           experiments=experiments))
    t0 = time.monotonic()
    result = run_lab("run", path, "--out", tmp_path / "out", "--run-id", "r", timeout=120)
    wall = time.monotonic() - t0
    assert "Traceback" not in result.stdout + result.stderr
    records = {r["cell_id"]: r for r in json_lines(RunDir(tmp_path / "out" / "r"))}
    return result, records, wall


@pytest.mark.servers
def test_an_app_without_the_ready_path_fails_every_cell_at_once_with_a_hint(
        mine: Path, tmp_path: Path, write_config: Callable[..., Path], leak_token: str
) -> None:
    """It waited start_timeout_s in every cell (20 s × 4 here), polling every 20 ms."""
    result, records, wall = lab_run(tmp_path, write_config)
    assert result.returncode == 3, result.stdout + result.stderr
    first, *rest = records.values()
    assert len(rest) == 3 and all(r["status"] == "failed" for r in records.values())
    assert first["failure"]["kind"] == "start_failed"
    reason = first["failure"]["reason"]
    assert reason.startswith("GET /health → HTTP 404") and "lab.ready_path" in reason, reason
    for r in rest:  # another server, the same app: not started again
        assert r["failure"]["kind"] == "start_failed", r["cell_id"]
        assert r["failure"]["reason"] == f"not started: {reason} (same as cell " \
                                          f"{first['cell_id']})"
        assert r["failure"]["log_tail"] == first["failure"]["log_tail"]
    assert wall < 20  # a start timeout, once, would be 20 s
    assert list((tmp_path / "out" / "r" / "logs").glob("*.log")) == [
        tmp_path / "out" / "r" / "logs" / f"{first['cell_id']}.log"]
    report = (tmp_path / "out" / "r" / "report.md").read_text()
    assert all(f"`{cid}`" in report for cid in records)
    assert leftovers(leak_token) == []


@pytest.mark.servers
def test_a_configuration_that_exits_is_not_started_again_while_others_run(
        mine: Path, tmp_path: Path, write_config: Callable[..., Path], leak_token: str
) -> None:
    """hypercorn's trio worker class needs trio, which is not installed: its second cell
    is not started again; granian and uvicorn run theirs."""
    result, records, _ = lab_run(
        tmp_path, write_config, lab='ready_path = "/"',
        servers='[servers.hypercorn]\nworkers = [1]\noptions = { worker_class = "trio" }')
    assert result.returncode == 3, result.stdout + result.stderr
    first, second = (records[f"hypercorn-w1-b-{e}-n2"] for e in ("root", "sleep"))
    assert first["failure"]["kind"] == second["failure"]["kind"] == "start_failed"
    assert first["failure"]["reason"].startswith("exited with code")
    assert second["failure"]["reason"] == (f"not started: {first['failure']['reason']} "
                                           "(same as cell hypercorn-w1-b-root-n2)")
    assert [r["status"] for cid, r in records.items() if "hypercorn" not in cid] == ["ok"] * 4
    assert leftovers(leak_token) == []


@pytest.mark.servers
def test_the_first_start_checks_every_endpoint_once_and_warns_before_measuring(
        mine: Path, tmp_path: Path, write_config: Callable[..., Path], leak_token: str
) -> None:
    result, records, _ = lab_run(
        tmp_path, write_config, lab='ready_path = "/"', endpoints='["/", "/boom"]',
        experiments='\n[[experiments]]\nname = "loop"\nkind = "closed"\n'
                    'endpoints = ["/sleep", "/cpu"]\nusers = [8]\nduration_s = 1\n'
                    'warmup_s = 0\n')
    output = result.stdout + result.stderr
    warnings = [line for line in output.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 2, output
    boom, cpu = warnings
    assert "experiment 'b', endpoints[1]" in boom and "GET /boom → HTTP 500 'boom'" in boom
    # 8 users × 0.4 s of CPU on one worker: none of them is answered in a 1 s window;
    # /sleep waits 0.2 s without working, and 8 users wait together
    assert "experiment 'loop', endpoints[1]" in cpu and "1 s window" in cpu, cpu
    assert output.index(cpu) < output.index("[1/")  # before the first cell's line
    # the failing endpoint is still measured, its errors counted
    assert records["uvicorn-w1-b-boom-n2"]["figures"]["errors"] == {"http_500": 2}
    assert records["uvicorn-w1-b-root-n2"]["status"] == "ok"
    assert leftovers(leak_token) == []
