"""Request coalescing: identical requests in flight at once share one upstream call.

A *flight* is one upstream call for one (canonical body, tier) key. The first request starts it;
requests with the same key that arrive while it runs join it as followers instead of calling the
provider again. The flight buffers what it receives, so:

- a non-stream waiter gets the whole response (assembled from chunks if the flight streams);
- a stream waiter gets every chunk from the first one, however late it joined, then the rest
  as they arrive (split from the response if the flight does not stream);
- a waiter that leaves (client disconnect) only unsubscribes; the call is cancelled when the
  last waiter leaves, so one impatient client never breaks the answer for the others;
- the call is paid for exactly once (`claim_bill`): by the waiter that started it, or, if that
  one left before the end while others still wait, by the first of them to get the answer. No
  answer rides free because the request that paid for it hung up.

The key holds the tenant (the caller's API key id) unless the operator opts in to sharing
calls across tenants (``coalesce_across_keys = true``): one tenant never learns from
``x-tierwise-coalesced`` what another asked, and never gets its answer for nothing.

Flights are forgotten when they finish: this is not a response cache. `stream` and
`stream_options` are not part of the key (they only change how the answer is delivered), so
streaming and non-streaming clients asking the same thing share one call.

`Coalescer` and `Subscription` are the interface a cross-replica backend (Redis, a later issue)
implements; `InProcessCoalescer` is the one-process version over asyncio.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol

from router.streaming import as_chunks, assemble, has_output, is_usage_only

# Starts the upstream call: returns the response dict, or (stream flights) an async iterator of
# chunk dicts whose opening already happened (so HTTP errors raise before any chunk). A stream
# iterator may also yield lists of chunk dicts: the chunks of one network read, handed on to
# the waiters together (one wake-up, and one write to the client, per read).
StartCall = Callable[[], Awaitable[Any]]

_NOT_IN_KEY = {"model", "stream", "stream_options"}


def coalesce_key(body: dict[str, Any], tier: str, tenant: str | None = None) -> str:
    """Identity of a request for coalescing: the canonical body (keys sorted), the tier and
    the tenant (None: requests of every caller may share a call)."""
    canonical = {k: v for k, v in body.items() if k not in _NOT_IN_KEY}
    text = json.dumps(canonical, sort_keys=True, separators=(",", ":"), default=str)
    head = tier if tenant is None else f"{tier}\n{len(tenant)}:{tenant}"
    return hashlib.sha256(f"{head}\n{text}".encode()).hexdigest()


class Subscription(Protocol):
    """One waiter's view of a flight."""

    coalesced: bool  # True when this waiter joined a call someone else started

    async def wait_output(self) -> bool:
        """Wait until the answer has begun (True) or the call ended with no output (False);
        raises the call's error if it failed before any output."""

    def batches(self, include_usage: bool) -> AsyncIterator[list[dict[str, Any]]]:
        """Every chunk from the first one, the chunks available at once in one list; raises
        the call's error where it happened. `drained` is True when the list just handed out
        was the last."""

    @property
    def drained(self) -> bool:
        """True once `batches` has handed out the flight's last chunk."""

    async def response(self) -> dict[str, Any]:
        """The complete response; raises the call's error."""

    def close(self) -> None:
        """Leave; cancels the call if this was its last waiter."""

    def claim_bill(self, complete: bool) -> bool:
        """Called once when this waiter's answer is settled: True if it pays for the call
        (exactly one waiter of a call does). `complete`: it got the whole answer."""


class Coalescer(Protocol):
    def join(self, key: str, start: StartCall, *, stream: bool) -> Subscription:
        """Join the flight for `key`, starting it with `start()` if none is running."""


class Flight:
    """One upstream call and everything it has produced so far."""

    def __init__(self, key: str, stream: bool) -> None:
        self.key = key
        self.stream = stream
        self.loop = asyncio.get_running_loop()
        self.chunks: list[dict[str, Any]] = []
        self.result: dict[str, Any] | None = None
        self.error: BaseException | None = None
        self.done = False
        self.output_at: int | None = None  # index of the first chunk with answer text
        self.waiters = 0
        self.task: asyncio.Task[None] | None = None
        self.billed = False  # a waiter has taken the call's bill
        self.payer_here = True  # the waiter due to pay (its starter) is still subscribed
        self._wake = asyncio.Event()

    def _notify(self) -> None:
        # One Event per state change: waiters hold the old one, which is set once and dropped.
        wake, self._wake = self._wake, asyncio.Event()
        wake.set()

    async def changed(self) -> None:
        await self._wake.wait()

    async def run(self, start: StartCall) -> None:
        try:
            result = await start()
            if self.stream:
                chunks = self.chunks
                async for item in result:
                    for chunk in item if isinstance(item, list) else (item,):
                        if self.output_at is None and has_output(chunk):
                            self.output_at = len(chunks)
                        chunks.append(chunk)
                    self._notify()
            else:
                self.result = result
        except asyncio.CancelledError:
            self.error = ConnectionAbortedError("the call was cancelled: every waiter left")
            raise
        except Exception as exc:  # noqa: BLE001 - stored and re-raised in every waiter
            self.error = exc
        finally:
            self.done = True
            self._notify()

    def response(self) -> dict[str, Any]:
        if self.result is None:
            self.result = assemble(self.chunks)
        return self.result


class _Leaver(Protocol):
    def leave(self, flight: Flight) -> None: ...


class FlightSubscription:
    """A waiter on an in-process Flight."""

    def __init__(self, coalescer: _Leaver, flight: Flight, coalesced: bool) -> None:
        self._coalescer = coalescer
        self.flight = flight
        self.coalesced = coalesced
        self.drained = False  # True once `batches` handed out the flight's last chunk
        self._closed = False

    async def wait_output(self) -> bool:
        flight = self.flight
        while not flight.done and flight.output_at is None:
            await flight.changed()
        if flight.output_at is not None:
            return True
        if flight.error is not None:
            raise flight.error
        if not flight.stream:
            return True  # a complete response: the checks judge it
        return False

    async def batches(self, include_usage: bool) -> AsyncIterator[list[dict[str, Any]]]:
        flight = self.flight
        if not flight.stream:
            while not flight.done:
                await flight.changed()
            if flight.error is not None:
                raise flight.error
            self.drained = True
            yield as_chunks(flight.response(), include_usage)
            return
        sent = 0
        while True:
            chunks = flight.chunks
            if sent < len(chunks):
                batch = chunks[sent:]
                sent = len(chunks)
                # the last batch: the stream's end can go out with it, in the same write
                self.drained = flight.done and flight.error is None
                if not include_usage:
                    batch = [c for c in batch if not is_usage_only(c)]
                if batch:
                    yield batch
                continue
            if flight.done:
                if flight.error is not None:
                    raise flight.error
                return
            await flight.changed()

    async def response(self) -> dict[str, Any]:
        flight = self.flight
        while not flight.done:
            await flight.changed()
        if flight.error is not None:
            raise flight.error
        return flight.response()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            if not self.coalesced:  # the starter left: if it did not pay, a follower will
                self.flight.payer_here = False
            self._coalescer.leave(self.flight)

    def claim_bill(self, complete: bool) -> bool:
        flight = self.flight
        if flight.billed or (self.coalesced and flight.payer_here):
            return False  # paid already, or its starter is still there to pay
        others = flight.waiters - (0 if self._closed else 1)
        if not complete and not flight.done and others > 0:
            # leaving half-way while others wait for the rest: the one that gets it pays
            flight.payer_here = False
            return False
        flight.billed = True
        return True


class InProcessCoalescer:
    """Flights of one process and event loop; counts leaders, followers and cancellations."""

    def __init__(self) -> None:
        self._flights: dict[str, Flight] = {}
        self.stats = {"calls": 0, "coalesced": 0, "cancelled": 0}

    def join(self, key: str, start: StartCall, *, stream: bool) -> FlightSubscription:
        flight = self._flights.get(key)
        # A flight from another event loop (e.g. an earlier asyncio.run) cannot be awaited here.
        if flight is not None and not flight.done and flight.loop is asyncio.get_running_loop():
            flight.waiters += 1
            self.stats["coalesced"] += 1
            return FlightSubscription(self, flight, coalesced=True)
        flight = Flight(key, stream)
        flight.waiters = 1
        self._flights[key] = flight
        self.stats["calls"] += 1
        flight.task = asyncio.create_task(self._run(flight, start),
                                          name=f"tierwise-flight-{key[:8]}")
        return FlightSubscription(self, flight, coalesced=False)

    async def _run(self, flight: Flight, start: StartCall) -> None:
        try:
            await flight.run(start)
        finally:
            self._forget(flight)

    def leave(self, flight: Flight) -> None:
        flight.waiters -= 1
        if flight.waiters <= 0 and not flight.done:
            self._forget(flight)
            self.stats["cancelled"] += 1
            if flight.task is not None:
                flight.task.cancel()

    def _forget(self, flight: Flight) -> None:
        if self._flights.get(flight.key) is flight:
            del self._flights[flight.key]

    @property
    def in_flight(self) -> int:
        return len(self._flights)
