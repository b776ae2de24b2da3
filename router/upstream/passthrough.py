"""A light client for tiers whose provider already speaks the OpenAI Chat Completions protocol.

litellm costs ~4 ms of CPU per call (~8 ms streaming) to translate a request that, for OpenAI,
vLLM, and every other OpenAI-compatible server, needs no translation at all. This module sends the
client's body as it is (only ``model`` replaced) over one shared keep-alive connection pool per
event loop (router/upstream/connection.py: a small HTTP/1.1 client, ~0.1 ms of CPU per call where
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
returns the same ``(retryable, status, reason)`` tuple as
``router.upstream.calls.classify_failure``. No retries happen here (tierwise owns failover between
tiers), except one: a reused keep-alive connection that the server had already closed, before a
single byte of the answer, is retried once on a new connection (the request never reached the
server).

The API key goes into the Authorization header only. It is never logged, never part of an
exception message (upstream error text is scrubbed of it), never in a repr.
"""

from __future__ import annotations

import asyncio
import os
import weakref
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from router.streaming import RawJSON
from router.upstream import fastjson
from router.upstream.connection import (
    MAX_BODY_BYTES,
    ConnectFailed,
    Connection,
    ConnectionLost,
    Endpoint,
    HTTPClientError,
    ResponseError,
    request_head,
)
from router.upstream.failures import (
    BadResponseError,
    ClientRequestError,
    ContextWindowError,
    PassthroughError,
    RateLimitedError,
    ServerError,
    StreamInterrupted,
    UpstreamConnectionError,
    UpstreamStatusError,
    UpstreamTimeoutError,
    classify,
    status_error,
    transport_error,
)
from router.upstream.pool import Pool
from router.upstream.sse import ChatStream

__all__ = [
    "PassthroughError", "UpstreamStatusError", "RateLimitedError", "ServerError",
    "ContextWindowError", "ClientRequestError", "UpstreamTimeoutError",
    "UpstreamConnectionError", "BadResponseError", "StreamInterrupted",
    "Target", "resolve_target", "chat_completion", "open_chat_stream",
    "stream_chat_completion", "stream_chunks", "ChatStream", "PassthroughClient", "default_client",
    "close_default_client", "classify",
]



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


class PassthroughClient:
    """A pool of keep-alive connections to OpenAI-protocol upstreams
    (router/upstream/pool.py). Create and use it inside one event loop."""

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
            raise transport_error(exc, url) from None
        status = conn.status
        raw = conn.take_body()
        conn.release()
        if status >= 400:
            raise status_error(status, raw, api_key)
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
            raise status_error(502, raw, api_key)
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
            raise transport_error(exc, url) from None
        if conn.status >= 400:
            try:
                raw = await self._rest(conn, timeout, loop)
            except (TimeoutError, HTTPClientError):
                raw = b""
            raise status_error(conn.status, raw, api_key)
        ctype = (conn.header(b"content-type") or b"").decode("latin-1")
        if "json" in ctype and "event-stream" not in ctype:
            # some servers answer an error object with 200 instead of a stream
            try:
                raw = await self._rest(conn, timeout, loop)
            except (TimeoutError, HTTPClientError) as exc:
                raise transport_error(exc, url) from None
            raise status_error(502, raw, api_key)
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
