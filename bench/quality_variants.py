"""Leave-one-source-out APGR of feature/regularisation variants of the difficulty model.

Each variant is ``classifiers.train.train(data, None, params=...)`` with validation on, i.e. the
same folds and pairs as ``tierwise train`` and bench/quality.py. Prints a markdown table (the
"alternatives measured" table of the model card comes from this script).

    python bench/quality_variants.py [--only NAME ...]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from classifiers import features  # noqa: E402
from classifiers.train import train  # noqa: E402

# "_knee" is not a training parameter: it sets features.WORD_POOL_KNEE for that variant only
# (the serving code reads the module's constant; a model trained with another knee would need it)
VARIANTS: dict[str, dict[str, float]] = {
    "shipped: hashed words + structure, L2 3, pooling knee 16": {},
    "root pooling without a knee (shipped until 809c4b8)": {"_knee": float("inf")},
    "pooling knee 4": {"_knee": 4.0},
    "pooling knee 64": {"_knee": 64.0},
    "structure features only": {"unigrams": 0},
    "hashed words, L2 10": {"l2": 10.0},
    "hashed words + word bigrams": {"bigrams": 1},
    "hashed words + MiniLM 64-dim word embedding": {"semantic_dims": 64},
    "pair weight n^-1 instead of n^-0.5": {"prompt_weight_power": 1.0},
}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(ROOT / "data" / "routing-train.jsonl.gz"))
    ap.add_argument("--only", nargs="*", help="substrings of variant names to run")
    args = ap.parse_args()
    print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, `{' '.join(sys.argv)}`")
    print()
    print("| variant | mean LOSO APGR | GPT-4-1106 vs Mixtral (RouterBench) APGR / CPT50 | s |")
    print("|---|---|---|---|")
    for name, params in VARIANTS.items():
        if args.only and not any(o in name for o in args.only):
            continue
        t0 = time.time()
        params = dict(params)
        shipped_knee = features.WORD_POOL_KNEE
        features.WORD_POOL_KNEE = params.pop("_knee", shipped_knee)
        try:
            res = train(args.data, None, params=params, eval_data="", log=lambda m: None)
        except RuntimeError as e:  # e.g. the MiniLM weights are not installed
            print(f"| {name} | skipped: {e} | | |", flush=True)
            continue
        finally:
            features.WORD_POOL_KNEE = shipped_knee
        mean = float(np.mean([f.result.apgr for f in res.folds]))
        head = next(
            f.result for f in res.folds if f.strong == "gpt-4-1106-preview" and "mixtral" in f.weak
        )
        print(
            f"| {name} | {mean:.3f} | {head.apgr:.3f} / {head.cpt50:.3f} "
            f"| {time.time() - t0:.0f} |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
