"""Routing quality: leave-one-source-out folds for several strong/weak pairs -> bench/QUALITY.md.

For every source of the training data, the difficulty model is trained on all other sources
(same code and parameters as ``tierwise train``) and the contract metrics of DESIGN.md (APGR,
CPT(20/50/80%), AUC, random and oracle baselines) are computed on the held-out source for the
pairs in ``classifiers.validation.EVAL_PAIRS``. The AlpacaEval instructions (CC BY-NC, evaluation
only) are scored with a model trained on all training rows.

    python bench/quality.py
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from classifiers.card import validation_table  # noqa: E402
from classifiers.train import DEFAULT_PARAMS, train  # noqa: E402

ROUTELLM = (
    "RouteLLM's best published routers, GPT-4-1106 vs Mixtral-8x7B (different test sets: "
    "MT-Bench APGR 0.802 / CPT(50%) 13.4%, MMLU APGR 0.603, GSM8K APGR 0.622)"
)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(ROOT / "data" / "routing-train.jsonl.gz"))
    ap.add_argument("--eval-data", default=str(ROOT / "data" / "alpaca-eval-nc.jsonl.gz"))
    ap.add_argument("--out", default=str(ROOT / "bench" / "QUALITY.md"))
    args = ap.parse_args()
    t0 = time.time()
    res = train(
        args.data,
        None,
        eval_data=args.eval_data,
        log=lambda m: print(m, file=sys.stderr, flush=True),
    )
    entries = [
        {"source": r.source, "strong": r.strong, "weak": r.weak, **r.result.as_dict()}
        for r in res.folds + res.extra
    ]
    folds = [e for e in entries if e["source"] != "alpaca_eval"]
    extra = [e for e in entries if e["source"] == "alpaca_eval"]
    by_src: dict[str, list[float]] = {}
    for e in folds:
        by_src.setdefault(e["source"], []).append(e["apgr"])
    head = [e for e in folds if e["strong"] == "gpt-4-1106-preview" and "mixtral" in e["weak"]]
    lines = [
        "# Routing quality (leave-one-source-out)",
        "",
        f"- date: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}; run time {time.time() - t0:.0f} s",
        "- command: `python bench/quality.py`",
        f"- data: `data/routing-train.jsonl.gz` sha256 `{res.info['data_sha256']}`; "
        f"{res.info['rows_used']} rows used, excluded {json.dumps(res.info['excluded'])}",
        f"- model: parameters {json.dumps(DEFAULT_PARAMS)}; router score = predicted difficulty",
        "",
        f"Mean APGR over all held-out pairs: **{np.mean([e['apgr'] for e in folds]):.3f}** "
        "(random router 0.500).",
        "",
        "| held-out source | mean APGR over its pairs |",
        "|---|---|",
        *[f"| {s} | {np.mean(v):.3f} |" for s, v in sorted(by_src.items())],
        "",
        "GPT-4-1106 vs Mixtral-8x7B (the blind-set pair) on held-out RouterBench: "
        + (
            f"APGR **{head[0]['apgr']:.3f}**, CPT(50%) {head[0]['cpt50']:.3f}, "
            f"AUC {head[0]['auc']:.3f}."
            if head
            else "n/a"
        ),
        f"Reference: {ROUTELLM}.",
        "",
        "## Every fold and pair",
        "",
        validation_table(folds),
        "",
        "## AlpacaEval instructions (evaluation only, model trained on all training rows)",
        "",
        validation_table(extra),
        "",
    ]
    Path(args.out).write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
