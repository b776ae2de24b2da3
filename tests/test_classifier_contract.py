"""Contract of the runtime scorer (real shipped model, no mocks)."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap

import pytest

from classifiers import Score, ability_for, default_scorer, known_abilities

HARD = (
    "Prove that for every integer n >= 2 the Galois group of x^n - x - 1 over Q is the full "
    "symmetric group S_n. Give a complete rigorous proof, justifying every lemma you use about "
    "discriminants, inertia groups and irreducibility."
)

SHAPES = {
    "string": [{"role": "user", "content": "What is the capital of France?"}],
    "parts": [{"role": "user", "content": [{"type": "text", "text": "Summarise this."}]}],
    "images_only": [
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:,"}}]}
    ],
    "audio": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": ""}}]}],
    "empty_list": [{"role": "user", "content": []}],
    "none_content": [{"role": "assistant", "content": None}],
    "no_messages": [],
    "tool_calls": [
        {"role": "system", "content": "You are a helpful agent."},
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": '{"temp_c": 11}'},
    ],
    "odd": [
        {"role": "user", "content": 42},
        "not a dict",
        {"role": "user", "content": [None, 3, {"type": "text", "text": None}, "raw"]},
        {"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": {"a": 1}}}]},
        {"role": "user", "content": "<|endoftext|> special text \ud800"},
    ],
}


@pytest.fixture(scope="module")
def scorer():
    return default_scorer()


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_message_shapes_never_raise(scorer, name):
    s = scorer.score(SHAPES[name])
    assert isinstance(s, Score)
    assert math.isfinite(s.difficulty)
    assert math.isfinite(s.uncertainty) and s.uncertainty >= 0
    assert isinstance(s.n_tokens, int) and s.n_tokens >= 0


@pytest.mark.parametrize(
    "text",
    [
        "The quick brown fox jumps over the lazy dog. " * 20,
        "def f(x):\n    return {k: v for k, v in x.items() if v}\n" * 10,
        "Solve for x: 3x^2 - 12x + 9 = 0, then compute the sum of the roots. " * 8,
        "Привет, как дела? Расскажи, пожалуйста, о себе подробно. " * 10,
    ],
)
def test_n_tokens_estimates_o200k(scorer, text):
    """n_tokens (used for context-window checks) is a word/byte estimate, not a BPE count:
    it must land within -20% / +50% of o200k, erring high."""
    from classifiers.tokenizer import get_encoding

    n = scorer.score([{"role": "user", "content": text}]).n_tokens
    true = len(get_encoding().encode_ordinary(text))
    assert 0.8 * true <= n <= 1.5 * true, (n, true)


def test_no_text_has_no_tokens(scorer):
    assert scorer.score(SHAPES["images_only"]).n_tokens == 0


def test_whole_conversation_counts(scorer):
    last = {"role": "user", "content": "And the second one?"}
    short = scorer.score([last])
    long = scorer.score(
        [
            {"role": "user", "content": HARD},
            {"role": "assistant", "content": "Here is the first part of the proof ..."},
            last,
        ]
    )
    assert long.n_tokens > short.n_tokens
    assert long.difficulty != short.difficulty


def test_batch_matches_single(scorer):
    long = [{"role": "user", "content": HARD}, {"role": "assistant", "content": "Why?"},
            {"role": "user", "content": "Explain this proof to me, step by step: " + HARD * 3}]
    convs = [SHAPES[k] for k in sorted(SHAPES)] + [[{"role": "user", "content": HARD}], long]
    batch = scorer.score_batch(convs)
    assert len(batch) == len(convs)
    for conv, b in zip(convs, batch, strict=True):
        s = scorer.score(conv)
        assert b.n_tokens == s.n_tokens
        assert b.difficulty == pytest.approx(s.difficulty, abs=1e-5)
        assert b.uncertainty == pytest.approx(s.uncertainty, abs=1e-5)
    assert scorer.score_batch([]) == []


def test_numpy_engine_equals_onnxruntime_on_training_prompts(scorer):
    """The default engine evaluates model.onnx's linear graph with numpy; onnxruntime running
    the same file must give the same numbers, one by one and in batches, on real prompts."""
    import gzip
    import json
    from pathlib import Path

    from classifiers.scorer import DifficultyScorer

    path = Path(__file__).resolve().parent.parent / "data" / "routing-train.jsonl.gz"
    with gzip.open(path, "rt", encoding="utf-8") as f:
        prompts = [json.loads(line)["prompt"] for _, line in zip(range(3000), f, strict=False)]
    convs = [[{"role": "user", "content": p}] for p in prompts[::30]] + [
        SHAPES[k] for k in sorted(SHAPES)
    ]
    ort = DifficultyScorer(engine="onnxruntime")
    assert scorer.engine == "numpy" and ort.engine == "onnxruntime"
    for conv, a, b in zip(convs, scorer.score_batch(convs), ort.score_batch(convs), strict=True):
        s, o = scorer.score(conv), ort.score(conv)
        for x in (a, b, o):
            assert x.difficulty == pytest.approx(s.difficulty, abs=1e-4)
            assert x.uncertainty == pytest.approx(s.uncertainty, abs=1e-4)
            assert x.n_tokens == s.n_tokens
    with pytest.raises(ValueError, match="engine"):
        DifficultyScorer(engine="tensorflow")  # type: ignore[arg-type]


def test_other_graphs_run_on_onnxruntime(tmp_path):
    """A model.onnx that is not the linear graph must not be read as a table."""
    import shutil

    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from classifiers.onnx_table import COMBINE, read_linear_table
    from classifiers.scorer import MODEL_DIR, DifficultyScorer

    table = read_linear_table(MODEL_DIR / "model.onnx")
    t = numpy_helper.from_array(table, "T")
    axes = numpy_helper.from_array(np.asarray([1], np.int64), "axes")
    combine = numpy_helper.from_array(COMBINE, "C")
    nodes = [  # same inputs/outputs, but difficulty doubled: not the graph onnx_table knows
        helper.make_node("Gather", ["T", "ids"], ["g"], axis=0),
        helper.make_node("Mul", ["g", "x"], ["gx"]),
        helper.make_node("ReduceSum", ["gx", "axes"], ["s"], keepdims=0),
        helper.make_node("MatMul", ["s", "C"], ["m"]),
        helper.make_node("Add", ["m", "m"], ["scores"]),
    ]
    graph = helper.make_graph(
        nodes,
        "other",
        [
            helper.make_tensor_value_info("ids", TensorProto.INT64, ["N", "K"]),
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", "K", 3]),
        ],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", 2])],
        initializer=[t, axes, combine],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "model.onnx"))
    shutil.copy(MODEL_DIR / "model.json", tmp_path / "model.json")
    assert read_linear_table(tmp_path / "model.onnx") is None
    other = DifficultyScorer(tmp_path)
    assert other.engine == "onnxruntime"
    base = DifficultyScorer()
    conv = [{"role": "user", "content": HARD}]
    assert other.score(conv).difficulty == pytest.approx(2 * base.score(conv).difficulty, rel=1e-5)
    with pytest.raises(ValueError, match="cannot be split into parts"):
        other.explain(conv)  # no table, no parts: said, not guessed


@pytest.mark.parametrize("key, name", [
    ("short_prior", "SHORT_PRIOR"),
    ("word_prior", "WORD_PRIOR"),
    ("feature_version", None),
])
def test_a_model_from_other_features_is_refused(tmp_path, key, name):
    """A model fitted on other feature constants would score every request a little wrong:
    loading it fails, naming the constant and the fix."""
    import json
    import shutil

    from classifiers import features
    from classifiers.scorer import FEATURE_VERSION, MODEL_DIR, DifficultyScorer

    value = FEATURE_VERSION - 1 if name is None else getattr(features, name) * 2
    message = "another feature layout" if name is None else f"{name} {value}"
    for file in ("model.json", "model.onnx"):
        shutil.copy(MODEL_DIR / file, tmp_path / file)
    DifficultyScorer(tmp_path)  # the copy itself loads
    meta = json.loads((tmp_path / "model.json").read_text())
    meta[key] = value
    (tmp_path / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=message) as err:
        DifficultyScorer(tmp_path)
    assert "tierwise train" in str(err.value)


def test_hard_proof_harder_than_greeting(scorer):
    hard = scorer.score([{"role": "user", "content": HARD}]).difficulty
    for easy in ("hi", "Hello!", "thanks"):
        assert hard > scorer.score([{"role": "user", "content": easy}]).difficulty


def test_abilities_by_litellm_name():
    table = known_abilities()
    assert len(table) >= 50
    for name in (
        "gpt-4o",
        "openai/gpt-4o",
        "gpt-4o-mini",
        "claude-3-5-sonnet-20240620",
        "anthropic/claude-3-haiku-20240307",
        "gpt-4-1106-preview",
        "mistral/mixtral-8x7b",
        "groq/llama-3.1-8b-instant",
    ):
        assert isinstance(ability_for(name), float), name
    assert ability_for("gpt-4o") == ability_for("openai/gpt-4o")
    assert ability_for("gpt-4o") > ability_for("meta-llama-3.1-8b-instruct")
    assert ability_for("no-such-model-xyz") is None


def test_import_is_light_and_scoring_is_offline(tmp_path):
    """No heavy imports at import time; scoring needs neither network nor litellm import."""
    code = textwrap.dedent(
        """
        import socket, sys, time
        def _no_net(*a, **k):
            raise OSError("network disabled in this test")
        socket.socket.connect = _no_net
        socket.create_connection = _no_net
        t = time.process_time()  # CPU time: robust to other load on the machine
        import classifiers
        elapsed = time.process_time() - t
        heavy = [m for m in ("onnxruntime", "tiktoken", "sklearn", "litellm", "scipy")
                 if m in sys.modules]
        assert not heavy, heavy
        s = classifiers.default_scorer().score("What is 2+2?")
        assert s.n_tokens == 7, s
        # one request: numpy from model.onnx's table, no onnxruntime, no tokenizer
        late = [m for m in ("onnxruntime", "tiktoken", "litellm") if m in sys.modules]
        assert not late, late
        print(elapsed)
        """
    )
    env = {**os.environ, "TIKTOKEN_CACHE_DIR": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert float(out.stdout.strip()) < 0.3


def test_extract_many_equals_extract():
    """The batch featurizer (one hashing pass) gives exactly the per-conversation features."""
    import numpy as np

    from classifiers.features import extract, extract_many

    convs = [SHAPES[k] for k in sorted(SHAPES)] + [
        HARD,
        [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "first question"},
            {"role": "assistant", "content": "an answer"},
            {"role": "user", "content": "And the second one?"},
        ],
        "",
        "x " * 40000,  # longer than one hashing chunk
    ]
    for conv, many in zip(convs, extract_many(convs), strict=True):
        one = extract(conv)
        assert many.n_tokens == one.n_tokens
        assert np.array_equal(many.ids, one.ids)
        # bit for bit: training featurizes with extract_many, serving with extract
        assert np.array_equal(many.values, one.values)
    assert extract_many([]) == []


def _assert_same_features_but(flags: tuple[str, ...], one, other) -> None:
    """``one`` and ``other`` (Features) hold the same ids and values, the structure ``flags``
    left out: a part of a request that is flagged and counted, not scored."""
    import numpy as np

    from classifiers.features import DENSE_NAMES, DENSE_OFF

    drop = [DENSE_OFF + DENSE_NAMES.index(n) for n in flags]
    masks = [~np.isin(f.ids, drop) for f in (one, other)]
    np.testing.assert_array_equal(one.ids[masks[0]], other.ids[masks[1]])
    np.testing.assert_array_equal(one.values[masks[0]], other.values[masks[1]])


def test_a_system_prompt_is_flagged_and_counted_not_scored():
    """Feature version 11: a system (or developer) prompt sets `has_system` and adds its tokens
    to n_tokens; every other feature is the conversation's without it. With no other text, the
    system prompt is the request."""
    from classifiers.features import DENSE_NAMES, DENSE_OFF, extract, extract_many

    flag = DENSE_OFF + DENSE_NAMES.index("has_system")
    chat = [{"role": "user", "content": "hi there"}, {"role": "assistant", "content": "hello"},
            {"role": "user", "content": "what is 2+2"}]
    for role in ("system", "developer"):
        framed = [{"role": role, "content": "You are a terse assistant. " * 50}, *chat]
        for one, plain in ((extract(framed), extract(chat)),
                           (extract_many([framed])[0], extract_many([chat])[0])):
            _assert_same_features_but(("has_system",), one, plain)
            assert one.values[one.ids == flag].tolist() == [1.0]
            assert one.n_tokens >= plain.n_tokens + 250
    alone, asked = extract([{"role": "system", "content": "Prove Fermat's little theorem."}]), \
        extract("Prove Fermat's little theorem.")
    _assert_same_features_but(("has_system",), alone, asked)
    assert alone.n_tokens == asked.n_tokens


def test_whitespace_around_a_message_is_not_content():
    """Feature version 12: a message's leading and trailing whitespace is stripped; a trailing
    newline counted as a line and lowered d by ~0.25 before."""
    import numpy as np

    from classifiers.features import extract, extract_many

    chat = [{"role": "user", "content": "Prove that sqrt(2) is irrational."},
            {"role": "assistant", "content": "Suppose sqrt(2) = p/q in lowest terms."},
            {"role": "user", "content": "Go on.\nAnd why lowest terms?"}]
    padded = [{**m, "content": f"\n  {m['content']}\r\n\n"} for m in chat]
    for one, other in ((extract(chat), extract(padded)),
                       *zip(extract_many([chat, chat[:1]]), extract_many([padded, padded[:1]]),
                            strict=True)):
        np.testing.assert_array_equal(one.ids, other.ids)
        np.testing.assert_array_equal(one.values, other.values)
        assert one.n_tokens == other.n_tokens
    assert extract("  \n ").values.tolist() == extract("").values.tolist()


def test_unicode_spaces_are_spaces():
    """Feature version 13: a no-break or other Unicode space reads as " " and an invisible format
    character (zero-width space, word joiner, BOM) as nothing; a no-break space glued two words
    into one unknown word before."""
    import numpy as np

    from classifiers.features import extract

    plain = "Prove that the square root of 2 is irrational, then explain why."
    for sent in (plain.replace(" ", "\u00a0"), plain.replace(" ", "\u202f"),
                 plain.replace(" ", "\u3000"), "\ufeff" + plain.replace("that", "th\u200bat")):
        a, b = extract(plain), extract(sent)
        np.testing.assert_array_equal(a.ids, b.ids)
        np.testing.assert_array_equal(a.values, b.values)


def test_typographic_quotes_are_quotes():
    """Feature version 15: ’ ‘ read as ', “ ” „ as " and … as "...", as a keyboard types them;
    a phone or a word processor types the others, and 0.8% of real chat requests changed tier."""
    import numpy as np

    from classifiers.features import extract

    plain = 'What\'s "idempotent" mean... and why doesn\'t my retry loop need it?'
    for sent in ("What\u2019s \u201cidempotent\u201d mean\u2026 and why doesn\u2019t my retry loop "
                 "need it?",
                 "What\u2018s \u201eidempotent\u201f mean... and why doesn\u201bt my retry loop "
                 "need it?"):
        a, b = extract(plain), extract(sent)
        np.testing.assert_array_equal(a.ids, b.ids, err_msg=sent)
        np.testing.assert_array_equal(a.values, b.values, err_msg=sent)
        assert a.n_tokens == b.n_tokens


def test_a_tool_exchange_is_flagged_and_counted_not_scored():
    """Feature version 18: a tool message's text and an assistant message's tool calls set the
    tool flags and add their tokens to n_tokens; every other feature is the conversation's
    without them (an assistant message's own text stays a turn). With no other text, the tool
    exchange is the request."""
    import numpy as np

    from classifiers.features import DENSE_NAMES, DENSE_OFF, extract, extract_many

    tool_flags = ("has_tools", "has_tool_calls")
    flags = [DENSE_OFF + DENSE_NAMES.index(n) for n in tool_flags]
    call = {"id": "c1", "type": "function",
            "function": {"name": "read_file", "arguments": '{"path": "src/parser.py"}'}}
    chat = [{"role": "user", "content": "the parser test fails, fix it"}]
    said = {"role": "assistant", "content": "Let me look at the parser."}
    agent = [*chat, {**said, "tool_calls": [call]},
             {"role": "tool", "tool_call_id": "c1",
              "content": "def parse(s):\n    return s\n" * 40}]
    for one, plain in ((extract(agent), extract([*chat, said])),
                       (extract_many([agent])[0], extract_many([[*chat, said]])[0])):
        _assert_same_features_but(tool_flags, one, plain)
        assert one.values[np.isin(one.ids, flags)].tolist() == [1.0, 1.0]
        assert one.n_tokens >= plain.n_tokens + 200
    # the legacy functions API: an assistant's function_call and a "function" message
    legacy = [*chat, {**said, "function_call": call["function"]},
              {"role": "function", "name": "read_file", "content": "def parse(s): return s"}]
    _assert_same_features_but(tool_flags, extract(legacy), extract([*chat, said]))
    bare = [*chat, {"role": "assistant", "content": None, "function_call": call["function"]},
            {"role": "function", "name": "read_file", "content": "def parse(s): return s"}]
    _assert_same_features_but(tool_flags, extract(bare), extract(chat))
    only = extract([{"role": "tool", "tool_call_id": "c1",
                     "content": "Prove Fermat's little theorem."}])
    asked = extract("Prove Fermat's little theorem.")
    _assert_same_features_but(tool_flags, only, asked)


def test_text_parts_read_as_the_text():
    """Feature version 17: a message's text parts join with a space, so a text sent as parts
    scores as the text; a line break between them counted as a line and moved 14% of real chat
    requests a tier down. A line break inside a part is the client's and stays."""
    import numpy as np

    from classifiers.conversation import last_user_text
    from classifiers.features import extract, extract_many

    plain = "Prove that the square root of 2 is irrational. Then explain why it matters."
    parts = [{"type": "text", "text": "Prove that the square root of 2 is irrational."},
             {"type": "text", "text": "Then explain why it matters."}]
    chat = [{"role": "user", "content": plain}]
    sent = [{"role": "user", "content": parts}]
    for a, b in ((extract(chat), extract(sent)), tuple(extract_many([chat, sent]))):
        np.testing.assert_array_equal(a.ids, b.ids)
        np.testing.assert_array_equal(a.values, b.values)
        assert a.n_tokens == b.n_tokens
    assert last_user_text(sent) == plain
    # (not after a sentence: one such break is free since feature version 19)
    broken = extract([{"role": "user", "content": [{"type": "text",
                                                     "text": plain.replace(". ", "\n")}]}])
    assert broken.values.tolist() != extract(chat).values.tolist()


def test_layout_is_not_content():
    """Feature version 14: a run of spaces or a tab inside a line reads as one space and
    markdown bold as its text; doubled spaces and a bold first line each moved 7-9% of real chat
    requests a tier up before. Indentation stays (it is how code reads), and so does a "**"
    that is arithmetic or Python (`2**10`, `f(**kw)`)."""
    import numpy as np

    from classifiers.features import extract

    plain = "Task: prove that the square root of 2 is irrational.\nThen explain why."
    for sent in (plain.replace(" ", "  "), plain.replace(". ", ".  "), plain.replace(" ", "\t"),
                 "**Task:** prove that the square root of 2 is irrational.\nThen explain why.",
                 "**Task: prove that the square root of 2 is irrational.**\nThen explain why."):
        a, b = extract(plain), extract(sent)
        np.testing.assert_array_equal(a.ids, b.ids, err_msg=sent)
        np.testing.assert_array_equal(a.values, b.values, err_msg=sent)
        assert a.n_tokens == b.n_tokens
    for code, read_as in (("What is 2**10 - 3**4?", "What is 210 - 34?"),
                          ("def f(*a, **kw): return g(**kw)", "def f(*a, kw): return g(kw)"),
                          ("x**2 + y**2 = 1", "x2 + y2 = 1"), ("** not bold **", "not bold"),
                          ("def __init__(self): pass", "def init(self): pass"),
                          ("def f():\n    return 1", "def f():\n return 1")):
        kept, stripped = extract(code), extract(read_as)
        assert (kept.ids.tolist(), kept.values.tolist()) != \
            (stripped.ids.tolist(), stripped.values.tolist()), code


def test_one_paragraph_break_is_layout():
    """Feature version 19: log_lines counts runs of line breaks (a blank line is one run), the
    first run free when it ends a sentence outside code and maths. One Enter or one blank line
    after a request's first sentence moved 14% / 21% of real chat requests a tier down before
    (bench/INVARIANCE.md). A second break still counts: a list, code or data keep their lines."""
    import numpy as np

    from classifiers.features import DENSE_NAMES, DENSE_OFF, extract, extract_many

    def lines(text: str) -> float:
        f = extract(text)
        return float(f.values[f.ids == DENSE_OFF + DENSE_NAMES.index("log_lines")].sum())

    plain = "Prove that the square root of 2 is irrational. Explain each step."
    broken = plain.replace(". ", ".\n")
    a, b = extract(plain), extract(broken)
    np.testing.assert_array_equal(a.ids, b.ids)
    np.testing.assert_array_equal(a.values, b.values)
    (many,) = extract_many([[{"role": "user", "content": broken}]])
    np.testing.assert_array_equal(many.values, b.values)
    # a blank line: the same count; only the densities see its one extra byte
    blank = extract(plain.replace(". ", ".\n\n"))
    np.testing.assert_array_equal(a.ids, blank.ids)
    assert lines(plain.replace(". ", ".\n\n")) == lines(plain) == 0.0
    np.testing.assert_allclose(blank.values, a.values, atol=0.01)
    # after a line that is not a sentence, in code or in maths, the first break is structure
    listed = "Sort these:\n3\n1\n2"
    assert lines(listed) == pytest.approx(np.log1p(3) / 5)
    assert lines("Sort these:\n\n3\n1\n2") == lines(listed)  # a blank line is one run
    assert lines("Sort these numbers.\n3\n1\n2") == pytest.approx(np.log1p(2) / 5)
    # (feature version 21: the fence lines are not read, the break before the code still counts)
    assert lines("Why does this fail?\n```\nx = [1, 2\n```") == pytest.approx(np.log1p(1) / 5)
    assert lines("Solve $x^2 = 2$.\nShow each step.") == pytest.approx(np.log1p(1) / 5)


def test_short_request_block_mirrors_the_words_with_a_smaller_prior():
    """Feature version 7: the fit sees every word and piece entry again at SHORT_OFF with
    values summing to n / (n + SHORT_PRIOR): the same words, weighted more in a short request
    (3 words: 3/11 against 3/35 in the main block), no more than a mean in a long one; message
    weights too. Version 8: a request's features carry the block as one scale, and to_csr
    expands it for the fit."""
    import numpy as np

    from classifiers.features import (
        DENSE_OFF,
        HASH_OFF,
        SHORT_OFF,
        SHORT_PRIOR,
        TABLE_ROWS,
        WORD_PRIOR,
        extract,
        extract_many,
        to_csr,
    )
    from classifiers.hashing import encode, word_hashes

    def blocks(f):
        row = to_csr([f])
        cols, vals = row.indices, row.data
        return cols, vals, (cols > 0) & (cols < DENSE_OFF), cols >= SHORT_OFF

    for text in ("is 7 prime", "word " * 30, "Prove that every integral domain is a field"):
        f = extract(text)
        assert int(f.ids.max()) < TABLE_ROWS  # no copied entries on the request path
        n_words = word_hashes(encode(text))[0].size
        assert f.short_scale == pytest.approx((n_words + WORD_PRIOR) / (n_words + SHORT_PRIOR),
                                              rel=1e-6)
        cols, vals, main, short = blocks(f)
        assert float(vals[short].sum()) == pytest.approx(n_words / (n_words + SHORT_PRIOR),
                                                         rel=1e-4)
        assert float(vals[main].sum()) == pytest.approx(n_words / (n_words + WORD_PRIOR),
                                                        rel=1e-4)
        np.testing.assert_array_equal(np.sort(cols[short] - SHORT_OFF + HASH_OFF),
                                      np.sort(cols[main]))
    chat = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi there"},
            {"role": "assistant", "content": "hello"}, {"role": "user", "content": "what is 2+2"}]
    one, many = extract(chat), extract_many([chat])[0]
    np.testing.assert_array_equal(one.ids, many.ids)
    np.testing.assert_array_equal(one.values, many.values)
    assert one.short_scale == many.short_scale
    _, vals, main, short = blocks(one)
    total_main = float(vals[main].sum())
    total = WORD_PRIOR * total_main / (1.0 - total_main)  # the occurrence weights' sum
    assert float(vals[short].sum()) == pytest.approx(total / (total + SHORT_PRIOR), rel=1e-4)


def test_short_block_holds_the_two_ends_of_a_long_request():
    """Feature version 16: the short-request block holds the first and the last SHORT_WINDOW
    words of the last user turn (where the instruction sits, before or after pasted material
    or a story), shrunk over those words; earlier turns keep all theirs; a request of no more
    than twice the window is read whole; extract and extract_many agree; the main block does
    not change."""
    import numpy as np

    from classifiers.features import (
        DENSE_OFF,
        SHORT_OFF,
        SHORT_PRIOR,
        SHORT_WINDOW,
        WORD_PRIOR,
        extract,
        extract_many,
        to_csr,
    )
    from classifiers.hashing import encode, word_hashes

    assert SHORT_WINDOW > 0

    def n_words(text):  # words and punctuation marks, as the block counts them
        return word_hashes(encode(text))[0].size

    def block_sums(f):
        row = to_csr([f])
        cols, vals = row.indices, row.data
        return (float(vals[(cols > 0) & (cols < DENSE_OFF)].sum()),
                float(vals[cols >= SHORT_OFF].sum()))

    n = SHORT_WINDOW
    fits = " ".join(["cat"] * (2 * n))
    assert extract(fits).short is None
    instruction = "Summarize this in one sentence:"
    material = " ".join(["The council voted to build the park."] * 12)
    total = n_words(f"{instruction} {material}")
    assert total > 2 * n
    f = extract(f"{instruction} {material}")
    main, short = block_sums(f)
    assert main == pytest.approx(total / (total + WORD_PRIOR), rel=1e-4)  # all words
    assert short == pytest.approx(2 * n / (2 * n + SHORT_PRIOR), rel=1e-4)  # both ends' only
    # the words between the ends are not in the block: more of them change nothing there
    longer = extract(f"{instruction} {material} zebra quokka {material}")

    def short_words(g):
        held = (g.short_values() != 0) & (g.ids < DENSE_OFF)
        order = np.argsort(g.ids[held], kind="stable")
        return g.ids[held][order], g.short_values()[held][order]

    (ids_a, vals_a), (ids_b, vals_b) = short_words(longer), short_words(f)
    np.testing.assert_array_equal(ids_a, ids_b)
    np.testing.assert_allclose(vals_a, vals_b, rtol=1e-6)
    # words outside the vocabulary (read as WordPieces) too: the block of a request is the
    # block of its two ends alone, read whole
    ends = (" ".join(["zorbulate quixotic"] * (n // 2)), " ".join(["grommetize plinth"] * (n // 2)))
    middle = " ".join(["flibbertigibbet snorkelwax"] * n)
    assert n_words(ends[0]) == n_words(ends[1]) == n
    ids_a, vals_a = short_words(extract(f"{ends[0]} {middle} {ends[1]}"))
    ids_b, vals_b = short_words(extract(f"{ends[0]} {ends[1]}"))
    np.testing.assert_array_equal(ids_a, ids_b)
    np.testing.assert_allclose(vals_a, vals_b, rtol=1e-6)
    # an earlier turn (weight 0.5) keeps all its words; the last user turn only its ends
    chat = [{"role": "user", "content": "tell me about parks " * 10},
            {"role": "assistant", "content": "Parks are nice."},
            {"role": "user", "content": f"{instruction} {material}"}]
    one, many = extract(chat), extract_many([chat])[0]
    for a, b in ((one.ids, many.ids), (one.values, many.values),
                 (one.short, many.short)):
        np.testing.assert_array_equal(a, b)
    assert one.short_scale == many.short_scale
    kept = 0.5 * (n_words(chat[0]["content"]) + n_words(chat[1]["content"])) + 2 * n
    assert block_sums(one)[1] == pytest.approx(kept / (kept + SHORT_PRIOR), rel=1e-4)


def test_table_scores_the_short_block_as_the_fit_does():
    """model.onnx's third column, read with one scale per request (per-entry values in a long
    one: feature version 16), gives the fit's d: the shipped table's columns put back into the
    fit's N_FEATURES weights, times to_csr's expanded row, equal the scorer's difficulty."""
    import numpy as np

    from classifiers.features import DENSE_OFF, HASH_OFF, TABLE_ROWS, extract, to_csr
    from classifiers.onnx_model import fit_weights
    from classifiers.onnx_table import read_linear_table
    from classifiers.scorer import MODEL_DIR, DifficultyScorer

    table = read_linear_table(MODEL_DIR / "model.onnx")
    assert table.shape == (TABLE_ROWS, 3)
    assert np.any(table[HASH_OFF:DENSE_OFF, 2] != 0)  # the anchors' head is there
    assert np.all(table[DENSE_OFF:, 2] == 0) and table[0, 2] == 0
    w = fit_weights(MODEL_DIR / "model.onnx")  # the table's columns as the fit's weights
    scorer = DifficultyScorer()
    long = "Sort these numbers from smallest to largest: " + ", ".join(map(str, range(90)))
    for text in ("hi", "is 7 prime?", HARD, long, [{"role": "user", "content": "what is 2+2"},
                                                   {"role": "assistant", "content": "4"},
                                                   {"role": "user", "content": "and 3+3?"}]):
        fit_d = float((to_csr([extract(text)]) @ w)[0])
        assert scorer.score(text).difficulty == pytest.approx(fit_d, abs=1e-5)


def test_table_refuses_a_short_block_with_variance():
    import numpy as np

    from classifiers.features import N_FEATURES, SHORT_OFF
    from classifiers.onnx_model import table_of

    w, v = np.ones(N_FEATURES), np.zeros(N_FEATURES)
    assert table_of(w, v).shape[1] == 3
    v[SHORT_OFF + 5] = 1.0
    with pytest.raises(ValueError, match="variance"):
        table_of(w, v)
    with pytest.raises(ValueError, match=str(N_FEATURES)):
        table_of(w[:-1], v[:-1])


def test_word_block_stays_bounded_on_long_input(scorer):
    """The word block is a shrunk mean: its values sum to n / (n + WORD_PRIOR) < 1 however long
    the text, so length cannot push the difficulty without bound (with root pooling a
    10,000-message chat repeating one word scored d = +30), and a short request's few words
    weigh less than a long one's."""
    import numpy as np

    from classifiers.features import DENSE_OFF, WORD_PRIOR, extract
    from classifiers.hashing import encode, word_hashes

    for text in ("word " * 3, "word " * 10, "word " * 100_000, HARD * 200):
        f = extract(text)
        n_words = word_hashes(encode(text))[0].size  # a word split into pieces is still one
        total = float(np.sum(f.values[f.ids < DENSE_OFF], dtype=np.float64))
        assert total == pytest.approx(n_words / (n_words + WORD_PRIOR), rel=1e-4)
        assert total < 1.0
    chat = [
        {"role": "user" if i % 2 == 0 else "assistant", "content": f"message {i}"}
        for i in range(10_001)
    ]
    typical = [scorer.score(t).difficulty for t in ("hi", HARD, "What is the capital of France?")]
    assert abs(scorer.score(chat).difficulty) < 2 * max(abs(d) for d in typical) + 1.0


def _dense_value(text: str, name: str) -> float:
    """The value of structure feature ``name`` in ``text``'s features."""
    from classifiers.features import DENSE_NAMES, DENSE_OFF, extract

    f = extract(text)
    return float(f.values[f.ids == DENSE_OFF + DENSE_NAMES.index(name)][0])


def test_dollar_amounts_are_not_math_markup():
    """Feature version 9: "$" before an amount of money does not set math_markup (price lists
    and word problems are not TeX); a "$" that opens or closes TeX math, or a TeX command,
    still does."""
    def markup(text: str) -> float:
        return _dense_value(text, "math_markup")

    for money in ("Sort these by price: apple $1.20, melon $3.50, banana $0.40",
                  "I have $20 and spend $5. How much is left?", "It costs $1,200,000.",
                  "Is $30 (plus tax) a fair price?"):
        assert markup(money) == 0.0, money
    for tex in ("Solve $2x+3=7$", "Let $n$ be odd", "Show that $10$ is even",
                "Compute $2 + 3$ for me", r"Simplify \frac{1}{2} + \frac{1}{3}",
                "Prove $$\\sum_{k=1}^n k = n(n+1)/2$$", "$2^{10}$ is how much?"):
        assert markup(tex) == 1.0, tex


def test_unicode_math_is_math_markup_and_other_scripts_ask_questions():
    """Feature version 10: math written in Unicode ("Σ", "∫", "≤", a Greek letter on its own)
    sets math_markup as TeX does, while Greek prose, a typeset minus and a bullet do not; "？"
    and "؟" count as question marks."""
    dense = _dense_value
    for maths in ("Does Σ sin(n)/n converge?", "Evaluate ∫_0^∞ ln(x)/(1+x^2) dx",
                  "How many n ≤ 1000 are squares?", "Show that ∀ε > 0 ∃δ", "area is π r^2",
                  "Let 𝑥 be real", "Cost is $5 and ∑ of them?"):
        assert dense(maths, "math_markup") == 1.0, maths
    for prose in ("Καλημέρα, τι κάνεις;", "It was −5 °C outside", "∙ eggs ∙ milk",
                  "Café au lait, s'il vous plaît", "水の沸点は何度ですか？", "Price: $4.50"):
        assert dense(prose, "math_markup") == 0.0, prose
    assert dense("水の沸点は何度ですか？", "log_questions") == dense("What is it?", "log_questions")
    assert dense("ما هذا؟", "log_questions") > 0.0
    assert dense("什么是负载均衡。", "log_questions") == 0.0


def test_a_backslash_is_math_markup_only_as_a_tex_command():
    """Feature version 10: pasted code's escapes, regexes and Windows paths are not TeX, even
    where an escape is glued to a word that starts like a command ("\\nuser", "\\tname")."""
    def markup(text: str) -> float:
        return _dense_value(text, "math_markup")

    for code in ('print("a\\nb\\tc")', 'Why does re.match(r"\\d+\\s", s) fail?',
                 "Open C:\\Users\\bob\\Docker\\app.json", 'split on "\\nuser" and "\\tname"',
                 "cd C:\\logs\\internal\\details", 'printf("%d\\t%s\\n", a, b)',
                 'json.dumps(x).replace("\\\\", "/")'):
        assert markup(code) == 0.0, code
    for tex in (r"Simplify \frac{1}{2}", r"Show x \le y", r"Let \alpha be a root",
                r"\[ x^2 \] where \mathbb{R}", r"Compute \sqrt{2} to 3 places",
                'print("\\n") and prove \\sum_k k^2', r"Find \DeltaH of the reaction",
                r"10 \textcent a mile", r"A \rightleftarrows B"):
        assert markup(tex) == 1.0, tex
