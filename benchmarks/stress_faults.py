"""Random faults against real runs: does anything leak, get lost or end in a traceback?

Each round runs ``python -m lab run`` on a small config (one server, a burst and two
closed cells, short windows) and strikes it once at a random moment with one of: SIGINT,
SIGTERM, SIGHUP, SIGKILL, SIGSTOP for 1–3 s then SIGCONT, an app whose worker crashes
mid-run, or a disk that fills up (a small tmpfs, when run as root). Then it resumes the run
until it is finished and counts:

- leftovers: processes of the round still alive 10 s after the lab ended (every process
  the lab starts inherits the round's environment token);
- lost or duplicated results: cells missing from, or appearing twice in, the finished
  run's results;
- tracebacks: any "Traceback" in what the lab printed;
- untrue states: run.json not "finished" after the final resume;
- hung: a resume that did not end within 3 minutes.

    python benchmarks/stress_faults.py [--faults 50] [--seed 1]
"""

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

from lab.store.results import RunDir

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "LAB_STRESS_TOKEN"
CONFIG = """
[lab]
stop_grace_s = 1
cell_timeout_s = 30
[servers.{server}]
workers = [{workers}]
[[experiments]]
name = "b"
kind = "burst"
endpoints = ["{burst}"]
requests = [5]
params = {{ delay = 0.05 }}
[[experiments]]
name = "c"
kind = "closed"
endpoints = ["/hello", "/non-blocking"]
users = [4]
duration_s = 1
warmup_s = 0.2
params = {{ delay = 0.02 }}
"""
CELLS = 3  # the burst and the two closed cells
FAULTS = ("SIGINT", "SIGTERM", "SIGHUP", "SIGKILL", "SIGSTOP", "crash", "disk")


def carrying(token: str) -> list[int]:
    needle = f"{TOKEN}={token}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0") and \
                    (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def lab(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "lab", *args], cwd=ROOT, env=env,
                            text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def one_round(fault: str, rng: random.Random, work: Path) -> Counter[str]:
    counts: Counter[str] = Counter()
    token = uuid.uuid4().hex
    # Its own measuring lock: the faults are this round's, not another lab's wait.
    env = {**os.environ, TOKEN: token, "ASGI_LAB_LOCK_DIR": str(work / "lock")}
    out = work / "out"
    out.mkdir(parents=True)
    mounted = False
    if fault == "disk":
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=40k", "tmpfs",
                                  str(out)], capture_output=True).returncode == 0
        if not mounted:
            fault = "SIGINT"
    config = work / "c.toml"
    config.write_text(CONFIG.format(server=rng.choice(["uvicorn", "granian"]),
                                    workers=rng.choice([1, 2]),
                                    burst="/crash" if fault == "crash" else "/non-blocking"))
    printed = ""
    proc = lab(["run", str(config), "--out", str(out), "--run-id", "r", "--yes"], env)
    try:
        if fault.startswith("SIG"):
            time.sleep(rng.uniform(0.0, 4.0))
            if fault == "SIGSTOP":
                proc.send_signal(signal.SIGSTOP)
                time.sleep(rng.uniform(1.0, 3.0))
                proc.send_signal(signal.SIGCONT)
            elif proc.poll() is None:
                proc.send_signal(getattr(signal, fault))
        o, e = proc.communicate(timeout=120)
        printed += o + e
        counts[f"exit {proc.returncode}"] += 0  # shown, not counted: how the fault ended it
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    if mounted:  # free the disk: copy the run out, then resume it where there is room
        if (out / "r").exists():
            shutil.copytree(out / "r", work / "r")
        subprocess.run(["umount", "-l", str(out)], check=False)
        run_path = work / "r"
    else:
        run_path = out / "r"
    deadline = time.monotonic() + 10
    while carrying(token) and time.monotonic() < deadline:
        time.sleep(0.1)
    counts["leftovers"] += len(carrying(token))
    for pid in carrying(token):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if run_path.is_dir():
        for _ in range(3):  # resume until finished (a crash cell is a finished, failed cell)
            resumed = lab(["run", "--resume", str(run_path)], env)
            try:
                o, e = resumed.communicate(timeout=180)
            except subprocess.TimeoutExpired:
                counts["hung"] += 1
                resumed.kill()
                o, e = resumed.communicate()
            printed += o + e
            if "nothing to do" in o or resumed.returncode in (0, 3):
                break
        run = RunDir(run_path)
        ids = [r.cell_id for r in run.load().records]
        counts["duplicated"] += len(ids) - len(set(ids))
        counts["lost"] += max(0, CELLS - len(set(ids)))
        counts["untrue_state"] += run.info().state != "finished"
    counts["tracebacks"] += "Traceback" in printed
    return counts


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--faults", type=int, default=50)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()
    rng = random.Random(args.seed)
    total: Counter[str] = Counter({k: 0 for k in ("leftovers", "lost", "duplicated",
                                                  "tracebacks", "untrue_state", "hung")})
    kinds: Counter[str] = Counter()
    exits: Counter[str] = Counter()
    with tempfile.TemporaryDirectory(prefix="stress-") as tmp:
        for i in range(args.faults):
            fault = FAULTS[i % len(FAULTS)]
            kinds[fault] += 1
            c = one_round(fault, rng, Path(tmp, str(i)))
            total.update({k: v for k, v in c.items() if not k.startswith("exit ")})
            exits[next((k for k in c if k.startswith("exit ")), "exit ?")] += 1
            ended = next((k for k in c if k.startswith("exit ")), "")
            bad = {k: v for k, v in c.items() if v}
            print(f"[{i + 1}/{args.faults}] {fault:8} first run: {ended:8} "
                  f"{bad or 'clean'}", flush=True)
    print(f"\n{args.faults} faults ({', '.join(f'{k} {n}' for k, n in kinds.items())}): "
          + ", ".join(f"{k} {v}" for k, v in total.items())
          + f"\nfirst runs ended with: {', '.join(f'{k}: {n}' for k, n in sorted(exits.items()))}")
    return 0 if not any(total.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
