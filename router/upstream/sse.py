"""A pass-through stream: an upstream's SSE answer relayed as its own bytes, checked as it goes.

``ChatStream`` reads the events of one open streaming answer (kept as the upstream's bytes,
parsed only as far as the checks and the usage need); ``CheckedBatches`` hands them on one list
per network read and turns a stream that just stops into ``StreamInterrupted``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from router.streaming import LastBatch, RawChunk
from router.upstream import fastjson
from router.upstream.connection import Connection
from router.upstream.failures import StreamInterrupted

_DONE = b"data: [DONE]"
# The largest SSE event (one chunk of an answer) read from an upstream before the stream is
# refused as broken: a line that never ends must not grow memory and CPU without bound.
MAX_EVENT_BYTES = 8 * 1024 * 1024


class ChatStream:
    """An open streaming answer: async-iterate it for SSE events as bytes (each ends ``\\n\\n``).

    The events are the upstream's own bytes, passed through (``\\r\\n`` line ends normalised).
    ``usage`` holds the usage object of the stream's usage chunk once seen; ``done`` is True
    once ``data: [DONE]`` has passed. Leaving the loop early: call ``close()`` (or use
    ``async with``) to release the connection. ``headers`` maps lower-case names to values.
    """

    def __init__(self, conn: Connection, url: str, timeout: float) -> None:
        conn.streaming = True
        self._conn = conn
        self._url = url
        self._timeout = timeout
        self._deadline: float | None = None  # loop time by which the whole call must end
        self.status = conn.status
        self._headers: Any = conn.headers  # decoded on first use (see `headers`)
        self.usage: dict[str, Any] | None = None
        self.done = False
        self.events = 0
        self._released = False
        self._buf = b""
        self._loop = asyncio.get_running_loop()

    def limit_call(self, seconds: float) -> ChatStream:
        """End the stream (StreamInterrupted, timed out) once it has run `seconds` in all,
        however steadily events keep coming (policy ``max_call_s``)."""
        self._deadline = self._loop.time() + seconds
        return self

    @property
    def headers(self) -> dict[str, str]:
        """The response headers, lower-case names (decoded when first asked for)."""
        if isinstance(self._headers, list):
            self._headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                             for k, v in self._headers}
        return self._headers  # type: ignore[no-any-return]

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._events()

    async def _events(self) -> AsyncGenerator[bytes, None]:
        reads = self._reads()
        try:
            async for events in reads:
                for event in events:
                    self._note_usage(event)
                    yield event
        finally:
            await reads.aclose()

    async def batches(self) -> AsyncIterator[bytes]:
        """Like iterating the stream, but every event that arrived in one network read comes
        as one bytes object: a relay then makes one write (one syscall, one wake-up of the
        client) per read instead of one per event."""
        reads = self._reads()
        try:
            async for events in reads:
                for event in events:
                    self._note_usage(event)
                yield events[0] if len(events) == 1 else b"".join(events)
        finally:
            await reads.aclose()

    async def _reads(self) -> AsyncGenerator[list[bytes], None]:
        """The complete events of each network read (reads with none are skipped)."""
        try:
            while (events := await self._read_events()) is not None:
                yield events
        finally:
            self._release()

    async def _read_events(self) -> list[bytes] | None:
        """The complete events of the next network read that has any; None at the end. The
        connection is released at the end and on any failure (cancellation included)."""
        if self._released:
            return None
        conn = self._conn
        try:
            while True:
                wait = self._timeout
                if self._deadline is not None:
                    left = self._deadline - self._loop.time()
                    if left <= 0:
                        raise StreamInterrupted(
                            f"upstream call ran past its limit (max_call_s): {self._url}",
                            events=self.events, timed_out=True)
                    wait = min(wait, left)
                chunk = conn.take_body()
                if not chunk:
                    if conn.complete:
                        break
                    if conn.error is not None:
                        raise StreamInterrupted(
                            f"upstream stream broke after {self.events} events: "
                            f"{type(conn.error).__name__}", events=self.events)
                    try:
                        # every gap between chunks is bounded by the timeout, the whole call
                        # by the deadline
                        await conn.wait(self._loop, timeout=wait)
                    except TimeoutError:
                        if wait < self._timeout:
                            continue  # the deadline: reported at the top of the loop
                        raise StreamInterrupted(
                            f"upstream stream stalled for {self._timeout:g} s: {self._url}",
                            events=self.events, timed_out=True) from None
                    continue
                # \r\n normalised in the new bytes only (a pair split across reads too), and
                # the search for an event's end starts where the last one stopped: a long event
                # costs linear time, not a rescan of the whole buffer per read
                if b"\r" in chunk:
                    if chunk.startswith(b"\n") and self._buf.endswith(b"\r"):
                        self._buf = self._buf[:-1]
                    chunk = chunk.replace(b"\r\n", b"\n")
                scan = max(len(self._buf) - 1, 0)
                buf = self._buf + chunk if self._buf else chunk
                events = []
                start = 0
                while True:
                    cut = buf.find(b"\n\n", max(start, scan))
                    if cut < 0:
                        break
                    event = buf[start:cut + 2]
                    start = cut + 2
                    if event.startswith(_DONE):
                        self.done = True
                    events.append(event)
                self._buf = buf[start:]
                if len(self._buf) > MAX_EVENT_BYTES:
                    # one event larger than any answer chunk: refuse it instead of buffering
                    # without bound (a stream's events are small; whole answers are capped too)
                    exc = StreamInterrupted(
                        f"upstream sent an event over {MAX_EVENT_BYTES} bytes after "
                        f"{self.events} events", events=self.events)
                    exc.reason = "event_too_large"
                    raise exc
                if events:
                    self.events += len(events)
                    return events
            if self._buf.strip():
                raise StreamInterrupted(
                    f"upstream stream ended inside an event after {self.events} events",
                    events=self.events)
        except BaseException:
            self._release()
            raise
        self._release()
        return None

    async def next_batch(self) -> list[dict[str, Any]] | None:
        """The chunks of the next network read that has any (see `chunks`); None at the end.
        A coroutine, not an async generator: the pass-through's stream path awaits this."""
        while True:
            events = await self._read_events()
            if events is None:
                return None
            batch = self._parse_all(events)
            if batch:
                return batch

    def checked_batches(self) -> CheckedBatches:
        """`next_batch` as an async iterator that also tells a cut stream from a whole one."""
        return CheckedBatches(self)

    async def chunks(self) -> AsyncIterator[dict[str, Any]]:
        """The stream's chunks as dicts (the shape router.upstream.calls.Upstream.astream yields):
        ``data:`` events parsed, comments and ``[DONE]`` skipped. An event that is not JSON
        raises StreamInterrupted (reason ``bad_chunk``). A chunk from a plain one-line
        ``data: {...}`` event is a RawChunk that keeps those bytes, for relaying as they are."""
        try:
            while (batch := await self.next_batch()) is not None:
                for chunk in batch:
                    yield chunk
        finally:  # a cancelled consumer gives the connection back now, not at GC time
            self._release()

    async def chunk_batches(self) -> AsyncIterator[list[dict[str, Any]]]:
        """Like `chunks`, but the chunks of one network read come as one list."""
        try:
            while (batch := await self.next_batch()) is not None:
                yield batch
        finally:  # a cancelled consumer gives the connection back now, not at GC time
            self._release()

    def _parse_all(self, events: list[bytes]) -> list[dict[str, Any]]:
        """The chunks of one read's events. A plain one-line ``data: {...}`` event (nearly all
        of them) is parsed by router.upstream.fastjson (json's C scanner without json.loads' Python
        layers, ~2x faster per chunk); anything else goes through `_parse`."""
        out: list[dict[str, Any]] = []
        for event in events:
            if event.startswith(b"data: {") and event.count(b"\n") == 2:
                try:
                    chunk = fastjson.loads(event[6:-2])
                except (ValueError, RecursionError):
                    self._parse(event, out)  # raises StreamInterrupted (bad_chunk)
                    continue
                if chunk.get("usage"):
                    self.usage = chunk["usage"]
                out.append(RawChunk(chunk, event))
            elif not event.startswith(_DONE):
                self._parse(event, out)
        return out

    def _parse(self, event: bytes, out: list[dict[str, Any]]) -> None:
        single = event.startswith(b"data:") and event.count(b"\n") == 2  # "data: {...}\n\n"
        for line in event.split(b"\n"):
            if not line.startswith(b"data:"):
                continue
            payload = line[5:].strip()
            if payload == b"[DONE]":
                continue
            try:
                chunk = json.loads(payload)
            except (ValueError, UnicodeDecodeError):
                exc = StreamInterrupted(
                    f"upstream sent an event that is not JSON after {self.events - 1} events",
                    events=self.events - 1)
                exc.reason = "bad_chunk"
                raise exc from None
            if isinstance(chunk, dict):
                if chunk.get("usage"):
                    self.usage = chunk["usage"]
                out.append(RawChunk(chunk, event) if single else chunk)

    def _note_usage(self, event: bytes) -> None:
        if b'"usage"' not in event or b'"usage":null' in event or b'"usage": null' in event:
            return
        for line in event.split(b"\n"):
            if line.startswith(b"data:"):
                try:
                    usage = json.loads(line[5:]).get("usage")
                except (ValueError, AttributeError):
                    return
                if isinstance(usage, dict):
                    self.usage = usage

    def _release(self) -> None:
        if not self._released:
            self._released = True
            self._conn.release()  # back to the pool if the answer was read whole, else closed

    async def close(self) -> None:
        self._release()

    def __del__(self) -> None:
        # dropped unfinished without close() (an abandoned SDK stream): the connection must
        # not stay checked out of the pool (async generators got this from asyncio's hooks)
        if not getattr(self, "_released", True):
            try:
                self._release()
            except Exception:  # noqa: BLE001 - the loop may be closed already
                pass

    async def __aenter__(self) -> ChatStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class CheckedBatches:
    """A pass-through stream's chunks, one list per network read (router.streaming.LastBatch
    when [DONE] came with them: the end can go out in the same write). A stream that just
    stops (connection closed) with neither a finish_reason nor [DONE] was cut, and must not
    look like a complete answer: StreamInterrupted then. A plain async iterator, not an async
    generator (asyncio registers and finalizes each of those; this is on every stream)."""

    __slots__ = ("_stream", "_finished", "_ended")

    def __init__(self, stream: ChatStream) -> None:
        self._stream = stream
        self._finished = False  # some chunk carried a finish_reason
        self._ended = False

    def __aiter__(self) -> CheckedBatches:
        return self

    async def __anext__(self) -> list[dict[str, Any]]:
        if self._ended:
            raise StopAsyncIteration
        stream = self._stream
        try:
            batch = await stream.next_batch()
        except BaseException:
            self._ended = True
            raise
        if batch is None:
            self._ended = True
            if not (self._finished or stream.done):
                raise StreamInterrupted(f"upstream stream ended after {stream.events} events "
                                        "without a finish_reason or [DONE]",
                                        events=stream.events)
            raise StopAsyncIteration
        if not self._finished:
            self._finished = any(c.get("finish_reason") for chunk in batch
                                 for c in chunk.get("choices") or ())
        return LastBatch(batch) if stream.done else batch

    async def aclose(self) -> None:
        """Leave early: the connection is released (closed, as the answer is unread)."""
        self._ended = True
        self._stream._release()
