"""Raw samples of a measurement and the one place responses are checked."""

from collections import Counter
from dataclasses import dataclass, field

from lab.load.histogram import Histogram
from lab.load.monitor import Usage
from lab.matrix.endpoint import Endpoint
from lab.store.schema import KindFigures


@dataclass(slots=True)
class BodyTiming:
    """When a response's body arrived, as the lab's own client saw it (a stream's figures)."""

    first: float = 0.0  # perf_counter() of the socket read that brought its first bytes
    reads: int = 0  # socket reads that carried body bytes: chunks as they arrived
    nbytes: int = 0


@dataclass(slots=True)
class Sample:
    start: float  # time.perf_counter() when sent (open model: when scheduled)
    latency_s: float
    error: str | None  # None when the response passed the check, else its kind
    pid: int | None  # the worker process that answered
    sent: float | None = None  # perf_counter() when the request was written, if known
    body: BodyTiming | None = None  # asked of rawhttp (``timed``): None, or no body came


@dataclass
class Tally:
    """A window's responses counted: what every engine's samples come down to. An external
    engine (wrk) that gives no per-request samples builds this directly."""

    ok: int
    errors: Counter[str]  # by kind: http_503, bad_body, timeout, connect, ...
    pids: Counter[int]  # successful responses per worker process
    histogram: Histogram  # latencies of successful responses

    @classmethod
    def of(cls, samples: list[Sample]) -> "Tally":
        ok = [s for s in samples if s.error is None]
        hist = Histogram()
        for s in ok:
            hist.record(s.latency_s)
        return cls(len(ok), Counter(s.error for s in samples if s.error is not None),
                   Counter(s.pid for s in ok if s.pid is not None), hist)


@dataclass
class Measurement:
    """What one experiment returns: samples from its measured window and how it ran."""

    samples: list[Sample]
    usage: Usage  # the measured window: its length, client and server resources
    parts: KindFigures = field(default_factory=KindFigures)  # the kind's own figures
    counted: Tally | None = None  # set by engines without per-request samples
    wall_s: float | None = None  # the kind's own measured time (a burst's), if not the window's

    def tally(self) -> Tally:
        return self.counted if self.counted is not None else Tally.of(self.samples)

    @property
    def span_s(self) -> float:
        """What the achieved rate is over: an open model's answer span, else the window."""
        o = self.parts.open
        return o.answer_span_s if o and o.answer_span_s is not None else self.usage.wall_s


def check(status: int, worker: str | None, body: bytes, endpoint: Endpoint
          ) -> tuple[str | None, int | None]:
    """(error kind or None, worker pid) for one response.

    The status must be the endpoint's expected one (any 2xx unless it names one) and the
    body must pass its check, if it has one: any other answer is an error of its kind
    (``http_404``, ``bad_body``), not a success. The worker is the one named by the
    wrapper's ``x-lab-worker`` header (None when the app is not wrapped).
    """
    if not endpoint.status_ok(status):
        return f"http_{status}", None
    pid = int(worker) if worker and worker.isdigit() else None
    if endpoint.body_problem(body):
        return "bad_body", pid
    return None, pid
