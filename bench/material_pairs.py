"""Easy and hard instructions over the same pasted material: does the tier follow the instruction?

bench/material/pairs.jsonl holds 10 pieces of material (a news paragraph, an email, code, a list
of numbers, a table, a poem...) each sent twice, after an easy instruction ("Summarize this in
one sentence:") and after a hard one ("List every claim that needs a source and..."). The
material is most of each request, and the scorers weigh length, so this shows how much of the
decision the material takes from the instruction: the share of pairs where the hard request
scores above the easy one (random 0.5; prompt length gets most of them right only because the
hard instructions are longer), the gap in d, and the demo tiers. Never trained on; written on
2026-12-07 to measure a weakness noted in bench/COMMONSENSE.md, not to choose anything.

The requests go through the public CLI (`python -m router.cli score`), as bench/commonsense.py.

    python bench/material_pairs.py > bench/MATERIAL_PAIRS.md
"""

from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# mypy resolves bench.commonsense to the data directory bench/commonsense/ (a namespace
# package); Python imports the module bench/commonsense.py, which a regular module wins
from bench.commonsense import run_scorer  # type: ignore[attr-defined]  # noqa: E402
from bench.hand_written import MATERIAL_PAIRS  # noqa: E402


def score(scorer: str) -> dict[str, dict]:
    """Each request's id -> the CLI's JSON line (difficulty, tier, ...) for ``scorer``."""
    rows = [json.loads(line) for line in MATERIAL_PAIRS.read_text(encoding="utf-8").splitlines()]
    scored = run_scorer(rows, None, ROOT, scorer)
    return {r["id"]: {**s, "chars": len(r["messages"][-1]["content"]),
                      "text": r["messages"][-1]["content"]}
            for r, s in zip(rows, scored, strict=True)}


def main() -> int:
    print("# Easy and hard instructions over the same material (bench/material_pairs.py)\n")
    print(f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; machine: "
          f"{platform.machine()}, Python {platform.python_version()}; command: "
          "`python bench/material_pairs.py`; the embedded demo policy (small / medium / large)")
    print("- 10 pieces of material, each after an easy and after a hard instruction "
          "(bench/material/pairs.jsonl); 'ordered' = the hard request scores above the easy "
          "one of its pair\n")
    for scorer in ("fast", "accurate"):
        s = score(scorer)
        keys = sorted({k.rsplit("-", 1)[0] for k in s})
        ordered = sum(s[f"{k}-hard"]["difficulty"] > s[f"{k}-easy"]["difficulty"] for k in keys)
        by_length = sum(s[f"{k}-hard"]["chars"] > s[f"{k}-easy"]["chars"] for k in keys)
        gap = sum(s[f"{k}-hard"]["difficulty"] - s[f"{k}-easy"]["difficulty"] for k in keys)
        easy_large = sum(s[f"{k}-easy"]["tier"] == "large" for k in keys)
        hard_small = sum(s[f"{k}-hard"]["tier"] == "small" for k in keys)
        easy_small = sum(s[f"{k}-easy"]["tier"] == "small" for k in keys)
        print(f"## {scorer} scorer\n")
        print(f"ordered {ordered} of {len(keys)} (prompt length: {by_length}); mean d gap "
              f"{gap / len(keys):+.2f}; easy on `large` {easy_large}, easy on `small` "
              f"{easy_small}, hard on `small` {hard_small} of {len(keys)}\n")
        print("| material | easy d | easy tier | hard d | hard tier | easy instruction |")
        print("|---|---|---|---|---|---|")
        for k in keys:
            e, h = s[f"{k}-easy"], s[f"{k}-hard"]
            instruction = e["text"].split(":")[0].split("?")[0][:60]
            print(f"| {k} | {e['difficulty']:.2f} | {e['tier']} | {h['difficulty']:.2f} | "
                  f"{h['tier']} | {instruction} |")
        print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
