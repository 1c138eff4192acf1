"""Remote hosts' settings: the Dask scheduler's address, its TLS files, and the rules an
address must follow (TLS off loopback). ``distributed`` is imported only when asked for a
``Security``: a config without a scheduler never loads it."""

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from lab.errors import ConfigError, UsageError

if TYPE_CHECKING:
    import distributed

SCHEMES = ("tcp", "tls")
TLS_KEYS = ("ca_file", "cert_file", "key_file")
FLAGS = ("--tls-ca-file", "--tls-cert", "--tls-key")  # each TLS_KEYS item's flag
TLS_LINE = ("a scheduler off loopback requires TLS: use tls://… and [lab.tls] ca_file, "
            "cert_file, key_file")


@dataclass(frozen=True)
class Tls:
    """The scheduler's CA and this side's certificate and key: absolute paths to files that
    exist."""

    ca_file: str
    cert_file: str
    key_file: str


@dataclass(frozen=True)
class Remote:
    """Where the scheduler is, and the rules of remote tasks."""

    scheduler: str  # "tcp://127.0.0.1:8786" or "tls://10.0.0.1:8786"
    tls: Tls | None = None
    lease_s: float = 10.0  # a server task stops its group when not renewed for this long
    start_spread: float = 0.1  # k load hosts: a start spread > this fraction of the window

    def security(self) -> "distributed.Security | None":
        """The client's TLS settings; None over tcp:// (loopback only)."""
        if self.tls is None:
            return None
        from distributed import Security

        return Security(tls_ca_file=self.tls.ca_file, tls_client_cert=self.tls.cert_file,
                        tls_client_key=self.tls.key_file, require_encryption=True)

    @property
    def host(self) -> str:
        """The scheduler's host part, e.g. "127.0.0.1" (an IPv6 one without brackets)."""
        return urlsplit(self.scheduler).hostname or ""


@dataclass(frozen=True)
class Override:
    """The command line's ``--scheduler`` and ``--tls-*``: they replace ``lab.scheduler`` and
    ``[lab.tls]``'s files (relative to the current folder, not the config's)."""

    scheduler: str | None = None
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None

    def files(self) -> dict[str, tuple[str, str]]:
        """Each TLS file given: its ``[lab.tls]`` key → (flag, path)."""
        values = (self.ca_file, self.cert_file, self.key_file)
        return {k: (flag, v) for k, flag, v in zip(TLS_KEYS, FLAGS, values, strict=True)
                if v is not None}


NO_OVERRIDE = Override()


def check(address: str, tls: Tls | None, path: str) -> None:
    """Refuse an address Dask could not reach or the lab must not use: ``path`` names where
    it came from (``lab.scheduler``, ``--scheduler``)."""
    shown = f"{address!r}"
    parts = urlsplit(address)
    if parts.scheme not in SCHEMES or "://" not in address:
        raise ConfigError(path, f"must be tcp://HOST:PORT or tls://HOST:PORT, got {shown}")
    try:
        port = parts.port
    except ValueError:
        raise ConfigError(path, f"has no valid port (1–65535), got {shown}") from None
    if not parts.hostname or port is None or port == 0:
        raise ConfigError(path, f"needs a host and a port, as tcp://127.0.0.1:8786, got {shown}")
    if parts.path or parts.query or parts.fragment or parts.username or parts.password:
        raise ConfigError(path, f"must be only SCHEME://HOST:PORT, got {shown}")
    if parts.scheme == "tcp" and not is_loopback(parts.hostname):
        raise ConfigError(path, f"{TLS_LINE} (got {shown})")
    if parts.scheme == "tls" and tls is None:
        raise ConfigError(path, "tls:// needs [lab.tls] ca_file, cert_file and key_file "
                                "(or --tls-ca-file, --tls-cert, --tls-key)")
    if parts.scheme == "tcp" and tls is not None:  # files given but never used: a slip
        raise ConfigError(path, f"is tcp://, which does not use the TLS files: use tls:// "
                                f"or leave out [lab.tls] (got {shown})")


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 or localhost."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def tls_file(value: str, path: str, base_dir: Path) -> str:
    """A TLS file, relative to ``base_dir``, as an absolute path; it must exist."""
    file = Path(value).expanduser()
    if not file.is_absolute():
        file = base_dir / file
    file = file.resolve()
    if not file.is_file():
        raise ConfigError(path, f"no such file: {file}")
    return str(file)


def tls_of(files: Mapping[str, str], where: Mapping[str, str]) -> Tls | None:
    """All three TLS files, or None when none is given; ``where`` names each key's source
    (``lab.tls.ca_file`` or ``--tls-ca-file``) for the error on a missing one."""
    if not files:
        return None
    for key in TLS_KEYS:
        if key not in files:
            raise ConfigError(where[key], "is required: a TLS scheduler needs the CA, the "
                                          "certificate and the key")
    return Tls(**files)


def of_flags(override: Override) -> Remote:
    """The scheduler of a command given no config (``python -m lab hosts --scheduler …``)."""
    if override.scheduler is None:
        raise UsageError("give --scheduler ADDRESS, or a CONFIG whose lab.scheduler is set")
    given = override.files()
    files = {k: tls_file(path, flag, Path.cwd()) for k, (flag, path) in given.items()}
    tls = tls_of(files, {k: flag for k, flag in zip(TLS_KEYS, FLAGS, strict=True)})
    check(override.scheduler, tls, "--scheduler")
    return Remote(override.scheduler, tls)
