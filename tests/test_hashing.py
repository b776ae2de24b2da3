"""Word hashing (classifiers/hashing.py): the ids the shipped model's weights are indexed by."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from classifiers.hashing import CHUNK, buckets, encode, split_chunks, word_hashes


def words_of(text: str) -> list[int]:
    h, _ = word_hashes(encode(text))
    return h.tolist()


def test_words_and_marks_split_and_case_folds():
    h = words_of("Hello, WORLD! hello world")
    assert len(h) == 6  # hello , world ! hello world
    assert h[0] == h[4] and h[2] == h[5]
    assert h[1] != h[3]


def test_same_word_same_hash_anywhere():
    a = words_of("integral")
    b = words_of("compute the integral of x")
    assert a[0] == b[2]
    assert words_of("integrals")[0] != a[0]
    assert words_of("lagetni")[0] != a[0]  # not a bag of letters


def test_starts_are_byte_offsets():
    raw = encode("ab  cd,e")
    _, starts = word_hashes(raw)
    assert starts.tolist() == [0, 4, 6, 7]


def test_empty_and_whitespace():
    for t in ("", "   \n\t "):
        h, s = word_hashes(encode(t))
        assert h.size == 0 and s.size == 0


def test_non_ascii_and_surrogates_do_not_raise():
    assert len(words_of("naïve café 東京")) == 3
    assert len(words_of("lone \ud800 surrogate")) == 3


def test_long_text_is_hashed_in_chunks_at_whitespace():
    text = "alpha beta " * (CHUNK // 5)
    raw = encode(text)
    assert len(split_chunks(raw)) > 1
    assert b"".join(split_chunks(raw)) == raw
    h, starts = word_hashes(raw)
    assert set(h.tolist()) == set(words_of("alpha beta"))
    assert h.size == 2 * (CHUNK // 5)
    assert raw[int(starts[-1]) :].startswith(b"beta")


def test_long_text_without_whitespace_still_hashes():
    raw = encode("x" * (CHUNK * 2 + 10))
    assert all(len(c) <= CHUNK for c in split_chunks(raw))
    assert word_hashes(raw)[0].size == 3


def test_buckets_in_range_and_salted():
    h, _ = word_hashes(encode("one two three four five"))
    b1, b2 = buckets(h, 1, 19), buckets(h, 2, 19)
    assert b1.dtype == np.int64 and (b1 >= 0).all() and (b1 < 1 << 19).all()
    assert (b1 != b2).any()


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_any_text(text):
    h, starts = word_hashes(encode(text))
    assert h.size == starts.size
    assert np.all(np.diff(starts) > 0)


def test_words_are_the_word_tokens_of_the_hash():
    """hashing.words (training: which words exist) splits exactly like word_hashes, minus marks."""
    from classifiers.hashing import words

    raw = encode("Naïve café: x_1 = 3.5 + 東京? (done) e-mail")
    h, _ = word_hashes(raw)
    ws = words(raw)
    assert ws == [b"na\xc3\xafve", b"caf\xc3\xa9", b"x_1", b"3", b"5",
                  "東京".encode(), b"done", b"e", b"mail"]
    word_h = {int(word_hashes(w)[0][0]) for w in ws}
    marks = {int(word_hashes(m.encode())[0][0]) for m in ":=.+?()-"}
    assert set(h.tolist()) == word_h | marks



@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_word_at_cuts_out_each_token(text):
    """word_at(raw, start) is each token word_hashes found: the word runs words() returns, in
    order, and single-byte punctuation marks between them."""
    from classifiers.hashing import word_at, words

    raw = encode(text)
    h, starts = word_hashes(raw)
    tokens = [word_at(raw, s) for s in starts.tolist()]
    assert [t for t in tokens if words(t) == [t]] == words(raw)
    assert all(len(t) == 1 for t in tokens if words(t) != [t])
    assert [int(word_hashes(t)[0][0]) for t in tokens] == h.tolist()
