"""Start a server in its own process group, wait until it answers, stop it, leave nothing.

Each server runs under ``lab.supervise.guard`` (leader of a fresh process group, pipe on stdin) so
that it dies with the lab even when the lab is SIGKILLed. Stopping signals the server's
main process first and then the group: hypercorn's workers have no SIGTERM handler, so
signalling the whole group at once would abort requests its main process would drain.
"""

import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from lab.errors import ServerStartError
from lab.load.inflight import InFlightMeter
from lab.load.loopreader import LoopReader
from lab.matrix.placement import CPUS_ENV
from lab.servers.asgi_wrap import METER_DIR_ENV, READY_DIR_ENV
from lab.supervise import pgroup
from lab.supervise.guard import GRACE_ENV, RUSAGE_ENV
from lab.supervise.reaper import TOKEN_ENV, Ledger

PROJECT_ROOT = Path(__file__).resolve().parents[2]
POLL_S = 0.02
# An app that answers its ready path wrongly may log a traceback per request (≈ 1 MB per
# 30 s at 20 ms): its polls back off, doubling up to this.
POLL_MAX_S = 0.5
# Answers of the ready path that waiting will not change (not 408, 425, 429: "try later").
FINAL_ANSWERS = {*range(300, 408), *range(409, 425), *range(426, 429), *range(430, 500)}


class AppNotReady(ServerStartError):
    """Every worker started and the app answered its ready path with a status that will not
    become the ready one: a fact of the app, the same on every server and in every cell."""


class ServerExited(ServerStartError):
    """The server exited before it was ready: a fact of its configuration (an option, the
    worker count, a module it cannot import), the same in each of its cells."""


def free_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host.strip("[]"), 0))
        return int(s.getsockname()[1])


def port_held(host: str, port: int) -> bool:
    """Does another socket listen on ``port``? Bound as the servers bind (SO_REUSEADDR), so
    connections of a stopped server left in TIME_WAIT do not count."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host.strip("[]"), port))
        except OSError:
            return True
        return False


def url_host(host: str) -> str:
    return f"[{host.strip('[]')}]" if ":" in host else host


def log_tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


@dataclass
class StopReport:
    seconds: float
    killed: bool  # SIGKILL was needed
    exit_code: int | None


class Group:
    """A command run under ``lab.supervise.guard``: leader of its own process group, recorded in the
    run's ledger, stopped with SIGTERM then SIGKILL, and gone when the lab dies."""

    def __init__(self, argv: Sequence[str], log_path: Path, ledger: Ledger | None = None,
                 env: Mapping[str, str] | None = None, guard_grace_s: float = 2.0,
                 rusage_path: Path | None = None, cwd: Path | None = None,
                 path: Sequence[str] = ()) -> None:
        """``rusage_path``: where the guard writes the command's own CPU seconds; ``cwd``:
        the command's working directory (default: the lab's project root); ``path``:
        folders put on PYTHONPATH after the lab's own (an app's folder)."""
        self.argv, self.log_path, self.ledger = list(argv), log_path, ledger
        self.guard_grace_s = guard_grace_s
        self.token = uuid.uuid4().hex
        self.rusage_path = rusage_path
        if rusage_path:
            rusage_path.unlink(missing_ok=True)
        # What the command gets beyond the lab's own environment (the guard's keys aside),
        # and where it runs: enough to run it again by hand (``command``).
        self.env = {"PYTHONPATH": os.pathsep.join(filter(None, [
            str(PROJECT_ROOT), *path, os.environ.get("PYTHONPATH")])), **(env or {})}
        self.cwd = cwd or PROJECT_ROOT
        full_env = {**os.environ, GRACE_ENV: str(guard_grace_s), TOKEN_ENV: self.token,
                    **({RUSAGE_ENV: str(rusage_path.resolve())} if rusage_path else {}),
                    **self.env}
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as log:
            log.write(f"$ {self.command}\n".encode())
            log.flush()
            self.started = time.monotonic()
            # -P: the guard finds the lab on PYTHONPATH, never a `lab` in an app's folder
            # (cwd); the command it runs (python -m <server>) has the cwd first, as usual.
            self.proc = subprocess.Popen(
                [sys.executable, "-P", "-m", "lab.supervise.guard", *self.argv],
                stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, cwd=self.cwd, env=full_env,
            )
        self.pgid = self.proc.pid  # the guard leads the new group
        if ledger:
            ledger.started(self.pgid, self.token)
        self.last_stop: StopReport | None = None

    @property
    def command(self) -> str:
        """A shell line that runs the command again as the lab ran it (without its guard):
        ``cd DIR && LAB_APP=… python -m uvicorn …``. The lab's own bookkeeping folders are
        left out (they are gone once the run is over, and serving needs neither), and the
        guard's CPU set becomes ``taskset``."""
        assignments = [f"{k}={shlex.quote(v)}" for k, v in sorted(self.env.items())
                       if k not in (READY_DIR_ENV, METER_DIR_ENV, CPUS_ENV)]
        cpus = ["taskset", "-c", self.env[CPUS_ENV]] if CPUS_ENV in self.env else []
        return f"cd {shlex.quote(str(self.cwd))} && " + " ".join(
            [*assignments, shlex.join([*cpus, *self.argv])])

    def main_pid(self) -> int | None:
        """The command's own main process (the guard's child)."""
        for pid in pgroup.members(self.pgid):
            try:
                if int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1]) \
                        == self.pgid:
                    return pid
            except (OSError, IndexError, ValueError):
                continue
        return None

    def pids(self) -> list[int]:
        return [p for p in pgroup.members(self.pgid) if p != self.pgid]

    def wait(self, timeout_s: float, check: Callable[[], None] = lambda: None) -> int | None:
        """The exit code once the command has ended, or None after ``timeout_s``; ``check``
        is called while waiting and may raise (an interrupt) to abandon the wait."""
        deadline = time.monotonic() + timeout_s
        while (code := self.proc.poll()) is None:
            check()
            if time.monotonic() >= deadline:
                return None
            time.sleep(POLL_S)
        return code

    def stop(self, grace_s: float, hurry: Callable[[], bool] = lambda: False) -> StopReport:
        """SIGTERM the main process, then the group, SIGKILL after ``grace_s``."""
        t0 = time.monotonic()
        deadline = t0 + grace_s
        killed = False
        main = self.main_pid()
        if main is not None and not hurry():
            try:
                os.kill(main, signal.SIGTERM)
            except ProcessLookupError:
                pass
            while self.proc.poll() is None and time.monotonic() < deadline and not hurry():
                time.sleep(POLL_S)
        if pgroup.alive(self.pgid, exclude=self.pgid):
            remaining = 0.0 if hurry() else max(0.0, deadline - time.monotonic())
            # Not the guard: once its child is gone it ends any escaped descendant, then exits.
            killed = pgroup.terminate(self.pgid, remaining, exclude=self.pgid)
        try:
            code = self.proc.wait(timeout=self.guard_grace_s + 1.0)
        except subprocess.TimeoutExpired:
            pgroup.signal_group(self.pgid, signal.SIGKILL)
            code = self.proc.wait()
            killed = True
        if self.proc.stdin:
            self.proc.stdin.close()
        self._cleanup()
        if self.ledger:
            self.ledger.stopped(self.pgid, self.token)
        self.last_stop = StopReport(time.monotonic() - t0, killed, code)
        return self.last_stop

    def _cleanup(self) -> None:
        """What a subclass removes once the group is gone."""


@dataclass(frozen=True)
class Readiness:
    """When a server counts as ready: ``path`` answers ``status`` and, with ``markers``
    (the app is wrapped: lab.servers.asgi_wrap writes them), every worker has written its marker.
    Without ``markers`` an app that writes its own (apps.article) is still waited for."""

    path: str = "/health"
    status: int = 200
    markers: bool = False


class Server(Group):
    """One running server process group."""

    def __init__(self, argv: Sequence[str], host: str, port: int, workers: int,
                 log_path: Path, ledger: Ledger | None = None,
                 env: Mapping[str, str] | None = None, guard_grace_s: float = 2.0,
                 readiness: Readiness = Readiness(), app_dir: str | None = None) -> None:
        """``app_dir``: the app's folder, the server's working directory."""
        self.host, self.port, self.workers = host, port, workers
        self.readiness = readiness
        self.base_url = f"http://{url_host(host)}:{port}"
        # Beside the log, not in /tmp: a lab killed with SIGKILL leaves nothing outside its run.
        # Absolute: the server runs in the app's folder, the run folder may be relative.
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._ready_dir = Path(tempfile.mkdtemp(prefix=".ready-", dir=log_path.parent)).resolve()
        self._meter_dir = Path(tempfile.mkdtemp(prefix=".meter-", dir=log_path.parent)).resolve()
        self._meter = InFlightMeter(self._meter_dir)
        try:
            super().__init__(argv, log_path, ledger,
                             {READY_DIR_ENV: str(self._ready_dir),
                              METER_DIR_ENV: str(self._meter_dir), **(env or {})},
                             guard_grace_s, cwd=Path(app_dir) if app_dir else None,
                             path=[app_dir] if app_dir else [])
        except BaseException:
            self._cleanup()  # no process to stop: Popen failed (say, a missing app folder)
            raise
        self.ready_s: float | None = None

    @property
    def loop(self) -> LoopReader:
        """How long each endpoint held each worker's loop, written by lab.servers.asgi_wrap
        when the lab serves it with its loop meter (``lab.loop_meter``)."""
        return LoopReader(self._meter_dir)

    @property
    def meter(self) -> InFlightMeter:
        """The requests in flight in each worker, counted by lab.servers.asgi_wrap (wrapped
        apps)."""
        return self._meter

    def wait_ready(self, timeout_s: float, check: Callable[[], None] = lambda: None) -> float:
        """Block until the ready path answers the ready status and every worker has
        started; seconds taken. No request of an experiment is sent before."""
        deadline = self.started + timeout_s
        last = "no answer"
        ready = self.readiness
        pause = POLL_S
        with httpx.Client(timeout=httpx.Timeout(1.0), trust_env=False) as client:
            while True:
                check()
                if self.proc.poll() is not None:
                    raise self._start_error(f"exited with code {self.proc.returncode} "
                                            f"before answering {ready.path}", ServerExited)
                try:
                    response = client.get(f"{self.base_url}{ready.path}")
                    last = answer_text(response)
                    if response.status_code == ready.status and self._workers_ready():
                        break
                    if response.status_code in FINAL_ANSWERS and self._workers_ready():
                        raise self._start_error(
                            f"GET {ready.path} → {last}: the app answers, but not with "
                            f"{ready.status}; set lab.ready_path to a path it answers with "
                            f"{ready.status} (most apps have no /health), or lab.ready_status",
                            AppNotReady)
                    # Not yet ready, yet answering: the app pays for every poll.
                    if response.status_code != ready.status:
                        pause = min(2 * pause, POLL_MAX_S)
                except httpx.HTTPError as e:
                    last = type(e).__name__
                if time.monotonic() >= deadline:
                    why = ("; the server refused even the lab's readiness check with 503: a "
                           "concurrency limit such as limit_concurrency = 1 counts that "
                           "request too" if last.startswith("HTTP 503") else "")
                    raise self._start_error(
                        f"not ready within {timeout_s:g} s (GET {ready.path} must answer "
                        f"{ready.status}, last answer: {last}; {self._marker_count()} of "
                        f"{self.workers} workers started){why}")
                time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
        self.ready_s = time.monotonic() - self.started
        return self.ready_s

    def answers(self, timeout_s: float = 2.0) -> bool:
        """Between cells on a reused server: still running and still ready."""
        if self.proc.poll() is not None:
            return False
        try:
            with httpx.Client(timeout=httpx.Timeout(timeout_s), trust_env=False) as client:
                response = client.get(f"{self.base_url}{self.readiness.path}")
                return response.status_code == self.readiness.status
        except httpx.HTTPError:
            return False

    def log_tail(self) -> str:
        return log_tail(self.log_path)

    def ready_pids(self) -> list[int]:
        """Workers that have finished start-up (for apps that write markers)."""
        return [int(name) for name in os.listdir(self._ready_dir)]

    def _marker_count(self) -> int:
        return len(self.ready_pids())

    def _workers_ready(self) -> bool:
        # Wrapped, every worker writes its marker: zero is not ready. Unwrapped, an app that
        # writes none is taken as ready on its ready path alone.
        count = self._marker_count()
        return count >= self.workers or (count == 0 and not self.readiness.markers)

    def _start_error(self, reason: str, kind: type[ServerStartError] = ServerStartError
                     ) -> ServerStartError:
        self.stop(grace_s=1.0)
        return kind(reason, log_tail(self.log_path))

    def _cleanup(self) -> None:
        shutil.rmtree(self._ready_dir, ignore_errors=True)
        shutil.rmtree(self._meter_dir, ignore_errors=True)


def answer_text(response: httpx.Response) -> str:
    """A response in a line: 'HTTP 404 {"detail":"Not Found"}'."""
    text = " ".join(response.content[:80].decode("utf-8", "replace").split())
    return f"HTTP {response.status_code}" + (f" {text!r}" if text else "")


def start(argv_for_port: Callable[[int], Sequence[str]], host: str, workers: int,
          log_path: Path, start_timeout_s: float, check: Callable[[], None] = lambda: None,
          port_attempts: int = 3, ledger: Ledger | None = None,
          env: Mapping[str, str] | None = None, readiness: Readiness = Readiness(),
          app_dir: str | None = None) -> Server:
    """A ready server on a free port. A port taken between choosing and binding it is
    retried on another port; any other failure stops what was started and raises (an
    "address already in use" of the app's own port too: another port would not help)."""
    for attempt in range(1, port_attempts + 1):
        port = free_port(host)
        server = Server(argv_for_port(port), host, port, workers, log_path, ledger, env,
                        readiness=readiness, app_dir=app_dir)
        try:
            server.wait_ready(start_timeout_s, check)
            return server
        except ServerStartError as e:
            if attempt == port_attempts or "address already in use" not in e.log_tail.lower() \
                    or not port_held(host, port):
                raise
        except BaseException:
            server.stop(0.0)
            raise
    raise AssertionError("unreachable: the last attempt returns or raises")


@contextmanager
def running(argv_for_port: Callable[[int], Sequence[str]], host: str, workers: int,
            log_path: Path, start_timeout_s: float, stop_grace_s: float,
            check: Callable[[], None] = lambda: None,
            hurry: Callable[[], bool] = lambda: False, port_attempts: int = 3,
            ledger: Ledger | None = None, env: Mapping[str, str] | None = None,
            readiness: Readiness = Readiness(), app_dir: str | None = None
            ) -> Iterator[Server]:
    """A ready server (see ``start``), stopped on exit whatever happened inside."""
    server = start(argv_for_port, host, workers, log_path, start_timeout_s, check,
                   port_attempts, ledger, env, readiness, app_dir)
    try:
        yield server
    finally:
        server.stop(stop_grace_s, hurry)
