"""What a system prompt that says nothing about the task does to routing on the demo policy.

Routes every distinct real chat request of data/routing-chat.jsonl.gz twice through the public
path (router.Router, the embedded demo policy): as it is, and behind a one-line system prompt.
Prints each version's tier shares, how many requests went up a tier for low confidence, and how
many changed tier. Most apps send a system prompt, and the training data has none, so this is
where a scorer that treats "unseen" as "unknown" would show it (QUALITY_ROUTING.md, "A system
prompt is not uncertainty").

    python bench/system_prompt.py [--system "You are a helpful assistant."]
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from classifiers.data import distinct_conversations, load_rows  # noqa: E402
from router import Router  # noqa: E402
from router.messages import as_messages  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--system", default="You are a helpful assistant.")
    args = ap.parse_args()
    router = Router()
    convs = distinct_conversations(load_rows(ROOT / "data" / "routing-chat.jsonl.gz"))
    system = {"role": "system", "content": args.system}
    tiers: dict[str, Counter[str]] = {"as sent": Counter(), "with system": Counter()}
    low: Counter[str] = Counter()
    moved = Counter[tuple[str, str]]()
    for conv in convs:
        messages = as_messages(conv)
        plain, framed = router.route(messages), router.route([system, *messages])
        for name, decision in (("as sent", plain), ("with system", framed)):
            tiers[name][decision.tier] += 1
            low[name] += any(e.startswith("low_confidence") for e in decision.escalations)
        if plain.tier != framed.tier:
            moved[plain.tier, framed.tier] += 1
    n = len(convs)
    print(f"{n} distinct chat requests; system prompt {args.system!r}; policy {router.policy.name}")
    print("| requests | small | medium | large | up a tier for low confidence |")
    print("|---|---|---|---|---|")
    for name, count in tiers.items():
        shares = " | ".join(f"{count[t] / n:.1%}" for t in ("small", "medium", "large"))
        print(f"| {name} | {shares} | {low[name]} ({low[name] / n:.1%}) |")
    changes = ", ".join(f"{a}->{b} {c}" for (a, b), c in sorted(moved.items()))
    print(f"changed tier: {sum(moved.values())} ({changes})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
