"""The pass-through's keep-alive connection pool: connections per (scheme, host, port), reused
LIFO, closed after `keepalive_timeout` idle, at most `limit` open (a request waits for one at the
limit). One connection and its protocol are router/upstream/connection.py.
"""

from __future__ import annotations

import asyncio
import ssl

from router.upstream.connection import ConnectFailed, Connection, Endpoint, _expire

_tls_context: ssl.SSLContext | None = None


def _tls() -> ssl.SSLContext:
    global _tls_context
    if _tls_context is None:
        ctx = ssl.create_default_context()
        ctx.set_alpn_protocols(["http/1.1"])
        _tls_context = ctx
    return _tls_context


class Pool:
    """Keep-alive connections per (scheme, host, port), at most `limit` open at once."""

    def __init__(self, *, limit: int = 1000, keepalive_timeout: float = 30.0,
                 connect_timeout: float = 10.0) -> None:
        self.limit = limit
        self.keepalive_timeout = keepalive_timeout
        self.connect_timeout = connect_timeout
        self._idle: dict[tuple[str, str, int], list[Connection]] = {}
        self._busy: set[Connection] = set()
        self._waiters: list[asyncio.Future[None]] = []
        self._sweeper: asyncio.TimerHandle | None = None
        self.opened = 0  # connections opened in this pool's life (tests, stats)
        self.closed = False

    @property
    def in_use(self) -> int:
        return len(self._busy)

    @property
    def idle(self) -> int:
        return sum(len(v) for v in self._idle.values())

    async def acquire(self, endpoint: Endpoint, deadline: float,
                      loop: asyncio.AbstractEventLoop) -> Connection:
        """A connection to `endpoint`: an idle one, else a new one (waits at the limit)."""
        while True:
            if self.closed:
                raise ConnectFailed("the pass-through client is closed")
            idle = self._idle.get(endpoint.key)
            now = loop.time()
            while idle:
                conn = idle.pop()
                if conn.lost or conn.transport is None or conn.transport.is_closing() or (
                        now - conn.idle_since > self.keepalive_timeout):
                    conn.close()
                    continue
                conn.busy = True
                self._busy.add(conn)
                return conn
            if len(self._busy) + self.idle < self.limit or self._close_one_idle():
                return await self._connect(endpoint, deadline, loop)
            # at the limit with every connection busy: wait until one is released or closed
            waiter: asyncio.Future[None] = loop.create_future()
            self._waiters.append(waiter)
            handle = loop.call_at(deadline, _expire, waiter)
            try:
                await waiter  # TimeoutError at the deadline
            finally:
                handle.cancel()

    async def _connect(self, endpoint: Endpoint, deadline: float,
                       loop: asyncio.AbstractEventLoop) -> Connection:
        timeout = max(0.0, min(deadline - loop.time(), self.connect_timeout))
        conn = Connection(self, endpoint.key)
        conn.busy = True
        self._busy.add(conn)  # counts against the limit while it connects
        try:
            async with asyncio.timeout(timeout):
                await loop.create_connection(
                    lambda: conn, endpoint.host, endpoint.port,
                    ssl=_tls() if endpoint.tls else None,
                    server_hostname=endpoint.host if endpoint.tls else None)
        except TimeoutError:
            self._discard(conn)
            raise
        except OSError as exc:  # refused, unreachable, DNS (gaierror), TLS (SSLError)
            self._discard(conn)
            raise ConnectFailed(f"{type(exc).__name__}: {exc}") from None
        except BaseException:
            self._discard(conn)
            if conn.transport is not None:
                conn.transport.abort()
            raise
        self.opened += 1
        return conn

    def _release(self, conn: Connection) -> None:
        self._busy.discard(conn)
        conn.busy = False
        if self.closed:
            conn.close()
            return
        loop = asyncio.get_running_loop()
        conn.served += 1
        conn.idle_since = loop.time()
        self._idle.setdefault(conn.key, []).append(conn)
        if self._sweeper is None:
            self._sweeper = loop.call_later(self.keepalive_timeout, self._sweep)
        self._wake_one()

    def _discard(self, conn: Connection) -> None:
        """`conn` is closed: forget it wherever it is."""
        if conn in self._busy:
            self._busy.discard(conn)
            conn.busy = False
            self._wake_one()
            return
        idle = self._idle.get(conn.key)
        if idle and conn in idle:
            idle.remove(conn)
            self._wake_one()

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.pop(0)
            if not waiter.done():
                waiter.set_result(None)
                return

    def _close_one_idle(self) -> bool:
        for conns in self._idle.values():
            if conns:
                conns.pop(0).close()
                return True
        return False

    def _sweep(self) -> None:
        """Close connections idle for longer than keepalive_timeout."""
        self._sweeper = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        for conns in list(self._idle.values()):
            for conn in [c for c in conns if now - c.idle_since > self.keepalive_timeout]:
                conn.close()
        if self.idle and not self.closed:
            self._sweeper = loop.call_later(self.keepalive_timeout, self._sweep)

    async def aclose(self) -> None:
        self.closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for conns in list(self._idle.values()):
            for conn in list(conns):
                conn.close()
        for conn in list(self._busy):
            conn.close()
        for waiter in self._waiters:
            if not waiter.done():
                waiter.cancel()
        self._waiters.clear()
        await asyncio.sleep(0)  # let the transports finish closing
