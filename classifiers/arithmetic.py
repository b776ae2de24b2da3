"""How big an exact product or power written in a request is: the `arithmetic_digits` feature.

Exact arithmetic on large numbers ("48,271 x 93,657", "17^9", "123456789 squared") is where a
small model fails and a large one mostly does not, whatever the length of the request; a digit
density cannot say it (it ranks GSM8K backwards: many small numbers are not hard). The feature
is the number of digits of the largest product or power written in the text. On the request
path: bytes and ``re`` only.
"""

from __future__ import annotations

import math
import re

# Each operator is found with bytes.find (C speed: most requests have none); the numbers around
# it are read with anchored regexes on a short window only, so a long text costs a few us.
# (each word costs a scan of the text: ~0.45 ns a byte, 4 us for a 2,000-token prompt; "cubed"
# and "to the power of" were left out for that, powers are written "^" or "**" far more often)
_OPERATORS = (b"*", b"^", b"x", b"times", b"squared")
_OPERATORS_UTF8 = (*_OPERATORS, b"\xc3\x97", b"\xc2\xb7")  # "×", "·": only in non-ASCII text
_POWER = (b"^", b"**")
_SUFFIX = {b"squared": 2}
_LEFT = re.compile(rb"(?<![\d,.])(\d{1,3}(?:,\d{3})+|\d+) ?\Z")  # a number just before
_RIGHT = re.compile(rb" ?(\d{1,3}(?:,\d{3})+(?![\d,])|\d+)")  # a number just after


def _value_digits(num: bytes) -> int:
    return len(num) - num.count(b",")


def _power_digits(base: bytes, exponent: bytes) -> float:
    """Digits of base ** exponent, from logarithms (an exponent past 10**6 counts as 10**6)."""
    e = int(exponent.replace(b",", b"")) if len(exponent) < 8 else 10**6
    b = float(base.replace(b",", b"")[:30])
    return min(e, 10**6) * math.log10(max(b, 2.0)) + 1.0


# At most this many occurrences of each operator are looked at, in text order: a request has a
# handful, and a pasted file with thousands ("1*1*1*..." x 100 KB took 124 ms without a limit)
# must not cost more than the rest of the scoring does (bench/LATENCY.md, worst cases).
MAX_OPERATORS = 128


def arithmetic_digits(raw: bytes) -> float:
    """Digits of the largest product or power written in ``raw`` (UTF-8), 0 if none:
    "48,271 x 93,657" -> 10, "17^9" -> 12.1, "123456789 squared" -> 18, "12*3" -> 3."""
    best = 0.0
    for op in _OPERATORS if raw.isascii() else _OPERATORS_UTF8:
        i = raw.find(op)
        budget = MAX_OPERATORS
        while i >= 0 and budget > 0:
            budget -= 1
            j = i + len(op)
            if op == b"*" and raw[j : j + 1] == b"*":
                op_here, j = b"**", j + 1
            else:
                op_here = op
            # most operator bytes ("x" in words, "*" in markdown) have no digit just before
            # them: a two-byte look rules them out before any regex runs
            k = i - 1 if i and raw[i - 1] != 32 else i - 2
            left = _LEFT.search(raw, max(0, i - 40), i) if k >= 0 and 48 <= raw[k] <= 57 else None
            # a lone 0 before "x" is a hex literal ("0x100000"), and 0 times anything is easy;
            # "x" with no space on either side is a size ("1920x1080", "15x100"), not a product
            if op_here == b"x" and raw[i - 1 : i] != b" " and raw[j : j + 1] != b" ":
                left = None
            if left is not None and left.group(1) != b"0":
                a = left.group(1)
                if op_here in _SUFFIX:
                    best = max(best, float(_value_digits(a) * _SUFFIX[op_here]))
                else:
                    right = _RIGHT.match(raw, j)
                    if right is not None:
                        b = right.group(1)
                        if op_here in _POWER:
                            best = max(best, _power_digits(a, b))
                        else:
                            best = max(best, float(_value_digits(a) + _value_digits(b)))
            i = raw.find(op, j)
    return best
