"""The proxy's front door: an ASGI layer for auth, input limits, budgets, rate limits, cache.

``protect(app, policy)`` wraps the proxy app (router.serving.proxy.create_app) and, for
``POST /v1/chat/completions``, in this order:

1. authenticates the key (router.access.auth): 401;
2. reads the body up to ``[limits] max_body_bytes`` and validates it
   (router.serving.validation): 413/400;
3. admits it against budgets and rate limits (router.access.limits): 429 with Retry-After, or
   pins the downgrade tier (``x-tierwise-tier`` header) when a budget runs low;
4. answers from the response cache (router.access.cache) or passes it on, storing the answer;
5. bounds the time to the response's first byte (504 instead of a hung request);
6. charges the cost and tokens of the answer when it is done: through a Router listener (sees
   the tier and usage of streams too), else from the ``x-tierwise-cost-usd`` header.

Other ``/v1/*`` paths are authenticated only; ``/dashboard`` (every key's traffic and cost) needs
a key marked ``admin = true`` when auth is on; ``/healthz``, ``/readyz`` and
``/metrics`` stay open for load balancers and Prometheus. Shared state (budgets, limits, cache)
comes from the policy's ``state`` (router.state); the same state backs cross-replica coalescing
(router.coalescing.shared) when ``shared_coalescer`` is given to the Router.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from policies import Policy
from router.access.auth import Authenticator, Client
from router.access.cache import ResponseCache, directives
from router.access.limits import (
    Admission,
    Limiter,
    LimitExceeded,
    estimate_cost,
    estimate_tokens,
)
from router.errors import TierwiseError, UpstreamError
from router.messages import output_budget
from router.serving.responder import COMPLETE, PARSED_BODY, ClientGone, read_body, replay_body
from router.serving.validation import parse_body
from router.state import State, open_state

log = logging.getLogger("tierwise.guard")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

CHAT_PATH = "/v1/chat/completions"
ROUTE_PATH = "/v1/route"
PIN_HEADER = b"x-tierwise-tier"
OPEN_PATHS = ("/healthz", "/readyz", "/metrics")

# The admission of the request being served, for the Router listener that charges it.
_CURRENT: contextvars.ContextVar[Admission | None] = contextvars.ContextVar(
    "tierwise_admission", default=None)


def current_key_id() -> str | None:
    """The API key id of the chat request being served (for the ledger), None outside one.

    Valid inside the proxy app and in Router listeners, which run in the request's context."""
    admission = _CURRENT.get()
    return admission.client.id if admission is not None else None


class AdminOnly(TierwiseError):
    """403: a path for the operator (the dashboard) asked for with a tenant's key."""

    status_code = 403
    error_type = "permission_error"
    code = "admin_key_required"


class Guard:
    """ASGI middleware; see the module docstring. `state` defaults to the policy's."""

    def __init__(self, app: ASGIApp, policy: Policy, *, state: State | None = None,
                 router: Any = None, on_fallback: Callable[[str], None] | None = None,
                 first_byte_timeout_s: float | None = None, accountant: Any = None,
                 chat: ASGIApp | None = None) -> None:
        self.app = app
        # POST /v1/chat/completions goes straight to `chat` (the proxy's ChatCompletions) when
        # given, not through the app's routing and middleware (~20 us less per request)
        self.chat = chat or app
        self.accountant = accountant  # router.serving.accountant.Accountant: records cache hits
        self.metrics: Any = None  # set by build_app, for callers that want the parts
        self.ledger: Any = None
        self.policy = policy
        self.state = state if state is not None else open_state(
            policy.state, on_fallback=on_fallback, max_entries=policy.cache.max_entries)
        self.auth = Authenticator(policy.auth)
        self.limiter = Limiter(policy.limits, self.state, cheapest_tier=policy.tiers[0].name)
        # the prices a request's cost is estimated at before its tier is known (the highest)
        self._top_prices = (max(t.input_per_mtok for t in policy.tiers),
                            max(t.output_per_mtok for t in policy.tiers))
        self.cache = ResponseCache(policy.cache, self.state)
        self.first_byte_timeout_s = first_byte_timeout_s or (
            policy.timeout_s * (policy.max_escalations + 1) + 5.0)
        self._tasks: set[asyncio.Task[None]] = set()
        if router is not None:
            router.listeners.append(self._on_routing)

    # -- ASGI --------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, self._lifespan_send(send))
            return
        if scope["type"] == "http" and scope["path"].endswith("/") and len(scope["path"]) > 1:
            # /v1/chat/completions/ is /v1/chat/completions (not a bare 307 a POST won't follow)
            scope = {**scope, "path": scope["path"].rstrip("/") or "/"}
            scope["raw_path"] = (scope.get("raw_path") or b"/").rstrip(b"/") or b"/"
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS or not (
                scope["path"].startswith("/v1/") or scope["path"].startswith("/dashboard")):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            client = self.auth.authenticate(headers)
        except TierwiseError as exc:
            await _send_error(send, exc, {"www-authenticate": "Bearer"})
            return
        scope.setdefault("state", {})["tierwise_client"] = client.id
        if scope["path"].startswith("/dashboard") and self.auth.enabled and not (
                client.key is not None and client.key.admin):
            # the dashboard shows every tenant's traffic and cost: admin keys only
            await _send_error(send, AdminOnly(
                "/dashboard shows every API key's traffic and cost: it needs a key marked "
                "admin = true in the policy's [[auth.keys]]"))
            return
        if scope["path"] == ROUTE_PATH and scope["method"] == "POST":
            await self._checked(scope, receive, send, headers)
            return
        if scope["path"] != CHAT_PATH or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        try:
            await self._chat(scope, receive, send, client, headers)
        except ClientGone:
            return

    async def _checked(self, scope: Scope, receive: Receive, send: Send,
                       headers: dict[str, str]) -> None:
        """/v1/route: the same body checks as a chat request, then the app."""
        try:
            raw = await read_body(receive, self.policy.limits.max_body_bytes,
                                   headers.get("content-length"))
            parse_body(raw, self.policy.limits)
        except ClientGone:
            return
        except TierwiseError as exc:
            await _send_error(send, exc)
            return
        await self.app(scope, replay_body(raw, receive), send)

    async def _chat(self, scope: Scope, receive: Receive, send: Send, client: Client,
                    headers: dict[str, str]) -> None:
        started = time.perf_counter()
        try:
            raw = await read_body(receive, self.policy.limits.max_body_bytes,
                                   headers.get("content-length"))
            body = parse_body(raw, self.policy.limits)
            output = output_budget(body)
            admission = await self.limiter.admit(
                client, estimate_tokens(len(raw), output),
                estimate_cost(len(raw), output, *self._top_prices))
        except LimitExceeded as exc:
            await _send_error(send, exc, exc.headers())
            return
        except TierwiseError as exc:
            await _send_error(send, exc)
            return
        extra = dict(admission.headers)
        if admission.downgrade_to is not None:
            # pin the cheap tier: the request is answered instead of refused
            scope = dict(scope)
            scope["headers"] = [(k, v) for k, v in scope["headers"] if k != PIN_HEADER]
            scope["headers"].append((PIN_HEADER, admission.downgrade_to.encode()))
            extra["x-tierwise-downgraded"] = f"budget:{admission.downgrade_to}"
        if not self.cache.enabled:
            await self._forward(scope, raw, receive, send, admission, extra, None, body)
            return
        pin = next((v.decode("latin-1") for k, v in scope["headers"] if k == PIN_HEADER), None)
        may_read, may_write = directives(headers.get("cache-control"))
        key = self.cache.key(body, client.id, pin)
        if may_read:
            hit = await self.cache.get(key)
            if hit is not None:
                await self.limiter.charge(admission, 0.0, 0)
                extra.update(self._account_hit(hit, client.id, started))
                out = [(k.encode(), v.encode("latin-1")) for k, v in hit.headers]
                out += _encode({"x-tierwise-cost-usd": "0", **extra, "x-tierwise-cache": "hit",
                                "content-length": str(len(hit.body))})
                await send({"type": "http.response.start", "status": hit.status, "headers": out})
                await send({"type": "http.response.body", "body": hit.body})
                return
        extra["x-tierwise-cache"] = "miss" if may_read else "bypass"
        await self._forward(scope, raw, receive, send, admission, extra,
                            key if may_write else None, body)

    async def _forward(self, scope: Scope, raw: bytes, receive: Receive, send: Send,
                       admission: Admission, extra: dict[str, str], cache_key: str | None,
                       body: dict[str, Any] | None = None) -> None:
        status = 0
        raw_headers: list[tuple[bytes, bytes]] = []
        parts: list[bytes] = []
        size = 0
        limit = self.cache.settings.max_entry_bytes
        # The first-byte deadline: a timer that cancels this task (what asyncio.timeout does,
        # without its context manager object and state machine per request).
        task = asyncio.current_task()
        assert task is not None
        loop = task.get_loop()
        cancelling = task.cancelling()
        expired = False

        def expire() -> None:
            nonlocal expired
            expired = True
            task.cancel()

        deadline = loop.call_at(loop.time() + self.first_byte_timeout_s, expire)

        async def capture(message: Message) -> None:
            nonlocal status, size, raw_headers
            if message["type"] == "http.response.start":
                status = message["status"]
                raw_headers = message.get("headers") or []  # decoded only if needed, below
                if extra:
                    message = dict(message)
                    message["headers"] = [*raw_headers, *_encode(extra)]
                deadline.cancel()  # the first byte is out: no deadline any more
            elif message["type"] == "http.response.body" and cache_key is not None:
                chunk = message.get("body") or b""
                size += len(chunk)
                if size <= limit:
                    parts.append(chunk)
            await send(message)

        if body is not None:  # parsed and checked already: the chat endpoint need not again
            scope.setdefault("state", {})[PARSED_BODY] = body
        # The app runs in this task (no task of its own, no waiter): the first-byte deadline
        # cancels it here, and the admission is seen by its Router listeners through _CURRENT.
        token = _CURRENT.set(admission)
        try:
            await self.chat(scope, replay_body(raw, receive), capture)
        except asyncio.CancelledError:
            # ours only if the deadline fired and nobody else cancelled this task too
            if not expired or task.uncancel() > cancelling:
                raise
            log.warning("no response within %.0f s; answered 504", self.first_byte_timeout_s)
            await _send_error(send, UpstreamError("no response from the upstream in time",
                                                  status_code=504))
            await self._settle(admission, 0.0)
            return
        else:
            if expired:  # the app swallowed our cancellation: take it back
                task.uncancel()
        finally:
            deadline.cancel()
            _CURRENT.reset(token)
        if not admission.charged and self.limiter.charges(admission.client):
            # no Router listener charged it: the header's cost, else give the reservation back
            cost = _float(_header(raw_headers, b"x-tierwise-cost-usd")) if status == 200 else None
            await self._settle(admission, cost)
        # only a whole answer that passed its checks is stored (the responder says so): not a
        # stream the client or the upstream cut short, not an in-band error, not a failed check
        complete = (scope.get("state") or {}).pop(COMPLETE, False)
        if cache_key is not None and size <= limit and complete:
            resp_headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                            for k, v in raw_headers}
            await self.cache.put(cache_key, status, resp_headers, b"".join(parts))

    async def _settle(self, admission: Admission, cost: float | None) -> None:
        """Book a request no Router listener charged: `cost` (from its header), or None /
        0.0: it got no answer, and what admission reserved for it is given back."""
        if admission.charged or not self.limiter.charges(admission.client):
            return
        admission.charged = True
        await self.limiter.charge(admission, cost or 0.0, None if cost else 0)

    def _account_hit(self, hit: Any, key_id: str, started: float) -> dict[str, str]:
        """Record a cache hit in the ledger and metrics; its cost/saved headers."""
        if self.accountant is None:
            return {}
        replayed = dict(hit.headers)
        try:
            usage = json.loads(hit.body).get("usage")
            difficulty = float(replayed.get("x-tierwise-difficulty", "nan"))
        except (ValueError, AttributeError):  # not a JSON object: nothing to count tokens from
            usage, difficulty = None, math.nan
        record = self.accountant.cache_hit(
            replayed.get("x-tierwise-tier", ""), usage if isinstance(usage, dict) else None,
            key_id, (time.perf_counter() - started) * 1000,
            None if math.isnan(difficulty) else difficulty)
        if record is None:
            return {}
        return {**record.headers(), "x-tierwise-request-id": record.request_id}

    # -- charging ----------------------------------------------------------------------------

    def _on_routing(self, routing: Any) -> None:
        """Router listener: charge the request being served (runs inside its context)."""
        admission = _CURRENT.get()
        if admission is None or admission.charged:
            return
        admission.charged = True
        if not self.limiter.charges(admission.client):
            return  # no budget or token limit for this caller: nothing to book
        usage = routing.usage or {}
        tokens = usage.get("total_tokens") if isinstance(usage, dict) else None
        cost = 0.0 if routing.coalesced else routing.cost_usd
        if cost is None:
            tier = self.policy.tier(routing.tier)
            prompt = usage.get("prompt_tokens") or 0 if isinstance(usage, dict) else 0
            completion = usage.get("completion_tokens") or 0 if isinstance(usage, dict) else 0
            cost = ((prompt * tier.input_per_mtok + completion * tier.output_per_mtok) / 1e6
                    if tier is not None else 0.0)
        task = asyncio.get_running_loop().create_task(
            self.limiter.charge(admission, cost, tokens if isinstance(tokens, int) else None))
        self._tasks.add(task)
        task.add_done_callback(self._charged)

    def _charged(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("could not charge a request: %r", task.exception())

    def server_options(self) -> dict[str, Any]:
        """What `uvicorn.run` needs to serve this app within the policy's server limits
        (router.serving.server: client read deadline, connection cap, shutdown grace)."""
        from router.serving.server import server_options

        return server_options(self.policy)

    def _lifespan_send(self, send: Send) -> Send:
        async def wrapped(message: Message) -> None:
            if message["type"] == "lifespan.shutdown.complete":
                await self.aclose()  # after the app's own shutdown: charges, then connections
            await send(message)
        return wrapped

    async def aclose(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.state.close()
        # The books are closed here, at the end of the lifespan, not by whoever started the
        # server: uvicorn re-raises SIGTERM/SIGINT after its graceful shutdown, which (under a
        # plain `uvicorn.run`) ends the process before whoever started it reaches its cleanup,
        # and the rows of the requests answered during the shutdown were lost. The ledger stays
        # open (its owner closes it).
        if self.accountant is not None:
            await asyncio.to_thread(self.accountant.close)
        if self.ledger is not None:
            await asyncio.to_thread(self.ledger.flush)


def protect(app: ASGIApp, policy: Policy, **kwargs: Any) -> Guard:
    """Wrap an app in a Guard (see the module docstring)."""
    return Guard(app, policy, **kwargs)


def _encode(headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    return [(k.encode(), v.encode("latin-1", "replace")) for k, v in headers.items()]


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> str | None:
    """A response header's value (`name` lower-case; the app's names may not be)."""
    for key, value in headers:
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def _float(value: str | None) -> float | None:
    try:
        number = float(value) if value is not None else None
    except ValueError:
        return None
    return number if number is not None and math.isfinite(number) else None


async def _send_error(send: Send, exc: TierwiseError,
                      headers: dict[str, str] | None = None) -> None:
    body = json.dumps(exc.to_openai()).encode()
    out = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": exc.status_code,
                "headers": out + _encode(headers or {})})
    await send({"type": "http.response.body", "body": body})
