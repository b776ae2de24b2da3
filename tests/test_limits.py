"""Budgets and rate limits: windows, Retry-After, per-key overrides, downgrade, and one budget
shared by two limiters (two replicas) through a real redis-server."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import require_binary
from redisproc import RedisServer

from policies.access import ApiKey, LimitSettings
from router.access.auth import Client
from router.access.limits import Limiter, LimitExceeded, estimate_tokens
from router.state import MemoryState, open_state

NOW = datetime(2026, 11, 26, 23, 59, 30, tzinfo=UTC).timestamp()


class Clock:
    def __init__(self, t: float = NOW) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def limiter(clock: Clock | None = None, **settings: object) -> Limiter:
    return Limiter(LimitSettings(**settings), MemoryState(),  # type: ignore[arg-type]
                   cheapest_tier="small", clock=clock or Clock())


async def test_requests_per_minute_with_retry_after() -> None:
    clock = Clock()
    lim = limiter(clock, requests_per_minute=3)
    a = Client("a")
    for i in range(3):
        adm = await lim.admit(a, 10)
        assert adm.headers["x-ratelimit-remaining-requests"] == str(2 - i)
    with pytest.raises(LimitExceeded) as info:
        await lim.admit(a, 10)
    err = info.value
    assert err.status_code == 429 and err.code == "rate_limit_exceeded"
    assert err.headers() == {"retry-after": "30"}  # the window ends at the next minute
    await lim.admit(Client("b"), 10)  # other keys have their own window
    clock.t += 31
    await lim.admit(a, 10)


async def test_tokens_per_minute_counts_real_usage() -> None:
    left = 60.0 - time.time() % 60.0  # real clock, fixed one-minute windows: stay in one
    if left < 5.0:
        time.sleep(left + 0.05)
    lim = limiter(tokens_per_minute=1000)
    a = Client("a")
    adm = await lim.admit(a, 100)
    await lim.charge(adm, 0.0, tokens=950)  # the real count replaces the estimate
    with pytest.raises(LimitExceeded):
        await lim.admit(a, 100)


async def test_daily_budget_refuses_until_midnight() -> None:
    clock = Clock()
    lim = limiter(clock, usd_per_day=1.0)
    a = Client("a")
    adm = await lim.admit(a, 10)
    assert adm.downgrade_to is None
    await lim.charge(adm, 1.2, tokens=None)  # one request may overshoot; the next is refused
    with pytest.raises(LimitExceeded) as info:
        await lim.admit(a, 10)
    assert info.value.code == "insufficient_quota" and info.value.headers() == {"retry-after": "30"}
    assert (await lim.spent(a))[0] == pytest.approx(1.2)
    clock.t += 31  # a new UTC day
    await lim.admit(a, 10)


async def test_monthly_budget_and_per_key_override() -> None:
    key = ApiKey("rich", "0" * 64, usd_per_month=100.0)
    lim = limiter(usd_per_month=1.0)
    rich, poor = Client("rich", key), Client("poor")
    await lim.charge(await lim.admit(rich, 1), 5.0, None)
    await lim.charge(await lim.admit(poor, 1), 5.0, None)
    await lim.admit(rich, 1)
    with pytest.raises(LimitExceeded) as info:
        await lim.admit(poor, 1)
    assert "monthly" in info.value.message
    assert info.value.retry_after_s == pytest.approx(4 * 86400 + 30)  # until December 1st


async def test_downgrade_when_budget_runs_low() -> None:
    lim = limiter(usd_per_day=10.0, downgrade_at=0.25)
    a = Client("a")
    await lim.charge(await lim.admit(a, 1), 7.0, None)
    assert (await lim.admit(a, 1)).downgrade_to is None
    await lim.charge(await lim.admit(a, 1), 1.0, None)
    adm = await lim.admit(a, 1)
    assert adm.downgrade_to == "small"
    assert adm.headers["x-tierwise-budget-daily-remaining-usd"] == "2.000000"
    await lim.charge(adm, 2.5, None)
    with pytest.raises(LimitExceeded):  # spent: downgrade stops, refusal starts
        await lim.admit(a, 1)


def test_estimate_tokens() -> None:
    assert estimate_tokens(400, None) == 100 and estimate_tokens(400, 50) == 150


async def test_budget_spent_on_one_replica_is_enforced_on_the_other(tmp_path: Path) -> None:
    server = RedisServer(require_binary("redis-server"), tmp_path).start()
    s1, s2 = open_state(server.url), open_state(server.url)
    try:
        settings = LimitSettings(usd_per_day=1.0, requests_per_minute=5)
        one = Limiter(settings, s1, cheapest_tier="small")
        two = Limiter(settings, s2, cheapest_tier="small")
        a = Client("shared")
        await one.charge(await one.admit(a, 1), 1.5, None)
        with pytest.raises(LimitExceeded):
            await two.admit(a, 1)
        b = Client("rpm")
        for lim in (one, two, one, two, one):
            await lim.admit(b, 1)
        with pytest.raises(LimitExceeded):
            await two.admit(b, 1)
    finally:
        await s1.close()
        await s2.close()
        server.stop()
