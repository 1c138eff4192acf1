"""What a run ran on: machine, OS, Python, versions of the servers and libraries, commit."""

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil

from lab.servers import ADAPTERS

LIBRARIES = ("fastapi", "starlette", "anyio", "httpx", "aiohttp", "uvloop", "httptools",
             "tabulate", "psutil")


def collect_cpu() -> dict[str, Any]:
    model = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"model": model, "logical_cores": os.cpu_count(),
            "physical_cores": psutil.cpu_count(logical=False),
            "usable_cores": len(os.sched_getaffinity(0)),
            "load_avg_1m": os.getloadavg()[0]}


def collect_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in sorted({a.distribution for a in ADAPTERS.values()} | set(LIBRARIES)):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def collect_git(root: Path) -> dict[str, Any]:
    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True,
                                 timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": git("rev-parse", "HEAD"), "dirty": bool(status) if status is not None
            else None}


def collect(root: Path) -> dict[str, Any]:
    return {
        "cpu": collect_cpu(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "versions": collect_versions(),
        "lab": collect_git(root),
    }
