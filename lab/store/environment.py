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
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8",
                                                      errors="replace").splitlines():
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
    servers = {d for a in ADAPTERS.values() for d in (a.distribution, *a.runs_on)}
    for name in sorted(servers | set(LIBRARIES)):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def collect_git(root: Path) -> dict[str, Any]:
    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], cwd=root, capture_output=True, timeout=5,
                                 encoding="utf-8", errors="replace")
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


def facts(env: dict[str, Any]) -> dict[str, Any]:
    """What of an environment can change a measurement (not the load average)."""
    cpu, lab = env.get("cpu", {}), env.get("lab", {})
    commit = (lab.get("commit") or "unknown")[:12] + (" (dirty)" if lab.get("dirty") else "")
    return {"CPU": cpu.get("model"), "logical cores": cpu.get("logical_cores"),
            "usable cores": cpu.get("usable_cores"), "memory GiB": env.get("memory_gib"),
            "OS": env.get("os"), "Python": env.get("python"),
            **{name: v for name, v in env.get("versions", {}).items()}, "lab commit": commit}


def differences(first: dict[str, Any], later: list[dict[str, Any]]) -> list[str]:
    """How each later session's environment differs from the first's, one entry per session
    that differs, e.g. ``session 2: granian 2.8.7 → 2.8.9``."""
    out = []
    for n, env in enumerate(later, 2):
        if changed := changes(first, env):
            out.append(f"session {n}: {', '.join(changed)}")
    return out


def changes(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """What differs between two environments that can change a measurement, e.g.
    ``granian 2.8.7 → 2.8.9``; empty when they are alike (the load average does not count)."""
    old, new = facts(before), facts(after)
    return [f"{k} {old.get(k)} → {new.get(k)}" for k in {**old, **new}
            if old.get(k) != new.get(k)]
