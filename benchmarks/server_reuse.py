"""Does one server start per configuration and repeat keep cells independent?

Runs the same config twice, alternating, with ``lab.restart = "cell"`` (a fresh server per
cell) and ``"configuration"`` (one server for all cells of a configuration and repeat),
then prints, per cell, the headline of each mode and their ratio, next to the spread that
repeats of the same cell show within one mode. If reuse changed the figures, the ratios
would stand out of that noise. Also prints each mode's wall time.

    python benchmarks/server_reuse.py configs/quick.toml [--rounds 2]
"""

import argparse
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path
from statistics import median

from lab.kinds import get
from lab.report.model import Report
from lab.store.results import RunDir

MODES = ("cell", "configuration")


def _config(path: Path, mode: str, out: Path) -> Path:
    """The config with ``lab.restart`` set to ``mode`` (TOML written back by hand: the lab
    tables are flat, so appending the key to the [lab] table is enough)."""
    text = path.read_text()
    assert "[lab]" in text, "the config needs a [lab] table"
    assert "restart" not in tomllib.loads(text).get("lab", {}), "config sets lab.restart"
    target = out / f"{path.stem}-{mode}.toml"
    target.write_text(text.replace("[lab]", f'[lab]\nrestart = "{mode}"', 1))
    return target


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("config", type=Path)
    p.add_argument("--rounds", type=int, default=2, help="runs per mode, alternating")
    args = p.parse_args()
    out = Path(tempfile.mkdtemp(prefix="reuse-"))
    figures: dict[str, dict[str, list[float]]] = {m: {} for m in MODES}
    walls: dict[str, list[float]] = {m: [] for m in MODES}
    for r in range(args.rounds):
        for mode in MODES:
            config = _config(args.config, mode, out)
            t0 = time.monotonic()
            subprocess.run([sys.executable, "-m", "lab", "run", str(config), "--out", str(out),
                            "--run-id", f"{mode}-{r}", "--yes"], check=False,
                           stdout=subprocess.DEVNULL)
            walls[mode].append(time.monotonic() - t0)
            for rec in Report.of_results(RunDir(out / f"{mode}-{r}").load().records).results:
                if rec.ok and rec.figures:
                    value = get(rec.kind).headline.get(rec.figures)
                    if value:
                        figures[mode].setdefault(rec.cell_id, []).append(value)
    print(f"{'cell':58} {'fresh':>10} {'reused':>10} {'ratio':>7} {'spread %':>9}")
    ratios, spreads = [], []
    for cell in sorted(figures["cell"]):
        a, b = figures["cell"][cell], figures["configuration"].get(cell)
        if not b:
            continue
        ratio = median(b) / median(a)
        spread = 100 * (max(a + b) - min(a + b)) / median(a + b)
        within = [100 * (max(v) - min(v)) / median(v) for v in (a, b) if len(v) > 1]
        ratios.append(ratio)
        spreads.extend(within)
        print(f"{cell:58} {median(a):10.4g} {median(b):10.4g} {ratio:7.3f} {spread:9.1f}")
    dev = sorted(abs(r - 1) * 100 for r in ratios)
    print(f"\n{len(ratios)} cells; |reused/fresh − 1|: median {median(dev):.1f} %, "
          f"90th pct {dev[int(0.9 * (len(dev) - 1))]:.1f} %; spread of the same mode's "
          f"repeats: median {median(spreads):.1f} %" if dev and spreads else "no cells")
    for mode in MODES:
        print(f"wall time, restart = {mode!r}: {', '.join(f'{w:.0f} s' for w in walls[mode])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
