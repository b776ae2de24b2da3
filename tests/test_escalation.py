"""Every escalation path, against a loopback upstream that misbehaves on purpose.

Router.serve is the request path of the proxy and the middleware; these tests call it directly
(real litellm calls over HTTP to tests/upstreams.py) and read what happened from the Routing.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from upstreams import MisbehavingUpstream, make_policy, tiers_toml

from policies import parse_policy
from router import Router, UpstreamError
from router.upstream.checks import check_response

pytestmark = pytest.mark.usefixtures("close_passthrough")


TRANSPORT = {"value": "auto"}


@pytest.fixture(autouse=True, params=["auto", "litellm"])
def transport(request: pytest.FixtureRequest) -> str:
    """Every test runs on both call paths: the pass-through ("auto" for these openai/ tiers)
    and litellm."""
    TRANSPORT["value"] = request.param
    return str(request.param)


def transport_line() -> str:
    return 'transport = "{}"\n'.format(TRANSPORT["value"])


def router_for(upstream: MisbehavingUpstream, *models: str, header: str = "",
               tier_extra: str = "") -> Router:
    names = ["small", "medium", "large"][:len(models)]
    tiers = [(n, m, 3.0 + i) for i, (n, m) in enumerate(zip(names, models, strict=True))]
    extra = tier_extra + transport_line()
    policy = make_policy(upstream.url, *tiers, header=header, tier_extra=extra)
    return Router(policy)


def ask(text: str = "hello", **fields: Any) -> dict[str, Any]:
    return {"model": "auto", "messages": [{"role": "user", "content": text}], **fields}


async def answer(router: Router, body: dict[str, Any]) -> tuple[str, Any]:
    """(text, routing) for a stream or non-stream request."""
    outcome = await router.serve(body)
    if outcome.stream is None:
        return outcome.response["choices"][0]["message"]["content"], outcome.routing
    chunks = [c async for c in outcome.stream]
    text = "".join((c["choices"][0]["delta"].get("content") or "") for c in chunks
                   if c.get("choices"))
    return text, outcome.routing


# --- (1) low confidence before the call ---------------------------------------------------------

async def test_low_confidence_goes_one_tier_up_before_any_call(
        upstream: MisbehavingUpstream) -> None:
    from classifiers import default_scorer

    prompt = "Prove that the square root of 2 is irrational."
    score = default_scorer().score(ask(prompt)["messages"])
    # Abilities placed around the real difficulty d: small is out of reach, medium clears the
    # quality target (0.7, logit 0.85) by a hair -- p = sigmoid(0.9) = 0.71 but its confidence
    # cdf(0.05 / spread) is ~0.5 < min_confidence 0.6 -> one tier up before any call.
    d = score.difficulty
    policy = make_policy(upstream.url, ("small", "ok-small", d - 1.0),
                         ("medium", "ok-medium", d + 0.9), ("large", "ok-large", d + 4.0),
                         tier_extra=transport_line())
    text, routing = await answer(Router(policy), ask(prompt))
    assert routing.decision.difficulty == pytest.approx(d, abs=1e-6)
    assert routing.decision.p_sufficient["medium"] >= 0.7 > routing.decision.p_sufficient["small"]
    assert routing.tier == "large" and routing.escalations == ["low_confidence:medium->large"]
    assert routing.headers()["x-tierwise-escalated"] == "low_confidence:medium->large"
    assert upstream.hits == {"ok-large": 1}  # the medium tier was never called
    assert text.startswith("[ok-large]")


# --- (2) context window -------------------------------------------------------------------------

async def test_tier_whose_context_window_is_too_small_is_skipped(
        upstream: MisbehavingUpstream) -> None:
    policy = make_policy(upstream.url, ("small", "ok-small", 3.0), ("large", "ok-large", 4.0),
                         tier_extra=transport_line())
    small = policy.tiers[0].__class__(**{**policy.tiers[0].__dict__, "context_window": 100})
    policy = policy.__class__(**{**policy.__dict__, "tiers": (small, policy.tiers[1])})
    router = Router(policy)
    text, routing = await answer(router, ask("word " * 200))
    assert routing.tier == "large"
    assert any("context window 100" in r for r in routing.decision.reasons)
    assert upstream.hits == {"ok-large": 1}


# --- (3) retryable upstream failures ------------------------------------------------------------

@pytest.mark.parametrize("model,reason", [
    ("fail500", "upstream_500"), ("fail503", "upstream_503"), ("fail429", "rate_limited")])
@pytest.mark.parametrize("stream", [False, True])
async def test_retryable_status_moves_to_the_next_tier_once(
        upstream: MisbehavingUpstream, model: str, reason: str, stream: bool) -> None:
    router = router_for(upstream, model, "ok-medium")
    text, routing = await answer(router, ask(stream=stream))
    assert routing.tier == "medium" and routing.escalations == [f"{reason}:small->medium"]
    assert text == "[ok-medium] answer to: hello"
    # max_retries=0: tierwise owns failover, the OpenAI SDK must not retry behind its back
    assert upstream.hits == {model: 1, "ok-medium": 1}


async def test_timeout_moves_to_the_next_tier(upstream: MisbehavingUpstream) -> None:
    router = router_for(upstream, "slow", "ok-medium", tier_extra="timeout_s = 0.5\n")
    started = time.monotonic()
    text, routing = await answer(router, ask())
    assert routing.escalations == ["timeout:small->medium"] and routing.tier == "medium"
    assert time.monotonic() - started < 3.0


async def test_connection_refused_moves_to_the_next_tier(upstream: MisbehavingUpstream) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    policy = make_policy(dead, ("small", "ok-small", 3.0), tier_extra=transport_line())
    live = make_policy(upstream.url, ("medium", "ok-medium", 4.0), tier_extra=transport_line())
    policy = policy.__class__(**{**policy.__dict__, "tiers": (*policy.tiers, *live.tiers)})
    router = Router(policy)
    for stream in (False, True):
        text, routing = await answer(router, ask(stream=stream))
        assert routing.escalations == ["connection_error:small->medium"], routing.escalations
        assert text.startswith("[ok-medium]")


async def test_non_retryable_error_is_not_escalated(upstream: MisbehavingUpstream) -> None:
    router = router_for(upstream, "fail400", "ok-medium")
    with pytest.raises(UpstreamError) as info:
        await router.serve(ask())
    assert info.value.status_code == 400 and upstream.hits == {"fail400": 1}
    assert info.value.attempts == ["upstream_400:small"]


async def test_escalations_are_bounded_by_max_escalations(upstream: MisbehavingUpstream) -> None:
    router = router_for(upstream, "fail500", "fail503", "ok-large",
                        header="max_escalations = 1\n")
    with pytest.raises(UpstreamError) as info:
        await router.serve(ask())
    assert info.value.attempts == ["upstream_500:small->medium", "upstream_503:medium"]
    assert info.value.status_code == 502
    assert upstream.hits == {"fail500": 1, "fail503": 1}  # large was out of budget


# --- (4) response checks (non-stream) -----------------------------------------------------------

@pytest.mark.parametrize("model,check,fields", [
    ("empty", "empty", {}),
    ("length", "length", {}),
    ("badjson", "json", {"response_format": {"type": "json_object"}}),
    ("refuse", "refusal", {}),
])
async def test_failed_check_re_asks_the_next_tier(upstream: MisbehavingUpstream, model: str,
                                                  check: str, fields: dict[str, Any]) -> None:
    router = router_for(upstream, model, "ok-medium")
    text, routing = await answer(router, ask(**fields))
    assert routing.escalations == [f"{check}:small->medium"] and routing.tier == "medium"
    assert upstream.hits == {model: 1, "ok-medium": 1}


async def test_length_with_client_max_tokens_is_the_clients_choice(
        upstream: MisbehavingUpstream) -> None:
    router = router_for(upstream, "length", "ok-medium")
    text, routing = await answer(router, ask(max_tokens=5))
    assert routing.tier == "small" and not routing.escalated
    assert text.startswith("This answer was cut off")


async def test_invalid_json_is_fine_when_no_json_was_asked(upstream: MisbehavingUpstream) -> None:
    router = router_for(upstream, "badjson", "ok-medium")
    _, routing = await answer(router, ask())
    assert routing.tier == "small" and not routing.escalated


async def test_checks_can_be_switched_off_by_policy(upstream: MisbehavingUpstream) -> None:
    router = router_for(upstream, "refuse", "ok-medium", header='response_checks = ["empty"]\n')
    _, routing = await answer(router, ask())
    assert routing.tier == "small" and not routing.escalated


async def test_last_tier_failing_a_check_still_answers_and_says_so(
        upstream: MisbehavingUpstream) -> None:
    router = router_for(upstream, "refuse", "empty")
    text, routing = await answer(router, ask())
    assert routing.escalations == ["refusal:small->medium"] and text == ""
    assert routing.headers()["x-tierwise-check-failed"] == "empty"


# --- streams: escalate only before the first byte -----------------------------------------------

async def test_stream_that_ends_empty_escalates_before_the_first_byte(
        upstream: MisbehavingUpstream) -> None:
    router = router_for(upstream, "empty", "ok-medium")
    text, routing = await answer(router, ask(stream=True))
    assert routing.escalations == ["empty:small->medium"] and text.startswith("[ok-medium]")


@pytest.mark.parametrize("model", ["midfail", "cut"])
async def test_stream_failing_after_the_first_byte_reports_in_band(
        upstream: MisbehavingUpstream, model: str) -> None:
    router = router_for(upstream, model, "ok-medium")
    outcome = await router.serve(ask(stream=True))
    assert outcome.routing.tier == "small"  # output had begun: committed to this tier
    received = []
    with pytest.raises(UpstreamError) as info:
        async for chunk in outcome.stream:
            received.append(chunk)
    assert received and info.value.attempts[-1].endswith(":small")
    assert upstream.hits == {model: 1}


async def test_non_stream_follower_of_a_broken_stream_still_escalates(
        upstream: MisbehavingUpstream) -> None:
    import asyncio

    router = router_for(upstream, "midfail", "ok-medium")
    body = ask("shared and broken")
    leader = await router.serve({**body, "stream": True})  # its call is now in flight
    follower = asyncio.ensure_future(router.serve(body))
    with pytest.raises(UpstreamError):
        async for _ in leader.stream:
            pass
    outcome = await follower
    assert outcome.routing.coalesced is False and outcome.routing.tier == "medium"
    assert outcome.routing.escalations[0].endswith(":small->medium")
    assert upstream.hits == {"midfail": 1, "ok-medium": 1}


async def test_stream_refusal_is_not_re_asked(upstream: MisbehavingUpstream) -> None:
    router = router_for(upstream, "refuse", "ok-medium")
    text, routing = await answer(router, ask(stream=True))
    assert routing.tier == "small" and text.startswith("I'm sorry")


# --- the checks themselves ----------------------------------------------------------------------

def _resp(content: Any, finish: str = "stop", **message: Any) -> dict[str, Any]:
    return {"choices": [{"index": 0, "finish_reason": finish,
                         "message": {"role": "assistant", "content": content, **message}}]}


ALL = ("empty", "length", "json", "refusal")


@pytest.mark.parametrize("response,body,expected", [
    (_resp("Paris."), {}, None),
    (_resp("  "), {}, "empty"),
    (_resp(None, tool_calls=[{"id": "c"}]), {}, None),
    (_resp(None, refusal="no"), {}, "refusal"),
    ({"choices": []}, {}, "empty"),
    (_resp("cut", "length"), {}, "length"),
    (_resp("cut", "length"), {"max_completion_tokens": 3}, None),
    (_resp('{"a": 1}'), {"response_format": {"type": "json_object"}}, None),
    (_resp("{a: 1}"), {"response_format": {"type": "json_schema", "json_schema": {}}}, "json"),
    (_resp("{a: 1}"), {"response_format": {"type": "text"}}, None),
    (_resp("I cannot help with that request."), {}, "refusal"),
    (_resp("Sorry, but I won't assist with this."), {}, "refusal"),
    (_resp("I can't remember the date, but the treaty was signed in spring."), {}, None),
    (_resp("Here is how: " + "step " * 200 + "I can't help you more."), {}, None),
])
def test_check_response(response: dict[str, Any], body: dict[str, Any],
                        expected: str | None) -> None:
    assert check_response(response, body, ALL) == expected


# --- deployments inside a tier: litellm.Router retries and cools down, tierwise escalates -------

def pool_router(upstream: MisbehavingUpstream, *deployments: str) -> Router:
    pool = tiers_toml(upstream.url, ("pool", "ok-a", 3.0)) + "deployments = [{}]\n".format(
        ", ".join(f'{{ model = "openai/{m}" }}' for m in deployments)) + \
        "retries = 1\ncooldown_s = 30\n"
    large = tiers_toml(upstream.url, ("large", "ok-large", 4.0)).replace(
        "input_per_mtok = 1", "input_per_mtok = 5")
    policy = parse_policy('name = "pool"\nquality_target = 0.7\n' + pool + large)
    return Router(policy)


async def test_a_failing_deployment_is_retried_on_another_and_cooled_down(
        upstream: MisbehavingUpstream) -> None:
    router = pool_router(upstream, "fail500", "ok-b")
    for i in range(6):
        text, routing = await answer(router, ask(f"pool {i}", stream=bool(i % 2)))
        assert routing.tier == "pool" and not routing.escalated, (i, routing.escalations)
        assert text == f"[ok-b] answer to: pool {i}"
    assert upstream.hits["ok-b"] == 6
    assert upstream.hits["fail500"] <= 2  # cooled down after failing (once per call kind)


async def test_a_tier_whose_deployments_all_fail_escalates(upstream: MisbehavingUpstream) -> None:
    router = pool_router(upstream, "fail500", "fail503")
    text, routing = await answer(router, ask("pool down"))
    assert routing.tier == "large" and routing.escalations[0].endswith(":pool->large")
    assert routing.escalations[0].startswith("upstream_5")
    assert text == "[ok-large] answer to: pool down"
