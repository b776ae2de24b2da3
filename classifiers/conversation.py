"""Flatten an OpenAI chat ``messages`` list into weighted text segments.

The conversation counts, its system prompt does not. Each user, assistant or tool message becomes
one segment with a weight used for the bag-of-token features: the last user turn weighs 1.0 (it
is what must be answered), earlier turns 0.5. A system (or developer) prompt is kept apart
(``Conversation.system``): it is the app's, mostly the same on each of its requests, so it could
only shift them all alike or drown the user's words (a 1,500-token one sent 27 of 36 hard
requests to the smallest demo tier), and the training data has none (feature version 11). It
still counts as structure (``has_system``) and in the request's token count; a request with no
other text is scored on it. An agent's tool exchange is kept apart the same way
(``Conversation.tool``: a tool call's name and JSON arguments, the legacy functions API's
``function_call`` alike, a tool or function message's text): it is material the agent fetched
for the request, not what the user asks, and scored as turns it moved 53% of real chat requests
a tier up one agent step later, 66% (mostly down) after a long result (feature version 18;
bench/INVARIANCE.md). A user turn's opening greeting and closing thank-you are dropped when it
says something else (feature version 20). Non-text parts (images, audio, files) contribute no
text but are counted as structure. Never raises on odd content.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from .pleasantries import without_pleasantries

W_LAST_USER = 1.0
W_CONTEXT = 0.5
# Spaces of other code points read as " " and invisible format characters as nothing (feature
# version 13): a no-break space is not a word boundary for the word hashing, so text pasted from
# a web page or a word processor glued its words into unknown ones (bench/INVARIANCE.md).
# Typographic quotes and the ellipsis read as the ASCII a keyboard types (feature version 15):
# a phone or a word processor types ’ for ' and “ ” for ", which split words and counted bytes
# differently, and 0.8% of real chat requests changed tier for it.
_PLAIN = str.maketrans({**{c: " " for c in "\u00a0\u1680\u202f\u205f\u3000"},
                        **{chr(c): " " for c in range(0x2000, 0x200B)},
                        **{c: None for c in "\u200b\u2060\ufeff"},
                        **{c: "'" for c in "\u2018\u2019\u201a\u201b"},
                        **{c: '"' for c in "\u201c\u201d\u201e\u201f"},
                        "\u2026": "..."})


# Layout is not content (feature version 14): a run of spaces or a tab after a line's first
# non-space character reads as one space, and markdown bold ("**Task**") as its text. Both are
# how a request is typed or rendered, not what it asks, yet every space byte counted in the
# token estimate (doubled spaces moved 9% of real chat requests a tier up) and the markers
# counted as words and bytes (a bold first line moved 7.4%, by up to 0.67 logits;
# bench/INVARIANCE.md). Indentation is kept: it is how code reads, and collapsing it too
# shortened pasted code (bench/QUALITY_ROUTING.md, "Layout is not content"). Bold is "**"
# around text that starts and ends with a non-space, not touching a word or another "*":
# `2**10`, `f(**kw)` and `x**2 + y**2` keep theirs; "__" is left alone, as Python's `__init__`
# is far commoner in requests than __bold__. Line breaks stay: lines are structure.
_EMPHASIS = re.compile(r"(?<![\w*])\*\*(?=[^\s*])([^\n]+?)(?<=[^\s*])\*\*(?![\w*])")
# Heading marks are layout too (feature version 22): "## " before a line read as a word ("##",
# learned from Arena-Hard's structured prompts) and as two tokens, and a heading put on the
# first line moved 4.7% of real chat requests a tier up (bench/INVARIANCE.md). A line that opens
# (after at most 3 spaces) with 2-6 "#" and a space reads as its text, without a closing run of
# "#"; the line stays, as lines are structure. A single "# " is left alone: outside code fences
# it opens bare code's comments far more often than a title (446 of 673 chat heading-like lines).
_HEADING = re.compile(r"^[ \t]{0,3}#{2,6}[ \t]+(?=\S)([^\n]*?)(?:[ \t]+#+)?[ \t]*$", re.MULTILINE)


def _one_space(text: str) -> str:
    """Every run of spaces and tabs in ``text`` as one space. String methods, not a regex: the
    regex pass took ~50 us on a 500-token request with runs, this whole pass ~15."""
    text = text.replace("\t", " ")
    while "  " in text:
        text = text.replace("  ", " ")
    return text


def _without_layout(text: str) -> str:
    """``text`` with each run of spaces/tabs after a line's indentation as one space, and
    markdown bold markers and heading marks ("## ") dropped."""
    if "  " in text or "\t" in text:
        lines = text.split("\n")
        for i, line in enumerate(lines):
            body = line.lstrip(" \t")  # the indentation stays
            if "  " in body or "\t" in body:
                lines[i] = line[: len(line) - len(body)] + _one_space(body)
        text = "\n".join(lines)
    if "**" in text:
        text = _EMPHASIS.sub(r"\1", text)
    if "##" in text:
        text = _HEADING.sub(r"\1", text)
    return text


# A code fence is layout (feature version 21): the same code pasted with or without ``` lines
# around it is the same request, yet the fence lines counted as lines, as words at the request's
# ends and as a structure flag learned from ~120 fenced chat rows, and 12 of the 25 real chat
# requests that hold fences went a tier up without them (bench/INVARIANCE.md). A line that is
# only a fence (optional indentation, ``` or ~~~, an info string such as "python") is not read;
# the conversation is flagged (``has_code_fence``), as the line-run rule reads code apart.
_FENCE_LINE = re.compile(r"^[ \t]*(?:`{3,}|~{3,})[^`\n]*(?:\n|$)", re.MULTILINE)


def _without_fences(text: str) -> tuple[str, bool]:
    """``text`` without its code fence lines, and whether it had any."""
    if "```" not in text and "~~~" not in text:
        return text, False
    kept = _FENCE_LINE.sub("", text)
    return (kept.strip(), True) if kept != text else (text, False)


@dataclass
class Conversation:
    """Text segments (text, weight) plus structure counts of one conversation."""

    segments: list[tuple[str, float]] = field(default_factory=list)
    system: list[str] = field(default_factory=list)  # system/developer texts, not in segments
    tool: list[str] = field(default_factory=list)  # tool calls and results, not in segments
    n_messages: int = 0
    n_user: int = 0
    n_images: int = 0
    n_audio: int = 0
    n_other_parts: int = 0
    n_tool_calls: int = 0
    n_tool_msgs: int = 0
    has_system: bool = False
    has_code_fence: bool = False  # a user or assistant turn had a code fence line (not read)
    has_tools: bool = False
    wants_json: bool = False


def _content_text(content: Any, conv: Conversation) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        content = [content]
    if not isinstance(content, (list, tuple)):
        return str(content)
    texts: list[str] = []
    for part in content:
        if isinstance(part, str):
            texts.append(part)
            continue
        if not isinstance(part, dict):
            continue
        kind = part.get("type")
        if kind == "text" or (kind is None and isinstance(part.get("text"), str)):
            text = part.get("text")
            if isinstance(text, str):
                texts.append(text)
        elif kind in ("image_url", "image", "input_image"):
            conv.n_images += 1
        elif kind in ("input_audio", "audio"):
            conv.n_audio += 1
        else:
            conv.n_other_parts += 1
    # parts join with a space, not a line break (feature version 17): how a client chunks its
    # text is not what it asks, and the extra "\n" counted as a line (`log_lines`), so the same
    # text sent as two parts moved 14% of real chat requests a tier down (bench/INVARIANCE.md)
    return " ".join(texts)


def _tool_calls_text(calls: Any) -> str:
    if not isinstance(calls, (list, tuple)):
        return ""
    out: list[str] = []
    for call in calls:
        if not isinstance(call, dict):
            continue
        fn = call.get("function") or {}
        if isinstance(fn, dict):
            name = fn.get("name") or ""
            args = fn.get("arguments") or ""
            if not isinstance(args, str):
                try:
                    args = json.dumps(args)
                except (TypeError, ValueError):
                    args = str(args)
            out.append(f"{name}({args})")
    return "\n".join(out)


def flatten(messages: Any, tools: Any = None, response_format: Any = None) -> Conversation:
    """Turn a messages list (or a bare string) into a :class:`Conversation`."""
    conv = Conversation()
    if isinstance(messages, str):
        messages = [{"role": "user", "content": messages}]
    if not isinstance(messages, (list, tuple)):
        return conv
    last_user = -1
    for i, msg in enumerate(messages):
        if isinstance(msg, dict) and msg.get("role") == "user":
            last_user = i
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict):
            continue
        role = msg.get("role")
        text = _content_text(msg.get("content"), conv)
        calls = msg.get("tool_calls")
        if not calls and isinstance(msg.get("function_call"), dict):
            calls = [{"function": msg["function_call"]}]  # the legacy functions API's one call
        if calls:
            conv.n_tool_calls += len(calls) if isinstance(calls, (list, tuple)) else 1
            called = _tool_calls_text(calls)
            if called:
                conv.tool.append(called)
        # leading and trailing whitespace is how a client sent the text, not what it says: a
        # trailing newline counted as a line of structure and lowered d by ~0.25 (feature
        # version 12; 800 of 3,184 chat requests went one tier down for it)
        text = _without_layout((text if text.isascii() else text.translate(_PLAIN)).strip())
        text, fenced = _without_fences(text)
        if role == "user":
            # a greeting or a thank-you around what a turn asks is not what it asks (feature
            # version 20; classifiers/pleasantries.py)
            text = without_pleasantries(text)
            conv.n_user += 1
            weight = W_LAST_USER if i == last_user else W_CONTEXT
        elif role in ("system", "developer"):
            conv.has_system = True
            if text:
                conv.system.append(text)
            continue  # not a turn of the conversation: not in n_messages either
        elif role in ("tool", "function"):
            conv.n_tool_msgs += 1
            if text:
                conv.tool.append(text)
            continue  # the agent's material, not a turn (feature version 18)
        else:
            if calls and not text:
                continue  # a message that only calls tools is not a turn either
            weight = W_CONTEXT
        conv.n_messages += 1
        if text:
            conv.segments.append((text, weight))
        conv.has_code_fence |= fenced
    # with nothing else to read, the instructions (else the tool exchange) are the request
    for apart in (conv.system, conv.tool):
        if apart and not conv.segments:
            conv.segments.append(("\n".join(apart), W_LAST_USER))
            apart.clear()
            conv.n_messages += 1
    conv.has_tools = bool(tools) or conv.n_tool_calls > 0 or conv.n_tool_msgs > 0
    if isinstance(response_format, dict) and response_format.get("type") in (
        "json_object",
        "json_schema",
    ):
        conv.wants_json = True
    return conv


def last_user_text(messages: Any) -> str:
    """The text of the last user turn (the request being routed), which the "accurate" scorer's
    sentence encoder reads; the last message's text if no turn is the user's."""
    if isinstance(messages, str):
        return messages
    if not isinstance(messages, (list, tuple)):
        return ""
    msgs = [m for m in messages if isinstance(m, dict)]
    users = [m for m in msgs if m.get("role") == "user"] or msgs[-1:]
    return _content_text(users[-1].get("content"), Conversation()) if users else ""
