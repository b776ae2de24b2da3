"""TierwiseMiddleware on a real Starlette app under uvicorn, both modes, with the openai client.

The app behind is a tiny OpenAI-compatible endpoint that says which model it was asked for, so a
test sees exactly what the middleware passed on; `app_calls` counts what reached it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route
from upstreams import MisbehavingUpstream, make_policy

from router import TierwiseMiddleware
from router.upstream.simulator import BackgroundServer

app_calls: list[dict[str, Any]] = []


async def app_chat(request: Request) -> Response:
    body = await request.json()
    app_calls.append({"body": body, "content-length": request.headers.get("content-length")})
    text = f"app answered as {body['model']}"
    head = {"id": "chatcmpl-app", "created": 1, "model": body["model"]}
    if body.get("stream"):
        async def events() -> Any:
            for piece in (text[:5], text[5:]):
                chunk = {**head, "object": "chat.completion.chunk",
                         "choices": [{"index": 0, "delta": {"content": piece},
                                      "finish_reason": None}]}
                yield f"data: {json.dumps(chunk)}\n\n"
            yield "data: [DONE]\n\n"
        return StreamingResponse(events(), media_type="text/event-stream")
    return JSONResponse({**head, "object": "chat.completion", "choices": [{
        "index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]})


async def hello(request: Request) -> Response:
    return PlainTextResponse("hello from the app")


def make_app(**middleware: Any) -> Starlette:
    app = Starlette(routes=[Route("/v1/chat/completions", app_chat, methods=["POST"]),
                            Route("/hello", hello)])
    app.add_middleware(TierwiseMiddleware, **middleware)
    return app


@pytest.fixture(scope="module")
def apps(bad_upstream: MisbehavingUpstream) -> Iterator[dict[str, str]]:
    policy = make_policy(bad_upstream.url, ("small", "ok-small", 3.0),
                         ("medium", "ok-medium", 4.0), ("large", "ok-large", 5.0))
    servers = {
        "rewrite": BackgroundServer(make_app(policy=policy), lifespan="on").start(),
        "tiers": BackgroundServer(make_app(policy=policy, alias="router", rewrite_as="tier"),
                                  lifespan="on").start(),
        "answer": BackgroundServer(make_app(policy=policy, mode="answer"),
                                   lifespan="on").start(),
    }
    yield {name: server.url for name, server in servers.items()}
    for server in servers.values():
        server.stop()


@pytest.fixture(autouse=True)
def _clear() -> None:
    app_calls.clear()


def client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)


MESSAGES = [{"role": "user", "content": "hello there"}]


# --- rewrite ------------------------------------------------------------------------------------

def test_rewrite_sets_the_tier_model_and_adds_headers(apps: dict[str, str]) -> None:
    raw = client(apps["rewrite"]).chat.completions.with_raw_response.create(
        model="auto", messages=MESSAGES, temperature=0.5)
    assert raw.parse().choices[0].message.content == "app answered as openai/ok-small"
    assert raw.headers["x-tierwise-tier"] == "small"
    assert raw.headers["x-tierwise-escalated"] == "no"
    (call,) = app_calls
    assert call["body"] == {"model": "openai/ok-small", "messages": MESSAGES, "temperature": 0.5}
    assert int(call["content-length"]) == len(json.dumps(call["body"]))


def test_rewrite_stream(apps: dict[str, str]) -> None:
    with client(apps["rewrite"]).chat.completions.with_streaming_response.create(
            model="auto", messages=MESSAGES, stream=True,
            extra_headers={"x-tierwise-tier": "medium"}) as raw:
        assert raw.headers["x-tierwise-tier"] == "medium"
        text = "".join(c.choices[0].delta.content or "" for c in raw.parse())
    assert text == "app answered as openai/ok-medium"


def test_rewrite_to_tier_names_with_a_custom_alias(apps: dict[str, str]) -> None:
    raw = client(apps["tiers"]).chat.completions.with_raw_response.create(
        model="router", messages=MESSAGES, extra_headers={"x-tierwise-tier": "large"})
    assert raw.parse().choices[0].message.content == "app answered as large"
    assert raw.headers["x-tierwise-tier"] == "large"
    # "auto" is not this app's alias: untouched
    raw = client(apps["tiers"]).chat.completions.with_raw_response.create(
        model="auto", messages=MESSAGES)
    assert raw.parse().choices[0].message.content == "app answered as auto"


def test_other_requests_reach_the_app_untouched(apps: dict[str, str]) -> None:
    raw = client(apps["rewrite"]).chat.completions.with_raw_response.create(
        model="gpt-4o", messages=MESSAGES)
    assert raw.parse().choices[0].message.content == "app answered as gpt-4o"
    assert "x-tierwise-tier" not in raw.headers
    assert httpx.get(apps["rewrite"] + "/hello").text == "hello from the app"
    not_json = httpx.post(apps["rewrite"] + "/v1/chat/completions", content=b"{oops")
    assert not_json.status_code == 500 or not_json.status_code == 400  # the app's own answer
    assert len(app_calls) == 1  # the JSON request; the broken one failed inside the app


def test_bad_request_for_the_alias_is_an_openai_error(apps: dict[str, str]) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client(apps["rewrite"]).chat.completions.create(
            model="auto", messages=[{"role": "user", "content": 5}])
    assert info.value.body["param"] == "messages[0].content"  # type: ignore[index]
    assert not app_calls


# --- answer -------------------------------------------------------------------------------------

def test_answer_mode_answers_through_litellm(apps: dict[str, str],
                                             upstream: MisbehavingUpstream) -> None:
    raw = client(apps["answer"]).chat.completions.with_raw_response.create(
        model="auto", messages=MESSAGES)
    assert raw.parse().choices[0].message.content == "[ok-small] answer to: hello there"
    assert raw.headers["x-tierwise-tier"] == "small"
    chunks = list(client(apps["answer"]).chat.completions.create(
        model="auto", messages=MESSAGES, stream=True,
        extra_headers={"x-tierwise-tier": "large"}))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == \
        "[ok-large] answer to: hello there"
    assert not app_calls and upstream.hits == {"ok-small": 1, "ok-large": 1}
    # not the alias: the app answers
    other = client(apps["answer"]).chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert other.choices[0].message.content == "app answered as gpt-4o"


def test_mode_is_checked() -> None:
    with pytest.raises(ValueError, match="mode"):
        TierwiseMiddleware(hello, mode="both")  # type: ignore[arg-type]
