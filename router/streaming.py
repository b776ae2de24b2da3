"""Convert between the two shapes of a chat completion: one response, or a stream of chunks.

Coalescing lets a streaming and a non-streaming client share one upstream call, so each shape
must be buildable from the other: `assemble` joins chunks into a `chat.completion` (the way the
OpenAI SDK's stream helpers do), `as_chunks` splits a response into `chat.completion.chunk`s.
Both work on plain dicts, the wire format.
"""

from __future__ import annotations

import json
from typing import Any


def assemble(chunks: list[dict[str, Any]]) -> dict[str, Any]:
    """The non-stream response equivalent to a complete list of stream chunks."""
    choices: dict[int, dict[str, Any]] = {}
    head: dict[str, Any] = {}
    usage = None
    for chunk in chunks:
        if not head and chunk.get("id"):
            head = {k: chunk[k] for k in ("id", "created", "model", "system_fingerprint")
                    if k in chunk}
        if chunk.get("usage"):
            usage = chunk["usage"]
        for c in chunk.get("choices") or []:
            index = int(c.get("index", 0))
            choice = choices.setdefault(index, {"index": index, "message": {"role": "assistant"},
                                                "finish_reason": None})
            _merge_delta(choice["message"], c.get("delta") or {})
            if c.get("finish_reason"):
                choice["finish_reason"] = c["finish_reason"]
            if c.get("logprobs"):
                content = (c["logprobs"] or {}).get("content") or []
                choice.setdefault("logprobs", {"content": []})["content"].extend(content)
    for choice in choices.values():
        message = choice["message"]
        message.setdefault("content", None)
        if "tool_calls" in message:
            calls = message["tool_calls"]
            message["tool_calls"] = [calls[k] for k in sorted(calls)]
    response = {**head, "object": "chat.completion",
                "choices": [choices[i] for i in sorted(choices)]}
    if usage is not None:
        response["usage"] = usage
    return response


def _merge_delta(message: dict[str, Any], delta: dict[str, Any]) -> None:
    for key, value in delta.items():
        if value is None:
            continue
        if key == "role":
            message["role"] = value
        elif key in {"content", "refusal", "reasoning_content"}:
            message[key] = (message.get(key) or "") + value
        elif key == "tool_calls":
            calls = message.setdefault("tool_calls", {})
            for part in value:
                index = int(part.get("index", len(calls)))
                call = calls.setdefault(index, {"id": None, "type": "function",
                                                "function": {"name": "", "arguments": ""}})
                if part.get("id"):
                    call["id"] = part["id"]
                if part.get("type"):
                    call["type"] = part["type"]
                fn = part.get("function") or {}
                call["function"]["name"] += fn.get("name") or ""
                call["function"]["arguments"] += fn.get("arguments") or ""
        else:
            message[key] = value


def as_chunks(response: dict[str, Any], include_usage: bool) -> list[dict[str, Any]]:
    """A complete response as stream chunks: per choice one delta with everything, then the end."""
    head: dict[str, Any] = {k: response[k] for k in ("id", "created", "model",
                                                     "system_fingerprint") if k in response}
    head["object"] = "chat.completion.chunk"
    chunks = []
    for choice in response.get("choices") or []:
        message = dict(choice.get("message") or {})
        delta: dict[str, Any] = {"role": message.pop("role", "assistant")}
        if message.get("tool_calls"):
            delta["tool_calls"] = [{**call, "index": i}
                                   for i, call in enumerate(message.pop("tool_calls"))]
        delta.update({k: v for k, v in message.items() if v is not None})
        index = choice.get("index", 0)
        chunks.append({**head, "choices": [{"index": index, "delta": delta,
                                            "finish_reason": None}]})
        chunks.append({**head, "choices": [{"index": index, "delta": {},
                                            "finish_reason": choice.get("finish_reason")}]})
    if include_usage and response.get("usage"):
        chunks.append({**head, "choices": [], "usage": response["usage"]})
    return chunks


def is_usage_only(chunk: dict[str, Any]) -> bool:
    """The final chunk that `stream_options.include_usage` adds (no choices, only usage)."""
    return not chunk.get("choices") and bool(chunk.get("usage"))


def has_output(chunk: dict[str, Any]) -> bool:
    """Does this chunk carry any answer (text, refusal or a tool call)?"""
    for c in chunk.get("choices") or []:
        delta = c.get("delta") or {}
        if delta.get("content") or delta.get("tool_calls") or delta.get("refusal") \
                or delta.get("function_call"):
            return True
    return False


def sse(data: dict[str, Any]) -> bytes:
    """One server-sent event carrying a JSON object (a RawChunk's own bytes, as they came)."""
    if data.__class__ is RawChunk:
        return data.raw  # type: ignore[attr-defined, no-any-return]
    return b"data: " + json.dumps(data, separators=(",", ":")).encode() + b"\n\n"


SSE_DONE = b"data: [DONE]\n\n"


class RawJSON(dict):  # type: ignore[type-arg]
    """An upstream's JSON object answer parsed, keeping its bytes: `send_json` sends them as
    they came instead of serialising the dict again. Never mutated on the request path (the
    checks, coalescing and accounting only read answers), so the two cannot diverge."""

    __slots__ = ("raw",)

    def __init__(self, data: dict[str, Any], raw: bytes) -> None:
        super().__init__(data)
        self.raw = raw


class RawChunk(dict):  # type: ignore[type-arg]
    """A chunk parsed from an upstream SSE event that was one ``data: {...}`` line, keeping
    that event's bytes: `sse()` relays them as they came instead of serialising the dict again.
    Never mutated (nothing on the request path mutates a chunk), so the two cannot diverge."""

    __slots__ = ("raw",)

    def __init__(self, data: dict[str, Any], raw: bytes) -> None:
        super().__init__(data)
        self.raw = raw


class LastBatch(list):  # type: ignore[type-arg]
    """The last chunks of a stream: router.upstream.calls marks the chunks that came with the
    upstream's [DONE], so the end can go out in the same write
    (router.coalescing.solo.OwnStream)."""

    __slots__ = ()
