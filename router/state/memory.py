"""In-process state: the default for one replica, and the fallback when Redis is down.

Everything lives in dicts with expiry times. Expired entries are pruned as they are met and by a
sweep every `SWEEP_EVERY` writes, and the cache holds at most `max_entries` values (oldest
dropped first), so memory stays bounded however long the process runs.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from dataclasses import dataclass, field

SWEEP_EVERY = 1024


@dataclass
class _Stream:
    entries: list[tuple[str, bytes]] = field(default_factory=list)
    expires: float = 0.0
    changed: asyncio.Event = field(default_factory=asyncio.Event)


class MemoryState:
    """The State interface on local dicts; never raises StateUnavailable."""

    def __init__(self, max_entries: int = 10_000) -> None:
        self.max_entries = max_entries
        self._numbers: dict[str, tuple[float, float]] = {}  # key -> (value, expires)
        self._values: OrderedDict[str, tuple[bytes, float]] = OrderedDict()
        self._locks: dict[str, tuple[str, float]] = {}
        self._streams: dict[str, _Stream] = {}
        self._writes = 0

    @property
    def shared(self) -> bool:
        return False

    def _tick(self) -> None:
        self._writes += 1
        if self._writes % SWEEP_EVERY == 0:
            self.sweep()

    def sweep(self) -> None:
        """Drop every expired entry."""
        now = time.monotonic()
        for table in (self._numbers, self._values, self._locks):
            for key in [k for k, v in table.items() if v[1] <= now]:
                del table[key]
        for key in [k for k, s in self._streams.items() if s.expires <= now]:
            del self._streams[key]

    def __len__(self) -> int:
        return len(self._numbers) + len(self._values) + len(self._locks) + len(self._streams)

    async def incr(self, key: str, amount: float, ttl_s: float) -> float:
        now = time.monotonic()
        value, expires = self._numbers.get(key, (0.0, 0.0))
        if expires <= now:
            value, expires = 0.0, now + ttl_s
        value += amount
        self._numbers[key] = (value, expires)
        self._tick()
        return value

    async def reserve(self, entries: list[tuple[str, float, float, float, float]]) -> int:
        # no await between the checks and the additions: atomic on the event loop
        now = time.monotonic()
        for i, (key, _amount, limit, _ttl, room) in enumerate(entries, 1):
            value, expires = self._numbers.get(key, (0.0, 0.0))
            current = value if expires > now else 0.0
            if current > 0 and current + room > limit:
                return i
        for key, amount, _limit, ttl_s, _room in entries:
            await self.incr(key, amount, ttl_s)
        return 0

    async def get_number(self, key: str) -> float:
        value, expires = self._numbers.get(key, (0.0, 0.0))
        return value if expires > time.monotonic() else 0.0

    async def get(self, key: str) -> bytes | None:
        item = self._values.get(key)
        if item is None:
            return None
        if item[1] <= time.monotonic():
            del self._values[key]
            return None
        return item[0]

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        self._values.pop(key, None)
        self._values[key] = (value, time.monotonic() + ttl_s)
        while len(self._values) > self.max_entries:
            self._values.popitem(last=False)
        self._tick()

    def _lock_owner(self, key: str) -> str | None:
        item = self._locks.get(key)
        if item is None or item[1] <= time.monotonic():
            self._locks.pop(key, None)
            return None
        return item[0]

    async def acquire(self, key: str, owner: str, ttl_s: float) -> bool:
        if self._lock_owner(key) is not None:
            return False
        self._locks[key] = (owner, time.monotonic() + ttl_s)
        self._tick()
        return True

    async def refresh(self, key: str, owner: str, ttl_s: float) -> bool:
        if self._lock_owner(key) != owner:
            return False
        self._locks[key] = (owner, time.monotonic() + ttl_s)
        return True

    async def release(self, key: str, owner: str) -> None:
        if self._lock_owner(key) == owner:
            del self._locks[key]

    async def holder(self, key: str) -> str | None:
        return self._lock_owner(key)

    async def append(self, stream: str, data: bytes, ttl_s: float) -> str:
        s = self._streams.get(stream)
        if s is None or s.expires <= time.monotonic():
            s = self._streams[stream] = _Stream()
        entry_id = f"{len(s.entries) + 1}-0"
        s.entries.append((entry_id, data))
        s.expires = time.monotonic() + ttl_s
        s.changed.set()
        s.changed = asyncio.Event()  # waiters hold the old, set event; new waiters get a new one
        self._tick()
        return entry_id

    async def read(self, stream: str, after: str, timeout_s: float) -> list[tuple[str, bytes]]:
        s = self._streams.get(stream)
        if s is None:
            s = self._streams[stream] = _Stream(expires=time.monotonic() + max(timeout_s, 1.0))
        seq = int(after.split("-")[0])
        if len(s.entries) <= seq and timeout_s > 0:
            try:
                await asyncio.wait_for(s.changed.wait(), timeout_s)
            except TimeoutError:
                return []
        return s.entries[seq:]

    async def close(self) -> None:
        self._numbers.clear()
        self._values.clear()
        self._locks.clear()
        self._streams.clear()
