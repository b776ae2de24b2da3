"""Input limits and request-body validation for the proxy: every bad input is a 400 (or 413).

`parse_body` turns raw bytes into a checked chat-completions body. It catches what would
otherwise surface as a 500 deeper in the stack: invalid UTF-8 and JSON, NaN/Infinity, lone
surrogates (they cannot be re-encoded for the upstream), nesting deep enough to hit Python's
recursion limit, wrong types of the common OpenAI fields, and the policy's size caps. Message
structure is checked by router.messages.check_messages (not duplicated here); errors name the
field path in ``param``, e.g. ``messages[2].content``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

from policies.access import LimitSettings
from router.errors import InvalidRequestError
from router.messages import OUTPUT_FIELDS, check_messages

MAX_DEPTH = 64


class BodyTooLarge(InvalidRequestError):
    """413: the body is over ``[limits] max_body_bytes``."""

    status_code = 413
    code = "request_too_large"


def raise_with(key: str) -> str:
    """Where a limit comes from, for its error message: the policy key that raises it."""
    return f"[limits] {key} in the policy (default {getattr(DEFAULT_LIMITS, key)}) raises it"


def body_too_large(limit: int) -> BodyTooLarge:
    return BodyTooLarge(f"request body is larger than {limit} bytes; "
                        f"{raise_with('max_body_bytes')}")


DEFAULT_LIMITS = LimitSettings()


def _no_constants(name: str) -> Any:
    raise InvalidRequestError(f"request body contains {name}, which is not valid JSON")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return (isinstance(v, int | float) and not isinstance(v, bool)) and math.isfinite(v)


def _int_in(lo: int, hi: int) -> Callable[[Any], bool]:
    return lambda v: _is_int(v) and lo <= v <= hi


def _num_in(lo: float, hi: float) -> Callable[[Any], bool]:
    return lambda v: _is_num(v) and lo <= v <= hi


def _str_list(v: Any) -> bool:
    return isinstance(v, str) or (isinstance(v, list) and len(v) <= 4
                                  and all(isinstance(s, str) for s in v))


# Top-level fields: a check and what it expects. Unknown fields pass through to the provider.
FIELDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "model": (lambda v: isinstance(v, str) and 0 < len(v) <= 256, "a model name string"),
    "stream": (lambda v: isinstance(v, bool), "true or false"),
    "max_tokens": (_int_in(1, 10**7), "a positive integer"),
    "max_completion_tokens": (_int_in(1, 10**7), "a positive integer"),
    "temperature": (_num_in(0, 2), "a number between 0 and 2"),
    "top_p": (_num_in(0, 1), "a number between 0 and 1"),
    "n": (_int_in(1, 128), "an integer between 1 and 128"),
    "presence_penalty": (_num_in(-2, 2), "a number between -2 and 2"),
    "frequency_penalty": (_num_in(-2, 2), "a number between -2 and 2"),
    "seed": (_is_int, "an integer"),
    "stop": (_str_list, "a string or a list of up to 4 strings"),
    "user": (lambda v: isinstance(v, str), "a string"),
    "tools": (lambda v: isinstance(v, list), "a list of tools"),
    "tool_choice": (lambda v: isinstance(v, str | dict), "a string or an object"),
    "parallel_tool_calls": (lambda v: isinstance(v, bool), "true or false"),
    "response_format": (lambda v: isinstance(v, dict) and isinstance(v.get("type"), str),
                        'an object with a "type" string'),
    "stream_options": (lambda v: isinstance(v, dict), "an object"),
    "logit_bias": (lambda v: isinstance(v, dict) and all(_is_num(x) for x in v.values()),
                   "an object of token id -> number"),
    "logprobs": (lambda v: isinstance(v, bool), "true or false"),
    "top_logprobs": (_int_in(0, 20), "an integer between 0 and 20"),
    "metadata": (lambda v: isinstance(v, dict), "an object"),
}


def parse_body(raw: bytes, limits: LimitSettings) -> dict[str, Any]:
    """The checked JSON object of a chat request; InvalidRequestError or BodyTooLarge if not."""
    if len(raw) > limits.max_body_bytes:
        raise body_too_large(limits.max_body_bytes)
    try:
        text = raw.decode("utf-8")
        body = _decode(text)
    except InvalidRequestError:
        raise
    except RecursionError:
        raise InvalidRequestError("request body is nested too deeply") from None
    except (ValueError, UnicodeDecodeError):
        raise InvalidRequestError("request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise InvalidRequestError("request body must be a JSON object")
    # The walk finds what the text itself can rule out: a lone surrogate only comes from a
    # \u escape (the bytes were valid UTF-8), and nesting needs as many brackets as levels.
    if "\\u" in text or text.count("{") + text.count("[") > MAX_DEPTH:
        _check_values(body, "", 0)
    check_body(body, limits)
    return body


_ORDER = {name: i for i, name in enumerate(FIELDS)}
# json.loads(text, parse_constant=...) builds a JSONDecoder per call; this one is built once
_decode = json.JSONDecoder(parse_constant=_no_constants).decode


def check_body(body: dict[str, Any], limits: LimitSettings) -> None:
    """Field types and the policy's caps on an already parsed body."""
    bad = None  # the first bad field in FIELDS order (a body has few of the fields)
    for name, value in body.items():
        check = FIELDS.get(name)
        if check is not None and value is not None and not check[0](value) and (
                bad is None or _ORDER[name] < _ORDER[bad]):
            bad = name
    if bad is not None:
        raise InvalidRequestError(f"'{bad}' must be {FIELDS[bad][1]}", param=bad)
    check_messages(body.get("messages"))
    messages: list[Any] = body["messages"]
    if len(messages) > limits.max_messages:
        raise InvalidRequestError(f"'messages' has {len(messages)} messages; the limit is "
                                  f"{limits.max_messages} ({raise_with('max_messages')})",
                                  param="messages")
    for i, message in enumerate(messages):
        size = _content_chars(message.get("content"))
        if size > limits.max_content_chars:
            raise InvalidRequestError(f"messages[{i}].content has {size} characters; the limit "
                                      f"is {limits.max_content_chars} "
                                      f"({raise_with('max_content_chars')})",
                                      param=f"messages[{i}].content")
        for key in ("name", "tool_call_id"):
            if key in message and message[key] is not None and not isinstance(message[key], str):
                raise InvalidRequestError(f"messages[{i}].{key} must be a string",
                                          param=f"messages[{i}].{key}")
    for i, tool in enumerate(body.get("tools") or []):
        where = f"tools[{i}]"
        fn = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise InvalidRequestError(f"{where} must be an object with function.name",
                                      param=f"{where}.function.name")
    cap = limits.max_tokens
    if cap is not None:
        # each of the two fields on its own: a null in one must not hide the other
        for name in OUTPUT_FIELDS:
            requested = body.get(name)
            if isinstance(requested, int) and _is_int(requested) and requested > cap:
                raise InvalidRequestError(f"'{name}' is {requested}; this proxy allows at most "
                                          f"{cap} ([limits] max_tokens in the policy)",
                                          param=name)


def _content_chars(content: Any) -> int:
    if isinstance(content, str):
        return len(content)
    if isinstance(content, list):
        return sum(len(p.get("text") or "") for p in content
                   if isinstance(p, dict) and isinstance(p.get("text"), str))
    return 0


def _check_values(value: Any, path: str, depth: int) -> None:
    """Reject what JSON allows but the upstream call cannot carry: lone surrogates, deep nests."""
    if depth > MAX_DEPTH:
        raise InvalidRequestError(f"request body is nested deeper than {MAX_DEPTH} levels",
                                  param=path or None)
    if isinstance(value, str):
        if not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise InvalidRequestError("string contains an unpaired UTF-16 surrogate",
                                          param=path or None) from None
    elif isinstance(value, dict):
        for k, v in value.items():
            _check_values(k, path, depth + 1)
            _check_values(v, f"{path}.{k}" if path else str(k), depth + 1)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _check_values(v, f"{path}[{i}]", depth + 1)
