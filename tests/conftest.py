"""Shared helpers: run the real CLI, write TOML files, and find processes a test left behind.

Leftover detection uses an environment token: a test sets ``ASGI_LAB_TEST_TOKEN`` to a
fresh value, every process started from then on (the lab, its guards, servers and their
workers) inherits it, and afterwards no process may still carry it. This finds orphans
that changed process group or parent, and never touches processes of other sessions.
"""

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from lab.load.monitor import Usage
from lab.load.samples import Measurement, Sample
from lab.store.results import RunDir
from lab.store.schema import PARTS, KindFigures, Result
from lab.supervise.lock import LOCK_DIR_ENV

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = Path(__file__).resolve().parent / "configs"
TOKEN_ENV = "ASGI_LAB_TEST_TOKEN"


def run_lab(*args: str | os.PathLike[str], timeout: float = 60.0,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m lab ARGS`` from the project root, as a user would run it."""
    return subprocess.run(
        [sys.executable, "-m", "lab", *map(str, args)], cwd=ROOT, capture_output=True,
        text=True, encoding="utf-8", timeout=timeout, env=env,
    )


def result(figures: dict[str, Any] | None, status: str = "ok", server_id: str = "uvicorn-w1",
           failure: dict[str, str] | None = None) -> Result:
    """A results line as the report reads it, around ``figures`` (through JSON, as stored;
    version 1, whose reader tolerated a line this short)."""
    line = {"schema_version": 1, "cell_id": f"{server_id}-x-e-n10-r1", "repeat": 1,
            "experiment": "x",
            "kind": "closed", "endpoint": "/e", "load": {"users": 10}, "params": {},
            "server_id": server_id, "server": server_id.split("-")[0], "workers": 1,
            "options": {}, "server_version": "1", "status": status, "failure": failure,
            "figures": figures}
    return Result.from_json(json.loads(json.dumps(line)))


def measurement(samples: list[Sample], wall_s: float, client_cpu_s: float,
                **figures: object) -> Measurement:
    """A Measurement of a window ``wall_s`` long in which the client used ``client_cpu_s``
    (and no server was watched, as in a window without server pids); ``figures`` are kind
    parts' JSON keys (``answer_span_s=…``, ``clients=…``)."""
    usage = Usage(wall_s=wall_s, client_cpu_s=client_cpu_s, server_cpu_s=None,
                  server_peak_rss_mb=None, server_processes=0)
    parts = KindFigures(**{name: part.from_json(figures)  # type: ignore[attr-defined]
                           for name, part in PARTS.items() if part.present(figures)})
    return Measurement(samples, usage, parts)


def json_lines(run: RunDir) -> list[dict[str, Any]]:
    """The run's results as the JSON lines a user's script reads (upgraded to this
    version)."""
    return [r.to_json() for r in run.load().records]


def carrying(token: str) -> list[int]:
    """Live, non-zombie pids (other than this one) whose environment holds the token."""
    needle = f"{TOKEN_ENV}={token}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if stat[stat.rindex(")") + 2:].split()[0] != "Z":
            found.append(int(entry.name))
    return found


def leftovers(token: str, wait_s: float = 3.0) -> list[int]:
    """Processes still carrying the token after waiting up to ``wait_s`` for them to go."""
    deadline = time.monotonic() + wait_s
    while (left := carrying(token)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


@pytest.fixture
def leak_token(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A token every process the test starts inherits; orphans are killed and fail the test."""
    token = uuid.uuid4().hex
    monkeypatch.setenv(TOKEN_ENV, token)
    yield token
    left = leftovers(token)
    for pid in left:  # only processes this test started carry the token
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass
    assert not left, f"processes left behind by the test: {left}"


@pytest.fixture(scope="session", autouse=True)
def lock_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A measuring lock of the session's own: the labs the tests start neither wait for
    a run elsewhere on this machine nor make one wait."""
    path = tmp_path_factory.mktemp("locks")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(LOCK_DIR_ENV, str(path))
        yield path


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[[str, str], Path]:
    def write(text: str, name: str = "config.toml") -> Path:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path

    return write
