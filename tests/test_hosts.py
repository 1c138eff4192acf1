"""``python -m lab hosts`` against a real Dask cluster on 127.0.0.1, an unreachable
scheduler, and the version comparison of server and load hosts."""

import datetime
import ipaddress
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from distributed import Scheduler, Security, SpecCluster, Worker

from lab.matrix.remote import Remote
from lab.remote.cluster import LAB, Host, connect, hosts
from lab.remote.hosts import differences, warnings
from tests.conftest import run_lab


def _worker(role: str, folder: Path, **extra: object) -> dict[str, object]:
    return {"cls": Worker, "options": {"host": "127.0.0.1", "resources": {role: 1},
                                       "nthreads": 1, "dashboard": False,
                                       "local_directory": str(folder), **extra}}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SpecCluster]:
    """A scheduler and two workers in this process, one per role, bound to 127.0.0.1."""
    folder = tmp_path_factory.mktemp("dask")
    with SpecCluster(workers={"s": _worker("server", folder), "l": _worker("loadgen", folder)},
                     scheduler={"cls": Scheduler,
                                # its HTTP server starts anyway, on 8787 without
                                # an address, with a warning when that is taken
                                "options": {"host": "127.0.0.1", "dashboard": False,
                                            "dashboard_address": "127.0.0.1:0"}}) as c:
        yield c


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_hosts_lists_each_worker_with_its_role_and_cores(cluster: SpecCluster) -> None:
    result = run_lab("hosts", "--scheduler", cluster.scheduler_address)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert lines[0].split()[:4] == ["worker", "host", "name", "address"]
    cores = str(len(os.sched_getaffinity(0)))
    rows = {line.split()[0]: line.split() for line in lines[2:4]}
    assert set(rows) == set(cluster.scheduler_info["workers"])
    assert sorted(row[3] for row in rows.values()) == ["loadgen", "server"]
    assert all(row[2] == "127.0.0.1" and row[4] == cores for row in rows.values())
    assert lines[4:] == []  # both roles present, the same versions: nothing to say


def test_hosts_takes_the_scheduler_of_a_config(cluster: SpecCluster, tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(f'[lab]\nscheduler = "{cluster.scheduler_address}"\n'
                      '[servers.uvicorn]\nworkers = [1]\n[[experiments]]\nname = "b"\n'
                      'kind = "burst"\nendpoints = ["/hello"]\nrequests = [1]\n',
                      encoding="utf-8")
    result = run_lab("hosts", config)
    assert result.returncode == 0, result.stderr
    assert {line.split()[0] for line in result.stdout.splitlines()[2:]} \
        == set(cluster.scheduler_info["workers"])


def test_hosts_gives_the_facts_of_each_worker(cluster: SpecCluster) -> None:
    with connect(Remote(cluster.scheduler_address)) as client:
        found = hosts(client)
    assert sorted(h.roles for h in found) == [("loadgen",), ("server",)]
    assert {h.name for h in found} == {socket.gethostname()}
    assert all(h.versions[LAB].startswith("0.") and "uvicorn" in h.versions for h in found)
    assert found[0].record() == {"name": socket.gethostname(), "address": "127.0.0.1",
                                 "cores": len(os.sched_getaffinity(0)),
                                 "cpu_model": found[0].cpu_model}


def _self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate (its own CA, for 127.0.0.1) and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "asgi-lab test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


def test_hosts_over_tls(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    files = {f"tls_{who}_{part}": str(path) for who in ("scheduler", "worker", "client")
             for part, path in (("cert", cert), ("key", key))}
    security = Security(tls_ca_file=str(cert), require_encryption=True, **files)
    with SpecCluster(workers={"s": _worker("server", tmp_path, security=security)},
                     security=security,
                     scheduler={"cls": Scheduler,
                                "options": {"host": "127.0.0.1", "protocol": "tls",
                                            "dashboard": False, "security": security,
                                            "dashboard_address": "127.0.0.1:0"}}) as c:
        assert c.scheduler_address.startswith("tls://127.0.0.1:")
        result = run_lab("hosts", "--scheduler", c.scheduler_address, "--tls-ca-file", cert,
                         "--tls-cert", cert, "--tls-key", key)
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines()[2].split()[:4] == [
            next(iter(c.scheduler_info["workers"])), socket.gethostname(), "127.0.0.1", "server"]
        assert result.stdout.splitlines()[3:] == ["no load host (no worker with resources "
                                                  "loadgen=1)"]


def test_an_unreachable_scheduler_is_one_line_and_exit_2() -> None:
    address = f"tcp://127.0.0.1:{_free_port()}"
    started = time.monotonic()
    result = run_lab("hosts", "--scheduler", address, timeout=30)
    assert time.monotonic() - started < 15
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [
        f"error: scheduler {address} is unreachable: no answer within 5 s (is `dask "
        "scheduler` running there?)"]


def test_hosts_needs_an_address() -> None:
    result = run_lab("hosts")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "error: give --scheduler ADDRESS, or a CONFIG whose lab.scheduler is set"]


def _host(name: str, address: str, roles: tuple[str, ...], uvicorn: str = "0.54.0",
          python: str = "3.11.7", tools: tuple[str, ...] = ("wrk",)) -> Host:
    return Host(worker=f"tcp://{address}:1", address=address, name=name, roles=roles, cores=2,
                cpu_model="x", python=python, versions={LAB: "0.1.0", "uvicorn": uvicorn},
                tools=tools)


def test_versions_that_differ_between_server_and_load_hosts_are_named() -> None:
    server = _host("a", "10.0.0.1", ("server",))
    load = _host("b", "10.0.0.2", ("loadgen",), uvicorn="0.53", python="3.12.1")
    idle = _host("c", "10.0.0.3", (), uvicorn="0.1")  # no role: not part of a run
    assert differences([server, load, idle]) == [
        "versions differ: uvicorn 0.54.0 on server host a (10.0.0.1), 0.53 on load host b "
        "(10.0.0.2)",
        "versions differ: Python 3.11.7 on server host a (10.0.0.1), 3.12.1 on load host b "
        "(10.0.0.2)"]
    assert differences([server, _host("b", "10.0.0.2", ("loadgen",))]) == []


def test_a_missing_role_is_said() -> None:
    assert warnings([_host("a", "10.0.0.1", ("server",))]) == [
        "no load host (no worker with resources loadgen=1)"]
    assert warnings([_host("a", "10.0.0.1", ("server", "loadgen"))]) == []
    # wrk matters where the load is sent from, not on the server host
    assert warnings([_host("a", "10.0.0.1", ("server",), tools=()),
                     _host("b", "10.0.0.2", ("loadgen",), tools=())]) == [
        'load host b (10.0.0.2) has no wrk: closed-loop cells with engine "auto" measure '
        "with the Python client rawhttp (apt-get install wrk there)"]
