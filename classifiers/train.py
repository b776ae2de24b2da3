"""Train the shipped difficulty model: data -> features -> IRT fit -> ONNX + tables + card.

Deterministic: no random state except the fixed L-BFGS start; the same data gives the same
weights. Progress goes to the ``log`` callback (stderr in the CLI).
"""

from __future__ import annotations

import json
import platform
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .conversation import flatten
from .data import build_pairs, excluded, load_rows, read_jsonl, row_messages, sha256_file
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
from .irt import IRTDifficulty
from .names import CANONICAL
from .scorer import FEATURE_VERSION
from .validation import PairEval, evaluate_source, loso

DEFAULT_PARAMS: dict[str, float] = {
    "l2": 3.0,
    "l2_ability": 0.01,
    "prompt_weight_power": 0.5,
    "semantic_dims": 0,  # >0: add pooled MiniLM word embeddings (folded into word weights)
    "semantic_scale": 3.0,
    "bigrams": 0,  # 1: add hashed word bigrams (same hashed space)
    "unigrams": 1,  # 0: no free per-word weights; word weights come only from the embedding
}


@dataclass
class TrainResult:
    model: IRTDifficulty
    models: list[str]
    folds: list[PairEval]
    extra: list[PairEval] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)


def featurize(rows: list[dict], log: Callable[[str], None] = print, bigrams: bool = False) -> Any:
    t0 = time.perf_counter()
    msgs = [row_messages(r) for r in rows]
    feats = [extract(m, True) for m in msgs] if bigrams else extract_many(msgs)
    log(f"featurized {len(rows)} prompts in {time.perf_counter() - t0:.1f}s")
    return to_csr(feats)


def fisher_variance(
    X: Any, irt: IRTDifficulty, coef: np.ndarray, pairs: Any, l2: float
) -> np.ndarray:
    """Diagonal-Laplace variance 1 / (H_jj + l2) of every feature as if its weight were free.

    For features the fit did not weigh freely (folded unigrams) this is a coverage measure: the
    posterior variance a free weight would have, large for tokens the data rarely saw.
    """
    n = X.shape[0]
    d = np.asarray(X @ coef).ravel()
    p = 1.0 / (1.0 + np.exp(-(irt.abilities_[pairs.model] - d[pairs.prompt])))
    counts = np.bincount(pairs.prompt, minlength=n).astype(np.float64)
    w = np.power(np.maximum(counts[pairs.prompt], 1.0), -irt.prompt_weight_power)
    h = np.bincount(pairs.prompt, weights=w * p * (1 - p), minlength=n)
    X = X.tocsr().astype(np.float64)
    X.sum_duplicates()
    return 1.0 / (np.asarray(X.multiply(X).T @ h).ravel() + l2)


def fit(X: Any, rows: list[dict], params: dict[str, float]) -> tuple[IRTDifficulty, list[str]]:
    """Fit the IRT model; with ``semantic_dims`` the embedding part is folded into unigrams."""
    from scipy import sparse

    pairs = build_pairs(rows)
    irt = IRTDifficulty(
        l2=float(params.get("l2", 3.0)),
        l2_ability=float(params.get("l2_ability", 0.01)),
        prompt_weight_power=float(params.get("prompt_weight_power", 0.5)),
    )
    dims = int(params.get("semantic_dims", 0))
    if dims <= 0:
        if not params.get("unigrams", 1):  # structure features only
            keep = np.zeros(X.shape[1])
            keep[DENSE_OFF:] = 1.0
            X = (X @ sparse.diags(keep)).tocsr()
        return irt.fit(X, pairs.prompt, pairs.model, pairs.y, len(pairs.models)), pairs.models
    from .distill import corpus_words, hashed_table

    words = corpus_words([t for r in rows for t, _ in flatten(row_messages(r)).segments])
    emb = hashed_table(HASH_BITS, dims, words).astype(np.float64)
    emb *= float(params.get("semantic_scale", 1.0))
    sem = sparse.csr_matrix(X[:, HASH_OFF:DENSE_OFF] @ emb)
    free = bool(params.get("unigrams", 1))
    base = (
        X
        if free
        else sparse.hstack([sparse.csr_matrix((X.shape[0], DENSE_OFF)), X[:, DENSE_OFF:]]).tocsr()
    )
    irt.fit(
        sparse.hstack([base, sem]).tocsr(), pairs.prompt, pairs.model, pairs.y, len(pairs.models)
    )
    u = irt.coef_[N_FEATURES:]
    coef = irt.coef_[:N_FEATURES].copy()
    coef[HASH_OFF:DENSE_OFF] += emb @ u  # X_w @ (E u) == (X_w @ E) @ u: exact fold
    irt.coef_ = coef
    irt.var_ = irt.var_[:N_FEATURES] if free else fisher_variance(X, irt, coef, pairs, irt.l2)
    return irt, pairs.models


def train(
    data: str | Path,
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
    data: str | Path,
    out_dir: str | Path | None,
    params: dict[str, float] | None,
    eval_data: str | Path | None,
    validate: bool,
    log: Callable[[str], None],
) -> TrainResult:
    params = {**DEFAULT_PARAMS, **(params or {})}
    all_rows = read_jsonl(data)
    reasons = Counter(r for r in (excluded(row) for row in all_rows) if r)
    rows = load_rows(data)
    log(f"{data}: {len(all_rows)} rows, {len(rows)} kept, excluded: {dict(reasons)}")
    bigrams = bool(params.get("bigrams", 0))
    X = featurize(rows, log, bigrams)
    folds: list[PairEval] = []
    if validate:
        log("leave-one-source-out validation:")

        def fit_predict(tr: np.ndarray, te: np.ndarray) -> np.ndarray:
            sub = [r for r, keep in zip(rows, tr, strict=True) if keep]
            m, _ = fit(X[tr], sub, params)
            return m.predict(X[te])

        folds = loso(rows, fit_predict, log=log)
    log("fitting on all rows ...")
    t0 = time.perf_counter()
    model, models = fit(X, rows, params)
    log(f"fit: {model.n_iter_} L-BFGS iterations, {time.perf_counter() - t0:.1f}s")
    extra: list[PairEval] = []
    if eval_data is not None and Path(eval_data).is_file():
        erows = load_rows(eval_data, allow_nc=True, apply_exclusions=False)
        src = erows[0].get("source", "eval") if erows else "eval"
        extra = evaluate_source(erows, model.predict(featurize(erows, log, bigrams)), src)
        for r in extra:
            log(
                f"  eval-only {src}: {r.strong} vs {r.weak}: APGR {r.result.apgr:.3f} "
                f"AUC {r.result.auc:.3f} (n={r.result.n})"
            )
    info = {
        "data": str(Path(data).name),
        "data_sha256": sha256_file(data),
        "rows_total": len(all_rows),
        "rows_used": len(rows),
        "excluded": dict(reasons),
        "sources": dict(Counter(r["source"] for r in rows)),
        "params": params,
        "n_models": len(models),
        "n_iter": model.n_iter_,
        "nonzero_weights": int(np.count_nonzero(np.abs(model.coef_) > 1e-6)),
        "python": platform.python_version(),
    }
    result = TrainResult(model=model, models=models, folds=folds, extra=extra, info=info)
    if out_dir is not None:
        save(result, Path(out_dir), log)
    return result


def save(result: TrainResult, out: Path, log: Callable[[str], None] = print) -> None:
    from .onnx_model import build

    out.mkdir(parents=True, exist_ok=True)
    m = result.model
    weights = m.coef_.astype(np.float32)
    variances = m.var_.astype(np.float32)
    weights[0] = 0.0
    variances[0] = 0.0
    build(weights, variances, out / "model.onnx")
    meta = {
        "feature_version": FEATURE_VERSION,
        "n_features": N_FEATURES,
        "hash_bits": HASH_BITS,
        "bigrams": bool(result.info["params"].get("bigrams", 0)),
        "dense_features": {
            n: round(float(m.coef_[DENSE_OFF + i]), 5) for i, n in enumerate(DENSE_NAMES)
        },
        **result.info,
    }
    (out / "model.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
    abilities = {n: round(float(a), 4) for n, a in zip(result.models, m.abilities_, strict=True)}
    spellings: dict[str, list[str]] = {}
    for spelled, canon in sorted(CANONICAL.items()):
        if canon in abilities:
            spellings.setdefault(canon, []).append(spelled)
    (out / "abilities.json").write_text(
        json.dumps(
            {
                "note": "IRT abilities: P(model does well on x) = sigmoid(ability - d(x)).",
                "abilities": dict(sorted(abilities.items(), key=lambda kv: -kv[1])),
                "data_spellings": spellings,
            },
            indent=1,
        )
        + "\n"
    )
    (out / "validation.json").write_text(
        json.dumps(
            [
                {"source": f.source, "strong": f.strong, "weak": f.weak, **f.result.as_dict()}
                for f in result.folds + result.extra
            ],
            indent=1,
        )
        + "\n"
    )
    log(f"wrote {out}/model.onnx, model.json, abilities.json, validation.json")
