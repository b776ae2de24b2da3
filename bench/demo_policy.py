"""Abilities for the demo policy's tiers: a stated split of real chat requests over the tiers.

The demo tiers stand for no real model, so their abilities are set from the difficulty
distribution of real user requests (the distinct prompts of data/routing-chat.jsonl.gz: Chatbot
Arena, OpenAssistant, Arena-Hard, IFEval-style), scored by the shipped model: tier k's ability is
the d quantile of its cumulative share plus logit(quality_target), so that, before low-confidence
escalation, `--shares` of those requests land on each tier. It then routes the same requests
through the real decision code (escalation included) and prints the split, plus the tiers of
each hand-written dev split (bench/commonsense) by label.

``--choose`` applies the demo's rule for its tier shares (policies/demo.toml), issue 13's two
mis-tier bars read on the hand-written dev splits (bench/commonsense; never their test splits):
the largest share of `large` in steps of 5% that sends at most 5% of the easy requests of every
dev split there, with the pooled count's one-sided 90% upper bound within 5% too; then the same
for `small` and the hard requests; repeated until neither moves. The bound is there because the
bar is for requests nobody has seen, and a count of 1 or 2 in 40 on splits that also chose the
model is an optimistic estimate of it. It prints each step's counts and the rule's answer.

    python bench/demo_policy.py --shares 0.25,0.55,0.2 [--scorer fast|accurate]
    python bench/demo_policy.py --choose
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
from bench.hand_written import FIFTH, FRESH, NATURAL, REQUESTS  # noqa: E402
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
from router.accounting.records import token_cost  # noqa: E402

DEV_SETS = (NATURAL, REQUESTS, FRESH, FIFTH)  # bench/hand_written.py, in this script's order
MAX_MIS_TIER = 0.05  # issue 13's bars: easy requests on the largest tier, hard on the smallest
BOUND_LEVEL = 0.9  # the pooled dev count's one-sided upper bound must be within the bar too
SPEND_OUTPUT_TOKENS = (100, 500)  # answer lengths the spend line is printed for


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


def with_abilities(policy: Policy, abilities: list[float]) -> Policy:
    """``policy`` with its tiers' abilities replaced (rounded as policies/demo.toml writes them)."""
    return replace(policy, tiers=tuple(replace(t, ability=round(a, 2))
                                       for t, a in zip(policy.tiers, abilities, strict=True)))


def mis_tiered(policy: Policy, dev: dict[str, tuple[list[dict], list]], label: str,
               tier: str) -> dict[str, tuple[int, int]]:
    """Per dev split: how many of its ``label`` requests ``policy`` sends to ``tier``, of how
    many."""
    out = {}
    for name, (items, scores) in dev.items():
        picked = [s for item, s in zip(items, scores, strict=True) if item["label"] == label]
        out[name] = (sum(decide(policy, s).tier == tier for s in picked), len(picked))
    return out


def within_bar(counts: dict[str, tuple[int, int]], level: float) -> tuple[bool, float]:
    """The rule's test: every split's rate within the bar and the pooled count's one-sided upper
    bound at ``level`` within it too. Returns (passes, the pooled bound)."""
    k = sum(c for c, _ in counts.values())
    n = sum(m for _, m in counts.values())
    top = upper_bound(k, n, level)
    return all(c <= MAX_MIS_TIER * m for c, m in counts.values()) and top <= MAX_MIS_TIER, top


def choose_shares(policy: Policy, scorer: DifficultyScorer, d: np.ndarray,
                  start: list[float], level: float = BOUND_LEVEL) -> list[float]:
    """The demo's rule for its tier shares (see the module docstring), printing each step: the
    largest share of `large` in steps of 5% whose easy dev requests on it pass ``within_bar``,
    then the largest share of `small` whose hard dev requests on it do, given the other; repeated
    until neither moves. Returns [small, medium, large]."""
    dev = dev_splits(scorer)
    smallest, largest = policy.tiers[0].name, policy.tiers[-1].name
    small, large = start[0], start[-1]

    def trial(s: float, g: float) -> Policy:
        return with_abilities(policy, abilities_for(d, [s, 1.0 - s - g, g],
                                                    policy.quality_target))

    def largest_passing(which: str) -> float:
        chosen = None
        for step in range(1, 11):
            share = step / 20
            s, g = (small, share) if which == "large" else (share, large)
            if s + g > 0.95:
                break
            label, tier = ("easy", largest) if which == "large" else ("hard", smallest)
            counts = mis_tiered(trial(s, g), dev, label, tier)
            ok, top = within_bar(counts, level)
            print(f"  {which} {share:.0%} (small {s:.0%}, large {g:.0%}): {label} dev requests "
                  f"on {tier}: " + ", ".join(f"{n} {c} of {m}" for n, (c, m) in counts.items())
                  + f"; pooled {level:.0%} upper bound {top:.1%}" + ("" if ok else "  > 5%"))
            if ok:
                chosen = share
        if chosen is None:  # the model cannot meet the bar at any share: say so, take the least
            print(f"  no share of {which} passes; taking the smallest step, 5%")
            return 0.05
        return chosen

    for round_ in range(1, 6):
        print(f"round {round_}:")
        large = largest_passing("large")
        new_small = largest_passing("small")
        moved = new_small != small
        small = new_small
        if not moved and round_ > 1:
            break
    else:
        print("the shares still moved after 5 rounds; the last round's are printed")
    shares = [small, round(1.0 - small - large, 2), large]
    abilities = abilities_for(d, shares, policy.quality_target)
    print("the rule's shares: " + ", ".join(
        f"{t.name} {s:.0%}" for t, s in zip(policy.tiers, shares, strict=True))
        + "; abilities " + ", ".join(f"{t.name} {a:.2f}"
                                     for t, a in zip(policy.tiers, abilities, strict=True)))
    return shares


def spend_per_request(policy: Policy, scores: list, tiers: list[str], output_tokens: int) -> float:
    """Mean price in USD of one request sent to ``tiers`` (one per score: where ``policy`` routed
    it, escalation included), at each request's own input tokens and ``output_tokens`` out, at
    the tiers' list prices (the ledger's formula, router.accounting.records.token_cost)."""
    prices = {t.name: (t.input_per_mtok, t.output_per_mtok) for t in policy.tiers}
    return sum(token_cost(s.n_tokens, output_tokens, *prices[tier])
               for s, tier in zip(scores, tiers, strict=True)) / len(scores)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shares", default="0.25,0.55,0.2")
    ap.add_argument("--policy", default=str(ROOT / "policies" / "demo.toml"))
    ap.add_argument("--model", default=None,
                    help="model directory to score with (default: the shipped classifiers/model)")
    ap.add_argument("--scorer", choices=SCORERS, default=None,
                    help="difficulty scorer (default: the policy's `scorer`)")
    ap.add_argument("--choose", action="store_true",
                    help="apply the demo's rule for its small and large shares and print it")
    ap.add_argument("--bound", type=float, default=BOUND_LEVEL,
                    help=f"--choose's one-sided bound level (default {BOUND_LEVEL}, the adopted "
                         "rule; another level shows what it would choose, it adopts nothing)")
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
    if args.choose:
        if not 0.5 <= args.bound < 1.0:
            ap.error(f"--bound {args.bound}: a level in [0.5, 1), e.g. 0.95")
        choose_shares(policy, scorer, d, shares, args.bound)
        return 0
    abilities = abilities_for(d, shares, policy.quality_target)
    print(f"{len(d)} distinct chat requests; d quantiles 10/50/90%: "
          f"{np.quantile(d, [0.1, 0.5, 0.9]).round(3).tolist()}")
    print("suggested abilities:", ", ".join(
        f"{tier.name} = {a:.2f}" for tier, a in zip(policy.tiers, abilities, strict=True)))
    if args.apply:
        policy = with_abilities(policy, abilities)
    print("routing with the abilities", "suggested" if args.apply else f"in {args.policy}",
          ":", ", ".join(f"{tier.name} = {tier.ability:.2f}" for tier in policy.tiers))
    routed = [decide(policy, s).tier for s in scores]
    split = Counter(routed)
    print("chat requests routed (escalation included):",
          {k: f"{v / len(scores):.0%}" for k, v in sorted(split.items())})
    print("mean list price per chat request, each at its own input tokens: "
          + ", ".join(f"${spend_per_request(policy, scores, routed, out) * 1000:.3f} per 1,000 "
                      f"with {out} tokens out" for out in SPEND_OUTPUT_TOKENS))
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
