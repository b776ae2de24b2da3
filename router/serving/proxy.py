"""The OpenAI-compatible proxy behind `tierwise serve`.

    POST /v1/chat/completions   route and answer (stream or not), with x-tierwise-* headers
    GET  /v1/models             the router alias and every tier
    POST /v1/route              the decision only, no upstream call
    GET  /healthz               the process is up
    GET  /readyz                the scorer and litellm are loaded and every provider key the
                                policy names is set (503 until then, or for good)

Every error is OpenAI-shaped JSON (`{"error": {"message", "type", "param", "code"}}`), including
404/405 for unknown paths and methods. /metrics (`metrics_route`) and /dashboard
(router/accounting/dashboard.py) are added by passing their routes as `extra_routes`;
router.serving.app.build_app (what `tierwise serve` runs) does.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from policies import Policy
from router.engine import Router
from router.errors import TierwiseError
from router.serving.responder import (
    PARSED_BODY,
    PIN_HEADER,
    ChatResponder,
    ClientGone,
    Receive,
    Scope,
    Send,
    parse_body,
    read_body,
    send_error,
)

log = logging.getLogger("tierwise.proxy")


def error_response(exc: TierwiseError, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(exc.to_openai(), status_code=exc.status_code, headers=headers)


class ChatCompletions:
    """POST /v1/chat/completions as a pure ASGI endpoint (see router/serving/responder.py for
    why)."""

    def __init__(self, router: Router) -> None:
        self.router = router

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # router.serving.guard in front has parsed and checked the body already (and replays it)
        body = (scope.get("state") or {}).pop(PARSED_BODY, None)
        if body is None:
            try:
                body = parse_body(await read_body(receive))
            except ClientGone:
                return
            except TierwiseError as exc:
                await send_error(send, exc)
                return
        await ChatResponder(self.router, scope, receive, send).respond(body)


class Proxy:
    """The non-chat handlers, bound to one Router."""

    def __init__(self, router: Router, *, freeze_gc: bool = False) -> None:
        self.router = router
        self.ready = False
        self.started = time.monotonic()
        # `tierwise serve`: once warm, move every object alive then (modules, the scorer's
        # tables, the policy) out of the cyclic GC's sight (gc.freeze): the collections that
        # requests trigger then no longer walk them (a full one took ~30 ms, the p99 spike)
        self.freeze_gc = freeze_gc
        # Provider keys the policy names but the environment lacks (`tierwise serve
        # --allow-missing-keys` starts anyway): /readyz stays 503 and says which.
        self.missing_keys = router.policy.missing_keys(os.environ)

    async def route(self, request: Request) -> Response:
        try:
            body = parse_body(await request.body())
            decision = await self.router.adecide(body, request.headers.get(PIN_HEADER))
        except TierwiseError as exc:
            return error_response(exc)
        return JSONResponse(decision.to_dict())

    async def models(self, request: Request) -> Response:
        policy = self.router.policy
        data = [{"id": policy.alias, "object": "model", "created": 0, "owned_by": "tierwise"}]
        data += [{"id": t.name, "object": "model", "created": 0, "owned_by": "tierwise",
                  "tierwise_model": t.model} for t in policy.tiers]
        return JSONResponse({"object": "list", "data": data})

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok", "policy": self.router.policy.name})

    async def readyz(self, request: Request) -> Response:
        stats = getattr(self.router.coalescer, "stats", {})
        ready = self.ready and not self.missing_keys
        body: dict[str, Any] = {"ready": ready, "policy": self.router.policy.name,
                                "coalescing": stats}
        if self.missing_keys:  # variable names only, never a value
            body["missing_keys"] = self.missing_keys
        return JSONResponse(body, status_code=200 if ready else 503)

    def warm(self) -> None:
        """Load what the first request would otherwise wait for: scorer, litellm, simulator."""
        self.router.scorer.score([{"role": "user", "content": "warm up"}])
        upstream = self.router.upstream
        try:
            needs_litellm = any(upstream.direct(t) is None for t in self.router.policy.tiers)
        except TierwiseError:  # a tier's key variable is unset: its call will say so
            needs_litellm = True
        # litellm costs seconds and ~150 MB: only import it when some tier calls through it.
        if needs_litellm:
            upstream.prepare()
        else:
            import router.upstream.passthrough  # noqa: F401 - the pass-through's own imports (httptools)
        if any(t.api_base == "builtin" or any(d.api_base == "builtin" for d in t.deployments)
               for t in self.router.policy.tiers):
            from router.upstream.simulator import builtin_base_url

            builtin_base_url()
        if self.freeze_gc:
            # The accounting thread's first energy estimate imports ecologits (~22k objects).
            # Import it here, before the freeze: objects born after it stay in the oldest
            # generation, and every full collection walked them (3-4 ms in one request, the
            # top of the p99 at concurrency 1; bench/PROFILE.md section 8).
            from router.accounting.energy import estimate_energy

            for tier in self.router.policy.tiers:
                estimate_energy(tier.energy_model or tier.model, None, 1, 1.0, tier.zone)
            gc.freeze()
        self.ready = True
        log.info("ready after %.1f s", time.monotonic() - self.started)

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        # Warm in a thread: /healthz answers at once, /readyz turns 200 when warm.
        task = asyncio.ensure_future(asyncio.to_thread(self.warm))
        yield
        if not task.done():
            task.cancel()
        passthrough = sys.modules.get("router.upstream.passthrough")
        if passthrough is not None:  # give the pooled upstream connections back cleanly
            await passthrough.close_default_client()


def metrics_route(metrics: Any, flush: Callable[[float], bool] | None = None) -> Route:
    """GET /metrics in the Prometheus text format. `flush` (the accountant's) is given up to
    1 s, in a worker thread, so a scrape counts every request answered before it."""
    from starlette.concurrency import run_in_threadpool

    async def endpoint(request: Request) -> Response:
        if flush is not None:
            await run_in_threadpool(flush, 1.0)
        body, content_type = metrics.render()
        return Response(body, headers={"content-type": content_type})

    return Route("/metrics", endpoint, methods=["GET"])


async def _http_error(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    kind = {404: "not_found", 405: "method_not_allowed"}.get(status, "invalid_request_error")
    message = (f"{request.method} {request.url.path}: "
               f"{exc.detail if isinstance(exc, HTTPException) else 'error'}")
    if status == 404:
        message += _path_hint(request)
    return JSONResponse({"error": {"message": message, "type": "invalid_request_error",
                                   "param": None, "code": kind}}, status_code=status)


def _path_hint(request: Request) -> str:
    """What the client probably meant: the OpenAI API lives under /v1 (an OpenAI client's
    base_url must end in /v1), and paths have no trailing slash."""
    path = request.url.path
    known = {getattr(r, "path", None) for r in request.app.routes}
    if path.rstrip("/") in known and path != "/":
        return f"; use {path.rstrip('/')} (no trailing slash)"
    if "/v1" + path.rstrip("/") in known:
        base = str(request.base_url).rstrip("/")
        return (f"; the OpenAI API is under /v1: /v1{path.rstrip('/')} "
                f"(an OpenAI client's base_url is {base}/v1)")
    return "; endpoints: " + ", ".join(sorted(p for p in known if p))


def create_app(policy: Policy | str | Path | None = None, *, scorer: Any = None,
               router: Router | None = None, extra_routes: Sequence[BaseRoute] = (),
               freeze_gc: bool = False) -> Starlette:
    """The proxy as an ASGI app; `policy` None serves the embedded demo. `freeze_gc`: see
    Proxy (for a server process; a test or an app embedding this leaves it off)."""
    router = router or Router(policy, scorer=scorer)
    proxy = Proxy(router, freeze_gc=freeze_gc)
    chat = ChatCompletions(router)
    app = Starlette(
        routes=[
            Route("/v1/chat/completions", chat, methods=["POST"]),
            Route("/v1/route", proxy.route, methods=["POST"]),
            Route("/v1/models", proxy.models, methods=["GET"]),
            Route("/healthz", proxy.healthz, methods=["GET"]),
            Route("/readyz", proxy.readyz, methods=["GET"]),
            *extra_routes,
        ],
        exception_handlers={404: _http_error, 405: _http_error},
        lifespan=proxy.lifespan,
    )
    # no bare 307 to the path without a slash (clients do not follow it for a POST): the
    # Guard in front serves /v1/...path/ as /v1/...path, and a 404 says what was meant
    app.router.redirect_slashes = False
    app.state.router = router
    app.state.proxy = proxy
    app.state.chat = chat  # router.serving.guard calls it directly for POST /v1/chat/completions
    return app
