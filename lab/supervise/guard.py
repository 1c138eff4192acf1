"""``python -m lab.supervise.guard ARGV...``: run one server so that it cannot outlive the lab.

The lab starts this guard as the leader of a new process group, with a pipe on its stdin.
The guard runs the server in the same group and waits. When the pipe closes without the
server having been stopped (the lab was SIGKILLed, ran out of memory, crashed) the guard
stops the server's whole group, workers included. When the server's main process exits,
the guard also ends any process it left behind in the group.

The guard is a child subreaper: a descendant that escapes the group (``setsid``) and is
orphaned is re-parented to the guard instead of init, so the guard ends it too.
"""

import ctypes
import json
import os
import signal
import subprocess
import sys
import threading
import time

from lab.matrix.placement import apply_from_env
from lab.supervise.pgroup import children, signal_group, terminate, wait_gone

GRACE_ENV = "LAB_GUARD_GRACE_S"
RUSAGE_ENV = "LAB_RUSAGE_FILE"  # where the guard writes its child's CPU seconds
PR_SET_CHILD_SUBREAPER = 36


def end_escaped(me: int, server: int, grace_s: float) -> None:
    """SIGTERM, then SIGKILL, the guard's remaining children but the server: descendants
    that left the group and were orphaned to this subreaper. Their orphans come to us in
    turn. Only the main thread reaps the server (``wait4``)."""
    deadline = time.monotonic() + grace_s
    while pids := [p for p in children(me) if p != server]:
        sig = signal.SIGTERM if time.monotonic() < deadline else signal.SIGKILL
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        time.sleep(0.02)
        for pid in pids:  # reap what ended, so it leaves /proc
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass


def main(argv: list[str]) -> int:
    grace = float(os.environ.get(GRACE_ENV, "2"))
    # The lab stops the group with SIGTERM; the guard must outlive that to clean up.
    # A handler (unlike SIG_IGN) is reset to the default in the server by exec.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: None)
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1)
    apply_from_env()  # the child and all it starts inherit the CPUs
    rusage_path = os.environ.pop(RUSAGE_ENV, "")
    server = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
    me, pgid = os.getpid(), os.getpgrp()

    exited = threading.Event()

    def watch_lab() -> None:
        while os.read(0, 4096):  # b"" at EOF: the lab is gone or done with us
            pass
        if not exited.is_set():  # no poll(): only the main thread may reap the child
            os.kill(server.pid, signal.SIGTERM)
            if not wait_gone(pgid, grace, exclude=me):
                signal_group(pgid, signal.SIGKILL, exclude=me)
            # Only once the main thread has reaped the server are its orphans surely ours
            # (the group can look empty a moment before the kernel re-parents them).
            exited.wait(grace + 1.0)
            end_escaped(me, server.pid, grace)
            os._exit(1)

    threading.Thread(target=watch_lab, daemon=True).start()
    # wait4, not wait: the child's own CPU time (wrk's, without this guard's start-up).
    _, status, usage = os.wait4(server.pid, 0)
    exited.set()
    code = os.waitstatus_to_exitcode(status)
    if rusage_path:
        with open(rusage_path, "w") as f:
            json.dump({"cpu_s": usage.ru_utime + usage.ru_stime}, f)
    terminate(pgid, grace, exclude=me)  # workers the server's main process left behind
    end_escaped(me, server.pid, grace)
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.stdout.flush()
    os._exit(main(sys.argv[1:]))  # not sys.exit: the watcher thread is blocked in read()
