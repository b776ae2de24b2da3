"""In-domain ceiling: APGR when the held-out prompts come from sources the model trained on.

Leave-one-source-out (bench/quality.py) measures transfer to unseen sources. This measures the
other side: 5 random folds over all rows (whole ``dup_group``s on one side), the model trained on
the other 4/5 of every source, scored per source on the same pairs. The gap between the two is
how much of the difficulty signal is source-specific.

A second column scores each pair by its IRT *expected gain*,
``sigmoid(a_strong - d) - sigmoid(a_weak - d)`` with the fold's own abilities (possible here
because every pair's models are in training): the pair-aware score a 1-PL model implies, which
is not monotone in ``d`` (a prompt too hard for both models gains nothing from the strong one).

    python bench/quality_insource.py
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from classifiers.data import dup_groups, load_rows, row_messages  # noqa: E402
from classifiers.features import extract_many, to_csr  # noqa: E402
from classifiers.metrics import evaluate_pair  # noqa: E402
from classifiers.train import DEFAULT_PARAMS, fit  # noqa: E402
from classifiers.validation import evaluate_source, pair_outcomes  # noqa: E402

FOLDS = 5


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def main() -> int:
    from threadpoolctl import threadpool_limits

    rows = load_rows(ROOT / "data" / "routing-train.jsonl.gz")
    X = to_csr(extract_many([row_messages(r) for r in rows]))
    groups = dup_groups(rows)
    uniq = np.unique(groups)
    fold_of_group = dict(zip(uniq.tolist(), np.random.default_rng(0).permutation(uniq.size) % FOLDS,
                             strict=True))
    fold = np.asarray([fold_of_group[g] for g in groups.tolist()])
    scores = np.zeros(len(rows))
    abilities: list[dict[str, float]] = []
    with threadpool_limits(limits=1):
        for k in range(FOLDS):
            tr, te = fold != k, fold == k
            model, names = fit(X[tr], [r for r, t in zip(rows, tr, strict=True) if t],
                               DEFAULT_PARAMS)
            scores[te] = model.predict(X[te])
            abilities.append(dict(zip(names, model.abilities_, strict=True)))
    print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, `python bench/quality_insource.py`, "
          f"{FOLDS} folds over all sources, shipped parameters\n")
    print("| source | strong | weak | n | in-domain APGR | AUC | pair-gain APGR |")
    print("|---|---|---|---|---|---|---|")
    src = np.asarray([r["source"] for r in rows])
    allres, gainres = [], []
    for s in sorted(set(src.tolist())):
        idx = np.flatnonzero(src == s)
        srows = [rows[i] for i in idx]
        for r in evaluate_source(srows, scores[idx], s):
            pi, qs, qw = pair_outcomes(srows, r.strong, r.weak)
            d, f = scores[idx][pi], fold[idx][pi]
            a_s = np.array([abilities[k][r.strong] for k in f])
            a_w = np.array([abilities[k][r.weak] for k in f])
            gain = evaluate_pair(_sigmoid(a_s - d) - _sigmoid(a_w - d), qs, qw).apgr
            allres.append(r.result.apgr)
            gainres.append(gain)
            print(f"| {s} | {r.strong} | {r.weak} | {r.result.n} | {r.result.apgr:.3f} "
                  f"| {r.result.auc:.3f} | {gain:.3f} |")
    print(f"\nMean in-domain APGR over these pairs: {np.mean(allres):.3f} (random 0.500); "
          f"with the pair-gain score: {np.mean(gainres):.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
