"""Check an OpenAI chat request body and pull out what routing needs.

Validation happens before anything else so a malformed body is a 400 naming the field, never
a traceback deeper in the stack.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from policies import RequestFacts
from router.errors import InvalidRequestError

ROLES = {"system", "developer", "user", "assistant", "tool", "function"}
PART_TYPES = {"text", "image_url", "input_audio", "file", "refusal"}


def as_messages(prompt_or_messages: str | Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """A prompt string becomes one user message; a messages list is checked and returned."""
    if isinstance(prompt_or_messages, str):
        return [{"role": "user", "content": prompt_or_messages}]
    if isinstance(prompt_or_messages, dict):
        raise InvalidRequestError("expected a prompt string or a list of messages, got one dict",
                                  param="messages")
    messages = list(prompt_or_messages)
    check_messages(messages)
    return messages


def check_messages(messages: Any) -> None:
    """Raise InvalidRequestError naming the first bad field of an OpenAI `messages` list."""
    if not isinstance(messages, list):
        raise InvalidRequestError("'messages' must be a list of message objects", param="messages")
    if not messages:
        raise InvalidRequestError("'messages' must contain at least one message", param="messages")
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise InvalidRequestError(f"{where} must be an object", param=where)
        role = message.get("role")
        if not isinstance(role, str) or role not in ROLES:  # a list/dict role is unhashable
            raise InvalidRequestError(f"{where}.role must be one of {sorted(ROLES)}, got {role!r}",
                                      param=f"{where}.role")
        content = message.get("content")
        if content is None:
            if role not in {"assistant"}:
                raise InvalidRequestError(f"{where}.content is required for role {role!r}",
                                          param=f"{where}.content")
        elif isinstance(content, list):
            for j, part in enumerate(content):
                _check_part(part, f"{where}.content[{j}]")
        elif not isinstance(content, str):
            raise InvalidRequestError(f"{where}.content must be a string or a list of parts",
                                      param=f"{where}.content")
        tool_calls = message.get("tool_calls")
        if tool_calls is not None and not isinstance(tool_calls, list):
            raise InvalidRequestError(f"{where}.tool_calls must be a list",
                                      param=f"{where}.tool_calls")


def _check_part(part: Any, where: str) -> None:
    if not isinstance(part, dict) or not isinstance(part.get("type"), str) \
            or part["type"] not in PART_TYPES:
        raise InvalidRequestError(f"{where} must be an object with type in {sorted(PART_TYPES)}",
                                  param=where)
    if part["type"] == "text" and not isinstance(part.get("text"), str):
        raise InvalidRequestError(f"{where}.text must be a string", param=f"{where}.text")


# The fields that bound a request's output; providers honour either.
OUTPUT_FIELDS = ("max_completion_tokens", "max_tokens")


def output_budget(body: dict[str, Any]) -> int | None:
    """The most output tokens a request may ask for: the larger of its max_completion_tokens and
    max_tokens, of those set. A null one bounds nothing, so the other still counts: a
    ``"max_completion_tokens": null`` beside a huge ``max_tokens`` must not hide it from the
    limits, the tokens-per-minute estimate or the context-window check."""
    values = [v for v in (body.get(name) for name in OUTPUT_FIELDS)
              if isinstance(v, int) and not isinstance(v, bool)]
    return max(values) if values else None


def request_facts(body: dict[str, Any], pinned_tier: str | None = None) -> RequestFacts:
    """What the policy's hard rules look at: output budget, tools, images, a pinned tier."""
    for name in OUTPUT_FIELDS:
        value = body.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or value < 1):
            raise InvalidRequestError(f"{name} must be a positive integer", param=name)
    max_tokens = output_budget(body)
    tools = body.get("tools") or body.get("functions")
    messages = body.get("messages") or []
    needs_tools = bool(tools) or any(
        m.get("tool_calls") or m.get("role") in {"tool", "function"} for m in messages)
    needs_vision = any(
        isinstance(m.get("content"), list)
        and any(isinstance(p, dict) and p.get("type") == "image_url" for p in m["content"])
        for m in messages)
    return RequestFacts(max_tokens=max_tokens, needs_tools=needs_tools, needs_vision=needs_vision,
                        pinned_tier=pinned_tier)
