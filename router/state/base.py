"""The shared-state interface behind budgets, rate limits, the response cache and coalescing.

Two kinds of operation, with different failure contracts:

- counters and cache entries (``incr``, ``reserve``, ``get_number``, ``get``, ``set``): best
  effort. A backend
  that loses its store (Redis down) answers from local memory instead, logs a warning and counts
  the fallback; a request is never failed because shared state is gone.
- locks and streams (``acquire``, ``refresh``, ``release``, ``append``, ``read``): exact. A backend
  that cannot reach its store raises ``StateUnavailable`` so the caller (the cross-replica
  coalescer) can stop sharing and serve the request by itself; silently switching a stream to a
  different store half-way would hand followers a corrupt response.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable


class StateUnavailable(Exception):
    """The shared store cannot be reached; the caller should serve the request locally."""


@runtime_checkable
class State(Protocol):
    """What tierwise needs from a shared store (see the module docstring for failure rules)."""

    @property
    def shared(self) -> bool:
        """True when other replicas see the same state right now (Redis up)."""
        ...

    async def incr(self, key: str, amount: float, ttl_s: float) -> float:
        """Add `amount` to a counter that expires `ttl_s` after its creation; the new total."""
        ...

    async def reserve(self, entries: list[tuple[str, float, float, float, float]]) -> int:
        """Admission in one atomic step: for each (key, amount, limit, ttl_s, room), add
        `amount` to the counter (created with `ttl_s`) only if no counter refuses. A counter
        refuses when it is above 0 and has less than `room` left below `limit` (room = amount:
        the whole amount must fit, though one amount larger than a whole limit still passes an
        empty counter; room ~0: admitted while anything is left). 0 when every amount was
        added, else the 1-based index of the first counter that refused (nothing added). Best
        effort like ``incr``: without Redis each replica reserves in its own memory."""
        ...

    async def get_number(self, key: str) -> float:
        """A counter's value, 0.0 when absent or expired."""
        ...

    async def get(self, key: str) -> bytes | None:
        """A cached value, None when absent or expired."""
        ...

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        """Store a value for `ttl_s` seconds."""
        ...

    async def acquire(self, key: str, owner: str, ttl_s: float) -> bool:
        """Take a lock if free (it expires after `ttl_s` unless refreshed); True if taken."""
        ...

    async def refresh(self, key: str, owner: str, ttl_s: float) -> bool:
        """Extend a lock `owner` holds; False if it expired or another owner has it."""
        ...

    async def release(self, key: str, owner: str) -> None:
        """Drop a lock, only if `owner` still holds it."""
        ...

    async def holder(self, key: str) -> str | None:
        """The owner of a lock, None when free."""
        ...

    async def append(self, stream: str, data: bytes, ttl_s: float) -> str:
        """Append an entry to a stream that expires `ttl_s` after the last append; its id."""
        ...

    async def read(self, stream: str, after: str, timeout_s: float) -> list[tuple[str, bytes]]:
        """Entries after id `after` ("0" for all), waiting up to `timeout_s` for the first."""
        ...

    async def close(self) -> None:
        """Release connections and background tasks."""
        ...
