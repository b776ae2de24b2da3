"""Training labels: pairwise rows, chat transcripts, label checks, and the pairwise likelihood.

Real code on small synthetic data (no mocks): the Bradley-Terry part of the IRT fit must recover
which prompts are hard from verdicts alone, and the loader must say what is wrong with a file.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import sparse

from classifiers.data import (
    DataError,
    build_labels,
    excluded,
    label_group,
    load_rows,
    row_comparisons,
    row_messages,
)
from classifiers.irt import Comparisons, IRTDifficulty


def _write(tmp_path, rows) -> str:
    path = tmp_path / "labels.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_pairwise_rows_load_and_aggregate(tmp_path):
    rows = [
        {"prompt": "hi", "outcomes": {}, "source": "s",
         "meta": {"pairs": [["gpt-4", "vicuna-13b", "model_a"], ["gpt-4", "vicuna-13b", "tie"],
                            ["vicuna-13b", "gpt-4", "model_b"], ["gpt-4", "gpt-4", "model_a"]]}},
        {"prompt": "prove it", "outcomes": {"gpt-4": 1.0, "vicuna-13b": 0.0}, "source": "s"},
    ]
    loaded = load_rows(_write(tmp_path, rows))
    assert len(loaded) == 2
    assert row_comparisons(loaded[0])[2] == ("vicuna-13b", "gpt-4", "b")
    pairs, cmp = build_labels(loaded)
    assert pairs.prompt.tolist() == [1, 1]  # outcome labels only from the second row
    # one aggregated comparison (the self-pair is dropped): 3 verdicts, gpt-4 won 1 + 0.5 + 1
    # of them (the third lists the models the other way round)
    assert cmp.prompt.tolist() == [0] and cmp.n.tolist() == [3.0]
    first = pairs.models[cmp.a[0]]
    assert cmp.y[0] == pytest.approx(2.5 / 3 if first == "gpt-4-0314" else 0.5 / 3)


def test_bad_pairs_name_the_line_and_the_fix(tmp_path):
    rows = [{"prompt": "x", "outcomes": {"a": 1}},
            {"prompt": "y", "outcomes": {}, "meta": {"pairs": [["a", "b"]]}}]
    with pytest.raises(DataError) as err:
        load_rows(_write(tmp_path, rows))
    assert ":2:" in str(err.value) and "[model_a, model_b, winner]" in str(err.value)
    with pytest.raises(DataError, match="outcomes"):
        load_rows(_write(tmp_path, [{"prompt": "z", "outcomes": {}}]))


def test_transcripts_become_messages():
    row = {"prompt": "How do I build a PC?", "meta": {
        "conversation": "### Human: How do I build a PC? ### Assistant: Pick parts."
                        " ### Human: Is buying one cheaper?"}}
    msgs = row_messages(row)
    assert [m["role"] for m in msgs] == ["user", "assistant", "user"]
    assert msgs[-1]["content"] == "Is buying one cheaper?"
    turns = {"prompt": "a", "meta": {"all_user_turns": ["first", "second"]}}
    assert [m["content"] for m in row_messages(turns)] == ["first", "second"]
    assert row_messages({"prompt": "plain"}) == "plain"


def test_label_checks_and_groups():
    assert excluded({"source": "qlora_vicuna_relative"})
    assert excluded({"source": "llmrouter_dcrouter", "meta": {"family": "gpqa"}})
    assert not excluded({"source": "llmrouter_dcrouter", "meta": {"family": "math"}})
    assert label_group({"source": "routerbench", "meta": {"family": "winogrande"}}) == (
        "routerbench/winogrande")
    assert label_group({"source": "qlora_oa", "meta": {}}) == "qlora_oa"


def test_pairwise_likelihood_recovers_hard_prompts():
    """Verdicts drawn from P(A beats B) = sigmoid(exp(d) (a_A - a_B)): the fit, seeing only the
    verdicts and one feature per prompt group, must rank the groups by their true difficulty."""
    rng = np.random.default_rng(0)
    n_groups, per_group = 4, 60
    true_d = np.array([-1.5, -0.5, 0.5, 1.5])
    ability = np.array([2.0, 0.0, -1.0])
    g = np.repeat(np.arange(n_groups), per_group)
    n = g.size
    X = sparse.csr_matrix((np.ones(n), (np.arange(n), g + 1)), shape=(n, n_groups + 1))
    prompt, a, b, y = [], [], [], []
    for i in range(n):
        for ia, ib in ((0, 1), (0, 2), (1, 2)):
            p = 1 / (1 + np.exp(-np.exp(true_d[g[i]]) * (ability[ia] - ability[ib])))
            wins = rng.binomial(4, p)
            prompt.append(i)
            a.append(ia)
            b.append(ib)
            y.append(wins / 4)
    cmp = Comparisons(np.array(prompt), np.array(a), np.array(b), np.array(y),
                      np.full(len(y), 4.0))
    empty = np.zeros(0, np.int64)
    irt = IRTDifficulty(l2=0.1, l2_ability=0.01).fit(
        X, empty, empty, np.zeros(0), 3, comparisons=cmp)
    fitted = irt.coef_[1:]
    assert np.all(np.diff(fitted) > 0), fitted
    assert irt.abilities_[0] > irt.abilities_[1] > irt.abilities_[2]


def test_quadratic_penalty_pulls_weights_towards_its_null_space():
    """``penalty`` (columns, Q) adds 0.5 c'Qc: with Q = lam * [[1, -1], [-1, 1]] on two features
    that the labels weigh very differently, a large lam makes their weights (nearly) equal, and a
    column the data never touches is refused by name."""
    rng = np.random.default_rng(1)
    n = 400
    x = rng.normal(size=(n, 2))
    X = sparse.csr_matrix(np.hstack([np.zeros((n, 1)), x]))
    true = np.array([1.5, -0.5])
    models = np.repeat(np.arange(2), n)
    prompt = np.tile(np.arange(n), 2)
    p = 1 / (1 + np.exp(-(np.array([1.0, -1.0])[models] - (x @ true)[prompt])))
    y = rng.binomial(1, p).astype(float)
    free = IRTDifficulty(l2=0.01).fit(X, prompt, models, y, 2)
    gap_free = abs(free.coef_[1] - free.coef_[2])
    q = 1e4 * np.array([[1.0, -1.0], [-1.0, 1.0]])
    tied = IRTDifficulty(l2=0.01).fit(X, prompt, models, y, 2, penalty=(np.array([1, 2]), q))
    assert gap_free > 1.0, free.coef_
    assert abs(tied.coef_[1] - tied.coef_[2]) < 0.02 * gap_free, tied.coef_
    with pytest.raises(ValueError, match="never touches"):
        IRTDifficulty(l2=0.01).fit(X, prompt, models, y, 2, penalty=(np.array([0, 1]), q))
