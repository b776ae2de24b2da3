"""train / eval / calibrate commands end to end on small real data (no mocks)."""

from __future__ import annotations

import argparse
import gzip
import json
import math
from pathlib import Path

import pytest

from classifiers import commands
from classifiers.scorer import DifficultyScorer

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "data" / "routing-train.jsonl.gz"
CHAT = ROOT / "data" / "routing-chat.jsonl.gz"
# The shipped recipe's static embedding ships in data/minilm-static (read with `tokenizers`, in
# the train extra), so the whole recipe runs here.
SEMANTIC: list[str] = []


def _parse(add, argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    add(p)
    return p.parse_args(argv)


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    """~600 outcome rows from two sources and 150 pairwise chat rows, so leave-one-source-out
    runs three folds and both likelihoods are exercised."""
    out = tmp_path_factory.mktemp("data") / "tiny.jsonl"
    keep: dict[str, int] = {}
    # Arena-Hard's rows with OpenAssistant's: the selection pools the sentence head learns from
    limits = {"routerbench": 300, "zeroeval_crux": 300, "qlora_oa": 150,
              "arenahard_v01_forks": 150}
    with open(out, "w") as g:
        for path in (DATA, CHAT):
            with gzip.open(path, "rt", encoding="utf-8") as f:
                for line in f:
                    src = json.loads(line)["source"]
                    if keep.get(src, 0) < limits.get(src, 0):
                        keep[src] = keep.get(src, 0) + 1
                        g.write(line)
    return out


@pytest.fixture(scope="module")
def tiny_model(tiny_data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("model")
    args = _parse(
        commands.add_train_arguments,
        ["--data", str(tiny_data), "--out", str(out), "--eval-data", "", *SEMANTIC],
    )
    assert commands.run_train(args) == 0
    return out


def test_train_writes_a_loadable_model(tiny_model, capsys):
    for name in ("model.onnx", "model.json", "abilities.json", "MODEL_CARD.md"):
        assert (tiny_model / name).is_file(), name
    meta = json.loads((tiny_model / "model.json").read_text())
    assert meta["rows_used"] == 900
    assert meta["sources"]["qlora_oa"] == 150
    assert meta["sentence_head"]["n_selected"] > 0 and meta["sentence_head"]["n_unselected"] > 0
    s = DifficultyScorer(tiny_model).score("What is 2+2?")
    assert s.n_tokens == 7
    card = (tiny_model / "MODEL_CARD.md").read_text()
    assert meta["data_sha256"]["tiny.jsonl"] in card


def test_validation_scores_prompt_length_beside_each_fold(tiny_model):
    """Every leave-one-source-out row carries the prompt-length baseline, and the card shows it."""
    folds = json.loads((tiny_model / "validation.json").read_text())
    assert folds
    for f in folds:
        assert math.isfinite(f["length_apgr"]) and f["length_apgr"] != f["apgr"], f
    card = (tiny_model / "MODEL_CARD.md").read_text()
    assert "| APGR | prompt length | random |" in card
    assert f"| **{folds[0]['apgr']:.3f}** | {folds[0]['length_apgr']:.3f} |" in card


def test_train_is_deterministic(tiny_data, tiny_model, tmp_path):
    args = _parse(
        commands.add_train_arguments,
        [
            "--data",
            str(tiny_data),
            "--out",
            str(tmp_path),
            "--eval-data",
            "",
            "--no-validate",
            *SEMANTIC,
        ],
    )
    assert commands.run_train(args) == 0
    assert (tmp_path / "model.onnx").read_bytes() == (tiny_model / "model.onnx").read_bytes()
    head = "sentence_head.onnx"
    assert (tmp_path / head).read_bytes() == (tiny_model / head).read_bytes()


def test_eval_prints_metrics_and_plots(tiny_data, tiny_model, tmp_path, capsys):
    for ext in ("png", "svg"):
        plot = tmp_path / f"curves.{ext}"
        args = _parse(
            commands.add_eval_arguments,
            [
                "--data",
                str(tiny_data),
                "--strong",
                "gpt-4-1106-preview",
                "--weak",
                "mistralai/mixtral-8x7b-chat",
                "--model",
                str(tiny_model),
                "--plot",
                str(plot),
            ],
        )
        assert commands.run_eval(args) == 0
        head = plot.read_bytes()[:64]
        assert head.startswith(b"\x89PNG") if ext == "png" else b"<svg" in plot.read_bytes()[:4000]
    out = capsys.readouterr().out
    for key in ("APGR", "CPT50%", "AUC", "oracle", "random"):
        assert key in out


def test_eval_bad_input_names_file_and_fix(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "x", "outcomes": {"a": 1}}\nnot json\n')
    args = _parse(commands.add_eval_arguments, ["--data", str(bad), "--strong", "a", "--weak", "b"])
    assert commands.run_eval(args) == 2
    err = capsys.readouterr().err
    assert f"{bad}:2" in err and "Traceback" not in err
    args = _parse(
        commands.add_eval_arguments,
        ["--data", str(tmp_path / "missing.jsonl"), "--strong", "a", "--weak", "b"],
    )
    assert commands.run_eval(args) == 2
    assert "no such file" in capsys.readouterr().err


def test_train_refuses_non_commercial_data(tmp_path, capsys):
    args = _parse(
        commands.add_train_arguments,
        ["--data", str(ROOT / "data" / "alpaca-eval-nc.jsonl.gz"), "--out", str(tmp_path)],
    )
    assert commands.run_train(args) == 2
    assert "BY-NC" in capsys.readouterr().err


def test_calibrate_ability_and_target(tiny_data, tmp_path, capsys):
    labeled = tmp_path / "labeled.jsonl"
    rows = [json.loads(line) for line in tiny_data.read_text().splitlines()][:60]
    with open(labeled, "w") as f:
        for r in rows:
            score = r["outcomes"].get("gpt-4-1106-preview", r["outcomes"].get("gpt-4o-2024-08-06"))
            f.write(json.dumps({"prompt": r["prompt"], "score": score}) + "\n")
    args = _parse(commands.add_calibrate_arguments, ["ability", "--data", str(labeled)])
    assert commands.run_calibrate(args) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["n"] == 60 and res["std"] > 0
    args = _parse(
        commands.add_calibrate_arguments,
        [
            "target",
            "--traffic",
            str(labeled),
            "--tiers",
            "gpt-4o-mini,gpt-4o",
            "--share",
            "0.7,0.3",
        ],
    )
    assert commands.run_calibrate(args) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert 0.0 < res["quality_target"] < 1.0
    assert abs(res["shares"][0] - 0.7) < 0.15
    args = _parse(
        commands.add_calibrate_arguments,
        ["target", "--traffic", str(labeled), "--tiers", "nope-model", "--share", "1"],
    )
    assert commands.run_calibrate(args) == 2
    assert "nope-model" in capsys.readouterr().err


def test_train_without_the_static_embedding_says_what_to_do(tiny_data, tmp_path, capsys,
                                                            monkeypatch):
    """An installed package has no data/minilm-static: a clear error, not a traceback."""
    import classifiers.embedding as embedding

    monkeypatch.setattr(embedding, "STATIC_DIR", tmp_path / "absent")
    args = _parse(commands.add_train_arguments,
                  ["--data", str(tiny_data), "--out", str(tmp_path / "m"), "--no-validate"])
    assert commands.run_train(args) == 2
    err = capsys.readouterr().err
    assert "--no-semantic" in err and "Traceback" not in err


def test_the_fast_scorer_carries_the_distilled_head(tiny_data, tiny_model, tmp_path):
    """`distill` folds part of the sentence head into the word weights (off in the shipped
    recipe): against the same model trained without it, the fast d moves with the head's own
    shift on the requests it was fitted on (the folding into per-word weights is exact, so the
    run-time scorer must show the regression's fit; an error in the fold, its sign or its
    features would break this)."""
    import numpy as np

    from classifiers.conversation import last_user_text
    from classifiers.data import row_messages
    from classifiers.train import train

    plain, distilled = tiny_model, tmp_path / "distilled"
    train(tiny_data, distilled, params={"distill": 1.0}, eval_data=None, validate=False,
          log=lambda _: None)
    meta = json.loads((distilled / "model.json").read_text())
    assert meta["distilled_head"]["weight"] == 1.0 and 0 < meta["distilled_head"]["r2"] < 1
    assert "distilled_head" not in json.loads((plain / "model.json").read_text())
    assert (plain / "model.onnx").read_bytes() != (distilled / "model.onnx").read_bytes()
    convs: dict[str, list] = {}
    for line in tiny_data.read_text().splitlines():
        conv = row_messages(json.loads(line))
        convs.setdefault(last_user_text(conv), conv)
    sample = list(convs.values())[::4]
    fast = DifficultyScorer(distilled)
    accurate = DifficultyScorer(distilled, "auto", "accurate")
    without = DifficultyScorer(plain)
    d = np.array([s.difficulty for s in fast.score_batch(sample)])
    moved = d - np.array([s.difficulty for s in without.score_batch(sample)])
    # the head's own term (accurate d minus fast d also holds the level's affine map, whose
    # scale < 1 adds a multiple of -fast d: 0.32 against 0.92 for this, on 2026-12-06)
    shift = accurate.sentence_shift(sample)
    assert np.corrcoef(moved, shift)[0, 1] > 0.8
