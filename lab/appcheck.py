"""Is ``lab.app`` an importable callable? Asked of a child process, never of the lab itself.

An app module runs arbitrary code at import: it may call ``sys.exit(0)``, close fd 1,
sleep forever or print megabytes. In the lab's own process any of these would end or hang
the run with no clear word; in a supervised child (``lab.guard``: its own process group,
gone when the lab dies) each becomes one line: the key, the cause, exit code 2.
"""

import json
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from lab.errors import ConfigError
from lab.process import PROJECT_ROOT, Group, log_tail

CHECK_TIMEOUT_S = 30.0
# The child, started where the servers start (the app's folder): import, look the attribute
# up, and check that the lab's own package is not hidden by one of the app's; write one JSON
# verdict to the file it is given.
CHILD = """
import importlib, importlib.util, json, os, sys
module, attr, out, lab_dir = sys.argv[1:5]
def verdict(problem, key="lab.app"):
    with open(out, "w") as f:
        json.dump({"problem": problem, "key": key}, f)
spec = importlib.util.find_spec("lab")
found = list(spec.submodule_search_locations or []) if spec else []
if lab_dir and [os.path.realpath(p) for p in found] != [os.path.realpath(lab_dir)]:
    verdict(f"has a package or module named 'lab' ({', '.join(found)}) that hides the "
            "lab's own, which the servers import (lab.asgi_wrap); rename it, or set "
            "lab.wrap = false", "lab.app_dir")
    sys.exit(0)
try:
    loaded = importlib.import_module(module)
except BaseException as e:  # SystemExit and KeyboardInterrupt at import are answers too
    verdict(f"cannot import {module!r}: {type(e).__name__}: {e}")
else:
    try:
        for part in attr.split("."):
            loaded = getattr(loaded, part)
    except AttributeError:
        verdict(f"module {module!r} has no attribute {attr!r}")
    else:
        if not callable(loaded):
            verdict(f"{module}:{attr} is a {type(loaded).__name__}, not an ASGI callable")
        else:
            verdict(None)
"""


def check_app(app: str, check: Callable[[], None] = lambda: None,
              timeout_s: float = CHECK_TIMEOUT_S, app_dir: str | None = None,
              wrap: bool = False) -> None:
    """Raise ``ConfigError("lab.app", …)`` unless ``app`` imports from ``app_dir`` (the
    servers' working directory; default: the lab's project root) and names a callable;
    ``ConfigError("lab.app_dir", …)`` when, wrapped, the app's folder hides the lab."""
    module, _, attr = app.partition(":")
    with tempfile.TemporaryDirectory(prefix="lab-appcheck-") as tmp:
        out, log = Path(tmp, "verdict.json"), Path(tmp, "output.log")
        lab_dir = str(PROJECT_ROOT / "lab") if wrap else ""
        group = Group([sys.executable, "-c", CHILD, module, attr, str(out), lab_dir], log,
                      cwd=Path(app_dir) if app_dir else None,
                      path=[app_dir] if app_dir else [])
        try:
            code = group.wait(timeout_s, check)
        finally:
            group.stop(1.0)
        if code is None:
            raise ConfigError("lab.app", f"importing {module!r} took longer than "
                                         f"{timeout_s:g} s (does it wait or serve at import?)")
        try:
            verdict = json.loads(out.read_text())
            problem, key = verdict["problem"], verdict["key"]
        except (OSError, ValueError, KeyError):
            tail = log_tail(log, 3)[-300:].replace("\n", " | ")
            raise ConfigError("lab.app", f"importing {module!r} ended the process (exit code "
                                         f"{code}) before it could be checked"
                                         + (f": {tail}" if tail else "")) from None
    if problem:
        raise ConfigError(key, problem)

