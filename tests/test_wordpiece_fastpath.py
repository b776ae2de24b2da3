"""The WordPiece fast paths (classifiers/wordpieces.py ``pieces``, classifiers/bert_chars.py) give
exactly the ids of MiniLM's full tokenizer pipeline (``tokenizer.encode``) for every word the
project's data holds, for hand-picked tricky words and for every character the fast path accepts;
and extract()'s features are the same with the fast paths on as with every word through encode.
Nothing is mocked: the reference is the tokenizer itself."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from classifiers.bert_chars import ALLOWED_RANGES, _parse, splitter
from classifiers.conversation import flatten
from classifiers.data import distinct_conversations, load_rows, read_jsonl, row_messages
from classifiers.features import DENSE_OFF, PIECE_OFF, extract
from classifiers.hashing import encode, word_at, word_hashes
from classifiers.wordpieces import TOKENIZER, encoded_pieces, pieces

ROOT = Path(__file__).resolve().parents[1]
SPLITTER = splitter()
DATA = [ROOT / "data" / "routing-chat.jsonl.gz", ROOT / "data" / "routing-train.jsonl.gz",
        *sorted((ROOT / "bench" / "commonsense").glob("*.jsonl"))]

# accents, German ß, Turkish İ/ı, Greek final sigma, CJK, Hangul, Thai, Arabic, Devanagari,
# emoji (with ZWJ), combining marks alone and stacked, zero-width and soft-hyphen characters,
# full-width and half-width forms, ligatures, compatibility characters, mixed scripts, words
# with BERT punctuation inside, added-token look-alikes, a lone surrogate and a NUL
TRICKY = [
    "café", "naïve", "résumé", "ÅÄÖ", "ǖ", "ǰ", "ŉ", "ĳ", "ŀ", "straße", "STRASSE", "ẞ",
    "größenordnung", "i̇stanbul", "İstanbul", "ıi", "ΟΔΟΣ", "οδος", "ς", "σς", "ᾼ", "ᾳ", "ΐ", "ϴ",
    "ϑ", "ϐ", "Ωmega", "\u2126", "\u212a", "\u212b", "日本語", "中文abc", "漢字", "\uf900",
    "\U00020000", "한국어", "한국어를", "ᄒ", "ภาษาไทย", "العربية", "ّ", "אָ", "हिन्दी", "ञ्ज",
    "க்ஷ", "\u0f73", "\u0f75", "\u0f81", "\u0344", "\u0345", "😀", "👨\u200d👩\u200d👧", "a\u200db",
    "a\u200cb", "a\u00adb", "\u00ad", "\ufeffa", "e\u0301", "\u0301", "\u0301\u0301", "k\u0308",
    "ａｂｃ", "ｶﾞ", "ﾟ", "ﬁle", "ﬃ", "ﬅ", "ﬆ", "Ǆ", "ǅ", "ǈ", "ǋ", "½", "²", "x²", "⁵", "Ⅻ",
    "ℌ", "µ", "㎏", "①", "ⓐ", "Ⓐ", "ℹ", "°c", "·", "…", "—", "«»", "¿qué", "¡hola",
    "naïve_café", "a_b_c", "shared_ptr", "amanda’s", "[unk]", "[UNK]", "[cls]x", "x\ufffd",
    "\x00a", "a\x7fb", "\u2028", "ab\u3000cd", "привет", "ёлка", "Москва", "kiểm", "tiếng",
    "việt", "ðþæ", "łódź", "çağrı", "ŋ", "ʃ", "\u0300a", "a\u0338", "\u1e9b\u0323", "q\u0307\u0323",
    "\ud800", "ǃ", "\u037e", "\u1fef", "\u0387", "\u2024", "\ufe52", "\uff0e", "\u3002",
]


def _words() -> set[bytes]:
    """Every distinct word (and punctuation mark) of the data, as extract's hashing splits it:
    word_hashes over encode(text), word_at at each start (features._with_pieces)."""
    out: set[bytes] = set()
    for path in DATA:
        for row in read_jsonl(path):
            conv = flatten(row_messages(row))
            for text in [t for t, _ in conv.segments] + list(conv.system) + list(conv.tool):
                raw = encode(text)
                _, starts = word_hashes(raw)
                out.update(word_at(raw, s) for s in starts.tolist())
    return out


def _mismatches(words: list[bytes]) -> list[tuple[str, tuple[int, ...], tuple[int, ...]]]:
    # pieces.__wrapped__: the uncached function, so an earlier cached call proves nothing
    out = []
    for w in words:
        fast, ref = pieces.__wrapped__(w), encoded_pieces(w)
        if fast != ref:
            out.append((w.decode("utf-8", "replace"), fast, ref))
    return out


def test_tokenizer_is_the_one_bert_chars_reproduces():
    """bert_chars encodes this normalizer and pre-tokenizer; another tokenizer.json needs its
    rules re-checked."""
    cfg = json.loads(TOKENIZER.read_text())
    assert cfg["normalizer"] == {"type": "BertNormalizer", "clean_text": True,
                                 "handle_chinese_chars": True, "strip_accents": None,
                                 "lowercase": True}
    assert cfg["pre_tokenizer"] == {"type": "BertPreTokenizer"}
    assert cfg["model"]["type"] == "WordPiece"
    # added tokens are matched in the raw text: the fast path must not accept their first char
    assert cfg["added_tokens"]
    assert all(SPLITTER.allowed.fullmatch(t["content"][0]) is None for t in cfg["added_tokens"])


def test_every_word_of_the_data_splits_as_encode_splits_it():
    words = sorted(_words())
    assert len(words) > 50_000
    fast = sum(SPLITTER.normalize_split(w.decode("utf-8", "replace")) is not None for w in words)
    assert fast / len(words) > 0.99  # the fast path is the common case, not the exception
    assert _mismatches(words) == []


def test_tricky_words_split_as_encode_splits_them():
    words = [w.encode("utf-8", "surrogatepass") for w in TRICKY]
    words += [w.lower().encode("utf-8", "surrogatepass") for w in TRICKY]
    words += [w + w for w in words] + [b"x" + w + b"y" for w in words]
    assert _mismatches(words) == []
    # the fast path takes most of them, so they test it and not only the fallback
    fast = [w for w in words if SPLITTER.normalize_split(w.decode("utf-8", "replace")) is not None]
    assert len(fast) > 300


def test_every_allowed_character_splits_as_encode_splits_it():
    """Each of the ~50,000 characters the fast path accepts, alone, between letters, and after
    a combining mark (NFD reorders marks by combining class)."""
    chars = [chr(c) for lo, hi in _parse(ALLOWED_RANGES) for c in range(lo, hi + 1)]
    assert len(chars) > 40_000
    words = [s.encode() for c in chars for s in (c, f"a{c}b")]
    words += [f"e\u0301{c}".encode() for c in chars[::7]]
    assert _mismatches(words) == []


def _features(n: int) -> list[tuple[list[int], list[float]]]:
    convs = distinct_conversations(load_rows(ROOT / "data" / "routing-chat.jsonl.gz"))
    # every 7th conversation: spread over the file's sources and languages
    out = []
    for conv in convs[::7][:n]:
        f = extract(conv)
        out.append((f.ids.tolist(), f.values.tolist()))
    return out


@pytest.mark.timeout(120)
def test_features_are_the_same_with_every_word_through_encode():
    """extract() on 400 real chat requests here (fast paths on) and in a fresh process with
    TIERWISE_WORDPIECE_ENCODE_ONLY=1: ids and values the same, to the bit."""
    here = _features(400)
    code = ("import json, sys; from tests.test_wordpiece_fastpath import _features; "
            "json.dump(_features(400), sys.stdout)")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TIERWISE_WORDPIECE_ENCODE_ONLY": "1"}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                          text=True, check=True)
    there = json.loads(done.stdout)
    assert len(here) == len(there) == 400
    split = 0
    for (ids, vals), (ref_ids, ref_vals) in zip(here, there, strict=True):
        assert ids == ref_ids
        # float32 values through json: float64 repr of a float32 round-trips exactly
        assert np.array_equal(np.float32(vals), np.float32(ref_vals))
        split += any(PIECE_OFF <= i < DENSE_OFF for i in ids)
    assert split > 100  # most requests hold a split word: the comparison covers them
