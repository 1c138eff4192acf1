"""The files and streams of the command line: any locale, a reader that leaves early, a
folder that cannot be written, a big results file, and the README's commands."""

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from lab.store.results import RunDir
from lab.store.schema import Result
from tests.conftest import ROOT, json_lines, leftovers, run_lab
from tests.test_hostile import one_line_error
from tests.test_report import make_run


def ascii_locale() -> dict[str, str]:
    """The environment now (with the test's lock folder and token), under an ASCII locale."""
    return {**os.environ, "LC_ALL": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0"}


TINY = """# one cell — a config in UTF-8, as most are
[servers.uvicorn]
workers = [1]

[[experiments]]
name = "t"
kind = "closed"
engine = "rawhttp"
endpoints = ["/hello"]
users = [1]
duration_s = 0.3
warmup_s = 0.1
"""


def files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


# ---- an ASCII locale --------------------------------------------------------------------

def test_under_an_ascii_locale_report_validate_and_compare_write_utf8(tmp_path: Path) -> None:
    run = make_run(tmp_path, run_id="base")
    new = make_run(tmp_path, run_id="new")
    (run.path / "report.md").write_text("the previous report\n", encoding="utf-8")
    report = run_lab("report", run.path, env=ascii_locale())
    assert report.returncode == 0, report.stderr
    assert "Traceback" not in report.stderr
    assert report.stdout.strip() == str(run.path / "report.md")
    md = (run.path / "report.md").read_text(encoding="utf-8")
    assert md.startswith("# asgi-lab report — base")
    validate = run_lab("validate", ROOT / "configs" / "quick.toml", env=ascii_locale())
    assert validate.returncode == 0, validate.stderr
    assert ": ok — " in validate.stdout  # the UTF-8 dash, not a traceback or an escape
    out = tmp_path / "diff.md"
    compare = run_lab("compare", run.path, new.path, "--out", out, env=ascii_locale())
    assert compare.returncode == 0, compare.stderr
    assert out.read_text(encoding="utf-8").startswith("# asgi-lab compare — base → new")


def test_a_report_that_cannot_be_written_whole_leaves_the_previous_files(
        tmp_path: Path) -> None:
    """A file-size limit (``ulimit -f``, which binds root too) cuts every write at 80 KiB,
    as a full disk would: the charts fit, the report (with a long failure reason) does not."""
    run = make_run(tmp_path, run_id="big")
    record = json_lines(run)[0] | {"status": "failed", "figures": None,
                                      "failure": {"kind": "start_failed",
                                                  "reason": "x" * 100_000}}
    run.append(Result.from_json(record))
    assert run_lab("report", run.path).returncode == 0
    before = files(run.path)
    limited = subprocess.run(
        ["bash", "-c", 'ulimit -f 80 && exec "$@"', "-", sys.executable, "-m", "lab",
         "report", run.path], cwd=ROOT, capture_output=True, text=True, encoding="utf-8",
        timeout=60)
    line = one_line_error(limited)
    assert str(run.path / "report.md") in line and "File too large" in line
    assert files(run.path) == before  # whole, and no temporary file left beside them


# ---- a reader that leaves early -----------------------------------------------------------

@pytest.mark.parametrize("args", [("validate", "configs/matrix.toml"), ("list",)])
def test_output_into_a_pipe_closed_early_ends_quietly_with_exit_141(
        args: tuple[str, ...]) -> None:
    """As ``| head -1`` does once it has its line; the read end is closed before the lab
    writes, so that every write of the lab meets the closed pipe."""
    read, write = os.pipe()
    os.close(read)
    try:
        result = subprocess.run([sys.executable, "-m", "lab", *args], cwd=ROOT, stdout=write,
                                stderr=subprocess.PIPE, text=True, timeout=60)
    finally:
        os.close(write)
    assert (result.returncode, result.stderr) == (141, "")


# ---- a run folder that cannot be written -----------------------------------------------------

@pytest.fixture
def read_only_dir(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs that the test fills and then remounts read-only: root cannot write it
    either (permission bits do not stop root)."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root to mount a tmpfs")
    disk = tmp_path / "ro"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_report_on_a_read_only_run_folder_is_one_line_and_the_copy_it_suggests_works(
        read_only_dir: Path, tmp_path: Path) -> None:
    run = make_run(read_only_dir, run_id="ro")
    subprocess.run(["mount", "-o", "remount,ro", str(read_only_dir)], check=True)
    line = one_line_error(run_lab("report", run.path))
    assert str(run.path) in line and "Read-only file system" in line
    assert f"python -m lab report {run.path} --out DIR" in line
    copy = run_lab("report", run.path, "--out", tmp_path / "copy")
    assert copy.returncode == 0, copy.stderr
    assert (tmp_path / "copy" / "report.md").is_file()


# ---- a big results file ----------------------------------------------------------------------

def _peak_rss_mb(*args: str | os.PathLike[str]) -> float:
    """Peak RSS of ``python -m lab ARGS``, measured by a parent of its own (the test
    process's own children would include every earlier test's)."""
    code = ("import resource, subprocess, sys\n"
            "done = subprocess.run(sys.argv[1:], capture_output=True)\n"
            "assert done.returncode == 0, done.stderr\n"
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)\n")
    out = subprocess.run([sys.executable, "-c", code, sys.executable, "-m", "lab",
                          *map(str, args)], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    return float(out.stdout)


def test_report_of_a_big_results_file_holds_little_more_than_its_figures(
        tmp_path: Path) -> None:
    """30 MB of results (each cell of a run 30 more times, as more repeats): reading it
    must not hold the file's text and its JSON dicts beside the typed records (that took
    9× the file; the records alone are ≈ 3×)."""
    small = make_run(tmp_path, run_id="small")
    lines = [json.loads(x) for x in small.results.read_text(encoding="utf-8").splitlines()]
    big = RunDir.create(tmp_path, "big", "")
    for name in ("run.json", "environment.json"):
        shutil.copy(small.path / name, big.path / name)
    size = 0
    with big.results.open("w", encoding="utf-8") as f:
        k = 0
        while size < 30 * 2**20:
            k += 1
            for line in lines:
                repeat = line["repeat"] + 10 * k
                text = json.dumps(line | {"repeat": repeat, "cell_id": line["cell_id"].rsplit(
                    "-r", 1)[0] + f"-r{repeat}"}) + "\n"
                size += f.write(text)
    baseline = _peak_rss_mb("report", small.path)
    grown = _peak_rss_mb("report", big.path) - baseline
    assert grown < 4 * size / 2**20, f"{grown:.0f} MB for {size / 2**20:.0f} MB of results"


# ---- the README's commands ---------------------------------------------------------------------

def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return text.split("```bash\n", 1)[1].split("\n```", 1)[0].splitlines()


def test_ci_finds_the_test_command_as_the_second_line_of_the_readme_block() -> None:
    out = subprocess.run(["bash", "-c", "sed -n '/^```bash$/,/^```$/p' README.md | sed -n 3p"],
                         cwd=ROOT, capture_output=True, text=True, check=True)
    commands = readme_commands()
    assert len(commands) == 2 and out.stdout.strip() == commands[1]
    assert "python -m pytest" in commands[1] and "python -m lab run" in commands[0]


@pytest.mark.parametrize("apt_exit", [0, 100])
def test_the_readmes_wrk_install_is_quiet_unless_it_fails(apt_exit: int,
                                                         tmp_path: Path) -> None:
    """The first command's wrk step, on a machine without wrk: an apt-get that chatters 20
    lines. A stub, since this tests the shell line, not a measurement."""
    install = readme_commands()[0].split("; python3.11 -m venv", 1)[0]
    assert install.startswith("command -v wrk")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("id", "mktemp", "cat", "rm"):
        (bin_dir / tool).symlink_to(shutil.which(tool) or tool)
    apt = bin_dir / "apt-get"
    apt.write_text("#!/bin/bash\nfor i in $(seq 20); do echo \"apt line $i\"; done\n"
                   f"exit {apt_exit}\n")
    (bin_dir / "sudo").write_text('#!/bin/bash\nexec "$@"\n')
    (bin_dir / "seq").symlink_to(shutil.which("seq") or "seq")
    for stub in (apt, bin_dir / "sudo"):
        stub.chmod(0o755)
    done = subprocess.run(["/bin/bash", "-c", install], env={"PATH": str(bin_dir)},
                          capture_output=True, text=True, timeout=30)
    output = done.stdout + done.stderr
    if apt_exit == 0:
        assert output == ""
    else:
        assert all(f"apt line {i}\n" in output for i in range(1, 21)), output


@pytest.mark.servers
def test_a_run_under_an_ascii_locale_reads_a_utf8_config_and_finishes(
        write_config: Callable[..., Path], tmp_path: Path, leak_token: str) -> None:
    config = write_config(TINY)
    result = run_lab("run", config, "--out", tmp_path, "--run-id", "c", env=ascii_locale())
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "c" / "config.toml").read_text(encoding="utf-8") == TINY
    assert "report: " in result.stdout and "Traceback" not in result.stderr
    assert leftovers(leak_token) == []
