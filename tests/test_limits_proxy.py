"""Budgets, rate limits, downgrade and input caps at the proxy over real HTTP."""

from __future__ import annotations

import time

import httpx
from guardkit import chat, guarded_proxy, sim_policy

from router.access.auth import hash_key

KEY = "sk-limits-test-1"
AUTH = {"authorization": f"Bearer {KEY}"}


def keyed(extra: str) -> str:
    return sim_policy(f'[[auth.keys]]\nid = "t"\nsha256 = "{hash_key(KEY)}"\n' + extra)


def post(url: str, body: object, **kw: object) -> httpx.Response:
    return httpx.post(url + "/v1/chat/completions", json=body, headers=AUTH, timeout=30, **kw)


def start_of_a_window(margin_s: float = 15.0) -> None:
    """Rate limits use fixed one-minute windows (router/access/limits.py): a test whose requests
    must all land in one window waits for the next one when fewer than ``margin_s`` seconds are
    left."""
    left = 60.0 - time.time() % 60.0
    if left < margin_s:
        time.sleep(left + 0.05)


def test_requests_per_minute_429_with_retry_after() -> None:
    start_of_a_window()
    with guarded_proxy(keyed("[limits]\nrequests_per_minute = 3\n")) as (url, _):
        codes = [post(url, chat(f"q{i}")).status_code for i in range(3)]
        assert codes == [200, 200, 200]
        r = post(url, chat("one more"))
        assert r.status_code == 429
        assert 1 <= int(r.headers["retry-after"]) <= 60
        assert r.json()["error"]["code"] == "rate_limit_exceeded"
        assert r.json()["error"]["type"] == "rate_limit_error"


def test_daily_budget_refuses_then_downgrade_pins_the_cheap_tier() -> None:
    # sim prices are $1000-4000 per 1M tokens: one answer costs a few cents
    with guarded_proxy(keyed("[limits]\nusd_per_day = 0.05\n")) as (url, guard):
        spent = 0
        for i in range(50):
            r = post(url, chat(f"question {i} " + "word " * 20))
            if r.status_code == 429:
                break
            assert r.status_code == 200
            spent += 1
        assert 0 < spent < 50
        assert r.json()["error"]["code"] == "insufficient_quota"
        assert int(r.headers["retry-after"]) > 0
    extra = ('[limits]\nusd_per_day = 0.5\ndowngrade_at = 0.9\n')
    with guarded_proxy(keyed(extra)) as (url, guard):
        first = post(url, chat("x", model="large"))
        assert first.headers["x-tierwise-tier"] == "large"
        assert "x-tierwise-downgraded" not in first.headers
        for _ in range(20):  # until less than 90% of the budget is left
            r = post(url, chat("y " * 30, model="large"))
            if r.headers.get("x-tierwise-downgraded"):
                break
        assert r.status_code == 200
        assert r.headers["x-tierwise-downgraded"] == "budget:small"
        assert r.headers["x-tierwise-tier"] == "small"


def test_input_caps() -> None:
    extra = "[limits]\nmax_body_bytes = 2048\nmax_messages = 2\nmax_tokens = 100\n"
    with guarded_proxy(keyed(extra)) as (url, _):
        big = post(url, chat("x" * 5000))
        assert big.status_code == 413 and big.json()["error"]["code"] == "request_too_large"
        many = post(url, {"model": "auto", "messages": [{"role": "user", "content": "a"}] * 3})
        assert many.status_code == 400 and many.json()["error"]["param"] == "messages"
        greedy = post(url, chat("a", max_tokens=101))
        assert greedy.status_code == 400 and greedy.json()["error"]["param"] == "max_tokens"
        assert post(url, chat("a", max_tokens=100)).status_code == 200
