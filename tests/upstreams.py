"""Loopback test doubles for what tierwise talks to: an OpenAI-compatible upstream that misbehaves
on purpose (chosen by model name), and policy/server helpers.

The upstream is a real HTTP server (Starlette under uvicorn on 127.0.0.1), so tierwise's real
litellm calls, timeouts and connection errors are exercised; it counts every hit per model.

Behaviour by model name (litellm sends "openai/<name>" as "<name>"):
    ok-*       answers "[<model>] <n> answer to: <last user text>" (JSON when JSON is asked,
               a tool call when tools are given); streams in several chunks
    echo       the answer's content is the JSON body the upstream received
    fail500 / fail503 / fail429 / fail400     that HTTP status
    slow       waits 5 s before answering (for timeouts)
    empty      an empty answer          length   finish_reason "length"
    badjson    text that is not JSON    refuse   "I'm sorry, but I can't help with that."
    midfail    streams two chunks 100 ms apart, then drops the connection
    cut        streams two chunks, then ends the body cleanly without finish_reason or [DONE]
    herd       first byte after 1 s, then 12 chunks 50 ms apart (coalescing)
    long       60 chunks 50 ms apart; records whether the stream ran to the end
"""

from __future__ import annotations

import asyncio
import json
import textwrap
import threading
import time
from collections import Counter
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from policies import Policy, parse_policy
from router.upstream.simulator import BackgroundServer

# The session proxy's tiers (tests/conftest.py `proxy`): pinning a tier picks a behaviour.
TIERS = [("small", "ok-small", 3.0), ("medium", "ok-medium", 4.0), ("large", "ok-large", 5.0),
         ("echo", "echo", 6.0), ("herd", "herd", 7.0), ("long", "long", 8.0),
         ("slow", "slow", 9.0), ("fail400", "fail400", 10.0), ("fail500", "fail500", 11.0)]


class MisbehavingUpstream:
    """The app and its counters; `hits[model]` counts chat requests per model."""

    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()
        self.bodies: list[dict[str, Any]] = []
        self.finished_streams: Counter[str] = Counter()
        self.aborted_streams: Counter[str] = Counter()
        self._lock = threading.Lock()
        self.app = Starlette(routes=[
            Route("/v1/chat/completions", self.chat, methods=["POST"])])

    def reset(self) -> None:
        with self._lock:
            self.hits.clear()
            self.bodies.clear()
            self.finished_streams.clear()
            self.aborted_streams.clear()

    async def chat(self, request: Request) -> Response:
        body = await request.json()
        model = str(body.get("model"))
        with self._lock:
            self.hits[model] += 1
            self.bodies.append(body)
        status = {"fail500": 500, "fail503": 503, "fail429": 429, "fail400": 400}.get(model)
        if status:
            return JSONResponse({"error": {"message": f"{model} fails on purpose",
                                           "type": "test_error", "param": None, "code": None}},
                                status_code=status)
        if model == "slow":
            await asyncio.sleep(5)
        message, finish = self._message(model, body)
        if body.get("stream"):
            return StreamingResponse(self._events(model, body, message, finish),
                                     media_type="text/event-stream")
        return JSONResponse({
            "id": f"chatcmpl-{model}", "object": "chat.completion", "created": 1700000000,
            "model": model, "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 20, "total_tokens": 30}})

    @staticmethod
    def _message(model: str, body: dict[str, Any]) -> tuple[dict[str, Any], str]:
        last = body["messages"][-1].get("content")
        text = {
            "empty": "",
            "length": "This answer was cut off in the mid",
            "badjson": "Sure! Here is the JSON you asked for: {answer: 42",
            "refuse": "I'm sorry, but I can't help with that.",
            "echo": json.dumps(body, sort_keys=True),
        }.get(model, f"[{model}] answer to: {last}")
        if body.get("tools") and model.startswith("ok"):
            name = body["tools"][0]["function"]["name"]
            return {"role": "assistant", "content": None, "tool_calls": [{
                "id": "call_1", "type": "function",
                "function": {"name": name, "arguments": json.dumps({"city": "Paris"})}}]}, \
                "tool_calls"
        fmt = (body.get("response_format") or {}).get("type")
        if fmt in {"json_object", "json_schema"} and model.startswith("ok"):
            text = json.dumps({"answer": text})
        return {"role": "assistant", "content": text}, "length" if model == "length" else "stop"

    async def _events(self, model: str, body: dict[str, Any], message: dict[str, Any],
                      finish: str) -> Any:
        head = {"id": f"chatcmpl-{model}", "object": "chat.completion.chunk",
                "created": 1700000000, "model": model}

        def event(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
            choice = {"index": 0, "delta": delta, "finish_reason": finish_reason}
            return f"data: {json.dumps({**head, 'choices': [choice]})}\n\n".encode()

        # (seconds before the first chunk, seconds between chunks, number of pieces)
        first, gap, pieces = {"herd": (1.0, 0.05, 12), "long": (0.0, 0.05, 60),
                              "midfail": (0.0, 0.1, 4)}.get(model, (0.0, 0.0, 4))
        await asyncio.sleep(first)
        try:
            yield event({"role": "assistant", "content": ""})
            if message.get("tool_calls"):
                call = message["tool_calls"][0]
                yield event({"tool_calls": [{**call, "index": 0}]})
            else:
                text = message["content"] or ""
                size = max(1, -(-len(text) // pieces))
                for k, start in enumerate(range(0, len(text), size)):
                    if model == "midfail" and k == 2:
                        raise ConnectionResetError("midfail drops the stream on purpose")
                    if model == "cut" and k == 2:
                        return  # a clean end of the HTTP body, but no finish_reason / [DONE]
                    yield event({"content": text[start:start + size]})
                    if gap:
                        await asyncio.sleep(gap)
            yield event({}, finish)
            if (body.get("stream_options") or {}).get("include_usage"):
                usage = {"prompt_tokens": 10, "completion_tokens": 20, "total_tokens": 30}
                yield f"data: {json.dumps({**head, 'choices': [], 'usage': usage})}\n\n".encode()
            yield b"data: [DONE]\n\n"
            with self._lock:
                self.finished_streams[model] += 1
        except (asyncio.CancelledError, GeneratorExit):
            with self._lock:
                self.aborted_streams[model] += 1
            raise


def tiers_toml(base_url: str, *tiers: tuple[str, str, float], extra: str = "") -> str:
    """[[tiers]] tables on the test upstream: (name, upstream model, ability), cheapest first."""
    out = ""
    for i, (name, model, ability) in enumerate(tiers):
        out += textwrap.dedent(f"""
            [[tiers]]
            name = "{name}"
            model = "openai/{model}"
            api_base = "{base_url}/v1"
            ability = {ability}
            input_per_mtok = {i + 1}
            output_per_mtok = {2 * (i + 1)}
            context_window = 100000
            """)
        out += extra
    return out


def make_policy(base_url: str, *tiers: tuple[str, str, float], header: str = "",
                tier_extra: str = "") -> Policy:
    """A policy on the test upstream. Abilities 3/4/5 with the default difficulty 0 route to the
    first tier with high confidence."""
    text = 'name = "test"\nquality_target = 0.7\ntimeout_s = 10\n' + header
    return parse_policy(text + tiers_toml(base_url, *tiers, extra=tier_extra), source="test.toml")


def start_proxy(app: Any) -> BackgroundServer:
    """Run an ASGI app under uvicorn (lifespan on) on loopback; returns once /readyz is 200."""
    server = BackgroundServer(app, lifespan="on").start()
    deadline = time.monotonic() + 60
    while httpx.get(server.url + "/readyz").status_code != 200:
        assert time.monotonic() < deadline, "proxy never became ready"
        time.sleep(0.05)
    return server
