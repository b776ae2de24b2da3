"""Routing quality of model variants on held-out groups, beside prompt length and random.

Each fold trains on everything but the held-out group (same code as ``tierwise train``) and
scores the held-out rows with the contract metrics (APGR, CPT(50%), AUC) for its strong/weak
pairs. Proxies for the sealed blind set (MT-Bench, MMLU, GSM8K; GPT-4 vs Mixtral):

- ``mmlu_pro``: MMLU-Pro items, gpt-4o vs mixtral-8x7b (MMLU proxy)
- ``routerbench``: ARC-C / Winogrande / MBPP, gpt-4-1106 vs mixtral-8x7b (the blind pair)
- ``chat``: Vicuna-80 (GPT-4 judge scores and pairwise verdicts) and OpenAssistant requests,
  gpt-4 / gpt-3.5-turbo vs weaker chat models (MT-Bench proxy: open-ended, judged)
- ``arenahard``: Arena-Hard v0.1 held out, gpt-4-0613 vs gpt-3.5-turbo, gpt-4o vs gpt-4o-mini and
  vs Llama-3.1-8B, each scored by its win rate against gpt-4-0314 (MT-Bench proxy: its successor)
- ``gsm8k``: LLMRouter's GSM8K-like rows, never trained on (evaluation only, see data.py),
  open models 70B vs 7-8B, scored by the model trained on everything
- ``commonsense``, ``natural``, ``fresh``: bench/commonsense's requests.jsonl (length
  uninformative), natural.jsonl (phrased naturally) and fresh.jsonl (written later, apart from
  the others and the anchors), hand-written easy/hard requests, split ``dev``

    python bench/quality_routing.py --variants shipped,no-offsets --out bench/QUALITY_ROUTING.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# mypy resolves bench.commonsense to the data directory bench/commonsense/ (a namespace
# package); Python imports the module bench/commonsense.py, which a regular module wins
from bench.commonsense import auc as pair_auc  # type: ignore[attr-defined]  # noqa: E402
from bench.commonsense import length_matched  # type: ignore[attr-defined]  # noqa: E402
from bench.hand_written import DIR as HAND_WRITTEN_DIR  # noqa: E402
from bench.hand_written import FIFTH, FRESH, NATURAL, REQUESTS  # noqa: E402
from classifiers.conversation import last_user_text  # noqa: E402
from classifiers.data import load_rows, prompt_key, read_jsonl, row_messages  # noqa: E402
from classifiers.features import DENSE_OFF, HASH_OFF, extract_many, to_csr  # noqa: E402
from classifiers.metrics import evaluate_pair  # noqa: E402
from classifiers.sentence_head import WEIGHT as HEAD_WEIGHT  # noqa: E402
from classifiers.sentence_head import TextEmbeddings  # noqa: E402
from classifiers.templates import fit_conversations  # noqa: E402
from classifiers.train import DEFAULT_PARAMS, fit, semantic_table  # noqa: E402
from classifiers.validation import (  # noqa: E402
    length_baseline,
    pair_arrays,
    pair_outcomes,
    pairwise_outcomes,
)

VARIANTS: dict[str, dict[str, float]] = {
    "shipped": {},
    # the sentence head distilled into the word weights (classifiers/sentence_head.py)
    "distilled head weight 1": {"distill": 1.0},
    "distilled head weight 2": {"distill": 2.0},
    "accurate + distilled head weight 1": {"_head": 1, "distill": 1.0},
    "no selection label": {"selection_label": 0},
    # the hand-labeled anchors (data/anchors.jsonl, classifiers/anchors.py)
    "no anchors": {"anchor_weight": 0.0, "anchor_head": 0.0},
    "no anchor head (shipped before 2026-12-06 07:50 UTC)": {"anchor_head": 0.0},
    "accurate head weight 0.3 with anchors in the head": {"_head": 1, "head_anchors": 1},
    "accurate head weight 0.5 with anchors in the head": {"_head": 1, "head_anchors": 1,
                                                          "_head_weight": 0.5},
    "accurate head weight 0.3 with anchors in the head at 0.1": {"_head": 1, "head_anchors": 0.1},
    "accurate head weight 0.3 with anchors in the head at 0.3": {"_head": 1, "head_anchors": 0.3},
    **{f"anchors on {where}: weight {w:g}": {"anchor_weight": w, "anchor_scope": scope}
       for where, scope, weights in (("every weight", 0, (10.0, 30.0)),
                                     ("the embedding only", 1, (5.0, 10.0, 20.0, 30.0, 100.0)))
       for w in weights},
    "selection weight 5": {"selection_weight": 5.0},
    "judged chat weighs 3x": {"chat_weight": 3.0},
    "judged chat weighs 10x": {"chat_weight": 10.0},
    "judged chat weighs 0.5x": {"chat_weight": 0.5},
    # each prompt's labels weigh n ** -power (0.5 shipped: a source with 48 models vs one with 9)
    "prompt weight power 0.25": {"prompt_weight_power": 0.25},
    "prompt weight power 1": {"prompt_weight_power": 1.0},
    "selection weight 20": {"selection_weight": 20.0},
    "per-source offsets": {"offsets": 1},
    "per-source offsets, one for all judged chat": {"offsets": 1, "chat_offsets": 0},
    "label-type offsets (pairwise vs outcome)": {"offsets": 2},
    "with digit features": {"digit_features": 1},
    "no arithmetic feature": {"arithmetic_feature": 0},
    "arithmetic weight learned (at least 0)": {"arithmetic_min": 0.0},
    "arithmetic weight at least 0.5": {"arithmetic_min": 0.5},
    "arithmetic weight at least 2": {"arithmetic_min": 2.0},
    "no non-ASCII feature": {"non_ascii_feature": 0},
    "length weight learned": {"length_weight": -1.0},
    "length weight 2": {"length_weight": 2.0},
    "length weight 6": {"length_weight": 6.0},
    "length weight 8": {"length_weight": 8.0},
    "length weight 12": {"length_weight": 12.0},
    "lean structure (no surface densities)": {"lean": 1},
    "no length prior after the fit": {"length_prior": 0.0},
    "length prior after the fit 2": {"length_prior": 2.0},
    "length prior after the fit 3": {"length_prior": 3.0},
    "length prior after the fit 5": {"length_prior": 5.0},
    "embedding head from judged chat only": {"chat_head": 1},
    "shared head + chat correction": {"chat_head": 2},
    "free per-word weights too": {"unigrams": 1},
    "embedding L2 0.3": {"l2_semantic": 0.3},
    "embedding L2 3": {"l2_semantic": 3.0},
    "embedding L2 30": {"l2_semantic": 30.0},
    "embedding L2 100": {"l2_semantic": 100.0},
    "no embedding (structure only)": {"semantic": 0},
    "benchmarks only (no chat data)": {"_no_chat": 1},
    "sentence encoder + static words": {"_sentence": 1},
    "sentence encoder without static words": {"_sentence": 1, "semantic": 0},
    "sentence encoder L2 3": {"_sentence": 1, "l2_sentence": 3.0},
    "sentence encoder L2 30": {"_sentence": 1, "l2_sentence": 30.0},
    "sentence encoder L2 100": {"_sentence": 1, "l2_sentence": 100.0},
    # the "accurate" scorer: shipped + classifiers/sentence_head.py fitted on the fold's rows
    "accurate (sentence head)": {"_head": 1},  # at the shipped weight, sentence_head.WEIGHT
    "accurate head weight 1": {"_head": 1, "_head_weight": 1.0},
    "accurate head weight 0.5": {"_head": 1, "_head_weight": 0.5},
    "accurate head weight 0.1": {"_head": 1, "_head_weight": 0.1},
    "accurate head weight 0.2": {"_head": 1, "_head_weight": 0.2},
    "accurate head weight 0.3": {"_head": 1, "_head_weight": 0.3},
    # a nonlinear head: K random ReLU features of [pooled static embedding, log_tokens] as a
    # dense block of the IRT beside the linear words (not foldable into the word table)
    "nonlinear head 256 L2 10": {"_relu": 256, "l2_sentence": 10.0},
    "nonlinear head 256 L2 100": {"_relu": 256, "l2_sentence": 100.0},
    # a second copy of the embedding whose word mean is shrunk with 4 or 8 words, not 32
    **{f"short-request words (prior {k:g}) L2 {l2:g}": {"_short": k, "l2_sentence": l2}
       for k in (4.0, 8.0) for l2 in (10.0, 30.0, 100.0)},
    # the anchors' own logistic head on the pooled embedding, added to d at weight beta
    **{f"anchor head {beta:g} C {c:g}": {"anchor_head": beta, "anchor_head_c": c}
       for beta in (0.1, 0.15, 0.2, 0.3, 0.5) for c in (10.0, 100.0)},
    **{f"anchor head {beta:g} C {c:g} without anchors in the IRT": {
        "anchor_head": beta, "anchor_head_c": c, "anchor_weight": 0.0}
       for beta in (0.2, 0.3) for c in (10.0, 100.0)},
    # the embedding's spread within each benchmark cell penalised (train param within_penalty)
    **{f"within-benchmark penalty {lam:g}": {"within_penalty": lam}
       for lam in (0.3, 1.0, 3.0, 10.0, 30.0, 100.0)},
}
CHAT = {"qlora_oa", "qlora_vicuna_pairwise", "qlora_vicuna_relative",
        "fastchat_vicuna80_gpt4review"}
FOLDS: dict[str, Callable[[dict], bool]] = {
    "mmlu_pro": lambda r: r["source"] == "mmlu_pro",
    "routerbench": lambda r: r["source"] == "routerbench",
    "chat": lambda r: r["source"] in CHAT,
    # Vicuna-80 alone (MT-Bench's predecessor): the sentence head can still be fitted on
    # Arena-Hard vs OpenAssistant, so the accurate scorer is measured on open-ended chat
    "vicuna80": lambda r: r["source"] in CHAT - {"qlora_oa"},
    # Arena-Hard held out (MT-Bench's successor: real requests, GPT-4-Turbo judge); the 2023
    # battles' arena_hard_1k requests stay as the selected pool, so a head can still be fitted
    "arenahard": lambda r: r["source"] == "arenahard_v01_forks",
}
PAIRS = {
    "mmlu_pro": [("gpt-4o-2024-05-13", "mixtral-8x7b-instruct-v0.1"),
                 ("meta-llama-3.1-70b-instruct", "meta-llama-3.1-8b-instruct")],
    "routerbench": [("gpt-4-1106-preview", "mixtral-8x7b-instruct-v0.1"),
                    ("gpt-4-1106-preview", "gpt-3.5-turbo-1106")],
    "gsm8k": [("llama-3.1-nemotron-51b-instruct", "mistral-7b-instruct-v0.3"),
              ("meta-llama-3.1-8b-instruct", "llama3-chatqa-1.5-8b")],
    # outcome pairs of the judged chat rows, then pairwise (strong, weak) verdict pairs
    "chat": [("gpt-3.5-turbo-0125", "llama-13b"), ("gpt-3.5-turbo-0125", "alpaca-13b")],
    "chat_pairwise": [("gpt-4-0314", "vicuna-13b"), ("gpt-4-0314", "guanaco-7b"),
                      ("gpt-3.5-turbo-0125", "guanaco-13b")],
}
PAIRS["vicuna80"], PAIRS["vicuna80_pairwise"] = PAIRS["chat"], PAIRS["chat_pairwise"]
# both judged against the same baseline (gpt-4-0314) on all 498 prompts: a model's quality on a
# prompt is its win rate against that baseline (ties half), as Arena-Hard scores it
PAIRS["arenahard_baseline"] = [("gpt-4-0613", "gpt-3.5-turbo-0125"),  # judge gpt-4-1106
                               ("gpt-4o", "gpt-4o-mini"),  # judge gpt-4o
                               ("gpt-4o", "Meta-Llama-3.1-8B-Instruct")]
ARENA_BASELINE = "gpt-4-0314"

# the hand-written sets scored in fold "all" (bench/hand_written.py): (fold name, file)
HAND_WRITTEN = (("commonsense", REQUESTS), ("natural", NATURAL), ("fresh", FRESH),
                ("fifth", FIFTH))


def baseline_outcomes(rows: list[dict], strong: str, weak: str) -> tuple[np.ndarray, ...]:
    """(row index, q_strong, q_weak): each model's win rate against ARENA_BASELINE, one row per
    prompt (the first row of that baseline's group that has both models)."""
    idx, qs, qw, seen = [], [], [], set()
    for i, r in enumerate(rows):
        meta = r.get("meta") or {}
        rates = meta.get("winrate_vs_baseline") or {}
        key = prompt_key(r)
        if meta.get("baseline") == ARENA_BASELINE and strong in rates and weak in rates \
                and key not in seen:
            seen.add(key)
            idx.append(i)
            qs.append(float(rates[strong]))
            qw.append(float(rates[weak]))
    return np.asarray(idx, np.int64), np.asarray(qs), np.asarray(qw)


def score_pairs(name: str, rows: list[dict], scores: np.ndarray, lengths: np.ndarray,
                keep: dict[str, np.ndarray] | None = None) -> list[dict]:
    """APGR of ``scores`` and of prompt length on each strong/weak pair of fold ``name``;
    ``keep`` (if given) receives each pair's item scores and outcomes, "fold|strong|weak|d"
    (and "|qs", "|qw"), for bench/heldout_bootstrap.py."""
    out = []
    for key in (name, name + "_pairwise", name + "_baseline"):
        for strong, weak in PAIRS.get(key, []):
            fn = (pairwise_outcomes if key.endswith("_pairwise") else
                  baseline_outcomes if key.endswith("_baseline") else pair_outcomes)
            idx, qs, qw = fn(rows, strong, weak)
            if idx.size < 20:
                continue
            res = evaluate_pair(scores[idx], qs, qw)
            base = evaluate_pair(lengths[idx], qs, qw)
            if keep is not None:
                keep.update(pair_arrays(f"{name}|{strong}|{weak}", scores[idx], qs, qw))
            out.append({"fold": name, "strong": strong, "weak": weak, "n": int(idx.size),
                        "apgr": res.apgr, "cpt50": res.cpt50, "auc": res.auc,
                        "length_apgr": base.apgr, "length_auc": base.auc})
    return out


EMBED = TextEmbeddings(log=lambda m: print(m, file=sys.stderr))  # text -> sentence embedding


def sentence_embeddings(conversations: list) -> np.ndarray:
    """[n, 384] sentence embeddings of each conversation's last user turn (see --sentence)."""
    return EMBED([last_user_text(c) for c in conversations])


class ReluFeatures:
    """K random ReLU features of the standardized [pooled static embedding, log_tokens] (seed 0),
    standardized on the rows they are built from: a nonlinear head for the IRT to weigh."""

    def __init__(self, k: int, X, emb: np.ndarray) -> None:
        self.emb = emb
        P = self._inputs(X)
        self.mean, self.sd = P.mean(0), P.std(0) + 1e-9
        rng = np.random.default_rng(0)
        self.W = rng.normal(size=(P.shape[1], k)) / np.sqrt(P.shape[1])
        self.b = rng.normal(size=k) * 0.5
        F = self._relu(P)
        self.f_mean, self.f_sd = F.mean(0), F.std(0) + 1e-9

    def _inputs(self, X) -> np.ndarray:
        pooled = np.asarray(X[:, HASH_OFF:DENSE_OFF] @ self.emb)
        return np.hstack([pooled, length_baseline(X)[:, None]])

    def _relu(self, P: np.ndarray) -> np.ndarray:
        return np.maximum(((P - self.mean) / self.sd) @ self.W + self.b, 0.0)

    def __call__(self, X) -> np.ndarray:
        return (self._relu(self._inputs(X)) - self.f_mean) / self.f_sd


class ShortWords:
    """The pooled static embedding again, its word mean shrunk with ``prior`` extra words instead
    of features.WORD_PRIOR (a row rescaling of the shipped block): with its own weights the fit
    can let a short request's words count more than the shipped pooling allows. Foldable into a
    second per-word table (two values per word occurrence) if it ever shipped."""

    def __init__(self, prior: float, emb: np.ndarray) -> None:
        self.prior, self.emb = prior, emb

    def __call__(self, X) -> np.ndarray:
        from classifiers.features import WORD_PRIOR

        words = X[:, HASH_OFF:DENSE_OFF]
        share = np.asarray(words.sum(axis=1)).ravel()  # sum w / (sum w + WORD_PRIOR)
        total = WORD_PRIOR * share / np.maximum(1.0 - share, 1e-9)  # sum w
        scale = (total + WORD_PRIOR) / (total + self.prior)
        return np.asarray(words @ self.emb) * scale[:, None]


def predict(model, X, conversations: list, dense: ReluFeatures | ShortWords | None = None
            ) -> np.ndarray:
    d = model.predict(X)
    u = getattr(model, "sentence_u_", None)
    if u is not None:
        d = d + (dense(X) if dense is not None else sentence_embeddings(conversations)) @ u
    head = getattr(model, "head_", None)
    return d if head is None else d + head.shift(sentence_embeddings(conversations))


def commonsense(model, path: Path, split: str, dense: ReluFeatures | ShortWords | None = None
                ) -> dict:
    """The hand-written set's AUCs for ``model``, by bench/commonsense.py's own rules."""
    items = [r for r in read_jsonl(path) if split == "all" or r.get("split") == split]
    if not items:
        return {}
    convs = [r["messages"] for r in items]
    d = predict(model, to_csr(extract_many(convs)), convs, dense)
    hard = np.asarray([r["label"] == "hard" for r in items])
    n_chars = np.asarray(
        [sum(len(str(m.get("content", ""))) for m in r["messages"]) for r in items], float
    )
    de, dh, le, lh = d[~hard], d[hard], n_chars[~hard], n_chars[hard]
    close = length_matched(le, lh)
    return {"n": len(items), "auc": pair_auc(de, dh), "matched_auc": pair_auc(de, dh, close),
            "length_matched_auc": pair_auc(le, lh, close), "length_auc": pair_auc(le, lh),
            "easy_d_mean": float(de.mean()), "hard_d_mean": float(dh.mean())}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--variants", default="shipped")
    ap.add_argument("--folds", default="mmlu_pro,routerbench,chat,all")
    ap.add_argument("--split", default="dev", help="commonsense split to score")
    ap.add_argument("--out", default=None, help="write all results as JSON")
    ap.add_argument("--md", default=None, help="write the summary table as markdown")
    ap.add_argument("--scores", default=None, metavar="OUT.npz",
                    help="write every held-out pair's item scores and outcomes, per variant "
                         "(for bench/heldout_bootstrap.py)")
    ap.add_argument("--word-prior", type=float, default=None, help="features.WORD_PRIOR")
    ap.add_argument("--short-prior", type=float, default=None,
                    help="features.SHORT_PRIOR (32: the anchors' head weighs words as the "
                         "main block does, as before feature version 7)")
    ap.add_argument("--short-window", type=int, default=None,
                    help="features.SHORT_WINDOW (0: the short-request block holds every word "
                         "of the request, as before feature version 16)")
    ap.add_argument("--anchors", default="data/anchors.jsonl",
                    help="hand-labeled anchor files to train on, comma-separated, relative to "
                         "the repo ('' for none), e.g. "
                         "data/anchors.jsonl,data/anchors-third-writer.jsonl")
    ap.add_argument("--sentence", default=None,
                    help="a cache of sentence embeddings (PREFIX.json texts, PREFIX.npy "
                         "vectors): read if it exists, else written after encoding")
    args = ap.parse_args()
    if args.sentence and Path(args.sentence + ".npy").is_file():
        texts = json.loads(Path(args.sentence + ".json").read_text())
        vecs = np.load(args.sentence + ".npy")
        EMBED.vectors.update(zip(texts, vecs, strict=True))
    import classifiers.features as features

    if args.word_prior is not None:
        features.WORD_PRIOR = args.word_prior
    if args.short_prior is not None:
        features.SHORT_PRIOR = args.short_prior
    if args.short_window is not None:
        features.SHORT_WINDOW = args.short_window
    t0 = time.time()
    bench = load_rows(ROOT / "data" / "routing-train.jsonl.gz")
    chat = load_rows(ROOT / "data" / "routing-chat.jsonl.gz")
    gsm = [r for r in load_rows(ROOT / "data" / "routing-train.jsonl.gz", apply_exclusions=False)
           if (r.get("meta") or {}).get("family") == "gsm8k"]
    anchors = [row for path in args.anchors.split(",") if path
               for row in load_rows(ROOT / path)]
    rows_all = bench + chat + anchors
    keys = [prompt_key(r) for r in rows_all]
    X_all = to_csr(extract_many([row_messages(r) for r in rows_all]))  # scored as sent
    # what a fit learns from: without each source's template lines (train param "templates")
    X_fit = to_csr(extract_many(fit_conversations(rows_all)))
    X_gsm = to_csr(extract_many([row_messages(r) for r in gsm]))
    emb_sent, emb_fit = semantic_table(rows_all, X_all), semantic_table(rows_all, X_fit)
    print(f"features + table in {time.time() - t0:.0f}s", file=sys.stderr)
    results: dict[str, list] = {}
    kept: dict[str, np.ndarray] = {}  # --scores: "variant|fold|strong|weak|d" -> array
    for vname in args.variants.split(","):
        params = {**DEFAULT_PARAMS, **VARIANTS[vname]}
        no_chat = params.pop("_no_chat", 0)
        use_sentence = params.pop("_sentence", 0)
        use_head = params.pop("_head", 0)
        head_weight = params.pop("_head_weight", HEAD_WEIGHT)
        relu = int(params.pop("_relu", 0))
        short = float(params.pop("_short", 0.0))
        X_learn, emb = (X_fit, emb_fit) if params.get("templates") else (X_all, emb_sent)
        pool = np.asarray([not (no_chat and len(bench) <= i < len(bench) + len(chat))
                           for i in range(len(rows_all))])
        res: list = []
        keep: dict[str, np.ndarray] | None = {} if args.scores else None
        for fold in args.folds.split(","):
            t1 = time.time()
            test = np.asarray([fold != "all" and FOLDS[fold](r) for r in rows_all])
            held = {k for k, t in zip(keys, test, strict=True) if t}
            tr = pool & ~test & np.asarray([k not in held for k in keys])
            tr_rows = [r for r, k in zip(rows_all, tr, strict=True) if k]
            dense: ReluFeatures | ShortWords | None = (
                ReluFeatures(relu, X_learn[tr], emb) if relu else
                ShortWords(short, emb) if short else None)
            sent = sentence_embeddings([row_messages(r) for r in tr_rows]) if use_sentence else (
                dense(X_learn[tr]) if dense is not None else None)
            # the fold's own head (and its distillation into the words, unless "distill": 0)
            m, _ = fit(X_learn[tr], tr_rows, params, emb, sent, embed=EMBED)
            if getattr(m, "head_", None) is None:
                print(f"{vname} {fold}: no head (a selection pool is held out)", file=sys.stderr)
            elif use_head:  # the accurate scorer: the head's shift at run time too
                m.head_.weight = head_weight
            else:
                m.head_ = None
            if fold == "all":
                d_gsm = predict(m, X_gsm, [row_messages(r) for r in gsm], dense)
                res += score_pairs("gsm8k", gsm, d_gsm, length_baseline(X_gsm), keep)
                for fold_name, file in HAND_WRITTEN:
                    path = HAND_WRITTEN_DIR / file
                    cs = commonsense(m, path, args.split, dense) if path.is_file() else {}
                    res.append({"fold": fold_name, **cs})
            else:
                te_rows = [r for r, k in zip(rows_all, test, strict=True) if k]
                d_te = predict(m, X_all[test], [row_messages(r) for r in te_rows], dense)
                res += score_pairs(fold, te_rows, d_te, length_baseline(X_all[test]), keep)
            print(f"{vname} {fold}: {time.time() - t1:.0f}s, {m.n_iter_} iterations",
                  file=sys.stderr)
            for r in res:
                if r["fold"] == fold or (fold == "all" and r["fold"] in (
                        "gsm8k", *(name for name, _ in HAND_WRITTEN))):
                    print(vname, json.dumps({k: round(v, 3) if isinstance(v, float) else v
                                             for k, v in r.items()}), flush=True)
        results[vname] = res
        kept.update({f"{vname}|{k}": v for k, v in (keep or {}).items()})
    if args.sentence and EMBED.vectors and not Path(args.sentence + ".npy").is_file():
        texts = sorted(EMBED.vectors)
        Path(args.sentence + ".json").write_text(json.dumps(texts))
        np.save(args.sentence + ".npy", np.vstack([EMBED.vectors[t] for t in texts]))
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1) + "\n")
    if args.scores:
        np.savez_compressed(args.scores, **kept)
    if args.md:
        Path(args.md).write_text(markdown(results, args))
    return 0


COLUMNS = [  # (fold, strong, weak, header)
    ("mmlu_pro", "gpt-4o-2024-05-13", "mixtral-8x7b-instruct-v0.1", "MMLU-Pro 4o vs Mixtral"),
    ("routerbench", "gpt-4-1106-preview", "mixtral-8x7b-instruct-v0.1",
     "RouterBench GPT-4 vs Mixtral"),
    ("gsm8k", "llama-3.1-nemotron-51b-instruct", "mistral-7b-instruct-v0.3",
     "GSM8K-like 51B vs 7B"),
    ("chat", "gpt-3.5-turbo-0125", "llama-13b", "Vicuna-80 3.5 vs llama-13b"),
    ("chat", "gpt-4-0314", "vicuna-13b", "OA+Vicuna GPT-4 vs vicuna-13b"),
]


def markdown(results: dict[str, list], args: argparse.Namespace) -> str:
    import platform
    from datetime import UTC, datetime

    def cell(res: list, fold: str, strong: str, weak: str, key: str) -> str:
        hit = [r for r in res if r["fold"] == fold and r.get("strong") == strong
               and r.get("weak") == weak]
        return f"{hit[0][key]:.3f}" if hit else "-"

    head = "| variant | " + " | ".join(c[3] for c in COLUMNS)
    head += "".join(f" | {name} {args.split} AUC | {name} length-matched AUC"
                    for name, _ in HAND_WRITTEN) + " |"
    lines = ["# Routing quality of model variants (bench/quality_routing.py)", "",
             f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; machine: {platform.machine()}, "
             f"Python {platform.python_version()}",
             f"- command: `python bench/quality_routing.py --variants ... --split {args.split}`",
             "- APGR on held-out groups (the model never saw the group; GSM8K-like rows are never "
             "trained on), common-sense AUC on the hand-written set's dev split; random = 0.500",
             "", head, "|---" * (len(COLUMNS) + 1 + 2 * len(HAND_WRITTEN)) + "|"]
    first = next(iter(results.values()))
    lines.append("| prompt length alone | " + " | ".join(
        cell(first, f, s, w, "length_apgr") for f, s, w, _ in COLUMNS) + " | " + " | ".join(
        f"{r[k]:.3f}" if k in r else "-" for fold, _ in HAND_WRITTEN for r in first
        if r["fold"] == fold for k in ("length_auc", "length_matched_auc")) + " |")
    for name, res in results.items():
        sets: list[dict] = [next((r for r in res if r["fold"] == f), {})
                            for f, _ in HAND_WRITTEN]
        lines.append(f"| {name} | " + " | ".join(cell(res, f, s, w, "apgr")
                                                for f, s, w, _ in COLUMNS)
                     + "".join(f" | {cs.get('auc', float('nan')):.3f} | "
                               f"{cs.get('matched_auc', float('nan')):.3f}" for cs in sets)
                     + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
