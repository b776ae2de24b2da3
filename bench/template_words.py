"""Which words does the router read as difficulty because a benchmark's prompt template uses them?

A source of the training data whose requests come from a template ("Please answer ...",
"Question: ...") puts the template's words in a large share of its rows; within that source
they mark a sub-benchmark, so the fit can learn the sub-benchmark's difficulty as the word's
weight: the between-source learning issue 13 names. This lists the words that are common in
some benchmark source's requests and rare in real chat, and what each does to real chat
traffic when it is put before a request (as bench/invariance.py's '"Please " before it' row):
the tiers it moves under the embedded demo policy and the mean d move. A list for a reviewer,
not a fix: a word can be both a template's and a real signal of difficulty ("prove").

    python bench/template_words.py > bench/TEMPLATE_WORDS.md
    python bench/template_words.py --words eating,incorrect   (just these words)
"""

from __future__ import annotations

import argparse
import platform
import re
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from invariance import _last_user  # noqa: E402  (bench/: the same edit of the last user turn)

from classifiers.data import distinct_conversations, load_rows  # noqa: E402
from router import Router  # noqa: E402
from router.messages import as_messages  # noqa: E402

_WORD = re.compile(r"[a-z]+")
MIN_SOURCE_SHARE = 0.25  # in at least this share of one benchmark source's requests
MAX_CHAT_SHARE = 0.05  # and in at most this share of the real chat requests
PER_SOURCE = 6  # the commonest words of each source


def _request_text(row: dict[str, Any]) -> str:
    """The last user turn of a data row (its prompt if it has no messages)."""
    messages = row.get("messages")
    if isinstance(messages, list) and messages:
        users = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
        content = (users or messages)[-1].get("content")
        return content if isinstance(content, str) else ""
    prompt = row.get("prompt")
    return prompt if isinstance(prompt, str) else ""


def word_shares(rows: list[dict[str, Any]]) -> dict[str, Counter[str]]:
    """Per source, the number of requests each word appears in (and ``"_n"``: the requests)."""
    out: dict[str, Counter[str]] = defaultdict(Counter)
    for row in rows:
        counts = out[row.get("source", "?")]
        counts["_n"] += 1
        counts.update(set(_WORD.findall(_request_text(row).lower())))
    return out


def _moved(router: Router, sent: list[Any], base: list[Any], prefix: str) -> tuple[Counter, float]:
    """Tier changes (down/up) and the mean d move with ``prefix`` before each last user turn."""
    order = [t.name for t in router.policy.tiers]
    moved: Counter[str] = Counter()
    shift = []
    for messages, before in zip(sent, base, strict=True):
        after = router.route(_last_user(messages, lambda t: prefix + t))
        shift.append(after.difficulty - before.difficulty)
        if after.tier != before.tier:
            moved["up" if order.index(after.tier) > order.index(before.tier) else "down"] += 1
    return moved, float(np.mean(shift))


def measure(words: list[str]) -> int:
    """The same measure for the given words, wherever they come from."""
    router = Router()
    sent = [as_messages(c) for c in distinct_conversations(
        load_rows(ROOT / "data" / "routing-chat.jsonl.gz"))]
    base = [router.route(m) for m in sent]
    print("| word | tiers changed | down / up | mean d move |")
    print("|---|---|---|---|")
    for word in words:
        moved, mean = _moved(router, sent, base, word.capitalize() + " ")
        changed = sum(moved.values())
        print(f"| {word} | {changed} ({changed / len(sent):.1%}) | {moved['down']} / "
              f"{moved['up']} | {mean:+.3f} |")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--words", default="",
                        help="comma-separated words: measure these instead of finding them")
    args = parser.parse_args()
    if args.words:
        return measure(args.words.split(","))
    bench = word_shares(load_rows(ROOT / "data" / "routing-train.jsonl.gz"))
    chat_rows = load_rows(ROOT / "data" / "routing-chat.jsonl.gz")
    chat = Counter[str]()
    for counts in word_shares(chat_rows).values():
        chat.update(counts)
    n_chat = chat["_n"]
    router = Router()
    sent = [as_messages(c) for c in distinct_conversations(chat_rows)]
    base = [router.route(m) for m in sent]
    rows = []
    for source, counts in sorted(bench.items()):
        kept = [(n / counts["_n"], w) for w, n in counts.items() if w != "_n"
                and n / counts["_n"] >= MIN_SOURCE_SHARE and chat[w] / n_chat <= MAX_CHAT_SHARE]
        measured = []
        for share, word in kept:
            moved, mean = _moved(router, sent, base, word.capitalize() + " ")
            measured.append((sum(moved.values()), word, share, moved, mean))
        measured.sort(reverse=True)
        rows += [(source, len(kept), *m) for m in measured[:PER_SOURCE]]
    print("# Benchmark template words (bench/template_words.py)\n")
    print(f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; machine: "
          f"{platform.machine()}, Python {platform.python_version()}; command: "
          "`python bench/template_words.py`")
    print(f"- words in >= {MIN_SOURCE_SHARE:.0%} of one benchmark source's requests "
          f"(data/routing-train.jsonl.gz) and <= {MAX_CHAT_SHARE:.0%} of the {n_chat:,} real "
          "chat requests (data/routing-chat.jsonl.gz); each put before the "
          f"{len(sent):,} distinct chat requests (capitalised, then a space) and routed by the "
          "embedded demo policy (fast scorer); per source, the "
          f"{PER_SOURCE} that move most tiers; d moves in logits\n")
    print("| source (its words found) | word | in that source | in chat | tiers changed | "
          "down / up | mean d move |")
    print("|---|---|---|---|---|---|---|")
    for source, n_kept, changed, word, share, moved, mean in rows:
        print(f"| {source} ({n_kept}) | {word} | {share:.0%} | {chat[word] / n_chat:.1%} | "
              f"{changed} ({changed / len(sent):.1%}) | {moved['down']} / {moved['up']} | "
              f"{mean:+.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
