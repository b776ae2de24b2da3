"""Why a request got its difficulty: d split into what each part of the linear model adds.

The fast model is linear (:mod:`classifiers.onnx_table`), so d is exactly a sum of parts: each
structure feature (names as in the model card: ``log_tokens_last_user`` is the length of the
last user turn), the word block (the static embedding folded into per-word weights) and the
anchors' head (the short-request block). ``tierwise route`` prints them beside the decision.
"""

from __future__ import annotations

import numpy as np

from .features import DENSE_NAMES, DENSE_OFF, Features

WORDS = "words (static embedding)"
ANCHORS_HEAD = "words, anchors' head (short-request block)"
SENTENCE_HEAD = "sentence head (accurate scorer)"
LEVEL = "level (accurate scorer's offset to the fast d's scale)"


def parts(table: np.ndarray, f: Features) -> dict[str, float]:
    """What each part adds to the fast d of features ``f`` under ``table`` (model.onnx's
    [V, 3] (weight, variance, short-request weight) rows): the word block, the anchors' head
    and every structure feature that adds anything. They sum to the d that
    :meth:`classifiers.DifficultyScorer.score` computes from the same table."""
    rows = table.take(f.ids, axis=0)
    added = f.values * rows[:, 0]
    # the short-request column is 0 on the structure rows: all of it is the anchors' head
    out = {WORDS: float(added[f.ids < DENSE_OFF].sum()),
           ANCHORS_HEAD: float(np.dot(f.short_values(), rows[:, 2]))}
    for i, name in enumerate(DENSE_NAMES):
        value = float(added[f.ids == DENSE_OFF + i].sum())
        if value:
            out[name] = value
    return out


def largest_first(values: dict[str, float]) -> dict[str, float]:
    """``values`` ordered by size, largest first."""
    return dict(sorted(values.items(), key=lambda kv: -abs(kv[1])))
