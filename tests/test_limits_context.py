"""Input limits name the `[limits]` key that raises them, and context windows are explained
(issue 16, item 5): a context-window move is in x-tierwise-escalated, and a prompt over a
pinned tier's window is a clear 400 before any call. Real proxy and middleware on loopback."""

from __future__ import annotations

import httpx
import pytest
from guardkit import LengthScorer, chat, guarded_proxy, serve, sim_policy
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from policies import parse_policy
from router import Router, TierwiseMiddleware
from router.serving.validation import parse_body

# small holds ~100 tokens (LengthScorer: chars / 4), large much more. LengthScorer rates every
# request easy, so the score alone would choose small.
WINDOWS = """
[[tiers]]
name = "small"
model = "openai/sim-small"
api_base = "builtin"
ability = 1.0
context_window = 100
input_per_mtok = 0.1
output_per_mtok = 0.1

[[tiers]]
name = "medium"
model = "openai/sim-medium"
api_base = "builtin"
ability = 2.0
context_window = 100000
input_per_mtok = 1.0
output_per_mtok = 1.0

[[tiers]]
name = "large"
model = "openai/sim-large"
api_base = "builtin"
ability = 3.0
context_window = 100000
input_per_mtok = 2.0
output_per_mtok = 2.0
"""

LONG = "word " * 200  # ~250 tokens for LengthScorer: over small's window


def test_default_limits_name_the_key_that_raises_them() -> None:
    from policies.access import LimitSettings

    limits = LimitSettings()
    with pytest.raises(Exception) as big:
        parse_body(b" " * (4 * 1024 * 1024 + 1), limits)
    assert big.value.status_code == 413  # type: ignore[attr-defined]
    assert "[limits] max_body_bytes in the policy (default 4194304) raises it" in str(big.value)
    long = f'{{"messages": [{{"role": "user", "content": "{"x" * 1_000_001}"}}]}}'.encode()
    with pytest.raises(Exception) as chars:
        parse_body(long, limits)
    assert "the limit is 1000000 ([limits] max_content_chars in the policy (default 1000000) " \
           "raises it)" in str(chars.value)
    many = b'{"messages": [' + b",".join([b'{"role": "user", "content": "x"}'] * 1001) + b"]}"
    with pytest.raises(Exception) as count:
        parse_body(many, limits)
    assert "[limits] max_messages in the policy" in str(count.value)


def test_proxy_413_and_400_name_the_limits_key() -> None:
    policy = sim_policy("[limits]\nmax_body_bytes = 2048\nmax_tokens = 100\n")
    with guarded_proxy(policy) as (url, _):
        big = httpx.post(url + "/v1/chat/completions", json=chat("x" * 4000), timeout=30)
        assert big.status_code == 413
        error = big.json()["error"]
        assert error["code"] == "request_too_large"
        assert "larger than 2048 bytes; [limits] max_body_bytes in the policy" in error["message"]
        asks = httpx.post(url + "/v1/chat/completions", json=chat(max_tokens=500), timeout=30)
        assert asks.status_code == 400
        assert "at most 100 ([limits] max_tokens in the policy)" in asks.json()["error"]["message"]


def test_middleware_honours_the_policy_body_limit() -> None:
    async def endpoint(request: Request) -> Response:
        return JSONResponse({"app": True})

    app = Starlette(routes=[Route("/v1/chat/completions", endpoint, methods=["POST"])])
    policy = parse_policy(sim_policy("[limits]\nmax_body_bytes = 1024\n"))
    app.add_middleware(TierwiseMiddleware, policy=policy, scorer=LengthScorer())
    with serve(app) as url:
        big = httpx.post(url + "/v1/chat/completions", json=chat("x" * 2000), timeout=30)
        assert big.status_code == 413
        assert "[limits] max_body_bytes" in big.json()["error"]["message"]
        small = httpx.post(url + "/v1/chat/completions", json={**chat(), "model": "x"},
                           timeout=30)
        assert small.status_code == 200 and small.json() == {"app": True}


def test_context_window_move_is_in_the_escalated_header() -> None:
    with guarded_proxy(f'name = "w"\n{WINDOWS}') as (url, _):
        short = httpx.post(url + "/v1/chat/completions", json=chat("hi"), timeout=30)
        assert short.headers["x-tierwise-tier"] == "small"
        assert short.headers["x-tierwise-escalated"] == "no"
        long = httpx.post(url + "/v1/chat/completions", json=chat(LONG), timeout=30)
        assert long.status_code == 200, long.text
        assert long.headers["x-tierwise-tier"] == "medium"
        assert long.headers["x-tierwise-escalated"] == "context_window:small->medium"


def test_context_window_move_does_not_spend_the_escalation_budget() -> None:
    router = Router(parse_policy(f'max_escalations = 1\n{WINDOWS}'), scorer=LengthScorer())
    decision = router.route(LONG)
    assert decision.tier == "medium"
    assert decision.escalations == ("context_window:small->medium",)
    assert router.plan(decision) == ["medium", "large"]  # the one escalation is still there
    # a tier the score would not have chosen anyway is skipped without an escalation
    hard = Router(parse_policy(WINDOWS.replace("ability = 1.0", "ability = -9.0")),
                  scorer=LengthScorer())
    assert hard.route(LONG).escalations == ()
    assert any("skip small" in r for r in hard.route(LONG).reasons)


def test_prompt_over_a_pinned_tiers_window_is_a_clear_400() -> None:
    with guarded_proxy(f'name = "w"\n{WINDOWS}') as (url, _):
        pinned = httpx.post(url + "/v1/chat/completions", json={**chat(LONG), "model": "small"},
                            timeout=30)
        assert pinned.status_code == 400
        error = pinned.json()["error"]
        assert error["code"] == "no_eligible_tier"
        assert "the pinned tier 'small' has a context window of 100 tokens" in error["message"]
        assert "send model 'auto'" in error["message"]
        header = httpx.post(url + "/v1/chat/completions", json=chat(LONG), timeout=30,
                            headers={"x-tierwise-tier": "small"})
        assert header.status_code == 400
        fits = httpx.post(url + "/v1/chat/completions", json={**chat("hi"), "model": "small"},
                          timeout=30)
        assert fits.status_code == 200 and fits.headers["x-tierwise-tier"] == "small"
