"""After the IRT fit: fold the embedding's weights and the anchors' own head into the per-word
table, and give every weight its variance.

The fit weighs the words through their pooled static embedding (``X_w @ E``), 128 weights ``u``;
since ``X_w @ (E u) == (X_w @ E) @ u`` exactly, ``E u`` becomes the word block of the shipped
table and the request path stays one linear table (:mod:`classifiers.onnx_model`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .anchors import anchor_head, is_anchor, is_hard
from .features import DENSE_NAMES, DENSE_OFF, HASH_OFF, N_FEATURES, READ_FLAGS, SHORT_OFF
from .irt import IRTDifficulty


def fisher_variance(
    X: Any, irt: IRTDifficulty, coef: np.ndarray, pairs: Any, l2: float,
    columns: int | None = None,
) -> np.ndarray:
    """Diagonal-Laplace variance 1 / (H_jj + l2) of every feature as if its weight were free;
    with ``columns``, of the first ``columns`` features only (d still uses all of ``coef``).

    For features the fit did not weigh freely (folded unigrams) this is a coverage measure: the
    posterior variance a free weight would have, large for tokens the data rarely saw.
    """
    n = X.shape[0]
    d = np.asarray(X @ coef).ravel()
    p = 1.0 / (1.0 + np.exp(-(irt.abilities_[pairs.model] - d[pairs.prompt])))
    counts = np.bincount(pairs.prompt, minlength=n).astype(np.float64)
    w = np.power(np.maximum(counts[pairs.prompt], 1.0), -irt.prompt_weight_power)
    h = np.bincount(pairs.prompt, weights=w * p * (1 - p), minlength=n)
    X = X.tocsr()
    if columns is not None:
        X = X[:, :columns]
    X = X.astype(np.float64)
    X.sum_duplicates()
    return 1.0 / (np.asarray(X.multiply(X).T @ h).ravel() + l2)


def fold_words(irt: IRTDifficulty, X: Any, rows: list[dict], params: dict[str, float],
               emb: np.ndarray, anchor: np.ndarray, pairs: Any) -> None:
    """Fold ``irt``'s embedding weights (the columns after N_FEATURES) into its word block and,
    with ``params["anchor_head"]``, the anchors' own head into the short-request block; set the
    abilities' shift that keeps P(model does well) the fitted one on average, and ``var_``.
    ``X``: the rows' features; ``anchor``: which rows are hand-labeled anchors."""
    dims = emb.shape[1]
    u = irt.coef_[N_FEATURES : N_FEATURES + dims]
    if int(params["chat_head"]) == 2:
        u = u + irt.coef_[N_FEATURES + dims : N_FEATURES + 2 * dims]
    coef = irt.coef_[:N_FEATURES].copy()
    coef[HASH_OFF:DENSE_OFF] += emb @ u  # X_w @ (E u) == (X_w @ E) @ u: exact fold
    beta = float(params["anchor_head"])
    if beta and anchor.any():
        # the anchors' own reading of the words (classifiers.train.DEFAULT_PARAMS), on the
        # short-request block (features.SHORT_PRIOR), where a one-line request's words count more
        short = np.asarray((X[:, SHORT_OFF:] @ emb), np.float64)
        hard = np.asarray([is_hard(r) for r in rows if is_anchor(r)], bool)
        w = anchor_head(short[anchor], hard, float(params["anchor_head_c"]))
        coef[SHORT_OFF:] = emb @ (beta * w)
        # keep P(model does well) the fitted one on average over the training prompts
        irt.abilities_ = irt.abilities_ + beta * float((short @ w).mean())
        irt.anchor_head_ = w
    irt.coef_ = coef
    irt.semantic_u_ = u
    # the short-request block is a fixed prior, not a weight the labels estimate: no variance
    # of its own (and none computed)
    if params["unigrams"]:
        irt.var_ = irt.var_[:N_FEATURES].copy()
    else:
        irt.var_ = np.zeros(N_FEATURES)
        irt.var_[:SHORT_OFF] = fisher_variance(X, irt, coef, pairs, 1.0, columns=SHORT_OFF)
    irt.var_[SHORT_OFF:] = 0.0
    # flags that hide nothing from the scorer (features.READ_FLAGS): none if no row has one
    flags = np.asarray([DENSE_OFF + DENSE_NAMES.index(name) for name in READ_FLAGS])
    unseen = np.asarray((X[:, flags] != 0).sum(axis=0)).ravel() == 0
    irt.var_[flags[unseen]] = 0.0
