"""Shared state for budgets, rate limits, the response cache and cross-replica coalescing.

``open_state("memory")`` gives one process's state; ``open_state("redis://host:port/0")`` shares
it across replicas through Redis, falling back to local memory while Redis is unreachable.
"""

from __future__ import annotations

from collections.abc import Callable

from router.state.base import State, StateUnavailable
from router.state.memory import MemoryState

__all__ = ["MemoryState", "State", "StateUnavailable", "open_state"]


def open_state(url: str = "memory", *, on_fallback: Callable[[str], None] | None = None,
               max_entries: int = 10_000) -> State:
    """The backend for a policy's ``state`` setting ("memory" or a redis:// URL). `max_entries`
    bounds the values (cache entries) kept in memory: by the memory store, and by Redis's local
    fallback while it is down (``[cache] max_entries``)."""
    if url == "memory":
        return MemoryState(max_entries=max_entries)
    if url.startswith(("redis://", "rediss://", "unix://")):
        from router.state.redis_state import RedisState  # redis-py only when asked for

        return RedisState(url, on_fallback=on_fallback,
                          local=MemoryState(max_entries=max_entries))
    raise ValueError(f"unknown state backend {url!r}; use 'memory' or a redis:// URL")
