"""A user turn's opening greeting and closing thank-you, which ask nothing (feature version 20).

"Hi! " before a request moved 3.9% of real chat requests a tier and " Thanks!" after it 4.9%
(bench/INVARIANCE.md): the words counted in the word mean and the bytes in the length. So
:func:`without_pleasantries` drops one leading greeting and one closing thank-you from a turn
that says something else; a turn that is only "hi" or "thanks!" is read as it is, and a request
about them ("how do I say thank you in Japanese?") keeps its words.
"""

from __future__ import annotations

import re

# a greeting, optionally to someone, then punctuation or a line break; "Hello, World" is a
# program's output, not a greeting
_GREETING = re.compile(
    r"\A(?:hi|hello|hey|hiya|howdy|greetings|good (?:morning|afternoon|evening|day))"
    r"(?:[ \t]+(?!world\b)(?:there|all|everyone|team|guys|folks|(?-i:[A-Z][\w-]*)))?"
    r"[ \t]*(?:[!.,:;]+|(?=\n))(?!\s*world\b)\s*",
    re.IGNORECASE,
)
# a thank-you that ends the turn, after a sentence end or a line break, or capitalised after a
# word ("... in Python Thanks!"); "say thank you" and "thank you?" keep theirs
_THANKS = re.compile(
    r"(?:(?<=[.!?\n])[ \t]*|[ \t]+(?=(?-i:Thank|THANK|Thx|Many|MANY)))"
    r"(?:many thanks|thanks|thank you|thx)"
    r"(?:[ \t]+(?:so much|very much|a lot|in advance))?[ \t]*[!.]*\s*\Z",
    re.IGNORECASE,
)

_TAIL = 64  # characters: the longest thank-you with its spaces and marks fits well within


def without_pleasantries(text: str) -> str:
    """``text`` without one leading greeting and one closing thank-you, if anything else is
    left; else ``text`` as it is."""
    if not text:
        return text
    body = text
    if body[:1] in "hHgG":
        m = _GREETING.match(body)
        if m and m.end() < len(body):
            body = body[m.end():]
    if "hank" in body or "hx" in body or "HANK" in body:
        # only the turn's end can hold it: searching all of a 100 KB turn took ~5 ms
        m = _THANKS.search(body, max(len(body) - _TAIL, 0))
        if m and m.start() > 0:
            body = body[: m.start()]
    body = body.strip()
    return body or text
