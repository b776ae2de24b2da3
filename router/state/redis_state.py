"""Shared state in Redis (redis-py asyncio), with local fallback while Redis is unreachable.

Counters and cache entries fall back to an in-process MemoryState: the first failure logs one
warning, every fallback calls `on_fallback(operation)` (wired to the
``tierwise_redis_fallback_total`` metric), and spend counted locally during the outage is added
to Redis when it answers again, so a budget is not reset by an outage. Locks and streams raise
StateUnavailable instead (see router.state.base for why).

After a failure Redis is left alone for a back-off (0.5 s doubling to 5 s) so requests do not each
wait for a connect timeout; the first operation after the back-off probes it again. redis-py's own
retries are off: tierwise decides what a failure means, and a retry would only add latency.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from router.state.base import StateUnavailable
from router.state.memory import MemoryState

log = logging.getLogger("tierwise.state")
T = TypeVar("T")

PREFIX = "tierwise:"
OP_TIMEOUT_S = 0.5
BACKOFF_MIN_S = 0.5
BACKOFF_MAX_S = 5.0
STREAM_MAXLEN = 100_000

# Compare-and-set scripts: only the lock's owner may extend or drop it.
_REFRESH = "if redis.call('get', KEYS[1]) == ARGV[1] then " \
           "return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end"
# State.reserve: check every counter, then add to all of them, in one step on the server (no
# other client's INCR can land between the check and the addition, as it could between a GET
# and an INCR). KEYS: the counters; ARGV per key: amount, limit, ttl in ms, room.
_RESERVE = """
for i = 1, #KEYS do
  local current = tonumber(redis.call('get', KEYS[i]) or '0')
  if current > 0 and current + tonumber(ARGV[4*i]) > tonumber(ARGV[4*i-2]) then
    return i
  end
end
for i = 1, #KEYS do
  redis.call('set', KEYS[i], 0, 'NX', 'PX', ARGV[4*i-1])
  redis.call('incrbyfloat', KEYS[i], ARGV[4*i-3])
end
return 0
"""
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then " \
           "return redis.call('del', KEYS[1]) else return 0 end"


class RedisState:
    """The State interface on one Redis server, falling back to local memory (see above)."""

    def __init__(self, url: str, *, on_fallback: Callable[[str], None] | None = None,
                 local: MemoryState | None = None, op_timeout_s: float = OP_TIMEOUT_S,
                 max_connections: int = 512) -> None:
        self.url = url
        self.local = local if local is not None else MemoryState()
        self.on_fallback = on_fallback
        self.op_timeout_s = op_timeout_s
        # socket timeouts stay off because XREAD blocks; every call is bounded by wait_for.
        self.client: Redis = Redis.from_url(
            url, retry=Retry(NoBackoff(), 0), socket_connect_timeout=op_timeout_s,
            max_connections=max_connections, health_check_interval=0)
        self._down_until = 0.0
        self._backoff = BACKOFF_MIN_S
        self._down = False
        self._probing = False
        self._pending: dict[str, tuple[float, float]] = {}  # spend counted locally while down
        self._flushing = False

    # -- health -------------------------------------------------------------------------------

    @property
    def shared(self) -> bool:
        return not self._down

    def _skip(self) -> bool:
        return self._down and time.monotonic() < self._down_until

    def _failed(self, operation: str, exc: BaseException) -> None:
        if not self._down:
            log.warning("redis %s unreachable (%s: %s); using local state until it returns",
                        _safe_url(self.url), type(exc).__name__, exc)
            self._backoff = BACKOFF_MIN_S
        else:
            self._backoff = min(self._backoff * 2, BACKOFF_MAX_S)
        self._down = True
        self._down_until = time.monotonic() + self._backoff

    def _fallback(self, operation: str) -> None:
        if self.on_fallback is not None:
            self.on_fallback(operation)

    async def _recovered(self) -> None:
        if not self._down:
            return
        self._down = False
        log.warning("redis %s reachable again; shared state resumed", _safe_url(self.url))
        if self._pending and not self._flushing:
            self._flushing = True
            pending, self._pending = self._pending, {}
            try:
                async with self.client.pipeline(transaction=False) as pipe:
                    for key, (amount, ttl_s) in pending.items():
                        pipe.set(PREFIX + key, 0, nx=True, px=_ms(ttl_s))
                        pipe.incrbyfloat(PREFIX + key, amount)
                    await asyncio.wait_for(pipe.execute(), self.op_timeout_s)
            except (RedisError, OSError, TimeoutError) as exc:
                log.warning("could not add %d locally counted totals to redis (%s)",
                            len(pending), type(exc).__name__)
                self._fallback("flush")
            finally:
                self._flushing = False

    async def _call(self, operation: str, make: Callable[[], Awaitable[T]],
                    timeout_s: float | None = None) -> T:
        """Run one Redis call bounded in time; StateUnavailable if Redis cannot answer."""
        if self._skip():
            wait = self._down_until - time.monotonic()
            raise StateUnavailable(f"redis is down (next try in {wait:.1f}s)")
        # While down, one call at a time probes Redis; the others keep using local state
        # instead of each waiting for a connect timeout.
        probe = self._down
        if probe:
            if self._probing:
                raise StateUnavailable("redis is down (being probed)")
            self._probing = True
        try:
            result = await asyncio.wait_for(make(), timeout_s or self.op_timeout_s)
        except (RedisError, OSError, TimeoutError) as exc:
            self._failed(operation, exc)
            raise StateUnavailable(f"redis {operation} failed: {type(exc).__name__}") from exc
        finally:
            if probe:
                self._probing = False
        await self._recovered()
        return result

    # -- counters and cache: fall back to local memory ---------------------------------------

    async def incr(self, key: str, amount: float, ttl_s: float) -> float:
        async def run() -> Any:
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.set(PREFIX + key, 0, nx=True, px=_ms(ttl_s))
                pipe.incrbyfloat(PREFIX + key, amount)
                return await pipe.execute()

        try:
            return float((await self._call("incr", run))[1])
        except StateUnavailable:
            self._fallback("incr")
            old, _ = self._pending.get(key, (0.0, ttl_s))
            self._pending[key] = (old + amount, ttl_s)
            return await self.local.incr(key, amount, ttl_s)

    async def reserve(self, entries: list[tuple[str, float, float, float, float]]) -> int:
        keys = [PREFIX + entry[0] for entry in entries]
        args: list[Any] = []
        for _key, amount, limit, ttl_s, room in entries:
            args += [repr(float(amount)), repr(float(limit)), _ms(ttl_s), repr(float(room))]
        try:
            return int(await self._call("reserve", lambda: self.client.eval(
                _RESERVE, len(keys), *keys, *args)))
        except StateUnavailable:
            # Redis gone: this replica reserves against what it counted itself (bounded: each
            # replica admits up to a whole limit), added to Redis when it is back
            self._fallback("reserve")
            refused = await self.local.reserve(entries)
            if not refused:
                for key, amount, _limit, ttl_s, _room in entries:
                    old, _ = self._pending.get(key, (0.0, ttl_s))
                    self._pending[key] = (old + amount, ttl_s)
            return refused

    async def get_number(self, key: str) -> float:
        try:
            value = await self._call("get", lambda: self.client.get(PREFIX + key))
        except StateUnavailable:
            self._fallback("get")
            return await self.local.get_number(key)
        return float(value) if value is not None else 0.0

    async def get(self, key: str) -> bytes | None:
        try:
            value = await self._call("get", lambda: self.client.get(PREFIX + key))
        except StateUnavailable:
            self._fallback("get")
            return await self.local.get(key)
        return cast("bytes | None", value)

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        try:
            await self._call("set", lambda: self.client.set(PREFIX + key, value, px=_ms(ttl_s)))
        except StateUnavailable:
            self._fallback("set")
            await self.local.set(key, value, ttl_s)

    # -- locks and streams: exact, or StateUnavailable ---------------------------------------

    async def acquire(self, key: str, owner: str, ttl_s: float) -> bool:
        return bool(await self._call("lock", lambda: self.client.set(
            PREFIX + key, owner, nx=True, px=_ms(ttl_s))))

    async def refresh(self, key: str, owner: str, ttl_s: float) -> bool:
        return bool(await self._call("lock", lambda: self.client.eval(
            _REFRESH, 1, PREFIX + key, owner, _ms(ttl_s))))

    async def release(self, key: str, owner: str) -> None:
        await self._call("lock", lambda: self.client.eval(_RELEASE, 1, PREFIX + key, owner))

    async def holder(self, key: str) -> str | None:
        value = await self._call("lock", lambda: self.client.get(PREFIX + key))
        return value.decode() if isinstance(value, bytes) else value

    async def append(self, stream: str, data: bytes, ttl_s: float) -> str:
        async def run() -> Any:
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.xadd(PREFIX + stream, {"d": data}, maxlen=STREAM_MAXLEN, approximate=True)
                pipe.pexpire(PREFIX + stream, _ms(ttl_s))
                return await pipe.execute()

        entry_id = (await self._call("stream", run))[0]
        return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)

    async def read(self, stream: str, after: str, timeout_s: float) -> list[tuple[str, bytes]]:
        block = _ms(timeout_s) if timeout_s > 0 else None  # XREAD BLOCK 0 would wait forever
        reply: Any = await self._call(
            "stream", lambda: self.client.xread({PREFIX + stream: after}, count=1000, block=block),
            timeout_s=timeout_s + self.op_timeout_s)
        out: list[tuple[str, bytes]] = []
        for _name, entries in reply or []:
            for entry_id, fields in entries:
                eid = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
                out.append((eid, fields[b"d"]))
        return out

    async def close(self) -> None:
        await self.client.aclose()
        await self.local.close()


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


def _safe_url(url: str) -> str:
    """The URL without a password, for logs."""
    if "@" not in url:
        return url
    scheme, _, rest = url.partition("://")
    return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
