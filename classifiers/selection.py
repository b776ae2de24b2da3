"""Arena-Hard's selection as a label: which real user requests an LLM judge picked as hard.

Used by training (one more outcome label per chat request, for a virtual model) and by the
accurate scorer's sentence head (classifiers/sentence_head.py), which learns the same contrast.
"""

from __future__ import annotations

from typing import Any

import numpy as np

# Arena-Hard (and the arena_hard_1k subset the 2023 battles come from) are real Chatbot Arena
# requests *selected* as hard by an LLM judge scoring specificity, domain knowledge, complexity,
# problem solving, creativity and technical accuracy; OpenAssistant and Vicuna-80 requests were
# not selected. Read as the outcome of a virtual model ("a request from the unselected pool"),
# with no group offset, this contrast teaches what makes a real user request hard.
SELECTED_HARD = ("arenahard_v01_forks", "fastchat_arena_battles_2023")
NOT_SELECTED = ("qlora_oa", "qlora_vicuna_pairwise", "fastchat_vicuna80_gpt4review")
SELECTION_MODEL = "arena-hard-selection"


def selected_as_hard(row: dict) -> bool | None:
    """True for a request of a selected pool, False for one of an unselected pool, None for a
    row of any other source (it carries no selection label)."""
    source = row.get("source")
    if source in SELECTED_HARD:
        return True
    return False if source in NOT_SELECTED else None


def with_selection_labels(rows: list[dict], pairs: Any) -> tuple[Any, np.ndarray]:
    """``pairs`` plus one selection label per chat row (see SELECTED_HARD), and the mask of
    labels the group offsets must not apply to."""
    from .data import Pairs

    selected = [selected_as_hard(r) for r in rows]
    idx = [i for i, sel in enumerate(selected) if sel is not None]
    if not idx:
        return pairs, np.zeros(pairs.prompt.size, bool)
    models = list(pairs.models) + [SELECTION_MODEL]
    y = [0.0 if selected[i] else 1.0 for i in idx]
    out = Pairs(
        np.concatenate([pairs.prompt, np.asarray(idx, np.int64)]),
        np.concatenate([pairs.model, np.full(len(idx), len(models) - 1, np.int64)]),
        np.concatenate([pairs.y, np.asarray(y)]),
        models,
    )
    mask = np.concatenate([np.zeros(pairs.prompt.size, bool), np.ones(len(idx), bool)])
    return out, mask


def selection_labels(rows: list[dict]) -> dict[str, bool]:
    """The last user turn of each selected / unselected chat row -> selected (True = hard):
    the sentence head's training set (one example per distinct text)."""
    from .conversation import last_user_text
    from .data import row_messages

    labels: dict[str, bool] = {}
    for row in rows:
        selected = selected_as_hard(row)
        if selected is not None:
            text = last_user_text(row_messages(row))
            # a request in both pools counts as selected: the judge found it hard
            labels[text] = labels.get(text, False) or selected
    return labels


def has_selection_pools(rows: list[dict]) -> bool:
    sources = {r.get("source") for r in rows}
    return bool(sources & set(SELECTED_HARD)) and bool(sources & set(NOT_SELECTED))


def is_judged_chat(row: dict) -> bool:
    """Open-ended requests judged by people or an LLM judge (routing-chat), not benchmark items."""
    lt = str((row.get("meta") or {}).get("label_type", ""))
    return lt.startswith("pairwise") or lt == "judge_score_div10" or row.get("source") == "mifeval"
