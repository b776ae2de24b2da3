"""The shipped sentence encoder (classifiers/minilm_encoder) as a user gets it: no mocks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from classifiers.encoder import DIMS, ENCODER_DIR, MAX_TOKENS, SentenceEncoder

TEXTS = [
    "How do I reverse a list in Python?",
    "Python: reverse a list",
    "Recipe for banana bread",
    "hi",
    "Prove that there are infinitely many primes, then explain the proof to a ten-year-old.",
]


@pytest.fixture(scope="module")
def encoder() -> SentenceEncoder:
    return SentenceEncoder()


def test_shape_dtype_and_unit_norm(encoder: SentenceEncoder) -> None:
    emb = encoder.encode(TEXTS)
    assert emb.shape == (len(TEXTS), DIMS) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert encoder.encode([]).shape == (0, DIMS)


def test_same_text_same_vector(encoder: SentenceEncoder) -> None:
    a = encoder.encode([TEXTS[0]])
    b = encoder.encode([TEXTS[0], TEXTS[2], TEXTS[0]])
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[0], b[2])


def test_many_texts_equal_one_by_one(encoder: SentenceEncoder) -> None:
    # A text's vector must not depend on the texts encoded with it: a head trained on vectors
    # of many texts at once is served vectors of one request at a time.
    together = encoder.encode(TEXTS)
    alone = np.stack([encoder.encode([t])[0] for t in TEXTS])
    np.testing.assert_allclose(together, alone, atol=1e-5)


def test_long_text_is_truncated(encoder: SentenceEncoder) -> None:
    words = " ".join(f"word{i % 97}" for i in range(5000))
    ids = encoder.tokenizer.encode(words).ids
    assert len(ids) == MAX_TOKENS and ids[0] == 101 and ids[-1] == 102  # [CLS] ... [SEP]
    emb = encoder.encode([words])
    assert np.isfinite(emb).all() and abs(float(np.linalg.norm(emb)) - 1.0) < 1e-5
    # Only the first MAX_TOKENS - 2 word pieces count: more text after them changes nothing.
    np.testing.assert_array_equal(emb, encoder.encode([words + " banana bread"]))


def test_cutting_a_long_text_before_tokenizing_changes_no_token(
        encoder: SentenceEncoder) -> None:
    prose = "Explain, step by step, why the sky is blue; then (briefly) why sunsets are red. " * 40
    code = "def f(x):\n    return [i ** 2 for i in range(x) if i % 3]\n" * 60
    no_space = "x" * 5000 + " tail"  # no whitespace before the cut: the whole text is tokenized
    # no whitespace at all: cut before a CJK ideograph or a punctuation mark, where BERT splits
    chinese = "负载均衡是把请求分给多台服务器，" * 600
    japanese = "水の沸点は何度ですか？ひらがなだけのぶん" * 300
    for text in (prose, code, no_space, "短い文" * 800, chinese, japanese, "abc,def;" * 2000):
        assert encoder.token_ids(text) == encoder.tokenizer.encode(text).ids


def test_similar_requests_are_closer_than_unrelated_ones(encoder: SentenceEncoder) -> None:
    q, paraphrase, other = encoder.encode(TEXTS[:3])
    assert float(q @ paraphrase) > float(q @ other) + 0.3


def test_missing_directory_names_it_and_the_fix(tmp_path: Path) -> None:
    absent = tmp_path / "no-encoder"
    with pytest.raises(FileNotFoundError) as err:
        SentenceEncoder(absent)
    message = str(err.value)
    assert str(absent) in message and "model.onnx" in message and "export()" in message


def test_files_ship_inside_the_package() -> None:
    # package data (pyproject.toml), so a wheel install has them without the source tree
    assert ENCODER_DIR.parent.name == "classifiers"
    assert (ENCODER_DIR / "model.onnx").stat().st_size > 10_000_000
    assert (ENCODER_DIR / "tokenizer.json").is_file() and (ENCODER_DIR / "LICENSE").is_file()


def test_the_layer_norms_stay_split(encoder: SentenceEncoder, tmp_path: Path) -> None:
    """The shipped graph holds no SkipLayerNormalization (its onnxruntime kernel took 4x as long
    as Add + LayerNormalization), and the encoder's session keeps it that way: onnxruntime's
    SkipLayerNormFusion, left on, fuses the ops back (the graph it optimizes to says so), and
    the encoder's encodings are those of a session with it off."""
    import onnx
    import onnxruntime as ort

    from classifiers.encoder import KEEP_SPLIT
    from classifiers.onnx_session import open_session

    path = ENCODER_DIR / "model.onnx"
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert "SkipLayerNormalization" not in ops and "LayerNormalization" in ops

    def optimized_ops(disabled: list[str]) -> set[str]:
        opts = ort.SessionOptions()
        opts.optimized_model_filepath = str(tmp_path / f"opt{len(disabled)}.onnx")
        ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"],
                             disabled_optimizers=disabled)
        return {n.op_type for n in onnx.load(opts.optimized_model_filepath).graph.node}

    assert "SkipLayerNormalization" in optimized_ops([])  # the check can fail
    assert "SkipLayerNormalization" not in optimized_ops(list(KEEP_SPLIT))
    ids = np.asarray([encoder.token_ids("Why does my asyncio task never get cancelled? " * 8)])
    feed = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
    split = open_session(path, 1, KEEP_SPLIT).run(["embedding"], feed)[0]
    got = encoder.encode(["Why does my asyncio task never get cancelled? " * 8])
    np.testing.assert_array_equal(got, split)


def test_the_shipped_graph_is_the_distilled_student() -> None:
    """The encoder is MiniLM's first STUDENT_LAYERS layers (the accurate scorer's 5 ms budget),
    and its README reports the distillation that made it (the validation cosines)."""
    import onnx

    from classifiers.encoder_distill import STUDENT_LAYERS

    ops = [n.op_type for n in onnx.load(str(ENCODER_DIR / "model.onnx")).graph.node]
    assert ops.count("QAttention") == STUDENT_LAYERS == 3
    readme = (ENCODER_DIR / "README.md").read_text(encoding="utf-8")
    assert "first 3 of all-MiniLM-L6-v2's 6 layers" in readme and "after each epoch" in readme
    assert f"first {MAX_TOKENS}" in readme


def test_student_ids_are_cut_as_the_tokenizer_cuts(encoder: SentenceEncoder) -> None:
    """What the student trained on (the teacher's ids cut by encoder_distill.cut_ids) is what it
    reads when serving (the tokenizer truncating at MAX_TOKENS): [CLS] + the same first pieces
    + [SEP]."""
    from classifiers.encoder_distill import TEACHER_TOKENS, cut_ids, teacher_tokenizer

    teacher = teacher_tokenizer(encoder.tokenizer)
    assert len(teacher.encode("word " * 200).ids) == TEACHER_TOKENS
    for text in ("Explain how a B-tree stays balanced when keys are inserted. " * 6, "hi"):
        assert cut_ids(teacher.encode(text).ids, MAX_TOKENS) == encoder.token_ids(text)
