"""Train the shipped difficulty model: data -> features -> IRT fit -> ONNX + tables + card.

Deterministic: no random state except the fixed L-BFGS start; the same data gives the same
weights. Progress goes to the ``log`` callback (stderr in the CLI).
"""

from __future__ import annotations

import platform
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import features
from .anchors import ANCHOR_SOURCE, is_anchor
from .data import (
    build_labels,
    excluded,
    load_rows,
    prompt_key,
    read_jsonl,
    row_messages,
    sha256_file,
)
from .features import (
    DENSE_NAMES,
    DENSE_OFF,
    HASH_BITS,
    HASH_OFF,
    N_FEATURES,
    extract,
    extract_many,
    to_csr,
)
from .fit_design import design_matrix, offset_groups
from .irt import IRTDifficulty
from .model_files import save
from .selection import has_selection_pools, is_judged_chat, with_selection_labels
from .validation import PairEval, evaluate_source, length_baseline, loso
from .within_penalty import within_scatter
from .word_fold import fold_words

DEFAULT_PARAMS: dict[str, float] = {
    "l2": 3.0,  # L2 on structure-feature weights
    "l2_word": 3.0,  # L2 on free per-word weights (with "unigrams")
    "l2_semantic": 10.0,  # L2 on the weights of the pooled static embedding (chosen on folds)
    "l2_ability": 0.01,
    "prompt_weight_power": 0.5,
    "semantic": 1,  # pooled MiniLM static embedding, folded into the word weights
    "unigrams": 0,  # 1: free per-word weights beside the embedding
    "offsets": 0,  # 1: per-group offsets in training (difficulty learned within sources); 2: one
    # offset for pairwise verdicts and one for outcome labels (the two scales may differ)
    "chat_offsets": 1,  # 0: all pairwise (judged chat) sources share one offset group
    "digit_features": 0,  # 1: digit_fraction and math_symbol_density used
    "arithmetic_feature": 1,  # 1: arithmetic_digits used (the size of an exact product/power)
    # a lower bound on the weight of arithmetic_digits (a prior: a 12-digit exact product adds
    # at least one logit). Learned alone it stays near 0.2: only 353 training rows carry the
    # feature, few of them exact arithmetic (bench/QUALITY_ROUTING.md, "arithmetic weight")
    "arithmetic_min": 1.0,
    # 1: non_ascii_fraction used. Off: it learned "not English = hard" (+1.1 logits, a tier) from
    # Korean Arena-Hard and M-IFEval's weakest models, so a short Japanese question went to the
    # largest tier; without it held-out folds are level or better (bench/QUALITY_ROUTING.md)
    "non_ascii_feature": 0,
    # 1: code_fence used. Off (feature version 21): a fence is how code was pasted, not what is
    # asked; learned from ~120 fenced chat rows it read fenced code as easier (-0.19), and the
    # same code without fences went a tier up (bench/INVARIANCE.md, bench/QUALITY_ROUTING.md)
    "fence_feature": 0,
    # 1: upper_fraction used. Off: case is how a request is typed, yet upper-casing one moved
    # 9.7% of real chat tiers (bench/INVARIANCE.md)
    "case_feature": 0,
    "lean": 0,  # 1: only length and request-shape flags among the structure features
    # 1: the shipped embedding weights are learned from judged chat only (benchmark rows get a
    # head of their own); 2: a head shared by all rows plus a chat correction, the sum ships
    "chat_head": 0,
    # >= 0: the weight of log_tokens_last_user, fixed (a prior: see the model card); -1: learned
    "length_weight": 4.0,
    # added to the weight of log_tokens (the whole conversation's length) after the fit: 1.0
    # (bench/QUALITY_ROUTING.md, "length prior after the fit"); 0: none
    "length_prior": 1.0,
    "selection_label": 1,  # 1: Arena-Hard's selection of hard user requests as a label
    "selection_weight": 1.0,  # weight of each selection label relative to one outcome label
    "chat_weight": 1.0,  # factor on the weight of judged-chat rows against benchmark rows
    # 1: a line many prompts of one source share (a template, a k-shot preamble) is not learned
    # from: the fit's features are computed without it, scored rows are read as sent
    # (classifiers/templates.py)
    "templates": 1,
    "sentence_head": 1,  # 1: fit the "accurate" scorer's head (classifiers/sentence_head.py)
    # > 0: the head distilled into the word weights with this weight (the fast scorer would
    # carry part of it at no cost); off: +0.05 length-matched AUC on the common-sense dev
    # split, but -0.07 APGR on held-out MMLU-Pro and RouterBench (bench/QUALITY_ROUTING.md)
    "distill": 0.0,
    # factor on the weight of the hand-labeled anchor rows (classifiers/anchors.py); 0: unused
    "anchor_weight": 10.0,
    # 0: the anchors' labels move every weight; 1: only the embedding's (structure and length
    # fixed at the fit without them, so a set written with length decorrelated from difficulty
    # cannot teach "long = easy")
    "anchor_scope": 1,
    # > 0: the anchors are examples of the sentence head too (hard = selected), each weighing
    # this. Off: at 1 held-out
    # RouterBench fell below random (0.548 -> 0.458; bench/QUALITY_ROUTING.md, "anchors")
    "head_anchors": 0,
    # > 0: the anchors' own reading of the words (classifiers.anchors.anchor_head: a logistic
    # regression of hard vs easy on their pooled static embeddings alone, L2 with sklearn's C =
    # anchor_head_c), at this weight, folded into the short-request block's word table
    # (features.SHORT_PRIOR). Inside the IRT the anchors' labels share one direction with every
    # benchmark's; on their own the same 440 requests read words far better (words alone on the
    # hand-written dev splits: AUC 0.52-0.63 from the IRT's block, 0.73-0.79 from the head at
    # C 10; bench/anchor_head.py). 0.15 at C 10, chosen on the dev splits and held-out folds
    # (bench/QUALITY_ROUTING.md, "The anchors' own head" and "A short-request block for the
    # anchors' head")
    "anchor_head": 0.15,
    "anchor_head_c": 10.0,
}


@dataclass
class TrainResult:
    model: IRTDifficulty
    models: list[str]
    folds: list[PairEval]
    extra: list[PairEval] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    head: Any = None  # the "accurate" scorer's SentenceHead (None: the data has no chat pools)


def featurize(rows: list[dict], log: Callable[[str], None] = print, bigrams: bool = False,
              conversations: list[Any] | None = None) -> Any:
    """The rows' feature matrix (of ``conversations`` in their place, if given)."""
    t0 = time.perf_counter()
    msgs = conversations if conversations is not None else [row_messages(r) for r in rows]
    feats = [extract(m, True) for m in msgs] if bigrams else extract_many(msgs)
    log(f"featurized {len(rows)} prompts in {time.perf_counter() - t0:.1f}s")
    return to_csr(feats)


def _row_weights(rows: list[dict]) -> np.ndarray:
    """1/k for a prompt that appears in k rows of one source (Arena-Hard keeps a row per judge
    and baseline group): each distinct prompt weighs as one, its verdicts pooled."""
    keys = [(r.get("source"), prompt_key(r)) for r in rows]
    counts = Counter(keys)
    return np.asarray([1.0 / counts[k] for k in keys])


def fit(
    X: Any, rows: list[dict], params: dict[str, float], emb: np.ndarray | None = None,
    sentence: np.ndarray | None = None, embed: Any = None,
) -> tuple[IRTDifficulty, list[str]]:
    """Fit the IRT model on outcome and pairwise labels; the embedding part is folded into the
    word weights. ``emb``: the hashed static table (built from the rows' words if None).
    ``sentence``: the rows' sentence-encoder embeddings ([n, k], the "accurate" scorer), a
    dense block with its own weights (``irt.sentence_u_``), added to d, not folded (measured:
    it learns the source; bench/QUALITY_ROUTING.md). ``embed``: a
    :class:`~classifiers.sentence_head.TextEmbeddings`; with it (and both selection pools in
    ``rows``) the sentence head is fitted too (``irt.head_``) and distilled into the word
    weights (``irt.distill_``; ``params["distill"]``: its weight, 0 for none). A key of
    DEFAULT_PARAMS missing from ``params`` gets its default. Two keys lie outside them (only
    bench/quality_routing.py's variants pass them, so model.json's params stay as shipped):
    ``l2_sentence`` (10), the sentence-encoder block's L2, and ``within_penalty`` (0: none), a
    penalty of 0.5 * it * sum over benchmark rows of (the row's embedding term - its cell's
    mean)^2 (:func:`within_scatter`; a negative result, bench/QUALITY_ROUTING.md)."""
    params = {**DEFAULT_PARAMS, **params}
    pairs, comparisons = build_labels(rows)
    no_offset = label_weight = None
    if params["selection_label"]:
        pairs, no_offset = with_selection_labels(rows, pairs)
        label_weight = np.where(no_offset, float(params["selection_weight"]), 1.0)
    irt = IRTDifficulty(
        l2_ability=float(params["l2_ability"]),
        prompt_weight_power=float(params["prompt_weight_power"]),
    )
    if not params["semantic"]:
        emb = None
    elif emb is None:
        emb = semantic_table(rows)
    is_chat = np.asarray([is_judged_chat(r) for r in rows], np.float64)
    anchor = np.asarray([is_anchor(r) for r in rows], bool)
    design = design_matrix(X, params, emb, is_chat, sentence)
    prompt_weight = _row_weights(rows)
    penalty = None
    if emb is not None and float(params.get("within_penalty", 0.0)):
        penalty = (np.arange(N_FEATURES, N_FEATURES + emb.shape[1]),
                   float(params["within_penalty"]) * within_scatter(
                       design.semantic, rows, prompt_weight, is_chat > 0, anchor))
    groups, names = offset_groups(rows, params)
    irt.l2 = design.l2
    row_weight = prompt_weight * np.where(is_chat > 0, float(params["chat_weight"]), 1.0)
    lower, upper = design.lower, design.upper
    anchor_weight = float(params["anchor_weight"])
    if anchor.any() and anchor_weight and int(params["anchor_scope"]) == 1:
        # the anchors may move only the embedding's weights: fit without them, then fix every
        # other weight at that fit's value and fit again with them
        irt.fit(design.matrix, pairs.prompt, pairs.model, pairs.y, len(pairs.models),
                comparisons=comparisons, groups=groups, lower=lower, upper=upper,
                row_weight=row_weight * np.where(anchor, 0.0, 1.0), no_offset=no_offset,
                label_weight=label_weight, penalty=penalty)
        lower, upper = lower.copy(), upper.copy()
        lower[:N_FEATURES] = upper[:N_FEATURES] = irt.coef_[:N_FEATURES]
    irt.fit(design.matrix, pairs.prompt, pairs.model, pairs.y, len(pairs.models),
            comparisons=comparisons, groups=groups, lower=lower, upper=upper,
            row_weight=row_weight * np.where(anchor, anchor_weight, 1.0),
            no_offset=no_offset, label_weight=label_weight, penalty=penalty)
    if groups is not None:
        irt.group_offsets_ = dict(zip(names, irt.offsets_.tolist(), strict=True))
    if sentence is not None:
        irt.sentence_u_ = irt.coef_[-sentence.shape[1]:].copy()
        irt.coef_ = irt.coef_[: -sentence.shape[1]]
        irt.var_ = irt.var_[: -sentence.shape[1]]
    if emb is not None:
        fold_words(irt, X, rows, params, emb, anchor, pairs)
    if embed is not None and has_selection_pools(rows):
        _fit_sentence_head(irt, X, rows, params, emb, embed)
    _add_length_prior(irt, X, float(params["length_prior"]))
    return irt, pairs.models


def _fit_sentence_head(irt: IRTDifficulty, X: Any, rows: list[dict], params: dict[str, float],
                       emb: np.ndarray | None, embed: Any) -> None:
    """The accurate scorer's sentence head (``irt.head_``), and with train's ``distill`` its
    distillation into the word weights (off in the shipped model)."""
    from .sentence_head import distilled_word_weights, fit_on_rows

    irt.head_ = fit_on_rows(
        rows, log=lambda _: None, embed=embed, anchors=float(params["head_anchors"]))
    weight = float(params["distill"])
    if emb is not None and weight:
        delta, irt.distill_ = distilled_word_weights(
            irt.head_, rows, X[:, HASH_OFF:DENSE_OFF], emb, embed, weight)
        irt.coef_[HASH_OFF:DENSE_OFF] += delta


def _add_length_prior(irt: IRTDifficulty, X: Any, prior: float) -> None:
    """A prior the labels cannot teach: in real traffic a longer request is a harder one. Added
    after the fit, so the features that go with length inside the training sources (lines,
    questions) cannot take it back, as they partly do with the fixed weight on the last turn.
    The abilities move by its mean over the training prompts: P(model does well) stays the
    fitted one on average, lower for longer requests and higher for shorter ones."""
    if prior:
        irt.coef_[DENSE_OFF + DENSE_NAMES.index("log_tokens")] += prior
        irt.abilities_ = irt.abilities_ + prior * float(length_baseline(X).mean())


def _level_head(head: Any, model: IRTDifficulty, X: Any, rows: list[dict], embed: Any) -> None:
    """SentenceHead.level on the distinct last user turns of the judged-chat rows."""
    from .sentence_head import first_row_per_text

    first = first_row_per_text(rows, is_judged_chat)
    if len(first) >= 2:
        head.level(model.predict(X[list(first.values())]), embed(list(first)))


def semantic_table(rows: list[dict], X: Any = None) -> np.ndarray:
    """The static embedding of the word block (:func:`classifiers.embedding.word_table`),
    centred on the mean text embedding of ``rows``. ``X``: the rows' features if the caller has
    them (else they are computed here). The rows set only the centre: every word has its
    vector whether or not the training data holds it."""
    from .embedding import word_table

    table = word_table(HASH_BITS).astype(np.float64)
    # centre the known words on the corpus's mean text embedding: the word block is a shrunk
    # mean (features.WORD_PRIOR), so a short request's embedding moves towards 0, which must
    # mean "a typical request", not a point that some direction of the fit calls hard or easy
    words_x = (X if X is not None else featurize(rows, lambda _m: None))[:, HASH_OFF:DENSE_OFF]
    totals = np.asarray(words_x.sum(axis=1)).ravel()
    mean = np.asarray((words_x @ table).sum(axis=0)).ravel() / max(float(totals.sum()), 1e-9)
    known = np.abs(table).sum(axis=1) > 0
    table[known] -= mean
    return table


def train(
    data: str | Path | list[str | Path] | list[str],
    out_dir: str | Path | None,
    params: dict[str, float] | None = None,
    eval_data: str | Path | None = None,
    validate: bool = True,
    log: Callable[[str], None] = print,
) -> TrainResult:
    """Validate with leave-one-source-out folds, fit on all rows, write the model to ``out_dir``.

    BLAS runs single-threaded here: a multi-threaded dot product sums in another order, so the
    weights (and model.onnx's bytes) would depend on the machine's core count.
    """
    import scipy.optimize  # noqa: F401  (load the BLAS libraries before limiting them)
    import scipy.sparse  # noqa: F401
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        return _train(data, out_dir, params, eval_data, validate, log)


def _train(
    data: str | Path | list[str | Path] | list[str],
    out_dir: str | Path | None,
    params: dict[str, float] | None,
    eval_data: str | Path | None,
    validate: bool,
    log: Callable[[str], None],
) -> TrainResult:
    params = {**DEFAULT_PARAMS, **(params or {})}
    paths = [Path(p) for p in (data if isinstance(data, list) else [data])]
    rows: list[dict] = []
    all_count = 0
    reasons: Counter[str] = Counter()
    for path in paths:
        all_rows = read_jsonl(path)
        all_count += len(all_rows)
        reasons.update(r for r in (excluded(row) for row in all_rows) if r)
        kept = load_rows(path)
        rows += kept
        log(f"{path}: {len(all_rows)} rows, {len(kept)} kept")
    log(f"excluded: {dict(reasons)}")
    bigrams = bool(params.get("bigrams", 0))
    X = featurize(rows, log, bigrams)  # the rows as sent: what is scored
    X_fit = X  # what the fit learns from: without each source's template lines
    if params["templates"]:
        from .templates import fit_conversations

        X_fit = featurize(rows, log, bigrams, fit_conversations(rows))
    # the table's centring reuses the word features (not with bigrams: they share the buckets)
    emb = semantic_table(rows, None if bigrams else X_fit) if params["semantic"] else None
    embed = None  # the sentence head's encodings, shared by the folds and the final fit
    if params["sentence_head"] and has_selection_pools(rows):
        from .sentence_head import TextEmbeddings

        embed = TextEmbeddings(log)
    elif params["sentence_head"]:
        log("no sentence head: the data has no selected (Arena-Hard) and unselected chat rows")
    folds: list[PairEval] = []
    if validate:
        log("leave-one-source-out validation:")

        # a fold's own head changes its predictions only when distilled into the words
        fold_embed = embed if params["distill"] else None

        def fit_predict(tr: np.ndarray, te: np.ndarray) -> np.ndarray:
            sub = [r for r, keep in zip(rows, tr, strict=True) if keep]
            m, _ = fit(X_fit[tr], sub, params, emb, embed=fold_embed)
            return m.predict(X[te])

        # the anchors have one (virtual) model: no pair to score when they are held out
        sources = sorted({r["source"] for r in rows} - {ANCHOR_SOURCE})
        folds = loso(rows, fit_predict, sources, log=log, lengths=length_baseline(X))
    log("fitting on all rows ...")
    t0 = time.perf_counter()
    model, models = fit(X_fit, rows, params, emb, embed=embed)
    log(f"fit: {model.n_iter_} L-BFGS iterations, {time.perf_counter() - t0:.1f}s")
    head = getattr(model, "head_", None)
    if head is not None and embed is not None:
        _level_head(head, model, X, rows, embed)
    if head is not None:
        log(f"sentence head: held-out AUC {head.cv_auc_:.3f} ({head.n_selected_} selected, "
            f"{head.n_unselected_} not); distilled into the word weights: "
            f"{getattr(model, 'distill_', 'no')}")
    extra: list[PairEval] = []
    if eval_data is not None and Path(eval_data).is_file():
        erows = load_rows(eval_data, allow_nc=True, apply_exclusions=False)
        src = erows[0].get("source", "eval") if erows else "eval"
        X_eval = featurize(erows, log, bigrams)
        extra = evaluate_source(erows, model.predict(X_eval), src, length_baseline(X_eval))
        for r in extra:
            log(
                f"  eval-only {src}: {r.strong} vs {r.weak}: APGR {r.result.apgr:.3f} "
                f"AUC {r.result.auc:.3f} (n={r.result.n})"
            )
    info = {
        "data": [p.name for p in paths],
        "data_sha256": {p.name: sha256_file(p) for p in paths},
        "rows_total": all_count,
        "rows_used": len(rows),
        "excluded": dict(reasons),
        "sources": dict(Counter(r["source"] for r in rows)),
        "params": params,
        "n_models": len(models),
        "n_iter": model.n_iter_,
        "nonzero_weights": int(np.count_nonzero(np.abs(model.coef_) > 1e-6)),
        "group_offsets": {
            k: round(v, 4) for k, v in model.group_offsets_.items()
        },
        "python": platform.python_version(),
        "word_prior": features.WORD_PRIOR,
        "short_prior": features.SHORT_PRIOR,
        "short_window": features.SHORT_WINDOW,
    }
    if head is not None:
        info["sentence_head"] = head.info()
    if getattr(model, "distill_", None):
        info["distilled_head"] = model.distill_
    result = TrainResult(model=model, models=models, folds=folds, extra=extra, info=info,
                         head=head)
    if out_dir is not None:
        save(result, Path(out_dir), log)
    return result
