"""Within one benchmark family, does prompt length (or the shipped model) rank who needs the
stronger model? APGR per family of the training data, strongest vs median model of each.

For every (source, family) of data/routing-train.jsonl.gz with at least --min-rows rows used in
training (the label-artifact exclusions of classifiers/data.py applied), the pair is the best and
the median model by mean outcome among the models that label 90% or more of its rows (the worst
is often a model that fails nearly everything, a pair no router faces). Prompt length is the
baseline of the model card and validation.json (`log_tokens`); the model's column is the
shipped "fast" difficulty, scored *in sample* (these rows trained it), so it flatters the model.

    python bench/family_length.py [--min-rows 150] [--plus-length 0.5,1,2,4,8]

--plus-length also prints the mean APGR of d + b x log_tokens for each b (what a larger
`length_prior` would add): whether the model leaves within-family length signal unused.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from classifiers.data import load_rows, row_messages  # noqa: E402
from classifiers.features import extract_many, to_csr  # noqa: E402
from classifiers.metrics import evaluate_pair  # noqa: E402
from classifiers.scorer import DifficultyScorer  # noqa: E402
from classifiers.validation import length_baseline  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--min-rows", type=int, default=150)
    ap.add_argument("--plus-length", default="", help="weights b for d + b x log_tokens")
    args = ap.parse_args()
    families: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for row in load_rows(ROOT / "data" / "routing-train.jsonl.gz"):
        if row.get("outcomes"):
            families[(row["source"], (row.get("meta") or {}).get("family", ""))].append(row)
    scorer = DifficultyScorer()
    print("| source | family | rows | strong (mean) | weak (mean) | length APGR | model APGR |")
    print("|---|---|---|---|---|---|---|")
    weights = [float(b) for b in args.plus_length.split(",") if b]
    length_cells, model_cells, plus_cells = [], [], []
    for (source, family), rows in sorted(families.items()):
        if len(rows) < args.min_rows:
            continue
        counts = Counter(m for r in rows for m in r["outcomes"])
        models = [m for m, c in counts.items() if c >= 0.9 * len(rows)]
        if len(models) < 2:
            continue
        mean = {m: float(np.mean([r["outcomes"][m] for r in rows if m in r["outcomes"]]))
                for m in models}
        ranked = sorted(models, key=mean.__getitem__)
        strong, weak = ranked[-1], ranked[(len(ranked) - 1) // 2]
        both = [r for r in rows if strong in r["outcomes"] and weak in r["outcomes"]]
        qs = np.array([r["outcomes"][strong] for r in both], float)
        qw = np.array([r["outcomes"][weak] for r in both], float)
        convs = [row_messages(r) for r in both]
        length = length_baseline(to_csr(extract_many(convs)))
        d = np.array([s.difficulty for s in scorer.score_batch(convs)])
        a_len, a_model = evaluate_pair(length, qs, qw).apgr, evaluate_pair(d, qs, qw).apgr
        plus_cells.append([evaluate_pair(d + b * length, qs, qw).apgr for b in weights])
        length_cells.append(a_len)
        model_cells.append(a_model)
        print(f"| {source} | {family} | {len(both)} | {strong} ({mean[strong]:.2f}) | "
              f"{weak} ({mean[weak]:.2f}) | {a_len:.3f} | {a_model:.3f} |")
    n = len(length_cells)
    print(f"\nmean over {n} families: length {np.mean(length_cells):.3f} (above 0.5 on "
          f"{sum(a > 0.5 for a in length_cells)}), model in sample {np.mean(model_cells):.3f} "
          f"(above 0.5 on {sum(a > 0.5 for a in model_cells)}); random 0.500")
    for b, cell in zip(weights, np.mean(plus_cells, axis=0) if weights else [], strict=True):
        print(f"d + {b:g} x log_tokens: mean {cell:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
