"""A simulated OpenAI-compatible upstream on loopback: the embedded default's "provider".

Each model name answers in its own style and at its own speed (``sim-small`` is quick and terse,
``sim-large`` slow and thorough), so routing is visible with no keys and no network. It speaks
enough of the Chat Completions API for real clients: streaming with usage, tool calls, JSON mode,
``n`` choices. Answers are deterministic for a given request.
"""

from __future__ import annotations

import asyncio
import atexit
import hashlib
import json
import logging
import threading
import time
from typing import Any, Literal

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

# model -> (seconds before the first token, seconds per streamed chunk, answer length in words)
PROFILES: dict[str, tuple[float, float, int]] = {
    "sim-small": (0.01, 0.002, 12),
    "sim-medium": (0.03, 0.004, 30),
    "sim-large": (0.08, 0.006, 60),
}
_FILLER = ("this simulated answer considers the question step by step and explains the reasoning "
           "with care so that the size of each tier shows in its reply").split()


def _text_of(messages: list[dict[str, Any]]) -> str:
    parts: list[str] = []
    for m in messages:
        content = m.get("content")
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts.extend(p.get("text", "") for p in content if isinstance(p, dict))
    return " ".join(parts)


def _answer(model: str, messages: list[dict[str, Any]], words: int, index: int) -> str:
    last = _text_of(messages[-1:]).strip().replace("\n", " ")
    digest = hashlib.sha1(f"{model}|{index}|{_text_of(messages)}".encode()).hexdigest()[:8]
    topic = last[:60] + ("..." if len(last) > 60 else "")
    body = " ".join(_FILLER[i % len(_FILLER)] for i in range(words))
    return f"[{model} #{digest}] On '{topic}': {body}."


def _usage(messages: list[dict[str, Any]], completion: str, n: int) -> dict[str, int]:
    prompt_tokens = max(1, len(_text_of(messages)) // 4) + 3 * len(messages)
    completion_tokens = max(1, len(completion.split()) * 4 // 3) * n
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": "invalid_request_error",
                                   "param": None, "code": None}}, status_code=status)


async def chat_completions(request: Request) -> Response:
    try:
        body = await request.json()
    except ValueError:
        return _error(400, "body is not valid JSON")
    if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
        return _error(400, "'messages' is required")
    model = str(body.get("model", ""))
    if model not in PROFILES:
        return _error(404, f"model {model!r} does not exist; try one of {sorted(PROFILES)}")
    first_delay, chunk_delay, words = PROFILES[model]
    messages = body["messages"]
    n = int(body.get("n") or 1)
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
    if isinstance(max_tokens, int):
        words = max(1, min(words, max_tokens * 3 // 4))
    tools = body.get("tools") or []
    wants_tool = bool(tools) and body.get("tool_choice") != "none" and (
        messages[-1].get("role") != "tool")
    fmt = (body.get("response_format") or {}).get("type")
    created = int(time.time())
    rid = "chatcmpl-sim-" + hashlib.sha1(json.dumps(body, sort_keys=True).encode()).hexdigest()[:12]

    def message_for(i: int) -> dict[str, Any]:
        text = _answer(model, messages, words, i)
        if wants_tool:
            fn = tools[0].get("function", {}).get("name", "tool")
            return {"role": "assistant", "content": None, "tool_calls": [{
                "id": f"call_{i}_{rid[-6:]}", "type": "function",
                "function": {"name": fn, "arguments": json.dumps({"query": text[:40]})}}]}
        if fmt in {"json_object", "json_schema"}:
            text = json.dumps({"answer": text})
        return {"role": "assistant", "content": text}

    choices = [message_for(i) for i in range(n)]
    finish = "tool_calls" if wants_tool else "stop"
    usage = _usage(messages, " ".join(str(c.get("content") or "") for c in choices[:1]), n)
    await asyncio.sleep(first_delay)
    if not body.get("stream"):
        return JSONResponse({
            "id": rid, "object": "chat.completion", "created": created, "model": model,
            "choices": [{"index": i, "message": c, "finish_reason": finish, "logprobs": None}
                        for i, c in enumerate(choices)],
            "usage": usage, "system_fingerprint": "tierwise-sim"})
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

    async def events():  # type: ignore[no-untyped-def]
        def chunk(delta: dict[str, Any], i: int, finish_reason: str | None) -> bytes:
            data = {"id": rid, "object": "chat.completion.chunk", "created": created,
                    "model": model, "choices": [{"index": i, "delta": delta,
                                                 "finish_reason": finish_reason}]}
            return f"data: {json.dumps(data)}\n\n".encode()

        for i, c in enumerate(choices):
            yield chunk({"role": "assistant", "content": ""}, i, None)
            if c.get("tool_calls"):
                yield chunk({"tool_calls": [dict(c["tool_calls"][0], index=0)]}, i, None)
            else:
                words_out = c["content"].split(" ")
                for k in range(0, len(words_out), 4):
                    piece = " ".join(words_out[k:k + 4]) + (" " if k + 4 < len(words_out) else "")
                    yield chunk({"content": piece}, i, None)
                    await asyncio.sleep(chunk_delay)
            yield chunk({}, i, finish)
        if include_usage:
            data = {"id": rid, "object": "chat.completion.chunk", "created": created,
                    "model": model, "choices": [], "usage": usage}
            yield f"data: {json.dumps(data)}\n\n".encode()
        yield b"data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream")


async def list_models(request: Request) -> Response:
    return JSONResponse({"object": "list", "data": [
        {"id": m, "object": "model", "created": 0, "owned_by": "tierwise-sim"} for m in PROFILES]})


def create_app() -> Starlette:
    """The simulated upstream as an ASGI app (mount it, or run it with uvicorn)."""
    return Starlette(routes=[
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        Route("/v1/models", list_models, methods=["GET"]),
    ])


THREAD = "tierwise-sim"  # the name of a BackgroundServer's thread


def _not_info_from_a_background_server(record: logging.LogRecord) -> bool:
    return record.levelno >= logging.WARNING or record.threadName != THREAD


class BackgroundServer:
    """Runs an ASGI app with uvicorn on 127.0.0.1 in a daemon thread; `url` once started.

    Its uvicorn does not configure logging: a Config with a log level re-applies uvicorn's
    logging config to the process's one set of "uvicorn.*" loggers, and the simulator's
    "warning" (started by the embedded demo's warm-up) silenced `tierwise serve`'s own info
    logs ("Shutting down", "Finished server process"). Instead a filter drops what is below
    a warning and logged from a background server's thread (uvicorn's start-up lines)."""

    def __init__(self, app: Any, port: int = 0,
                 lifespan: Literal["auto", "on", "off"] = "off") -> None:
        import uvicorn

        for name in ("uvicorn.error", "uvicorn.access"):
            logger = logging.getLogger(name)
            if _not_info_from_a_background_server not in logger.filters:
                logger.addFilter(_not_info_from_a_background_server)
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None,
                                log_level=None, access_log=False, lifespan=lifespan)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name=THREAD, daemon=True)
        self.url = ""

    def start(self, timeout: float = 10.0) -> BackgroundServer:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the simulated upstream did not start")
            time.sleep(0.005)
        port = self._server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the server and wait for its thread to end: a graceful shutdown first, then a
        forced one (uvicorn stops waiting for open connections) if that takes too long."""
        self._server.should_exit = True
        self._thread.join(timeout)
        if self._thread.is_alive():
            self._server.force_exit = True
            self._thread.join(timeout)


_builtin: BackgroundServer | None = None
_builtin_lock = threading.Lock()


def builtin_base_url() -> str:
    """The OpenAI base URL (``.../v1``) of this process's simulated upstream, started on demand
    (and stopped when the interpreter exits: _stop_builtin)."""
    global _builtin
    with _builtin_lock:
        if _builtin is None:
            _builtin = BackgroundServer(create_app()).start()
            atexit.register(_stop_builtin)
        return _builtin.url + "/v1"


def _stop_builtin() -> None:
    """atexit hook: stop the simulated upstream's thread while the interpreter is still whole.

    Left running (a daemon thread), its uvloop event loop went on firing timers in C while the
    interpreter was finalized; a timer callback that fired after the interpreter state was freed
    called PyGILState_Ensure on it and the process died of SIGSEGV after a clean stop (a
    `tierwise serve --workers 2` worker: "exited with code -11", so `serve` exited 1).
    atexit hooks run before that teardown, while the thread can still end normally."""
    global _builtin
    with _builtin_lock:
        server, _builtin = _builtin, None
    if server is not None:
        server.stop()
