"""How well do a request's words alone tell easy from hard? The word block of a model (its
folded per-word weights) against the anchors' own head (classifiers.anchors.anchor_head: a
logistic regression on data/anchors.jsonl alone over the pooled static embedding), on the
hand-written sets of bench/commonsense (never trained on), split ``dev`` unless told.

    python bench/anchor_head.py [--split dev|test] [--model classifiers/model] [--c 1,10,100]

The heads read the short-request block's pooling (features.SHORT_PRIOR), as the shipped one
does. "Words alone" leaves out every structure feature, length included: AUC 0.5 means the words add
nothing beyond them. Reads the same pooled embedding training builds (classifiers/train.py:
featurize, semantic_table over the default training data), ~30 s.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.hand_written import DIR as HAND_WRITTEN_DIR  # noqa: E402
from bench.hand_written import SETS as HAND_WRITTEN  # noqa: E402
from bench.model_weights import fit_weights_or_exit  # noqa: E402
from classifiers.anchors import anchor_head, is_anchor, is_hard  # noqa: E402
from classifiers.data import load_rows, read_jsonl, row_messages  # noqa: E402
from classifiers.features import (  # noqa: E402
    DENSE_OFF,
    HASH_OFF,
    SHORT_OFF,
    extract_many,
    to_csr,
)
from classifiers.metrics import auc  # noqa: E402
from classifiers.train import semantic_table  # noqa: E402

DATA = ("routing-train.jsonl.gz", "routing-chat.jsonl.gz", "anchors.jsonl")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--split", default="dev", choices=("dev", "test"))
    ap.add_argument("--model", default=str(ROOT / "classifiers" / "model"))
    ap.add_argument("--c", default="1,10,100", help="sklearn C values of the anchors' head")
    args = ap.parse_args()
    rows = [r for name in DATA for r in load_rows(ROOT / "data" / name)]
    X = to_csr(extract_many([row_messages(r) for r in rows]))
    emb = semantic_table(rows, X)
    anchors = np.asarray([is_anchor(r) for r in rows])
    # the short-request block's pooling (features.SHORT_PRIOR), which the shipped head weighs
    pooled = np.asarray(X[anchors][:, SHORT_OFF:] @ emb)
    hard = np.asarray([is_hard(r) for r in rows if is_anchor(r)])
    weights = fit_weights_or_exit(Path(args.model) / "model.onnx")
    heads = {float(c): anchor_head(pooled, hard, float(c)) for c in args.c.split(",")}
    print(f"split {args.split}; AUC of the words alone (random 0.5)\n")
    print("| set | n | model's word block | " + " | ".join(
        f"anchors' head, C {c:g}" for c in heads) + " |")
    print("|---|---|---|" + "---|" * len(heads))
    for name in HAND_WRITTEN:
        items = [i for i in read_jsonl(HAND_WRITTEN_DIR / name)
                 if i["split"] == args.split]
        Xs = to_csr(extract_many([i["messages"] for i in items]))
        y = np.asarray([i["label"] == "hard" for i in items])
        # both word blocks: the IRT's (main) and the anchors' head's (short-request)
        block = np.asarray(Xs[:, HASH_OFF:DENSE_OFF] @ weights[HASH_OFF:DENSE_OFF]
                           + Xs[:, SHORT_OFF:] @ weights[SHORT_OFF:]).ravel()
        emb_s = np.asarray(Xs[:, SHORT_OFF:] @ emb)
        cells = [f"{auc(emb_s @ w, y):.3f}" for w in heads.values()]
        print(f"| {name} | {len(items)} | {auc(block, y):.3f} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
