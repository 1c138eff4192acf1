"""A/A test: how often does the report call a difference "significant" when there is none?

Two configurations that differ only in a no-op setting (uvicorn's listen backlog, 2048 vs
2047, far above the connections used) run the same closed-loop tables with the default
engine and ``repeats`` each, side by side. Every "significant" verdict between them is a
false positive. Prints the count per table and in all.

    python benchmarks/aa_test.py [--tables 24] [--repeats 3] [--duration 1]
"""

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from lab.load.stats import Spread
from lab.report.model import Report
from lab.store.results import RunDir

CONFIG = """
[lab]
repeats = {repeats}

[servers.uvicorn]
workers = [1]
options = {{ backlog = [2048, 2047] }}

[[experiments]]
name = "aa"
kind = "closed"
endpoints = ["/hello"]
users = [{users}]
duration_s = {duration}
warmup_s = 0
"""


def count(run: RunDir) -> tuple[int, int, int, list[str]]:
    """(significant verdicts, tables whose ranges did not overlap — the first condition
    alone —, verdicts stated, one line per table)."""
    significant = apart = stated = 0
    lines = []
    for comp in Report.of_results(run.load().records).comparisons:
        v = {row.server_id: row.verdict for row in comp.rows if row.verdict}
        other = [x for x in v.values() if x.text != "baseline"]
        stated += sum(x.significant is not None for x in other)
        significant += sum(bool(x.significant) for x in other)
        a, b = (Spread.of(row.values()) for row in comp.rows)
        apart += a.high < b.low or b.high < a.low
        lines.append(f"users {comp.n:3}: " + "; ".join(f"{sid} {x.text}" for sid, x in v.items()))
    return significant, apart, stated, lines


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tables", type=int, default=24)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--duration", type=float, default=1.0)
    args = p.parse_args()
    out = Path(tempfile.mkdtemp(prefix="aa-"))
    config = out / "aa.toml"
    users = ", ".join(str(u) for u in range(1, args.tables + 1))
    config.write_text(CONFIG.format(repeats=args.repeats, users=users, duration=args.duration))
    subprocess.run([sys.executable, "-m", "lab", "run", str(config), "--out", str(out),
                    "--run-id", "aa", "--yes"], check=False, stdout=subprocess.DEVNULL)
    significant, apart, stated, lines = count(RunDir(out / "aa"))
    print("\n".join(lines))
    print(f"\nA/A: {significant} 'significant' of {stated} verdicts stated "
          f"({len(lines)} tables, {args.repeats} repeats each); ranges apart (the first "
          f"condition alone) in {apart}; report: {out}/aa/report.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
