"""The fast scorer's cost per request on real chat requests, for an A/B of two checkouts.

Scores the 3,184 distinct conversations of data/routing-chat.jsonl.gz one at a time
(DifficultyScorer.score, the proxy's path) twice in a row, and those under 300 characters once
more, with the checkout given first on sys.path. The set holds more distinct words outside
MiniLM's vocabulary than the WordPiece cache keeps (8,192), so a second pass is no faster: this is
the cost of words seen for the first time, the worst case of a server's traffic.

    python bench/scorer_real_chat.py CHECKOUT      # e.g. a `git worktree` of an older commit
"""

import sys
import time
from pathlib import Path

CHECKOUT = str(Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parents[1]).resolve())
sys.path.insert(0, CHECKOUT)

from classifiers.data import distinct_conversations, load_rows  # noqa: E402
from classifiers.scorer import DifficultyScorer  # noqa: E402

DATA = Path(__file__).resolve().parents[1] / "data" / "routing-chat.jsonl.gz"


def chars(conv) -> int:
    return len(conv) if isinstance(conv, str) else sum(len(str(m.get("content"))) for m in conv)


def per_request(scorer: DifficultyScorer, convs: list) -> float:
    """Mean seconds per scorer.score call over ``convs``, one at a time."""
    t = time.perf_counter()
    for c in convs:
        scorer.score(c)
    return (time.perf_counter() - t) / len(convs)


def main() -> int:
    convs = distinct_conversations(load_rows(DATA))
    scorer = DifficultyScorer()
    scorer.score([{"role": "user", "content": "warm up"}])
    first, again = per_request(scorer, convs), per_request(scorer, convs)
    short = [c for c in convs if chars(c) < 300]
    print(f"{CHECKOUT}: first pass {first * 1e6:.0f} us, second {again * 1e6:.0f} us, "
          f"under 300 characters (n={len(short)}) {per_request(scorer, short) * 1e6:.0f} us "
          "per request")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
