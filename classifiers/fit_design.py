"""What the IRT fit weighs and how: its design matrix, each column's L2 and bounds, offset groups.

The fit's feature policy as data, from the train params (``classifiers.train.DEFAULT_PARAMS``):
which structure features only make a request harder (bounded below by 0), which are left out,
and the length weight fixed as a prior rather than learned.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .data import label_group
from .features import DENSE_NAMES, DENSE_OFF, HASH_OFF, N_FEATURES, SHORT_OFF

# length may only make a request harder: these weights are bounded below by 0
MONOTONE = ("log_tokens", "log_tokens_last_user", "arithmetic_digits")
DIGIT_FEATURES = ("digit_fraction", "math_symbol_density")
# one structure feature each that a train param (1: used, 0: left out) switches
OPTIONAL_FEATURES = {"arithmetic_feature": "arithmetic_digits",
                     "non_ascii_feature": "non_ascii_fraction",
                     "fence_feature": "code_fence",
                     "case_feature": "upper_fraction"}
# structure features that describe the text's surface (densities of characters, lines): they
# learn which benchmark a prompt is from more than how hard it is, and swing short requests
SURFACE_FEATURES = ("code_punct_density", "math_symbol_density", "digit_fraction", "log_lines",
                    "log_questions", "non_ascii_fraction", "upper_fraction", "bytes_per_token")


def feature_bounds(
    params: dict[str, float],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(l2, lower, upper, keep)`` over the N_FEATURES columns: the L2 of each weight, its
    bounds, and 1 where the fit weighs the column (0: padding, the short-request block, the
    free per-word weights unless ``unigrams``, and the structure features left out)."""
    l2 = np.full(N_FEATURES, float(params["l2"]))
    l2[HASH_OFF:DENSE_OFF] = float(params["l2_word"])
    lower = np.full(N_FEATURES, -np.inf)
    upper = np.full(N_FEATURES, np.inf)
    for name in MONOTONE:
        lower[DENSE_OFF + DENSE_NAMES.index(name)] = 0.0
    arithmetic = DENSE_OFF + DENSE_NAMES.index("arithmetic_digits")
    lower[arithmetic] = max(lower[arithmetic], float(params["arithmetic_min"]))  # still monotone
    fixed = float(params["length_weight"])
    if fixed >= 0:
        lower[DENSE_OFF + DENSE_NAMES.index("log_tokens_last_user")] = fixed
        upper[DENSE_OFF + DENSE_NAMES.index("log_tokens_last_user")] = fixed
    keep = np.ones(N_FEATURES)
    keep[0] = 0.0
    keep[SHORT_OFF:] = 0.0  # the short-request block carries only the anchors' head (below)
    if not params["unigrams"]:
        keep[HASH_OFF:DENSE_OFF] = 0.0
    dropped = list(DIGIT_FEATURES) if not params["digit_features"] else []
    dropped += [name for param, name in OPTIONAL_FEATURES.items() if not params[param]]
    if params["lean"]:
        dropped += SURFACE_FEATURES
    for name in dropped:
        keep[DENSE_OFF + DENSE_NAMES.index(name)] = 0.0
    return l2, lower, upper, keep


@dataclass
class Design:
    """The IRT fit's design matrix and, per column, its L2 and bounds."""

    matrix: Any  # scipy csr [rows, columns]: kept features, embedding block(s), sentence block
    l2: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    semantic: Any  # the rows' pooled static embeddings (their words @ emb), csr; None without

    def extend(self, block: Any, l2: float) -> None:
        """Append free columns (no bounds) with one L2."""
        from scipy import sparse

        k = block.shape[1]
        self.matrix = sparse.hstack([self.matrix, block]).tocsr()
        self.l2 = np.concatenate([self.l2, np.full(k, l2)])
        self.lower = np.concatenate([self.lower, np.full(k, -np.inf)])
        self.upper = np.concatenate([self.upper, np.full(k, np.inf)])


def design_matrix(X: Any, params: dict[str, float], emb: np.ndarray | None,
                  is_chat: np.ndarray, sentence: np.ndarray | None = None) -> Design:
    """The fit's columns: the features it weighs (:func:`feature_bounds`), then, with ``emb``
    (the hashed static table), the pooled embedding's weights (one block, or two with train's
    ``chat_head``: 1 = a chat head and a benchmark head, 2 = a shared head and a chat
    correction), then, with ``sentence`` ([rows, k] sentence-encoder embeddings), theirs."""
    from scipy import sparse

    l2, lower, upper, keep = feature_bounds(params)
    base = (X @ sparse.diags(keep)).tocsr()
    base.eliminate_zeros()
    design = Design(base, l2, lower, upper, None)
    if emb is not None:
        sem = sparse.csr_matrix(X[:, HASH_OFF:DENSE_OFF] @ emb)
        design.semantic = sem
        blocks = [sem]
        head = int(params["chat_head"])
        if head == 1:  # separate heads; the chat one ships
            blocks = [sparse.diags(is_chat) @ sem, sparse.diags(1.0 - is_chat) @ sem]
        elif head == 2:  # a shared head plus a chat correction; shared + correction ships
            blocks = [sem, sparse.diags(is_chat) @ sem]
        design.extend(sparse.hstack(blocks).tocsr(), float(params["l2_semantic"]))
    if sentence is not None:
        design.extend(sparse.csr_matrix(sentence), float(params.get("l2_sentence", 10.0)))
    return design


def offset_groups(rows: list[dict], params: dict[str, float]
                  ) -> tuple[np.ndarray | None, list[str]]:
    """Each row's offset group and the groups' names (train's ``offsets``; None without):
    1 = one per source/family (``label_group``), all judged chat one group unless
    ``chat_offsets``; 2 = one per label type (pairwise vs outcome)."""
    if not params["offsets"]:
        return None, []
    pooled = not params["chat_offsets"]

    def group(r: dict) -> str:
        pairwise = "pairs" in (r.get("meta") or {})
        if int(params["offsets"]) == 2:
            return "pairwise" if pairwise else "outcome"
        return "judged-chat" if pooled and pairwise else label_group(r)

    names = sorted({group(r) for r in rows})
    index = {g: i for i, g in enumerate(names)}
    return np.asarray([index[group(r)] for r in rows], np.int64), names
