"""Per-key budgets (USD per UTC day and month) and rate limits (requests and tokens per minute).

Counters live in the shared State (router.state), so with ``state = "redis://..."`` every replica
enforces the same numbers. Rate limits use fixed one-minute windows (one counter per key and
minute, expiring with it): cheap, one round trip, and exact across replicas; a burst at a window
edge can reach twice the limit over two seconds, the usual price of fixed windows.

Budgets and the tokens-per-minute limit are reserved at admission, in one atomic step
(State.reserve: a Lua script on Redis): a request's estimated cost and tokens are added to the
counters only if that keeps them within their limits, else it is refused (429
``insufficient_quota`` with Retry-After until the budget's period ends, or
``rate_limit_exceeded``). When the request is done, `charge` settles the reservation to the real
cost and tokens (a request that got no answer gives it back). So 200 requests arriving at once
cannot all pass a check that none of them has counted yet: admission stops when the reserved
spend reaches the budget, and the final spend is off by at most the estimates' error on the
admitted requests. With ``[limits] downgrade_at`` a request goes to the cheapest tier while less
than that share of the budget is left.

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
# A budget admits a request while more than this is left of it after the reservations of the
# requests in flight: admission stops when the reserved spend reaches the budget, and the last
# request admitted may pass it by its own cost (no more: the next one sees nothing left).
BUDGET_ROOM_USD = 1e-9


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
    reserved_usd: float = 0.0  # the estimated cost held on the budgets until `charge` settles
    reserved_tokens: bool = False  # estimated_tokens are held on the tokens-per-minute counter
    # the counters the reservation was made on (settled there even if a day or minute ends)
    keys: tuple[str, str, str] | None = None


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

    async def admit(self, client: Client, estimated_tokens: int,
                    estimated_usd: float = 0.0) -> Admission:
        """Count the request and reserve its estimated cost and tokens; LimitExceeded if a
        limit is reached, else an Admission (pass it to `charge` when the request is done)."""
        lim = self.limits_for(client)
        admission = Admission(client, estimated_tokens)
        if lim == _UNLIMITED:  # nothing to count: no state round trips, no keys to build
            return admission
        now = self.clock()
        req_key, tok_key, day_key, month_key, window_left = self._keys(client, now)
        # (key, amount, limit, ttl, room, the error if that counter refuses): a budget admits
        # while anything of it is left unreserved (BUDGET_ROOM_USD), the tokens-per-minute
        # limit only a request whose whole estimate fits (state.reserve)
        held: list[tuple[str, float, float, float, float, LimitExceeded]] = []
        for limit, key, name, period_left, ttl in (
                (lim.day, day_key, "daily", _until_next_day(now), 2 * 86400),
                (lim.month, month_key, "monthly", _until_next_month(now), 32 * 86400)):
            if limit is None:
                continue
            # read for the headers and the downgrade; the admission itself is the reservation
            spent = await self.state.get_number(key)
            left = limit - spent
            admission.headers[f"x-tierwise-budget-{name}-remaining-usd"] = f"{max(left, 0):.6f}"
            exceeded = LimitExceeded(
                f"The {name} budget of ${limit:g} for key {client.id!r} is spent.",
                retry_after_s=period_left, code="insufficient_quota")
            if left <= 0:
                raise exceeded
            if self.settings.downgrade_at is not None and left < self.settings.downgrade_at * limit:
                admission.downgrade_to = self.downgrade_tier
            held.append((key, estimated_usd, limit, ttl, BUDGET_ROOM_USD, exceeded))
        if lim.rpm is not None:
            used = await self.state.incr(req_key, 1, WINDOW_S + 5)
            admission.headers["x-ratelimit-limit-requests"] = str(lim.rpm)
            admission.headers["x-ratelimit-remaining-requests"] = str(max(lim.rpm - int(used), 0))
            if used > lim.rpm:
                raise LimitExceeded(
                    f"Rate limit reached for key {client.id!r}: {lim.rpm} requests per minute.",
                    retry_after_s=window_left, code="rate_limit_exceeded")
        if lim.tpm is not None:
            used_tokens = await self.state.get_number(tok_key)  # for the header
            admission.headers["x-ratelimit-limit-tokens"] = str(lim.tpm)
            admission.headers["x-ratelimit-remaining-tokens"] = str(
                max(lim.tpm - int(used_tokens) - estimated_tokens, 0))
            held.append((tok_key, float(estimated_tokens), float(lim.tpm), WINDOW_S + 5,
                         float(estimated_tokens), LimitExceeded(
                             f"Rate limit reached for key {client.id!r}: {lim.tpm} tokens per "
                             "minute.", retry_after_s=window_left, code="rate_limit_exceeded")))
        if held:
            refused = await self.state.reserve([entry[:5] for entry in held])
            if refused:
                raise held[refused - 1][5]
            admission.reserved_usd = estimated_usd if lim.day or lim.month else 0.0
            admission.reserved_tokens = lim.tpm is not None
            admission.keys = (tok_key, day_key, month_key)
        return admission

    async def charge(self, admission: Admission, cost_usd: float, tokens: int | None) -> None:
        """Settle a finished request: its real cost against the budgets and its real token
        count, in place of what was reserved at admission (`tokens` None: keep the estimate).
        A cost that is not a finite number >= 0 keeps the reservation as the charge."""
        lim = self.limits_for(admission.client)
        if not self.charges(lim):
            return
        if admission.keys is not None:
            tok_key, day_key, month_key = admission.keys
        else:
            _, tok_key, day_key, month_key, _ = self._keys(admission.client, self.clock())
        if not (math.isfinite(cost_usd) and cost_usd >= 0):
            cost_usd = admission.reserved_usd
        delta, admission.reserved_usd = cost_usd - admission.reserved_usd, 0.0
        if delta != 0:
            if lim.day is not None:
                await self.state.incr(day_key, delta, 2 * 86400)
            if lim.month is not None:
                await self.state.incr(month_key, delta, 32 * 86400)
        if admission.reserved_tokens and tokens is not None:
            admission.reserved_tokens = False
            if tokens != admission.estimated_tokens:
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


# The output a request without max_tokens is assumed to ask for, when its cost is estimated.
DEFAULT_OUTPUT_TOKENS = 512


def estimate_cost(body_bytes: int, max_tokens: int | None, input_per_mtok: float,
                  output_per_mtok: float) -> float:
    """The cost reserved on the budgets at admission, before the tier is known: ~4 bytes per
    prompt token and the output budget (DEFAULT_OUTPUT_TOKENS without one), at the prices given
    (the guard passes the policy's highest, so an estimate is rarely short)."""
    output = max_tokens if max_tokens is not None else DEFAULT_OUTPUT_TOKENS
    return (body_bytes // 4 * input_per_mtok + output * output_per_mtok) / 1e6
