"""The stream kind: rawhttp's body timing against a hand-written server, the buffering rule,
its config, its figures' round trip, and end to end on every server: apps.article's
/stream and /sse stream, the same behind a middleware that holds the body are flagged."""

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from lab.errors import ConfigError
from lab.kinds.stream import Streaming, paced_ms, streaming
from lab.load import stream
from lab.load.rawhttp import RawClient
from lab.load.samples import BodyTiming, Sample
from lab.matrix.config import parse
from lab.matrix.endpoint import Endpoint
from lab.servers import ADAPTERS
from lab.store.schema import Figures, Result, StreamFigures
from tests.conftest import result
from tests.test_any_app import by_id, lab_run

GAP_S = 0.03  # between the hand-written server's chunks


# ---- rawhttp sees each chunk arrive ---------------------------------------------------------

async def _chunked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answers ``GET /paced`` with 3 HTTP chunks GAP_S apart, ``GET /held`` with the same 3
    in one write."""
    line = await reader.readuntil(b"\r\n\r\n")
    chunks = [b"%x\r\n%s\r\n" % (5, b"abcd\n")] * 3 + [b"0\r\n\r\n"]
    writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    if line.startswith(b"GET /held"):
        writer.write(b"".join(chunks))
    else:
        for i, chunk in enumerate(chunks):
            if 0 < i < 3:
                await asyncio.sleep(GAP_S)
            writer.write(chunk)
            await writer.drain()
    await writer.drain()
    writer.close()


async def _time(path: str) -> Sample:
    server = await asyncio.start_server(_chunked, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = RawClient(f"http://127.0.0.1:{port}", {}, 1, 5.0)
    try:
        return await client.send(Endpoint(path), timed=True)
    finally:
        await client.aclose()
        server.close()
        await server.wait_closed()


def test_rawhttp_times_each_read_of_a_chunked_body() -> None:
    paced, held = asyncio.run(_time("/paced")), asyncio.run(_time("/held"))
    for s in paced, held:
        assert s.error is None and s.body is not None and s.body.nbytes == 15
    assert paced.body is not None and held.body is not None
    # Three chunks two gaps apart arrive in three reads, the first well before the last:
    # the server slept 2 × GAP_S after writing it.
    assert paced.body.reads == 3
    assert paced.start + paced.latency_s - paced.body.first >= 1.5 * GAP_S
    assert held.body.reads == 1  # one write: the body came at once, with its end
    assert held.start + held.latency_s - held.body.first < GAP_S


# ---- figures and the rule -------------------------------------------------------------------

def sample(first_s: float, last_s: float, reads: int, nbytes: int = 100) -> Sample:
    return Sample(10.0, last_s, None, 1, 10.0, BodyTiming(10.0 + first_s, reads, nbytes))


def test_figures_of_responses() -> None:
    samples = [sample(0.001, 0.1, 10), sample(0.003, 0.1, 10),
               Sample(10.0, 0.2, "timeout", None)]  # a failed one counts for none
    f = stream.figures(samples, network_ms=0.4, paced=90.0)
    assert f.ttfb_histogram is not None and f.ttfb_histogram.total == 2
    assert f.ttfb_ms["max"] == pytest.approx(3.0, rel=0.01)
    assert f.body_span_ms["max"] == pytest.approx(99.0, rel=0.01)  # TTLB − TTFB
    assert f.body_span_ms["p50"] == pytest.approx(97.0, rel=0.01)  # the lower of two
    assert f.chunks_per_s == pytest.approx(20 / 0.2)
    assert f.chunks_per_response == 10 and f.body_bytes == 200


def figures(span_ms: float, paced_ms: float | None, network_ms: float = 0.5) -> Figures:
    return Figures(stream=StreamFigures({}, None, {"p50": span_ms}, None, None, None, 0,
                                        network_ms, paced_ms))


@pytest.mark.parametrize("span, paced, network, judged", [
    (95.0, 90.0, 0.5, Streaming.STREAMED),
    (60.0, 90.0, 0.5, Streaming.STREAMED),  # a busy client read some chunks together
    (0.05, 90.0, 0.5, Streaming.BUFFERED),  # all at once
    (8.9, 90.0, 0.5, Streaming.BUFFERED),
    (0.1, 4.0, 0.1, Streaming.TOO_QUICK),  # paced under 5 ms: any server sends it at once
    (0.1, 20.0, 3.0, Streaming.TOO_QUICK),  # under 10 round trips
    (0.1, None, 0.5, Streaming.UNKNOWN),  # the pacing is not known: never flagged
])
def test_the_buffering_rule(span: float, paced: float | None, network: float,
                            judged: Streaming) -> None:
    assert streaming(figures(span, paced, network)) is judged


def test_nothing_to_judge_without_stream_figures() -> None:
    assert streaming(Figures(latency_ms={"p50": 100.0})) is None


def test_the_pacing_is_the_query_s_or_the_setting() -> None:
    def pacing(extra: dict[str, Any], endpoint: Any = "/sse") -> float | None:
        raw = experiment(**extra)
        raw["experiments"][0]["endpoints"] = [endpoint]
        cell = parse(raw).cells()[0]
        return paced_ms(cell.experiment, cell.endpoint)

    assert pacing({"params": {"chunks": 10, "interval": 0.01}}) == pytest.approx(90.0)
    # the endpoint's own query wins over the experiment's params, as on the wire
    assert pacing({"params": {"chunks": 10, "interval": 0.01}},
                  {"path": "/sse", "query": {"interval": "0"}}) == 0.0
    assert pacing({"params": {"chunks": 10, "interval": 0.01}, "paced_ms": 250}) == 250.0
    assert pacing({}) is None  # a team's own endpoint: pacing unknown unless paced_ms says


def test_stream_figures_round_trip() -> None:
    f = stream.figures([sample(0.001, 0.1, 10), sample(0.09, 0.1, 1)], network_ms=0.4,
                       paced=90.0)
    line = result(Figures(latency_ms={"p50": 100.0}, stream=f).to_json()).to_json()
    back = Result.from_json(json.loads(json.dumps(line)))
    assert back.figures is not None and back.figures.stream == f
    assert back.to_json() == line


# ---- config ---------------------------------------------------------------------------------

def experiment(**extra: Any) -> dict[str, Any]:
    return {"servers": {"uvicorn": {"workers": [1]}},
            "experiments": [{"name": "s", "kind": "stream", "endpoints": ["/sse"],
                             "readers": [1, 50], **extra}]}


def test_a_stream_experiment_parses_into_reader_cells() -> None:
    matrix = parse(experiment(responses=3, params={"chunks": 10, "interval": 0.01}))
    cells = matrix.cells()
    assert [c.id for c in cells] == ["uvicorn-w1-s-sse-rd1", "uvicorn-w1-s-sse-rd50"]
    assert {c.experiment.responses for c in cells} == {3}
    assert cells[0].experiment.engine == "rawhttp"


@pytest.mark.parametrize("extra, path", [
    ({"responses": 0}, "experiments[0].responses"),
    ({"responses": 1.5}, "experiments[0].responses"),
    ({"paced_ms": -1}, "experiments[0].paced_ms"),
    ({"engine": "wrk"}, "experiments[0].engine"),  # only rawhttp times the body's reads
    ({"duration_s": 1}, "experiments[0].duration_s"),  # not a stream setting
    ({"readers": [0]}, "experiments[0].readers[0]"),
])
def test_bad_stream_settings_name_their_key(extra: dict[str, Any], path: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse(experiment(**extra))
    assert e.value.path == path, str(e.value)


# ---- every server, for real -----------------------------------------------------------------

CHUNKS, SIZE, INTERVAL, RESPONSES = 6, 512, 0.02, 2
READERS = (2, 30)  # 30 at once on a shared 2-core machine: the rule must still hold
PACED_MS = 1e3 * (CHUNKS - 1) * INTERVAL  # the endpoint's own spread: no response is quicker
SERVERS = "".join(f"[servers.{name}]\nworkers = [1]\n\n" for name in ADAPTERS)
CONFIG = f"""
[lab]
app = "tests.stream_app:app"
start_timeout_s = 20
stop_grace_s = 3
cell_timeout_s = 30

{SERVERS}
[[experiments]]
name = "s"
kind = "stream"
endpoints = ["/stream", {{ path = "/sse", expect = {{ contains = "data: xxx" }} }},
             "/held/stream", "/held/sse"]
readers = [{", ".join(map(str, READERS))}]
responses = {RESPONSES}
timeout_s = 10
params = {{ chunks = {CHUNKS}, size = {SIZE}, interval = {INTERVAL} }}
"""


@pytest.mark.servers
def test_streams_are_streamed_and_a_holding_middleware_is_flagged(tmp_path: Path) -> None:
    code, output, run = lab_run(tmp_path, CONFIG, "stream")
    assert code == 0, output
    records = by_id(run)
    assert len(records) == 4 * len(READERS) * len(ADAPTERS)
    for cid, r in records.items():
        assert r["status"] == "ok", (cid, r["failure"])
        f = Result.from_json(r).figures
        assert f is not None and f.stream is not None
        responses = r["load"]["readers"] * RESPONSES
        assert f.ok == responses and f.errors == {}, cid
        assert f.stream.body_bytes == responses * CHUNKS * SIZE, cid
        ttlb = f.latency_ms["p50"]
        assert ttlb is not None and ttlb >= 0.95 * PACED_MS, cid  # paced in either case
        held = "-held_" in cid
        assert streaming(f) is (Streaming.BUFFERED if held else Streaming.STREAMED), cid
        reads = f.stream.chunks_per_response
        assert reads is not None
        # streamed: the chunks came apart (a busy client may read two at once); held: at
        # once, in a read or two of the one body
        assert (reads <= 2) if held else (reads >= CHUNKS / 2), (cid, reads)
    report = (run.path / "report.md").read_text(encoding="utf-8")
    everyone = ", ".join(f"{name}-w1" for name in sorted(ADAPTERS))
    for endpoint in "/stream", "/sse":  # "Who buffers streams?" in the report's In short
        assert f"- `{endpoint}`: streamed by every server." in report
        assert f"- `/held{endpoint}`: **buffered** by {everyone}: " in report
    assert "![time to first body byte vs readers, s](chart-stream-s.png)" in report
    assert (run.path / "chart-stream-s.png").stat().st_size > 0
    assert report.count("| buffered ⚠") == 2 * len(READERS) * len(ADAPTERS)
