"""The pass-through's errors: what an OpenAI-compatible upstream's failure means for escalation.

Each ``PassthroughError`` carries ``status`` (the HTTP status tierwise reports), ``reason`` (a
short tag), ``retryable`` (would the next tier plausibly succeed) and ``upstream_status``.
Upstream error text is scrubbed of the API key before it becomes part of any message.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from router.upstream.connection import ResponseError

_MESSAGE_LIMIT = 500


class PassthroughError(Exception):
    """A call through the pass-through failed. Not a TierwiseError: the engine classifies it."""

    status = 502
    reason = "upstream_error"
    retryable = True

    def __init__(self, message: str, *, upstream_status: int | None = None,
                 status: int | None = None, reason: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.upstream_status = upstream_status
        if status is not None:
            self.status = status
        if reason is not None:
            self.reason = reason

    # aliases matching litellm/OpenAI exceptions, so existing code reading them keeps working
    @property
    def status_code(self) -> int:
        return self.upstream_status or self.status


class UpstreamStatusError(PassthroughError):
    """The upstream answered with an HTTP error status (see ``upstream_status``)."""

    def __init__(self, message: str, *, upstream_status: int, code: str | None = None,
                 body: Any = None) -> None:
        super().__init__(message, upstream_status=upstream_status)
        self.code = code
        self.body = body  # the upstream's parsed error JSON (scrubbed of the key), or None


class RateLimitedError(UpstreamStatusError):
    status = 429
    reason = "rate_limited"
    retryable = True


class ServerError(UpstreamStatusError):
    """5xx from the upstream; reported to the client as 502 (the fault is upstream)."""

    status = 502
    retryable = True

    def __init__(self, message: str, *, upstream_status: int, code: str | None = None,
                 body: Any = None) -> None:
        super().__init__(message, upstream_status=upstream_status, code=code, body=body)
        self.reason = f"upstream_{upstream_status}"


class ContextWindowError(UpstreamStatusError):
    """400 context_length_exceeded: a tier with a larger window may take it."""

    status = 400
    reason = "context_window"
    retryable = True


class ClientRequestError(UpstreamStatusError):
    """Another 4xx (400, 401, 403, 404, 422...): the next tier would fail the same way,
    except 408 (request timeout), which is retryable."""

    retryable = False

    def __init__(self, message: str, *, upstream_status: int, code: str | None = None,
                 body: Any = None) -> None:
        super().__init__(message, upstream_status=upstream_status, code=code, body=body)
        self.status = upstream_status
        self.reason = f"upstream_{upstream_status}"
        self.retryable = upstream_status == 408


class UpstreamTimeoutError(PassthroughError):
    status = 504
    reason = "timeout"
    retryable = True


class UpstreamConnectionError(PassthroughError):
    """Connection refused/reset before a response, DNS failure, TLS failure."""

    status = 502
    reason = "connection_error"
    retryable = True


class BadResponseError(PassthroughError):
    """The upstream answered 2xx with a body that is not the JSON object expected."""

    status = 502
    reason = "bad_response"
    retryable = True


class StreamInterrupted(PassthroughError):
    """The stream broke after it started (reset, truncated chunk, read timeout).

    ``events`` is how many events had already been yielded: if any reached the client, the
    request cannot move to another tier any more; report the failure in-band.
    """

    status = 502
    reason = "stream_interrupted"

    def __init__(self, message: str, *, events: int, timed_out: bool = False) -> None:
        super().__init__(message, status=504 if timed_out else None,
                         reason="stream_timeout" if timed_out else None)
        self.events = events
        self.retryable = events == 0


def classify(exc: BaseException) -> tuple[bool, int, str]:
    """(retryable on the next tier, HTTP status to report, short reason), like
    ``router.upstream.calls.classify_failure`` does for litellm exceptions."""
    if isinstance(exc, PassthroughError):
        return exc.retryable, exc.status, exc.reason
    if isinstance(exc, asyncio.TimeoutError):
        return True, 504, "timeout"
    return False, 502, "upstream_error"


def _scrub(text: str, api_key: str | None) -> str:
    if api_key and len(api_key) >= 4 and api_key in text:
        text = text.replace(api_key, "***")
    return text[:_MESSAGE_LIMIT]


def _scrub_obj(obj: Any, api_key: str | None) -> Any:
    if not api_key:
        return obj
    if isinstance(obj, str):
        return obj.replace(api_key, "***") if api_key in obj else obj
    if isinstance(obj, dict):
        return {k: _scrub_obj(v, api_key) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_scrub_obj(v, api_key) for v in obj]
    return obj


def status_error(status: int, raw: bytes, api_key: str | None) -> UpstreamStatusError:
    """The exception for an HTTP error answer, with the upstream's message (scrubbed)."""
    body: Any = None
    message = ""
    code: str | None = None
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        message = raw[:_MESSAGE_LIMIT].decode("utf-8", "replace").strip()
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict):
            message = str(err.get("message") or "")
            c = err.get("code") or err.get("type")
            code = str(c) if c is not None else None
        elif isinstance(err, str):
            message = err
        body = _scrub_obj(body, api_key)
    message = _scrub(message or f"HTTP {status}", api_key)
    text = f"upstream answered HTTP {status}: {message}"
    if status == 429:
        return RateLimitedError(text, upstream_status=status, code=code, body=body)
    if status >= 500:
        return ServerError(text, upstream_status=status, code=code, body=body)
    low = message.lower()
    if status in (400, 413) and (code == "context_length_exceeded" or "context length" in low
                                 or "context_length_exceeded" in low
                                 or "maximum context" in low):
        return ContextWindowError(text, upstream_status=status, code=code, body=body)
    return ClientRequestError(text, upstream_status=status, code=code, body=body)


def transport_error(exc: BaseException, url: str) -> PassthroughError:
    if isinstance(exc, TimeoutError):
        return UpstreamTimeoutError(f"upstream timed out: {url}")
    if isinstance(exc, ResponseError):
        return BadResponseError(f"upstream answer unreadable ({exc}): {url}")
    return UpstreamConnectionError(f"cannot reach upstream {url}: {exc}")
