"""The accurate scorer's head weight on the common-sense set: AUC and length-matched AUC by weight.

d(weight) = fast d + weight * (head logit - centre), computed from the shipped model (the head's
shift at its shipped weight, rescaled), so one encoding pass scores every weight. The weight is
chosen on the dev split; the test split is printed beside it, not used to choose.

Usage:  .venv/bin/python bench/head_weight.py [--weights 0,0.1,0.2,0.3,0.5,0.7,1,2]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from commonsense import DATA, auc, length_matched  # noqa: E402

from classifiers import default_scorer  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", default="0,0.1,0.2,0.3,0.5,0.7,1,2")
    ap.add_argument("--data", default=str(DATA),
                    help="requests JSONL (default: the shipped set; also natural.jsonl)")
    args = ap.parse_args()
    text = Path(args.data).read_text(encoding="utf-8")
    items = [json.loads(line) for line in text.splitlines() if line]
    convs = [it["messages"] for it in items]
    fast, accurate = default_scorer("fast"), default_scorer("accurate")
    shipped = json.loads((accurate.model_dir / "model.json").read_text())["sentence_head"]
    d_fast = np.array([s.difficulty for s in fast.score_batch(convs)])
    unit = accurate.sentence_shift(convs) / shipped["weight"]  # the head's shift at weight 1
    print("| weight | dev AUC | dev length-matched AUC | test AUC | test length-matched AUC |")
    print("|---|---|---|---|---|")
    # each weight, then the head alone (no fast d): what it knows by itself
    for w in [float(x) for x in args.weights.split(",")] + [float("inf")]:
        cells = []
        for split in ("dev", "test"):
            idx = [i for i, it in enumerate(items) if it["split"] == split]
            hard = np.array([items[i]["label"] == "hard" for i in idx])
            n_chars = np.array([sum(len(m["content"]) for m in convs[i]) for i in idx])
            d = unit[idx] if w == float("inf") else d_fast[idx] + w * unit[idx]
            pairs = length_matched(n_chars[~hard], n_chars[hard])
            cells += [auc(d[~hard], d[hard]), auc(d[~hard], d[hard], pairs)]
        name = "head alone" if w == float("inf") else f"{w:g}"
        print(f"| {name} | " + " | ".join(f"{c:.3f}" for c in cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
