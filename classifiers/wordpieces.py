"""MiniLM's WordPieces for the words outside its whole-word vocabulary.

The word block of the difficulty model (:mod:`classifiers.features`) gives each word of MiniLM's
whole-word vocabulary a hash bucket of its own, and splits every other word ("goroutine",
"idiomatic", "shared_ptr", "amanda’s") into the WordPieces MiniLM's tokenizer makes of it, each a
feature of its own (``go ##rou ##tine``). The static embedding of such a word is the mean of its
pieces' vectors (:mod:`classifiers.embedding`), so its weight in the model is the mean of its
pieces' weights: any word a request holds gets the embedding's reading, not only the words the
training data happened to contain (those were the only ones before feature version 6).

The tokenizer is the accurate scorer's (``minilm_encoder/tokenizer.json``, package data; the
uncased BERT vocabulary, 30,522 entries), loaded once (~50 ms, ~20 MB) when a
:class:`~classifiers.scorer.DifficultyScorer` is built (:func:`load_vocabulary`) or on first use;
thread-safe.

Splitting a word (cached, :func:`pieces`): a plain ``[0-9a-z]+`` word goes to WordPiece alone;
a word of the characters :mod:`classifiers.bert_chars` lists (Korean, Cyrillic, accented Latin,
kana, CJK, "shared_ptr": 99.5% of the other distinct words of the project's data) has
BERT's normalizer and pre-tokenizer done in Python, then WordPiece; any other word goes through
``tokenizer.encode``. All three give ``encode``'s ids (tests/test_wordpiece_fastpath.py checks
every distinct word of the project's data). ``TIERWISE_WORDPIECE_ENCODE_ONLY=1`` in the
environment when the vocabulary loads sends every word through ``encode`` (the reference: the
tests compare features with it).
"""

from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from .bert_chars import Splitter, splitter
from .hashing import buckets, word_hashes

TOKENIZER = Path(__file__).resolve().parent / "minilm_encoder" / "tokenizer.json"
N_PIECES = 30522  # the vocabulary's size: a fixed part of the feature layout
# a lower-case ASCII word with no "_" (punctuation to BERT): WordPiece alone reads it as the
# whole pipeline would (normalizer and pre-tokenizer have nothing to do), at half the cost
# (measured 2026-12-06: 2.4 against 5.0 us per word)
_PLAIN = re.compile(rb"[0-9a-z]+")
_lock = threading.Lock()
_loaded: list[_Vocab] = []


@dataclass(frozen=True)
class _Vocab:
    tokenizer: Any
    # per hash bucket: 1 + a 16-bit fingerprint of the whole word there (0: none), so that
    # is_whole is one gather; two whole words in one bucket keep one fingerprint, and the other
    # is split into its single piece, itself: the same vector either way
    fingerprint: np.ndarray  # int32 [2**HASH_BITS]
    specials: frozenset[int]  # [UNK], [CLS], ...: never a piece of a word
    encode_only: bool  # TIERWISE_WORDPIECE_ENCODE_ONLY: no fast path, encode for every word
    splitter: Splitter  # BERT's normalizer and pre-tokenizer in Python, where it can be exact


def _fingerprint(hashes: np.ndarray) -> np.ndarray:
    # bits 16-31: independent of the bucket (the top HASH_BITS bits of hash * _MIX)
    return ((hashes >> np.uint64(16)) & np.uint64(0xFFFF)).astype(np.int32) + 1


def whole_words(vocab: dict[str, int]) -> tuple[list[str], np.ndarray]:
    """The whole words and marks of ``vocab`` (not ``##`` continuations, nothing starting with
    "[") that our hashing reads as one token, sorted, and their 64-bit hashes: the words that
    keep a hash bucket (the request path's fingerprints, the training table's rows)."""
    whole = sorted(t for t in vocab if not t.startswith(("##", "[")))
    # hash every whole word in one pass; keep those our hashing reads as one token
    hashes, starts = word_hashes("\n".join(whole).encode("utf-8"))
    begin = np.cumsum([0] + [len(t.encode("utf-8")) + 1 for t in whole[:-1]])
    first = np.minimum(np.searchsorted(starts, begin), starts.size - 1)
    count = np.diff(np.append(np.searchsorted(starts, begin), starts.size))
    single = np.flatnonzero((count == 1) & (starts.take(first) == begin))
    return [whole[k] for k in single.tolist()], hashes.take(first.take(single))


def load_vocabulary() -> None:
    """Load the vocabulary now (it loads on first use otherwise); FileNotFoundError naming the
    file if the package lacks it."""
    _load()


def _load() -> _Vocab:
    """The vocabulary, loaded once."""
    if _loaded:
        return _loaded[0]
    with _lock:
        if not _loaded:
            from tokenizers import Tokenizer

            if not TOKENIZER.is_file():
                raise FileNotFoundError(
                    f"{TOKENIZER}: MiniLM's tokenizer is missing from this tierwise install "
                    "(package data since feature version 6: it splits words outside the "
                    "vocabulary into WordPieces); reinstall tierwise.")

            from .features import HASH_BITS, SALT_WORD

            tok = Tokenizer.from_file(str(TOKENIZER))
            tok.no_truncation()
            tok.no_padding()
            vocab: dict[str, int] = tok.get_vocab()
            if len(vocab) != N_PIECES:
                raise RuntimeError(f"{TOKENIZER}: {len(vocab)} entries, expected {N_PIECES}")
            _, one = whole_words(vocab)
            fingerprint = np.zeros(1 << HASH_BITS, np.int32)
            fingerprint[buckets(one, SALT_WORD, HASH_BITS)] = _fingerprint(one)
            specials = frozenset(i for t, i in vocab.items()
                                 if t.startswith("[") and t.endswith("]"))
            encode_only = os.environ.get("TIERWISE_WORDPIECE_ENCODE_ONLY") == "1"
            _loaded.append(_Vocab(tok, fingerprint, specials, encode_only, splitter()))
    return _loaded[0]


def is_whole(hashes: np.ndarray, bucket: np.ndarray) -> np.ndarray:
    """Per word, from its 64-bit hash and its bucket (:mod:`classifiers.hashing`): is it a whole
    word (or a punctuation mark) of the vocabulary? Those keep their hash bucket."""
    return np.asarray(_load().fingerprint.take(bucket) == _fingerprint(hashes))


# ~400 bytes per cached word: 8,192 words bound the cache near 3 MB (65,536 held 27 MB, which a
# server would fill over days of varied traffic); a word evicted costs ~2-5 us when seen again
@lru_cache(maxsize=1 << 13)
def pieces(word: bytes) -> tuple[int, ...]:
    """Vocabulary ids of the WordPieces of one lower-cased UTF-8 word (special tokens such as
    [UNK] left out: a word with no known piece has none)."""
    v = _load()
    text = word.decode("utf-8", "replace")
    if v.encode_only:
        return _encoded(v, text)
    # a plain word: nothing for BERT's normalizer and pre-tokenizer to do. Other words (Korean,
    # Cyrillic, accented Latin, "shared_ptr"): the normalizer's and the pre-tokenizer's work
    # done in Python when every character is one whose treatment Python reproduces
    # (bert_chars), WordPiece on each part: ~1 us for what costs encode ~5-7 us of its
    # pipeline's machinery (2026-12-07 23:04 UTC, the 12,571 such words of routing-chat,
    # uncached: 5.5 against 10-12.5 us per word, WordPiece and its Token objects included)
    parts = [text] if _PLAIN.fullmatch(word) else v.splitter.normalize_split(text)
    if parts is None:
        return _encoded(v, text)
    model = v.tokenizer.model
    return tuple(i for part in parts for t in model.tokenize(part) if (i := t.id) not in v.specials)


def _encoded(v: _Vocab, text: str) -> tuple[int, ...]:
    """The pieces of ``text`` through the tokenizer's whole pipeline (the reference)."""
    ids = v.tokenizer.encode(text, add_special_tokens=False).ids
    return tuple(i for i in ids if i not in v.specials)


def encoded_pieces(word: bytes) -> tuple[int, ...]:
    """:func:`pieces` of ``word`` through ``tokenizer.encode`` alone, never a fast path, never
    the cache: the reference the tests hold the fast paths to."""
    return _encoded(_load(), word.decode("utf-8", "replace"))


def vocabulary() -> dict[str, int]:
    """The tokenizer's vocabulary (token -> id); training code places the embedding by it."""
    return dict(_load().tokenizer.get_vocab())
