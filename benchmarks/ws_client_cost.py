"""Which WebSocket client costs the lab least? Against one real server on loopback (apps.article
wrapped as the lab serves it, 1 worker), the websocket kind's echo through each of the lab's
engines, and the same echo by an independent client in another runtime.

    .venv/bin/python benchmarks/ws_client_cost.py [--server uvicorn] [--clients 10 100]
        [--messages 20000] [--bytes 32] [--rounds 2] [--no-node]

For each N in ``--clients``, each client sends ``--messages`` ÷ N messages, each after the
echo of the one before (``lab.load.websocket.run_echo``, as a cell runs it). Client CPU per
message = ``time.process_time()`` of this process over the window ÷ echoed messages (the
server is another process); msgs/s = echoed ÷ window. The candidates:

* ``rawws``: the lab's own client on asyncio protocols (``lab.load.wsclient``);
* ``websockets``: the ``websockets`` library's asyncio client, compression off as in the lab;
* ``plain``: the ``websockets`` library used directly in ``benchmarks/ws_plain.py``,
  another process with none of the lab's code, timed by itself from the first send to the
  last echo: the independent check of the lab's msgs/s and its accounting;
* ``node``: Node's built-in WebSocket (undici) in ``benchmarks/ws_echo.mjs``, timed the same
  way: a client of another runtime (slower per message than either Python one here).

Then a broadcast at each N (``--fanouts`` rounds): the last client's delivery, p50 of the
rounds, by the lab's ``run_broadcast`` through each engine and by ``ws_plain.py broadcast``
(1 worker: every client is in the sender's group).

Every candidate runs once per round at each N, the order rotating per round; the tables give
the median over rounds. Every window is bounded (a per-message timeout; node under a process
timeout). The machine is shared and noisy: compare rows of one run.
"""

import argparse
import json
import shutil
import statistics
import subprocess
import sys
from pathlib import Path
from tempfile import TemporaryDirectory

from lab.load import loop
from lab.load.monitor import Window
from lab.load.stats import summarize
from lab.load.websocket import run_broadcast, run_echo
from lab.load.window import quiet_gc
from lab.matrix.config import Experiment
from lab.matrix.endpoint import Endpoint
from lab.servers import ADAPTERS
from lab.servers.asgi_wrap import APP_ENV, SERVED
from lab.supervise.process import Readiness, Server, running

HOST = "127.0.0.1"
SCRIPTS = {"plain": [sys.executable, str(Path(__file__).with_name("ws_plain.py")), "echo"],
           "node": ["node", "--experimental-websocket",
                    str(Path(__file__).with_name("ws_echo.mjs"))]}
SCRIPT_TIMEOUT_S = 120.0
ENGINES = ("rawws", "websockets")


def lab_echo(server: Server, engine: str, n: int, per_client: int, size: int
             ) -> dict[str, float]:
    exp = Experiment(name="cost", kind="websocket", endpoints=(Endpoint("/ws/echo"),), loads=(n,),
                     params={}, engine=engine, timeout_s=10.0, messages=per_client,
                     message_bytes=size)
    with quiet_gc():
        m = loop.run(run_echo(server.base_url, exp, exp.endpoints[0], n,
                              Window(server.pids())))
    f = summarize(m)
    return {"msgs_per_s": f.rps or 0.0, "errors": float(f.failed),
            "client_us_per_msg": 1e6 * m.usage.client_cpu_s / max(f.ok, 1),
            "server_us_per_msg": 1e6 * (m.usage.server_cpu_s or 0.0) / max(f.ok, 1),
            "p50_ms": f.latency_ms.get("p50") or 0.0}


def lab_broadcast(server: Server, engine: str, n: int, rounds: int, size: int
                  ) -> dict[str, float]:
    exp = Experiment(name="cost", kind="ws_broadcast", endpoints=(Endpoint("/ws/broadcast"),),
                     loads=(n,), params={}, engine=engine, timeout_s=10.0, rounds=rounds,
                     message_bytes=size)
    with quiet_gc():
        m = loop.run(run_broadcast(server.base_url, exp, exp.endpoints[0], n,
                                   Window(server.pids())))
    ws = m.parts.websocket
    assert ws is not None
    return {"last_p50_ms": ws.ws_last_p50_ms or float("nan"),
            "last_max_ms": ws.ws_last_max_ms or float("nan"), "missed": float(ws.ws_missed)}


def plain_broadcast(server: Server, n: int, rounds: int, size: int) -> dict[str, float]:
    url = server.base_url.replace("http://", "ws://") + "/ws/broadcast"
    done = subprocess.run([sys.executable, str(Path(__file__).with_name("ws_plain.py")),
                           "broadcast", url, str(n), str(rounds), str(size)],
                          capture_output=True, text=True, timeout=SCRIPT_TIMEOUT_S, check=True)
    r = json.loads(done.stdout.strip().splitlines()[-1])
    return {"last_p50_ms": r["last_p50_ms"] or float("nan"),
            "last_max_ms": r["last_max_ms"] or float("nan"), "missed": float(r["missed"])}


def script_echo(name: str, server: Server, n: int, per_client: int, size: int
                ) -> dict[str, float]:
    url = server.base_url.replace("http://", "ws://") + "/ws/echo"
    done = subprocess.run([*SCRIPTS[name], url, str(n), str(per_client), str(size)],
                          capture_output=True, text=True, timeout=SCRIPT_TIMEOUT_S, check=True)
    r = json.loads(done.stdout.strip().splitlines()[-1])
    return {"msgs_per_s": r["msgs_per_s"], "errors": float(r["errors"]),
            "client_us_per_msg": 1e6 * r["cpu_s"] / max(r["ok"], 1),
            "server_us_per_msg": float("nan"), "p50_ms": r["p50_ms"] or 0.0}


def table(seen: dict[tuple[str, int], list[dict[str, float]]],
          columns: dict[str, tuple[str, int]]) -> None:
    """A markdown table of each (client, N)'s medians over rounds: header → (key, digits)."""
    print("| client | N | " + " | ".join(columns) + " |")
    print("|---|---|" + "---|" * len(columns))
    for (name, n), runs in sorted(seen.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        cells = [f"{statistics.median(run[key] for run in runs):.{digits}f}"
                 for key, digits in columns.values()]
        print(f"| {name} | {n} | " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", default="uvicorn", choices=sorted(ADAPTERS))
    parser.add_argument("--clients", type=int, nargs="+", default=[10, 100])
    parser.add_argument("--messages", type=int, default=20_000, help="in all, per window")
    parser.add_argument("--bytes", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--fanouts", type=int, default=50, help="broadcast rounds")
    parser.add_argument("--no-node", action="store_true")
    args = parser.parse_args()
    candidates = [*ENGINES, "plain"] + ([] if args.no_node or not shutil.which("node")
                                        else ["node"])
    adapter = ADAPTERS[args.server]
    seen: dict[tuple[str, int], list[dict[str, float]]] = {}
    fanned: dict[tuple[str, int], list[dict[str, float]]] = {}
    with TemporaryDirectory(prefix="ws-cost-") as tmp, running(
            lambda port: adapter.argv(sys.executable, SERVED, HOST, port, 1, {}), HOST, 1,
            Path(tmp, "server.log"), 30.0, 5.0, env={APP_ENV: "apps.article:app"},
            readiness=Readiness(markers=True)) as server:
        for r in range(args.rounds):
            for n in args.clients:
                per_client = max(1, args.messages // n)
                k = r % len(candidates)
                for name in candidates[k:] + candidates[:k]:
                    figures = (lab_echo(server, name, n, per_client, args.bytes)
                               if name in ENGINES
                               else script_echo(name, server, n, per_client, args.bytes))
                    seen.setdefault((name, n), []).append(figures)
                fan = [*ENGINES, "plain"][r % 3:] + [*ENGINES, "plain"][:r % 3]
                for name in fan:
                    got = (plain_broadcast(server, n, args.fanouts, args.bytes)
                           if name == "plain"
                           else lab_broadcast(server, name, n, args.fanouts, args.bytes))
                    fanned.setdefault((name, n), []).append(got)
    print(f"{args.server}, 1 worker, {args.bytes}-byte messages, {args.messages} per window, "
          f"median of {args.rounds} rounds")
    table(seen, {"msgs/s": ("msgs_per_s", 0), "client µs/msg": ("client_us_per_msg", 1),
                 "server µs/msg": ("server_us_per_msg", 1), "p50 ms": ("p50_ms", 2),
                 "errors": ("errors", 0)})
    print(f"\nbroadcast, {args.fanouts} rounds: the last client's delivery")
    table(fanned, {"last client p50 ms": ("last_p50_ms", 2),
                   "last client max ms": ("last_max_ms", 2), "missed": ("missed", 0)})

if __name__ == "__main__":
    main()
