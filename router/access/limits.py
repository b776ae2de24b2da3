"""Per-key budgets (USD per UTC day and month) and rate limits (requests and tokens per minute).

Counters live in the shared State (router.state), so with ``state = "redis://..."`` every replica
enforces the same numbers. Rate limits use fixed one-minute windows (one counter per key and
minute, expiring with it): cheap, one round trip, and exact across replicas; a burst at a window
edge can reach twice the limit over two seconds, the usual price of fixed windows.

Budgets are charged after a response, with its real cost, so one request in flight can overshoot
a budget by its own cost; the next request is then refused (429 ``insufficient_quota``, with
Retry-After until the budget's period ends) or, with ``[limits] downgrade_at``, sent to the
cheapest tier while less than that share of the budget is left.

Limits come from ``[limits]``; a key's ``[[auth.keys]]`` entry overrides them for that key.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from policies.access import LimitSettings
from router.access.auth import Client
from router.errors import TierwiseError
from router.state import State

WINDOW_S = 60


class LimitExceeded(TierwiseError):
    """429 with a Retry-After; `code` is rate_limit_exceeded or insufficient_quota."""

    status_code = 429
    error_type = "rate_limit_error"

    def __init__(self, message: str, *, retry_after_s: float, code: str) -> None:
        super().__init__(message, code=code)
        self.retry_after_s = retry_after_s
        if code == "insufficient_quota":
            self.error_type = "insufficient_quota"

    def headers(self) -> dict[str, str]:
        return {"retry-after": str(max(1, math.ceil(self.retry_after_s)))}


@dataclass
class Admission:
    """What the limiter decided for one request; pass it back to `charge`."""

    client: Client
    estimated_tokens: int
    downgrade_to: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    charged: bool = False  # set once its cost is booked, so nothing is charged twice


@dataclass(frozen=True)
class _Limits:
    rpm: int | None
    tpm: int | None
    day: float | None
    month: float | None


_UNLIMITED = _Limits(None, None, None, None)


class Limiter:
    """Admits requests against the limits and charges what they cost afterwards."""

    def __init__(self, settings: LimitSettings, state: State, *, cheapest_tier: str,
                 clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.state = state
        self.downgrade_tier = settings.downgrade_tier or cheapest_tier
        self.clock = clock
        self._defaults: _Limits | None = None
        self._defaults = self.limits_for(Client("-"))  # of every caller without its own key

    def limits_for(self, client: Client) -> _Limits:
        key = client.key
        if key is None and self._defaults is not None:
            return self._defaults

        def pick(name: str) -> Any:
            own = getattr(key, name) if key is not None else None
            return own if own is not None else getattr(self.settings, name)

        return _Limits(rpm=pick("requests_per_minute"), tpm=pick("tokens_per_minute"),
                       day=pick("usd_per_day"), month=pick("usd_per_month"))

    def _keys(self, client: Client, now: float) -> tuple[str, str, str, str, float]:
        minute = int(now // WINDOW_S)
        day = datetime.fromtimestamp(now, UTC)
        return (f"rl:{client.id}:req:{minute}", f"rl:{client.id}:tok:{minute}",
                f"usd:{client.id}:d:{day:%Y%m%d}", f"usd:{client.id}:m:{day:%Y%m}",
                (minute + 1) * WINDOW_S - now)

    async def admit(self, client: Client, estimated_tokens: int) -> Admission:
        """Count the request; LimitExceeded if a limit is reached, else an Admission."""
        lim = self.limits_for(client)
        admission = Admission(client, estimated_tokens)
        if lim == _UNLIMITED:  # nothing to count: no state round trips, no keys to build
            return admission
        now = self.clock()
        req_key, tok_key, day_key, month_key, window_left = self._keys(client, now)
        for limit, key, name, period_left in (
                (lim.day, day_key, "daily", _until_next_day(now)),
                (lim.month, month_key, "monthly", _until_next_month(now))):
            if limit is None:
                continue
            spent = await self.state.get_number(key)
            left = limit - spent
            admission.headers[f"x-tierwise-budget-{name}-remaining-usd"] = f"{max(left, 0):.6f}"
            if left <= 0:
                raise LimitExceeded(
                    f"The {name} budget of ${limit:g} for key {client.id!r} is spent.",
                    retry_after_s=period_left, code="insufficient_quota")
            if self.settings.downgrade_at is not None and left < self.settings.downgrade_at * limit:
                admission.downgrade_to = self.downgrade_tier
        if lim.rpm is not None:
            used = await self.state.incr(req_key, 1, WINDOW_S + 5)
            admission.headers["x-ratelimit-limit-requests"] = str(lim.rpm)
            admission.headers["x-ratelimit-remaining-requests"] = str(max(lim.rpm - int(used), 0))
            if used > lim.rpm:
                raise LimitExceeded(
                    f"Rate limit reached for key {client.id!r}: {lim.rpm} requests per minute.",
                    retry_after_s=window_left, code="rate_limit_exceeded")
        if lim.tpm is not None:
            used_tokens = await self.state.get_number(tok_key)
            if used_tokens + estimated_tokens > lim.tpm and used_tokens > 0:
                raise LimitExceeded(
                    f"Rate limit reached for key {client.id!r}: {lim.tpm} tokens per minute.",
                    retry_after_s=window_left, code="rate_limit_exceeded")
            total = await self.state.incr(tok_key, estimated_tokens, WINDOW_S + 5)
            admission.headers["x-ratelimit-limit-tokens"] = str(lim.tpm)
            admission.headers["x-ratelimit-remaining-tokens"] = str(max(lim.tpm - int(total), 0))
        return admission

    async def charge(self, admission: Admission, cost_usd: float, tokens: int | None) -> None:
        """Book a finished request: its cost against the budgets, its real token count."""
        lim = self.limits_for(admission.client)
        if not self.charges(lim):
            return
        now = self.clock()
        _, tok_key, day_key, month_key, _ = self._keys(admission.client, now)
        if cost_usd > 0 and math.isfinite(cost_usd):
            if lim.day is not None:
                await self.state.incr(day_key, cost_usd, 2 * 86400)
            if lim.month is not None:
                await self.state.incr(month_key, cost_usd, 32 * 86400)
        if lim.tpm is not None and tokens is not None and tokens != admission.estimated_tokens:
            await self.state.incr(tok_key, tokens - admission.estimated_tokens, WINDOW_S + 5)

    def charges(self, lim: _Limits | Client) -> bool:
        """Would `charge` book anything for this caller (a budget or a token limit)?"""
        if isinstance(lim, Client):
            lim = self.limits_for(lim)
        return lim.day is not None or lim.month is not None or lim.tpm is not None

    async def spent(self, client: Client) -> tuple[float, float]:
        """(USD spent today, USD spent this month) by `client`."""
        _, _, day_key, month_key, _ = self._keys(client, self.clock())
        return await self.state.get_number(day_key), await self.state.get_number(month_key)


def _until_next_day(now: float) -> float:
    day = datetime.fromtimestamp(now, UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return (day + timedelta(days=1)).timestamp() - now


def _until_next_month(now: float) -> float:
    d = datetime.fromtimestamp(now, UTC)
    start = datetime(d.year + (d.month == 12), d.month % 12 + 1, 1, tzinfo=UTC)
    return start.timestamp() - now


def estimate_tokens(body_bytes: int, max_tokens: int | None) -> int:
    """A cheap upper-ish estimate before the call: ~4 bytes per token plus the output budget."""
    return body_bytes // 4 + (max_tokens or 0)
