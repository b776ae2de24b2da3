"""No coalescing: a request whose client opted out is its own upstream call, never shared.

`Solo` stands in for a coalescer (router.coalescing.inflight's `Coalescer` interface) and counts
into its stats; the call is made in the request's own task, as its client takes the answer
(`OwnCall` for a whole response, `OwnStream` for a stream): nothing can join it, so it needs no
flight.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from router.coalescing.inflight import StartCall, Subscription
from router.streaming import LastBatch, as_chunks, has_output, is_usage_only


class OwnCall:
    """A non-stream Solo waiter's call, made in the waiter's own task when it asks for the
    answer: no flight task, no wake-ups (nobody else can join it). Cancelling the waiter
    cancels the call, as leaving a Solo flight does."""

    coalesced = False
    drained = True

    def __init__(self, solo: Solo, start: StartCall) -> None:
        self._solo = solo
        self._start: StartCall | None = start
        self._result: dict[str, Any] | None = None
        self._error: BaseException | None = None
        self._closed = False

    async def response(self) -> dict[str, Any]:
        if self._start is not None:
            start, self._start = self._start, None
            try:
                self._result = await start()
            except Exception as exc:  # noqa: BLE001 - kept and raised again, like a flight's
                self._error = exc
        if self._error is not None:
            raise self._error
        if self._result is None:  # cancelled while calling: nothing to give
            raise ConnectionAbortedError("the call was cancelled")
        return self._result

    async def wait_output(self) -> bool:
        await self.response()
        return True

    def claim_bill(self, complete: bool) -> bool:
        return True  # its own call: always its own bill

    async def batches(self, include_usage: bool) -> AsyncIterator[list[dict[str, Any]]]:
        yield as_chunks(await self.response(), include_usage)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            if self._result is None and self._error is None:
                self._solo.stats["cancelled"] = self._solo.stats.get("cancelled", 0) + 1


class OwnStream:
    """A stream Solo waiter's call, read in the waiter's own task as its client takes the
    chunks (no flight task, no buffer beyond the chunks read before the first output, no
    wake-ups). A list of chunks marked `LastBatch` by the upstream's iterator is its end: the
    stream's end can go out with it (`drained`)."""

    coalesced = False

    def __init__(self, solo: Solo, start: StartCall) -> None:
        self._solo = solo
        self._start = start
        self._it: Any = None
        self._head: list[dict[str, Any]] = []
        self._last = False  # the iterator gave its LastBatch: nothing but its end follows
        self._ended = False  # the iterator ran to its end or failed (not: was cancelled)
        self._closed = False
        self.drained = False

    async def _next(self) -> list[dict[str, Any]] | None:
        """The next chunks from the upstream, None at the end."""
        try:
            item = await self._it.__anext__()
        except StopAsyncIteration:
            self._ended = True
            return None
        except Exception:
            self._ended = True
            raise
        if item.__class__ is LastBatch:
            self._last = True
        return item if isinstance(item, list) else [item]

    async def wait_output(self) -> bool:
        try:
            self._it = await self._start()  # opening failures raise here: escalation follows
        except Exception:
            self._ended = True
            raise
        while True:
            chunks = await self._next()
            if chunks is None:
                return False
            self._head += chunks
            if any(has_output(c) for c in chunks):
                return True

    def batches(self, include_usage: bool) -> AsyncIterator[list[dict[str, Any]]]:
        return _OwnBatches(self, include_usage)

    async def _release(self) -> None:
        it, self._it = self._it, None
        close = getattr(it, "aclose", None)
        if close is not None:
            await close()  # gives the upstream connection back (or closes it) now

    async def response(self) -> dict[str, Any]:
        raise NotImplementedError("a Solo stream has no whole response")

    def claim_bill(self, complete: bool) -> bool:
        return True  # its own call: always its own bill

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if not self._ended:  # left before the end: as a Solo flight's waiter leaving
            self._solo.stats["cancelled"] = self._solo.stats.get("cancelled", 0) + 1
        if self._it is not None:  # never read through batches(): release the upstream
            asyncio.ensure_future(self._release())


class _OwnBatches:
    """`OwnStream.batches`: the chunks read before the first output, then the rest as they
    come; the upstream is released when they end, fail or are closed. A plain async iterator
    rather than an async generator (asyncio registers and finalizes every one of those)."""

    __slots__ = ("_own", "_include_usage", "_started", "_done")

    def __init__(self, own: OwnStream, include_usage: bool) -> None:
        self._own = own
        self._include_usage = include_usage
        self._started = False
        self._done = False

    def __aiter__(self) -> _OwnBatches:
        return self

    async def __anext__(self) -> list[dict[str, Any]]:
        own = self._own
        if not self._done:
            try:
                batch: list[dict[str, Any]] | None = None
                if not self._started:
                    self._started = True
                    batch, own._head = own._head, []
                while True:
                    if batch:
                        own.drained = own._last
                        if not self._include_usage:
                            batch = [c for c in batch if not is_usage_only(c)]
                        if batch:
                            return batch
                    if own._ended:
                        break
                    batch = await own._next()
                    if batch is None:
                        break
            except BaseException:
                self._done = True
                await own._release()
                raise
            self._done = True
            await own._release()
        raise StopAsyncIteration

    async def aclose(self) -> None:
        if not self._done:
            self._done = True
            await self._own._release()


class Solo:
    """No coalescing (opted out): every request is its own call, never shared. Counts into
    the stats of the coalescer it stands in for, whatever its kind (in-process or shared).
    The call is made in the request's own task, as its client takes the answer (OwnCall,
    OwnStream): nothing can join it, so nothing needs a flight."""

    def __init__(self, coalescer: Any = None) -> None:
        self.stats: dict[str, int] = getattr(coalescer, "stats", None) or {
            "calls": 0, "coalesced": 0, "cancelled": 0}

    def join(self, key: str, start: StartCall, *, stream: bool) -> Subscription:
        self.stats["calls"] = self.stats.get("calls", 0) + 1
        return OwnStream(self, start) if stream else OwnCall(self, start)

