"""Comparisons that differ in one protocol setting only (keep-alive against close, HTTP/1.1
against HTTP/2): the same kind, endpoint, params and load but for those settings."""

from collections.abc import Sequence
from os.path import commonprefix

from lab.report.model import ComparisonFacts


def _key(comp: ComparisonFacts, apart: frozenset[str]) -> tuple[object, ...]:
    load = tuple(sorted((k, v) for k, v in comp.load.items() if k not in apart))
    return comp.kind, comp.endpoint, load, tuple(sorted(comp.params.items()))


def twins(comps: Sequence[ComparisonFacts], setting: str, base: object, other: object,
          apart: frozenset[str] = frozenset()) -> list[tuple[ComparisonFacts, ComparisonFacts]]:
    """(at ``base``, at ``other``) for each comparison whose ``setting`` is ``other`` and
    that has a twin at ``base`` (a setting a results line leaves out is at its default,
    ``base``), the settings in ``apart`` aside too."""
    ignored = apart | {setting}
    at_base: dict[tuple[object, ...], list[int]] = {}
    for i, c in enumerate(comps):
        if c.load.get(setting, base) == base:
            at_base.setdefault(_key(c, ignored), []).append(i)
    out = []
    for i, c in enumerate(comps):
        if c.load.get(setting, base) == other and (found := at_base.get(_key(c, ignored))):
            # Of several (two experiments of the config each give one), the one of the same
            # config experiment: the longest common name, then the nearest in the report.
            j = max(found, key=lambda j: (len(commonprefix([comps[j].experiment,
                                                            c.experiment])), -abs(j - i)))
            out.append((comps[j], c))
    return out
