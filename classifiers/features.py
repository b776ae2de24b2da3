"""Features of a conversation: hashed words (+ optional word bigrams) and structure.

Everything is a sparse ``(id, value)`` list over one flat feature space, so the ONNX model is a
single ``Gather`` + ``ReduceSum`` (see :mod:`classifiers.onnx_model`):

- id 0: padding (weight 0)
- ``[HASH_OFF, PIECE_OFF)`` (``2**HASH_BITS`` buckets): hashed words and punctuation marks
  of MiniLM's whole-word vocabulary (:mod:`classifiers.hashing`), and, if the model uses them,
  hashed word bigrams
- ``[PIECE_OFF, DENSE_OFF)``: the WordPieces of every other word (:mod:`classifiers.wordpieces`),
  the word's value split evenly over its pieces
- ``[DENSE_OFF, SHORT_OFF)``: structure features
- ``[SHORT_OFF, N_FEATURES)``, training side only: the short-request word block, every word and
  piece entry again (id ``- HASH_OFF + SHORT_OFF``) with its mean shrunk by SHORT_PRIOR extra
  words instead of WORD_PRIOR: it carries the anchors' own reading of the words
  (:func:`classifiers.anchors.anchor_head`), which should count in a one-line request too.
  In a long request it holds only the two ends of the last user turn (its first and last
  SHORT_WINDOW words), where people say what they want: before pasted material, or after it
  or after the story that sets a question up.
  A request's features do not copy the entries: the copy's values are the word values times one
  number per request (:attr:`Features.short_scale`; in a long request, those values with the
  words between the ends zeroed, :attr:`Features.short`), so model.onnx keeps the block's
  weights as a third column of the word rows (:mod:`classifiers.onnx_model`) and :func:`to_csr`
  expands the block for the fit

Each word occurrence is weighted by its message weight (:mod:`classifiers.conversation`) and the
block is a shrunk weighted mean (:func:`_word_values`); length itself is a structure feature.
numpy only: this module is on the request path.
"""

from __future__ import annotations

import math
import re
from bisect import bisect_left
from dataclasses import dataclass
from typing import Any

import numpy as np

from .arithmetic import arithmetic_digits
from .conversation import W_LAST_USER, Conversation, flatten
from .hashing import buckets, encode, word_at, word_hashes
from .math_markup import has_math_markup
from .wordpieces import N_PIECES, is_whole, pieces

HASH_BITS = 19
HASH_OFF = 1
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
    "arithmetic_digits",
)
PIECE_OFF = HASH_OFF + (1 << HASH_BITS)
DENSE_OFF = PIECE_OFF + N_PIECES
SHORT_OFF = DENSE_OFF + len(DENSE_NAMES)
N_FEATURES = SHORT_OFF + (DENSE_OFF - HASH_OFF)  # columns of the fit's design matrix
TABLE_ROWS = SHORT_OFF  # rows of model.onnx's table: every id a request's features carry
_DENSE_IDS = np.arange(DENSE_OFF, SHORT_OFF, dtype=np.int64)
# Structure flags that say nothing the scorer cannot read or deliberately leaves out: a system
# (or developer) prompt is the app's, not the request's, and is not scored at all (feature
# version 11, classifiers/conversation.py); a JSON response_format only asks for a format the
# response check verifies. When the training data never carried such a flag, its weight stays
# at the prior's 0 and it carries no variance either (classifiers/word_fold.py): the prior's
# variance would only say that the fit has no data on it, which, added to every request with a
# system prompt, moved 18% of real chat requests one tier up for "low confidence"
# (bench/QUALITY_ROUTING.md, "A system prompt is not the request"). An agent's tool exchange is
# left out the same way (feature version 18: the agent's material, not the request), and its
# flags' variance (1 + 1 logit^2: uncertainty 1.4 on every agent step) went the same way. (A
# `tools` schema alone never sets has_tools in scoring: extract reads the messages only.)
# Images, audio and an empty request keep theirs: what they hold is invisible to the scorer.
READ_FLAGS: tuple[str, ...] = ("has_system", "wants_json", "has_tools", "has_tool_calls")
SALT_WORD = 0
SALT_BIGRAM = 2
_BI_MULT = np.uint64(0x1F3)


@dataclass(slots=True)
class Features:
    """Sparse features of one conversation plus its token count."""

    ids: np.ndarray  # int64, all below TABLE_ROWS
    values: np.ndarray  # float32
    n_tokens: int
    # the short-request block's value of a word entry (id < DENSE_OFF) is its value times this
    # (_short_scale); 0 when there are no words
    short_scale: float = 0.0
    # None: the short-request block holds every word entry (values times short_scale); else
    # its value of every entry (float32), 0 for the words between the last user turn's two
    # ends (SHORT_WINDOW) and their pieces
    short: np.ndarray | None = None

    def short_values(self) -> np.ndarray:
        """The short-request block's value of every entry (float32; the table's third column
        is 0 on the structure rows, so theirs do not matter)."""
        return self.values * np.float32(self.short_scale) if self.short is None else self.short


def _byte_classes() -> np.ndarray:
    cols = (b"0123456789", b"ABCDEFGHIJKLMNOPQRSTUVWXYZ", b"{};=()[]", b"+-*/^=<>", b"\n", b"?",
            b"$", b"\\")
    table = np.zeros((256, len(cols)), dtype=np.float64)
    for col, chars in enumerate(cols):
        table[list(chars), col] = 1.0
    return table


_CLASSES = _byte_classes()
# log_lines counts runs of line breaks (a blank line is one run; feature version 19), the first
# one free when it ends a sentence outside code and maths (_line_runs): one Enter or one blank
# line after a request's first sentence is how it was typed, not material; it was the feature's
# steepest step and moved 14-21% of real chat requests a tier down (bench/INVARIANCE.md). After
# code or a formula, or a line that is not a sentence, the first break is structure.
_BREAK_RUNS = re.compile(rb"\n(?:[ \t\r]*\n)*")
_SENTENCE_ENDS = (b".", b"?", b"!", "\u3002".encode(), "\uff1f".encode(), "\uff01".encode())


def _line_runs(raw: bytes, code_or_maths: bool) -> int:
    """The runs of line breaks log_lines counts: all of them, less the first when the line
    before it ends a sentence and the text holds no code fence and no math markup
    (``code_or_maths``: the code_fence and math_markup features, computed once in _dense)."""
    runs = _BREAK_RUNS.findall(raw)
    if runs and not code_or_maths and \
            raw[: raw.index(b"\n")].rstrip(b" \t\r").endswith(_SENTENCE_ENDS):
        return len(runs) - 1
    return len(runs)


_DENSITY_PRIOR_BYTES = 32
# Question marks of other scripts (full-width "？" of Chinese and Japanese, Arabic "؟") count
# as "?" since feature version 10.
_OTHER_QUESTION_MARKS = ("\uff1f", "\u061f")


def _dense(conv: Conversation, text: str, n_tok: int, n_last: int) -> list[float]:
    """Structure features; byte-class counts from one bincount (lexical cues are in the n-grams)."""
    raw = text.encode("utf-8", "replace")
    n_bytes = max(len(raw), 1)
    # densities are shrunk towards 0 for short texts: one capital in "Hello!" is not a signal
    smooth = n_bytes + _DENSITY_PRIOR_BYTES
    arr = np.frombuffer(raw, np.uint8)
    digits, upper, punct, maths, lines, questions, dollars, backslashes = (
        np.bincount(arr, minlength=256) @ _CLASSES
    ).tolist()
    non_ascii = n_bytes - len(text) if len(raw) != len(text) else 0
    if non_ascii:
        questions += sum(text.count(mark) for mark in _OTHER_QUESTION_MARKS)
    markup = has_math_markup(raw, text, int(dollars), int(backslashes), non_ascii > 0)
    fenced = conv.has_code_fence or "```" in text  # fence lines are not in text (version 21)
    return [
        math.log1p(n_tok) / 8.0,
        math.log1p(n_last) / 8.0,
        math.log1p(max(conv.n_messages - 1, 0)) / 3.0,  # 0 for one message: no hidden bias
        float(conv.has_system),
        float(conv.has_tools),
        float(conv.n_tool_calls > 0),
        float(conv.n_images > 0),
        float(conv.n_audio > 0),
        float(conv.wants_json),
        float(fenced),
        min(punct / smooth * 10.0, 1.0),
        float(markup),
        min(maths / smooth * 10.0, 1.0),
        min(digits / smooth * 5.0, 1.0),
        math.log1p(_line_runs(raw, markup or fenced)) / 5.0 if lines else 0.0,
        math.log1p(questions) / 3.0,
        min(non_ascii / smooth * 2.0, 1.0),
        min(upper / smooth * 5.0, 1.0),
        min(n_bytes / max(n_tok, 1) / 8.0, 2.0),
        float(n_bytes <= 1 and not text.strip()),
        # digits of the largest product/power past 4 (2 x 2 digits is easy for any model), / 8
        min(max(arithmetic_digits(raw) - 4.0, 0.0), 16.0) / 8.0 if digits >= 2 else 0.0,
    ]


def estimate_tokens(n_words: int, n_bytes: int, n_chars: int) -> int:
    """A BPE-like token count from word and byte counts, for context-window checks.

    Calibrated against o200k on the 16,918 training + AlpacaEval prompts: relative error median
    +6%, 5th/95th percentile -17% / +36% (it errs high, the safe side for a context check);
    non-Latin text (a run of CJK characters is one "word") is carried by the second term,
    ~4 characters per token counting each extra UTF-8 byte as half a character.
    """
    return max(int(n_words * 1.1 + 0.5), (n_bytes + n_chars) // 8)


def unscored_tokens(conv: Conversation) -> int:
    """Estimated tokens of the system prompt(s) and the tool exchange: the features leave them
    out (conversation.py), the request's token count keeps them, as a context window holds them
    too."""
    return sum(estimate_tokens(len(t.split()), len(encode(t)), len(t))
               for t in (*conv.system, *conv.tool))


# the budget of words outside the whole-word vocabulary split into WordPieces (_with_pieces)
PIECE_WORD_BYTES = 32  # longer words keep their hash bucket
PIECE_BYTES = 4096  # per conversation (0.2% of the training data's such words lie beyond it)


# The word block is a weighted mean with this many extra (zero-valued, i.e. typical: the
# embedding is centred) words in the denominator: a long text's mean is nearly unchanged, a
# three-word request's words weigh 3/(3+32) of a mean, so the few words of a short request
# cannot swing its difficulty by much; its length, a feature of its own, says more about it.
# Measured in bench/quality_routing.py (--word-prior).
WORD_PRIOR = 32.0
# The short-request block's prior: a ten-word request's words weigh 10/18 of their mean there,
# 10/42 in the main block. Only the anchors' head is weighed on it (classifiers/word_fold.py);
# 8 of 4 / 8 / 16 / 32, measured in bench/quality_routing.py (--short-prior; QUALITY_ROUTING.md,
# "A short-request block for the anchors' head").
SHORT_PRIOR = 8.0
# The short-request block holds the first and the last SHORT_WINDOW words of the last user
# turn (0: all of them; a turn of up to 2 * SHORT_WINDOW words is read whole): the two ends,
# where a request says what it wants. In a long request the instruction's few words were
# outweighed by the material it pastes or the story around it ("Summarize this in one
# sentence: <80 words of news>", bench/MATERIAL_PAIRS.md); the anchors' head should read the
# instruction as it reads a one-line request. The opening alone (16, 32 or 64 words) cost
# GSM8K-like and the fresh dev split, whose questions come last. Earlier turns keep all their
# words (they are context, weighted W_CONTEXT). 16 of 16 / 32, chosen on the dev splits and
# held-out folds (bench/QUALITY_ROUTING.md, "The anchors' head reads both ends of a request").
SHORT_WINDOW = 16


def _word_values(w: np.ndarray | None, out: np.ndarray) -> float:
    """Each word occurrence's value into ``out``: its message weight over (the sum of all
    occurrence weights + WORD_PRIOR), a shrunk weighted *mean* (``w`` None means one message,
    every weight 1). A mean keeps the block's scale independent of length, which is a feature
    of its own (``log_tokens``), and makes a pooled static embedding of the words fold exactly
    into per-word weights (:mod:`classifiers.embedding`). extract() and extract_many() both use
    this, so their features agree to the last bit. Returns the sum of the occurrence weights."""
    if w is None:
        total = float(out.size)
        out[:] = 1.0 / (total + WORD_PRIOR)
    else:
        total = float(np.sum(w, dtype=np.float64))
        np.multiply(w, np.float32(1.0 / (total + WORD_PRIOR)), out=out)
    return total


def _short_scale(total: float, held: float | None = None) -> float:
    """The short-request block's value of a word entry over its main-block value: the mean's
    denominator with WORD_PRIOR over the one with SHORT_PRIOR, ``total`` the occurrence
    weights' sum and ``held`` (default: ``total``) that of the occurrences the block holds
    (float32, the precision the fit's design matrix has always used)."""
    held = total if held is None else held
    return float(np.float32((total + WORD_PRIOR) / (held + SHORT_PRIOR)))


def _middle(begin: int, end: int) -> tuple[int, int] | None:
    """The word occurrences ``[lo, hi)`` the short-request block leaves out: those of the last
    user turn (occurrences ``[begin, end)``) between its first and its last SHORT_WINDOW;
    None: none (a turn of up to twice the window is read whole)."""
    if not SHORT_WINDOW or end - begin <= 2 * SHORT_WINDOW:
        return None
    return begin + SHORT_WINDOW, end - SHORT_WINDOW


def _short_without(f: Features, total: float, w: np.ndarray | None, n: int,
                   cut: list[tuple[int, int]], out: tuple[int, int]) -> Features:
    """``f`` with its short-request block leaving out the entry ranges ``cut`` (sorted, within
    the ``n`` word or word-pair entries before the structure entries) and the pieces in the
    range ``out``: the mean of the other occurrences (weights ``w``, None: all 1) shrunk by
    SHORT_PRIOR, those entries 0. Slices, not a mask: this runs on every long request."""
    if w is None:
        kept = float(n - sum(stop - start for start, stop in cut))
    else:  # the held weights in order, summed as one array (the fit's design matrix did so)
        bounds = [0, *(x for c in cut for x in c), n]
        held = [w[bounds[i] : bounds[i + 1]] for i in range(0, len(bounds), 2)]
        kept = float(np.sum(np.concatenate(held), dtype=np.float64))
    f.short_scale = _short_scale(total, kept)
    short = f.values * np.float32(f.short_scale)
    for start, stop in (*cut, out):
        short[start:stop] = 0.0
    f.short = short
    return f


def _with_short_block(f: Features) -> tuple[np.ndarray, np.ndarray]:
    """Training side: ``f``'s ids and values with the short-request block appended, a copy of
    the word and piece entries (every id below DENSE_OFF) moved to SHORT_OFF, each value times
    ``f.short_scale`` (0 between the ends). Padding entries (id 0, words moved to pieces) are
    copied as padding."""
    words = f.ids < DENSE_OFF
    words_ids = f.ids[words]
    short_ids = np.where(words_ids > 0, words_ids + (SHORT_OFF - HASH_OFF), 0)
    return (np.concatenate((f.ids, short_ids)),
            np.concatenate((f.values, f.short_values()[words])))


def extract(messages: Any, bigrams: bool = False) -> Features:
    """Features of an OpenAI ``messages`` list (or a plain prompt string).

    Word occurrences are kept as separate (id, value) entries (no ``np.unique``: the model is
    linear, so duplicates simply add up in the Gather + ReduceSum). Each occurrence's value is
    its message weight divided by the sum of all occurrence weights. All segments are
    hashed in one pass over their joined bytes; a word's segment is found from its byte offset.
    """
    conv = flatten(messages)
    segs = conv.segments
    w: np.ndarray | None = None  # per-occurrence message weights; None: one segment
    if len(segs) == 1:
        text = segs[0][0]
        raw = encode(text)
        hashes, starts = word_hashes(raw)
        n_tok = estimate_tokens(hashes.size, len(raw), len(text))
        n_last = n_tok if segs[0][1] == W_LAST_USER else 0
        span = (0, hashes.size) if n_last else (0, 0)  # the last user turn's occurrences
    else:
        text = "\n".join([t for t, _ in segs])
        parts = [encode(t) for t, _ in segs]
        raw = b"\n".join(parts)
        hashes, starts = word_hashes(raw)
        # the byte offset where each segment after the first begins ("\n" joins them): a
        # word's segment follows from its own start
        bounds: list[int] = []
        pos = 0
        for p in parts[:-1]:
            pos += len(p) + 1
            bounds.append(pos)
        seg_of = np.searchsorted(np.array(bounds, np.int64), starts, side="right")
        w = np.array([wt for _, wt in segs], np.float32).take(seg_of)
        n_tok = estimate_tokens(hashes.size, len(raw), len(text))
        last = next((i for i, (_, wt) in enumerate(segs) if wt == W_LAST_USER), None)
        if last is None:
            n_last = 0
            span = (0, 0)
        else:
            begin = bounds[last - 1] if last else 0
            end = bounds[last] if last < len(bounds) else len(raw) + 1
            span = (int(starts.searchsorted(begin)), int(starts.searchsorted(end)))
            n_last = estimate_tokens(span[1] - span[0], len(parts[last]), len(segs[last][0]))
    # all structure features go in, zeros too: a zero adds nothing to the sum and skipping
    # np.nonzero saves more than the few extra gathered entries cost
    dense = np.array(_dense(conv, text, n_tok, n_last), dtype=np.float32)
    n_dense = len(DENSE_NAMES)
    n_all = n_tok + unscored_tokens(conv)  # the context window holds those too
    if not hashes.size:
        return Features(ids=_DENSE_IDS, values=dense, n_tokens=n_all)
    mid = _middle(*span)
    cut = [] if mid is None else [mid]
    if bigrams and hashes.size > 1:
        pair = hashes[:-1] * _BI_MULT + hashes[1:]
        ids = np.concatenate(
            [buckets(hashes, SALT_WORD, HASH_BITS), buckets(pair, SALT_BIGRAM, HASH_BITS),
             _DENSE_IDS - HASH_OFF]
        )
        if w is not None:
            w = np.concatenate([w, np.minimum(w[:-1], w[1:])])
        if mid is not None:  # a word pair is held when both its words are
            cut.append((hashes.size + mid[0] - 1, hashes.size + mid[1]))
    else:  # the request path: write the buckets straight into the output array
        ids = np.empty(hashes.size + n_dense, np.int64)
        buckets(hashes, SALT_WORD, HASH_BITS, out=ids[: hashes.size])
        ids[hashes.size :] = _DENSE_IDS - HASH_OFF
    ids += HASH_OFF
    n = ids.size - n_dense
    vals = np.empty(ids.size, np.float32)
    total = _word_values(w, vals[:n])
    vals[n:] = dense
    whole = is_whole(hashes, ids[: hashes.size] - HASH_OFF)
    ids, vals, out = _with_pieces(ids, vals, whole, starts, raw, mid)
    f = Features(ids=ids, values=vals, n_tokens=n_all, short_scale=_short_scale(total))
    return f if mid is None else _short_without(f, total, w, n, cut, out)


def _with_pieces(ids: np.ndarray, vals: np.ndarray, whole: np.ndarray, starts: np.ndarray,
                 raw: bytes, mid: tuple[int, int] | None = None,
                 ) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """Move each word outside the whole-word vocabulary (``~whole``, one flag per word: the
    first ``whole.size`` entries of ``ids``/``vals``, which this changes in place; ``starts``
    their offsets in ``raw``) to one entry per WordPiece of it, appended, each with the word's
    value over its number of pieces; its own entry becomes padding (id 0, value 0). A word with
    no known piece drops out (its value stays in the mean's denominator, as an unknown word's
    did before). Also returns the range of positions of the pieces of the words ``i`` with
    ``mid[0] <= i < mid[1]`` (the words the short-request block leaves out): one run, as the
    words are moved in order.

    Python runs only for those words (a few in a hundred, cached), within a budget: a word of
    more than PIECE_WORD_BYTES (a hash, a blob: WordPiece's cost grows with the square of the
    length) and the words past PIECE_BYTES in all keep their hash bucket, as every such word did
    before feature version 6, so 100 KB of random identifiers or base64 costs ~2-3 ms at first
    sight, not ~25 ms (bench/LATENCY.md). Plain lists below: a request has a few dozen such
    words, where numpy's per-call cost would be most of the work."""
    miss = np.flatnonzero(~whole)
    if not miss.size:
        return ids, vals, (0, 0)
    moved: list[int] = []
    at: list[int] = []  # where each moved word's pieces start in piece_ids
    piece_ids: list[int] = []
    piece_vals: list[float] = []
    budget = PIECE_BYTES
    for i, start, value in zip(miss.tolist(), starts.take(miss).tolist(),
                               vals.take(miss).tolist(), strict=True):
        word = word_at(raw, start)
        if len(word) > PIECE_WORD_BYTES:
            continue
        budget -= len(word)
        if budget < 0:
            break
        moved.append(i)
        at.append(len(piece_ids))
        p = pieces(word)
        if p:
            piece_ids += p
            k = len(p)
            piece_vals += [value / k] * k
    if not moved:
        return ids, vals, (0, 0)
    out = (0, 0)
    if mid is not None:  # the pieces of the moved words in [lo, hi): one run, words in order
        at.append(len(piece_ids))
        first, last = bisect_left(moved, mid[0]), bisect_left(moved, mid[1])
        out = (ids.size + at[first], ids.size + at[last])
    # put() with the index list: ~0.5 us cheaper per call than fancy-index assignment (measured
    # 0.7 against 1.2 us), on every request with a split word; the same elements set
    ids.put(moved, 0)
    vals.put(moved, 0.0)
    return (np.concatenate((ids, np.asarray(piece_ids, np.int64) + PIECE_OFF)),
            np.concatenate((vals, np.asarray(piece_vals, np.float32))), out)


def extract_many(conversations: list[Any]) -> list[Features]:
    """:func:`extract` of many conversations (no bigrams), hashing all their text in one pass.

    Same numbers as calling :func:`extract` on each (a test checks it); the per-call numpy
    overhead of hashing is paid once per batch instead of once per conversation.
    """
    convs = [flatten(m) for m in conversations]
    parts: list[bytes] = []
    seg_w: list[float] = []
    for conv in convs:
        for t, wt in conv.segments:
            parts.append(encode(t))
            seg_w.append(wt)
    # segments joined by "\n" (a separator: no word spans two segments or two conversations)
    seg_start = np.cumsum([0] + [len(p) + 1 for p in parts[:-1]]) if parts else np.zeros(0)
    raw_all = b"\n".join(parts)
    hashes, starts = word_hashes(raw_all)
    seg_of = np.searchsorted(seg_start, starts, side="right") - 1
    ids_all = buckets(hashes, SALT_WORD, HASH_BITS) + HASH_OFF
    whole_all = is_whole(hashes, ids_all - HASH_OFF)
    w_all = np.asarray(seg_w, np.float32)[seg_of]
    seg_tokens = np.bincount(seg_of, minlength=len(parts)).tolist()
    seg_first = np.searchsorted(seg_of, np.arange(len(parts) + 1)).tolist()
    out: list[Features] = []
    s = 0  # index of the conversation's first segment
    for conv in convs:
        segs = conv.segments
        e = s + len(segs)
        a, b = seg_first[s], seg_first[e]
        text = segs[0][0] if len(segs) == 1 else "\n".join(t for t, _ in segs)
        n_bytes = sum(len(parts[j]) for j in range(s, e)) + max(len(segs) - 1, 0)
        n_tok = estimate_tokens(b - a, n_bytes, len(text))
        last = [j for j in range(s, e) if seg_w[j] == W_LAST_USER]
        n_last = (
            estimate_tokens(seg_tokens[last[0]], len(parts[last[0]]), len(segs[last[0] - s][0]))
            if last
            else 0
        )
        dense = np.array(_dense(conv, text, n_tok, n_last), dtype=np.float32)
        n_all = n_tok + unscored_tokens(conv)  # the context window holds those too
        if b > a:
            vals = np.empty(b - a + len(DENSE_NAMES), np.float32)
            w = None if len(segs) == 1 else w_all[a:b]
            total = _word_values(w, vals[: b - a])
            vals[b - a :] = dense
            mid = _middle(seg_first[last[0]] - a, seg_first[last[0] + 1] - a) if last else None
            ids, vals, out_pieces = _with_pieces(np.concatenate((ids_all[a:b], _DENSE_IDS)),
                                                 vals, whole_all[a:b], starts[a:b], raw_all, mid)
            f = Features(ids=ids, values=vals, n_tokens=n_all, short_scale=_short_scale(total))
            if mid is not None:
                f = _short_without(f, total, w, b - a, [mid], out_pieces)
        else:
            f = Features(ids=_DENSE_IDS, values=dense, n_tokens=n_all)
        out.append(f)
        s = e
    return out


def pad_batch(feats: list[Features]) -> tuple[np.ndarray, np.ndarray]:
    """model.onnx's inputs for many conversations: ``ids`` ``[N, K]`` (pad id 0) and ``x``
    ``[N, K, 3]`` = (value, value**2, short-request value) per entry (pad 0): the three columns
    the graph multiplies with the table's (weight, variance, short-request weight)."""
    k = max((f.ids.size for f in feats), default=0)
    k = max(k, 1)
    ids = np.zeros((len(feats), k), dtype=np.int64)
    x = np.zeros((len(feats), k, 3), dtype=np.float32)
    for i, f in enumerate(feats):
        n = f.ids.size
        ids[i, :n] = f.ids
        x[i, :n, 0] = f.values
        x[i, :n, 1] = f.values * f.values
        x[i, :n, 2] = f.short_values()
    return ids, x


def to_csr(feats: list[Features]) -> Any:
    """Training-side helper: a scipy CSR matrix ``[N, N_FEATURES]``, the short-request block
    expanded (scipy imported lazily)."""
    from scipy import sparse

    full = [_with_short_block(f) for f in feats]
    indptr = np.zeros(len(feats) + 1, dtype=np.int64)
    indptr[1:] = np.cumsum([ids.size for ids, _ in full])
    ids = np.concatenate([i for i, _ in full]) if feats else np.zeros(0, np.int64)
    vals = np.concatenate([v for _, v in full]) if feats else np.zeros(0, np.float32)
    return sparse.csr_matrix((vals, ids, indptr), shape=(len(feats), N_FEATURES))
