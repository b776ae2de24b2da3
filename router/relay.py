"""A stream waiter's chunks on their way to the client, and their SDK wrapper.

`Relay` is what `Router.serve` hands out for a stream: it filters the usage chunk the client did
not ask for (tierwise always asks the provider for usage, to charge the cost), records usage on
the Routing, turns a failure after the first byte into an UpstreamError for an in-band report,
and unsubscribes from the shared call when closed. `ChunkStream` is the SDK's view of it.

It is also where a stream is settled, with one rule: an answer that left the building is charged.
Once a chunk with answer text has been handed to the client, the request goes to the Router's
listeners (ledger, metrics, budget charge) however the stream ends: run to its end, broken after
the first byte, or the client gone. Its cost is the upstream's usage when it came; when the
client left after the answer's finish_reason but before the usage chunk, the usage is awaited
a short while (`USAGE_GRACE_S`: the upstream has finished, only that event is missing); else it
is estimated (router.accounting.records.estimate_usage: the prompt's tokens and ~4 characters
per token of the text that went out). A stream that sent nothing goes to the failure listeners.
Which waiter of a shared call pays for it is the Subscription's `claim_bill` (one per call).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from router.accounting.records import clean_usage, estimate_usage
from router.coalescing.inflight import Subscription
from router.errors import TierwiseError
from router.upstream.calls import classify_failure, upstream_error

if TYPE_CHECKING:
    from router.routing import Routing

log = logging.getLogger("tierwise.relay")

# How long a stream whose client left after the finish_reason chunk is read on for the usage
# chunk (the answer is complete: the usage is the upstream's next event), to charge exact tokens.
USAGE_GRACE_S = 2.0


class Relay:
    """A stream waiter's chunks for the client. `aclose()` (client gone) only unsubscribes this
    waiter; it also works before the first chunk was asked for, unlike an async generator's.

    `batch()` hands out every chunk available at once (the responder writes them in one go);
    iterating gives them one at a time (the SDK)."""

    def __init__(self, sub: Subscription, body: dict[str, Any], routing: Routing,
                 on_end: Callable[[Routing], None],
                 on_abort: Callable[[Routing], None] | None = None) -> None:
        self._on_end = on_end
        # called once if the stream does not run to its end (failure after the first byte, or
        # the client left), with routing.outcome saying which
        self._on_abort = on_abort
        self._reported = False
        self._sub = sub
        self._routing = routing
        self._include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        self._batches = sub.batches(include_usage=True)
        self._pending: list[dict[str, Any]] = []
        self._closed = False
        self._delivered = False  # a chunk with answer text was handed out: it left the building
        self._finished = False  # a finish_reason came through: only the usage may be missing
        self._chars = 0  # answer characters handed out (an estimate's base without usage)
        self._tail: asyncio.Future[list[dict[str, Any]]] | None = None  # see _read_tail

    @property
    def drained(self) -> bool:
        """True when the last batch handed out was the stream's last (its end may be sent with
        it); the next `batch()` then ends the stream without waiting."""
        return self._sub.drained

    @property
    def finished(self) -> bool:
        """True once the answer's finish_reason went out (the upstream finished it)."""
        return self._finished

    def __aiter__(self) -> Relay:
        return self

    async def __anext__(self) -> dict[str, Any]:
        if not self._pending:
            self._pending = await self.batch()
            self._pending.reverse()
        return self._pending.pop()

    async def batch(self) -> list[dict[str, Any]]:
        """The chunks available now (at least one, waiting for it if need be), for the client;
        StopAsyncIteration at the end."""
        routing = self._routing
        while True:
            try:
                if self._finished and routing.usage is None and not self._sub.drained:
                    batch = await self._read_tail()
                else:
                    batch = await self._batches.__anext__()
            except StopAsyncIteration:
                if not self._closed:
                    self._close()
                    self._settle(complete=True)
                raise
            except Exception as exc:  # noqa: BLE001 - bytes are out: no escalation, report in-band
                self._close()
                if isinstance(exc, TierwiseError):
                    self._abort("upstream_error", exc.status_code)
                    raise
                _, status, reason = classify_failure(exc)
                self._abort("upstream_error", status)
                raise upstream_error(exc, status,
                                     [*routing.escalations, f"{reason}:{routing.tier}"]) from exc
            out = []
            for chunk in batch:
                if chunk.get("usage"):
                    # checked here, once: a malformed usage must not poison the accounting
                    routing.usage = clean_usage(chunk["usage"])
                choices = chunk.get("choices")
                if choices:
                    if routing.ttft_ms is None:
                        routing.ttft_ms = (time.perf_counter() - routing.started) * 1000
                    self._count(choices)
                    out.append(chunk)
                elif self._include_usage:
                    out.append(chunk)
            if out:
                self._delivered = True
                return out

    async def _read_tail(self) -> list[dict[str, Any]]:
        """The next batch after the finish_reason, read in a task of its own: a client that
        leaves now cancels only its wait, not the read, so `aclose` can still take the usage.
        (Only the reads after the answer's end pay for the task.)"""
        if self._tail is None:
            self._tail = asyncio.ensure_future(self._batches.__anext__())
        tail = self._tail
        try:
            return await asyncio.shield(tail)
        finally:
            if tail.done():
                self._tail = None

    def _count(self, choices: Any) -> None:
        """Note the answer's size and end as it goes out (for settling a stream cut short)."""
        for choice in choices if isinstance(choices, list) else ():
            if not isinstance(choice, dict):
                continue
            if choice.get("finish_reason"):
                self._finished = True
            delta = choice.get("delta")
            if isinstance(delta, dict):
                content = delta.get("content")
                if isinstance(content, str):
                    self._chars += len(content)
                elif delta.get("tool_calls") or delta.get("function_call"):
                    self._chars += len(str(delta.get("tool_calls") or delta["function_call"]))

    def _settle(self, complete: bool) -> None:
        """The one place a stream's request is booked: listeners (charged) when an answer went
        out, else failure listeners. `complete`: the stream ran to its end."""
        if self._reported:
            return
        self._reported = True
        routing = self._routing
        if not self._delivered:
            if self._on_abort is not None:
                self._on_abort(routing)
            return
        if routing.usage is None:  # never sent, malformed, or the client left before it
            routing.usage = estimate_usage(routing.decision.n_tokens, self._chars)
            log.info("request %s: no usage from the upstream; charged an estimate of %s",
                     routing.request_id, routing.usage)
        # one waiter of a shared call pays for it (router.coalescing.inflight.claim_bill)
        routing.coalesced = not self._sub.claim_bill(complete)
        self._on_end(routing)

    def _abort(self, outcome: str, status: int) -> None:
        if self._reported:
            return
        self._routing.outcome, self._routing.status = outcome, status
        self._settle(complete=False)

    async def _await_usage(self) -> None:
        """The client left after the finish_reason: read on (bounded) for the usage chunk."""
        routing = self._routing
        with contextlib.suppress(Exception, asyncio.TimeoutError):
            async with asyncio.timeout(USAGE_GRACE_S):
                while routing.usage is None:
                    for chunk in await self._read_tail():
                        if chunk.get("usage"):
                            routing.usage = clean_usage(chunk["usage"])
        tail, self._tail = self._tail, None
        if tail is not None:  # the grace time is over: stop that read, and let it end before
            tail.cancel()     # the batches are closed (an iterator in use cannot be closed)
            await asyncio.wait({tail})

    def _close(self) -> None:
        self._closed = True
        self._sub.close()

    async def aclose(self) -> None:
        if not self._reported and self._sub.drained:
            # every chunk went out, the end with them: a client leaving now missed nothing
            self._close()
            self._settle(complete=True)
        if not self._reported and self._finished and self._routing.usage is None:
            await self._await_usage()
        self._close()
        self._abort("cancelled", 499)  # no-op when the stream ended or failed already
        await self._batches.aclose()  # type: ignore[attr-defined]


class ChunkStream:
    """An async iterator of litellm chunk objects with `.tierwise` (acomplete with stream)."""

    def __init__(self, chunks: AsyncIterator[dict[str, Any]], routing: Routing,
                 chunk_type: type) -> None:
        self._chunks = chunks
        self._type = chunk_type
        self.tierwise = routing

    def __aiter__(self) -> ChunkStream:
        return self

    async def __anext__(self) -> Any:
        return self._type(**await self._chunks.__anext__())

    async def aclose(self) -> None:
        await self._chunks.aclose()  # type: ignore[attr-defined]
