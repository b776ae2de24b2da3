"""Abilities for the demo policy's tiers: a stated split of real chat requests over the tiers.

The demo tiers stand for no real model, so their abilities are set from the difficulty
distribution of real user requests (the distinct prompts of data/routing-chat.jsonl.gz: Chatbot
Arena, OpenAssistant, Arena-Hard, IFEval-style), scored by the shipped model: tier k's ability is
the d quantile of its cumulative share plus logit(quality_target), so that, before low-confidence
escalation, `--shares` of those requests land on each tier. It then routes the same requests
through the real decision code (escalation included) and prints the split, plus the split of the
hand-written common-sense set by label (never used to choose anything here).

    python bench/demo_policy.py --shares 0.25,0.55,0.2 [--scorer fast|accurate]
"""

from __future__ import annotations

import argparse
import math
import sys
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from classifiers.data import (  # noqa: E402
    distinct_conversations,
    load_rows,
    read_jsonl,
)
from classifiers.scorer import DifficultyScorer  # noqa: E402
from policies.decide import decide  # noqa: E402
from policies.loader import load_policy  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shares", default="0.25,0.55,0.2")
    ap.add_argument("--policy", default=str(ROOT / "policies" / "demo.toml"))
    ap.add_argument("--scorer", choices=["fast", "accurate"], default=None,
                    help="difficulty scorer (default: the policy's `scorer`)")
    args = ap.parse_args()
    shares = [float(x) for x in args.shares.split(",")]
    policy = load_policy(args.policy)
    convs = distinct_conversations(load_rows(ROOT / "data" / "routing-chat.jsonl.gz"))
    scorer = DifficultyScorer(scorer=args.scorer or policy.scorer)  # type: ignore[arg-type]
    print(f"scorer: {scorer.kind}")
    scores = scorer.score_batch(convs)
    d = np.array([s.difficulty for s in scores])
    t = policy.quality_target
    logit = math.log(t / (1 - t))
    cum = np.cumsum(shares)[:-1]
    abilities = [float(np.quantile(d, c)) + logit for c in cum]
    abilities.append(max(abilities[-1] + 1.0, float(np.quantile(d, 0.99)) + logit))
    print(f"{len(d)} distinct chat requests; d quantiles 10/50/90%: "
          f"{np.quantile(d, [0.1, 0.5, 0.9]).round(3).tolist()}")
    print("suggested abilities:", ", ".join(
        f"{tier.name} = {a:.2f}" for tier, a in zip(policy.tiers, abilities, strict=True)))
    print("with the abilities in", args.policy, ":", ", ".join(
        f"{tier.name} = {tier.ability:.2f}" for tier in policy.tiers))
    split = Counter(decide(policy, s).tier for s in scores)
    print("chat requests routed (escalation included):",
          {k: f"{v / len(scores):.0%}" for k, v in sorted(split.items())})
    cs = ROOT / "bench" / "commonsense" / "requests.jsonl"
    if cs.is_file():
        items = read_jsonl(cs)
        by = {"easy": Counter(), "hard": Counter()}
        for item, s in zip(items, scorer.score_batch([i["messages"] for i in items]), strict=True):
            by[item["label"]][decide(policy, s).tier] += 1
        for label, c in by.items():
            n = sum(c.values())
            print(f"common-sense {label}:", {k: f"{v / n:.0%}" for k, v in sorted(c.items())})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
