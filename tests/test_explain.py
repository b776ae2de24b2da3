"""Why a request got its difficulty: the parts of d (classifiers/explain.py), `tierwise route`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from classifiers import DifficultyScorer
from classifiers.explain import ANCHORS_HEAD, LEVEL, SENTENCE_HEAD, WORDS

CONVERSATIONS = [
    "hi",
    "",
    "What is 2+2?",
    "Design a geo-distributed, strongly consistent key-value store.",
    # a long last user turn: the anchors' head holds only its two ends
    "My grandfather loved maps. " * 40 + "What is the tallest mountain in Europe?",
    [{"role": "system", "content": "Be brief."},
     {"role": "user", "content": "Write a sort in Go."},
     {"role": "assistant", "content": "func sort(xs []int) { ... }"},
     {"role": "user", "content": "Now make it stable and explain why it is O(n log n)."}],
    [{"role": "user", "content": [{"type": "text", "text": "What is in this picture?"},
                                  {"type": "image_url",
                                   "image_url": {"url": "data:image/png;base64,AAAA"}}]}],
]


@pytest.fixture(scope="module", params=["fast", "accurate"])
def scorer(request: pytest.FixtureRequest) -> DifficultyScorer:
    return DifficultyScorer(scorer=request.param)


@pytest.mark.parametrize("messages", CONVERSATIONS)
def test_the_parts_sum_to_the_difficulty(scorer: DifficultyScorer, messages: object) -> None:
    why = scorer.explain(messages)  # type: ignore[arg-type]
    d = scorer.score(messages).difficulty  # type: ignore[arg-type]
    assert sum(why.parts.values()) == pytest.approx(d, abs=1e-4)
    sizes = [abs(v) for v in why.parts.values()]
    assert sizes == sorted(sizes, reverse=True)
    assert {WORDS, ANCHORS_HEAD} <= set(why.parts)
    assert (SENTENCE_HEAD in why.parts) == (LEVEL in why.parts) == (scorer.kind == "accurate")
    # the words' shares are the two word blocks, word by word
    words = sum(v for _, v in why.words)
    assert words == pytest.approx(why.parts[WORDS] + why.parts[ANCHORS_HEAD], abs=1e-4)


def test_each_word_is_named_once_with_its_share() -> None:
    scorer = DifficultyScorer()
    # "goroutine" is outside MiniLM's whole-word vocabulary: read as its WordPieces
    why = scorer.explain("Why does my goroutine deadlock when the channel is unbuffered? "
                         "The goroutine never returns.")
    names = [w for w, _ in why.words]
    assert len(names) == len(set(names)) and "goroutine" in names and "deadlock" in names
    alone = dict(scorer.explain("goroutine").words)["goroutine"]
    assert alone != 0.0  # its pieces carry a value


def test_length_is_the_part_that_grows_with_a_longer_request() -> None:
    scorer = DifficultyScorer()
    short = scorer.explain("Explain recursion.").parts
    long = scorer.explain("Explain recursion. " + "Use an example from real code. " * 30).parts
    assert long["log_tokens_last_user"] > short["log_tokens_last_user"] > 0


def test_route_says_why() -> None:
    out = subprocess.run([sys.executable, "-m", "router", "route", "What is 2+2?"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    why = out.stdout.split("why d = ", 1)[1].splitlines()
    d = float(why[0].split()[0])
    values = [float(line.split()[0]) for line in why[1:] if line.strip()
              and not line.strip().startswith("words that add most")]
    assert "log_tokens_last_user" in out.stdout and "words that add most: " in out.stdout
    assert sum(values) == pytest.approx(d, abs=0.01 * len(values))


def test_score_explains_each_line_on_request(tmp_path: Path) -> None:
    data = tmp_path / "in.jsonl"
    data.write_text('{"prompt": "What is 2+2?"}\n'
                    '{"prompt": "Prove that the halting problem is undecidable."}\n')
    plain = _score(str(data))
    explained = _score("--explain", str(data))
    assert all("parts" not in row and "words" not in row for row in plain)
    for before, row in zip(plain, explained, strict=True):
        assert row["difficulty"] == before["difficulty"]
        assert sum(row["parts"].values()) == pytest.approx(row["difficulty"], abs=1e-3)
        assert 0 < len(row["words"]) <= 8
    assert "undecidable" in [w for w, _ in explained[1]["words"]]


def _score(*args: str) -> list[dict]:
    out = subprocess.run([sys.executable, "-m", "router", "score", *args],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines()]


def test_the_onnxruntime_engine_explains_from_the_same_table() -> None:
    text = "Design a geo-distributed, strongly consistent key-value store."
    on_ort = DifficultyScorer(engine="onnxruntime")
    assert on_ort.explain(text) == DifficultyScorer().explain(text)
    assert sum(on_ort.explain(text).parts.values()) == pytest.approx(
        on_ort.score(text).difficulty, abs=1e-4)
