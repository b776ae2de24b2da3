"""Cross-replica coalescing: identical requests on different replicas share one upstream call.

`SharedCoalescer` implements router.coalescing.inflight's `Coalescer` interface on top of the
in-process coalescer: identical requests within one replica still join one local flight, and that
flight's `start` first asks the shared State who leads the key across replicas.

- Leader (took the lock ``flight:<key>:lock``, TTL refreshed while it runs): calls upstream and
  appends what it gets to the stream ``flight:<key>:<owner>``: each chunk (``C``) or the whole
  response (``R``), then ``E`` at the end, or ``X`` if its call failed or was cancelled.
- Follower (lock taken): reads that stream (Redis XREAD) from the start, so it gets every chunk
  however late it joined, and turns it into what its own request wants (chunks for a stream, one
  response otherwise, see router.streaming).
- If the leader fails (``X``), dies (lock expired without ``E``) or Redis goes away before the
  follower has passed anything on, the follower makes its own upstream call: a request is never
  lost to a coalescing problem. Only a stream follower that already relayed chunks when Redis
  vanished ends with an error, since its answer cannot be resumed from another call.

With Redis down (StateUnavailable), every flight is local: each replica coalesces by itself.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any

from router.coalescing.inflight import Flight, InProcessCoalescer, StartCall, Subscription
from router.state.base import State, StateUnavailable
from router.streaming import as_chunks, assemble

log = logging.getLogger("tierwise.coalesce")

LOCK_TTL_S = 10.0
STREAM_TTL_S = 60.0
POLL_S = 1.0


class LeaderGone(Exception):
    """The leading replica failed, was cancelled or died before finishing its answer."""


class _Role:
    follower = False


class SharedSubscription:
    """A local subscription whose `coalesced` is also true for a cross-replica follower."""

    def __init__(self, inner: Any, role: _Role) -> None:
        self._inner = inner
        self._role = role

    @property
    def coalesced(self) -> bool:
        return bool(self._inner.coalesced or self._role.follower)

    @coalesced.setter
    def coalesced(self, value: bool) -> None:
        self._inner.coalesced = value

    async def wait_output(self) -> bool:
        return bool(await self._inner.wait_output())

    def batches(self, include_usage: bool) -> AsyncIterator[list[dict[str, Any]]]:
        return self._inner.batches(include_usage)  # type: ignore[no-any-return]

    @property
    def drained(self) -> bool:
        return bool(self._inner.drained)

    async def response(self) -> dict[str, Any]:
        return await self._inner.response()  # type: ignore[no-any-return]

    def close(self) -> None:
        self._inner.close()

    def claim_bill(self, complete: bool) -> bool:
        # a cross-replica follower's call was made and is paid on the leading replica
        return not self._role.follower and bool(self._inner.claim_bill(complete))


class SharedCoalescer:
    """Coalescer across replicas through a State (Redis); see the module docstring."""

    def __init__(self, state: State, *, local: InProcessCoalescer | None = None,
                 follow_timeout_s: float = 120.0,
                 on_fallback: Callable[[str], None] | None = None) -> None:
        self.state = state
        self.local = local or InProcessCoalescer()
        self.follow_timeout_s = follow_timeout_s
        self.on_fallback = on_fallback
        self.replica = uuid.uuid4().hex[:12]
        self._roles: weakref.WeakKeyDictionary[Flight, _Role] = weakref.WeakKeyDictionary()
        self._tasks: set[asyncio.Task[Any]] = set()
        self.stats = self.local.stats
        self.stats.setdefault("shared_leader", 0)
        self.stats.setdefault("shared_follower", 0)
        self.stats.setdefault("shared_fallback", 0)

    @property
    def in_flight(self) -> int:
        return self.local.in_flight

    def join(self, key: str, start: StartCall, *, stream: bool) -> Subscription:
        role = _Role()
        sub = self.local.join(key, lambda: self._start(key, start, stream, role), stream=stream)
        flight = sub.flight
        if sub.coalesced:
            role = self._roles.get(flight, role)
        else:
            self._roles[flight] = role
        return SharedSubscription(sub, role)

    def _fallback(self, why: str) -> None:
        self.stats["shared_fallback"] += 1
        if self.on_fallback is not None:
            self.on_fallback("coalesce")
        log.debug("coalescing locally: %s", why)

    # -- the cross-replica start ---------------------------------------------------------------

    async def _start(self, key: str, start: StartCall, stream: bool, role: _Role) -> Any:
        owner = f"{self.replica}:{uuid.uuid4().hex[:12]}"
        lock = f"flight:{key}:lock"
        try:
            for _ in range(3):
                if await self.state.acquire(lock, owner, LOCK_TTL_S):
                    self.stats["shared_leader"] += 1
                    return await self._lead(key, lock, owner, start, stream)
                leader = await self.state.holder(lock)
                if leader is not None:
                    break
            else:
                raise StateUnavailable("lock kept changing hands")
        except StateUnavailable as exc:
            self._fallback(str(exc))
            return await start()
        assert leader is not None
        try:
            result = await self._follow(f"flight:{key}:{leader}", lock, leader, stream)
        except (LeaderGone, StateUnavailable) as exc:
            self._fallback(f"{type(exc).__name__}: {exc}")
            return await start()
        role.follower = True
        self.stats["shared_follower"] += 1
        return result

    async def _lead(self, key: str, lock: str, owner: str, start: StartCall, stream: bool) -> Any:
        pub = _Publisher(self.state, f"flight:{key}:{owner}")
        keeper = asyncio.create_task(self._keep_lock(lock, owner), name="tierwise-flight-lock")
        try:
            result = await start()
        except BaseException:
            keeper.cancel()
            await self._finish(pub, lock, owner, b"X")
            raise
        if not stream:
            keeper.cancel()
            await pub.put(b"R" + json.dumps(result, separators=(",", ":")).encode())
            await self._finish(pub, lock, owner, b"E")
            return result
        return self._relay(result, pub, lock, owner, keeper)

    async def _relay(self, chunks: AsyncIterator[Any], pub: _Publisher, lock: str,
                     owner: str, keeper: asyncio.Task[None]) -> AsyncIterator[Any]:
        end = b"X"
        try:
            # a chunk, or a list of them (router.coalescing.inflight.StartCall)
            async for item in chunks:
                for chunk in item if isinstance(item, list) else (item,):
                    await pub.put(b"C" + json.dumps(chunk, separators=(",", ":")).encode())
                yield item
            end = b"E"
        finally:
            keeper.cancel()
            # cancellation may interrupt this too; the lock then expires and followers retry
            await self._finish(pub, lock, owner, end)

    async def _finish(self, pub: _Publisher, lock: str, owner: str, end: bytes) -> None:
        await pub.put(end)
        try:
            await self.state.release(lock, owner)
        except StateUnavailable:
            pass  # the lock expires by itself (LOCK_TTL_S); followers then see the end marker

    async def _keep_lock(self, lock: str, owner: str) -> None:
        while True:
            await asyncio.sleep(LOCK_TTL_S / 3)
            try:
                if not await self.state.refresh(lock, owner, LOCK_TTL_S):
                    return
            except StateUnavailable:
                return

    async def _follow(self, stream_key: str, lock: str, leader: str, stream: bool) -> Any:
        entries = _read_entries(self.state, stream_key, lock, leader, self.follow_timeout_s)
        kind, payload = await anext(entries)
        if kind == b"R":
            response = json.loads(payload)
            await entries.aclose()
            if not stream:
                return response
            return _iterate(as_chunks(response, include_usage=True))
        first = json.loads(payload)
        if not stream:
            chunks = [first]
            async for _kind, payload in entries:
                chunks.append(json.loads(payload))
            return assemble(chunks)
        return _chain(first, entries)


class _Publisher:
    """Appends to a flight's stream; stops quietly (with one log line) if Redis goes away."""

    def __init__(self, state: State, key: str) -> None:
        self.state = state
        self.key = key
        self.ok = True

    async def put(self, data: bytes) -> None:
        if not self.ok:
            return
        try:
            await self.state.append(self.key, data, STREAM_TTL_S)
        except StateUnavailable as exc:
            self.ok = False  # followers notice and call upstream themselves
            log.warning("coalescing: cannot publish to followers (%s)", exc)


async def _read_entries(state: State, stream_key: str, lock: str, leader: str,
                        timeout_s: float) -> AsyncGenerator[tuple[bytes, bytes], None]:
    """(kind, payload) of C/R entries until E; LeaderGone on X, a lost lock or the timeout."""
    after = "0"
    deadline = time.monotonic() + timeout_s
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise LeaderGone("timed out waiting for the leading replica")
        entries = await state.read(stream_key, after, min(POLL_S, left))
        if not entries:
            if await state.holder(lock) != leader:
                # finished between our read and this check? one last non-blocking read
                entries = await state.read(stream_key, after, 0)
                if not entries:
                    raise LeaderGone("the leading replica stopped without finishing")
        for entry_id, data in entries:
            after = entry_id
            kind, payload = data[:1], data[1:]
            if kind == b"E":
                return
            if kind == b"X":
                raise LeaderGone("the leading replica's call failed")
            yield kind, payload


async def _iterate(chunks: list[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
    for chunk in chunks:
        yield chunk


async def _chain(first: dict[str, Any],
                 rest: AsyncIterator[tuple[bytes, bytes]]) -> AsyncIterator[dict[str, Any]]:
    yield first
    try:
        async for _kind, payload in rest:
            yield json.loads(payload)
    except (LeaderGone, StateUnavailable) as exc:
        # chunks were already relayed: this answer cannot continue from another call
        raise ConnectionError(f"coalesced stream from another replica broke off: {exc}") from exc
