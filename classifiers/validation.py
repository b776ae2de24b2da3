"""Held-out validation: leave-one-source-out folds and the strong/weak pairs evaluated per source.

Used by ``tierwise train`` (prints the numbers, writes them into the model card) and by
``bench/quality_routing.py``. Router score = predicted difficulty (higher -> strong model).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .data import prompt_key
from .features import DENSE_NAMES, DENSE_OFF
from .metrics import PairResult, evaluate_pair
from .names import canonical

# strong/weak pairs per source (canonical names), chosen with a clear quality gap on that source
# (a near-zero gap makes PGR unstable); the first is the headline pair of the source
EVAL_PAIRS: dict[str, list[tuple[str, str]]] = {
    "routerbench": [
        ("gpt-4-1106-preview", "mixtral-8x7b-instruct-v0.1"),
        ("gpt-4-1106-preview", "gpt-3.5-turbo-1106"),
        ("gpt-4-1106-preview", "llama-2-70b-chat"),
    ],
    "mmlu_pro": [
        ("gpt-4o-2024-05-13", "mixtral-8x7b-instruct-v0.1"),
        ("meta-llama-3.1-70b-instruct", "meta-llama-3.1-8b-instruct"),
        ("gemini-3.1-pro", "gpt-4o-2024-05-13"),
    ],
    "zeroeval_crux": [
        ("gpt-4o-2024-08-06", "gpt-4o-mini-2024-07-18"),
        ("claude-3-5-sonnet-20240620", "claude-3-haiku-20240307"),
        ("meta-llama-3.1-70b-instruct", "meta-llama-3.1-8b-instruct"),
    ],
    "zeroeval_math-l5": [
        ("o1-mini-2024-09-12", "gpt-4o-mini-2024-07-18"),
        ("claude-3-5-sonnet-20240620", "claude-3-haiku-20240307"),
        ("meta-llama-3.1-70b-instruct", "meta-llama-3.1-8b-instruct"),
    ],
    "llmrouter_dcrouter": [
        ("llama-3.1-nemotron-51b-instruct", "mistral-7b-instruct-v0.3"),
        ("meta-llama-3.1-8b-instruct", "codegemma-7b"),
    ],
    "routerarena": [("gemini-2.0-flash-001", "claude-3-haiku-20240307")],
    # judged chat (routing-chat.jsonl.gz); for pairwise sources (PAIRWISE_SOURCES) the weak
    # model's quality is the share of direct verdicts it won or tied (RouteLLM's reading) and
    # the strong model's is 1
    "fastchat_vicuna80_gpt4review": [
        ("gpt-3.5-turbo-0125", "llama-13b"),
        ("gpt-3.5-turbo-0125", "alpaca-13b"),
    ],
    "qlora_oa": [("gpt-4-0314", "vicuna-13b"), ("gpt-4-0314", "guanaco-7b")],
    "qlora_vicuna_pairwise": [("gpt-4-0314", "vicuna-13b")],
    "mifeval": [
        ("gpt-4o-2024-08-06", "mistralai--mistral-7b-instruct-v0.3"),
        ("claude-3-5-sonnet-20240620", "claude-3-haiku-20240307"),
    ],
    "alpaca_eval": [
        ("gpt-4-1106-preview", "gpt-3.5-turbo-1106"),
        ("gpt-4-1106-preview", "claude-instant-1"),
        ("claude-2", "vicuna-13b"),
    ],
}


PAIRWISE_SOURCES = frozenset({"qlora_oa", "qlora_vicuna_pairwise"})


@dataclass
class PairEval:
    source: str
    strong: str
    weak: str
    result: PairResult
    length: PairResult | None = None  # the same pair routed by prompt length alone
    # (scores, strong outcomes, weak outcomes) of the pair's items: what a bootstrap resamples
    items: tuple[np.ndarray, np.ndarray, np.ndarray] | None = field(default=None, repr=False)

    def as_dict(self) -> dict:
        out = {"source": self.source, "strong": self.strong, "weak": self.weak,
               **self.result.as_dict()}
        if self.length is not None:
            out["length_apgr"], out["length_auc"] = self.length.apgr, self.length.auc
        return out


def length_baseline(X: Any) -> np.ndarray:
    """The prompt-length router every validation row is scored beside: each row's
    ``log_tokens`` (the whole conversation's length) from its feature matrix ``X``."""
    col = DENSE_OFF + DENSE_NAMES.index("log_tokens")
    return np.asarray(X[:, col].todense()).ravel()


def pair_outcomes(rows: list[dict], strong: str, weak: str) -> tuple[np.ndarray, ...]:
    """(row index, q_strong, q_weak) over rows that have both models."""
    idx, qs, qw = [], [], []
    for i, row in enumerate(rows):
        outs = {canonical(k): v for k, v in row["outcomes"].items() if v is not None}
        if strong in outs and weak in outs:
            idx.append(i)
            qs.append(float(outs[strong]))
            qw.append(float(outs[weak]))
    return np.asarray(idx, np.int64), np.asarray(qs), np.asarray(qw)


def pairwise_outcomes(rows: list[dict], strong: str, weak: str) -> tuple[np.ndarray, ...]:
    """(row index, q_strong = 1, q_weak = share of direct verdicts the weak model won or tied)."""
    from .data import row_comparisons

    idx, qw = [], []
    for i, row in enumerate(rows):
        votes = []
        for a, b, win in row_comparisons(row):
            ca, cb = canonical(a), canonical(b)
            if {ca, cb} == {strong, weak}:
                weak_side = "a" if ca == weak else "b"
                votes.append(1.0 if win in (weak_side, "tie") else 0.0)
        if votes:
            idx.append(i)
            qw.append(float(np.mean(votes)))
    return np.asarray(idx, np.int64), np.ones(len(idx)), np.asarray(qw)


def evaluate_source(rows: list[dict], scores: np.ndarray, source: str,
                    lengths: np.ndarray | None = None) -> list[PairEval]:
    """Contract metrics of ``scores`` on every configured pair of ``source`` (and of
    ``lengths``, a prompt-length score per row, as the baseline to beat)."""
    out: list[PairEval] = []
    for strong, weak in EVAL_PAIRS.get(source, []):
        outcomes = pairwise_outcomes if source in PAIRWISE_SOURCES else pair_outcomes
        idx, qs, qw = outcomes(rows, strong, weak)
        if idx.size < 20:
            continue
        base = None if lengths is None else evaluate_pair(lengths[idx], qs, qw)
        out.append(PairEval(source, strong, weak, evaluate_pair(scores[idx], qs, qw), base,
                            items=(np.asarray(scores[idx]), qs, qw)))
    return out


def pair_arrays(tag: str, d: np.ndarray, qs: np.ndarray, qw: np.ndarray) -> dict[str, np.ndarray]:
    """One pair's item scores and outcomes under the keys ``tag|d``, ``tag|qs``, ``tag|qw``
    (``tag``: "variant|source|strong|weak"), the .npz layout bench/heldout_bootstrap.py reads."""
    return {f"{tag}|d": d, f"{tag}|qs": qs, f"{tag}|qw": qw}


def save_fold_scores(folds: list[PairEval], path: str | Path, variant: str = "loso") -> int:
    """Write each pair's item scores and outcomes to ``path`` (.npz, :func:`pair_arrays`'s
    layout, as bench/quality_routing.py's --scores), so bench/heldout_bootstrap.py
    (``--variant loso``) compares two trainings' leave-one-source-out folds item by item.
    Returns the number of pairs written."""
    arrays: dict[str, np.ndarray] = {}
    for f in folds:
        if f.items is not None:
            arrays.update(pair_arrays(f"{variant}|{f.source}|{f.strong}|{f.weak}", *f.items))
    # numpy's stubs type **kwds as its allow_pickle flag
    np.savez_compressed(path, **arrays)  # type: ignore[arg-type]
    return len(arrays) // 3


def loso(
    rows: list[dict],
    fit_predict: Callable[[np.ndarray, np.ndarray], np.ndarray],
    sources: list[str] | None = None,
    log: Callable[[str], None] = print,
    lengths: np.ndarray | None = None,
) -> list[PairEval]:
    """Leave-one-source-out: ``fit_predict(train_mask, test_mask) -> scores of test rows``;
    ``lengths`` (one per row) is scored beside each fold as the prompt-length baseline."""
    src = np.asarray([r["source"] for r in rows])
    keys = [prompt_key(r) for r in rows]
    results: list[PairEval] = []
    for s in sources or sorted(set(src.tolist())):
        test = src == s
        # the same prompt can be in several sources (Vicuna-80 is in three): none of a held-out
        # source's prompts may be trained on
        held = {k for k, t in zip(keys, test, strict=True) if t}
        train = ~test & np.asarray([k not in held for k in keys])
        scores = fit_predict(train, test)
        test_rows = [r for r, t in zip(rows, test, strict=True) if t]
        res = evaluate_source(test_rows, scores, s, None if lengths is None else lengths[test])
        for r in res:
            base = "" if r.length is None else f", length {r.length.apgr:.3f}"
            log(
                f"  fold {s:<20} {r.strong} vs {r.weak}: APGR {r.result.apgr:.3f}{base} "
                f"CPT50 {r.result.cpt50:.3f} AUC {r.result.auc:.3f} (n={r.result.n})"
            )
        results.extend(res)
    return results
