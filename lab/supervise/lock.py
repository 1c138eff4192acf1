"""Exclusive locks held by a live lab process: one measuring run per machine, one writer
per run folder.

A lock is ``fcntl.flock`` on a file. The kernel drops it when the holder's last descriptor
closes, so when the holder dies in any way (SIGKILL included) the lock is free again:
there is never a stale lock to clean up. The file's content only *names* the holder (pid,
run folder, start time) so that the next lab can say whom it waits for; the flock is what
counts. Descriptors are opened close-on-exec, so a server the lab starts never holds one.
"""

import fcntl
import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

LOCK_DIR_ENV = "ASGI_LAB_LOCK_DIR"  # tests point this at a folder of their own
# Not $XDG_RUNTIME_DIR (one per user) nor $TMPDIR (may differ per session): the CPUs are
# shared by every user of the machine, so every user must find the same file.
DEFAULT_LOCK_DIR = Path("/tmp/asgi-lab")
MEASURING = "measure.lock"
WRITER = ".lock"  # in the run folder
POLL_S = 0.1
# A lab that is reaping a folder probes its lock for a moment: a writer that arrives just
# then should not be refused for it.
SETTLE_S = 0.2


@dataclass(frozen=True)
class Holder:
    pid: int
    run_dir: str | None
    since: str  # local time, ISO

    @classmethod
    def me(cls, run_dir: Path | None = None) -> "Holder":
        return cls(os.getpid(), None if run_dir is None else str(run_dir),
                   datetime.now().isoformat(timespec="seconds"))

    def __str__(self) -> str:
        where = f"run {self.run_dir}, " if self.run_dir else ""
        return f"pid {self.pid} ({where}since {self.since.replace('T', ' ')})"


class FileLock:
    def __init__(self, path: Path, shared_dir: bool = False) -> None:
        self.path = path
        self._shared_dir = shared_dir
        self._fd: int | None = None

    def try_acquire(self, run_dir: Path | None = None) -> bool:
        """Take the lock if it is free, and name this process (writing ``run_dir``) in it;
        never waits."""
        if self._fd is not None:
            return True
        fd = self._open()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        self.name(run_dir)
        return True

    def acquire(self, run_dir: Path | None, wait: bool,
                on_wait: Callable[[Holder | None], None] = lambda _: None,
                check: Callable[[], None] = lambda: None) -> bool:
        """Take the lock; False if another process holds it and ``wait`` is false. With
        ``wait``, call ``on_wait`` once and poll until the lock is free, calling ``check``
        between polls (it raises to give up, e.g. on a signal: a blocking flock would not
        return for a signal whose handler only sets a flag)."""
        deadline = time.monotonic() + SETTLE_S
        told = False
        while not self.try_acquire(run_dir):
            check()
            if wait and not told:
                on_wait(self.holder())
                told = True
            elif not wait and time.monotonic() >= deadline:
                return False
            time.sleep(POLL_S if wait else POLL_S / 4)
        return True

    def name(self, run_dir: Path | None) -> None:
        """Name this process as the holder (again, once the run folder is known)."""
        assert self._fd is not None
        try:
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, (json.dumps(asdict(Holder.me(run_dir))) + "\n").encode(), 0)
        except OSError:
            pass  # a file another user created and we may only read: the lock still holds

    def release(self) -> None:
        if self._fd is not None:
            try:
                os.ftruncate(self._fd, 0)  # names nobody (a killed holder leaves its name)
            except OSError:
                pass
            os.close(self._fd)  # closing drops the flock
            self._fd = None

    def holder(self) -> Holder | None:
        """Who the file names; None if it names nobody (yet)."""
        try:
            return Holder(**json.loads(self.path.read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def held_elsewhere(self) -> bool:
        """Held by another process (or another lock object); a missing file is free."""
        if self._fd is not None:
            return False
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        except OSError:
            return True  # cannot tell: take it as held, and leave the folder alone
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            return False
        except BlockingIOError:
            return True
        finally:
            os.close(fd)  # drops the probe's shared lock

    def _open(self) -> int:
        if self._shared_dir and not self.path.parent.is_dir():
            try:
                self.path.parent.mkdir(parents=True)
                os.chmod(self.path.parent, 0o1777)  # every user's lab shares it, like /tmp
            except FileExistsError:
                pass
        flags = os.O_NOFOLLOW | os.O_CLOEXEC
        while True:
            # Open before creating: with fs.protected_regular, O_CREAT on a file another
            # user owns in a sticky folder fails even where plain opening is allowed.
            try:
                return os.open(self.path, os.O_RDWR | flags)
            except FileNotFoundError:
                pass
            except PermissionError:
                return os.open(self.path, os.O_RDONLY | flags)  # flock needs no write access
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL | flags, 0o666)
            except FileExistsError:
                continue  # another lab created it just now
            if self._shared_dir:
                os.fchmod(fd, 0o666)  # not narrowed by our umask: other users take it too
            return fd


def lock_dir() -> Path:
    return Path(os.environ.get(LOCK_DIR_ENV) or DEFAULT_LOCK_DIR)


def measuring_lock() -> FileLock:
    """Held for the whole of a run that starts servers and measures: one per machine."""
    return FileLock(lock_dir() / MEASURING, shared_dir=True)


def writer_lock(run_dir: Path) -> FileLock:
    """Held by the one lab writing ``run_dir`` (``run`` or ``run --resume``)."""
    return FileLock(run_dir / WRITER)
