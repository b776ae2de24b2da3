"""Does the tier change when only the way a request is sent changes?

Each transformation below leaves what a request asks as it is (a trailing newline, a task-neutral
system prompt, the text as a content part, other spaces or line endings; the last four change the
text a little too: typography, case, a greeting, a thank-you, markdown). Every distinct real
chat request of data/routing-chat.jsonl.gz is routed through the public path (router.Router, the
embedded demo policy) as sent and transformed; the table says how many changed tier and by how
much d moved. A router whose tier follows such things is routing on noise: feature version 11
(the system prompt) and 12 (whitespace around a message) came from two of these rows, 13-15
(Unicode spaces, layout, typographic quotes) from others, and the tool flags' variance (feature
version 18) from the agent-step rows.

    python bench/invariance.py > bench/INVARIANCE.md
    python bench/invariance.py --scorer accurate   (the sentence encoder too: ~10 minutes)
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from classifiers import default_scorer  # noqa: E402
from classifiers.conversation import last_user_text  # noqa: E402
from classifiers.data import distinct_conversations, load_rows  # noqa: E402
from router import Router  # noqa: E402
from router.messages import as_messages  # noqa: E402

Messages = list[dict[str, Any]]
# ~1,500 tokens of an app's system prompt (also tests/test_routing_sense.py)
LONG_SYSTEM = (ROOT / "README.md").read_text(encoding="utf-8")[:6000]


def _last_user(messages: Messages, edit: Callable[[str], Any]) -> Messages:
    """A copy of ``messages`` with the last user turn's text content replaced by ``edit(text)``."""
    out = [dict(m) for m in messages]
    for m in reversed(out):
        if m.get("role") == "user" and isinstance(m.get("content"), str):
            m["content"] = edit(m["content"])
            break
    return out


def _each_turn(messages: Messages, edit: Callable[[str], str]) -> Messages:
    return [{**m, "content": edit(m["content"])} if isinstance(m.get("content"), str) else m
            for m in messages]


def _cut_after_first_sentence(text: str) -> tuple[str, str] | None:
    """``text`` cut at its first ". " (the period kept, the space dropped), or None."""
    cut = text.find(". ")
    return None if cut < 0 else (text[: cut + 1], text[cut + 2:])


def _two_parts(text: str) -> list[dict[str, str]]:
    parts = _cut_after_first_sentence(text) or (text,)
    return [{"type": "text", "text": part} for part in parts]


def after_tool_call(messages: Messages, result: str = '{"status": "ok", "results": 3}') -> Messages:
    """``messages`` + a tool call an agent made for it + the tool's ``result``: the agent's next
    step asks the same thing (also tests/test_routing_sense.py)."""
    query = " ".join(last_user_text(messages).split()[:8])
    call = {"id": "call_1", "type": "function",
            "function": {"name": "lookup", "arguments": json.dumps({"query": query})}}
    return [*messages, {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "call_1", "content": result}]


def _after_first_sentence(text: str, sep: str) -> str:
    return sep.join(_cut_after_first_sentence(text) or (text,))


def bold_first_line(text: str) -> str:
    """``text`` with its first line in markdown bold (also tests/test_routing_sense.py)."""
    first, newline, rest = text.partition("\n")
    return f"**{first}**{newline}{rest}"


def _typographic(text: str) -> str:
    """Quotes and apostrophes as a phone or a word processor types them: ’ for ', “ ” for "."""
    text = text.replace("'", "\u2019")
    return re.sub(r'"([^"]*)"', "\u201c\\1\u201d", text)


def _without_final_question_mark(text: str) -> str:
    """``text`` without its final "?", as many type a question."""
    stripped = text.rstrip()
    return stripped[:-1] if stripped.endswith("?") else text


def _without_code_fences(text: str) -> str:
    """``text`` with its ``` fence lines removed: the same code pasted bare."""
    return re.sub(r"(?m)^```[\w+-]*[ \t]*$\n?", "", text)


_BULLET = re.compile(r"(?m)^([ \t]*)- ")
_NUMBERED = re.compile(r"(?m)^([ \t]*)(\d+)\. ")
_INLINE = re.compile(r"(?<!`)`([^`\n]+)`(?!`)")


def _without_final_period(text: str) -> str:
    stripped = text.rstrip()
    return stripped[:-1] if stripped.endswith(".") and not stripped.endswith("..") else text


TRANSFORMS: dict[str, Callable[[Messages], Messages]] = {
    "a trailing newline": lambda m: _last_user(m, lambda t: t + "\n"),
    "blank lines before and after": lambda m: _last_user(m, lambda t: f"\n\n{t}\n\n"),
    "trailing spaces": lambda m: _last_user(m, lambda t: t + "   "),
    'system prompt "You are a helpful assistant."':
        lambda m: [{"role": "system", "content": "You are a helpful assistant."}, *m],
    "a ~1,500-token system prompt": lambda m: [{"role": "system", "content": LONG_SYSTEM}, *m],
    "content as one text part": lambda m: _last_user(m, lambda t: [{"type": "text", "text": t}]),
    "content as two text parts (cut after the first sentence)": lambda m: _last_user(m, _two_parts),
    "CRLF line endings": lambda m: _each_turn(m, lambda t: t.replace("\n", "\r\n")),
    "double spaces": lambda m: _each_turn(m, lambda t: t.replace(" ", "  ")),
    "two spaces after each sentence": lambda m: _each_turn(m, lambda t: t.replace(". ", ".  ")),
    "lines indented by four spaces": lambda m: _last_user(m, lambda t: t.replace("\n", "\n    ")),
    "a line break after the first sentence":
        lambda m: _last_user(m, lambda t: _after_first_sentence(t, "\n")),
    "a blank line after the first sentence":
        lambda m: _last_user(m, lambda t: _after_first_sentence(t, "\n\n")),
    "no-break spaces (U+00A0) for spaces":
        lambda m: _each_turn(m, lambda t: t.replace(" ", "\u00a0")),
    # what a request asks is the same, but its text is not: pleasantries and formatting
    "typographic quotes and apostrophes": lambda m: _each_turn(m, _typographic),
    'an ellipsis character for "..."':
        lambda m: _each_turn(m, lambda t: t.replace("...", "\u2026")),
    "lower-cased": lambda m: _last_user(m, str.lower),
    '"Hi! " before it': lambda m: _last_user(m, lambda t: "Hi! " + t),
    '" Thanks!" after it': lambda m: _last_user(m, lambda t: t + " Thanks!"),
    # other pleasantries, added after feature version 20 was shipped on the two rows above:
    # whether its pattern generalises, and what it leaves (a wish, a sign-off)
    '"Good morning!" and a blank line before it':
        lambda m: _last_user(m, lambda t: "Good morning!\n\n" + t),
    '"Hey there, hope you\'re well! " before it':
        lambda m: _last_user(m, lambda t: "Hey there, hope you're well! " + t),
    '" Thank you in advance." after it':
        lambda m: _last_user(m, lambda t: t + " Thank you in advance."),
    '" Cheers!" after it': lambda m: _last_user(m, lambda t: t + " Cheers!"),
    "its first line in markdown bold": lambda m: _last_user(m, bold_first_line),
    # how people type the same ask, added 2026-12-08 (bench/QUALITY_ROUTING.md, "A question
    # mark is punctuation"): its final "?" left off or doubled, a preface, an emphasis
    'its final "?" left off': lambda m: _last_user(m, _without_final_question_mark),
    'its final "?" doubled': lambda m: _last_user(
        m, lambda t: t.rstrip() + "?" if t.rstrip().endswith("?") else t),
    '"Can you help me? " before it': lambda m: _last_user(m, lambda t: "Can you help me? " + t),
    '"Please " before it': lambda m: _last_user(m, lambda t: "Please " + t[:1].lower() + t[1:]),
    '"Question: " before it': lambda m: _last_user(m, lambda t: "Question: " + t),
    'a markdown heading ("## ") on its first line': lambda m: _last_user(m, lambda t: "## " + t),
    '"!" after it': lambda m: _last_user(m, lambda t: t + "!"),
    "upper-cased": lambda m: _last_user(m, str.upper),
    # its code pasted without the ``` lines around it (25 of the requests hold some; feature
    # version 21, bench/QUALITY_ROUTING.md, "A code fence is layout")
    "its code fences removed": lambda m: _last_user(m, _without_code_fences),
    # markup typed another way, added 2026-12-08 after feature version 22 (a heading's marks):
    # another bullet or number style, inline code without its backticks, a final "." left off
    'its "- " bullets as "* "': lambda m: _last_user(m, lambda t: _BULLET.sub(r"\1* ", t)),
    'its numbered lines as "1) "': lambda m: _last_user(m, lambda t: _NUMBERED.sub(r"\1\2) ", t)),
    "its inline `code` without backticks": lambda m: _last_user(m, lambda t: _INLINE.sub(r"\1", t)),
    'its final "." left off': lambda m: _last_user(m, _without_final_period),
    # the same request one agent step later: the call it made and the tool's answer follow it
    "after a tool call and its result (an agent's next step)": after_tool_call,
    "after a tool call and a long result (the README's first 6,000 characters)":
        lambda m: after_tool_call(m, LONG_SYSTEM),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scorer", choices=("fast", "accurate"), default=None,
                        help="difficulty scorer (default: the demo policy's)")
    args = parser.parse_args()
    router = Router(scorer=default_scorer(args.scorer) if args.scorer else None)
    convs = distinct_conversations(load_rows(ROOT / "data" / "routing-chat.jsonl.gz"))
    sent: list[Messages] = [as_messages(c) for c in convs]
    t0 = time.perf_counter()
    base = [router.route(m) for m in sent]
    print("# Invariance of the routing decision (bench/invariance.py)\n")
    print(f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; machine: "
          f"{platform.machine()}, Python {platform.python_version()}; command: "
          f"`python bench/invariance.py{' --scorer ' + args.scorer if args.scorer else ''}`")
    print(f"- {len(sent)} distinct real chat requests (data/routing-chat.jsonl.gz), the embedded "
          f"demo policy ({args.scorer or router.policy.scorer} scorer), each routed as sent and "
          "transformed; "
          "d moves are in logits (d's sd over these requests: "
          f"{np.std([b.difficulty for b in base]):.2f})\n")
    print("| sent as | changed tier | down / up | mean abs d move | largest |")
    print("|---|---|---|---|---|")
    order = [t.name for t in router.policy.tiers]  # cheapest first
    for name, transform in TRANSFORMS.items():
        moved: Counter[str] = Counter()
        shift = []
        for messages, before in zip(sent, base, strict=True):
            after = router.route(transform(messages))
            shift.append(after.difficulty - before.difficulty)
            if after.tier != before.tier:
                up = order.index(after.tier) > order.index(before.tier)
                moved["up" if up else "down"] += 1
        n, changed = len(sent), sum(moved.values())
        a = np.abs(shift)
        print(f"| {name} | {changed} ({changed / n:.1%}) | {moved['down']} / {moved['up']} | "
              f"{a.mean():.3f} | {a.max():.3f} |")
    print(f"\n{(time.perf_counter() - t0):.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
