"""Exact-match response cache for chat completions, on the shared State (memory or Redis).

The key is the sha256 of the canonical request body (JSON with sorted keys, compact), the pinned
tier header and, with ``[cache] scope = "key"`` (the default), the caller's key id, so one
tenant's answers are never served to another. Stream and non-stream requests have different
keys (the ``stream`` field is part of the body): a cached stream is replayed as the same SSE
bytes in one piece.

Only complete 200 responses up to ``max_entry_bytes`` are stored: whole answers that passed the
response checks (router.serving.guard asks the responder), never a stream cut short or one that
failed after its first byte, nor one flagged ``x-tierwise-check-failed``. The memory store holds at
most ``max_entries`` of them (oldest dropped first). The request header
``cache-control: no-store`` skips the cache both ways, ``no-cache`` skips the lookup but stores
the fresh answer; a response with ``cache-control: no-store`` is not stored.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from typing import Any

from policies.access import CacheSettings
from router.state import State

log = logging.getLogger("tierwise.cache")

# Response headers worth replaying; per-request ones (cost, rate limit counters) are not.
_KEEP = ("content-type", "x-tierwise-tier", "x-tierwise-model", "x-tierwise-difficulty",
         "x-tierwise-escalated")


@dataclass(frozen=True)
class CachedResponse:
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def encode(self) -> bytes:
        head = json.dumps({"status": self.status, "headers": self.headers}).encode()
        return head + b"\n" + self.body

    @classmethod
    def decode(cls, raw: bytes) -> CachedResponse:
        head, _, body = raw.partition(b"\n")
        meta = json.loads(head)
        return cls(int(meta["status"]), tuple((str(k), str(v)) for k, v in meta["headers"]), body)


def directives(cache_control: str | None) -> tuple[bool, bool]:
    """(may read, may write) for a request's Cache-Control header."""
    tokens = {t.strip().lower() for t in (cache_control or "").split(",")}
    if "no-store" in tokens:
        return False, False
    return "no-cache" not in tokens, True


class ResponseCache:
    """get/put of whole responses keyed by `key()`; a no-op when the policy disables it."""

    def __init__(self, settings: CacheSettings, state: State) -> None:
        self.settings = settings
        self.state = state

    @property
    def enabled(self) -> bool:
        return self.settings.enabled

    def key(self, body: dict[str, Any], client_id: str, pin: str | None = None) -> str:
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        scope = client_id if self.settings.scope == "key" else "*"
        digest = hashlib.sha256(f"{scope}\n{pin or ''}\n{canonical}".encode()).hexdigest()
        return f"cache:{digest}"

    async def get(self, key: str) -> CachedResponse | None:
        raw = await self.state.get(key)
        if raw is None:
            return None
        try:
            return CachedResponse.decode(raw)
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("dropping an unreadable cache entry (%s)", type(exc).__name__)
            return None

    def storable(self, status: int, headers: dict[str, str], size: int) -> bool:
        no_store = "no-store" in (headers.get("cache-control") or "").lower()
        # an answer that failed a response check is served once, flagged, never replayed
        failed = "x-tierwise-check-failed" in headers
        return (status == 200 and not no_store and not failed
                and size <= self.settings.max_entry_bytes)

    async def put(self, key: str, status: int, headers: dict[str, str], body: bytes) -> bool:
        """Store a response if it may be cached; True if stored."""
        if not self.storable(status, headers, len(body)):
            return False
        kept = tuple((k, v) for k, v in headers.items() if k in _KEEP)
        await self.state.set(key, CachedResponse(status, kept, body).encode(),
                             self.settings.ttl_s)
        return True
