"""A light client for tiers whose provider already speaks the OpenAI Chat Completions protocol.

litellm costs ~4 ms of CPU per call (~8 ms streaming) to translate a request that, for OpenAI,
vLLM, and every other OpenAI-compatible server, needs no translation at all. This module sends the
client's body as it is (only ``model`` replaced) over one shared ``aiohttp.ClientSession`` per
event loop (keep-alive connection pool, per-call timeouts) and hands back the provider's JSON, or
its SSE events as raw bytes, for ~0.2 ms of CPU per call (bench/PROFILE.md). litellm stays for
every other provider, and for prices (its model map) everywhere.

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
No retries happen here: tierwise owns failover between tiers.

The API key goes into the Authorization header only. It is never logged, never part of an
exception message (upstream error text is scrubbed of it), never in a repr.
"""

from __future__ import annotations

import asyncio
import json
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

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
    if isinstance(exc, (asyncio.TimeoutError, aiohttp.ServerTimeoutError)):
        return UpstreamTimeoutError(f"upstream timed out: {url}")
    if isinstance(exc, aiohttp.InvalidURL):
        return UpstreamConnectionError(f"invalid upstream URL: {url}", reason="invalid_url")
    return UpstreamConnectionError(f"cannot reach upstream {url}: {type(exc).__name__}")


# ---------------------------------------------------------------------------------------------
# Which tiers can go through here


@dataclass(frozen=True)
class Target:
    """Where a pass-through call goes: base URL (``.../v1``) and the model name to send."""

    base_url: str
    model: str


OPENAI_BASE_URL = "https://api.openai.com/v1"
# litellm provider prefixes whose wire protocol is OpenAI's Chat Completions as it is.
_OPENAI_PREFIXES = ("openai/", "hosted_vllm/", "text-completion-openai/")
_BARE_OPENAI = ("gpt-", "o1", "o3", "o4", "chatgpt-")


def resolve_target(model: str, api_base: str | None) -> Target | None:
    """The pass-through target of a tier's litellm model string, or None to keep litellm.

    ``openai/X`` and ``hosted_vllm/X`` (with ``api_base``, or OpenAI's own URL for openai/)
    and bare OpenAI model names go through; every other provider prefix stays on litellm
    (it translates those protocols). Azure needs its api-key header and api-version: later.
    """
    base = api_base.rstrip("/") if api_base else None
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
    ``async with``) to release the connection.
    """

    def __init__(self, response: aiohttp.ClientResponse, url: str, timeout: float) -> None:
        self._response = response
        self._url = url
        self._timeout = timeout
        self.status = response.status
        self.headers = response.headers
        self.usage: dict[str, Any] | None = None
        self.done = False
        self.events = 0

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._events()

    async def _events(self) -> AsyncGenerator[bytes, None]:
        reads = self._reads()
        try:
            async for events in reads:
                for event in events:
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
                yield events[0] if len(events) == 1 else b"".join(events)
        finally:
            await reads.aclose()

    async def _reads(self) -> AsyncGenerator[list[bytes], None]:
        """The complete events of each network read (reads with none are skipped)."""
        buf = b""
        content = self._response.content
        try:
            while True:
                try:
                    # the session's sock_read timeout bounds every gap between chunks
                    chunk = await content.readany()
                except (TimeoutError, aiohttp.ServerTimeoutError):
                    raise StreamInterrupted(
                        f"upstream stream stalled for {self._timeout:g} s: {self._url}",
                        events=self.events, timed_out=True) from None
                except (aiohttp.ClientError, ConnectionError) as exc:
                    raise StreamInterrupted(
                        f"upstream stream broke after {self.events} events: "
                        f"{type(exc).__name__}", events=self.events) from None
                if not chunk:
                    break
                buf += chunk
                if b"\r" in buf:
                    buf = buf.replace(b"\r\n", b"\n")
                events = []
                while True:
                    cut = buf.find(b"\n\n")
                    if cut < 0:
                        break
                    event, buf = buf[:cut + 2], buf[cut + 2:]
                    if event.startswith(_DONE):
                        self.done = True
                    elif b'"usage"' in event:
                        self._note_usage(event)
                    events.append(event)
                if events:
                    self.events += len(events)
                    yield events
            if buf.strip():
                raise StreamInterrupted(
                    f"upstream stream ended inside an event after {self.events} events",
                    events=self.events)
        finally:
            self._response.release()

    async def chunks(self) -> AsyncIterator[dict[str, Any]]:
        """The stream's chunks as dicts (the shape router.upstream.Upstream.astream yields):
        ``data:`` events parsed, comments and ``[DONE]`` skipped. An event that is not JSON
        raises StreamInterrupted (reason ``bad_chunk``)."""
        events = self._events()
        try:
            async for event in events:
                for chunk in self._parse(event):
                    yield chunk
        finally:  # a cancelled consumer gives the connection back now, not at GC time
            await events.aclose()

    def _parse(self, event: bytes) -> list[dict[str, Any]]:
        out = []
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
                out.append(chunk)
        return out

    def _note_usage(self, event: bytes) -> None:
        for line in event.split(b"\n"):
            if line.startswith(b"data:"):
                try:
                    usage = json.loads(line[5:]).get("usage")
                except (ValueError, AttributeError):
                    return
                if isinstance(usage, dict):
                    self.usage = usage

    async def close(self) -> None:
        self._response.release()

    async def __aenter__(self) -> ChatStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class PassthroughClient:
    """One pooled aiohttp session for OpenAI-protocol upstreams (create it inside the loop)."""

    def __init__(self, *, limit: int = 1000, limit_per_host: int = 0,
                 keepalive_timeout: float = 30.0, connect_timeout: float = 10.0) -> None:
        connector = aiohttp.TCPConnector(limit=limit, limit_per_host=limit_per_host,
                                         keepalive_timeout=keepalive_timeout,
                                         ttl_dns_cache=300, enable_cleanup_closed=True)
        self._connect_timeout = connect_timeout
        self.session = aiohttp.ClientSession(
            connector=connector, json_serialize=json.dumps, auto_decompress=True,
            skip_auto_headers=("User-Agent",), headers={"User-Agent": "tierwise"})

    @staticmethod
    def _request(base_url: str, api_key: str | None, body: Mapping[str, Any],
                 model: str | None, extra_headers: Mapping[str, str] | None
                 ) -> tuple[str, bytes, dict[str, str]]:
        url = base_url.rstrip("/") + "/chat/completions"
        if model is not None:
            body = {**body, "model": model}
        data = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
        headers = {"Content-Type": "application/json"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        if extra_headers:
            headers.update(extra_headers)
        return url, data, headers

    async def chat_completion(self, base_url: str, api_key: str | None,
                              body: Mapping[str, Any], timeout: float, *,
                              model: str | None = None,
                              extra_headers: Mapping[str, str] | None = None
                              ) -> dict[str, Any]:
        """POST a non-streaming chat request; the upstream's JSON object, or PassthroughError."""
        url, data, headers = self._request(base_url, api_key, body, model, extra_headers)
        to = aiohttp.ClientTimeout(total=timeout, connect=min(timeout, self._connect_timeout))
        try:
            async with self.session.post(url, data=data, headers=headers, timeout=to) as resp:
                raw = await resp.read()
                status = resp.status
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise _transport_error(exc, url) from None
        if status >= 400:
            raise _status_error(status, raw, api_key)
        try:
            result = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise BadResponseError(
                f"upstream answered HTTP {status} with a body that is not JSON "
                f"({len(raw)} bytes): {url}") from None
        if not isinstance(result, dict):
            raise BadResponseError(f"upstream answered HTTP {status} with JSON that is not an "
                                   f"object: {url}")
        if "error" in result and "choices" not in result:
            raise _status_error(502, raw, api_key)
        return result

    async def open_chat_stream(self, base_url: str, api_key: str | None,
                               body: Mapping[str, Any], timeout: float, *,
                               model: str | None = None,
                               extra_headers: Mapping[str, str] | None = None) -> ChatStream:
        """POST a streaming chat request (``stream`` forced true) and wait for the status line.

        Raises PassthroughError before any event (so the engine may still escalate); the
        returned ChatStream raises only StreamInterrupted. ``timeout`` bounds the wait for the
        response head and every gap between chunks.
        """
        body = {**body, "stream": True}
        url, data, headers = self._request(base_url, api_key, body, model, extra_headers)
        headers["Accept"] = "text/event-stream"
        to = aiohttp.ClientTimeout(total=None, connect=min(timeout, self._connect_timeout),
                                   sock_read=timeout)
        try:
            resp = await self.session.post(url, data=data, headers=headers, timeout=to)
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise _transport_error(exc, url) from None
        if resp.status >= 400:
            try:
                raw = await resp.read()
            except (TimeoutError, aiohttp.ClientError, OSError):
                raw = b""
            finally:
                resp.release()
            raise _status_error(resp.status, raw, api_key)
        ctype = resp.headers.get("Content-Type", "")
        if "json" in ctype and "event-stream" not in ctype:
            # some servers answer an error object with 200 instead of a stream
            try:
                raw = await resp.read()
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                raise _transport_error(exc, url) from None
            finally:
                resp.release()
            raise _status_error(502, raw, api_key)
        return ChatStream(resp, url, timeout)

    async def stream_chat_completion(self, base_url: str, api_key: str | None,
                                     body: Mapping[str, Any], timeout: float, *,
                                     model: str | None = None,
                                     extra_headers: Mapping[str, str] | None = None
                                     ) -> AsyncIterator[bytes]:
        """The SSE events of a streaming chat request, as raw bytes (see ChatStream)."""
        stream = await self.open_chat_stream(base_url, api_key, body, timeout, model=model,
                                             extra_headers=extra_headers)
        async with stream:
            async for event in stream:
                yield event

    async def aclose(self) -> None:
        await self.session.close()

    def __repr__(self) -> str:
        return f"PassthroughClient(closed={self.session.closed})"


# One client per event loop: aiohttp sessions are bound to the loop they were created in.
_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, PassthroughClient] = (
    weakref.WeakKeyDictionary())


def default_client() -> PassthroughClient:
    """This event loop's shared client (created on first use)."""
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None or client.session.closed:
        client = _clients[loop] = PassthroughClient()
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
