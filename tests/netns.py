"""Two simulated hosts with a real network hop between them, for tests (not a test file).

``hosts(prefix)`` makes two network namespaces, joins them with a veth pair and assigns
10.231.<n>.1/24 on the server side and 10.231.<n>.2/24 on the load side, so traffic from one
to the other crosses a real interface and nothing leaves the machine (neither namespace has a
route out). On exit, also after a failure or Ctrl-C, it stops what it started, kills any
process still in either namespace and deletes both. Needs root and iproute2: tests call
``pytest.skip(skip_reason())`` where that is missing.
"""

import itertools
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

GRACE_S = 3.0  # SIGTERM → SIGKILL
IP_TIMEOUT_S = 10.0
NETNS_DIR = Path("/run/netns")  # where `ip netns add` bind-mounts each namespace
VETH = "hop0"  # the same name on both sides: each lives in its own namespace
_calls = itertools.count()


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True,
                          timeout=IP_TIMEOUT_S, check=check)


def skip_reason() -> str | None:
    """Why network namespaces cannot be made here, or None when they can."""
    if os.geteuid() != 0:
        return "network namespaces need root (CI runs these tests as root)"
    if shutil.which("ip") is None:
        return "no `ip` command (iproute2) to make network namespaces"
    probe = f"lab-probe-{os.getpid()}-{next(_calls)}"
    made = _ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"`ip netns add` failed: {made.stderr.strip() or made.returncode}"
    _ip("netns", "delete", probe, check=False)
    return None


def namespaces() -> set[str]:
    """Names of the network namespaces that exist now."""
    return {line.split()[0] for line in _ip("netns", "list").stdout.splitlines() if line}


def pids(ns: str) -> list[int]:
    """Processes whose network namespace is ``ns``."""
    return [int(p) for p in _ip("netns", "pids", ns, check=False).stdout.split()]


@dataclass
class Hop:
    server_ns: str
    load_ns: str
    server_ip: str
    load_ip: str
    _started: list[subprocess.Popen[Any]] = field(default_factory=list)

    def popen(self, ns: str, argv: Sequence[str], **kw: Any) -> subprocess.Popen[Any]:
        """``argv`` inside ``ns``, leader of a new process group that the context stops
        on exit. ``ip netns exec`` execs the command, so the pid is the command's."""
        proc = subprocess.Popen(["ip", "netns", "exec", ns, *argv], start_new_session=True,
                                **kw)
        self._started.append(proc)
        return proc

    def run(self, ns: str, argv: Sequence[str], timeout: float,
            **kw: Any) -> subprocess.CompletedProcess[str]:
        """``argv`` inside ``ns`` to its end (its output captured as text), killed with
        its process group at ``timeout``."""
        proc = self.popen(ns, argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, **kw)
        try:
            out, err = proc.communicate(timeout=timeout)
        finally:
            self.stop(proc)
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)

    def stop(self, proc: subprocess.Popen[Any], grace_s: float = GRACE_S) -> int:
        """SIGTERM to ``proc``'s process group, SIGKILL after ``grace_s``; its exit code."""
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        # The leader gone, its group may still hold children that ignored SIGTERM.
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        if proc in self._started:
            self._started.remove(proc)
        return proc.returncode

    def stop_all(self) -> None:
        """Stop every group started here, the last started first (workers before their
        scheduler, so they do not spend the grace reconnecting)."""
        for proc in reversed(list(self._started)):
            self.stop(proc)

    def netns_inode(self, ns: str) -> int:
        """The inode of ``ns``: what ``os.stat("/proc/self/ns/net").st_ino`` reads in it."""
        return (NETNS_DIR / ns).stat().st_ino


def _kill_inside(names: Sequence[str]) -> None:
    """SIGTERM every process left in the namespaces, SIGKILL what remains after the grace."""
    left = [p for ns in names for p in pids(ns)]
    for pid in left:
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + GRACE_S
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = [p for ns in names for p in pids(ns)]
    for pid in left:
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@contextmanager
def hosts(prefix: str) -> Iterator[Hop]:
    """Two namespaces joined by a veth pair (see the module's docstring), removed on exit."""
    call = next(_calls)
    name = f"{prefix}-{os.getpid()}-{call}"
    # n from the pid and the call: parallel tests get different subnets, so their
    # addresses never look alike in a log (the namespaces would keep them apart anyway).
    n = (os.getpid() + call) % 254 + 1
    hop = Hop(f"{name}-a", f"{name}-b", f"10.231.{n}.1", f"10.231.{n}.2")
    made: list[str] = []
    try:
        for ns in (hop.server_ns, hop.load_ns):
            _ip("netns", "add", ns)
            made.append(ns)
        # Created inside the server side with its peer inside the load side: no name of
        # ours ever appears in the machine's own namespace.
        _ip("-n", hop.server_ns, "link", "add", VETH, "type", "veth",
            "peer", "name", VETH, "netns", hop.load_ns)
        for ns, ip in ((hop.server_ns, hop.server_ip), (hop.load_ns, hop.load_ip)):
            _ip("-n", ns, "addr", "add", f"{ip}/24", "dev", VETH)
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", ns, "link", "set", VETH, "up")
        yield hop
    finally:
        hop.stop_all()
        _kill_inside(made)
        for ns in made:
            _ip("netns", "delete", ns, check=False)
