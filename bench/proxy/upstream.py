"""A fast simulated OpenAI-compatible upstream for the proxy benchmark (aiohttp, one process).

Answers POST /v1/chat/completions at once, for any model name: a fixed small completion, or
(with "stream": true) a short SSE stream of 6 chunks, a usage chunk when asked
(stream_options.include_usage) and [DONE]. Responses are pre-encoded so the upstream's own CPU
per request stays small next to the proxies under test. GET /v1/models and /healthz answer too.

    python bench/proxy/upstream.py --port 18701

It also counts the chat calls it served (GET /stats, POST /stats/reset): bench/coalescing.py
uses that to count upstream calls. Optional delay: header-free, via --delay-ms (applied to every
chat call), so a thundering herd overlaps in time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

from aiohttp import web

WORDS = "this is a short simulated answer from the benchmark upstream".split()
USAGE = {"prompt_tokens": 12, "completion_tokens": 12, "total_tokens": 24}


def _completion(model: str) -> bytes:
    return json.dumps({
        "id": "chatcmpl-bench", "object": "chat.completion", "created": int(time.time()),
        "model": model, "system_fingerprint": "bench",
        "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                     "message": {"role": "assistant", "content": " ".join(WORDS)}}],
        "usage": USAGE,
    }).encode()


def _chunk(model: str, delta: dict, finish: str | None, usage: dict | None = None) -> bytes:
    data: dict = {"id": "chatcmpl-bench", "object": "chat.completion.chunk",
                  "created": int(time.time()), "model": model,
                  "choices": [] if usage else [{"index": 0, "delta": delta,
                                                "finish_reason": finish}]}
    if usage:
        data["usage"] = usage
    return b"data: " + json.dumps(data).encode() + b"\n\n"


def _stream(model: str, include_usage: bool) -> bytes:
    parts = [_chunk(model, {"role": "assistant", "content": ""}, None)]
    for k in range(0, len(WORDS), 2):
        parts.append(_chunk(model, {"content": " ".join(WORDS[k:k + 2]) + " "}, None))
    parts.append(_chunk(model, {}, "stop"))
    if include_usage:
        parts.append(_chunk(model, {}, None, USAGE))
    parts.append(b"data: [DONE]\n\n")
    return b"".join(parts)


class Upstream:
    def __init__(self, delay_ms: float = 0.0) -> None:
        self.delay = delay_ms / 1000
        self.calls = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self._cache: dict[tuple[str, bool, bool], bytes] = {}

    def _body(self, model: str, stream: bool, usage: bool) -> bytes:
        key = (model, stream, usage)
        body = self._cache.get(key)
        if body is None:
            body = _stream(model, usage) if stream else _completion(model)
            if len(self._cache) < 1000:
                self._cache[key] = body
        return body

    async def chat(self, request: web.Request) -> web.StreamResponse:
        try:
            req = json.loads(await request.read())
        except ValueError:
            return web.json_response({"error": {"message": "bad json"}}, status=400)
        self.calls += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            model = str(req.get("model") or "bench")
            stream = bool(req.get("stream"))
            usage = bool((req.get("stream_options") or {}).get("include_usage"))
            body = self._body(model, stream, usage)
            if not stream:
                return web.Response(body=body, content_type="application/json")
            resp = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                               "Cache-Control": "no-cache"})
            resp.enable_chunked_encoding()
            await resp.prepare(request)
            await resp.write(body)
            await resp.write_eof()
            return resp
        finally:
            self.in_flight -= 1

    async def models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [
            {"id": "bench", "object": "model", "created": 0, "owned_by": "bench"}]})

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def stats(self, request: web.Request) -> web.Response:
        return web.json_response({"calls": self.calls, "max_in_flight": self.max_in_flight})

    async def reset(self, request: web.Request) -> web.Response:
        self.calls = 0
        self.max_in_flight = 0
        return web.json_response({"calls": 0})

    def app(self) -> web.Application:
        app = web.Application(client_max_size=8 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_post("/chat/completions", self.chat)
        app.router.add_get("/v1/models", self.models)
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/stats", self.stats)
        app.router.add_post("/stats/reset", self.reset)
        return app


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=18701)
    ap.add_argument("--delay-ms", type=float, default=0.0)
    args = ap.parse_args()
    web.run_app(Upstream(args.delay_ms).app(), host=args.host, port=args.port,
                access_log=None, print=None)


if __name__ == "__main__":
    main()
