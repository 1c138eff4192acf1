"""The append-only results store of one run: ``reports/<run-id>/``.

``results.jsonl`` has one JSON line per finished cell, flushed and fsynced before the next
cell starts; ``environment.json`` says what the run ran on (``environment-<n>.json`` what
its n-th session, a ``--resume``, ran on); ``config.toml`` is a copy of the config (a
``--resume --force`` with another config keeps the previous one as ``config-<n>.toml``).
The report is built from these files only.

Each line carries its cell's ``cell_key``, a digest of what the cell measures: ``--resume``
skips a cell only if a line has its key, so a cell whose config changed runs again, and then
its latest line is the one that counts.
"""

import hashlib
import json
import os
import re
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from lab.errors import StorageError, UsageError
from lab.kinds import kinds
from lab.store.environment import differences
from lab.store.schema import FailureKind, MalformedLine, Result, RunInfo, Shared, UnknownVersion

RESULTS = "results.jsonl"
RERUN_ON_RESUME = (FailureKind.DISTURBED,)  # failures that say nothing about the server
SERVERS = "servers.jsonl"  # one line per server start: the cells it served, its stop
ENVIRONMENT = "environment.json"
CONFIG_COPY = "config.toml"
RUN_INFO = "run.json"
PLANNED = "planned"  # run.json's list of the keys of the current config's cells

T = TypeVar("T")


def timestamp() -> str:
    """Now, as every file of a run states a time: UTC, ISO 8601, to the second."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def new_run_id(config_path: Path) -> str:
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{config_path.stem}"


def config_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _append_line(path: Path, data: Mapping[str, Any]) -> None:
    """One JSON line, flushed and fsynced: on disk before anything else happens. A line
    the disk could not take is cut short at worst, which every reader skips."""
    line = json.dumps(data, sort_keys=True)
    try:
        with path.open("a+", encoding="utf-8") as f:
            if f.tell() and not _ends_with_newline(path):
                f.write("\n")  # a crash cut the last line short: never glue onto it
            f.write(line + "\n")
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        raise StorageError(f"{path}: cannot append ({e.strerror or e}); every line written "
                           "before is intact") from None


def write_atomically(path: Path, write: Callable[[Path], object]) -> None:
    """``write(tmp)`` fills a temporary file beside ``path``, which then replaces ``path`` in
    one step: a failure (a full or read-only disk, Ctrl-C) leaves the previous file whole and
    no temporary file behind."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # two labs never share one
    try:
        write(tmp)
        tmp.replace(path)
    except OSError as e:
        raise StorageError(f"{path}: cannot write ({e.strerror or e})") from None
    finally:
        with suppress(OSError):
            tmp.unlink(missing_ok=True)


def _ends_with_newline(path: Path) -> bool:
    with path.open("rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\n"


def current(planned: list[str] | None) -> Callable[[Result], bool]:
    """Is a line of a cell the run's current config has? ``planned`` is run.json's list of
    the current cells' keys; a load axis edited before ``--resume --force`` leaves lines of
    cells it no longer has. Without the list (older and merged runs) every line is."""
    if planned is None:
        return lambda _: True
    keys = set(planned)
    return lambda r: r.cell_key in keys


@dataclass(frozen=True)
class Finished:
    """The cells a run has lines for."""

    keys: frozenset[str]
    keyless_ids: frozenset[str]  # lines written before cells had keys: matched by id

    def covers(self, key: str, cell_id: str) -> bool:
        return key in self.keys or cell_id in self.keyless_ids


@dataclass
class Loaded:
    records: list[Result]
    warnings: list[str] = field(default_factory=list)

    def stale(self, planned: list[str] | None) -> list[Result]:
        """Take out the results of cells that the run's current config no longer has (see
        `current`), and return them."""
        is_current = current(planned)
        out = [r for r in self.records if not is_current(r)]
        self.records = [r for r in self.records if is_current(r)]
        return out

    def failed(self) -> int:
        """Cells whose result counts and is a failure."""
        return sum(r.status == "failed" for r in self.records)

    def finished(self) -> Finished:
        """Cells with a result; a disturbed cell (the lab was stopped mid-window) has none
        that counts, so a resume measures it again."""
        done = [r for r in self.records
                if r.failure is None or r.failure.kind not in RERUN_ON_RESUME]
        return Finished(frozenset(r.cell_key for r in done if r.cell_key is not None),
                        frozenset(r.cell_id for r in done if r.cell_key is None))


class RunDir:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.results = path / RESULTS
        self.logs = path / "logs"

    @staticmethod
    def check_new(path: Path) -> None:
        if path.exists():
            raise UsageError(f"{path}: already exists (pick another --run-id or --resume it)")

    @classmethod
    def create(cls, root: Path, run_id: str, config_text: str) -> "RunDir":
        run = cls(root / run_id)
        cls.check_new(run.path)
        try:
            root.mkdir(parents=True, exist_ok=True)
            try:
                run.path.mkdir()  # atomic: of two labs given the same --run-id, one gets it
            except FileExistsError:
                cls.check_new(run.path)  # another lab took it just now: the same one line
                raise
            run.logs.mkdir()
            (run.path / CONFIG_COPY).write_text(config_text, encoding="utf-8")
        except OSError as e:
            raise UsageError(f"--out {root}: cannot create the run folder there "
                             f"({e.strerror or e})") from None
        return run

    @classmethod
    def existing(cls, path: Path) -> "RunDir":
        run = cls(path)
        if not path.is_dir():
            raise UsageError(f"{path}: no such run directory")
        if not run.results.is_file() and not (path / RUN_INFO).is_file():
            raise UsageError(f"{path}: not a run directory (no {RESULTS})")
        return run

    def replace_config(self, text: str) -> str:
        """Make ``text`` the run's config (``--resume --force``); returns the name the
        previous copy is kept under."""
        n = 1
        while (self.path / f"config-{n}.toml").exists():
            n += 1
        kept = f"config-{n}.toml"
        if (self.path / CONFIG_COPY).exists():
            (self.path / CONFIG_COPY).replace(self.path / kept)
        (self.path / CONFIG_COPY).write_text(text, encoding="utf-8")
        return kept

    def write_json(self, name: str, data: Mapping[str, Any]) -> None:
        text = json.dumps(data, indent=2, sort_keys=True) + "\n"
        write_atomically(self.path / name, lambda tmp: tmp.write_text(text, encoding="utf-8"))

    def read_json(self, name: str) -> dict[str, Any]:
        try:
            return json.loads((self.path / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}

    def info(self) -> RunInfo:
        """run.json; an empty one when it is missing or corrupt."""
        return RunInfo.from_json(self.read_json(RUN_INFO))

    def write_info(self, info: RunInfo) -> None:
        self.write_json(RUN_INFO, info.to_json())

    def append(self, result: Result) -> None:
        _append_line(self.results, result.to_json())

    def append_server(self, entry: Mapping[str, Any]) -> None:
        _append_line(self.path / SERVERS, entry)

    def servers(self) -> list[dict[str, Any]]:
        """The server starts recorded so far; a line cut short by a crash is skipped."""
        try:
            lines = (self.path / SERVERS).read_text(encoding="utf-8").splitlines()
        except OSError:
            return []
        out = []
        for line in lines:
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict):
                out.append(entry)
        return out

    def lines(self) -> Iterator[tuple[int, Result | str]]:
        """Each line of results.jsonl by number, read one at a time: its result, or why no
        reader can use it (a truncated or corrupt line is a warning, not a crash)."""
        if not self.results.is_file():
            return
        shared = Shared()  # the values lines repeat, held once
        with self.results.open("rb") as f:
            for n, raw in enumerate(f, 1):
                if raw.strip():
                    yield n, _record(n, raw, shared)

    def read(self, convert: Callable[[Result], T]) -> tuple[list[T], list[str]]:
        """Every usable line's record, converted as it is read, and the warnings. Only what
        ``convert`` keeps stays in memory: the file's text and its JSON dicts took ≈ 3× the
        report's typed records. A cell measured again after its config changed
        (``--resume --force``) has two lines: the later one counts, the earlier is named in
        a warning."""
        latest: dict[str, T] = {}
        warnings, superseded = [], []
        for _, record in self.lines():
            if isinstance(record, str):
                warnings.append(record)
                continue
            cell = record.cell_id
            if cell in latest:
                del latest[cell]  # inserted again below: the cell's place is its last line's
                superseded.append(f"{cell} was measured again with a changed config; the "
                                  "later line counts")
            latest[cell] = convert(record)
        return list(latest.values()), warnings + superseded

    def load(self) -> Loaded:
        """Every usable line's result (see `read`)."""
        return Loaded(*self.read(lambda record: record))

    def has_results(self) -> bool:
        """Whether some line is usable; reads up to the first one."""
        return any(isinstance(record, Result) for _, record in self.lines())

    def record_environment(self, env: Mapping[str, Any]) -> str:
        """Write this session's environment without overwriting an earlier session's."""
        name = ENVIRONMENT if not (self.path / ENVIRONMENT).exists() \
            else f"environment-{len(self.environments()) + 1}.json"
        self.write_json(name, env)
        return name

    def environments(self) -> list[dict[str, Any]]:
        """Each session's environment, first to last."""
        later = sorted((int(m[1]), p.name) for p in self.path.glob("environment-*.json")
                       if (m := re.fullmatch(r"environment-(\d+)\.json", p.name)))
        names = ([ENVIRONMENT] if (self.path / ENVIRONMENT).exists() else []) + \
            [name for _, name in later]
        return [self.read_json(name) for name in names]

    def environment_changes(self) -> list[str]:
        """How each resumed session's environment differed from the first's, if it did."""
        first, *later = self.environments() or [{}]
        return differences(first, later)


def _record(n: int, raw: bytes, shared: Shared) -> Result | str:
    """Line ``n``'s result, or why it cannot be a cell's result."""
    try:
        line = json.loads(raw.decode("utf-8"))
        if not isinstance(line, dict):
            raise ValueError("not an object")
    except ValueError:  # UnicodeDecodeError included
        return f"{RESULTS} line {n} is truncated or corrupt; that cell counts as not finished"
    try:
        result = Result.from_json(line, shared)
    except UnknownVersion as e:
        return f"{RESULTS} line {n} {e}; skipped"
    except MalformedLine as e:
        return f"{RESULTS} line {n} {e}; that cell counts as not finished"
    if result.kind not in kinds():  # a team's own kind, read without its module
        return (f"{RESULTS} line {n} is of experiment kind {result.kind!r}, which this lab "
                "has not registered; that cell counts as not finished")
    return result
