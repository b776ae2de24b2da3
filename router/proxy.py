"""The OpenAI-compatible proxy behind `tierwise serve`.

POST /v1/chat/completions routes requests for the router alias (and passes pinned tiers),
streaming or not, and answers with x-tierwise-* headers. Errors are OpenAI-shaped JSON.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from policies import Policy
from router.engine import Router
from router.errors import InvalidRequestError, TierwiseError

log = logging.getLogger("tierwise.proxy")

MAX_BODY_BYTES = 4 * 1024 * 1024


def error_response(exc: TierwiseError, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(exc.to_openai(), status_code=exc.status_code, headers=headers)


async def read_json_body(request: Request) -> dict[str, Any]:
    """The request's JSON object, or InvalidRequestError saying what is wrong with it."""
    raw = await request.body()
    if len(raw) > MAX_BODY_BYTES:
        raise InvalidRequestError(f"request body is larger than {MAX_BODY_BYTES} bytes")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise InvalidRequestError("request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise InvalidRequestError("request body must be a JSON object")
    return body


class Proxy:
    """Request handlers bound to one Router."""

    def __init__(self, router: Router) -> None:
        self.router = router

    async def chat_completions(self, request: Request) -> Response:
        try:
            body = await read_json_body(request)
            messages = body.get("messages")
            fields = {k: v for k, v in body.items() if k != "messages"}
            response = await self.router.acomplete(messages if messages is not None else [],
                                                   **fields)
        except TierwiseError as exc:
            return error_response(exc)
        except Exception:  # a bug of ours: log it, never leak a traceback to the client
            log.exception("unexpected error in /v1/chat/completions")
            return JSONResponse({"error": {"message": "internal error in tierwise",
                                           "type": "server_error", "param": None,
                                           "code": None}}, status_code=500)
        headers = response.tierwise.headers()
        if body.get("stream"):
            return StreamingResponse(_sse(response), media_type="text/event-stream",
                                     headers=headers)
        return JSONResponse(response.model_dump(exclude={"tierwise"}, exclude_none=True),
                            headers=headers)

    async def route(self, request: Request) -> Response:
        try:
            body = await read_json_body(request)
            decision = self.router.decide(body)
        except TierwiseError as exc:
            return error_response(exc)
        return JSONResponse(decision.to_dict())

    async def models(self, request: Request) -> Response:
        policy = self.router.policy
        ids = [policy.alias, *(t.name for t in policy.tiers)]
        return JSONResponse({"object": "list", "data": [
            {"id": i, "object": "model", "created": 0, "owned_by": "tierwise"} for i in ids]})

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok", "policy": self.router.policy.name})


async def _sse(stream: Any) -> AsyncIterator[bytes]:
    try:
        async for chunk in stream:
            yield f"data: {chunk.model_dump_json(exclude_none=True)}\n\n".encode()
    except Exception as exc:  # the status line is gone: report the failure in-band, then stop
        log.warning("upstream stream failed: %s", type(exc).__name__)
        error = {"error": {"message": "upstream stream failed", "type": "upstream_error"}}
        yield f"data: {json.dumps(error)}\n\n".encode()
    yield b"data: [DONE]\n\n"


def create_app(policy: Policy | str | Path | None = None) -> Starlette:
    """The proxy as an ASGI app; `policy` None serves the embedded demo."""
    proxy = Proxy(Router(policy))
    return Starlette(routes=[
        Route("/v1/chat/completions", proxy.chat_completions, methods=["POST"]),
        Route("/v1/route", proxy.route, methods=["POST"]),
        Route("/v1/models", proxy.models, methods=["GET"]),
        Route("/healthz", proxy.healthz, methods=["GET"]),
    ])
