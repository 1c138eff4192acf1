"""What a server adapter is: argv for (app, host, port, workers, options), version, options."""

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import metadata, util

OptionValue = str | int | bool
FACTS = ("loop", "http", "keep-alive", "runtime threads", "access log")
# A results line's setting beside them, only when the config sets lab.threads: the tokens of
# anyio's default thread limiter in each worker (applied by the wrapper, on every server).
THREADS = "threads"


@dataclass(frozen=True)
class Option:
    """One server option the config may set, how it is checked and how it becomes argv."""

    help: str
    render: Callable[[OptionValue], list[str]]
    type: type = str
    choices: tuple[str, ...] = ()
    minimum: int | None = None

    def problem(self, value: object) -> str | None:
        """Why ``value`` is not acceptable, or None."""
        # bool is a subclass of int: keep them apart so `workers = true` is refused.
        if type(value) is not self.type:
            return f"must be a {self.type.__name__}, got {value!r}"
        if self.choices and value not in self.choices:
            return f"must be one of {', '.join(self.choices)}, got {value!r}"
        if self.minimum is not None and isinstance(value, int) and value < self.minimum:
            return f"must be ≥ {self.minimum}, got {value}"
        return None


def choice(flag: str, choices: tuple[str, ...], help: str) -> Option:
    return Option(help, lambda v: [flag, str(v)], str, choices)


def integer(flag: str, minimum: int, help: str) -> Option:
    return Option(help, lambda v: [flag, str(v)], int, minimum=minimum)


def switch(on: list[str], off: list[str], help: str) -> Option:
    return Option(help, lambda v: list(on if v else off), bool)


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@cache
def _top_level() -> dict[str, tuple[str, ...]]:
    """Installed distribution (normalised name) → the top-level modules it provides."""
    out: dict[str, list[str]] = {}
    for module, dists in metadata.packages_distributions().items():
        for dist in dists:
            out.setdefault(_normal(dist), []).append(module)
    return {dist: tuple(modules) for dist, modules in out.items()}


def imported_modules(distribution: str) -> dict[str, str]:
    """The top-level modules of ``distribution`` and of every installed distribution it
    requires, transitively: module → distribution. Its own extras count (uvicorn uses
    uvloop and httptools when they are installed), its dependencies' extras do not."""
    found: dict[str, str] = {}
    todo, seen = [distribution], set()
    while todo:
        dist = todo.pop()
        if _normal(dist) in seen:
            continue
        seen.add(_normal(dist))
        try:
            requires = metadata.requires(dist) or []
        except metadata.PackageNotFoundError:
            continue  # not installed: nothing of it can be imported
        for module in _top_level().get(_normal(dist), ()):
            found.setdefault(module, dist)
        for requirement in requires:
            name = re.match(r"[A-Za-z0-9][\w.-]*", requirement)
            if name and (dist == distribution or "extra" not in requirement.partition(";")[2]):
                todo.append(name.group())
    return found


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


# How a server serves h2c (HTTP/2 by prior knowledge) with the given options: the flags its
# argv needs for it (() when its usual start serves HTTP/1.1 and 2 alike), or why it cannot.
H2c = Callable[[Mapping[str, OptionValue]], tuple[str, ...] | str]


def no_h2c(reason: str) -> H2c:
    return lambda options: reason


@dataclass(frozen=True)
class Adapter:
    """A server the lab can run. A new server is one module that builds one of these."""

    name: str
    distribution: str  # the PyPI distribution, for its version
    module: str  # run as `python -m <module>`, so the lab's own interpreter is used
    base_argv: Callable[[str, str, int, int], list[str]]  # (app, host, port, workers)
    options: Mapping[str, Option]
    # Applied unless the config says otherwise, so servers are compared like for like
    # (uvicorn logs every request by default, the others do not).
    defaults: Mapping[str, OptionValue] = field(default_factory=dict)
    # What a reader needs to judge like-for-like: setting → (option that sets it, or None;
    # the server's own default, as documented by its --help).
    facts: Mapping[str, tuple[str | None, str]] = field(default_factory=dict)
    # Further distributions it serves with, which its own does not require (gunicorn's
    # worker class is uvicorn-worker's, which runs uvicorn): each must be installed, their
    # modules count as the server's and their versions join its own.
    runs_on: tuple[str, ...] = ()
    h2c: H2c = no_h2c("its adapter declares no HTTP/2")

    def installed(self) -> bool:
        return util.find_spec(self.module) is not None and all(
            _version(d) is not None for d in self.runs_on)

    def modules(self) -> dict[str, str]:
        """What it imports from installed distributions: top-level module → distribution."""
        found: dict[str, str] = {}
        for dist in (self.distribution, *self.runs_on):
            found = {**imported_modules(dist), **found}
        return found

    def version(self) -> str | None:
        """Its distribution's version, with those it runs on: ``23.0.0 (uvicorn-worker 0.4.0,
        uvicorn 0.34.0)``."""
        own = _version(self.distribution)
        if own is None or not self.runs_on:
            return own
        others = (f"{d} {_version(d) or 'not installed'}" for d in self.runs_on)
        return f"{own} ({', '.join(others)})"

    def effective_options(self, options: Mapping[str, OptionValue]) -> dict[str, OptionValue]:
        return {**self.defaults, **options}

    def settings(self, options: Mapping[str, OptionValue]) -> dict[str, str]:
        """The effective value of each like-for-like setting (see ``FACTS``)."""
        opts = self.effective_options(options)
        out = {}
        for name in FACTS:
            key, default = self.facts.get(name, (None, "n/a"))
            out[name] = str(opts[key]) if key in opts else default
        out["other options"] = ", ".join(
            f"{k}={v}" for k, v in sorted(opts.items())
            if k not in {key for key, _ in self.facts.values()}) or "–"
        return out

    def argv(
        self, python: str, app: str, host: str, port: int, workers: int,
        options: Mapping[str, OptionValue], extra: tuple[str, ...] = (),
    ) -> list[str]:
        """``extra``: flags after the options' (an h2 cell's, from `h2c`)."""
        argv = [python, "-m", self.module, *self.base_argv(app, host, port, workers)]
        for key, value in sorted(self.effective_options(options).items()):
            argv += self.options[key].render(value)
        return argv + list(extra)
