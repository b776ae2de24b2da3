"""router.upstream.passthrough against a real aiohttp server on loopback: answers, streams and
failures."""

from __future__ import annotations

import asyncio
import json
import socket

import aiohttp
import pytest
from aiohttp import web

from router.upstream import passthrough as pt

KEY = "sk-test-SECRET-0123456789"


def _completion(model: str) -> dict:
    return {"id": "c1", "object": "chat.completion", "created": 1, "model": model,
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": "hello"}}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}}


def _event(data: dict | str) -> bytes:
    return b"data: " + (data if isinstance(data, str) else json.dumps(data)).encode() + b"\n\n"


STREAM = [
    _event({"id": "c1", "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}),
    _event({"id": "c1", "choices": [{"index": 0, "delta": {"content": "hel"}}]}),
    _event({"id": "c1", "choices": [{"index": 0, "delta": {"content": "lo"},
                                     "finish_reason": "stop"}]}),
    _event({"id": "c1", "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2,
                                                 "total_tokens": 5}}),
    _event("[DONE]"),
]


class Upstream:
    """Behaviour chosen per request by the last user message ("ok", "429", "slow", ...)."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict, dict]] = []

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append((dict(request.headers), body))
        mode = body["messages"][-1]["content"]
        if mode == "429":
            return web.json_response({"error": {"message": "Rate limit reached", "type":
                                                "rate_limit_error", "code": "rate_limit"}},
                                     status=429)
        if mode == "500":
            return web.json_response({"error": {"message": "boom"}}, status=500)
        if mode == "503-text":
            return web.Response(text="<html>Service Unavailable</html>", status=503)
        if mode == "401":
            auth = request.headers.get("Authorization", "")
            return web.json_response({"error": {"message": f"Incorrect API key provided: "
                                                f"{auth.removeprefix('Bearer ')}",
                                                "code": "invalid_api_key"}}, status=401)
        if mode == "context":
            return web.json_response({"error": {
                "message": "This model's maximum context length is 8192 tokens.",
                "code": "context_length_exceeded"}}, status=400)
        if mode == "slow":
            await asyncio.sleep(1)
        if mode == "garbage":
            return web.Response(body=b"\x00not json{", content_type="application/json")
        if mode == "list":
            return web.json_response([1, 2, 3])
        if not body.get("stream"):
            return web.json_response(_completion(body["model"]))
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        if mode == "reset":
            await resp.write(STREAM[0] + STREAM[1])
            await asyncio.sleep(0.05)
            assert request.transport is not None
            request.transport.abort()  # mid-stream reset: no terminating chunk
            return resp
        if mode == "stall":
            await resp.write(STREAM[0])
            await asyncio.sleep(1)
        if mode == "crlf":
            for e in STREAM:
                await resp.write(e.replace(b"\n", b"\r\n"))
        else:
            for e in STREAM:  # split events across writes to exercise the reassembly
                await resp.write(e[:7])
                await resp.write(e[7:])
        await resp.write_eof()
        return resp


@pytest.fixture
async def upstream():
    up = Upstream()
    app = web.Application()
    app.router.add_post("/v1/chat/completions", up.handle)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    up.base = f"http://127.0.0.1:{port}/v1"  # type: ignore[attr-defined]
    yield up
    await pt.close_default_client()
    await runner.cleanup()


def _body(content: str, **kw) -> dict:
    return {"model": "auto", "messages": [{"role": "user", "content": content}], **kw}


async def test_chat_completion_passes_body_and_key(upstream):
    data = await pt.chat_completion(upstream.base, KEY, _body("ok", temperature=0.2), 5,
                                    model="gpt-4o-mini")
    assert data["choices"][0]["message"]["content"] == "hello"
    headers, sent = upstream.requests[-1]
    assert sent["model"] == "gpt-4o-mini" and sent["temperature"] == 0.2
    assert headers["Authorization"] == f"Bearer {KEY}"


async def test_connections_are_reused(upstream):
    for _ in range(5):
        await pt.chat_completion(upstream.base, None, _body("ok"), 5)
    client = pt.default_client()
    assert client.connections_opened == 1 and client.connections_in_use == 0
    assert "Authorization" not in upstream.requests[-1][0]


async def test_stream_yields_raw_events_and_usage(upstream):
    stream = await pt.open_chat_stream(upstream.base, KEY, _body("ok"), 5, model="m")
    events = [e async for e in stream]
    assert events == STREAM
    assert stream.done and stream.usage == {"prompt_tokens": 3, "completion_tokens": 2,
                                            "total_tokens": 5}
    assert upstream.requests[-1][1]["stream"] is True


async def test_stream_chunks_as_dicts(upstream):
    stream = await pt.open_chat_stream(upstream.base, KEY, _body("ok"), 5)
    chunks = [c async for c in stream.chunks()]
    assert [json.loads(e[6:]) for e in STREAM[:-1]] == chunks
    got = [c async for c in pt.stream_chunks(upstream.base, KEY, _body("crlf"), 5)]
    assert got == chunks
    with pytest.raises(pt.RateLimitedError):
        async for _ in pt.stream_chunks(upstream.base, KEY, _body("429"), 5):
            pass


async def test_stream_batches_join_events_of_one_read(upstream):
    stream = await pt.open_chat_stream(upstream.base, KEY, _body("crlf"), 5)
    batches = [b async for b in stream.batches()]
    assert b"".join(batches) == b"".join(STREAM)
    assert all(b.endswith(b"\n\n") for b in batches)
    assert stream.done and stream.events == len(STREAM)


async def test_stream_function_and_crlf(upstream):
    events = [e async for e in pt.stream_chat_completion(upstream.base, KEY, _body("crlf"), 5)]
    assert events == STREAM


@pytest.mark.parametrize("mode,cls,status,retryable,reason", [
    ("429", pt.RateLimitedError, 429, True, "rate_limited"),
    ("500", pt.ServerError, 502, True, "upstream_500"),
    ("503-text", pt.ServerError, 502, True, "upstream_503"),
    ("context", pt.ContextWindowError, 400, True, "context_window"),
    ("401", pt.ClientRequestError, 401, False, "upstream_401"),
])
@pytest.mark.parametrize("stream", [False, True])
async def test_http_errors(upstream, mode, cls, status, retryable, reason, stream):
    with pytest.raises(cls) as info:
        if stream:
            await pt.open_chat_stream(upstream.base, KEY, _body(mode), 5)
        else:
            await pt.chat_completion(upstream.base, KEY, _body(mode), 5)
    exc = info.value
    assert pt.classify(exc) == (retryable, status, reason)
    assert exc.upstream_status == (int(mode[:3]) if mode[0].isdigit() else 400)
    assert KEY not in str(exc) and KEY not in repr(exc) and KEY not in json.dumps(exc.body)


async def test_429_message_and_code(upstream):
    with pytest.raises(pt.RateLimitedError) as info:
        await pt.chat_completion(upstream.base, KEY, _body("429"), 5)
    assert "Rate limit reached" in str(info.value) and info.value.code == "rate_limit"


async def test_timeout(upstream):
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    with pytest.raises(pt.UpstreamTimeoutError) as info:
        await pt.chat_completion(upstream.base, KEY, _body("slow"), 0.2)
    assert loop.time() - t0 < 1.0  # no hidden retries
    assert pt.classify(info.value) == (True, 504, "timeout")
    with pytest.raises(pt.UpstreamTimeoutError):
        await pt.open_chat_stream(upstream.base, KEY, _body("slow", stream=True), 0.2)


async def test_connection_refused():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: refused
        for call in (pt.chat_completion, pt.open_chat_stream):
            with pytest.raises(pt.UpstreamConnectionError) as info:
                await call(f"http://127.0.0.1:{port}/v1", KEY, _body("ok"), 2)
            assert pt.classify(info.value) == (True, 502, "connection_error")
            assert KEY not in str(info.value)
    await pt.close_default_client()


async def test_garbage_body(upstream):
    with pytest.raises(pt.BadResponseError) as info:
        await pt.chat_completion(upstream.base, KEY, _body("garbage"), 5)
    assert pt.classify(info.value) == (True, 502, "bad_response")
    with pytest.raises(pt.BadResponseError):
        await pt.chat_completion(upstream.base, KEY, _body("list"), 5)


async def test_mid_stream_reset(upstream):
    stream = await pt.open_chat_stream(upstream.base, KEY, _body("reset"), 5)
    got = []
    with pytest.raises(pt.StreamInterrupted) as info:
        async for e in stream:
            got.append(e)
    assert got == STREAM[:2]
    assert info.value.events == 2 and not info.value.retryable
    assert pt.classify(info.value) == (False, 502, "stream_interrupted")


async def test_mid_stream_stall_times_out(upstream):
    stream = await pt.open_chat_stream(upstream.base, KEY, _body("stall"), 0.3)
    got = []
    with pytest.raises(pt.StreamInterrupted) as info:
        async for e in stream:
            got.append(e)
    assert got == STREAM[:1] and info.value.reason == "stream_timeout"
    assert info.value.status == 504


async def test_early_break_releases_connection(upstream):
    async with await pt.open_chat_stream(upstream.base, KEY, _body("ok"), 5) as stream:
        async for _ in stream:
            break
    data = await pt.chat_completion(upstream.base, KEY, _body("ok"), 5)
    assert data["object"] == "chat.completion"


async def test_concurrent_calls(upstream):
    results = await asyncio.gather(*(pt.chat_completion(upstream.base, None, _body("ok"), 5)
                                     for _ in range(50)))
    assert all(r["choices"][0]["message"]["content"] == "hello" for r in results)


def test_resolve_target():
    assert pt.resolve_target("openai/gpt-4o-mini", None) == pt.Target(
        "https://api.openai.com/v1", "gpt-4o-mini")
    assert pt.resolve_target("gpt-4o", None) == pt.Target("https://api.openai.com/v1", "gpt-4o")
    assert pt.resolve_target("openai/sim-small", "http://127.0.0.1:9/v1/") == pt.Target(
        "http://127.0.0.1:9/v1", "sim-small")
    assert pt.resolve_target("hosted_vllm/meta/llama-3", "http://h:8000/v1") == pt.Target(
        "http://h:8000/v1", "meta/llama-3")
    assert pt.resolve_target("hosted_vllm/x", None) is None
    assert pt.resolve_target("anthropic/claude-3-5-haiku", None) is None
    assert pt.resolve_target("gemini/gemini-2.0-flash", None) is None


def test_client_repr_has_no_key():
    async def run() -> str:
        client = pt.PassthroughClient()
        try:
            return repr(client)
        finally:
            await client.aclose()
    assert KEY not in asyncio.run(run())
    assert issubclass(pt.StreamInterrupted, pt.PassthroughError)
    assert not issubclass(pt.PassthroughError, aiohttp.ClientError)


async def test_chunks_early_close_releases_connection(upstream):
    stream = await pt.open_chat_stream(upstream.base, KEY, _body("ok"), 5)
    agen = stream.chunks()
    first = await agen.__anext__()
    assert first["choices"][0]["delta"]["role"] == "assistant"
    await agen.aclose()
    client = pt.default_client()
    # the connection went back to the pool or was closed: nothing is left acquired
    assert client.connections_in_use == 0
