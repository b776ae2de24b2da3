"""Azure OpenAI tiers on the pass-through: deployment URL, api-version and the api-key header,
against a real loopback server that answers only Azure-shaped requests."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from policies.loader import parse_policy
from router import Router
from router.upstream.passthrough import resolve_target

KEY = "azure-key-SECRET-0123456789"
VERSION = "2024-06-01"


def completion(text: str) -> dict[str, Any]:
    return {"id": "c1", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}}


class AzureLike:
    """Answers POST /openai/deployments/{deployment}/chat/completions?api-version=... with an
    api-key header, like Azure OpenAI; anything else is a 404 or 401."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.seen.append({"path": request.path, "query": dict(request.query),
                          "headers": dict(request.headers)})
        if request.query.get("api-version") != VERSION:
            return web.json_response({"error": {"message": "bad api-version"}}, status=404)
        if request.headers.get("api-key") != KEY or "Authorization" in request.headers:
            return web.json_response({"error": {"message": "Access denied"}}, status=401)
        body = await request.json()
        text = f"deployment {request.match_info['deployment']}"
        if not body.get("stream"):
            return web.json_response(completion(text))
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for part in (text[:5], text[5:]):
            chunk = {"id": "c1", "object": "chat.completion.chunk", "model": "gpt-4o-mini",
                     "choices": [{"index": 0, "delta": {"content": part}}]}
            await resp.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
        await resp.write(b"data: [DONE]\n\n")
        return resp


@pytest.fixture
async def azure() -> AsyncIterator[tuple[str, AzureLike]]:
    server = AzureLike()
    app = web.Application()
    app.router.add_post("/openai/deployments/{deployment}/chat/completions", server.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}", server
    await runner.cleanup()


def azure_router(base: str) -> Router:
    text = (
        'name = "azure"\nquality_target = 0.7\ntimeout_s = 10\n'
        '[[tiers]]\nname = "small"\nmodel = "azure/mini-prod"\n'
        f'api_base = "{base}"\napi_key_env = "TW_TEST_AZURE_KEY"\nability = 5.0\n'
        "input_per_mtok = 0.15\noutput_per_mtok = 0.6\n"
    )
    return Router(parse_policy(text, source="azure.toml"))


@pytest.mark.parametrize("stream", [False, True])
async def test_azure_tier_goes_through_the_pass_through(
        azure: tuple[str, AzureLike], monkeypatch: pytest.MonkeyPatch, stream: bool) -> None:
    base, server = azure
    monkeypatch.setenv("TW_TEST_AZURE_KEY", KEY)
    monkeypatch.setenv("AZURE_API_VERSION", VERSION)
    router = azure_router(base)
    outcome = await router.serve({"model": "auto", "stream": stream,
                                  "messages": [{"role": "user", "content": "hi"}]})
    if outcome.stream is None:
        text = outcome.response["choices"][0]["message"]["content"]
    else:
        chunks = [c async for c in outcome.stream]
        text = "".join((c["choices"][0]["delta"].get("content") or "")
                       for c in chunks if c.get("choices"))
    assert text == "deployment mini-prod"
    (seen,) = server.seen
    assert seen["path"] == "/openai/deployments/mini-prod/chat/completions"
    assert seen["query"] == {"api-version": VERSION}
    assert seen["headers"]["api-key"] == KEY and "Authorization" not in seen["headers"]
    assert seen["headers"]["User-Agent"] == "tierwise"  # our client, not litellm's


def test_resolve_target_for_azure(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AZURE_API_VERSION", raising=False)
    monkeypatch.delenv("AZURE_API_BASE", raising=False)
    # without an api-version litellm's own default applies: stay on litellm
    assert resolve_target("azure/dep", "https://x.openai.azure.com") is None
    monkeypatch.setenv("AZURE_API_VERSION", VERSION)
    assert resolve_target("azure/dep", None) is None  # no endpoint anywhere
    t = resolve_target("azure/my dep", "https://x.openai.azure.com/")
    assert t is not None and t.key_header == "api-key" and t.model == "my dep"
    assert t.base_url == ("https://x.openai.azure.com/openai/deployments/my%20dep"
                          f"?api-version={VERSION}")
    monkeypatch.setenv("AZURE_API_BASE", "https://y.openai.azure.com")
    t2 = resolve_target("azure/dep", None)
    assert t2 is not None and t2.base_url.startswith("https://y.openai.azure.com/openai/")
    assert resolve_target("azure_ai/some-model", "https://z") is None  # another protocol
