"""A real Dask cluster across a network hop, with TLS: the scheduler and a `server` worker in
one namespace, a `loadgen` worker in another, and an HTTP request from a task on the second
to a server that a task on the first started. Where a remote placement's server and load
tasks run, and that the bytes between them cross a real interface."""

import json
import subprocess
import sys
import time
from contextlib import ExitStack, suppress
from pathlib import Path

import psutil
import pytest

from tests import netns
from tests.tlsfiles import TlsFiles, write_certificates

ROOT = Path(__file__).resolve().parent.parent
SCHEDULER_PORT = 8786  # a fresh namespace has every port free
HTTP_PORT = 8000
# Each step's bound; with the three stops' grace (3 s each) they stay under 60 s in all.
START_S = 15.0  # the scheduler listening (it took ~1 s here)
CLIENT_S = 25.0  # both workers registered and both tasks done (~1.5 s here)
PLAIN_S = 10.0

# Run by this venv's python inside the load namespace: the client sees both workers, then one
# task serves HTTP on the server host while one on the load host reads it.
CLIENT = """
import json, os, sys, time
from distributed import Client, get_worker
from distributed.security import Security

address, ca, cert, key, server_ip, port = sys.argv[1:]
port = int(port)

def netns():
    return os.stat("/proc/self/ns/net").st_ino

def serve(ip, port, seconds):
    import http.server, threading
    body = f"served in {netns()}".encode()
    got = threading.Event()
    class Hello(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            got.set()
        def log_message(self, *args):
            pass
    httpd = http.server.HTTPServer((ip, port), Hello)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    got.wait(seconds)
    httpd.shutdown()
    httpd.server_close()
    import lab
    return {"netns": netns(), "worker": get_worker().address, "answered": got.is_set(),
            "lab": lab.__file__}

def fetch(url, seconds):
    import urllib.request
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                return {"netns": netns(), "worker": get_worker().address,
                        "body": r.read().decode()}
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)

security = Security(tls_ca_file=ca, tls_client_cert=cert, tls_client_key=key,
                    require_encryption=True)
with Client(address, security=security, timeout=10) as client:
    client.wait_for_workers(2, timeout=15)
    served = client.submit(serve, server_ip, port, 10, resources={"server": 1}, pure=False)
    read = client.submit(fetch, f"http://{server_ip}:{port}/", 10, resources={"loadgen": 1},
                         pure=False)
    print(json.dumps({"client": netns(), "server": served.result(15),
                      "load": read.result(15)}))
"""

# A client that speaks plain TCP to the TLS scheduler: it must not get through.
PLAIN_CLIENT = """
import sys
from distributed import Client
try:
    Client(sys.argv[1], timeout=5).close()
except (OSError, TimeoutError) as e:
    print(f"refused: {type(e).__name__}")
else:
    print("connected")
"""


def _dask(command: str, *args: str) -> list[str]:
    """The `dask` command of this venv (its python: the workers then import lab)."""
    return [str(Path(sys.executable).with_name("dask")), command, *args]


def _tls_args(tls: TlsFiles) -> list[str]:
    return ["--tls-ca-file", tls.ca_file, "--tls-cert", tls.cert_file, "--tls-key", tls.key_file]


def _worker(address: str, host: str, role: str, tls: TlsFiles, scratch: Path) -> list[str]:
    return _dask("worker", address, "--host", host, "--resources", f"{role}=1",
                 "--no-dashboard", "--nthreads", "4", "--local-directory", str(scratch),
                 "--death-timeout", str(START_S), *_tls_args(tls))


def _wait_listening(hop: netns.Hop, ns: str, port: int, timeout_s: float) -> None:
    """Until something listens on ``port`` in ``ns`` (the scheduler took its port)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        listening = hop.run(ns, ["ss", "-Hltn", f"sport = :{port}"], timeout=5).stdout
        if listening.strip():
            return
        time.sleep(0.2)
    raise AssertionError(f"nothing listens on port {port} in {ns} after {timeout_s} s")


@pytest.fixture
def hop_reason() -> None:
    reason = netns.skip_reason()
    if reason:
        pytest.skip(reason)


def test_a_request_crosses_from_the_loadgen_host_to_the_server_host(
        hop_reason: None, tmp_path: Path) -> None:
    started = time.monotonic()
    with netns.hosts("lab-hop") as hop, ExitStack() as files:
        tls = write_certificates(tmp_path / "tls", [hop.server_ip, hop.load_ip])
        address = f"tls://{hop.server_ip}:{SCHEDULER_PORT}"
        logs = {name: files.enter_context((tmp_path / f"{name}.log").open("w"))
                for name in ("scheduler", "server-worker", "load-worker")}
        hop.popen(hop.server_ns, _dask("scheduler", "--host", hop.server_ip, "--port",
                                       str(SCHEDULER_PORT), "--no-dashboard", "--protocol",
                                       "tls", *_tls_args(tls)),
                  cwd=ROOT, stdout=logs["scheduler"], stderr=subprocess.STDOUT)
        _wait_listening(hop, hop.server_ns, SCHEDULER_PORT, START_S)
        hop.popen(hop.server_ns, _worker(address, hop.server_ip, "server", tls,
                                         tmp_path / "server-scratch"),
                  cwd=ROOT, stdout=logs["server-worker"], stderr=subprocess.STDOUT)
        hop.popen(hop.load_ns, _worker(address, hop.load_ip, "loadgen", tls,
                                       tmp_path / "load-scratch"),
                  cwd=ROOT, stdout=logs["load-worker"], stderr=subprocess.STDOUT)

        ran = hop.run(hop.load_ns, [sys.executable, "-c", CLIENT, address, tls.ca_file,
                                    tls.cert_file, tls.key_file, hop.server_ip,
                                    str(HTTP_PORT)], timeout=CLIENT_S, cwd=ROOT)
        plain = hop.run(hop.load_ns, [sys.executable, "-c", PLAIN_CLIENT,
                                      f"tcp://{hop.server_ip}:{SCHEDULER_PORT}"],
                        timeout=PLAIN_S, cwd=ROOT)
        hop.stop_all()
        assert netns.pids(hop.server_ns) == [] and netns.pids(hop.load_ns) == []
        names = (hop.server_ns, hop.load_ns)
        server_inode, load_inode = hop.netns_inode(hop.server_ns), hop.netns_inode(hop.load_ns)
    assert not set(names) & netns.namespaces()
    assert time.monotonic() - started < 60

    assert ran.returncode == 0, ran.stderr[-3000:] + "".join(
        f"\n--- {name}\n" + (tmp_path / f"{name}.log").read_text()[-1500:] for name in logs)
    seen = json.loads(ran.stdout.strip().splitlines()[-1])
    # The server task ran in the server namespace, the load task and the client in the load
    # namespace, each on the worker of its role's address.
    assert seen["server"]["netns"] == server_inode
    assert seen["load"]["netns"] == load_inode == seen["client"]
    assert server_inode != load_inode
    assert seen["server"]["worker"].startswith(f"tls://{hop.server_ip}:")
    assert seen["load"]["worker"].startswith(f"tls://{hop.load_ip}:")
    # What the load task read is what the server namespace's server wrote.
    assert seen["server"]["answered"]
    assert seen["server"]["lab"].startswith(str(ROOT))  # the worker imports this lab
    assert seen["load"]["body"] == f"served in {server_inode}"
    # The scheduler speaks TLS only: a plain tcp:// client to its port does not get in.
    assert plain.stdout.startswith("refused"), plain.stdout + plain.stderr[-2000:]


def test_the_namespaces_and_what_ran_in_them_go_also_when_a_test_fails(hop_reason: None) -> None:
    with pytest.raises(RuntimeError, match="the test failed"), netns.hosts("lab-hop") as hop:
        names = (hop.server_ns, hop.load_ns)
        hop.popen(hop.server_ns, ["sleep", "60"])
        # One that left its process group: only `ip netns pids` still finds it.
        # (Popen returns once its child has exec'd, so after its setsid.)
        hop.run(hop.load_ns, [sys.executable, "-c", "import subprocess; subprocess.Popen("
                              "['sleep', '60'], start_new_session=True, "
                              "stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)"], timeout=10)
        left = netns.pids(hop.server_ns) + netns.pids(hop.load_ns)
        assert len(left) == 2
        raise RuntimeError("the test failed")
    assert not set(names) & netns.namespaces()
    for pid in left:  # gone, or a zombie its new parent has not reaped yet
        with suppress(psutil.NoSuchProcess):
            assert psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
