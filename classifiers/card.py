"""Write ``MODEL_CARD.md`` for a trained model directory from its JSON files (and, in a source
checkout, the bench/ results it quotes: latency, the common-sense set, the variants measured)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent.parent / "bench"
LICENSES = {
    "llmrouter_dcrouter": "MIT (ulab-uiuc/LLMRouter) - licenses/llmrouter_ulab.LICENSE",
    "mmlu_pro": "Apache-2.0 (TIGER-AI-Lab/MMLU-Pro) - licenses/mmlu_pro.LICENSE",
    "routerbench": "MIT (withmartian/routerbench) - licenses/routerbench.LICENSE",
    "zeroeval_crux": "Apache-2.0 (yuchenlin/ZeroEval) - licenses/zeroeval.LICENSE",
    "zeroeval_math-l5": "Apache-2.0 (yuchenlin/ZeroEval) - licenses/zeroeval.LICENSE",
    "routerarena": "Apache-2.0 (RouteWorks/RouterArena) - licenses/routerarena.LICENSE",
    "arenahard_v01_forks": (
        "Apache-2.0 (lmarena/arena-hard-auto) - licenses/arena_hard_auto.LICENSE"
    ),
    "ko_arenahard_v01": "Apache-2.0 (ko-arena-hard-auto) - licenses/ko_arena_hard_auto.LICENSE",
    "qlora_oa": "MIT (artidoro/qlora) - licenses/qlora.LICENSE",
    "qlora_vicuna_pairwise": "MIT (artidoro/qlora) - licenses/qlora.LICENSE",
    "fastchat_vicuna80_gpt4review": "Apache-2.0 (lm-sys/FastChat) - licenses/fastchat.LICENSE",
    "fastchat_arena_battles_2023": "Apache-2.0 (lm-sys/FastChat) - licenses/fastchat.LICENSE",
    "mifeval": "Apache-2.0 (shisa-ai/M-IFEval) - licenses/m_ifeval.LICENSE",
    "tierwise_anchors": "Apache-2.0 (written for tierwise) - data/README.md",
}


def _fmt(x: float | None) -> str:
    return "-" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{x:.3f}"


def validation_table(entries: list[dict]) -> str:
    lines = [
        "| held-out source | strong | weak | n | APGR | prompt length | random | oracle APGR "
        "| CPT(20%) | CPT(50%) | CPT(80%) | AUC |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for e in entries:
        lines.append(
            f"| {e['source']} | {e['strong']} | {e['weak']} | {e['n']} | **{_fmt(e['apgr'])}** "
            f"| {_fmt(e.get('length_apgr'))} | 0.500 | {_fmt(e['oracle_apgr'])} "
            f"| {_fmt(e['cpt20'])} | {_fmt(e['cpt50'])} | {_fmt(e['cpt80'])} | {_fmt(e['auc'])} |"
        )
    return "\n".join(lines)


def _bench_file(name: str, heading: str, command: str) -> str:
    """A bench/ result quoted whole, or a pointer to the command that makes it."""
    path = BENCH / name
    if not path.is_file():
        return f"## {heading}\n\nSee bench/{name} (`{command}`).\n"
    body = path.read_text().split("\n", 1)[1].strip()  # drop the file's own title
    return f"## {heading} (`{command}`, copied from bench/{name})\n\n{body}\n"


def extra_sections() -> str:
    return "\n".join(
        [
            _bench_file("COMMONSENSE.md", "Common-sense set", "python bench/commonsense.py"),
            _bench_file("QUALITY_ROUTING.md", "Variants measured",
                        "python bench/quality_routing.py"),
            _bench_file("FEATURE_SHARES.md", "Feature signs and shares",
                        "python bench/feature_shares.py"),
            _bench_file("LATENCY.md", "Latency, size, memory", "python bench/latency.py"),
            LIMITATIONS,
        ]
    )


LIMITATIONS = """## Limitations (read before trusting the numbers)

- Held-out quality on benchmark sources is only a little better than random (see the
  leave-one-source-out table): a single difficulty per prompt cannot say where one particular
  stronger model helps (`tierwise learn`-style pair heads are the way to that, issue 14).
- The topic signal the benchmarks teach generalises to common sense only a little: in "Feature
  signs and shares" the IRT's word (embedding) block moves d about as much as length does, yet
  alone it ranks the length-uninformative hand-written set at AUC 0.64 and GSM8K-like items at
  0.52; the anchors' head (the short-request block, 440 hand-labeled requests) ranks them at
  0.81 and 0.54 (0.71 for the two in one block before feature version 7, 0.52 before the
  anchors). The benchmark and judged-chat labels contain almost no trivially easy requests, so
  without the anchors "what is 12*3?" vs "prove ..." would be decided mostly by length.
- The length weight is a prior, not learned: benchmark and judged-chat labels hardly vary with
  length within a source (their prompts are of one kind), while real traffic spans a greeting to
  a design document, where length is the strongest single signal. It is fixed at the value in
  model.json (`length_weight`); see "Variants measured" for what other values did.
- The topic signal is a 128-dim static MiniLM embedding averaged over the words, folded into
  per-word weights: no word order, no negation. A word outside MiniLM's whole-word vocabulary
  is read as the mean of its WordPieces (feature version 6; before, a word the training data
  lacked added nothing), within a budget per request (words of at most 32 bytes, 4,096 bytes of
  them; later ones keep a hash bucket that is empty unless a vocabulary word shares it);
  non-English words carry little meaning in MiniLM's English vocabulary.
- Language still moves d a little: `non_ascii_fraction` is left out (train param
  `non_ascii_feature` 0: it learned "not English = hard" from the weakest models of M-IFEval and
  Korean Arena-Hard), but the token estimate of non-Latin scripts and `bytes_per_token` differ by
  script, so one easy question in seven languages spans about 0.5 of d
  (tests/test_routing_sense.py bounds it below 0.8).
- Few words mean little evidence: the IRT's word block is shrunk towards the typical request
  (`WORD_PRIOR`), so a short request is scored mostly by its length, its shape and the anchors'
  head (shrunk only by `SHORT_PRIOR`).
- Abilities are on one scale only through models shared between sources; set abilities in the
  policy, or run `tierwise calibrate ability`, for models that matter.
- Uncertainty is a coverage measure (diagonal Laplace), not calibrated item-level noise.
  Structure the training data never carried (images, audio, an empty request) adds the prior's
  variance, 1 logit^2, and so often one tier more; a system prompt, a JSON response format and
  an agent's tool exchange do not (`features.READ_FLAGS`).
- The training data has no system prompts, so a system (or developer) prompt is not scored:
  it is flagged and counted in `n_tokens`, and d is that of the conversation without it
  (feature version 11). A system prompt that holds the task while the user turn holds only the
  material ("Translate everything into Latin" + a paragraph) is scored on the material; a
  request made only of a system prompt is scored on it.
- Nor has it agent traces, so an agent's tool exchange (a tool call's name and arguments, a
  tool message's text) is not scored either: flagged, counted in `n_tokens`, and an agent's
  next step routes like the request it serves (feature version 18; scored as turns, one step
  later 53% of real chat requests went a tier up, and after a long tool result 66% changed
  tier, mostly down). A task whose difficulty only shows in a tool's result (a stack trace
  after "fix the failing test") is scored on the request's words.
- How a text was typed is not read by the fast scorer (feature versions 12-15): whitespace
  around a message, runs of spaces after a line's indentation, markdown bold, Unicode spaces and
  typographic quotes read as plain text (bench/INVARIANCE.md); text parts join with a space
  (version 17); a blank line reads as one line break, and the first break after a sentence,
  outside code and maths, is free (version 19: one Enter after a request's first sentence moved
  14% of real chat requests a tier down, 1.1% since); a user turn's opening greeting and
  closing thank-you are dropped when it says something else (version 20: "Hi! " and " Thanks!"
  moved 3.7% and 3.9% of tiers, 0 since); a code fence line (``` or ~~~) is not read and
  `code_fence` is out of the fit (version 21: the same code without its fences moved 12 of the
  25 fenced real chat requests a tier up, 1 since); a markdown heading's marks ("## " to
  "###### ") are not read (version 22: a heading put on the first line moved 4.7% of tiers up,
  0.1% since). Case is not learned from (2026-12-08, R14: `upper_fraction` out of the fit;
  upper-casing a request moved 9.7% of tiers, 0 since). Indentation and further line breaks
  are still read, and so is a question mark: a request's final "?" left off moves 1.7% of tiers
  up
  (`log_questions`; leaving it out of the fit lost 0.078 on the dev splits, so it stays). The
  accurate scorer's sentence encoder reads the last user turn raw, so "Hi! " moves 2.7% and
  markdown bold 2.6% of tiers with it (2026-12-08 04:41 UTC). Reading it as the fast scorer
  does failed its rule twice on 2026-12-08, by two requests of the bold row and then by one
  request of the "Hey there" row (bench/QUALITY_ROUTING.md).
"""


def head_section(head: dict | None) -> str:
    """The card's section on the "accurate" scorer's sentence head (model.json's entry)."""
    if not head:
        return ("## The \"accurate\" scorer\n\nThis model has no sentence head: only "
                "`scorer = \"fast\"` can use it.\n")
    return f"""## The "accurate" scorer (`classifiers/sentence_head.py`, `{head["file"]}`)

`scorer = "accurate"` (policy key; `tierwise score --scorer accurate`) adds to the fast d above
`weight * (logit - centre)`: a logistic regression (C = {head["C"]}) on the sentence embedding
of a 3-layer student of all-MiniLM-L6-v2 (trained to give from the first 48 WordPieces MiniLM's
vector of the first 64; int8 ONNX, `classifiers/minilm_encoder/`) of the
{head["text"]}, trained on {head["label"]}: {head["n_selected"]} selected and
{head["n_unselected"]} unselected distinct requests; 5-fold held-out AUC {head["cv_auc"]:.3f}.
weight = {head["weight"]} (chosen on the common-sense set's dev split, bench/COMMONSENSE.md);
centre = {head["centre"]:+.4f}, the mean logit of the training requests. The sum is then
levelled: accurate d = {head.get("offset", 0.0):+.4f} + {head.get("scale", 1.0):.4f} x (fast d +
shift), which gives {head.get("level_requests", 0)} distinct judged-chat requests the fast d's
median and 20-80% spread, so a policy's abilities send real chat traffic to the tiers in about
the same shares under both scorers. Uncertainty is the fast model's, times the same scale. The
IRT outcomes themselves were tried as the label (the embedding as a block of the IRT) and
learned which benchmark a prompt came from. Measured below, beside the fast scorer:
"Common-sense set" (both scorers), "Variants measured" (the sentence rows), "Latency, size,
memory" (the whole accurate scorer). Why "fast" stays the default: the accurate scorer costs
milliseconds per request and did not beat it on held-out benchmark sources.
"""


def write_card(model_dir: str | Path, extra: str | None = None) -> Path:
    d = Path(model_dir)
    meta = json.loads((d / "model.json").read_text())
    val = json.loads((d / "validation.json").read_text())
    abil = json.loads((d / "abilities.json").read_text())["abilities"]
    size = sum(p.stat().st_size for p in d.iterdir() if p.is_file() and p.suffix != ".md")
    folds = [e for e in val if e["source"] != "alpaca_eval"]
    evalonly = [e for e in val if e["source"] == "alpaca_eval"]
    mean_apgr = float(np.mean([e["apgr"] for e in folds])) if folds else float("nan")
    lengths = [e["length_apgr"] for e in folds if e.get("length_apgr") is not None]
    mean_length = float(np.mean(lengths)) if lengths else float("nan")
    beats = sum(e["apgr"] > e["length_apgr"] for e in folds if e.get("length_apgr") is not None)
    top = list(abil.items())
    src_lines = "\n".join(
        f"| {s} | {n} | {LICENSES.get(s, '?')} |" for s, n in sorted(meta["sources"].items())
    )
    files = meta["data"] if isinstance(meta["data"], list) else [meta["data"]]
    shas = meta["data_sha256"] if isinstance(meta["data_sha256"], dict) else {}
    file_lines = "\n".join(f"- `data/{f}` (sha256 `{shas.get(f, '?')}`)" for f in files)
    params = meta["params"]
    dense = ", ".join(f"`{k}` {v:+.3f}" for k, v in meta["dense_features"].items() if v)
    offsets = meta.get("group_offsets") or {}
    offsets_text = (
        f"each source (and benchmark family) has a free offset on d in training only, so "
        f"difficulty is learned within groups (fitted range {min(offsets.values()):+.2f} to "
        f"{max(offsets.values()):+.2f}); no offset at prediction time."
        if offsets
        else "off in this model. With a free offset per source (and benchmark family) in "
        "training, difficulty is learned within groups only; measured, that was worse on most "
        "held-out groups and on the common-sense set (see \"Variants measured\"): the "
        "differences between sources carry real signal (a MATH problem is harder than a "
        "trivia question), and the artifacts they also carry are handled by the label checks "
        "above and by leaving the digit features out."
    )
    text = f"""# tierwise difficulty model

Predicts the difficulty d(x) of an OpenAI chat conversation in logit units, so that
P(model m does well on x) = sigmoid(ability_m - d(x)) (a 1-parameter logistic IRT model).
A router sends a request to the cheapest tier whose P clears the policy's quality target.

## Training data

{file_lines}
- rows: {meta["rows_total"]} in the files, {meta["rows_used"]} used; {meta["n_models"]} models
  after merging spellings (`classifiers/names.py`).
- excluded (`classifiers/data.py`): {json.dumps(meta["excluded"])}.
  Blind-set protection: the 7 `llmrouter_dcrouter` MMLU test rows, the whole `llmrouter_dcrouter`
  GSM8K family (its provenance against GSM8K's test split cannot be verified; it is used as an
  evaluation-only GSM8K proxy in bench/quality_routing.py), RouterArena's MMLU-Pro subset.
  Label checks: families where the best of the models scores at or near chance (TriviaQA exact
  match 22%, GPQA 25% with 4 choices, logic grids 31%) are grading artifacts a difficulty model
  would learn as "hard"; `qlora_vicuna_relative` scores every 7B-65B model above gpt-3.5-turbo
  (0.91 vs 0.57) because its scale is relative to a gpt-3.5 answer judged beside it.
  `data/alpaca-eval-nc.jsonl.gz` (CC BY-NC 4.0) is used for evaluation only.
  Templates (`classifiers/templates.py`, train param `templates`): a line found verbatim in 20
  or more distinct prompts of one source (RouterBench's ARC 5-shot preamble and "Print only a
  single choice ..." line, CRUXEval's instruction, RouterArena's "Options:") is left out of the
  training rows' features; every scored row is read as sent. Since 2026-12-08 (R14 in
  bench/QUALITY_ROUTING.md): leave-one-source-out +0.0025 with `upper_fraction` out of the fit.

| source | rows used | license |
|---|---|---|
{src_lines}

## Labels and likelihood (`classifiers/irt.py`)

- Outcome rows (benchmarks, IFEval, judge scores / 10): P(model m does well) = sigmoid(a_m - d(x)),
  soft labels.
- Pairwise verdicts (Arena-Hard, Chatbot Arena 2023 human votes, OpenAssistant and Vicuna-80
  judged by GPT-4 in both orders): Bradley-Terry on the same abilities with a prompt-dependent
  scale, P(A beats B) = sigmoid(exp(d(x)) * (a_A - a_B)), ties counting half. Why this and not
  RouteLLM's reading (weak model sufficient when it wins or ties): that reading needs to know
  which model is the weaker before fitting and throws away the size of the gap; the scaled
  Bradley-Terry says what a router needs, that on an easy request any two models tie or split
  at random and on a hard one the more able model wins reliably, and it puts verdicts on the
  same difficulty scale as the outcome rows. Verdicts are aggregated per (prompt, pair);
  Arena-Hard's repeated strong verdicts keep their weight; a prompt that appears in k rows of a
  source (one per judge/baseline group) weighs 1/k per row.
- Per-group offsets: {offsets_text}
- Selection label (`selection_label` = {params.get("selection_label")}): Arena-Hard and the
  arena_hard_1k subset of the 2023 Arena battles are real user requests *selected* as hard by an
  LLM judge (specificity, domain knowledge, complexity, problem solving, technical accuracy);
  OpenAssistant and Vicuna-80 requests were not. Each of those requests gets one more outcome
  label, for a virtual model "a request of the unselected pool", so the contrast teaches what
  makes a real request hard.
- Hand-labeled anchors (`anchor_weight` = {params.get("anchor_weight", 0)}, `anchor_scope` =
  {params.get("anchor_scope", 0)}): the 440 requests of `data/anchors.jsonl`, written for tierwise
  and labeled easy (a 7-8B chat model answers it well) or hard, 12 kinds, length varied
  independently of the label on purpose (data/README.md). Each label is an outcome of a virtual
  model (its ability is not shipped) and weighs `anchor_weight` times one benchmark label. With
  `anchor_scope` 1 they move the embedding's weights u only: every structure and length weight
  is fixed at the fit without them, so a set written with long easy and short hard requests
  cannot teach "long = easy" (it did with scope 0: natural dev AUC 0.943 -> 0.900 at weight 30).
  What they bring is the benchmarks' missing piece, a person's idea of a hard topic; what they
  cost is some of the within-benchmark ranking the embedding had learned
  (bench/QUALITY_ROUTING.md, "Hand-labeled anchors").
- The anchors' own head (`anchor_head` = {params.get("anchor_head", 0)}, `anchor_head_c` =
  {params.get("anchor_head_c", "-")}): inside the fit the anchors' labels share the embedding's
  one direction with every benchmark and chat label, and the word block reads the hand-written
  dev splits barely above chance by itself (AUC 0.52-0.63). A logistic regression of the
  anchors' hard/easy labels on their pooled embeddings alone (sklearn, L2 `C` = `anchor_head_c`)
  reads them far better (`python bench/anchor_head.py`). Since feature version 7 the head is
  fitted on, and weighs, a second copy of the word block (in the fit; model.onnx keeps it as a
  third column of the word rows) whose mean is shrunk by `SHORT_PRIOR`
  = {meta.get("short_prior", "?")} extra words, not `WORD_PRIOR`: a ten-word request's words
  count 10/(10 + {meta.get("short_prior", "?")}) of their mean there. Since feature version
  16 that block holds only the first and the last `SHORT_WINDOW` =
  {meta.get("short_window", "?")} words of a longer last user turn (where a request says what
  it wants, not the material or story between), so the anchors' head reads a long request's
  instruction as it reads a one-line request. `anchor_head` times
  `E @ w` is that block's per-word table (no variance: a fixed prior), and the abilities move by
  the head's mean over the training prompts. Chosen on the dev splits and held-out folds
  (bench/QUALITY_ROUTING.md, "The anchors' own head", "A short-request block for the
  anchors' head" and "The anchors' head reads both ends of a request").
- Convergence: L-BFGS-B to ftol 1e-10 / gtol 1e-8, so another CPU's BLAS kernels move d by
  under 0.001, not 0.03 (`trained_with` in model.json names this model's numeric stack).

## Features (`classifiers/features.py`, `classifiers/embedding.py`)

Words of every message, hashed straight from the lower-cased UTF-8 bytes in numpy; a word
outside MiniLM's whole-word vocabulary is split into its WordPieces (MiniLM's tokenizer, only
for those words, cached; `classifiers/wordpieces.py`), the word's value shared evenly by its
pieces, so its embedding is their mean as in the static model. Each occurrence is weighted by
its message (last user turn 1.0, other turns 0.5; a system prompt is not scored, feature
version 11, nor a tool exchange, version 18); the word block is a weighted
mean shrunk towards the typical request by `WORD_PRIOR` = {meta.get("word_prior", "?")} extra
zero words (a three-word request's words weigh 3/(3 + prior) of a full mean). Each word's (or
piece's) value is its static MiniLM embedding (all-MiniLM-L6-v2 distilled with model2vec, 128
dims, shipped in `data/minilm-static/`), centred on the training corpus's mean text; the fit
learns one weight vector u on the pooled embedding, and `E @ u` folds into the per-word (and
per-piece) table at export, so the request path stays one look-up per word or piece.
Free per-word weights: {"on" if params.get("unigrams") else "off"}.
Structure features and their weights: {dense}.
Length: `log_tokens_last_user` weight fixed at {params.get("length_weight")} (a prior, see
Limitations), `log_tokens` bounded below by 0 (length may only make a request harder), and
{params.get("length_prior", 0.0)} added to the weight of `log_tokens` after the fit (the length
prior, `length_prior`: the features that go with length inside the training sources cannot take
it back; every ability moved by its mean over the training prompts, so P stays the fitted one on
average; bench/QUALITY_ROUTING.md).
Digit and maths-symbol densities: {"used" if params.get("digit_features", 1) else "left out"}
(they rank GSM8K backwards and mark short arithmetic as hard).
`non_ascii_fraction`: {"used" if params.get("non_ascii_feature", 1) else "left out"} (it learned
"not English = hard", +1.1 logits, from Korean Arena-Hard and M-IFEval's weakest models, and sent a
short Japanese question to the largest demo tier; held-out folds are level or better without it).
`arithmetic_digits` ({f"weight bounded below by {params.get('arithmetic_min', 0.0)}, a prior"
if params.get("arithmetic_feature", 0) else "left out"}): the digits of the largest product or
power written in the request ("48,271 x 93,657" -> 10, "17^9" -> 12; not sizes like "1920x1080"
or hex like "0x100000") past 4, / 8, capped at 2: exact arithmetic on big numbers is hard for a
small model at any length. Few training rows carry it (351 outcome rows: 321 MMLU-Pro items, mean
outcome 0.28 vs the source's 0.40; 21 RouterArena, 0.19 vs 0.60; and 5 judged-chat rows), and
few of those are exact arithmetic, so the weight the labels give it is small (0.18, "what's
986431 x 247819 exactly?" went to the smallest demo tier); the bound (`arithmetic_min`) makes a
12-digit exact product at least one logit harder (bench/QUALITY_ROUTING.md, "arithmetic weight").

## Model

L-BFGS-B over {meta["nonzero_weights"]} non-zero weights, {meta["n_models"]} abilities and
{len(offsets)} offsets, {meta["n_iter"]} iterations; L2 {params.get("l2")} on structure weights,
{params.get("l2_semantic")} on the embedding weights, pair weights n(prompt)^-{params.get(
"prompt_weight_power")}. ONNX graph: one Gather from a [features, 3] table of (weight, variance,
short-request weight), times (x, x^2, x * the request's short-request scale), summed, the first
and third sums added: difficulty and its variance (uncertainty = approximate posterior std of
d, diagonal Laplace). The short-request block is a column, not a copy of the word rows: its
values are the word values times one number per request (feature version 8). A single request
is scored with numpy from the same table (`classifiers/onnx_table.py`); a test checks it agrees
with onnxruntime.
Files: model.onnx + JSON tables, {size / 1e6:.2f} MB.

{head_section(meta.get("sentence_head"))}
## Validation: leave-one-source-out (router score = d; higher -> strong)

Each row: the model is trained on all other sources and evaluated on the held-out source
(pairwise sources: the weak model's quality is the share of direct verdicts it won or tied, the
strong model's 1). Mean APGR over these pairs: **{mean_apgr:.3f}** (random router 0.500; prompt
length alone {mean_length:.3f}, the whole conversation's `log_tokens`: the model beats it on
{beats} of {len(lengths)} pairs).

{validation_table(folds)}

Evaluation only (AlpacaEval instructions, CC BY-NC, model trained on all training rows):

{validation_table(evalonly) if evalonly else "(not evaluated)"}

## Abilities (top 10 of {len(top)}; full table in abilities.json)

| model | ability |
|---|---|
""" + "\n".join(f"| {k} | {v:.3f} |" for k, v in top[:10]) + f"""

{extra if extra is not None else extra_sections()}
## License notices

Derived from the data sources above; their license texts ship in `data/licenses/`. The static
embedding is derived from all-MiniLM-L6-v2 (Apache-2.0). AlpacaEval (CC BY-NC 4.0) was used only
to evaluate.

Reproduce: `tierwise train --out classifiers/model` (from a checkout, `pip install -e '.[train]'`).
"""
    path = d / "MODEL_CARD.md"
    path.write_text(text)
    return path
