"""What an idle Dask worker daemon costs the server host, and what it takes from a server.

    python benchmarks/dask_idle.py [--seconds 10] [--repeats 3] [--wrk-seconds 3]

Starts ``dask scheduler`` and one ``dask worker --resources server=1`` (nanny, worker and
multiprocessing's resource tracker, as a server host runs it) on 127.0.0.1, free ports, no
dashboard, each in a process group of its own; waits until the scheduler lists the worker (a
Client asking ``scheduler_info``, closed before measuring), then:

* idle cost: CPU seconds (user + system, psutil) of the worker's whole process tree and of
  the scheduler over ``--seconds``, ``--repeats`` times; printed as % of one core, median
  and spread (min–max).
* beside a server: uvicorn, 1 worker, ``apps.article:app`` (the lab's supervisor,
  ``lab.supervise.process.running``), ``wrk -t1 -c64`` on ``/hello`` for ``--wrk-seconds``,
  alternately with the daemons idling and with them stopped (SIGSTOP on both groups: the
  same memory, no CPU; SIGCONT and a short settle before the next "idle" window), the order
  swapped each round, ``--repeats`` rounds; req/s of both and their ratio.

The scheduler need not run on the server host; it is measured apart so either case can be
read. Everything started here is stopped in a ``finally`` (SIGCONT, SIGTERM to its group,
SIGKILL after a grace). The machine is shared and noisy: compare figures of one run.
"""

import argparse
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from tempfile import TemporaryDirectory

import distributed
import psutil

from lab.matrix.config import LabSettings
from lab.servers import ADAPTERS
from lab.supervise.process import Readiness, free_port, running

PROJECT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
DASK = str(Path(sys.executable).with_name("dask"))
REGISTER_TIMEOUT_S = 30.0
STOP_GRACE_S = 5.0
SETTLE_S = 0.5  # after SIGCONT: the daemons' missed timers fire before the next window


def positive(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def signal_group(proc: subprocess.Popen[bytes], signum: int) -> None:
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, signum)


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGCONT (a stopped process acts on nothing else), SIGTERM to the group, SIGKILL after
    the grace; then SIGKILL once more for children that outlived their leader."""
    signal_group(proc, signal.SIGCONT)
    signal_group(proc, signal.SIGTERM)
    try:
        proc.wait(STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        signal_group(proc, signal.SIGKILL)
        proc.wait()
    signal_group(proc, signal.SIGKILL)


@contextmanager
def daemons(folder: Path) -> Iterator[tuple[subprocess.Popen[bytes], subprocess.Popen[bytes]]]:
    """A scheduler and one server-role worker on loopback, the worker registered."""
    address = f"tcp://{HOST}:{free_port(HOST)}"
    started: list[subprocess.Popen[bytes]] = []

    def spawn(name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        with open(folder / f"{name}.log", "wb") as log:
            proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=PROJECT,
                                    start_new_session=True)
        started.append(proc)
        return proc

    try:
        scheduler = spawn("scheduler", [DASK, "scheduler", "--host", HOST, "--port",
                                        address.rsplit(":", 1)[1], "--no-dashboard"])
        worker = spawn("worker", [DASK, "worker", address, "--host", HOST, "--resources",
                                  "server=1", "--no-dashboard"])
        wait_registered(address, [scheduler, worker], folder)
        yield scheduler, worker
    finally:
        for proc in reversed(started):
            stop(proc)


def wait_registered(address: str, procs: list[subprocess.Popen[bytes]], folder: Path) -> None:
    deadline = time.monotonic() + REGISTER_TIMEOUT_S
    with distributed.Client(address, timeout=REGISTER_TIMEOUT_S) as client:
        while time.monotonic() < deadline:
            workers = client.scheduler_info()["workers"].values()
            if any(w.get("resources", {}).get("server") == 1 for w in workers):
                return
            if any(p.poll() is not None for p in procs):
                break
            time.sleep(0.1)
    logs = "\n".join((folder / f"{n}.log").read_text()[-1500:] for n in ("scheduler", "worker"))
    raise SystemExit(f"the worker did not register with {address} within "
                     f"{REGISTER_TIMEOUT_S:.0f} s\n{logs}")


def tree_cpu_s(pid: int) -> tuple[float, int]:
    """CPU seconds of ``pid`` and all its descendants, and how many processes that was."""
    root = psutil.Process(pid)
    total, count = 0.0, 0
    for p in [root, *root.children(recursive=True)]:
        with suppress(psutil.NoSuchProcess):
            t = p.cpu_times()
            total += t.user + t.system
            count += 1
    return total, count


def idle_cost(worker: int, scheduler: int, seconds: float) -> tuple[float, float, int]:
    """% of a core of the worker's tree and of the scheduler over one window."""
    (w0, _), (s0, _), t0 = tree_cpu_s(worker), tree_cpu_s(scheduler), time.monotonic()
    time.sleep(seconds)
    (w1, processes), (s1, _), wall = tree_cpu_s(worker), tree_cpu_s(scheduler), \
        time.monotonic() - t0
    return 100 * (w1 - w0) / wall, 100 * (s1 - s0) / wall, processes


def wrk_rps(url: str, seconds: float) -> float:
    argv = ["wrk", "-t1", "-c64", f"-d{max(1, round(seconds))}s", url]
    out = subprocess.run(argv, capture_output=True, text=True, check=True,
                         timeout=seconds + 30).stdout
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if m is None or "Non-2xx" in out or "Socket errors" in out:
        raise SystemExit(f"wrk failed or saw errors:\n{out}")
    return float(m[1])


def spread(values: list[float], fmt: Callable[[float], str]) -> str:
    return f"{fmt(statistics.median(values))} ({fmt(min(values))}–{fmt(max(values))})"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python benchmarks/dask_idle.py",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=positive, default=10.0,
                   help="length of each idle-cost window (default 10)")
    p.add_argument("--repeats", type=int, default=3, choices=range(1, 21), metavar="N",
                   help="idle windows, and wrk rounds of each state (default 3)")
    p.add_argument("--wrk-seconds", type=positive, default=3.0,
                   help="length of each wrk run on /hello (whole seconds, default 3)")
    args = p.parse_args(argv)
    print(f"distributed {distributed.__version__}, Python {platform.python_version()}, "
          f"{os.cpu_count()} cores ({len(os.sched_getaffinity(0))} usable), "
          f"{args.repeats} windows of {args.seconds:g} s; CPU = user + system of each "
          f"process tree (psutil), % of one core", flush=True)
    lab = LabSettings()
    adapter = ADAPTERS["uvicorn"]
    with TemporaryDirectory(prefix="dask-idle-") as tmp, daemons(Path(tmp)) as (sched, worker):
        runs = [idle_cost(worker.pid, sched.pid, args.seconds) for _ in range(args.repeats)]
        print(f"idle worker daemon (its tree: {runs[-1][2]} processes): "
              f"{spread([r[0] for r in runs], lambda v: f'{v:.2f} %')} of a core")
        print(f"idle scheduler: {spread([r[1] for r in runs], lambda v: f'{v:.2f} %')} "
              f"of a core")

        with running(lambda port: adapter.argv(sys.executable, lab.app, lab.host, port, 1, {}),
                     lab.host, 1, Path(tmp, "uvicorn.log"), lab.start_timeout_s,
                     lab.stop_grace_s, readiness=Readiness(lab.ready_path, lab.ready_status),
                     app_dir=str(PROJECT)) as server:
            url = f"{server.base_url}/hello"
            wrk_rps(url, 1)  # warm-up
            rps: dict[bool, list[float]] = {True: [], False: []}
            for round_ in range(args.repeats):
                for idling in (True, False) if round_ % 2 == 0 else (False, True):
                    for proc in (sched, worker):
                        signal_group(proc, signal.SIGCONT if idling else signal.SIGSTOP)
                    if idling:
                        time.sleep(SETTLE_S)
                    rps[idling].append(wrk_rps(url, args.wrk_seconds))
            for proc in (sched, worker):
                signal_group(proc, signal.SIGCONT)
    with_, without = statistics.median(rps[True]), statistics.median(rps[False])
    print(f"uvicorn 1 worker, wrk -t1 -c64 {max(1, round(args.wrk_seconds))} s on /hello, "
          f"{args.repeats} runs each, alternating:")
    print(f"  daemons idling beside it: {spread(rps[True], lambda v: f'{v:,.0f}')} req/s")
    print(f"  daemons stopped (SIGSTOP): {spread(rps[False], lambda v: f'{v:,.0f}')} req/s")
    overlap = max(rps[True]) >= min(rps[False]) and max(rps[False]) >= min(rps[True])
    print(f"  ratio idling / stopped: {with_ / without:.3f}"
          + (" (spreads overlap: no clear difference)" if overlap else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
