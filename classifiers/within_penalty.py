"""A training-only penalty on the embedding's weights: their spread within each benchmark.

Train param ``within_penalty`` (0: off, as shipped) adds 0.5 * it * u' S u to the fit, S the
scatter of the pooled embedding around each benchmark cell's mean (:func:`within_scatter`). A
negative result kept so its rows can be rerun (bench/QUALITY_ROUTING.md, "The word block's
spread within each benchmark penalised").
"""

from __future__ import annotations

from typing import Any

import numpy as np


def within_scatter(sem: Any, rows: list[dict], weight: np.ndarray, chat: np.ndarray,
                   anchor: np.ndarray) -> np.ndarray:
    """The weighted scatter matrix of the pooled embedding (``sem``, one row per row of
    ``rows``) around its mean within each benchmark cell (source, family, subset); judged chat
    and anchors are left out (their topics differ from request to request for real)."""
    cells: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        if chat[i] or anchor[i] or not r.get("outcomes"):
            continue
        meta = r.get("meta") or {}
        cells.setdefault(f"{r.get('source')}/{meta.get('family')}/{meta.get('subset')}",
                         []).append(i)
    dense = np.asarray(sem.toarray() if hasattr(sem, "toarray") else sem, np.float64)
    out = np.zeros((dense.shape[1], dense.shape[1]))
    for idx in cells.values():
        if len(idx) < 2:
            continue
        w = weight[idx]
        block = dense[idx]
        dev = block - (w @ block) / w.sum()
        out += (dev * w[:, None]).T @ dev
    return out
