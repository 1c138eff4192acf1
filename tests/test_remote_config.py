"""The remote hosts' settings: lab.scheduler, lab.lease_s, lab.start_spread, [lab.tls], and
their flags; a bad one is one line naming its key and exit code 2."""

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from lab.errors import ConfigError
from lab.matrix.config import parse
from lab.matrix.remote import NO_OVERRIDE, Override, Remote, Tls
from tests.conftest import ROOT, run_lab

REST = """
[servers.uvicorn]
workers = [1]

[[experiments]]
name = "b"
kind = "burst"
endpoints = ["/non-blocking"]
requests = [2]
"""
TLS_LINE = "a scheduler off loopback requires TLS: use tls://… and [lab.tls] ca_file, " \
           "cert_file, key_file"


@pytest.fixture
def certs(tmp_path: Path) -> Path:
    """A folder with ca.pem, cert.pem and key.pem (their content is read only on connect)."""
    for name in ("ca.pem", "cert.pem", "key.pem"):
        (tmp_path / name).write_text("-----BEGIN-----\n", encoding="utf-8")
    return tmp_path


TLS_TABLE = '[lab.tls]\nca_file = "ca.pem"\ncert_file = "cert.pem"\nkey_file = "key.pem"\n'


def remote(lab: str, base_dir: Path | None = None,
           override: Override = NO_OVERRIDE) -> Remote | None:
    return parse(tomllib.loads("[lab]\n" + lab + REST), base_dir=base_dir,
                 override=override).lab.remote


def error(lab: str, base_dir: Path | None = None, override: Override = NO_OVERRIDE) -> str:
    with pytest.raises(ConfigError) as e:
        remote(lab, base_dir, override)
    return str(e.value)


def test_no_scheduler_runs_locally() -> None:
    assert remote('app = "apps.article:app"\n') is None


def test_loopback_tcp_scheduler_parses_with_defaults() -> None:
    r = remote('scheduler = "tcp://127.0.0.1:8786"\n')
    assert r == Remote("tcp://127.0.0.1:8786", None, 10.0, 0.1)
    assert r.host == "127.0.0.1" and r.security() is None
    assert remote('scheduler = "tcp://[::1]:8786"\n').host == "::1"  # type: ignore[union-attr]


def test_tls_scheduler_parses_files_relative_to_the_config(certs: Path) -> None:
    r = remote('scheduler = "tls://10.0.0.1:8786"\nlease_s = 3\nstart_spread = 0.25\n'
               + TLS_TABLE, base_dir=certs)
    assert r == Remote("tls://10.0.0.1:8786",
                       Tls(str(certs / "ca.pem"), str(certs / "cert.pem"),
                           str(certs / "key.pem")), 3.0, 0.25)
    assert r.host == "10.0.0.1"
    security = r.security()
    assert security is not None and security.require_encryption
    assert security.tls_ca_file == str(certs / "ca.pem")


@pytest.mark.parametrize(("lab", "starts"), [
    ('scheduler = "tcp://10.1.2.3:8786"\n', f"lab.scheduler: {TLS_LINE}"),
    ('scheduler = "tcp://example.org:8786"\n', f"lab.scheduler: {TLS_LINE}"),
    ('scheduler = "tls://10.1.2.3:8786"\n', "lab.scheduler: tls:// needs [lab.tls]"),
    ('scheduler = "http://127.0.0.1:8786"\n', "lab.scheduler: must be tcp://HOST:PORT"),
    ('scheduler = "127.0.0.1:8786"\n', "lab.scheduler: must be tcp://HOST:PORT"),
    ('scheduler = "tcp://127.0.0.1"\n', "lab.scheduler: needs a host and a port"),
    ('scheduler = "tcp://127.0.0.1:99999"\n', "lab.scheduler: has no valid port"),
    ('scheduler = "tcp://127.0.0.1:8786/x"\n', "lab.scheduler: must be only SCHEME://"),
    ("scheduler = 8786\n", "lab.scheduler: must be a non-empty string"),
    ('scheduler = "tcp://127.0.0.1:8786"\nlease_s = 0\n', "lab.lease_s: must be > 0"),
    ('scheduler = "tcp://127.0.0.1:8786"\nlease_s = -1\n', "lab.lease_s: must be > 0"),
    ('scheduler = "tcp://127.0.0.1:8786"\nstart_spread = 1.5\n',
     "lab.start_spread: must be a fraction of the window, 0 to 1"),
    ('scheduler = "tcp://127.0.0.1:8786"\nstart_spread = -0.1\n', "lab.start_spread: must be ≥ 0"),
    ("lease_s = 5\n", "lab.lease_s: needs lab.scheduler"),
    ("start_spread = 0.2\n", "lab.start_spread: needs lab.scheduler"),
    (TLS_TABLE, "lab.tls: needs lab.scheduler"),
], ids=["tcp-off-loopback", "tcp-name", "tls-without-files", "scheme", "no-scheme", "no-port",
        "bad-port", "path", "not-a-string", "lease-zero", "lease-negative", "spread-above-1",
        "spread-negative", "lease-without-scheduler", "spread-without-scheduler",
        "tls-without-scheduler"])
def test_bad_remote_settings_name_their_key(certs: Path, lab: str, starts: str) -> None:
    assert error(lab, certs).startswith(starts)


def test_tls_table_errors_name_the_file_key(certs: Path) -> None:
    tls = 'scheduler = "tls://10.0.0.1:8786"\n'
    assert error(tls + TLS_TABLE.replace("key.pem", "nope.pem"), certs) \
        == f"lab.tls.key_file: no such file: {certs / 'nope.pem'}"
    assert error(tls + TLS_TABLE.replace('key_file = "key.pem"\n', ""), certs) \
        .startswith("lab.tls.key_file: is required")
    assert error(tls + TLS_TABLE + 'password = "x"\n', certs) \
        .startswith("lab.tls.password: unknown key (allowed: ca_file, cert_file, key_file)")
    assert error('scheduler = "tcp://127.0.0.1:8786"\n' + TLS_TABLE, certs) \
        .startswith("lab.scheduler: is tcp://, which does not use the TLS files")


def test_flags_replace_the_config_and_allow_its_remote_keys(
        certs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(certs)  # the flags' files are relative to the current folder
    r = remote("lease_s = 2\n", override=Override("tcp://127.0.0.1:9000"))
    assert r == Remote("tcp://127.0.0.1:9000", lease_s=2.0)
    r = remote('scheduler = "tcp://127.0.0.1:8786"\n',
               override=Override("tls://10.0.0.2:8786", "ca.pem", "cert.pem", "key.pem"))
    assert r is not None and r.scheduler == "tls://10.0.0.2:8786"
    assert r.tls == Tls(str(certs / "ca.pem"), str(certs / "cert.pem"), str(certs / "key.pem"))
    assert error("", override=Override("tcp://10.1.2.3:8786")) == \
        f"--scheduler: {TLS_LINE} (got 'tcp://10.1.2.3:8786')"
    assert error("", override=Override("tls://10.0.0.2:8786", "ca.pem", "cert.pem")) \
        .startswith("--tls-key: is required")
    assert error("", override=Override("tls://10.0.0.2:8786", "ca.pem", "cert.pem", "x.pem")) \
        == f"--tls-key: no such file: {certs / 'x.pem'}"
    assert error("", override=Override(None, "ca.pem")).startswith("--tls-ca-file: needs "
                                                                    "lab.scheduler")


def test_validate_refuses_a_tcp_scheduler_off_loopback(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(REST, encoding="utf-8")
    result = run_lab("validate", config, "--scheduler", "tcp://10.1.2.3:8786")
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        f"error: --scheduler: {TLS_LINE} (got 'tcp://10.1.2.3:8786')"]


def test_validate_accepts_a_loopback_scheduler_without_connecting(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text("[lab]\nlease_s = 4\n" + REST, encoding="utf-8")
    result = run_lab("validate", config, "--scheduler", "tcp://127.0.0.1:1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "uvicorn-w1-b-non-blocking-n2"


def test_a_config_without_scheduler_does_not_import_distributed(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(REST, encoding="utf-8")
    code = ("import sys; from pathlib import Path; import lab.cli; "
            "from lab.matrix.config import load; "
            f"m = load(Path({str(config)!r})); "
            "assert m.lab.remote is None; "
            "print(sorted(k for k in sys.modules if k.split('.')[0] in ('distributed', 'dask')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_cpu_sets_are_refused_with_a_scheduler(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[lab]\nscheduler = "tcp://127.0.0.1:8786"\nserver_cpus = "0"\n'
                    'client_cpus = "0"\n[servers.uvicorn]\nworkers = [1]\n'
                    '[[experiments]]\nname = "h"\nkind = "burst"\nendpoints = ["/hello"]\n'
                    'requests = [1]\n')
    r = run_lab("validate", path)
    assert r.returncode == 2
    assert r.stderr.startswith("error: lab.server_cpus: not with a scheduler"), r.stderr
