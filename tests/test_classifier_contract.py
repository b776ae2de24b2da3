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


def test_n_tokens_is_tiktoken_count(scorer):
    from classifiers.tokenizer import get_encoding

    text = "The quick brown fox jumps over the lazy dog. " * 20
    assert scorer.score([{"role": "user", "content": text}]).n_tokens == len(
        get_encoding().encode_ordinary(text)
    )
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
    convs = [SHAPES[k] for k in sorted(SHAPES)] + [[{"role": "user", "content": HARD}]]
    batch = scorer.score_batch(convs)
    assert len(batch) == len(convs)
    for conv, b in zip(convs, batch, strict=True):
        s = scorer.score(conv)
        assert b.n_tokens == s.n_tokens
        assert b.difficulty == pytest.approx(s.difficulty, abs=1e-5)
        assert b.uncertainty == pytest.approx(s.uncertainty, abs=1e-5)
    assert scorer.score_batch([]) == []


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
        assert "litellm" not in sys.modules
        print(elapsed)
        """
    )
    env = {**os.environ, "TIKTOKEN_CACHE_DIR": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert float(out.stdout.strip()) < 0.3
