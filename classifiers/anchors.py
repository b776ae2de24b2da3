"""Hand-labeled anchor requests (data/anchors.jsonl): what "easy" and "hard" mean to a person.

Written for tierwise, easy/hard balanced over 12 kinds of request and with length varied on
purpose (long chatty easy requests, one-line hard ones). Training reads each label as the outcome
of a virtual model ("a small chat model answers this well": 1 easy, 0 hard), the way
:mod:`classifiers.selection` reads Arena-Hard's selection. The benchmarks teach which *items*
their models fail; these rows teach the embedding's topic directions what a user calls hard,
which no benchmark source can (bench/QUALITY_ROUTING.md, "anchors").
"""

from __future__ import annotations

import numpy as np

ANCHOR_SOURCE = "tierwise_anchors"
HAND_LABEL_MODEL = "hand-label"  # a label, not a model a policy could name


def is_anchor(row: dict) -> bool:
    return row.get("source") == ANCHOR_SOURCE


def is_hard(row: dict) -> bool:
    """An anchor's label: hard (its virtual model's outcome 0) or easy (1)."""
    return bool(row["outcomes"][HAND_LABEL_MODEL] == 0.0)


def anchor_labels(rows: list[dict]) -> dict[str, bool]:
    """The last user turn of each anchor row -> hard (True) or easy: extra examples for the
    accurate scorer's sentence head (classifiers/sentence_head.py)."""
    from .conversation import last_user_text
    from .data import row_messages

    return {last_user_text(row_messages(r)): is_hard(r) for r in rows if is_anchor(r)}


def anchor_head(pooled: np.ndarray, hard: np.ndarray, c: float) -> np.ndarray:
    """The weights ``w`` of a logistic regression of hard (1) vs easy (0) on the anchors' pooled
    static embeddings alone (L2, sklearn's ``C``; no intercept kept): ``pooled @ w`` is the
    log-odds that a person calls the request hard, as far as its words tell. Linear in the
    pooled embedding, so it folds into the per-word weights like the IRT's own (training only)."""
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=c, max_iter=5000).fit(pooled, hard)
    return np.asarray(model.coef_, np.float64).ravel()
