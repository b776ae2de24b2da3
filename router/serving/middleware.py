"""TierwiseMiddleware: tierwise routing inside an existing Starlette/FastAPI (any ASGI) app.

    app.add_middleware(TierwiseMiddleware, policy="policy.toml")                  # rewrite
    app.add_middleware(TierwiseMiddleware, policy="policy.toml", mode="answer")   # answer

It looks only at OpenAI-style chat requests (POST .../chat/completions) whose `model` is the
router alias (default "auto"); everything else reaches the app untouched, body included.

- mode="rewrite": decide the tier (no network), rewrite `model` to the tier's model and pass the
  request on to the app, which makes the call itself. The app's response gets the x-tierwise-*
  headers. Only the pre-call escalations (low confidence, context window) apply: the call is
  the app's, so tierwise cannot see its failures.
- mode="answer": answer the request itself, exactly like `tierwise serve` (the same
  Router.serve: coalescing, escalation, streaming; OpenAI-protocol tiers over tierwise's
  pass-through client, other providers through litellm); the app never sees it.

Request bodies over the policy's ``[limits] max_body_bytes`` (default 4 MiB) get a 413.

Pure ASGI (like Starlette's GZipMiddleware) rather than BaseHTTPMiddleware, because that one
buffers streaming responses and runs the app in a separate task; each intercepted request gets
a small `_Interception` object holding its state.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from policies import Policy, Tier
from router.engine import Router, Routing
from router.errors import TierwiseError
from router.serving.responder import (
    INTERNAL_ERROR,
    PIN_HEADER,
    ChatResponder,
    ClientGone,
    Message,
    Receive,
    Scope,
    Send,
    header,
    read_body,
    replay_body,
    send_error,
    send_json,
)

log = logging.getLogger("tierwise.middleware")

ASGIApp = Callable[[Scope, Receive, Send], Any]


class TierwiseMiddleware:
    """Routes chat requests for the alias: rewrite `model` for the app, or answer them."""

    def __init__(self, app: ASGIApp, policy: Policy | str | Path | None = None, *,
                 alias: str | None = None, mode: Literal["rewrite", "answer"] = "rewrite",
                 router: Router | None = None, scorer: Any = None,
                 rewrite_as: Literal["model", "tier"] = "model") -> None:
        if mode not in ("rewrite", "answer"):
            raise ValueError(f'mode must be "rewrite" or "answer", not {mode!r}')
        if rewrite_as not in ("model", "tier"):
            raise ValueError(f'rewrite_as must be "model" or "tier", not {rewrite_as!r}')
        self.app = app
        self.router = router or Router(policy, scorer=scorer)
        self.alias = alias or self.router.policy.alias
        self.mode = mode
        self.rewrite_as = rewrite_as

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, self._closing_on_shutdown(receive), send)
            return
        if (scope["type"] != "http" or scope["method"] != "POST"
                or not scope["path"].rstrip("/").endswith("/chat/completions")):
            await self.app(scope, receive, send)
            return
        await _Interception(self, scope, receive, send).run()

    @staticmethod
    def _closing_on_shutdown(receive: Receive) -> Receive:
        """The app's lifespan receive; at shutdown, first give back the pass-through pool
        (answer mode's upstream connections), which lives in this event loop."""

        async def wrapped() -> Message:
            message = await receive()
            passthrough = sys.modules.get("router.upstream.passthrough")
            if message["type"] == "lifespan.shutdown" and passthrough is not None:
                await passthrough.close_default_client()
            return message

        return wrapped

    def model_for(self, tier: Tier) -> str:
        return tier.model if self.rewrite_as == "model" else tier.name


class _Interception:
    """One chat request seen by the middleware: read it, then route, answer or pass it on."""

    def __init__(self, mw: TierwiseMiddleware, scope: Scope, receive: Receive,
                 send: Send) -> None:
        self.mw = mw
        self.scope = scope
        self.receive = receive
        self.send = send

    async def run(self) -> None:
        try:
            raw = await read_body(self.receive, self.mw.router.policy.limits.max_body_bytes)
        except ClientGone:
            return
        except TierwiseError as exc:
            await send_error(self.send, exc)
            return
        body = _json_object(raw)
        if body is None or body.get("model") != self.mw.alias:
            # Not ours (another model, or not JSON at all): the app sees the very same bytes.
            await self.mw.app(self.scope, replay_body(raw, self.receive), self.send)
            return
        if self.mw.mode == "answer":
            await ChatResponder(self.mw.router, self.scope, self.receive, self.send).respond(body)
            return
        await self._rewrite(body)

    async def _rewrite(self, body: dict[str, Any]) -> None:
        router = self.mw.router
        pin = header(self.scope, PIN_HEADER)
        try:
            decision = await router.adecide(body, pin)
        except TierwiseError as exc:
            await send_error(self.send, exc)
            return
        except Exception:  # a bug of ours: log it, never leak a traceback to the client
            log.exception("unexpected error routing a chat request")
            await send_json(self.send, 500, INTERNAL_ERROR)
            return
        tier = router.policy.tier(decision.tier)
        assert tier is not None
        raw = json.dumps({**body, "model": self.mw.model_for(tier)}).encode()
        # The body changed length: the app must not trust the client's content-length.
        headers = [(k, v) for k, v in self.scope.get("headers") or []
                   if k != b"content-length"] + [(b"content-length", str(len(raw)).encode())]
        scope = {**self.scope, "headers": headers}
        routing_headers = [(k.encode(), v.encode()) for k, v in Routing(
            decision, tier.name, tier.model, list(decision.escalations)).headers().items()]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *routing_headers]}
            await self.send(message)

        await self.mw.app(scope, replay_body(raw, self.receive), send_with_headers)


def _json_object(raw: bytes) -> dict[str, Any] | None:
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    return body if isinstance(body, dict) else None
