"""``python -m lab.guard ARGV...``: run one server so that it cannot outlive the lab.

The lab starts this guard as the leader of a new process group, with a pipe on its stdin.
The guard runs the server in the same group and waits. When the pipe closes without the
server having been stopped (the lab was SIGKILLed, ran out of memory, crashed) the guard
stops the server's whole group, workers included. When the server's main process exits,
the guard also ends any process it left behind in the group.
"""

import os
import signal
import subprocess
import sys
import threading

from lab.pgroup import signal_group, terminate, wait_gone

GRACE_ENV = "LAB_GUARD_GRACE_S"


def main(argv: list[str]) -> int:
    grace = float(os.environ.get(GRACE_ENV, "2"))
    # The lab stops the group with SIGTERM; the guard must outlive that to clean up.
    # A handler (unlike SIG_IGN) is reset to the default in the server by exec.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: None)
    server = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
    me, pgid = os.getpid(), os.getpgrp()

    def watch_lab() -> None:
        while os.read(0, 4096):  # b"" at EOF: the lab is gone or done with us
            pass
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
            if not wait_gone(pgid, grace, exclude=me):
                signal_group(pgid, signal.SIGKILL)  # ends the guard too
            os._exit(1)

    threading.Thread(target=watch_lab, daemon=True).start()
    code = server.wait()
    terminate(pgid, grace, exclude=me)  # workers the server's main process left behind
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.stdout.flush()
    os._exit(main(sys.argv[1:]))  # not sys.exit: the watcher thread is blocked in read()
