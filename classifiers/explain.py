"""Why a request got its difficulty: d split into what each part of the linear model adds.

The fast model is linear (:mod:`classifiers.onnx_table`), so d is exactly a sum of parts: each
structure feature (names as in the model card: ``log_tokens_last_user`` is the length of the
last user turn), the word block (the static embedding folded into per-word weights) and the
anchors' head (the short-request block); and the word blocks are sums over the words. So an
:class:`Explanation` says both which parts and which words made a request hard or easy.
``tierwise route`` prints it beside the decision.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from .conversation import flatten
from .features import DENSE_NAMES, DENSE_OFF, Features
from .hashing import encode, word_at, word_hashes
from .wordpieces import pieces

WORDS = "words (static embedding)"
ANCHORS_HEAD = "words, anchors' head (short-request block)"
SENTENCE_HEAD = "sentence head (accurate scorer)"
LEVEL = "level (accurate scorer's offset to the fast d's scale)"


@dataclass(frozen=True)
class Explanation:
    """What adds up to a difficulty. ``parts``: name -> logits, largest first, summing to d.
    ``words``: (word, logits) per distinct word, largest first, its value in both word blocks
    (its share of the ``WORDS`` and ``ANCHORS_HEAD`` parts; empty for a model with bigrams)."""

    parts: dict[str, float]
    words: list[tuple[str, float]]

    def scaled(self, scale: float) -> Explanation:
        """Every value times ``scale`` (the accurate scorer's level)."""
        return Explanation({k: scale * v for k, v in self.parts.items()},
                           [(w, scale * v) for w, v in self.words])


def explain(table: np.ndarray, f: Features, messages: object) -> Explanation:
    """The parts of the fast d of ``messages`` (whose features are ``f``) under ``table``
    (model.onnx's [V, 3] (weight, variance, short-request weight) rows): the word block, the
    anchors' head, every structure feature that adds anything, and each word's share. The
    parts sum to the d that :meth:`classifiers.DifficultyScorer.score` computes."""
    rows = table.take(f.ids, axis=0)
    main = f.values * rows[:, 0]
    # the short-request column is 0 on the structure rows: all of it is the anchors' head
    short = f.short_values() * rows[:, 2]
    parts = {WORDS: float(main[f.ids < DENSE_OFF].sum()), ANCHORS_HEAD: float(short.sum())}
    for i, name in enumerate(DENSE_NAMES):
        value = float(main[f.ids == DENSE_OFF + i].sum())
        if value:
            parts[name] = value
    return Explanation(largest_first(parts), _words(f, main + short, messages))


def _words(f: Features, added: np.ndarray, messages: object) -> list[tuple[str, float]]:
    """Each distinct word's value, from the entries :func:`classifiers.features.extract` made:
    one per word occurrence in order, then the dense block, then the WordPieces of the words
    it moved to their pieces (their own entry left as padding, id 0), in the same order."""
    segments = flatten(messages).segments
    raw = b"\n".join(encode(text) for text, _ in segments)
    _, starts = word_hashes(raw)
    n = starts.size
    if n + len(DENSE_NAMES) > f.ids.size:
        return []
    by_word: dict[str, float] = defaultdict(float)
    at = n + len(DENSE_NAMES)
    for i, start in enumerate(starts.tolist()):
        word = word_at(raw, start)
        if f.ids[i] != 0:
            by_word[word.decode("utf-8", "replace")] += float(added[i])
            continue
        k = len(pieces(word))
        by_word[word.decode("utf-8", "replace")] += float(added[at : at + k].sum())
        at += k
    if at != f.ids.size:  # not the layout above (bigrams): no per-word reading
        return []
    return sorted(by_word.items(), key=lambda kv: -abs(kv[1]))


def largest_first(values: dict[str, float]) -> dict[str, float]:
    """``values`` ordered by size, largest first."""
    return dict(sorted(values.items(), key=lambda kv: -abs(kv[1])))
