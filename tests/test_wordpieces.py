"""Words outside MiniLM's whole-word vocabulary are read through their WordPieces
(classifiers/wordpieces.py, features.py): the ids and values extract() gives them, the budget
that bounds their cost, and that the shipped model reads such a word as its pieces' mean."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from classifiers.features import (
    DENSE_OFF,
    HASH_BITS,
    HASH_OFF,
    PIECE_BYTES,
    PIECE_OFF,
    PIECE_WORD_BYTES,
    SALT_WORD,
    WORD_PRIOR,
    extract,
    extract_many,
)
from classifiers.hashing import buckets, encode, word_hashes
from classifiers.wordpieces import N_PIECES, is_whole, pieces, vocabulary


def _piece_entries(text: str) -> dict[int, float]:
    f = extract(text)
    out: dict[int, float] = {}
    for i, v in zip(f.ids.tolist(), f.values.tolist(), strict=True):
        if PIECE_OFF <= i < DENSE_OFF:
            out[i - PIECE_OFF] = out.get(i - PIECE_OFF, 0.0) + v
    return out


def test_vocabulary_words_keep_their_bucket_and_others_split():
    h, _ = word_hashes(encode("the cat goroutine idiomatic !"))
    whole = is_whole(h, buckets(h, SALT_WORD, HASH_BITS))
    assert whole.tolist() == [True, True, False, False, True]
    vocab = vocabulary()
    assert len(vocab) == N_PIECES
    names = {i: t for t, i in vocab.items()}
    assert [names[i] for i in pieces(b"goroutine")] == ["go", "##rou", "##tine"]
    # BERT's pre-tokenizer splits on "_" and on the typographic apostrophe
    assert [names[i] for i in pieces("amanda’s".encode())] == ["amanda", "’", "s"]
    assert [names[i] for i in pieces(b"shared_ptr")][:2] == ["shared", "_"]
    assert pieces("∫".encode()) == ()  # only [UNK]: no piece


def test_a_split_word_keeps_its_share_of_the_mean():
    """One word of five, split into three pieces: each piece carries a third of the word's
    value 1/(5 + WORD_PRIOR); the whole words keep theirs in the hash block."""
    f = extract("the goroutine is not idiomatic")  # idiomatic: id ##iom ##atic
    got = _piece_entries("the goroutine is not idiomatic")
    share = 1.0 / (5 + WORD_PRIOR)
    assert len(got) == 6
    assert all(v == pytest.approx(share / 3, rel=1e-6) for v in got.values())
    in_hash = f.values[(f.ids >= HASH_OFF) & (f.ids < PIECE_OFF)]
    assert in_hash.size == 3 and np.allclose(in_hash, share)


def test_budget_bounds_the_words_split_per_conversation():
    long_word = "x" * (PIECE_WORD_BYTES + 1) + "q"
    assert _piece_entries(long_word) == {}  # too long: its hash bucket, as before version 6
    n = PIECE_BYTES // 8 + 50  # distinct 8-letter non-words, past the byte budget
    rng = np.random.default_rng(0)
    words = ["".join(rng.choice(list("bcdfghjklmnpqrstvwxz"), 8)) for _ in range(n)]
    f = extract(" ".join(words))
    h, _ = word_hashes(encode(" ".join(words)))
    split = int((~is_whole(h, buckets(h, SALT_WORD, HASH_BITS)))[: PIECE_BYTES // 8].sum())
    # every word within the budget left the hash block; those after it stayed there
    in_hash = int(((f.ids >= HASH_OFF) & (f.ids < PIECE_OFF)).sum())
    assert in_hash == n - split
    assert split >= PIECE_BYTES // 8 - 5


def test_extract_many_agrees_with_extract_on_split_words():
    convs = ["goroutine deadlock in asyncio", [{"role": "user", "content": "hi"},
             {"role": "assistant", "content": "the concurrenthashmap"},
             {"role": "user", "content": "why does memory_order_relaxed break it?"}], ""]
    for many, conv in zip(extract_many(convs), convs, strict=True):
        one = extract(conv)
        assert np.array_equal(many.ids, one.ids) and np.array_equal(many.values, one.values)


def test_shipped_model_reads_an_unseen_word_as_its_pieces():
    """A made-up word no training prompt holds gets the mean of its pieces' weights, not the
    zero an unknown word got before: 'xylofrobnicate' and its pieces side by side score the same
    word-block contribution (up to the mean's denominator)."""
    from classifiers.onnx_table import read_linear_table
    from classifiers.scorer import MODEL_DIR

    w = read_linear_table(MODEL_DIR / "model.onnx")[:, 0].astype(np.float64)
    word = b"xylofrobnicate"
    ids = [PIECE_OFF + i for i in pieces(word)]
    assert len(ids) >= 2
    f = extract(word.decode())
    block = f.ids < DENSE_OFF
    contribution = float(w[f.ids[block]] @ f.values[block])
    expected = float(np.mean(w[ids])) / (1 + WORD_PRIOR)
    assert contribution == pytest.approx(expected, rel=1e-5)
    assert abs(contribution) > 0  # the word now counts


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.sampled_from(list("ab_xyz0129 .’é中?") + ["q" * 40]), max_size=60)
                .map("".join), min_size=1, max_size=4))
def test_extract_many_agrees_with_extract_on_any_text(texts):
    """Bit for bit, whatever mix of whole words, split words, long words and marks: training
    featurizes with extract_many, serving with extract."""
    convs = [[{"role": "user", "content": t}] for t in texts] + [texts[0]]
    for many, conv in zip(extract_many(convs), convs, strict=True):
        one = extract(conv)
        assert np.array_equal(many.ids, one.ids) and np.array_equal(many.values, one.values)
        words = many.ids < DENSE_OFF
        assert np.all(np.isfinite(many.values)) and float(many.values[words].sum()) < 1.0


def test_a_missing_tokenizer_fails_at_construction_naming_the_file(monkeypatch, tmp_path):
    """The scorer loads the WordPiece vocabulary when it is built (not on the first request),
    and an install without the file says which file and what to do."""
    import classifiers.wordpieces as wordpieces
    from classifiers.scorer import DifficultyScorer

    missing = tmp_path / "tokenizer.json"
    monkeypatch.setattr(wordpieces, "TOKENIZER", missing)
    monkeypatch.setattr(wordpieces, "_loaded", [])  # as in a fresh process
    with pytest.raises(FileNotFoundError, match="tokenizer.json.*reinstall tierwise"):
        DifficultyScorer()
