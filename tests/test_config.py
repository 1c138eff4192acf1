"""Config → Matrix → Cells, and every bad config through the real CLI (exit 2, one line)."""

import json
import os
import time
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest

from lab.errors import ConfigError
from lab.matrix.config import Matrix, parse
from lab.run.estimate import Estimate, cell_s
from lab.run.runner import describe
from lab.servers import ADAPTERS
from lab.servers.asgi_wrap import APP_ENV, THREADS_ENV
from lab.supervise.launch import Launch
from tests.conftest import ROOT, run_lab

ARTICLE = """
[servers.uvicorn]
workers = [1, 2]

[servers.granian]
workers = [2]

[[experiments]]
name = "article"
kind = "burst"
endpoints = ["/blocking", "/non-blocking"]
requests = [10, 50]
params = { delay = 0.2 }

[[experiments]]
name = "hello"
kind = "closed"
endpoints = ["/hello"]
users = [64]
"""

POINTS = ["article-blocking-n10", "article-blocking-n50", "article-non-blocking-n10",
          "article-non-blocking-n50", "hello-hello-c64"]
CONFIGS = ["uvicorn-w1", "uvicorn-w2", "granian-w2"]
# Default (lab.restart = "configuration"): each configuration runs all its points on one
# server start; with restart = "cell", each point runs on every configuration in turn.
ARTICLE_IDS = [f"{c}-{p}" for c in CONFIGS for p in POINTS]
ARTICLE_IDS_BY_POINT = [f"{c}-{p}" for p in POINTS for c in CONFIGS]


def matrix(text: str, **kwargs: bool) -> Matrix:
    return parse(tomllib.loads(text), **kwargs)


# ---- valid configs ---------------------------------------------------------------------

def test_cells_count_order_and_ids() -> None:
    cells = matrix(ARTICLE).cells()
    assert [c.id for c in cells] == ARTICLE_IDS
    assert len({c.id for c in cells}) == len(cells)


def test_restart_per_cell_interleaves_configurations_within_each_point() -> None:
    cells = matrix('[lab]\nrestart = "cell"\n' + ARTICLE).cells()
    assert [c.id for c in cells] == ARTICLE_IDS_BY_POINT


def test_cells_carry_their_full_specification() -> None:
    cell = matrix('[lab]\nrestart = "cell"\n' + ARTICLE).cells()[4]  # uvicorn-w2-…-n50
    assert (cell.server, cell.workers, cell.endpoint.path, cell.load, cell.repeat) == (
        "uvicorn", 2, "/blocking", 50, 1)
    assert cell.experiment.name == "article"
    assert dict(cell.experiment.params) == {"delay": 0.2}
    assert cell.server_id == "uvicorn-w2"


def test_repeats_are_outermost_and_suffix_the_ids() -> None:
    cells = matrix("[lab]\nrepeats = 2\n" + ARTICLE).cells()
    assert len(cells) == 2 * len(ARTICLE_IDS)
    # The configurations' order rotates between repeats, so none always runs first.
    rotated = [f"{c}-{p}" for c in CONFIGS[1:] + CONFIGS[:1] for p in POINTS]
    assert [c.id for c in cells] == ([f"{i}-r1" for i in ARTICLE_IDS]
                                     + [f"{i}-r2" for i in rotated])
    assert [c.repeat for c in cells] == [1] * 15 + [2] * 15


def test_repeats_of_one_have_no_suffix() -> None:
    cells = matrix("[lab]\nrepeats = 1\n" + ARTICLE).cells()
    assert not any(c.id.endswith("-r1") for c in cells)


def test_option_axes_appear_in_ids_only_when_they_vary() -> None:
    text = """
[servers.uvicorn]
workers = [1, 2]
options = { loop = ["asyncio", "uvloop"], http = "h11" }

[servers.hypercorn]
workers = [1]
options = { worker_class = "uvloop" }

[[experiments]]
name = "x"
kind = "burst"
endpoints = ["/hello"]
requests = [5]
"""
    cells = matrix(text).cells()
    assert [c.id for c in cells] == [
        "uvicorn-w1-loop=asyncio-x-hello-n5", "uvicorn-w1-loop=uvloop-x-hello-n5",
        "uvicorn-w2-loop=asyncio-x-hello-n5", "uvicorn-w2-loop=uvloop-x-hello-n5",
        "hypercorn-w1-x-hello-n5",
    ]
    # the fixed option is still applied, just not shown
    assert all(dict(c.options)["http"] == "h11" for c in cells[:4])
    assert dict(cells[4].options) == {"worker_class": "uvloop"}


def test_two_varying_options_are_both_shown_in_sorted_order() -> None:
    text = """
[servers.uvicorn]
workers = 1
options = { loop = ["asyncio", "uvloop"], http = ["h11", "httptools"] }

[[experiments]]
name = "x"
kind = "burst"
endpoints = "/hello"
requests = 5
"""
    ids = [c.id for c in matrix(text).cells()]
    assert ids == [
        "uvicorn-w1-http=h11-loop=asyncio-x-hello-n5",
        "uvicorn-w1-http=h11-loop=uvloop-x-hello-n5",
        "uvicorn-w1-http=httptools-loop=asyncio-x-hello-n5",
        "uvicorn-w1-http=httptools-loop=uvloop-x-hello-n5",
    ]


def test_endpoint_slugs() -> None:
    text = """
[servers.granian]
workers = [1]
[[experiments]]
name = "e"
kind = "burst"
endpoints = ["/", "/a/b"]
requests = [1]
"""
    assert [c.id for c in matrix(text).cells()] == ["granian-w1-e-root-n1",
                                                    "granian-w1-e-a_b-n1"]


def test_a_connect_axis_gives_one_experiment_per_way_of_connecting() -> None:
    m = matrix(SERVER + exp(connect='["warm", "cold"]'))
    assert [(e.name, e.connect) for e in m.experiments] == [("a-warm", "warm"),
                                                            ("a-cold", "cold")]
    assert [c.id for c in m.cells()] == ["uvicorn-w1-a-warm-hello-n10",
                                         "uvicorn-w1-a-cold-hello-n10"]
    one = matrix(SERVER + exp(connect='"cold"'))
    assert [(e.name, e.connect) for e in one.experiments] == [("a", "cold")]


def test_rates_auto_is_one_searched_cell_per_configuration_and_endpoint() -> None:
    m = matrix(SERVER + exp(**OPEN | {"rates": '"auto"'}, slo_p99_ms="20"))
    (cell,) = m.cells()
    assert cell.searched and cell.id == "uvicorn-w1-a-hello-rpsauto"
    assert (cell.experiment.knee_window_s, cell.experiment.knee_max_rps) == (1.0, 100_000)


def test_warm_connections_are_checked_with_the_labs_ready_path() -> None:
    m = matrix('[lab]\nready_path = "/up"\nready_status = 204\n' + SERVER + exp())
    assert m.experiments[0].ready.path == "/up" and m.experiments[0].ready.status == 204
    assert m.experiments[0].connect == "warm"


def test_defaults_per_kind() -> None:
    m = matrix(ARTICLE)
    burst, closed = m.experiments
    assert (burst.kind, burst.engine, burst.loads) == ("burst", "rawhttp", (10, 50))
    assert (closed.kind, closed.engine, closed.loads) == ("closed", "auto", (64,))
    assert (closed.duration_s, closed.warmup_s) == (3.0, 1.0)
    assert m.lab.host == "127.0.0.1" and m.lab.repeats == 1
    assert m.lab.app == "apps.article:app"


@pytest.mark.parametrize(("host", "bound"), [
    ("127.0.0.1", "127.0.0.1"), ("localhost", "127.0.0.1"), ("::1", "::1"),
    ("[::1]", "::1"), ("127.0.0.2", "127.0.0.2")])
def test_loopback_hosts_are_accepted_as_addresses_to_bind(host: str, bound: str) -> None:
    assert matrix(f'[lab]\nhost = "{host}"\n' + ARTICLE).lab.host == bound


def test_non_loopback_host_needs_the_flag() -> None:
    text = '[lab]\nhost = "10.0.0.1"\n' + ARTICLE
    with pytest.raises(ConfigError) as e:
        matrix(text)
    assert e.value.path == "lab.host"
    assert matrix(text, allow_non_loopback=True).lab.host == "10.0.0.1"


def test_shuffled_order_is_seeded_and_keeps_each_configuration_together() -> None:
    text = """
[servers.uvicorn]
workers = [1, 2, 3]
[servers.hypercorn]
workers = [1, 2]
[servers.granian]
workers = [1, 2, 3]
[[experiments]]
name = "x"
kind = "burst"
endpoints = ["/a", "/b"]
requests = [1, 2]
"""
    interleaved = [c.id for c in matrix("[lab]\nrepeats = 2\n" + text).cells()]
    per_config = 4  # points
    orders = {}
    for seed in range(5):
        cfg_text = f'[lab]\nrepeats = 2\norder = "shuffled"\nseed = {seed}\n' + text
        ids = [c.id for c in matrix(cfg_text).cells()]
        assert ids == [c.id for c in matrix(cfg_text).cells()]  # same seed, same order
        assert sorted(ids) == sorted(interleaved)
        for i in range(0, len(ids), per_config):  # a configuration's cells stay together
            assert len({x.split("-x-")[0] for x in ids[i:i + per_config]}) == 1
        orders[seed] = ids
    assert any(ids != interleaved for ids in orders.values())
    assert len({tuple(ids) for ids in orders.values()}) > 1


def test_baseline_names_a_configuration() -> None:
    assert matrix('[lab]\nbaseline = "granian-w2"\n' + ARTICLE).lab.baseline == "granian-w2"
    with pytest.raises(ConfigError) as e:
        matrix('[lab]\nbaseline = "granian-w1"\n' + ARTICLE)
    assert e.value.path == "lab.baseline"


# ---- lab.threads: the thread limiter's size, an axis of every configuration --------------

THREADED = '[lab]\nthreads = [40, 100]\n' + ARTICLE
THREADED_CONFIGS = [f"{c}-t{t}" for c in CONFIGS for t in (40, 100)]


def test_threads_multiply_every_configuration_and_name_it_in_the_id() -> None:
    m = matrix(THREADED)
    cells = m.cells()
    assert [c.id for c in cells] == [f"{c}-{p}" for c in THREADED_CONFIGS for p in POINTS]
    assert m.size() == len(cells) == 2 * len(ARTICLE_IDS)
    assert {(c.server_id, c.threads) for c in cells} == {
        (sid, int(sid.rsplit("-t", 1)[1])) for sid in THREADED_CONFIGS}
    # each value is its own measurement: --resume does not take one for the other
    assert len({c.key(m.lab) for c in cells}) == len(cells)
    assert {c.key(m.lab) for c in cells}.isdisjoint(c.key(m.lab) for c in matrix(ARTICLE).cells())
    # a measurement point has a cell on every threaded configuration, side by side
    (_, _, first), *_ = m.points(1)
    assert [c.server_id for c in first] == THREADED_CONFIGS


def test_threads_come_before_the_varying_options_in_the_id_and_one_value_is_shown() -> None:
    text = """
[lab]
threads = 100

[servers.uvicorn]
workers = [1]
options = { loop = ["asyncio", "uvloop"] }

[[experiments]]
name = "x"
kind = "burst"
endpoints = ["/hello"]
requests = [5]
"""
    assert [c.id for c in matrix(text).cells()] == [
        "uvicorn-w1-t100-loop=asyncio-x-hello-n5", "uvicorn-w1-t100-loop=uvloop-x-hello-n5"]


def test_a_threaded_configuration_is_a_baseline() -> None:
    assert matrix('[lab]\nthreads = [40, 100]\nbaseline = "granian-w2-t100"\n'
                  + ARTICLE).lab.baseline == "granian-w2-t100"
    with pytest.raises(ConfigError) as e:
        matrix('[lab]\nthreads = [40, 100]\nbaseline = "uvicorn-w1"\n' + ARTICLE)
    assert str(e.value) == ("lab.baseline: 'uvicorn-w1' is not a configuration of this "
                            "matrix (e.g. 'uvicorn-w1-t40')")


@pytest.mark.parametrize(("lab", "error"), [
    ('threads = [40, "x"]', "lab.threads[1]: must be an integer, got 'x'"),
    ("threads = [40, 0]", "lab.threads[1]: must be ≥ 1, got 0"),
    ("threads = [-3]", "lab.threads[0]: must be ≥ 1, got -3"),
    ("threads = [1.5]", "lab.threads[0]: must be an integer, got 1.5"),
    ("threads = [true]", "lab.threads[0]: must be an integer, got True"),
    ("threads = [40, 20000]", "lab.threads[1]: must be ≤ 10000, got 20000"),
    ('threads = "many"', "lab.threads: must be an integer, got 'many'"),
    ("threads = [40, 100, 40]", "lab.threads: has duplicate values: [40, 100, 40]"),
    ("threads = []", "lab.threads: must not be empty"),
    ("threads = [40]\nwrap = false", "lab.threads: needs lab.wrap = true: the wrapper sets "
                                     "the thread limiter inside each worker"),
])
def test_bad_threads_are_refused_with_their_key_path(lab: str, error: str) -> None:
    with pytest.raises(ConfigError) as e:
        matrix(f"[lab]\n{lab}\n" + ARTICLE)
    assert str(e.value) == error


def test_threads_under_a_server_point_to_lab_threads() -> None:
    with pytest.raises(ConfigError) as e:
        matrix(ARTICLE.replace("workers = [2]", "workers = [2]\nthreads = [100]"))
    assert e.value.path == "servers.granian.threads"
    assert "lab.threads" in str(e.value)


def test_a_threaded_server_is_launched_with_lab_threads_and_others_without() -> None:
    threaded, plain = matrix(THREADED), matrix(ARTICLE)
    cell = next(c for c in threaded.cells() if c.server_id == "uvicorn-w1-t100")
    env = Launch.for_cell(threaded.lab, cell).env
    assert env[THREADS_ENV] == "100"
    assert env[APP_ENV] == "apps.article:app"  # the rest as before
    assert {Launch.for_cell(threaded.lab, c).env[THREADS_ENV] for c in threaded.cells()} == {
        "40", "100"}
    assert all(THREADS_ENV not in Launch.for_cell(plain.lab, c).env for c in plain.cells())
    assert Launch.for_cell(plain.lab, plain.cells()[0]).env == Launch.of(plain.lab).env


def test_a_results_line_carries_the_threads_it_ran_with_only_when_set() -> None:
    threaded = matrix(THREADED)
    cell = next(c for c in threaded.cells() if c.server_id == "granian-w2-t100")
    line = describe(cell, threaded.lab, "run", "rawhttp", "2026-01-01T00:00:00+00:00").to_json()
    assert (line["server_id"], line["settings"]["threads"]) == ("granian-w2-t100", "100")
    plain = matrix(ARTICLE)
    line = describe(plain.cells()[0], plain.lab, "run", "rawhttp",
                    "2026-01-01T00:00:00+00:00").to_json()
    assert '"threads"' not in json.dumps(line)  # a run without the axis writes lines as before


def test_the_estimate_counts_every_threaded_configuration_and_its_waves() -> None:
    hello = ARTICLE.split("[[experiments]]")[0] + "[[experiments]]" + ARTICLE.split(
        "[[experiments]]")[2]  # closed only: its windows last what the config says
    plain, threaded = (Estimate.of(matrix(t).cells()) for t in (hello, "[lab]\nthreads = "
                                                               "[40, 100]\n" + hello))
    assert threaded.cells == 2 * plain.cells
    assert threaded.seconds == pytest.approx(2 * plain.seconds)  # a server start each, too
    # a burst of 50 sleeping `def` requests: two waves of 40 threads, one of 100
    waves = {c.threads: cell_s(c) for c in matrix(THREADED).cells()
             if c.id.endswith("article-blocking-n50") and c.server == "uvicorn"
             and c.workers == 1}
    assert waves[40] - waves[100] == pytest.approx(0.2)  # one delay fewer


# ---- Matrix.only -----------------------------------------------------------------------

def test_only_server() -> None:
    ids = [c.id for c in matrix(ARTICLE).only(servers={"granian"}).cells()]
    assert ids == [i for i in ARTICLE_IDS if i.startswith("granian-")]


def test_only_workers() -> None:
    ids = [c.id for c in matrix(ARTICLE).only(workers={2}).cells()]
    assert ids == [i for i in ARTICLE_IDS if "-w2-" in i]


def test_only_experiment_and_server_together() -> None:
    ids = [c.id for c in matrix(ARTICLE).only(servers={"uvicorn"}, workers={1},
                                              experiments={"hello"}).cells()]
    assert ids == ["uvicorn-w1-hello-hello-c64"]


def test_only_nothing_is_everything() -> None:
    assert [c.id for c in matrix(ARTICLE).only().cells()] == ARTICLE_IDS


@pytest.mark.parametrize(("kwargs", "path"), [
    ({"servers": {"hypercorn"}}, "--server"),
    ({"experiments": {"nope"}}, "--experiment"),
    ({"workers": {3}}, "--workers"),
    ({"servers": {"granian"}, "workers": {1}}, "--workers"),
])
def test_only_refuses_unknown_or_empty(kwargs: dict, path: str) -> None:
    with pytest.raises(ConfigError) as e:
        matrix(ARTICLE).only(**kwargs)
    assert e.value.path == path


# ---- invalid configs through the CLI -------------------------------------------------

SERVER = "[servers.uvicorn]\nworkers = [1]\n"


def exp(**keys: str | None) -> str:
    """One [[experiments]] table; values are raw TOML, None leaves the key out."""
    fields = {"name": '"a"', "kind": '"burst"', "endpoints": '["/hello"]', "requests": "[10]"}
    fields |= keys
    return "[[experiments]]\n" + "".join(f"{k} = {v}\n" for k, v in fields.items()
                                         if v is not None)


def cfg(lab: str = "", servers: str = SERVER, experiments: str | None = None,
        top: str = "") -> str:
    return (top + ("[lab]\n" + lab if lab else "") + servers
            + (exp() if experiments is None else experiments))


CLOSED = {"kind": '"closed"', "requests": None, "users": "[4]"}
OPEN = {"kind": '"open"', "requests": None, "rates": "[10]"}
INTERFERENCE = {"kind": '"interference"', "requests": None, "background": "[2]"}

# (case, config text, what the one error line starts with after "error: ")
INVALID = [
    ("unknown top-level key", cfg(top="bogus = 1\n"), "bogus: unknown key"),
    ("unknown key in lab", cfg(lab="speed = 3\n"), "lab.speed: unknown key"),
    ("unknown key in server", "[servers.uvicorn]\nworkers = [1]\nthreads = 4\n" + exp(),
     "servers.uvicorn.threads: unknown key"),
    ("unknown server", cfg(servers="[servers.nginx]\nworkers = [1]\n"),
     "servers.nginx: unknown server"),
    ("no servers table", exp(), "servers: is required"),
    ("empty servers table", cfg(servers="[servers]\n"), "servers: "),
    ("server without workers", cfg(servers="[servers.uvicorn]\noptions = {}\n"),
     "servers.uvicorn.workers: is required"),
    ("workers 0", cfg(servers="[servers.granian]\nworkers = [1, 0]\n"),
     "servers.granian.workers[1]: must be ≥ 1"),
    ("workers negative", cfg(servers="[servers.uvicorn]\nworkers = [-2]\n"),
     "servers.uvicorn.workers[0]: must be ≥ 1"),
    ("workers string", cfg(servers='[servers.uvicorn]\nworkers = ["2"]\n'),
     "servers.uvicorn.workers[0]: must be an integer"),
    ("workers bool", cfg(servers="[servers.hypercorn]\nworkers = [1, true]\n"),
     "servers.hypercorn.workers[1]: must be an integer"),
    ("workers float", cfg(servers="[servers.uvicorn]\nworkers = 1.5\n"),
     "servers.uvicorn.workers[0]: must be an integer"),
    ("workers empty", cfg(servers="[servers.uvicorn]\nworkers = []\n"),
     "servers.uvicorn.workers: must not be empty"),
    ("workers duplicate", cfg(servers="[servers.uvicorn]\nworkers = [1, 2, 1]\n"),
     "servers.uvicorn.workers: has duplicate values"),
    ("unknown option", cfg(servers="[servers.uvicorn]\nworkers = [1]\n"
                                   "options = { threads = 4 }\n"),
     "servers.uvicorn.options.threads: unknown key"),
    ("option of another server", cfg(servers="[servers.granian]\nworkers = [1]\n"
                                             'options = { worker_class = "uvloop" }\n'),
     "servers.granian.options.worker_class: unknown key"),
    ("bad option choice", cfg(servers='[servers.uvicorn]\nworkers = [1]\n'
                                      'options = { loop = "foo" }\n'),
     "servers.uvicorn.options.loop: must be one of"),
    ("bad option choice in a list", cfg(servers='[servers.uvicorn]\nworkers = [1]\n'
                                                'options = { loop = ["uvloop", "foo"] }\n'),
     "servers.uvicorn.options.loop[1]: must be one of"),
    ("bad option type", cfg(servers='[servers.uvicorn]\nworkers = [1]\n'
                                    'options = { backlog = "many" }\n'),
     "servers.uvicorn.options.backlog: must be a"),
    ("bool for an integer option", cfg(servers='[servers.granian]\nworkers = [1]\n'
                                               'options = { backpressure = true }\n'),
     "servers.granian.options.backpressure: must be a"),
    ("option below minimum", cfg(servers='[servers.uvicorn]\nworkers = [1]\n'
                                         'options = { limit_concurrency = 0 }\n'),
     "servers.uvicorn.options.limit_concurrency: must be ≥ 1"),
    ("no experiments", SERVER, "experiments: is required"),
    ("empty experiments", "experiments = []\n" + SERVER, "experiments: must be a non-empty"),
    ("unknown experiment kind", cfg(experiments=exp(kind='"storm"')),
     "experiments[0].kind: unknown experiment kind"),
    ("missing experiment kind", cfg(experiments=exp(kind=None)),
     "experiments[0].kind: is required"),
    ("experiment kind not a string", cfg(experiments=exp(kind='["burst"]')),
     "experiments[0].kind: "),
    ("missing name", cfg(experiments=exp(name=None)), "experiments[0].name: is required"),
    ("bad name", cfg(experiments=exp(name='"a b"')), "experiments[0].name: must be"),
    ("missing endpoints", cfg(experiments=exp(endpoints=None)),
     "experiments[0].endpoints: is required"),
    ("missing requests", cfg(experiments=exp(requests=None)),
     "experiments[0].requests: is required"),
    ("closed without users", cfg(experiments=exp(**CLOSED | {"users": None})),
     "experiments[0].users: is required"),
    ("burst with users", cfg(experiments=exp(users="[4]")),
     "experiments[0].users: unknown key"),
    ("endpoint without slash", cfg(experiments=exp(endpoints='["/hello", "blocking"]')),
     "experiments[0].endpoints[1]: must be a path starting with '/'"),
    ("endpoint with query", cfg(experiments=exp(endpoints='["/blocking?delay=1"]')),
     "experiments[0].endpoints[0]: must be a path"),
    ("requests 0", cfg(experiments=exp(requests="[0]")),
     "experiments[0].requests[0]: must be ≥ 1"),
    ("users 0", cfg(experiments=exp(**CLOSED | {"users": "[2, 0]"})),
     "experiments[0].users[1]: must be ≥ 1"),
    ("duplicate experiment names", cfg(experiments=exp() + exp(endpoints='["/blocking"]')),
     "experiments[1].name: duplicate name 'a'"),
    ("params list value", cfg(experiments=exp(params="{ delay = [0.1, 0.2] }")),
     "experiments[0].params.delay: must be a single value"),
    ("params not a table", cfg(experiments=exp(params="5")),
     "experiments[0].params: must be a table"),
    ("negative delay", cfg(experiments=exp(params="{ delay = -0.1 }")),
     "experiments[0].params.delay: must be ≥ 0"),
    ("delay not a number", cfg(experiments=exp(params='{ delay = "fast" }')),
     "experiments[0].params.delay: must be a number"),
    ("closed duration_s 0", cfg(experiments=exp(**CLOSED | {"duration_s": "0"})),
     "experiments[0].duration_s: must be > 0"),
    ("closed negative warmup", cfg(experiments=exp(**CLOSED | {"warmup_s": "-1"})),
     "experiments[0].warmup_s: must be ≥ 0"),
    ("bad engine", cfg(experiments=exp(engine='"curl"')),
     "experiments[0].engine: must be one of"),
    ("timeout_s 0", cfg(experiments=exp(timeout_s="0")), "experiments[0].timeout_s: must be >"),
    ("non-loopback host", cfg(lab='host = "10.0.0.1"\n'), "lab.host: '10.0.0.1' is not"),
    ("app without colon", cfg(lab='app = "apps.article"\n'), "lab.app: must be 'module:attr"),
    ("app that does not import", cfg(lab='app = "apps.no_such_module_xyz:app"\n'),
     "lab.app: cannot import"),
    ("app attribute missing", cfg(lab='app = "apps.article:nope"\n'),
     "lab.app: module 'apps.article' has no attribute 'nope'"),
    ("repeats 0", cfg(lab="repeats = 0\n"), "lab.repeats: must be ≥ 1"),
    ("lab not a table", "lab = 3\n" + SERVER + exp(), "lab: must be a table"),
    ("bad order", cfg(lab='order = "random"\n'), "lab.order: must be one of"),
    ("negative seed", cfg(lab="seed = -1\n"), "lab.seed: must be ≥ 0"),
    ("unknown baseline", cfg(lab='baseline = "uvicorn-w9"\n'), "lab.baseline: 'uvicorn-w9'"),
    ("endpoint with a control character", cfg(experiments=exp(endpoints='["/he\\u0000llo"]')),
     "experiments[0].endpoints[0]: must not contain control characters, got '/he\\x00llo'"),
    ("probe with a control character", cfg(experiments=exp(**INTERFERENCE, probe='"/a\\tb"')),
     "experiments[0].probe: must not contain control characters"),
    ("endpoint too long for a log file name",
     cfg(experiments=exp(endpoints='["/' + "x" * 240 + '"]')),
     "experiments[0].endpoints[0]: too long: its cell id"),
    ("absurd repeats", cfg(lab="repeats = 99999999999999999999\n"),
     "lab.repeats: the matrix has 99,999,999,999,999,999,999 cells"),
    ("absurd axes", cfg(servers="[servers.uvicorn]\nworkers = [1, 2, 3, 4]\n",
                        experiments=exp(requests=str(list(range(1, 30_000))))),
     "experiments: the matrix has 119,996 cells"),
]

INVALID += [
    ("rates auto without an SLO", cfg(experiments=exp(**OPEN | {"rates": '"auto"'})),
     "experiments[0].rates: \"auto\" searches for the highest rate within slo_p99_ms"),
    ("rates a word other than auto", cfg(experiments=exp(**OPEN | {"rates": '"fast"'})),
     "experiments[0].rates[0]: must be an integer"),
    ("unknown connect", cfg(experiments=exp(connect='"hot"')),
     "experiments[0].connect: must be one of warm, cold, got 'hot'"),
    ("unknown connect in an axis", cfg(experiments=exp(connect='["warm", "tepid"]')),
     "experiments[0].connect[1]: must be one of warm, cold"),
    ("probe_connect on a burst", cfg(experiments=exp(probe_connect='"cold"')),
     "experiments[0].probe_connect: unknown key"),
    ("a knee window of 0", cfg(experiments=exp(**OPEN, knee_window_s="0")),
     "experiments[0].knee_window_s: must be > 0"),
    # every engine drops a fragment, while the report would name it
    ("endpoint with a fragment", cfg(experiments=exp(endpoints='["/a#frag"]')),
     "experiments[0].endpoints[0]: must not contain '#'"),
    ("endpoint table path with a fragment",
     cfg(experiments=exp(endpoints='[{ path = "/a#frag" }]')),
     "experiments[0].endpoints[0].path: must not contain '#'"),
    ("probe with a fragment", cfg(experiments=exp(**INTERFERENCE, probe='"/hello#x"')),
     "experiments[0].probe: must not contain '#'"),
    ("ready_path with a fragment", cfg(lab='ready_path = "/health#x"\n'),
     "lab.ready_path: must not contain '#'"),
    ("probe table with a bad path", cfg(experiments=exp(**INTERFERENCE,
                                                        probe='{ path = "hello" }')),
     "experiments[0].probe.path: must be a path starting with '/'"),
    ("probe table with an unknown key", cfg(experiments=exp(**INTERFERENCE,
                                                            probe='{ path = "/a", x = 1 }')),
     "experiments[0].probe.x: unknown key"),
    # header names and values: what every engine can send alike (httpx refuses non-ASCII,
    # aiohttp and wrk send UTF-8, rawhttp latin-1)
    ("non-ASCII header value",
     cfg(experiments=exp(endpoints='[{ path = "/a", headers = { "X-U" = "é" } }]')),
     "experiments[0].endpoints[0].headers.X-U: must be printable ASCII"),
    ("non-ASCII header name",
     cfg(experiments=exp(endpoints='[{ path = "/a", headers = { "X-é" = "e" } }]')),
     "experiments[0].endpoints[0].headers: 'X-é' is not a valid header name"),
    ("header value with CR LF",
     cfg(experiments=exp(endpoints='[{ path = "/a", headers = { "X-A" = "a\\r\\nX-B: b" } }]')),
     "experiments[0].endpoints[0].headers.X-A: must be printable ASCII"),
    ("header value with a leading space",
     cfg(experiments=exp(endpoints='[{ path = "/a", headers = { "X-A" = " a" } }]')),
     "experiments[0].endpoints[0].headers.X-A: must not start or end with a space"),
    ("probe table with a non-ASCII header",
     cfg(experiments=exp(**INTERFERENCE, probe='{ path = "/a", headers = { "X-U" = "é" } }')),
     "experiments[0].probe.headers.X-U: must be printable ASCII"),
]

# A TOML date or time in params passed validate and crashed run with a TypeError.
NOT_SCALAR_PARAMS = {"datetime": "1979-05-27T07:32:00Z", "local date": "1979-05-27",
                     "local time": "07:32:00", "local datetime": "1979-05-27T07:32:00"}
INVALID += [(f"params {case}", cfg(experiments=exp(params=f"{{ when = {value} }}")),
             "experiments[0].params.when: must be a string, number or boolean, got ")
            for case, value in NOT_SCALAR_PARAMS.items()]

# A float of any kind is nan or ±inf in TOML: each is refused with its key path.
NON_FINITE = [
    ("lab.cell_timeout_s", cfg(lab="cell_timeout_s = nan\n")),
    ("lab.start_timeout_s", cfg(lab="start_timeout_s = inf\n")),
    ("lab.stop_grace_s", cfg(lab="stop_grace_s = nan\n")),
    ("experiments[0].timeout_s", cfg(experiments=exp(timeout_s="nan"))),
    ("experiments[0].params.delay", cfg(experiments=exp(params="{ delay = nan }"))),
    ("experiments[0].params.scale", cfg(experiments=exp(params="{ scale = -inf }"))),
    ("experiments[0].duration_s", cfg(experiments=exp(**CLOSED, duration_s="inf"))),
    ("experiments[0].warmup_s", cfg(experiments=exp(**CLOSED, warmup_s="nan"))),
    ("experiments[0].slo_p99_ms", cfg(experiments=exp(**OPEN, slo_p99_ms="nan"))),
    ("experiments[0].settle_s", cfg(experiments=exp(**INTERFERENCE, settle_s="inf"))),
    ("experiments[0].probe_interval_s",
     cfg(experiments=exp(**INTERFERENCE, probe_interval_s="nan"))),
]
INVALID += [(f"{path} not finite", text, f"{path}: must be a finite number, got ")
            for path, text in NON_FINITE]

# Two endpoints (or experiments) whose cells would share an id, hence a results key and a log.
COLLIDING = [
    ("trailing slash", exp(endpoints='["/hello", "/hello/"]'),
     "experiments[0].endpoints[1]", "experiments[0].endpoints[0]"),
    ("slash and underscore", exp(endpoints='["/a/b", "/a_b"]'),
     "experiments[0].endpoints[1]", "experiments[0].endpoints[0]"),
    ("root", exp(endpoints='["/", "/root"]'),
     "experiments[0].endpoints[1]", "experiments[0].endpoints[0]"),
    ("across experiments", exp(name='"a-b"', endpoints='["/c"]')
     + exp(name='"a"', endpoints='["/b-c"]'),
     "experiments[1].endpoints[0]", "experiments[0].endpoints[0]"),
]
INVALID += [(f"colliding cell ids: {case}", cfg(experiments=text), f"{path}: ")
            for case, text, path, _ in COLLIDING]


def assert_one_line_error(result, starts: str) -> str:
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: " + starts), lines[0]
    return lines[0]


@pytest.mark.parametrize(("text", "starts"), [case[1:] for case in INVALID],
                         ids=[case[0] for case in INVALID])
def test_invalid_config_is_one_line_exit_2(write_config: Callable[..., Path], text: str,
                                           starts: str) -> None:
    # the text parses as TOML: what is wrong is the lab's to say, not the TOML parser's
    tomllib.loads(text)
    assert_one_line_error(run_lab("validate", write_config(text)), starts)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"
    assert_one_line_error(run_lab("validate", path), f"{path}: no such config file")


def test_not_toml(write_config: Callable[..., Path]) -> None:
    path = write_config("[servers.uvicorn\nworkers = [1\n")
    assert_one_line_error(run_lab("validate", path), f"{path}: not valid TOML")


def test_unknown_server_filter(write_config: Callable[..., Path]) -> None:
    path = write_config(cfg())
    assert_one_line_error(run_lab("validate", path, "--server", "nginx"), "--server: nginx")


def test_unknown_flag(write_config: Callable[..., Path]) -> None:
    line = assert_one_line_error(run_lab("validate", write_config(cfg()), "--bogus"), "")
    assert "--bogus" in line


def test_unknown_flag_without_config() -> None:
    assert_one_line_error(run_lab("validate", "--bogus"), "")


def test_unknown_subcommand() -> None:
    line = assert_one_line_error(run_lab("bogus"), "")
    assert "bogus" in line


def test_no_subcommand() -> None:
    assert_one_line_error(run_lab(), "")


@pytest.mark.parametrize(("text", "path", "other"), [case[1:] for case in COLLIDING],
                         ids=[case[0] for case in COLLIDING])
def test_colliding_cell_ids_name_both_endpoints(write_config: Callable[..., Path], text: str,
                                                path: str, other: str) -> None:
    line = assert_one_line_error(run_lab("validate", write_config(cfg(experiments=text))),
                                 f"{path}: ")
    assert "same cell id" in line and other in line


def test_nan_is_named_with_its_key_path(write_config: Callable[..., Path]) -> None:
    text = cfg(experiments=exp(**CLOSED, duration_s="nan"))
    assert_one_line_error(run_lab("validate", write_config(text)),
                          "experiments[0].duration_s: must be a finite number, got nan")


@pytest.mark.parametrize("command", ["validate", "run"])
@pytest.mark.parametrize("value", list(NOT_SCALAR_PARAMS.values()), ids=list(NOT_SCALAR_PARAMS))
def test_a_date_or_time_in_params_is_refused_by_validate_and_by_run_before_any_start(
        write_config: Callable[..., Path], tmp_path: Path, command: str, value: str) -> None:
    out = tmp_path / "out"
    path = write_config(cfg(experiments=exp(params=f"{{ delay = 0.01, when = {value} }}")))
    result = run_lab(command, path, *(["--out", out] if command == "run" else []))
    assert_one_line_error(result, "experiments[0].params.when: must be a string, number or "
                                  "boolean, got ")
    assert not out.exists()  # no run folder without its run.json


def test_a_config_starting_with_a_utf8_byte_order_mark_validates(
        write_config: Callable[..., Path], tmp_path: Path) -> None:
    """Windows editors save one; tomllib alone reads it as an invalid statement."""
    plain = run_lab("validate", write_config(ARTICLE))
    bom = tmp_path / "bom.toml"
    bom.write_bytes(b"\xef\xbb\xbf" + ARTICLE.encode())
    result = run_lab("validate", bom)
    assert result.returncode == 0, result.stderr
    assert result.stdout.replace(str(bom), "C") == plain.stdout.replace(
        str(tmp_path / "config.toml"), "C")


@pytest.mark.parametrize("command", ["validate", "run"])
def test_an_absurd_matrix_is_refused_at_once(write_config: Callable[..., Path], tmp_path: Path,
                                             command: str) -> None:
    """Counted, not built: 10^20 repeats answer as fast as one (the process start and its
    imports are most of the time) instead of filling the memory."""
    path = write_config(cfg(lab="repeats = 99999999999999999999\n"))
    t0 = time.monotonic()
    result = run_lab(command, path, *(["--out", tmp_path / "out"] if command == "run" else []),
                     timeout=20)
    elapsed = time.monotonic() - t0
    assert_one_line_error(result, "lab.repeats: the matrix has ")
    assert elapsed < 5, f"{command} took {elapsed:.1f} s to refuse"


def test_estimate_grows_with_workers_and_validate_warns_beyond_the_cores(
        write_config: Callable[..., Path]) -> None:
    def minutes(workers: int) -> tuple[float, str]:
        result = run_lab("validate", write_config(
            cfg(servers=f"[servers.uvicorn]\nworkers = [{workers}]\n")))
        assert result.returncode == 0, result.stderr
        return float(result.stdout.split("estimated ")[1].split()[0]), result.stderr

    one, quiet = minutes(1)
    many, warned = minutes(10_000)
    assert quiet == ""
    assert many >= 10 * max(one, 0.1)  # thousands of processes to start, not "0.0 min"
    cores = len(os.sched_getaffinity(0))
    assert warned.strip() == (f"warning: servers.uvicorn.workers: 10000 is more than this "
                              f"machine's {cores} usable cores: the workers share them, "
                              "and starting them takes longer")


@pytest.mark.parametrize("value", ["nan", "inf", "-1"])
def test_run_refuses_max_minutes_that_is_not_a_finite_number(
        write_config: Callable[..., Path], tmp_path: Path, value: str) -> None:
    """nan would make every estimate pass the --yes check."""
    out = tmp_path / "reports"
    result = run_lab("run", write_config(ARTICLE), "--out", out, f"--max-minutes={value}")
    assert "--max-minutes: must be a finite number ≥ 0" in assert_one_line_error(result, "")
    assert not out.exists()


# ---- valid configs through the CLI ---------------------------------------------------

def test_validate_prints_every_cell_and_an_estimate(write_config: Callable[..., Path]) -> None:
    path = write_config(ARTICLE)
    result = run_lab("validate", path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[:-1] == ARTICLE_IDS
    assert lines[-1].startswith(f"{path}: ok — {len(ARTICLE_IDS)} cells, estimated ")
    assert lines[-1].endswith(" min")


def test_an_estimate_of_endpoints_the_config_does_not_time_says_it_is_a_floor(
        write_config: Callable[..., Path]) -> None:
    """A burst of a real app's endpoint lasts what the endpoint takes: the estimate counted
    only the overhead (5.6 min for a run of 10.3) and said nothing of it."""
    known = run_lab("validate", write_config(ARTICLE))
    assert known.returncode == 0 and "at least" not in known.stdout
    text = ('[servers.uvicorn]\nworkers = [1]\n\n[[experiments]]\nname = "b"\n'
            'kind = "burst"\nendpoints = ["/items", "/search"]\nrequests = [10, 50]\n')
    floor = run_lab("validate", write_config(text, "real.toml"))
    assert floor.returncode == 0, floor.stderr
    assert "estimated 0.0 min at least: 4 of 4 cells last as long as their endpoints take" \
        in floor.stdout


def test_validate_applies_filters(write_config: Callable[..., Path]) -> None:
    result = run_lab("validate", write_config(ARTICLE), "--server", "uvicorn", "--workers", "1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[:-1] == [
        i for i in ARTICLE_IDS if i.startswith("uvicorn-w1-")]


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*.toml")),
                         ids=lambda p: p.name)
def test_shipped_configs_validate(path: Path) -> None:
    result = run_lab("validate", path)
    assert result.returncode == 0, result.stderr
    assert " cells, estimated " in result.stdout


# ---- run and list refusals (nothing starts) --------------------------------------------

def test_run_refuses_a_long_estimate_without_yes(write_config: Callable[..., Path],
                                                  tmp_path: Path) -> None:
    out = tmp_path / "reports"
    result = run_lab("run", write_config(ARTICLE), "--out", out, "--max-minutes", "0.01")
    line = assert_one_line_error(result, "")
    assert "--yes" in line and "--max-minutes" in line
    assert not out.exists() or not any(out.iterdir())  # no run directory was made


def test_run_refuses_an_existing_run_id(write_config: Callable[..., Path],
                                        tmp_path: Path) -> None:
    out = tmp_path / "reports"
    (out / "taken").mkdir(parents=True)
    result = run_lab("run", write_config(cfg()), "--out", out, "--run-id", "taken")
    line = assert_one_line_error(result, "")
    assert "already exists" in line
    assert list((out / "taken").iterdir()) == []


@pytest.mark.parametrize("run_id", ["../escape", "..", "a/b"])
def test_run_refuses_a_run_id_that_is_not_a_plain_name(write_config: Callable[..., Path],
                                                       tmp_path: Path, run_id: str) -> None:
    out = tmp_path / "reports"
    result = run_lab("run", write_config(cfg()), "--out", out, "--run-id", run_id)
    assert "--run-id" in assert_one_line_error(result, "")
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["config.toml"]


def test_run_without_config_or_resume(tmp_path: Path) -> None:
    assert_one_line_error(run_lab("run", "--out", tmp_path), "")


def test_list_names_every_server_with_its_version() -> None:
    result = run_lab("list")
    assert result.returncode == 0, result.stderr
    for name, adapter in ADAPTERS.items():
        assert f"{name}" in result.stdout and str(adapter.version()) in result.stdout
    for kind in ("burst", "closed"):
        assert kind in result.stdout
