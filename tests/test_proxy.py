"""The proxy (`tierwise serve`'s app) under uvicorn on loopback, driven by the real openai client.

Tiers point at the misbehaving test upstream (tests/upstreams.py); pinning a tier by name picks
its behaviour: small/medium/large answer, echo returns the body it received, fail400/fail500
fail. The proxy runs once per session in a uvicorn thread, lifespan on (so /readyz is real).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from upstreams import TIERS, MisbehavingUpstream, make_policy, start_proxy

from classifiers import default_scorer
from policies.decide import decide
from router.serving.proxy import create_app

TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]
@pytest.fixture
def client(proxy: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=proxy + "/v1", api_key="unused", max_retries=0)


def ask(text: str = "What is 2+2?") -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


# --- chat completions ---------------------------------------------------------------------------

def test_non_stream_routes_and_explains(client: openai.OpenAI, upstream: Any) -> None:
    raw = client.chat.completions.with_raw_response.create(model="auto", messages=ask())
    completion = raw.parse()
    assert completion.choices[0].message.content == "[ok-small] answer to: What is 2+2?"
    assert completion.usage is not None and completion.usage.total_tokens == 30
    assert raw.headers["x-tierwise-tier"] == "small"
    assert raw.headers["x-tierwise-model"] == "openai/ok-small"
    expected = default_scorer().score(ask())
    assert float(raw.headers["x-tierwise-difficulty"]) == pytest.approx(expected.difficulty,
                                                                        abs=1e-4)
    assert raw.headers["x-tierwise-escalated"] == "no"
    assert raw.headers["x-tierwise-coalesced"] == "no"
    assert upstream.hits == {"ok-small": 1}


def test_stream_with_usage(client: openai.OpenAI) -> None:
    with client.chat.completions.with_streaming_response.create(
            model="auto", messages=ask("Tell me a story"), stream=True,
            stream_options={"include_usage": True}) as raw:
        assert raw.headers["x-tierwise-tier"] == "small"
        assert raw.headers["content-type"].startswith("text/event-stream")
        chunks = list(raw.parse())
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "[ok-small] answer to: Tell me a story"
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 30


def test_stream_without_usage_gets_no_usage_chunk(client: openai.OpenAI) -> None:
    chunks = list(client.chat.completions.create(model="auto", messages=ask(), stream=True))
    assert chunks and all(c.choices for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_tools(client: openai.OpenAI, upstream: Any) -> None:
    completion = client.chat.completions.create(
        model="auto", messages=ask("weather in Paris?"), tools=TOOLS, tool_choice="auto")
    call = completion.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather" and json.loads(call.function.arguments)
    assert completion.choices[0].finish_reason == "tool_calls"
    sent = upstream.bodies[-1]
    assert sent["tools"] == TOOLS and sent["tool_choice"] == "auto"
    chunks = list(client.chat.completions.create(
        model="auto", messages=ask("weather in Paris?"), tools=TOOLS, stream=True))
    calls = [c.choices[0].delta.tool_calls for c in chunks if c.choices and
             c.choices[0].delta.tool_calls]
    assert calls and calls[0][0].function.name == "get_weather"


def test_an_agent_step_goes_where_its_request_went(client: openai.OpenAI, upstream: Any) -> None:
    """The step after a tool call is routed like the request it serves (feature version 18):
    same tier and difficulty, over real HTTP, with the tool's result in the body sent on."""
    first = client.chat.completions.with_raw_response.create(
        model="auto", messages=ask("weather in Paris?"), tools=TOOLS)
    call = first.parse().choices[0].message.tool_calls[0]
    step = [*ask("weather in Paris?"),
            {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
            {"role": "tool", "tool_call_id": call.id, "content": json.dumps({"temp_c": 18})}]
    second = client.chat.completions.with_raw_response.create(
        model="auto", messages=step, tools=TOOLS)
    for name in ("x-tierwise-tier", "x-tierwise-difficulty", "x-tierwise-escalated"):
        assert second.headers[name] == first.headers[name], name
    assert upstream.bodies[-1]["messages"][-1]["content"] == json.dumps({"temp_c": 18})


def test_json_mode(client: openai.OpenAI, upstream: Any) -> None:
    completion = client.chat.completions.create(
        model="auto", messages=ask("json please"), response_format={"type": "json_object"})
    assert json.loads(completion.choices[0].message.content)["answer"].startswith("[ok-small]")
    assert upstream.bodies[-1]["response_format"] == {"type": "json_object"}


FIELDS: dict[str, Any] = dict(
    temperature=0.25, top_p=0.5, max_tokens=77, max_completion_tokens=70, n=1,
    stop=["\n\n"], seed=7, user="user-42", presence_penalty=0.1, frequency_penalty=0.2,
    logit_bias={"50256": -100}, logprobs=True, top_logprobs=2, parallel_tool_calls=False,
    tools=TOOLS, tool_choice="none", response_format={"type": "text"},
    metadata={"team": "search"}, store=False, service_tier="auto", reasoning_effort="low")


def test_every_request_field_passes_through_untouched(client: openai.OpenAI,
                                                      upstream: Any) -> None:
    fields = FIELDS
    completion = client.chat.completions.create(
        model="echo", messages=ask(), extra_body={"tierwise_test_field": {"nested": [1, 2]}},
        **fields)
    received = json.loads(completion.choices[0].message.content)
    assert received["model"] == "echo"
    for key, value in {**fields, "tierwise_test_field": {"nested": [1, 2]}}.items():
        assert received.get(key) == value, key
    assert received["messages"] == ask()


async def test_every_field_passes_through_litellm_too(upstream: MisbehavingUpstream) -> None:
    """The litellm call path (non-OpenAI providers, `transport = "litellm"`) forwards them all
    as well: litellm drops `user`/`metadata` and refuses unlisted fields unless told."""
    from router import Router

    policy = make_policy(upstream.url, ("echo", "echo", 3.0), tier_extra='transport = "litellm"\n')
    router = Router(policy)
    body = {"model": "auto", "messages": ask(), **FIELDS, "tierwise_test_field": [1]}
    for stream in (False, True):
        outcome = await router.serve({**body, "stream": stream})
        if outcome.stream is not None:
            assert [c async for c in outcome.stream]
        received = upstream.bodies[-1]
        for key, value in FIELDS.items():
            assert received.get(key) == value, key
        assert received["tierwise_test_field"] == [1] and received.get("stream", False) is stream


# --- pinning ------------------------------------------------------------------------------------

def test_pin_by_model_and_by_header(client: openai.OpenAI, upstream: Any) -> None:
    raw = client.chat.completions.with_raw_response.create(model="large", messages=ask())
    assert raw.headers["x-tierwise-tier"] == "large"
    assert raw.parse().choices[0].message.content.startswith("[ok-large]")
    raw = client.chat.completions.with_raw_response.create(
        model="auto", messages=ask(), extra_headers={"x-tierwise-tier": "medium"})
    assert raw.headers["x-tierwise-tier"] == "medium"
    raw = client.chat.completions.with_raw_response.create(model="openai/ok-large",
                                                           messages=ask())
    assert raw.headers["x-tierwise-tier"] == "large"  # a tier's model string pins it too
    assert upstream.hits == {"ok-large": 2, "ok-medium": 1}


# --- errors -------------------------------------------------------------------------------------

def test_unknown_model_is_an_openai_404ish_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="gpt-17", messages=ask())
    body = info.value.body
    assert isinstance(body, dict) and body["code"] == "model_not_found"
    assert "auto" in body["message"] and body["param"] == "model"


def test_bad_messages_name_the_field(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="auto",
                                       messages=[{"role": "wizard", "content": "x"}])
    assert info.value.body["param"] == "messages[0].role"  # type: ignore[index]


def test_unknown_pin_header_is_a_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="auto", messages=ask(),
                                       extra_headers={"x-tierwise-tier": "huge"})
    assert info.value.body["param"] == "x-tierwise-tier"  # type: ignore[index]


def test_upstream_client_error_keeps_its_status(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="fail400", messages=ask())
    assert info.value.body["type"] == "upstream_error"  # type: ignore[index]


def test_upstream_failure_without_fallback_is_a_502(client: openai.OpenAI) -> None:
    for stream in (False, True):
        with pytest.raises(openai.APIStatusError) as info:
            client.chat.completions.create(model="fail500", messages=ask(), stream=stream)
        assert info.value.status_code == 502
        assert "fails on purpose" in info.value.body["message"]  # type: ignore[index]
        assert "Traceback" not in str(info.value.body)


@pytest.mark.parametrize("payload,fragment", [
    (b"{not json", "not valid JSON"), (b"[1, 2]", "JSON object"),
    (b'{"model": "auto"}', "'messages'")])
def test_malformed_bodies(proxy: str, payload: bytes, fragment: str) -> None:
    response = httpx.post(proxy + "/v1/chat/completions", content=payload,
                          headers={"content-type": "application/json"})
    assert response.status_code == 400
    error = response.json()["error"]
    assert fragment in error["message"] and error["type"] == "invalid_request_error"


def test_unknown_path_and_method_are_openai_errors(proxy: str) -> None:
    response = httpx.get(proxy + "/v1/completions")
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
    response = httpx.get(proxy + "/v1/chat/completions")
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"


# --- the other endpoints ------------------------------------------------------------------------

def test_models_lists_alias_and_tiers(client: openai.OpenAI) -> None:
    ids = [m.id for m in client.models.list()]
    assert ids == ["auto", *(name for name, _, _ in TIERS)]


def test_route_is_the_decision_only(proxy: str, upstream: Any) -> None:
    body = {"model": "auto", "messages": ask("Prove that there are infinitely many primes.")}
    response = httpx.post(proxy + "/v1/route", json=body)
    decision = response.json()
    # the same decision the router makes in-process with the proxy's policy (conftest.proxy)
    score = default_scorer().score(body["messages"])
    policy = make_policy("http://127.0.0.1:1", *TIERS, header="max_escalations = 1\n")
    assert response.status_code == 200 and decision["tier"] == decide(policy, score).tier
    assert set(decision["p_sufficient"]) == {name for name, _, _ in TIERS}
    assert decision["difficulty"] == pytest.approx(score.difficulty, abs=1e-4)
    pinned = httpx.post(proxy + "/v1/route", json=body, headers={"x-tierwise-tier": "large"})
    assert pinned.json()["tier"] == "large"
    assert pinned.json()["reasons"] == ["pinned to large by the request"]
    assert not upstream.hits


def test_health_and_readiness(proxy: str) -> None:
    assert httpx.get(proxy + "/healthz").json()["status"] == "ok"
    ready = httpx.get(proxy + "/readyz")
    assert ready.status_code == 200 and ready.json()["ready"] is True
    assert set(ready.json()["coalescing"]) >= {"calls", "coalesced", "cancelled"}


# --- escalation is visible in the headers -------------------------------------------------------

@pytest.fixture(scope="module")
def failing_first(bad_upstream: MisbehavingUpstream) -> Iterator[str]:
    policy = make_policy(bad_upstream.url, ("small", "fail500", 3.0),
                         ("medium", "ok-medium", 4.0))
    server = start_proxy(create_app(policy))
    yield server.url
    server.stop()


def test_escalation_headers(failing_first: str, upstream: Any) -> None:
    client = openai.OpenAI(base_url=failing_first + "/v1", api_key="unused", max_retries=0)
    raw = client.chat.completions.with_raw_response.create(model="auto", messages=ask())
    assert raw.headers["x-tierwise-tier"] == "medium"
    assert raw.headers["x-tierwise-escalated"] == "upstream_500:small->medium"
    with client.chat.completions.with_streaming_response.create(
            model="auto", messages=ask(), stream=True) as raw:
        assert raw.headers["x-tierwise-escalated"] == "upstream_500:small->medium"
        text = "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)
    assert text == "[ok-medium] answer to: What is 2+2?"
    assert upstream.hits == {"fail500": 2, "ok-medium": 2}


# --- the accounting hook (issue 5 fills it) -----------------------------------------------------

def test_listener_cost_reaches_the_headers(bad_upstream: MisbehavingUpstream) -> None:
    from router import Router

    router = Router(make_policy(bad_upstream.url, ("small", "ok-small", 3.0)))
    seen: list[Any] = []

    def charge(routing: Any) -> None:
        seen.append(routing)
        routing.cost_usd = routing.usage["total_tokens"] * 1e-6
        routing.saved_usd = 0.5

    router.listeners.append(charge)
    server = start_proxy(create_app(router=router))
    try:
        client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
        raw = client.chat.completions.with_raw_response.create(model="auto", messages=ask())
        assert raw.headers["x-tierwise-cost-usd"] == "0.00003000"
        assert raw.headers["x-tierwise-saved-usd"] == "0.50000000"
        chunks = list(client.chat.completions.create(model="auto", messages=ask("s"),
                                                     stream=True))
        assert chunks and len(seen) == 2  # a stream's listener runs at its end
        assert seen[1].usage["total_tokens"] == 30  # usage was asked for, though not shown
        assert all(c.usage is None for c in chunks)
    finally:
        server.stop()
