"""``python -m lab``. Until the CLI installs its own handlers (``run`` does, once it has a
run to stop cleanly), a signal ends the lab at once with one line and the usual exit code,
never a traceback: nothing has been started or written yet that needs stopping."""

import os
import signal
import sys
from types import FrameType

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _early(signum: int, _: FrameType | None) -> None:
    os.write(2, f"interrupted by signal {signum}: nothing was run\n".encode())
    os._exit(128 + signum)


for _signum in SIGNALS:
    signal.signal(_signum, _early)

from lab.cli import main  # noqa: E402  (after the handlers: imports take ~0.5 s)

sys.exit(main())
