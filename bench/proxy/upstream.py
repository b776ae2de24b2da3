"""A fast simulated OpenAI-compatible upstream for the proxy benchmark (aiohttp, one process;
or ``--engine raw``, a minimal HTTP/1.1 server with the same answers at a fraction of the CPU).

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


class RawHttp(asyncio.Protocol):
    """--engine raw: the same answers as Upstream.app(), from a minimal HTTP/1.1 server on
    asyncio (uvloop when importable): ~0.03 ms of CPU per answer where aiohttp takes ~0.10 ms
    at the rates tierwise reaches. On a 2-core machine the upstream's CPU is taken from the
    servers under test; two workers can only show what the second core is worth if the
    upstream leaves them most of it (bench/WORKERS.md). Content-Length request bodies only
    (a chunked request gets 501 and the connection closed); keep-alive as HTTP/1.1."""

    def __init__(self, upstream: Upstream) -> None:
        self.upstream = upstream
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while self.transport is not None:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            lines = self.buffer[:end].split(b"\r\n")
            headers = {k.strip().lower(): v.strip() for k, _, v in
                       (line.partition(b":") for line in lines[1:])}
            if b"chunked" in headers.get(b"transfer-encoding", b"").lower():
                self._send(501, b"text/plain", b"chunked request bodies are not supported")
                self.transport.close()
                return
            size = int(headers.get(b"content-length", b"0"))
            if len(self.buffer) < end + 4 + size:
                return
            body = self.buffer[end + 4:end + 4 + size]
            self.buffer = self.buffer[end + 4 + size:]
            method, path = lines[0].split(b" ", 2)[:2]
            self._answer(method, path, body)
            if headers.get(b"connection", b"").lower() == b"close":
                self.transport.close()

    def _answer(self, method: bytes, path: bytes, body: bytes) -> None:
        up = self.upstream
        if method == b"POST" and path in (b"/v1/chat/completions", b"/chat/completions"):
            try:
                req = json.loads(body)
            except ValueError:
                return self._send(400, b"application/json", b'{"error":{"message":"bad json"}}')
            up.calls += 1
            stream = bool(req.get("stream"))
            answer = up._body(str(req.get("model") or "bench"), stream,
                              bool((req.get("stream_options") or {}).get("include_usage")))
            if not stream:
                return self._send(200, b"application/json", answer)
            # one chunk of the whole pre-encoded stream, as Upstream.chat writes it
            self.transport.write(  # type: ignore[union-attr]
                b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                b"Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n"
                + b"%x\r\n" % len(answer) + answer + b"\r\n0\r\n\r\n")
            return None
        if method == b"GET" and path == b"/healthz":
            return self._send(200, b"application/json", b'{"status": "ok"}')
        if method == b"GET" and path == b"/v1/models":
            return self._send(200, b"application/json", json.dumps({"object": "list", "data": [
                {"id": "bench", "object": "model", "created": 0, "owned_by": "bench"}]}).encode())
        if method == b"GET" and path == b"/stats":
            return self._send(200, b"application/json", json.dumps(
                {"calls": up.calls, "max_in_flight": up.max_in_flight}).encode())
        if method == b"POST" and path == b"/stats/reset":
            up.calls = up.max_in_flight = 0
            return self._send(200, b"application/json", b'{"calls": 0}')
        return self._send(404, b"text/plain", b"not found")

    def _send(self, status: int, kind: bytes, body: bytes) -> None:
        self.transport.write(b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n"  # type: ignore[union-attr]
                             % (status, b"OK" if status == 200 else b"ERR", kind, len(body))
                             + body)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


def serve_raw(upstream: Upstream, host: str, port: int) -> None:
    async def forever() -> None:
        server = await asyncio.get_running_loop().create_server(
            lambda: RawHttp(upstream), host, port, backlog=2048)
        async with server:
            await server.serve_forever()

    try:
        import uvloop
    except ImportError:
        asyncio.run(forever())
    else:
        uvloop.run(forever())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=18701)
    ap.add_argument("--delay-ms", type=float, default=0.0)
    ap.add_argument("--engine", choices=["aiohttp", "raw"], default="aiohttp",
                    help="raw: the minimal server (RawHttp), for the throughput runs; "
                         "no --delay-ms")
    args = ap.parse_args()
    if args.engine == "raw":
        if args.delay_ms:
            ap.error("--delay-ms needs --engine aiohttp")
        serve_raw(Upstream(), args.host, args.port)
        return
    web.run_app(Upstream(args.delay_ms).app(), host=args.host, port=args.port,
                access_log=None, print=None)


if __name__ == "__main__":
    main()
