"""Split text into words and punctuation and hash each one, vectorised in numpy (no tokenizer).

Why not tiktoken: a BPE encode of 500 tokens costs ~90 us on these machines, the whole decision
budget. The difficulty model only needs a stable id per word, so words are hashed straight from
the UTF-8 bytes: lower-cased; a token is a run of ``[0-9a-z_]`` or non-ASCII bytes (so every
non-Latin script stays in words), or a single punctuation byte; whitespace and control bytes
separate. A word's hash is a polynomial over its bytes computed for all words at once from one
prefix sum (``H[end] - H[start]`` shifted back by the inverse power), so the cost is a dozen numpy
passes over the bytes, ~25 us for 2 KB.

The hash is part of the model: changing anything here needs a retrain (``FEATURE_VERSION``).
"""

from __future__ import annotations

import re

import numpy as np

_MIX = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing multiplier (odd)
_P = 0x100000001B3  # polynomial base (odd, so invertible mod 2**64)
CHUNK = 1 << 16  # bytes hashed per pass; longer text is cut at whitespace into such chunks


def _power_tables() -> tuple[np.ndarray, np.ndarray]:
    inv = pow(_P, -1, 1 << 64)
    pw = np.full(CHUNK + 1, _P, np.uint64)
    ipw = np.full(CHUNK + 1, inv, np.uint64)
    pw[0] = ipw[0] = 1
    # uint64 products wrap mod 2**64, which is exactly the ring the hash lives in
    return np.cumprod(pw, dtype=np.uint64), np.cumprod(ipw, dtype=np.uint64)


_POW, _IPOW = _power_tables()


def _tables() -> tuple[np.ndarray, np.ndarray]:
    word = np.zeros(256, bool)
    word[list(b"0123456789abcdefghijklmnopqrstuvwxyz_")] = True
    word[128:] = True
    token = word.copy()
    token[33:127] = True  # printable ASCII punctuation: one token per byte
    # a fixed pseudo-random odd 64-bit value per token byte (spreads similar bytes apart before
    # the polynomial); 0 for whitespace and control bytes, which separate and add nothing
    x = (np.arange(256, dtype=np.uint64) + np.uint64(1)) * _MIX
    x ^= x >> np.uint64(29)
    x |= np.uint64(1)
    x[~token] = 0
    return word, x


_WORD, _BYTE = _tables()
# the same words as a regex over bytes, for training code that needs the words themselves
_WORD_RUN = re.compile(b"[" + b"".join(re.escape(bytes([c])) for c in np.flatnonzero(_WORD))
                       + b"]+")


def _chunk_hashes(b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = b.size
    vals = _BYTE.take(b)  # 0 for separators
    isw = _WORD.take(b)
    start = vals != 0
    start[1:] &= ~(isw[1:] & isw[:-1])  # a word byte after a word byte continues that word
    starts = np.flatnonzero(start)
    if not starts.size:
        return np.zeros(0, np.uint64), starts
    # sum of v_i * P**i from each start to the next (separators add 0), shifted back by P**-start
    sums = np.add.reduceat(vals * _POW[:n], starts)
    return sums * _IPOW[starts], starts


def split_chunks(raw: bytes) -> list[bytes]:
    """Cut ``raw`` into pieces of at most CHUNK bytes, at whitespace where there is some."""
    out: list[bytes] = []
    while len(raw) > CHUNK:
        cut = max(raw.rfind(b" ", 0, CHUNK), raw.rfind(b"\n", 0, CHUNK))
        cut = cut + 1 if cut > 0 else CHUNK
        out.append(raw[:cut])
        raw = raw[cut:]
    out.append(raw)
    return out


def word_hashes(raw: bytes) -> tuple[np.ndarray, np.ndarray]:
    """64-bit hashes of the words and punctuation marks of lower-cased UTF-8 ``raw``, in order,
    and the byte offset where each one starts."""
    if len(raw) <= CHUNK:
        return _chunk_hashes(np.frombuffer(raw, np.uint8))
    hs, ss, off = [], [], 0
    for c in split_chunks(raw):
        h, s = _chunk_hashes(np.frombuffer(c, np.uint8))
        hs.append(h)
        ss.append(s + off)
        off += len(c)
    return np.concatenate(hs), np.concatenate(ss)


def encode(text: str) -> bytes:
    """The bytes :func:`word_hashes` expects: lower-cased UTF-8; lone surrogates kept as bytes."""
    return text.lower().encode("utf-8", "surrogatepass")


def buckets(hashes: np.ndarray, salt: int, bits: int, out: np.ndarray | None = None) -> np.ndarray:
    """Map 64-bit hashes to ``[0, 2**bits)`` as int64; ``salt`` (0 = none) separates feature kinds.

    ``out``: an int64 array of ``len(hashes)`` to write into (saves a copy on the request path).
    """
    mixed = (hashes ^ np.uint64(salt)) * _MIX if salt else hashes * _MIX
    dest = out.view(np.uint64) if out is not None else None
    # the top bits of a Fibonacci-hashed value; < 2**bits, so the int64 view is the same number
    res: np.ndarray = np.right_shift(mixed, np.uint64(64 - bits), out=dest)
    return res.view(np.int64)


def words(raw: bytes) -> list[bytes]:
    """The words of ``encode(text)`` bytes, in order, as :func:`word_hashes` splits them (its
    punctuation marks left out). Training helper."""
    return _WORD_RUN.findall(raw)


def word_at(raw: bytes, start: int) -> bytes:
    """The word (or punctuation mark) of ``raw`` that :func:`word_hashes` found at ``start``."""
    m = _WORD_RUN.match(raw, start)
    return m.group() if m else raw[start : start + 1]
