"""Response checks: is a non-stream answer bad enough to re-ask the next tier?

Each check looks only at the response and at what the client asked for, so it costs microseconds
and never a second model call. They are deliberately conservative: a false alarm doubles the
cost of a request, a miss only lets a weak answer through as it would without tierwise.

- empty:   no choice has text, a refusal or a tool call;
- length:  cut by the token limit (finish_reason "length") although the client set no limit,
           i.e. the tier's own output cap was too small for this request;
- json:    JSON output was asked (response_format json_object / json_schema) and a text answer
           does not parse;
- refusal: the model declined (the `refusal` field, or a short answer that opens with a refusal
           phrase).
"""

from __future__ import annotations

import json
import re
from typing import Any

# Openings of refusals. Anchored at the start and limited to short answers: a long answer that
# merely contains "I can't" somewhere is an answer, not a refusal.
_REFUSAL = re.compile(
    r"^\s*(i'?m sorry,? but |sorry,? but |i apologi[sz]e,? but |unfortunately,? )?"
    r"(i\s*(can(no|')t|am unable to|'m unable to|won'?t|must decline to|am not able to))"
    r"\s+(help|assist|comply|provide|do that|fulfil|answer|support)",
    re.IGNORECASE)
_REFUSAL_MAX_CHARS = 400


def check_response(response: dict[str, Any], body: dict[str, Any],
                   checks: tuple[str, ...] | list[str]) -> str | None:
    """The name of the first failed check ("empty", "length", "json", "refusal"), or None."""
    choices = [c for c in response.get("choices") or [] if isinstance(c, dict)]
    messages = [c.get("message") or {} for c in choices]
    if "empty" in checks and (not choices or all(_is_empty(m) for m in messages)):
        return "empty"
    no_limit = body.get("max_tokens") is None and body.get("max_completion_tokens") is None
    if "length" in checks and no_limit and any(c.get("finish_reason") == "length"
                                               for c in choices):
        return "length"
    if "json" in checks and _wants_json(body):
        for message in messages:
            if message.get("tool_calls") or not isinstance(message.get("content"), str):
                continue
            try:
                json.loads(message["content"])
            except ValueError:
                return "json"
    if "refusal" in checks and any(_is_refusal(m) for m in messages):
        return "refusal"
    return None


def _is_empty(message: dict[str, Any]) -> bool:
    content = message.get("content")
    text = content if isinstance(content, str) else ""
    if isinstance(content, list):
        text = "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return not (text.strip() or message.get("tool_calls") or message.get("function_call")
                or message.get("refusal"))


def _wants_json(body: dict[str, Any]) -> bool:
    fmt = body.get("response_format")
    return isinstance(fmt, dict) and fmt.get("type") in {"json_object", "json_schema"}


def _is_refusal(message: dict[str, Any]) -> bool:
    if message.get("refusal"):
        return True
    content = message.get("content")
    return (isinstance(content, str) and len(content) <= _REFUSAL_MAX_CHARS
            and not message.get("tool_calls") and _REFUSAL.match(content) is not None)
