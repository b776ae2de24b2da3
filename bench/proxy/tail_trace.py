"""Where the slow requests' time goes: per-request phase timing inside `tierwise serve`.

Loaded by bench/proxy/tierwise_serve.py when TIERWISE_TAIL_TRACE=1 (benchmarks only; the
product has no such switch). It wraps the ASGI app uvicorn serves and records, per chat request:

- wall time inside the app (first ASGI call to its return) and the gap since the previous
  request ended (at concurrency 1: the client's turn-around plus uvicorn's read and parse);
- the event loop thread's CPU time (``time.thread_time_ns``) and its run-queue delay
  (``/proc/thread-self/schedstat``: time it was runnable but another task had the core);
- the upstream call (``Upstream.acall`` / ``astream`` up to the stream's opening);
- the CPU the process's other threads (accounting, ledger, warm-up) used meanwhile
  (their schedstat);

and, as intervals on the same clock, every garbage collection (``gc.callbacks``), every
accounting batch (``Accountant._run``) and every ledger write (``Ledger._write``). The loop
thread's time that is neither CPU nor run-queue delay was spent waiting: for the upstream, for
the client, or for the GIL while another thread of the process held it.

``GET /__tail`` answers all of it as JSON and starts over; bench/proxy/tail.py reads it and
reports the slowest 1 %. The tracer's own cost (~6 preads of /proc per request) is on every
request alike, so it shifts the median and the tail by the same few microseconds.
"""

from __future__ import annotations

import gc
import json
import os
import threading
import time
from typing import Any

_ns = time.perf_counter_ns


def _schedstat(fd: int) -> tuple[int, int]:
    """(CPU ns, run-queue wait ns) of one thread, from its open schedstat file."""
    cpu, wait, _ = os.pread(fd, 128, 0).split()
    return int(cpu), int(wait)


class Trace:
    def __init__(self) -> None:
        self.requests: list[tuple[Any, ...]] = []
        self.gcs: list[tuple[int, int, int]] = []
        self.batches: list[tuple[int, int, int]] = []
        self.writes: list[tuple[int, int, int]] = []
        self.census: list[Any] = []
        self.upstream: dict[int, int] = {}  # request start -> ns in the upstream call
        self.last_end = 0
        self.current = 0  # start of the request in progress (c=1: at most one)
        self._gc_start = 0
        self._own_fd = -1
        self._others: dict[int, tuple[str, int]] = {}  # native id -> (name, schedstat fd)
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            if info["generation"] == 2 and os.environ.get("TIERWISE_TAIL_GC_CENSUS"):
                # what a full collection walks (costly: only when asked)
                import collections
                census = collections.Counter(type(o).__name__ for o in gc.get_objects())
                self.census.append((len(gc.get_objects(2)), census.most_common(12)))
            self._gc_start = _ns()
        else:
            self.gcs.append((self._gc_start, _ns(), info["generation"]))

    def _threads(self) -> dict[int, tuple[str, int]]:
        me = threading.get_native_id()
        for t in threading.enumerate():
            nid = t.native_id
            if nid is not None and nid != me and nid not in self._others:
                try:
                    fd = os.open(f"/proc/self/task/{nid}/schedstat", os.O_RDONLY)
                except OSError:
                    continue
                self._others[nid] = (t.name, fd)
        return self._others

    def others(self) -> dict[str, int]:
        out = {}
        for nid, (name, fd) in list(self._threads().items()):
            try:
                out[name] = _schedstat(fd)[0]
            except OSError:  # the thread ended
                del self._others[nid]
        return out

    def wrap(self, app: Any) -> Any:
        trace = self

        async def traced(scope: dict[str, Any], receive: Any, send: Any) -> None:
            if scope["type"] != "http":
                return await app(scope, receive, send)
            if scope["path"] == "/__tail":
                body = json.dumps(trace.dump()).encode()
                await send({"type": "http.response.start", "status": 200,
                            "headers": [(b"content-type", b"application/json")]})
                await send({"type": "http.response.body", "body": body})
                return None
            if scope["path"] != "/v1/chat/completions":
                return await app(scope, receive, send)
            if trace._own_fd < 0:
                trace._own_fd = os.open("/proc/thread-self/schedstat", os.O_RDONLY)
            o0 = trace.others()
            s0 = _schedstat(trace._own_fd)
            c0 = time.thread_time_ns()
            t0 = _ns()
            trace.current = t0
            try:
                return await app(scope, receive, send)
            finally:
                t1 = _ns()
                c1 = time.thread_time_ns()
                s1 = _schedstat(trace._own_fd)
                o1 = trace.others()
                gap = t0 - trace.last_end if trace.last_end else 0
                trace.last_end = t1
                other = sum(v - o0.get(k, v) for k, v in o1.items())
                trace.requests.append((t0, t1, gap, c1 - c0, s1[1] - s0[1], other,
                                       trace.upstream.pop(t0, 0)))

        traced.__wrapped__ = app  # type: ignore[attr-defined]
        return traced

    def dump(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "fields": ["t0", "t1", "gap", "loop_cpu", "loop_runq", "other_cpu", "upstream"]}
        out["census"] = self.census
        for name in ("requests", "gcs", "batches", "writes"):  # emptied in place: the timed
            sink = getattr(self, name)                         # methods hold these lists
            out[name] = sink[:]
            del sink[:len(out[name])]
        self.upstream.clear()
        self.last_end = 0
        return out


def install() -> Trace:
    """Wrap uvicorn.run's app, and time the accounting batches, ledger writes and upstream
    calls, in this process (before the CLI starts serving)."""
    import uvicorn

    from router.accounting.ledger import Ledger
    from router.serving.accountant import Accountant
    from router.upstream.calls import Upstream

    trace = Trace()
    run = uvicorn.run

    def traced_run(app: Any, *args: Any, **kwargs: Any) -> Any:
        return run(trace.wrap(app), *args, **kwargs)

    uvicorn.run = traced_run

    def interval(sink: list[tuple[int, int, int]], fn: Any, size: Any) -> Any:
        def timed(self: Any, *args: Any) -> Any:
            t0 = _ns()
            try:
                return fn(self, *args)
            finally:
                sink.append((t0, _ns(), size(args)))
        return timed

    # method-assign: patching the timing wrappers over the methods is the point here
    Accountant._run = interval(  # type: ignore[method-assign]
        trace.batches, Accountant._run, lambda a: len(a[0]))
    Ledger._write = interval(  # type: ignore[method-assign]
        trace.writes, Ledger._write, lambda a: len(a[1]))

    def upstream(fn: Any) -> Any:
        async def timed(self: Any, *args: Any, **kwargs: Any) -> Any:
            t0, start = _ns(), trace.current
            try:
                return await fn(self, *args, **kwargs)
            finally:
                trace.upstream[start] = trace.upstream.get(start, 0) + _ns() - t0
        return timed

    # method-assign: as above, the wrappers are patched in on purpose
    Upstream.acall = upstream(Upstream.acall)  # type: ignore[method-assign]
    Upstream.astream = upstream(Upstream.astream)  # type: ignore[method-assign]
    return trace
