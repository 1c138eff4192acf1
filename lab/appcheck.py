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
from lab.process import Group, log_tail

CHECK_TIMEOUT_S = 30.0
# The child: import, look the attribute up, write one JSON verdict to the file it is given.
CHILD = """
import importlib, json, sys
module, attr, out = sys.argv[1:4]
def verdict(problem):
    with open(out, "w") as f:
        json.dump({"problem": problem}, f)
try:
    loaded = importlib.import_module(module)
except BaseException as e:  # SystemExit and KeyboardInterrupt at import are answers too
    verdict(f"cannot import {module!r}: {type(e).__name__}: {e}")
else:
    if not hasattr(loaded, attr):
        verdict(f"module {module!r} has no attribute {attr!r}")
    elif not callable(getattr(loaded, attr)):
        verdict(f"{module}:{attr} is a {type(getattr(loaded, attr)).__name__}, "
                "not an ASGI callable")
    else:
        verdict(None)
"""


def check_app(app: str, check: Callable[[], None] = lambda: None,
              timeout_s: float = CHECK_TIMEOUT_S) -> None:
    """Raise ``ConfigError("lab.app", …)`` unless ``app`` imports and names a callable."""
    module, _, attr = app.partition(":")
    with tempfile.TemporaryDirectory(prefix="lab-appcheck-") as tmp:
        out, log = Path(tmp, "verdict.json"), Path(tmp, "output.log")
        group = Group([sys.executable, "-c", CHILD, module, attr, str(out)], log)
        try:
            code = group.wait(timeout_s, check)
        finally:
            group.stop(1.0)
        if code is None:
            raise ConfigError("lab.app", f"importing {module!r} took longer than "
                                         f"{timeout_s:g} s (does it wait or serve at import?)")
        try:
            problem = json.loads(out.read_text())["problem"]
        except (OSError, ValueError, KeyError):
            tail = log_tail(log, 3)[-300:].replace("\n", " | ")
            raise ConfigError("lab.app", f"importing {module!r} ended the process (exit code "
                                         f"{code}) before it could be checked"
                                         + (f": {tail}" if tail else "")) from None
    if problem:
        raise ConfigError("lab.app", problem)

