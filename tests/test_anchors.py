"""The hand-labeled anchors (data/anchors.jsonl): well-formed and balanced, independent of the
hand-written evaluation sets, and used by training as the card says (with ``anchor_scope`` 1
they move the embedding's weights only, never the structure and length weights; their own head,
``anchor_head``, adds its weights to the embedding's, folded into the word table exactly)."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import numpy as np

from bench.hand_written import DIR as HAND_WRITTEN_DIR
from bench.hand_written import MATERIAL_PAIRS, READ_ONCE
from bench.hand_written import SETS as HAND_WRITTEN
from classifiers.anchors import ANCHOR_SOURCE, HAND_LABEL_MODEL, anchor_head, is_anchor, is_hard
from classifiers.data import load_rows, row_messages, sha256_file
from classifiers.features import DENSE_OFF, SHORT_OFF
from classifiers.metrics import auc
from classifiers.train import DEFAULT_PARAMS, featurize, fit, semantic_table

ROOT = Path(__file__).resolve().parent.parent
ANCHORS = ROOT / "data" / "anchors.jsonl"
THIRD_WRITER = ROOT / "data" / "anchors-third-writer.jsonl"  # measured, not trained on by default
MODEL = ROOT / "classifiers" / "model"


def _words(row: dict) -> set[str]:
    msgs = row_messages(row)
    text = msgs if isinstance(msgs, str) else " ".join(str(m["content"]) for m in msgs)
    return set(re.findall(r"[a-z0-9]+", text.lower()))


def test_anchors_load_and_are_balanced_over_kinds():
    assert len(load_rows(THIRD_WRITER)) >= 400  # same schema: load_rows accepts every row
    rows = load_rows(ANCHORS)
    assert len(rows) >= 400 and {r["source"] for r in rows} == {ANCHOR_SOURCE}
    for r in rows:
        assert r["outcomes"] == {HAND_LABEL_MODEL: 1.0 if r["meta"]["label"] == "easy" else 0.0}
    per_kind = Counter((r["meta"]["kind"], r["meta"]["label"]) for r in rows)
    kinds = {k for k, _ in per_kind}
    assert len(kinds) == 12
    assert all(per_kind[(k, label)] >= 14 for k in kinds for label in ("easy", "hard"))
    assert any("messages" in r for r in rows)  # multi-turn rows keep their turns


def test_no_anchor_overlaps_the_hand_written_evaluation_sets():
    sets = HAND_WRITTEN + READ_ONCE
    evals = [json.loads(line) for path in [HAND_WRITTEN_DIR / f for f in sets]
             + [MATERIAL_PAIRS] for line in path.read_text().splitlines()]
    eval_words = [_words({"messages": e["messages"]}) for e in evals]
    for row in load_rows(ANCHORS) + load_rows(THIRD_WRITER):
        w = _words(row)
        worst = max(len(w & e) / len(w | e) for e in eval_words)
        assert worst < 0.5, row["id"]


def test_the_shipped_model_was_trained_on_these_anchors():
    meta = json.loads((MODEL / "model.json").read_text())
    assert meta["data_sha256"]["anchors.jsonl"] == sha256_file(ANCHORS)
    assert meta["sources"][ANCHOR_SOURCE] == len(load_rows(ANCHORS))
    abilities = json.loads((MODEL / "abilities.json").read_text())["abilities"]
    assert HAND_LABEL_MODEL not in abilities  # a label, not a model a policy could name


def _fit(rows, X, emb, **params):
    model, _ = fit(X, rows, {**DEFAULT_PARAMS, "sentence_head": 0, **params}, emb)
    return model


def test_anchors_move_only_the_embedding_weights():
    bench = load_rows(ROOT / "data" / "routing-chat.jsonl.gz")[:800]
    anchors = load_rows(ANCHORS)
    rows = bench + anchors
    X = featurize(rows, lambda _m: None)
    emb = semantic_table(rows, X)
    # the IRT's use of the anchors alone (their own head, tested below, off)
    without = _fit(rows, X, emb, anchor_weight=0.0, anchor_head=0.0)
    embedding_only = _fit(rows, X, emb, anchor_weight=10.0, anchor_scope=1, anchor_head=0.0)
    everything = _fit(rows, X, emb, anchor_weight=10.0, anchor_scope=0, anchor_head=0.0)
    dense = slice(DENSE_OFF, SHORT_OFF)
    np.testing.assert_array_equal(embedding_only.coef_[dense], without.coef_[dense])
    assert np.abs(everything.coef_[dense] - without.coef_[dense]).max() > 1e-3
    words = slice(1, DENSE_OFF)
    assert np.abs(embedding_only.coef_[words] - without.coef_[words]).max() > 1e-3
    # what they teach: the anchors' own hard requests score above their easy ones
    hard = np.asarray([r["meta"]["label"] == "hard" for r in anchors])
    Xa = X[len(bench):]
    before = auc(without.predict(Xa), hard)
    after = auc(embedding_only.predict(Xa), hard)
    assert after > before + 0.05


def test_the_anchors_head_is_folded_into_the_word_weights_exactly():
    """``anchor_head`` beta: the short-request block's word weights are exactly emb @ (beta * w),
    w the anchors' own logistic head on that block's pooling; every other weight (the main word
    block, structure, length) does not move; the abilities move by beta times
    the head's mean over the training prompts (P(model does well) unchanged on average)."""
    bench = load_rows(ROOT / "data" / "routing-chat.jsonl.gz")[:800]
    rows = bench + load_rows(ANCHORS)
    X = featurize(rows, lambda _m: None)
    emb = semantic_table(rows, X)
    off = _fit(rows, X, emb, anchor_head=0.0)
    on = _fit(rows, X, emb, anchor_head=0.1, anchor_head_c=10.0)
    anchor = np.asarray([is_anchor(r) for r in rows])
    pooled = np.asarray(X[:, SHORT_OFF:] @ emb)  # the short-request block's pooling
    hard = np.asarray([is_hard(r) for r in rows if is_anchor(r)])
    w = anchor_head(pooled[anchor], hard, 10.0)
    np.testing.assert_allclose(on.anchor_head_, w)
    np.testing.assert_allclose(on.coef_[SHORT_OFF:], emb @ (0.1 * w), atol=1e-9)
    np.testing.assert_array_equal(off.coef_[SHORT_OFF:], 0.0)
    np.testing.assert_array_equal(on.coef_[:SHORT_OFF], off.coef_[:SHORT_OFF])
    np.testing.assert_array_equal(on.var_[SHORT_OFF:], 0.0)
    np.testing.assert_allclose(on.abilities_ - off.abilities_, 0.1 * (pooled @ w).mean())
    # what the head reads: the anchors' hard requests above their easy ones, by words alone
    assert auc(pooled[anchor] @ w, hard) > 0.9


def test_anchor_head_finds_the_direction_that_separates_hard_from_easy():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 5))
    hard = x[:, 2] + 0.3 * rng.normal(size=300) > 0
    w = anchor_head(x, hard, 10.0)
    assert w[2] > 0 and np.abs(w[2]) > 3 * np.abs(np.delete(w, 2)).max(), w


def test_sentence_head_sample_weights_count():
    """SentenceHead.fit(sample_weight=...): the anchors' weight in the head (train param
    ``head_anchors``) must change what it learns, and weight 0 must equal leaving them out."""
    from classifiers.sentence_head import SentenceHead

    rng = np.random.default_rng(0)
    base = rng.normal(size=(200, 8))
    y = base[:, 0] > 0
    extra = rng.normal(size=(60, 8))
    y_extra = extra[:, 1] > 0  # a different direction: what the extra examples teach
    X, Y = np.vstack([base, extra]), np.concatenate([y, y_extra])
    alone = SentenceHead().fit(base, y)
    zero = SentenceHead().fit(X, Y, np.r_[np.ones(200), np.zeros(60)])
    heavy = SentenceHead().fit(X, Y, np.r_[np.ones(200), np.full(60, 5.0)])
    np.testing.assert_allclose(zero.coef_, alone.coef_, atol=1e-4)
    assert heavy.coef_[1] > alone.coef_[1] + 0.5
