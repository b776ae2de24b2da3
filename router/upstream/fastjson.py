"""JSON for the request path, without the json module's per-call Python layers.

``json.dumps`` with any argument other than the defaults builds a ``JSONEncoder`` and then a C
encoder on every call; ``json.loads`` on bytes detects the encoding, decodes, and goes through
``JSONDecoder.decode`` and ``raw_decode`` in Python. These two functions call the C encoder and
the C scanner, each built once. Output and errors are json's own: `dumps` gives the same text
as ``json.dumps(obj, separators=(",", ":"), ensure_ascii=False)``; `loads` falls back to
``json.loads`` for anything its fast path does not take (a byte order mark, other encodings,
leading whitespace, invalid input), so what it returns or raises is what json.loads would.
"""

from __future__ import annotations

import json
import json.encoder
import json.scanner
from typing import Any

_scan = json.scanner.make_scanner(json.JSONDecoder())  # type: ignore[arg-type]
_c_make_encoder = getattr(json.encoder, "c_make_encoder", None)
_c_encode_basestring = getattr(json.encoder, "c_encode_basestring", None)
_encoder: Any = None
if _c_make_encoder is not None and _c_encode_basestring is not None:
    # (markers, default, encoder, indent, key_separator, item_separator, sort_keys, skipkeys,
    # allow_nan): what JSONEncoder(separators=(",", ":"), ensure_ascii=False,
    # check_circular=False).iterencode builds per call
    _encoder = _c_make_encoder(None, json.JSONEncoder().default, _c_encode_basestring, None,
                               ":", ",", False, False, True)


def dumps(obj: Any) -> bytes:
    """Compact JSON as UTF-8 bytes (``json.dumps(obj, separators=(",", ":"),
    ensure_ascii=False).encode()``). For trees (what JSON parsing gives): a cycle is not
    detected, it recurses until RecursionError."""
    if _encoder is None:
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()
    return "".join(_encoder(obj, 0)).encode()


def loads(raw: bytes) -> Any:
    """``json.loads(raw)`` for UTF-8 bytes."""
    try:
        text = raw.decode()
        value, end = _scan(text, 0)
    except (UnicodeDecodeError, StopIteration, ValueError):
        return json.loads(raw)  # its own answer, or its own error
    if end != len(text) and text[end:].strip(" \t\n\r"):
        return json.loads(raw)  # extra data: json's error
    return value
