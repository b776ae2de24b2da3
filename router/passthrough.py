"""A light client for tiers whose provider already speaks the OpenAI Chat Completions protocol.

litellm costs ~4 ms of CPU per call (~8 ms streaming) to translate a request that, for OpenAI,
vLLM, and every other OpenAI-compatible server, needs no translation at all. This module sends the
client's body as it is (only ``model`` replaced) over one shared keep-alive connection pool per
event loop (router/httpclient.py: a small HTTP/1.1 client, ~0.1 ms of CPU per call where
aiohttp took ~0.3 ms) and hands back the provider's JSON, or its SSE events as raw bytes.
litellm stays for every other provider, and for prices (its model map) everywhere.

    data = await chat_completion(base_url, api_key, body, timeout=30)        # -> dict
    async for event in stream_chat_completion(base_url, api_key, body, 30):   # -> bytes
        ...                                # b'data: {...}\\n\\n' ... b'data: [DONE]\\n\\n'

    stream = await open_chat_stream(base_url, api_key, body, 30)  # raises before any byte
    async for event in stream: ...                                # then only StreamInterrupted
    stream.usage                                                  # the usage chunk, if any

Failures raise a ``PassthroughError`` carrying what the engine needs to decide on escalation:
``status`` (HTTP status to report), ``reason`` (short tag, e.g. ``rate_limited``),
``retryable`` (would the next tier plausibly succeed) and ``upstream_status``. ``classify(exc)``
returns the same ``(retryable, status, reason)`` tuple as ``router.upstream.classify_failure``.
No retries happen here (tierwise owns failover between tiers), except one: a reused keep-alive
connection that the server had already closed, before a single byte of the answer, is retried
once on a new connection (the request never reached the server).

The API key goes into the Authorization header only. It is never logged, never part of an
exception message (upstream error text is scrubbed of it), never in a repr.
"""

from __future__ import annotations

import asyncio
import json
import json.scanner
import os
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from router import fastjson
from router.httpclient import (
    MAX_BODY_BYTES,
    ConnectFailed,
    Connection,
    ConnectionLost,
    Endpoint,
    HTTPClientError,
    Pool,
    ResponseError,
    request_head,
)
from router.streaming import LastBatch, RawChunk, RawJSON

__all__ = [
    "PassthroughError", "UpstreamStatusError", "RateLimitedError", "ServerError",
    "ContextWindowError", "ClientRequestError", "UpstreamTimeoutError",
    "UpstreamConnectionError", "BadResponseError", "StreamInterrupted",
    "Target", "resolve_target", "chat_completion", "open_chat_stream",
    "stream_chat_completion", "stream_chunks", "ChatStream", "PassthroughClient", "default_client",
    "close_default_client", "classify",
]

_MESSAGE_LIMIT = 500
_DONE = b"data: [DONE]"
# json.loads minus its Python layers (bytes detection, decode, raw_decode): the C scanner
_scan_json = json.scanner.make_scanner(json.JSONDecoder())  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# Errors


class PassthroughError(Exception):
    """A call through the pass-through failed. Not a TierwiseError: the engine classifies it."""

    status = 502
    reason = "upstream_error"
    retryable = True

    def __init__(self, message: str, *, upstream_status: int | None = None,
                 status: int | None = None, reason: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.upstream_status = upstream_status
        if status is not None:
            self.status = status
        if reason is not None:
            self.reason = reason

    # aliases matching litellm/OpenAI exceptions, so existing code reading them keeps working
    @property
    def status_code(self) -> int:
        return self.upstream_status or self.status


class UpstreamStatusError(PassthroughError):
    """The upstream answered with an HTTP error status (see ``upstream_status``)."""

    def __init__(self, message: str, *, upstream_status: int, code: str | None = None,
                 body: Any = None) -> None:
        super().__init__(message, upstream_status=upstream_status)
        self.code = code
        self.body = body  # the upstream's parsed error JSON (scrubbed of the key), or None


class RateLimitedError(UpstreamStatusError):
    status = 429
    reason = "rate_limited"
    retryable = True


class ServerError(UpstreamStatusError):
    """5xx from the upstream; reported to the client as 502 (the fault is upstream)."""

    status = 502
    retryable = True

    def __init__(self, message: str, *, upstream_status: int, code: str | None = None,
                 body: Any = None) -> None:
        super().__init__(message, upstream_status=upstream_status, code=code, body=body)
        self.reason = f"upstream_{upstream_status}"


class ContextWindowError(UpstreamStatusError):
    """400 context_length_exceeded: a tier with a larger window may take it."""

    status = 400
    reason = "context_window"
    retryable = True


class ClientRequestError(UpstreamStatusError):
    """Another 4xx (400, 401, 403, 404, 422...): the next tier would fail the same way,
    except 408 (request timeout), which is retryable."""

    retryable = False

    def __init__(self, message: str, *, upstream_status: int, code: str | None = None,
                 body: Any = None) -> None:
        super().__init__(message, upstream_status=upstream_status, code=code, body=body)
        self.status = upstream_status
        self.reason = f"upstream_{upstream_status}"
        self.retryable = upstream_status == 408


class UpstreamTimeoutError(PassthroughError):
    status = 504
    reason = "timeout"
    retryable = True


class UpstreamConnectionError(PassthroughError):
    """Connection refused/reset before a response, DNS failure, TLS failure."""

    status = 502
    reason = "connection_error"
    retryable = True


class BadResponseError(PassthroughError):
    """The upstream answered 2xx with a body that is not the JSON object expected."""

    status = 502
    reason = "bad_response"
    retryable = True


class StreamInterrupted(PassthroughError):
    """The stream broke after it started (reset, truncated chunk, read timeout).

    ``events`` is how many events had already been yielded: if any reached the client, the
    request cannot move to another tier any more; report the failure in-band.
    """

    status = 502
    reason = "stream_interrupted"

    def __init__(self, message: str, *, events: int, timed_out: bool = False) -> None:
        super().__init__(message, status=504 if timed_out else None,
                         reason="stream_timeout" if timed_out else None)
        self.events = events
        self.retryable = events == 0


def classify(exc: BaseException) -> tuple[bool, int, str]:
    """(retryable on the next tier, HTTP status to report, short reason), like
    ``router.upstream.classify_failure`` does for litellm exceptions."""
    if isinstance(exc, PassthroughError):
        return exc.retryable, exc.status, exc.reason
    if isinstance(exc, asyncio.TimeoutError):
        return True, 504, "timeout"
    return False, 502, "upstream_error"


def _scrub(text: str, api_key: str | None) -> str:
    if api_key and len(api_key) >= 4 and api_key in text:
        text = text.replace(api_key, "***")
    return text[:_MESSAGE_LIMIT]


def _scrub_obj(obj: Any, api_key: str | None) -> Any:
    if not api_key:
        return obj
    if isinstance(obj, str):
        return obj.replace(api_key, "***") if api_key in obj else obj
    if isinstance(obj, dict):
        return {k: _scrub_obj(v, api_key) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_scrub_obj(v, api_key) for v in obj]
    return obj


def _status_error(status: int, raw: bytes, api_key: str | None) -> UpstreamStatusError:
    """The exception for an HTTP error answer, with the upstream's message (scrubbed)."""
    body: Any = None
    message = ""
    code: str | None = None
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        message = raw[:_MESSAGE_LIMIT].decode("utf-8", "replace").strip()
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict):
            message = str(err.get("message") or "")
            c = err.get("code") or err.get("type")
            code = str(c) if c is not None else None
        elif isinstance(err, str):
            message = err
        body = _scrub_obj(body, api_key)
    message = _scrub(message or f"HTTP {status}", api_key)
    text = f"upstream answered HTTP {status}: {message}"
    if status == 429:
        return RateLimitedError(text, upstream_status=status, code=code, body=body)
    if status >= 500:
        return ServerError(text, upstream_status=status, code=code, body=body)
    low = message.lower()
    if status in (400, 413) and (code == "context_length_exceeded" or "context length" in low
                                 or "context_length_exceeded" in low
                                 or "maximum context" in low):
        return ContextWindowError(text, upstream_status=status, code=code, body=body)
    return ClientRequestError(text, upstream_status=status, code=code, body=body)


def _transport_error(exc: BaseException, url: str) -> PassthroughError:
    if isinstance(exc, TimeoutError):
        return UpstreamTimeoutError(f"upstream timed out: {url}")
    if isinstance(exc, ResponseError):
        return BadResponseError(f"upstream answer unreadable ({exc}): {url}")
    return UpstreamConnectionError(f"cannot reach upstream {url}: {exc}")


# ---------------------------------------------------------------------------------------------
# Which tiers can go through here


@dataclass(frozen=True)
class Target:
    """Where a pass-through call goes: base URL (``.../v1``; it may carry a ``?query`` that is
    kept after ``/chat/completions``), the model name to send, and the header the API key goes
    in (``authorization``: ``Bearer KEY``; ``api-key``: Azure OpenAI's ``api-key: KEY``)."""

    base_url: str
    model: str
    key_header: str = "authorization"


OPENAI_BASE_URL = "https://api.openai.com/v1"
# litellm provider prefixes whose wire protocol is OpenAI's Chat Completions as it is.
_OPENAI_PREFIXES = ("openai/", "hosted_vllm/", "text-completion-openai/")
_BARE_OPENAI = ("gpt-", "o1", "o3", "o4", "chatgpt-")


def resolve_target(model: str, api_base: str | None) -> Target | None:
    """The pass-through target of a tier's litellm model string, or None to keep litellm.

    ``openai/X`` and ``hosted_vllm/X`` (with ``api_base``, or OpenAI's own URL for openai/)
    and bare OpenAI model names go through; so does ``azure/DEPLOYMENT`` when its endpoint
    (``api_base`` or AZURE_API_BASE) and AZURE_API_VERSION are known, the two things litellm
    reads too (without a version litellm's own default applies, so the call stays there). Every
    other provider prefix stays on litellm (it translates those protocols).
    """
    base = api_base.rstrip("/") if api_base else None
    if model.startswith("azure/"):
        base = base or (os.environ.get("AZURE_API_BASE") or "").rstrip("/") or None
        version = os.environ.get("AZURE_API_VERSION")
        deployment = model[len("azure/"):]
        if not (base and version and deployment):
            return None
        return Target(f"{base}/openai/deployments/{quote(deployment, safe='')}"
                      f"?api-version={quote(version, safe='')}", deployment, "api-key")
    for prefix in _OPENAI_PREFIXES:
        if model.startswith(prefix):
            name = model[len(prefix):]
            if prefix == "hosted_vllm/" and not base:
                return None
            return Target(base or OPENAI_BASE_URL, name)
    if "/" not in model and model.startswith(_BARE_OPENAI):
        return Target(base or OPENAI_BASE_URL, model)
    return None


# ---------------------------------------------------------------------------------------------
# Client


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
        self.status = conn.status
        self._headers: Any = conn.headers  # decoded on first use (see `headers`)
        self.usage: dict[str, Any] | None = None
        self.done = False
        self.events = 0
        self._released = False
        self._buf = b""
        self._loop = asyncio.get_running_loop()

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
                chunk = conn.take_body()
                if not chunk:
                    if conn.complete:
                        break
                    if conn.error is not None:
                        raise StreamInterrupted(
                            f"upstream stream broke after {self.events} events: "
                            f"{type(conn.error).__name__}", events=self.events)
                    try:
                        # every gap between chunks is bounded by the timeout
                        await conn.wait(self._loop, timeout=self._timeout)
                    except TimeoutError:
                        raise StreamInterrupted(
                            f"upstream stream stalled for {self._timeout:g} s: {self._url}",
                            events=self.events, timed_out=True) from None
                    continue
                buf = self._buf + chunk if self._buf else chunk
                if b"\r" in buf:
                    buf = buf.replace(b"\r\n", b"\n")
                events = []
                start = 0
                while True:
                    cut = buf.find(b"\n\n", start)
                    if cut < 0:
                        break
                    event = buf[start:cut + 2]
                    start = cut + 2
                    if event.startswith(_DONE):
                        self.done = True
                    events.append(event)
                self._buf = buf[start:]
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
        """The stream's chunks as dicts (the shape router.upstream.Upstream.astream yields):
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
        of them) is scanned by json's C scanner directly, without json.loads' Python layers
        (~2x faster per chunk); anything else goes through `_parse`."""
        out: list[dict[str, Any]] = []
        for event in events:
            if event.startswith(b"data: {") and event.count(b"\n") == 2:
                try:
                    text = event[6:-2].decode()
                    chunk, end = _scan_json(text, 0)
                    if end != len(text) and text[end:].strip():
                        raise ValueError("extra data")
                except (ValueError, StopIteration, UnicodeDecodeError, RecursionError):
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


class PassthroughClient:
    """A pool of keep-alive connections to OpenAI-protocol upstreams (router/httpclient.py).
    Create and use it inside one event loop."""

    def __init__(self, *, limit: int = 1000, keepalive_timeout: float = 30.0,
                 connect_timeout: float = 10.0) -> None:
        self._pool = Pool(limit=limit, keepalive_timeout=keepalive_timeout,
                          connect_timeout=connect_timeout)
        self._endpoints: dict[str, Endpoint] = {}
        self._heads: dict[tuple[str, str | None, bool, str], bytes] = {}

    @property
    def closed(self) -> bool:
        return self._pool.closed

    @property
    def connections_opened(self) -> int:
        """Connections opened so far (fewer than calls: connections are reused)."""
        return self._pool.opened

    @property
    def connections_in_use(self) -> int:
        """Connections serving a call right now (0 once every answer was read or closed)."""
        return self._pool.in_use

    def _request(self, base_url: str, api_key: str | None, body: Mapping[str, Any],
                 model: str | None, extra_headers: Mapping[str, str] | None, stream: bool,
                 key_header: str = "authorization") -> tuple[Endpoint, bytes, bytes]:
        """(endpoint, request head, body bytes); PassthroughError for a bad URL or header."""
        endpoint = self._endpoints.get(base_url)
        if endpoint is None:
            path, sep, query = base_url.partition("?")
            url = path.rstrip("/") + "/chat/completions" + sep + query
            try:
                endpoint = Endpoint.parse(url)
            except ConnectFailed:
                raise UpstreamConnectionError(f"invalid upstream URL: {url}",
                                              reason="invalid_url") from None
            if len(self._endpoints) < 1000:
                self._endpoints[base_url] = endpoint
        cache_key = (base_url, api_key, stream, key_header)
        head = self._heads.get(cache_key) if extra_headers is None else None
        if head is None:
            headers = {"User-Agent": "tierwise", "Content-Type": "application/json",
                       "Accept-Encoding": "identity"}
            if stream:
                headers["Accept"] = "text/event-stream"
            if api_key and key_header == "api-key":
                headers["api-key"] = api_key
            elif api_key:
                headers["Authorization"] = f"Bearer {api_key}"
            if extra_headers:
                headers.update(extra_headers)
            try:
                head = request_head(endpoint, headers)
            except (ValueError, UnicodeEncodeError):  # a key or header with a line break
                raise UpstreamConnectionError(
                    f"a request header for {endpoint.url} has an invalid character (check the "
                    "API key)", reason="invalid_header") from None
            if extra_headers is None and len(self._heads) < 1000:
                self._heads[cache_key] = head
        if model is not None:
            body = {**body, "model": model}
        return endpoint, head, fastjson.dumps(body)

    async def _send(self, endpoint: Endpoint, head: bytes, data: bytes,
                    deadline: float | None, timeout: float,
                    loop: asyncio.AbstractEventLoop) -> Connection:
        """Send the request and wait for the response head (non-stream calls: the whole
        response) until `deadline`, or `timeout` between reads. A reused connection the
        server had closed before answering a byte is retried once on a new one."""
        for attempt in (0, 1):
            conn = await self._pool.acquire(
                endpoint, deadline if deadline is not None else loop.time() + timeout, loop)
            try:
                conn.send(head, data)
                while not (conn.complete if deadline is not None else conn.head_done):
                    if conn.error is not None:
                        raise conn.error
                    if conn.buffered > MAX_BODY_BYTES:
                        raise ResponseError(f"answer larger than {MAX_BODY_BYTES} bytes")
                    await conn.wait(loop, deadline=deadline,
                                    timeout=None if deadline is not None else timeout)
            except ConnectionLost as exc:
                conn.close()
                if attempt == 0 and not exc.got_bytes and conn.served:
                    continue  # a stale keep-alive connection: the server never saw the request
                raise
            except BaseException:
                conn.close()  # timeout, cancellation: the answer is unread, drop the connection
                raise
            return conn
        raise AssertionError("unreachable")

    @staticmethod
    async def _rest(conn: Connection, timeout: float, loop: asyncio.AbstractEventLoop) -> bytes:
        """The rest of a response's body (an error answer on the stream path)."""
        try:
            while not conn.complete:
                if conn.error is not None:
                    raise conn.error
                await conn.wait(loop, timeout=timeout)
            return conn.take_body()
        finally:
            conn.release()

    async def chat_completion(self, base_url: str, api_key: str | None,
                              body: Mapping[str, Any], timeout: float, *,
                              model: str | None = None,
                              extra_headers: Mapping[str, str] | None = None,
                              key_header: str = "authorization") -> dict[str, Any]:
        """POST a non-streaming chat request; the upstream's JSON object, or PassthroughError."""
        endpoint, head, data = self._request(base_url, api_key, body, model, extra_headers,
                                             False, key_header)
        url = endpoint.url
        loop = asyncio.get_running_loop()
        try:
            conn = await self._send(endpoint, head, data, loop.time() + timeout, timeout, loop)
        except (TimeoutError, HTTPClientError) as exc:
            raise _transport_error(exc, url) from None
        status = conn.status
        raw = conn.take_body()
        conn.release()
        if status >= 400:
            raise _status_error(status, raw, api_key)
        try:
            result = fastjson.loads(raw)
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise BadResponseError(
                f"upstream answered HTTP {status} with a body that is not JSON "
                f"({len(raw)} bytes): {url}") from None
        if not isinstance(result, dict):
            raise BadResponseError(f"upstream answered HTTP {status} with JSON that is not an "
                                   f"object: {url}")
        if "error" in result and "choices" not in result:
            raise _status_error(502, raw, api_key)
        return RawJSON(result, raw)

    async def open_chat_stream(self, base_url: str, api_key: str | None,
                               body: Mapping[str, Any], timeout: float, *,
                               model: str | None = None,
                               extra_headers: Mapping[str, str] | None = None,
                               key_header: str = "authorization") -> ChatStream:
        """POST a streaming chat request (``stream`` forced true) and wait for the status line.

        Raises PassthroughError before any event (so the engine may still escalate); the
        returned ChatStream raises only StreamInterrupted. ``timeout`` bounds the wait for the
        response head and every gap between chunks.
        """
        if body.get("stream") is not True:
            body = {**body, "stream": True}
        endpoint, head, data = self._request(base_url, api_key, body, model, extra_headers,
                                             True, key_header)
        url = endpoint.url
        loop = asyncio.get_running_loop()
        try:
            conn = await self._send(endpoint, head, data, None, timeout, loop)
        except (TimeoutError, HTTPClientError) as exc:
            raise _transport_error(exc, url) from None
        if conn.status >= 400:
            try:
                raw = await self._rest(conn, timeout, loop)
            except (TimeoutError, HTTPClientError):
                raw = b""
            raise _status_error(conn.status, raw, api_key)
        ctype = (conn.header(b"content-type") or b"").decode("latin-1")
        if "json" in ctype and "event-stream" not in ctype:
            # some servers answer an error object with 200 instead of a stream
            try:
                raw = await self._rest(conn, timeout, loop)
            except (TimeoutError, HTTPClientError) as exc:
                raise _transport_error(exc, url) from None
            raise _status_error(502, raw, api_key)
        return ChatStream(conn, url, timeout)

    async def stream_chat_completion(self, base_url: str, api_key: str | None,
                                     body: Mapping[str, Any], timeout: float, *,
                                     model: str | None = None,
                                     extra_headers: Mapping[str, str] | None = None,
                                     key_header: str = "authorization"
                                     ) -> AsyncIterator[bytes]:
        """The SSE events of a streaming chat request, as raw bytes (see ChatStream)."""
        stream = await self.open_chat_stream(base_url, api_key, body, timeout, model=model,
                                             extra_headers=extra_headers, key_header=key_header)
        async with stream:
            async for event in stream:
                yield event

    async def aclose(self) -> None:
        await self._pool.aclose()

    def __repr__(self) -> str:
        return f"PassthroughClient(closed={self.closed})"


# One client per event loop: its connections (asyncio transports) belong to the loop they were
# created in.
_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, PassthroughClient] = (
    weakref.WeakKeyDictionary())


# the last (loop, client) pair handed out, nearly always the one asked for next (weak: a
# finished loop and its connections are not kept alive by it)
_last: tuple[Any, Any] = (lambda: None, lambda: None)


def default_client() -> PassthroughClient:
    """This event loop's shared client (created on first use)."""
    global _last
    loop = asyncio.get_running_loop()
    if _last[0]() is loop:
        client = _last[1]()
        if client is not None and not client.closed:
            return client  # type: ignore[no-any-return]
    client = _clients.get(loop)
    if client is None or client.closed:
        client = _clients[loop] = PassthroughClient()
    _last = (weakref.ref(loop), weakref.ref(client))
    return client


async def close_default_client() -> None:
    """Close this loop's shared client (call from the app's shutdown/lifespan)."""
    client = _clients.pop(asyncio.get_running_loop(), None)
    if client is not None:
        await client.aclose()


async def chat_completion(base_url: str, api_key: str | None, body: dict[str, Any],
                          timeout: float, **kwargs: Any) -> dict[str, Any]:
    """Non-streaming call on the loop's shared client (see PassthroughClient.chat_completion)."""
    return await default_client().chat_completion(base_url, api_key, body, timeout, **kwargs)


async def open_chat_stream(base_url: str, api_key: str | None, body: dict[str, Any],
                           timeout: float, **kwargs: Any) -> ChatStream:
    """Open a stream on the loop's shared client (see PassthroughClient.open_chat_stream)."""
    return await default_client().open_chat_stream(base_url, api_key, body, timeout, **kwargs)


async def stream_chat_completion(base_url: str, api_key: str | None, body: dict[str, Any],
                                 timeout: float, **kwargs: Any) -> AsyncIterator[bytes]:
    """Raw SSE events of a streaming call on the loop's shared client."""
    async for event in default_client().stream_chat_completion(base_url, api_key, body,
                                                               timeout, **kwargs):
        yield event


async def stream_chunks(base_url: str, api_key: str | None, body: dict[str, Any],
                        timeout: float, **kwargs: Any) -> AsyncIterator[dict[str, Any]]:
    """Open a stream (errors raise on the first ``__anext__``, before any chunk) and yield its
    chunks as dicts; the connection is released when the generator ends or is closed."""
    stream = await default_client().open_chat_stream(base_url, api_key, body, timeout, **kwargs)
    async with stream:
        async for chunk in stream.chunks():
            yield chunk
