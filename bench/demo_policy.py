"""Abilities for the demo policy's tiers: a stated split of real chat requests over the tiers.

The demo tiers stand for no real model, so their abilities are set from the difficulty
distribution of real user requests (the distinct prompts of data/routing-chat.jsonl.gz: Chatbot
Arena, OpenAssistant, Arena-Hard, IFEval-style), scored by the shipped model: tier k's ability is
the d quantile of its cumulative share plus logit(quality_target), so that, before low-confidence
escalation, `--shares` of those requests land on each tier. It then routes the same requests
through the real decision code (escalation included) and prints the split, plus the tiers of
each hand-written dev split (bench/commonsense) by label.

``--choose-small`` applies the demo's rule for its small tier's share (policies/demo.toml): the
largest share in steps of 5% (the large tier's share fixed at the last of ``--shares``) that
sends at most 5% of the hard requests of every hand-written dev split (bench/commonsense) to
the smallest tier, issue 13's bar. It prints each step's counts and the rule's answer.

    python bench/demo_policy.py --shares 0.25,0.55,0.2 [--scorer fast|accurate]
    python bench/demo_policy.py --choose-small
    python bench/demo_policy.py --shares 0.25,0.65,0.1 --apply   # what another split would do
"""

from __future__ import annotations

import argparse
import math
import sys
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.hand_written import DIR as HAND_WRITTEN_DIR  # noqa: E402
from bench.hand_written import FRESH, NATURAL, REQUESTS  # noqa: E402
from classifiers import SCORERS  # noqa: E402
from classifiers.data import (  # noqa: E402
    distinct_conversations,
    load_rows,
    read_jsonl,
)
from classifiers.scorer import DifficultyScorer  # noqa: E402
from policies.decide import decide  # noqa: E402
from policies.loader import load_policy  # noqa: E402
from policies.schema import Policy  # noqa: E402

DEV_SETS = (NATURAL, REQUESTS, FRESH)  # bench/hand_written.py, in this script's order
MAX_HARD_ON_SMALL = 0.05  # issue 13's bar for hard requests on the smallest tier


def abilities_for(d: np.ndarray, shares: list[float], quality_target: float) -> list[float]:
    """Tier abilities that put ``shares`` of requests with difficulties ``d`` on each tier
    (before escalation): the d quantile of each cumulative share + logit(quality_target)."""
    logit = math.log(quality_target / (1 - quality_target))
    abilities = [float(np.quantile(d, c)) + logit for c in np.cumsum(shares)[:-1]]
    abilities.append(max(abilities[-1] + 1.0, float(np.quantile(d, 0.99)) + logit))
    return abilities


def dev_splits(scorer: DifficultyScorer) -> dict[str, tuple[list[dict], list]]:
    """Each hand-written dev split (bench/commonsense): its items and their scores."""
    out = {}
    for name in DEV_SETS:
        items = [i for i in read_jsonl(HAND_WRITTEN_DIR / name)
                 if i["split"] == "dev"]
        out[name] = (items, scorer.score_batch([i["messages"] for i in items]))
    return out


def upper_bound(k: int, n: int, level: float) -> float:
    """One-sided Clopper-Pearson upper bound at ``level`` of a rate seen k times in n: the p at
    which seeing k or fewer would happen with probability 1 - level (the beta quantile)."""
    from scipy.stats import beta

    return 1.0 if k >= n else float(beta.ppf(level, k + 1, n - k))


def choose_small(policy: Policy, scorer: DifficultyScorer, d: np.ndarray, large: float,
                 bound: float | None = None) -> float:
    """The demo's rule for the small tier's share (see the module docstring); prints each step.
    With ``bound`` (e.g. 0.9) it also prints, per step, the pooled dev count's one-sided upper
    bound at that level and the share a stricter rule would take: the largest whose bound is
    within the bar too (a proposal, not the demo's rule: bench/COMMONSENSE.md)."""
    dev = {name: [s for item, s in zip(items, scores, strict=True) if item["label"] == "hard"]
           for name, (items, scores) in dev_splits(scorer).items()}
    chosen, chosen_ability = 0.0, float("nan")
    strict, strict_ability = 0.0, float("nan")
    for step in range(1, 11):
        small = step / 20
        abilities = abilities_for(d, [small, 1.0 - small - large, large], policy.quality_target)
        trial = replace(policy, tiers=tuple(replace(t, ability=a)
                                            for t, a in zip(policy.tiers, abilities, strict=True)))
        smallest = policy.tiers[0].name
        counts = {name: sum(decide(trial, s).tier == smallest for s in scores)
                  for name, scores in dev.items()}
        ok = all(counts[n] <= MAX_HARD_ON_SMALL * len(dev[n]) for n in dev)
        if ok:
            chosen, chosen_ability = small, abilities[0]
        print(f"small {small:.0%} (ability {abilities[0]:.2f}): hard dev requests on "
              f"{smallest}: " + ", ".join(f"{n} {c} of {len(dev[n])}" for n, c in counts.items())
              + ("" if ok else "  > 5%"))
        if bound is not None:
            k, n = sum(counts.values()), sum(len(v) for v in dev.values())
            top = upper_bound(k, n, bound)
            print(f"    pooled {k} of {n} ({k / n:.1%}); one-sided {bound:.0%} upper bound "
                  f"{top:.1%}")
            if ok and top <= MAX_HARD_ON_SMALL:
                strict, strict_ability = small, abilities[0]
    print(f"the rule's share for {policy.tiers[0].name}: {chosen:.0%}, ability "
          f"{chosen_ability:.2f}")
    if bound is not None:
        print(f"with the pooled count's {bound:.0%} upper bound within the bar too: "
              f"{strict:.0%}, ability {strict_ability:.2f}")
    return chosen


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shares", default="0.25,0.55,0.2")
    ap.add_argument("--policy", default=str(ROOT / "policies" / "demo.toml"))
    ap.add_argument("--model", default=None,
                    help="model directory to score with (default: the shipped classifiers/model)")
    ap.add_argument("--scorer", choices=SCORERS, default=None,
                    help="difficulty scorer (default: the policy's `scorer`)")
    ap.add_argument("--choose-small", action="store_true",
                    help="apply the demo's rule for the small tier's share and print it")
    ap.add_argument("--bound", type=float, default=None, metavar="LEVEL",
                    help="with --choose-small: also the share a stricter rule would take, the "
                         "pooled dev count's one-sided upper bound at LEVEL (e.g. 0.9) <= 5%%")
    ap.add_argument("--apply", action="store_true",
                    help="route with the suggested abilities, not the policy's (what --shares "
                         "would do if the policy took them)")
    args = ap.parse_args()
    shares = [float(x) for x in args.shares.split(",")]
    policy = load_policy(args.policy)
    convs = distinct_conversations(load_rows(ROOT / "data" / "routing-chat.jsonl.gz"))
    scorer = DifficultyScorer(args.model,
                              scorer=args.scorer or policy.scorer)  # type: ignore[arg-type]
    print(f"scorer: {scorer.kind}")
    scores = scorer.score_batch(convs)
    d = np.array([s.difficulty for s in scores])
    if args.choose_small:
        choose_small(policy, scorer, d, shares[-1], args.bound)
        return 0
    abilities = abilities_for(d, shares, policy.quality_target)
    print(f"{len(d)} distinct chat requests; d quantiles 10/50/90%: "
          f"{np.quantile(d, [0.1, 0.5, 0.9]).round(3).tolist()}")
    print("suggested abilities:", ", ".join(
        f"{tier.name} = {a:.2f}" for tier, a in zip(policy.tiers, abilities, strict=True)))
    if args.apply:
        policy = replace(policy, tiers=tuple(replace(t, ability=round(a, 2)) for t, a in
                                             zip(policy.tiers, abilities, strict=True)))
    print("routing with the abilities", "suggested" if args.apply else f"in {args.policy}",
          ":", ", ".join(f"{tier.name} = {tier.ability:.2f}" for tier in policy.tiers))
    split = Counter(decide(policy, s).tier for s in scores)
    print("chat requests routed (escalation included):",
          {k: f"{v / len(scores):.0%}" for k, v in sorted(split.items())})
    tiers = [t.name for t in policy.tiers]
    for name, (items, dev_scores) in dev_splits(scorer).items():  # tier counts per label
        by: dict[str, Counter[str]] = {"easy": Counter(), "hard": Counter()}
        for item, s in zip(items, dev_scores, strict=True):
            by[item["label"]][decide(policy, s).tier] += 1
        print(f"{name} dev: " + "; ".join(
            f"{label} " + " / ".join(f"{c[t]}" for t in tiers) + f" of {sum(c.values())}"
            for label, c in by.items()) + f" ({' / '.join(tiers)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
