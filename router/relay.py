"""A stream waiter's chunks on their way to the client, and their SDK wrapper.

`Relay` is what `Router.serve` hands out for a stream: it filters the usage chunk the client did
not ask for (tierwise always asks the provider for usage, to charge the cost), records usage on
the Routing, turns a failure after the first byte into an UpstreamError for an in-band report,
and unsubscribes from the shared call when closed. `ChunkStream` is the SDK's view of it.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from router.coalescing.inflight import Subscription
from router.errors import TierwiseError
from router.upstream.calls import classify_failure, upstream_error

if TYPE_CHECKING:
    from router.routing import Routing


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

    @property
    def drained(self) -> bool:
        """True when the last batch handed out was the stream's last (its end may be sent with
        it); the next `batch()` then ends the stream without waiting."""
        return self._sub.drained

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
                batch = await self._batches.__anext__()
            except StopAsyncIteration:
                if not self._closed:
                    self._close()
                    self._reported = True
                    self._on_end(routing)
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
                    routing.usage = chunk["usage"]
                if chunk.get("choices"):
                    if routing.ttft_ms is None:
                        routing.ttft_ms = (time.perf_counter() - routing.started) * 1000
                    out.append(chunk)
                elif self._include_usage:
                    out.append(chunk)
            if out:
                return out

    def _abort(self, outcome: str, status: int) -> None:
        if self._reported:
            return
        self._reported = True
        self._routing.outcome, self._routing.status = outcome, status
        if self._on_abort is not None:
            self._on_abort(self._routing)

    def _close(self) -> None:
        self._closed = True
        self._sub.close()

    async def aclose(self) -> None:
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
