"""The markdown report, built only from a run directory's files."""

from lab.report.render import build

__all__ = ["build"]
