"""A source's prompt template: lines many of its prompts share verbatim, which the fit does not
learn from (training only; requests and held-out rows are scored as sent).

RouterBench's 1,457 ARC-Challenge prompts open with one fixed 5-shot preamble (~445 tokens),
CRUXEval's 800 with one long instruction. Such a line tells nothing about one prompt against
another, only about the source or the subset whose template it is, yet it counted in the rows'
length and structure: easy ARC rows read long. Left out of the fit (with `upper_fraction`, R14
in bench/QUALITY_ROUTING.md), leave-one-source-out rose 0.53966 -> 0.54212. The template's
words keep their weights either way: a word's weight is its static embedding on the fit's
direction (bench/TEMPLATE_WORDS.md; R13 tested it).
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from typing import Any

from .data import row_messages

MIN_PROMPTS = 20  # distinct prompts of one source that hold the same line

Conversation = list[dict[str, Any]] | str


def _texts(conv: Conversation) -> list[str]:
    if isinstance(conv, str):
        return [conv]
    return [m["content"] for m in conv if isinstance(m.get("content"), str)]


def template_lines(rows: list[dict], min_prompts: int = MIN_PROMPTS) -> dict[str, frozenset[str]]:
    """Per source, the lines (stripped, not empty) found in at least ``min_prompts`` of its
    distinct prompts. A prompt repeated across rows (one row per judge) counts once."""
    seen: dict[str, set[str]] = defaultdict(set)
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for row in rows:
        source, conv = row.get("source", "?"), row_messages(row)
        key = json.dumps(conv, sort_keys=True)
        if key in seen[source]:
            continue
        seen[source].add(key)
        counts[source].update({line.strip() for text in _texts(conv)
                               for line in text.split("\n") if line.strip()})
    return {source: frozenset(line for line, n in c.items() if n >= min_prompts)
            for source, c in counts.items()}


def without_template(conv: Conversation, lines: frozenset[str]) -> Conversation:
    """``conv`` without the lines of its source's template; as it is if nothing else is left."""
    if not lines:
        return conv

    def keep(text: str) -> str:
        return "\n".join(line for line in text.split("\n") if line.strip() not in lines)

    if isinstance(conv, str):
        out = keep(conv)
        return out if out.strip() else conv
    kept = [{**m, "content": keep(m["content"])} if isinstance(m.get("content"), str) else m
            for m in conv]
    return kept if any(t.strip() for t in _texts(kept)) else conv


def fit_conversations(rows: list[dict]) -> list[Conversation]:
    """Each row's conversation as the fit reads it: without its source's template lines."""
    lines = template_lines(rows)
    return [without_template(row_messages(r), lines.get(r.get("source", "?"), frozenset()))
            for r in rows]
