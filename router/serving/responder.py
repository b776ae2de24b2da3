"""Answer one OpenAI chat request on raw ASGI (receive, send): shared by the proxy and middleware.

Pure ASGI rather than Starlette responses because the request path needs two things those hide:
watching for the client's disconnect while a non-stream answer is awaited (so a client that
leaves stops waiting, and a coalesced call is cancelled when its last waiter is gone), and a
guaranteed `aclose()` of the stream relay whatever happens to the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, TypeVar

from router.engine import Outcome, Router
from router.errors import InvalidRequestError, TierwiseError
from router.relay import Relay
from router.serving.validation import body_too_large
from router.streaming import SSE_DONE, RawJSON, sse

log = logging.getLogger("tierwise.serve")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
T = TypeVar("T")

MAX_BODY_BYTES = 4 * 1024 * 1024
PIN_HEADER = "x-tierwise-tier"
# scope["state"] key under which router.serving.guard leaves the body it parsed and checked already
PARSED_BODY = "tierwise_body"
COALESCE_HEADER = "x-tierwise-coalesce"
# scope["state"] key of the caller's API key id (set by router.serving.guard): its tenant, so
# its requests share upstream calls only with its own (router.coalescing.inflight)
TENANT = "tierwise_client"
# scope["state"] key set to True once a whole, successful answer that passed the response
# checks went out: the only kind router.serving.guard may put in the response cache (not a
# stream cut short by the client or the upstream, not an error, not a failed check)
COMPLETE = "tierwise_complete"
INTERNAL_ERROR = {"error": {"message": "internal error in tierwise", "type": "server_error",
                            "param": None, "code": None}}


class ClientGone(Exception):
    """The client disconnected before its answer was ready."""


def header(scope: Scope, name: str) -> str | None:
    """A request header's value (ASGI header names are lower-case bytes)."""
    key = name.encode()
    for k, v in scope.get("headers") or []:
        if k == key:
            return str(v.decode("latin-1"))
    return None


async def read_body(receive: Receive, limit: int = MAX_BODY_BYTES,
                    content_length: str | None = None) -> bytes:
    """The whole request body; BodyTooLarge (413) beyond `limit`, ClientGone on disconnect.

    A declared `content_length` over the limit is refused before reading anything.
    """
    if content_length is not None and content_length.isdigit() and int(content_length) > limit:
        raise body_too_large(limit)
    parts: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone()
        chunk = message.get("body") or b""
        size += len(chunk)
        if size > limit:
            raise body_too_large(limit)
        parts.append(chunk)
        if not message.get("more_body"):
            return b"".join(parts)


def replay_body(raw: bytes, receive: Receive) -> Receive:
    """A receive() for the app behind us: the already-read body once, then the client's events
    (a disconnect still reaches the app)."""
    pending: list[bytes] = [raw]  # emptied once sent, so a long call does not pin the body

    async def replayed() -> Message:
        if pending:
            return {"type": "http.request", "body": pending.pop(), "more_body": False}
        return await receive()

    return replayed


def parse_body(raw: bytes) -> dict[str, Any]:
    """The request's JSON object, or InvalidRequestError saying what is wrong with it."""
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise InvalidRequestError("request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise InvalidRequestError("request body must be a JSON object")
    return body


async def send_json(send: Send, status: int, data: Any,
                    headers: dict[str, str] | None = None) -> None:
    # an upstream answer passed through as it is: its own bytes (router.streaming.RawJSON)
    payload = data.raw if data.__class__ is RawJSON else json.dumps(
        data, separators=(",", ":")).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    raw += [(k.encode(), v.encode("latin-1", "replace")) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": payload})


async def send_error(send: Send, exc: TierwiseError) -> None:
    await send_json(send, exc.status_code, exc.to_openai())


async def wait_disconnect(receive: Receive) -> None:
    """Returns when the client has gone (the body was read already)."""
    while (await receive())["type"] != "http.disconnect":
        pass


# How long an answer may take before a watcher for the client's disconnect is started. Most
# answers are done sooner (no watcher task at all: a timer instead, ~1 us against ~7 us for a
# task started and cancelled per request); a client that leaves is noticed at most this late.
WATCH_AFTER_S = 0.05


async def unless_disconnected(receive: Receive, work: Awaitable[T],
                              watch_after_s: float = WATCH_AFTER_S) -> T:
    """Await `work`, cancelling it (and raising ClientGone) if the client disconnects first.

    `work` runs in this task. After `watch_after_s` (if it is still running) a watcher task
    waits for the disconnect and cancels this task (cheaper per request than running `work`
    in a task of its own beside the watcher). The cancellation arrives inside `work`, which
    never returned while the watcher ran."""
    task = asyncio.current_task()
    assert task is not None
    loop = task.get_loop()
    gone = False
    watcher: asyncio.Task[None] | None = None

    async def watch() -> None:
        nonlocal gone
        await wait_disconnect(receive)
        gone = True
        task.cancel()

    def start_watching() -> None:
        nonlocal watcher
        watcher = loop.create_task(watch())

    timer = loop.call_later(watch_after_s, start_watching)
    try:
        return await work
    except asyncio.CancelledError:
        # ours alone (not also a shutdown or a deadline from outside): the client left
        if gone and task.uncancel() == 0:
            raise ClientGone() from None
        raise
    finally:
        timer.cancel()
        if watcher is not None:
            watcher.cancel()


class ChatResponder:
    """Answers one chat completion request whose body has been read: route, call, respond."""

    def __init__(self, router: Router, scope: Scope, receive: Receive, send: Send) -> None:
        self.router = router
        self.scope = scope
        self.receive = receive
        self.send = send

    async def respond(self, body: dict[str, Any]) -> None:
        # One watcher for the whole answer: if the client leaves, whatever is being awaited
        # (the routing task, the upstream call, a write) is cancelled, and the stream relay
        # closed (leaving its flight).
        try:
            await unless_disconnected(self.receive, self._answer(body))
        except ClientGone:
            return

    async def _answer(self, body: dict[str, Any]) -> None:
        coalesce = (header(self.scope, COALESCE_HEADER) or "on").strip().lower() not in {
            "off", "false", "0", "no"}
        state = self.scope.get("state") or {}
        try:
            outcome = await self.router.serve(body, pin=header(self.scope, PIN_HEADER),
                                              coalesce=coalesce, tenant=state.get(TENANT))
        except TierwiseError as exc:
            await send_error(self.send, exc)
            return
        except Exception:  # a bug of ours: log it, never leak a traceback to the client
            log.exception("unexpected error answering a chat request")
            await send_json(self.send, 500, INTERNAL_ERROR)
            return
        if outcome.stream is None:
            await send_json(self.send, 200, outcome.response, outcome.routing.headers())
            self._complete(outcome)
            return
        relay = outcome.stream
        assert isinstance(relay, Relay)
        try:
            await self._pump(outcome)
        finally:
            await relay.aclose()

    async def _pump(self, outcome: Outcome) -> None:
        relay = outcome.stream
        assert isinstance(relay, Relay)
        headers = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
        headers += [(k.encode(), v.encode("latin-1", "replace"))
                    for k, v in outcome.routing.headers().items()]
        await self.send({"type": "http.response.start", "status": 200, "headers": headers})
        send = self.send
        try:
            while True:
                try:
                    batch = await relay.batch()
                except StopAsyncIteration:
                    break
                # one write per batch (the chunks of one upstream read), not one per chunk
                body = sse(batch[0]) if len(batch) == 1 else b"".join([sse(c) for c in batch])
                if relay.drained:  # the last chunks: the end goes out in the same write
                    await send({"type": "http.response.body", "body": body + SSE_DONE})
                    with contextlib.suppress(StopAsyncIteration):
                        while True:  # runs the stream's end bookkeeping (accounting); an
                            await relay.batch()  # upstream talking past its [DONE] is ignored
                    self._complete(outcome)
                    return
                await send({"type": "http.response.body", "body": body, "more_body": True})
        except TierwiseError as exc:  # the status line is gone: report in-band, then stop
            log.warning("stream failed after the first byte: %s", exc.message)
            await send({"type": "http.response.body", "body": sse(exc.to_openai()),
                        "more_body": True})
            await send({"type": "http.response.body", "body": SSE_DONE})
            return
        await send({"type": "http.response.body", "body": SSE_DONE})
        self._complete(outcome)

    def _complete(self, outcome: Outcome) -> None:
        """Mark the answer whole and good (COMPLETE). Reached only when it all went out: a
        client that leaves cancels this task before."""
        relay = outcome.stream
        if outcome.routing.failed_check is None and (
                not isinstance(relay, Relay) or relay.finished):
            self.scope.setdefault("state", {})[COMPLETE] = True
