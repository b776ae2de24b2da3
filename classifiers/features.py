"""Features of a conversation: o200k token ids -> hashed unigrams/bigrams + structure.

Everything is a sparse ``(id, value)`` list over one flat feature space, so the ONNX model is a
single ``Gather`` + ``ReduceSum`` (see :mod:`classifiers.onnx_model`):

- id 0: padding (weight 0)
- ``[UNI_OFF, UNI_OFF + VOCAB)``: token unigrams (the token id itself, no hashing needed)
- ``[BI_OFF, BI_OFF + 2**BI_BITS)``: hashed token bigrams (within one message)
- ``[DENSE_OFF, DENSE_OFF + len(DENSE_NAMES))``: structure features

Each token occurrence is weighted by its message weight (:mod:`classifiers.conversation`) and
the block is divided by the root of its summed squared weights (~sqrt(length)); length itself is
a structure feature. numpy only: this module is on the request path.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .conversation import W_LAST_USER, Conversation, flatten
from .tokenizer import VOCAB_SIZE, get_encoding

UNI_OFF = 1
BI_BITS = 18
BI_OFF = UNI_OFF + VOCAB_SIZE
DENSE_NAMES: tuple[str, ...] = (
    "log_tokens",
    "log_tokens_last_user",
    "log_messages",
    "has_system",
    "has_tools",
    "has_tool_calls",
    "has_images",
    "has_audio",
    "wants_json",
    "code_fence",
    "code_punct_density",
    "math_markup",
    "math_symbol_density",
    "digit_fraction",
    "log_lines",
    "log_questions",
    "non_ascii_fraction",
    "upper_fraction",
    "bytes_per_token",
    "no_text",
)
DENSE_OFF = BI_OFF + (1 << BI_BITS)
N_FEATURES = DENSE_OFF + len(DENSE_NAMES)
_BI_MASK = (1 << BI_BITS) - 1
_BI_MULT = np.int64(0x9E3779B1)


@dataclass(frozen=True)
class Features:
    """Sparse features of one conversation plus its token count."""

    ids: np.ndarray  # int64
    values: np.ndarray  # float32
    n_tokens: int


def _byte_classes() -> np.ndarray:
    cols = (b"0123456789", b"ABCDEFGHIJKLMNOPQRSTUVWXYZ", b"{};=()[]", b"+-*/^=<>", b"\n", b"?",
            b"$\\")
    table = np.zeros((256, len(cols)), dtype=np.float64)
    for col, chars in enumerate(cols):
        table[list(chars), col] = 1.0
    return table


_CLASSES = _byte_classes()


def _dense(conv: Conversation, text: str, n_tok: int, n_last: int) -> list[float]:
    """Structure features; byte-class counts from one bincount (lexical cues are in the n-grams)."""
    raw = text.encode("utf-8", "replace")
    n_bytes = max(len(raw), 1)
    arr = np.frombuffer(raw, np.uint8)
    digits, upper, punct, maths, lines, questions, markup = (
        np.bincount(arr, minlength=256) @ _CLASSES
    ).tolist()
    non_ascii = n_bytes - len(text) if len(raw) != len(text) else 0
    return [
        math.log1p(n_tok) / 8.0,
        math.log1p(n_last) / 8.0,
        math.log1p(conv.n_messages) / 3.0,
        float(conv.has_system),
        float(conv.has_tools),
        float(conv.n_tool_calls > 0),
        float(conv.n_images > 0),
        float(conv.n_audio > 0),
        float(conv.wants_json),
        float("```" in text),
        min(punct / n_bytes * 10.0, 1.0),
        float(markup > 0),
        min(maths / n_bytes * 10.0, 1.0),
        min(digits / n_bytes * 5.0, 1.0),
        math.log1p(lines) / 5.0,
        math.log1p(questions) / 3.0,
        min(non_ascii / n_bytes * 2.0, 1.0),
        min(upper / n_bytes * 5.0, 1.0),
        min(n_bytes / max(n_tok, 1) / 8.0, 2.0),
        float(n_bytes <= 1 and not text.strip()),
    ]


def _encode(enc: Any, text: str) -> np.ndarray:
    try:
        arr = enc.encode_to_numpy(text, disallowed_special=())
    except Exception:  # never raise on odd text (e.g. lone surrogates)
        arr = enc.encode_to_numpy(
            text.encode("utf-8", "replace").decode("utf-8"), disallowed_special=()
        )
    return arr.astype(np.int64)


def extract(messages: Any, encoding: Any = None, bigrams: bool = True) -> Features:
    """Features of an OpenAI ``messages`` list (or a plain prompt string).

    Token occurrences are kept as separate (id, value) entries (no ``np.unique``: the model is
    linear, so duplicates simply add up in the Gather + ReduceSum). Each occurrence's value is
    its message weight divided by ``sqrt(sum of squared weights)`` of its block. ``bigrams=False``
    skips the bigram block (for models whose bigram weights are all zero).
    """
    enc = encoding if encoding is not None else get_encoding()
    conv = flatten(messages)
    ids_parts: list[np.ndarray] = []
    w_parts: list[np.ndarray] = []
    bi_parts: list[np.ndarray] = []
    bw_parts: list[np.ndarray] = []
    n_tok = 0
    n_last = 0
    for text, weight in conv.segments:
        ids = _encode(enc, text)
        n_tok += ids.size
        if weight == W_LAST_USER:
            n_last = ids.size
        if ids.size == 0:
            continue
        ids_parts.append(ids + UNI_OFF)
        w_parts.append(np.full(ids.size, weight, np.float32))
        if bigrams and ids.size > 1:
            bi_parts.append(((ids[:-1] * _BI_MULT + ids[1:]) & _BI_MASK) + BI_OFF)
            bw_parts.append(np.full(ids.size - 1, weight, np.float32))
    if len(conv.segments) == 1:
        text = conv.segments[0][0]
    else:
        text = "\n".join(t for t, _ in conv.segments)
    dense = np.asarray(_dense(conv, text, n_tok, n_last), dtype=np.float32)
    nz = np.nonzero(dense)[0]
    out_i: list[np.ndarray] = []
    out_v: list[np.ndarray] = []
    for idp, wp in ((ids_parts, w_parts), (bi_parts, bw_parts)):
        if not idp:
            continue
        w = wp[0] if len(wp) == 1 else np.concatenate(wp)
        out_i.extend(idp)
        out_v.append(w * np.float32(1.0 / np.sqrt(np.dot(w, w))))
    out_i.append(nz.astype(np.int64) + DENSE_OFF)
    out_v.append(dense[nz])
    return Features(ids=np.concatenate(out_i), values=np.concatenate(out_v), n_tokens=n_tok)


def pad_batch(feats: list[Features]) -> tuple[np.ndarray, np.ndarray]:
    """Stack sparse features into padded ``[N, K]`` id/value matrices (pad id 0, value 0)."""
    k = max((f.ids.size for f in feats), default=0)
    k = max(k, 1)
    ids = np.zeros((len(feats), k), dtype=np.int64)
    vals = np.zeros((len(feats), k), dtype=np.float32)
    for i, f in enumerate(feats):
        ids[i, : f.ids.size] = f.ids
        vals[i, : f.values.size] = f.values
    return ids, vals


def to_csr(feats: list[Features]) -> Any:
    """Training-side helper: a scipy CSR matrix ``[N, N_FEATURES]`` (scipy imported lazily)."""
    from scipy import sparse

    indptr = np.zeros(len(feats) + 1, dtype=np.int64)
    indptr[1:] = np.cumsum([f.ids.size for f in feats])
    ids = np.concatenate([f.ids for f in feats]) if feats else np.zeros(0, np.int64)
    vals = np.concatenate([f.values for f in feats]) if feats else np.zeros(0, np.float32)
    return sparse.csr_matrix((vals, ids, indptr), shape=(len(feats), N_FEATURES))
