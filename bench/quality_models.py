"""Does a non-linear model transfer better? LOSO APGR of three router scores on the same folds.

- ``linear``: the shipped IRT model (hashed words + structure, bench/quality.py's numbers);
- ``gbm``: gradient-boosted trees (scikit-learn) on the 20 structure features + a 64-dim SVD of
  the hashed-word block, regressed on each training prompt's own IRT difficulty (a per-prompt
  MAP estimate from its outcomes, with the linear fit's abilities and a N(0, 1.5^2) prior);
- ``blend``: the mean of the two scores after standardising each on the held-out source.

Training-side experiment only (the shipped model stays a linear ONNX graph):

    python bench/quality_models.py
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from classifiers.data import build_pairs, load_rows, row_messages  # noqa: E402
from classifiers.features import DENSE_OFF, HASH_OFF, extract_many, to_csr  # noqa: E402
from classifiers.train import DEFAULT_PARAMS, fit  # noqa: E402
from classifiers.validation import evaluate_source  # noqa: E402

PRIOR_SD = 1.5


def prompt_difficulty(rows: list[dict], abilities: dict[str, float]) -> np.ndarray:
    """Per-prompt MAP difficulty given fixed abilities (Newton steps, prior N(0, PRIOR_SD^2))."""
    pairs = build_pairs(rows)
    a = np.array([abilities.get(m, 0.0) for m in pairs.models])[pairs.model]
    n = len(rows)
    d = np.zeros(n)
    for _ in range(25):
        p = 1.0 / (1.0 + np.exp(-(a - d[pairs.prompt])))
        grad = -np.bincount(pairs.prompt, weights=p - pairs.y, minlength=n) + d / PRIOR_SD**2
        hess = np.bincount(pairs.prompt, weights=p * (1 - p), minlength=n) + 1 / PRIOR_SD**2
        d -= grad / hess
    return d


def main() -> int:
    from sklearn.decomposition import TruncatedSVD
    from sklearn.ensemble import HistGradientBoostingRegressor
    from threadpoolctl import threadpool_limits

    t0 = time.time()
    rows = load_rows(ROOT / "data" / "routing-train.jsonl.gz")
    X = to_csr(extract_many([row_messages(r) for r in rows]))
    dense = X[:, DENSE_OFF:].toarray()
    words = X[:, HASH_OFF:DENSE_OFF]
    src = np.asarray([r["source"] for r in rows])
    table: list[tuple[str, str, str, dict[str, float]]] = []
    with threadpool_limits(limits=1):
        for s in sorted(set(src.tolist())):
            tr, te = src != s, src == s
            train_rows = [r for r, t in zip(rows, tr, strict=True) if t]
            linear, models = fit(X[tr], train_rows, DEFAULT_PARAMS)
            abilities = dict(zip(models, linear.abilities_, strict=True))
            target = prompt_difficulty(train_rows, abilities)
            svd = TruncatedSVD(64, random_state=0).fit(words[tr])
            gbm = HistGradientBoostingRegressor(
                max_iter=300, learning_rate=0.05, max_leaf_nodes=15, min_samples_leaf=40,
                l2_regularization=1.0, random_state=0,
            ).fit(np.hstack([dense[tr], svd.transform(words[tr])]), target)
            scores = {
                "linear": linear.predict(X[te]),
                "gbm": gbm.predict(np.hstack([dense[te], svd.transform(words[te])])),
            }
            scores["blend"] = sum((v - v.mean()) / (v.std() + 1e-9) for v in scores.values())
            test_rows = [r for r, t in zip(rows, te, strict=True) if t]
            per: dict[tuple[str, str], dict[str, float]] = {}
            for name, sc in scores.items():
                for r in evaluate_source(test_rows, sc, s):
                    per.setdefault((r.strong, r.weak), {})[name] = r.result.apgr
            table += [(s, st, wk, v) for (st, wk), v in per.items()]
    print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, `python bench/quality_models.py`, "
          f"leave-one-source-out, {time.time() - t0:.0f} s\n")
    print("| held-out source | strong | weak | linear (shipped) | gbm | blend |")
    print("|---|---|---|---|---|---|")
    for s, st, wk, v in table:
        print(f"| {s} | {st} | {wk} | {v['linear']:.3f} | {v['gbm']:.3f} | {v['blend']:.3f} |")
    means = {k: np.mean([v[k] for *_, v in table]) for k in ("linear", "gbm", "blend")}
    print("| **mean** | | | " + " | ".join(f"**{means[k]:.3f}**" for k in means) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
