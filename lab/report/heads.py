"""How "In short" names a closed comparison: "`/hello`, 16 users", its protocol when not
HTTP/1.1 kept alive, and its experiment when another comparison would read the same."""

from collections.abc import Sequence

from lab.report.model import ComparisonFacts


def users(comp: ComparisonFacts) -> str:
    close = ", a new connection per request" if comp.load.get("connection") == "close" else ""
    streams = comp.load.get("streams", 1)
    h2 = (f", HTTP/2 (h2c, {streams} stream{'s' if streams != 1 else ''} per connection)"
          if comp.load.get("http") == "2" else "")
    return f"`{comp.endpoint}`, {comp.n} users{h2}{close}"


def head(comp: ComparisonFacts, comps: Sequence[ComparisonFacts]) -> str:
    text = users(comp)
    same = [c for c in comps if c.kind == comp.kind and users(c) == text]
    return f"{text} (`{comp.experiment}`)" if len(same) > 1 else text
