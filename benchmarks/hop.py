"""The same cells measured locally and split over two hosts: does a remote placement change
the figures, and what does the load host spend?

    python -m benchmarks.hop [--seconds 3] [--repeats 3] [--users 16,64]   (as root, from
    the project root: it uses the test hosts of tests/netns.py)

Runs one small matrix (uvicorn and granian, 1 worker, a closed loop on ``/hello`` with wrk)
three times, side by side in one sitting:

* ``local, shared``: the lab as on this machine by default, client and servers on every CPU;
* ``local, pinned``: ``lab.server_cpus = "1"``, ``lab.client_cpus = "0"``;
* ``split``: two network namespaces joined by a veth pair (the test hosts of
  ``tests/netns.py``), a TLS scheduler and the ``server=1`` worker in one, the worker pinned
  to CPU 1, the ``loadgen=1`` worker and the controller in the other, pinned to CPU 0 (the
  scheduler too): the same CPUs as ``local, pinned``, with a real interface between client
  and server and the worker daemon beside the server.

It prints, per cell, req/s (median and spread over the repeats), the load side's CPU (wrk's
own, % of a core) and the server's. Needs root (namespaces) and wrk. Everything it starts is
stopped and the namespaces removed, also on failure. Noisy machine: compare the rows of one
run, not figures across runs.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from tabulate import tabulate

from lab.store.results import RunDir
from tests import netns
from tests.tlsfiles import write_certificates

ROOT = Path(__file__).resolve().parent.parent
PORT = 8786
START_S = 30.0

CONFIG = """
[lab]
repeats = {repeats}
stop_grace_s = 2
{cpus}

[servers.uvicorn]
workers = [1]

[servers.granian]
workers = [1]

[[experiments]]
name = "hello"
kind = "closed"
endpoints = ["/hello"]
users = [{users}]
duration_s = {seconds}
warmup_s = 1
engine = "wrk"
"""


def lab(*args: str) -> list[str]:
    return [sys.executable, "-m", "lab", *args]


def dask(*args: str) -> list[str]:
    return [str(Path(sys.executable).with_name("dask")), *args]


def run_local(config: Path, out: Path, run_id: str) -> Path:
    subprocess.run(lab("run", str(config), "--out", str(out), "--run-id", run_id, "--quiet",
                       "--yes"), cwd=ROOT, check=True)
    return out / run_id


def run_split(config: Path, out: Path, run_id: str, folder: Path) -> Path:
    """The config's run with its servers in one namespace and its load in the other."""
    env = {**os.environ, "LAB_HOSTS_DIR": str(folder / "hosts")}
    with netns.hosts("lab-bench") as hop:
        tls = write_certificates(folder / "tls", [hop.server_ip, hop.load_ip])
        files = ["--tls-ca-file", tls.ca_file, "--tls-cert", tls.cert_file, "--tls-key",
                 tls.key_file]
        address = f"tls://{hop.server_ip}:{PORT}"
        log = (folder / "cluster.log").open("w")
        try:
            # The scheduler on the load side's CPU, as on a controller's host: the server's
            # CPU holds the server and its host's worker daemon only.
            hop.popen(hop.server_ns, ["taskset", "-c", "0", *dask(
                "scheduler", "--host", hop.server_ip, "--port", str(PORT), "--no-dashboard",
                *files)], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
            for ns, ip, cpu, role in ((hop.server_ns, hop.server_ip, "1", "server"),
                                      (hop.load_ns, hop.load_ip, "0", "loadgen")):
                hop.popen(ns, ["taskset", "-c", cpu, *dask(
                    "worker", address, "--host", ip, "--resources", f"{role}=1",
                    "--no-dashboard", "--nthreads", "4", *files)],
                    cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
            deadline = time.monotonic() + START_S
            while True:  # until the scheduler lists both workers
                listed = hop.run(hop.load_ns, lab("hosts", "--scheduler", address, *files),
                                 timeout=30, cwd=ROOT, env=env).stdout
                if hop.server_ip in listed and hop.load_ip in listed:
                    break
                if time.monotonic() > deadline:
                    raise SystemExit(f"the cluster did not come up:\n{listed}")
                time.sleep(0.2)
            ran = hop.run(hop.load_ns, lab("run", str(config), "--scheduler", address, *files,
                                           "--out", str(out), "--run-id", run_id, "--quiet",
                                           "--yes"), timeout=1800, cwd=ROOT, env=env)
            if ran.returncode != 0:
                raise SystemExit(f"the split run failed ({ran.returncode}): {ran.stderr}")
        finally:
            hop.stop_all()
            log.close()
    return out / run_id


def spread(values: list[float], digits: int = 0) -> str:
    if not values:
        return "–"
    mid = statistics.median(values)
    return f"{mid:,.{digits}f} ({min(values):,.{digits}f}–{max(values):,.{digits}f})"


def table(runs: dict[str, Path]) -> str:
    rows = []
    by: dict[tuple[str, str, str], list[tuple[float, float, float]]] = defaultdict(list)
    for label, path in runs.items():
        for r in RunDir.existing(path).load().records:
            f = r.figures
            if r.status == "ok" and f is not None and f.rps is not None:
                by[r.server_id, str(r.load.get("users")), label].append(
                    (f.rps, f.client_cpu_pct or 0.0, f.server_cpu_pct or 0.0))
    for (server, users, label), got in sorted(by.items()):
        rows.append([server, users, label, spread([g[0] for g in got]),
                     spread([g[1] for g in got]), spread([g[2] for g in got])])
    return tabulate(rows, headers=["server", "users", "placement", "req/s",
                                   "load side CPU %", "server CPU %"], tablefmt="github")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=3.0, help="each window (default 3)")
    p.add_argument("--repeats", type=int, default=3, help="repeats per cell (default 3)")
    p.add_argument("--users", default="16,64", help="closed-loop users, comma-separated")
    args = p.parse_args(argv)
    if reason := netns.skip_reason():
        print(f"needs two network namespaces: {reason}", file=sys.stderr)
        return 2
    if len(os.sched_getaffinity(0)) < 2 or not {0, 1} <= os.sched_getaffinity(0):
        print("needs CPUs 0 and 1", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="lab-hop-") as tmp:
        folder, out = Path(tmp), Path(tmp) / "out"

        def config(name: str, cpus: str) -> Path:
            path = folder / f"{name}.toml"
            path.write_text(CONFIG.format(repeats=args.repeats, users=args.users,
                                          seconds=args.seconds, cpus=cpus))
            return path

        runs = {
            "local, shared": run_local(config("shared", ""), out, "shared"),
            "local, pinned": run_local(config("pinned", 'server_cpus = "1"\n'
                                                        'client_cpus = "0"'), out, "pinned"),
            "split (veth)": run_split(config("split", ""), out, "split", folder),
        }
        print(f"{args.repeats} repeats of {args.seconds:g} s windows, wrk; pinned and split: "
              "servers on CPU 1, load on CPU 0")
        print(table(runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
