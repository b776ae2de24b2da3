"""A small HTTP/1.1 client for the pass-through: POST a body, read the answer whole or as it comes.

Why not aiohttp: on the proxy's hot path one aiohttp request to a loopback upstream cost ~0.29 ms
of CPU, this client ~0.10 ms (bench/PROFILE.md): aiohttp's per-request machinery (URL objects,
cookie jar, tracing hooks, multidicts, payload writers, timers) was ~20% of the proxy's whole
CPU per request. The upstreams here speak one narrow thing: POST JSON, get JSON or an SSE stream
back, over keep-alive connections. That is all this does:

- one asyncio Protocol per connection, responses parsed by httptools (llhttp, already installed
  with uvicorn[standard]): status, headers, Content-Length / chunked / close-delimited bodies,
  1xx interim answers skipped, gzip/deflate bodies decoded;
- a keep-alive pool per (scheme, host, port), LIFO, idle connections closed after
  `keepalive_timeout`, at most `limit` connections open; a reused connection the server had
  already closed (it died before answering a single byte) is retried once on a new one;
- TLS through the ssl module's default context (system CAs), with ALPN http/1.1;
- one request per write; no proxies (as the aiohttp session before: no trust_env), no
  redirects, no cookies.

Failures are `ConnectFailed`, `ConnectionLost` (the connection broke before the answer was
whole), `ResponseError` (not parseable HTTP), or TimeoutError; router/upstream/passthrough.py maps
them to its PassthroughErrors.

This module is one connection (`Connection`, the request head, the errors); the keep-alive pool
that hands connections out is router/upstream/pool.py.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httptools

if TYPE_CHECKING:
    from router.upstream.pool import Pool

MAX_BODY_BYTES = 64 * 1024 * 1024  # a whole (non-stream) answer larger than this is refused
_HIGH_WATER = 1024 * 1024  # buffered stream bytes before the socket stops being read


class HTTPClientError(Exception):
    """Base of this module's failures."""


class ConnectFailed(HTTPClientError):
    """The connection could not be opened (refused, DNS, TLS, bad URL)."""


class ConnectionLost(HTTPClientError):
    """The connection closed or broke before the answer was complete."""

    def __init__(self, message: str, *, got_bytes: bool = True) -> None:
        super().__init__(message)
        self.got_bytes = got_bytes


class ResponseError(HTTPClientError):
    """The upstream's bytes are not a valid HTTP response (or one this client cannot read)."""


@dataclass(frozen=True)
class Endpoint:
    """Where requests for one URL go, and the request line and Host header for it."""

    url: str
    key: tuple[str, str, int]  # (scheme, host, port): the pool's key
    tls: bool
    host: str
    port: int
    target: bytes  # path and query of the request line
    host_header: bytes

    @classmethod
    def parse(cls, url: str) -> Endpoint:
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise ConnectFailed(f"invalid URL {url!r}: {exc}") from None
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https") or not parts.hostname:
            raise ConnectFailed(f"invalid URL {url!r}: needs http:// or https:// and a host")
        tls = scheme == "https"
        host = parts.hostname
        port = port or (443 if tls else 80)
        default = port == (443 if tls else 80)
        name = f"[{host}]" if ":" in host else host
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        try:
            host_header = (name if default else f"{name}:{port}").encode("ascii")
            request_target = target.encode("ascii")
        except UnicodeEncodeError:
            raise ConnectFailed(f"invalid URL {url!r}: not ASCII") from None
        return cls(url, (scheme, host, port), tls, host, port, request_target, host_header)


def request_head(endpoint: Endpoint, headers: Mapping[str, str]) -> bytes:
    """The request line and headers, up to (not including) Content-Length and the blank line.
    ValueError if a header name or value could smuggle a line break or is not latin-1."""
    lines = [b"POST ", endpoint.target, b" HTTP/1.1\r\nHost: ", endpoint.host_header, b"\r\n"]
    for name, value in headers.items():
        raw_name, raw_value = name.encode("latin-1"), str(value).encode("latin-1")
        if any(c in raw_name for c in b"\r\n:") or b"\r" in raw_value or b"\n" in raw_value:
            raise ValueError(f"invalid character in request header {name!r}")
        lines += [raw_name, b": ", raw_value, b"\r\n"]
    return b"".join(lines)


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


class Connection(asyncio.Protocol):
    """One keep-alive connection; serves one request at a time (the pool sees to it)."""

    def __init__(self, pool: Pool, key: tuple[str, str, int]) -> None:
        self._pool = pool
        self.key = key
        self.transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self.lost = False
        self.served = 0  # responses completed on this connection
        self.idle_since = 0.0
        self.busy = False
        self._start()

    def _start(self) -> None:
        """Fresh state for the next response."""
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.head_done = False
        self.complete = False
        self.keep_alive = False
        self.body: list[bytes] = []
        self.buffered = 0
        self.error: BaseException | None = None
        self.got_bytes = False
        self._until_eof = False
        self._interim = False
        self._decoder: Any = None
        self._waiter: asyncio.Future[None] | None = None
        if getattr(self, "_paused", False) and self.transport is not None:
            self.transport.resume_reading()
        self._paused = False
        # a stream's reader takes the body as it comes: only then may reading pause while
        # too much is buffered (a whole answer is read in full before anyone takes it)
        self.streaming = False

    # -- asyncio.Protocol ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no asyncio.Transport

    def data_received(self, data: bytes) -> None:
        if not self.busy:  # nobody asked: a server talking out of turn; do not reuse this
            self.close()
            return
        self.got_bytes = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(ResponseError("the upstream switched protocols"))
        except httptools.HttpParserError as exc:
            if self.complete:  # junk after a whole answer: do not reuse the connection
                self.keep_alive = False
            else:
                self._fail(ResponseError(f"malformed HTTP response: {exc}"))
        except ResponseError as exc:  # raised by a callback below
            self._fail(exc)
        if (self.streaming and self.buffered > _HIGH_WATER and not self._paused
                and self.transport is not None):
            self._paused = True
            self.transport.pause_reading()

    def eof_received(self) -> bool:
        return False  # close the transport; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self.busy and not self.complete:
            if self.head_done and self._until_eof and exc is None:
                self._finish(keep_alive=False)  # a close-delimited body ends here
            else:
                why = f": {type(exc).__name__}" if exc is not None else ""
                self._fail(ConnectionLost(f"connection closed by the upstream{why}",
                                          got_bytes=self.got_bytes))
        self._pool._discard(self)

    # -- httptools callbacks -------------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if status < 200:  # 100 Continue, 103 Early Hints: the real answer follows
            self._interim = True
            return
        self.status = status
        framed = False
        for name, value in self.headers:
            low = name.lower()
            if low == b"content-length" or (low == b"transfer-encoding"
                                            and b"chunked" in value.lower()):
                framed = True
            elif low == b"content-encoding":
                coding = value.strip().lower()
                if coding in (b"gzip", b"x-gzip", b"deflate"):
                    self._decoder = zlib.decompressobj(zlib.MAX_WBITS | 32)
                elif coding not in (b"", b"identity"):
                    raise ResponseError(f"unsupported content-encoding {coding.decode()!r}")
        self._until_eof = not framed and status not in (204, 304)
        self.head_done = True
        self._wake()

    def on_body(self, body: bytes) -> None:
        if self._decoder is not None:
            try:
                body = self._decoder.decompress(body)
            except zlib.error as exc:
                raise ResponseError(f"cannot decode the compressed body: {exc}") from None
        if body:
            self.body.append(body)
            self.buffered += len(body)
            self._wake()

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            self.headers = []
            return
        self._finish(self._parser.should_keep_alive())

    # -- state changes -------------------------------------------------------------------------

    def _finish(self, keep_alive: bool) -> None:
        if self._decoder is not None:
            rest = self._decoder.flush()
            if rest:
                self.body.append(rest)
                self.buffered += len(rest)
        self.complete = True
        self.keep_alive = keep_alive
        self._wake()

    def _fail(self, exc: BaseException) -> None:
        if self.error is None and not self.complete:
            self.error = exc
            self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    # -- for the reader ------------------------------------------------------------------------

    async def wait(self, loop: asyncio.AbstractEventLoop, *, deadline: float | None = None,
                   timeout: float | None = None) -> None:
        """Until something happens (head, body bytes, the end, an error); TimeoutError at
        `deadline` (loop time) or after `timeout` seconds."""
        waiter = self._waiter = loop.create_future()
        when = deadline if deadline is not None else (
            loop.time() + timeout if timeout is not None else None)
        handle = loop.call_at(when, _expire, waiter) if when is not None else None
        try:
            await waiter
        finally:
            if handle is not None:
                handle.cancel()
            self._waiter = None

    def take_body(self) -> bytes:
        """The body bytes received so far and not yet taken."""
        parts = self.body
        if not parts:
            return b""
        self.body = []
        self.buffered = 0
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def send(self, head: bytes, data: bytes) -> None:
        self._start()
        self.busy = True
        assert self.transport is not None
        self.transport.write(b"".join((head, b"Content-Length: %d\r\n\r\n" % len(data), data)))

    def header(self, name: bytes) -> bytes | None:
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None

    def close(self) -> None:
        """Close now (a response left unread cannot be skipped on a keep-alive connection)."""
        if self.transport is not None and not self.lost:
            self.transport.abort()
        self.lost = True
        self._pool._discard(self)

    def release(self) -> None:
        """Done with this response: back to the pool if it is whole and may be kept."""
        if self.complete and self.keep_alive and not self.lost and self.error is None:
            self._pool._release(self)
        else:
            self.close()
