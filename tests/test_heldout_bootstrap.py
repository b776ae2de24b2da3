"""bench/heldout_bootstrap.py: the paired bootstrap of held-out APGR changes."""

from __future__ import annotations

import re

import numpy as np
import pytest

from bench.heldout_bootstrap import bootstrap_changes, load_pairs, main, pair_apgr
from classifiers.metrics import evaluate_pair
from classifiers.validation import evaluate_source, save_fold_scores


def _pair(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    qs = (rng.random(n) < 0.8).astype(float)
    qw = (rng.random(n) < 0.5).astype(float)
    return rng.normal(size=n), qs, qw


def test_pair_apgr_is_evaluate_pairs_apgr() -> None:
    d, qs, qw = _pair(300, 1)
    assert pair_apgr(d, qs, qw) == pytest.approx(evaluate_pair(d, qs, qw).apgr, abs=1e-12)


def test_the_same_scores_change_nothing_on_any_resample() -> None:
    d, qs, qw = _pair(200, 2)
    draws = np.random.default_rng(0).integers(0, 200, (50, 200))
    assert np.array_equal(bootstrap_changes(d, d.copy(), qs, qw, draws), np.zeros(50))


def test_scores_that_know_the_gain_beat_noise_on_nearly_every_resample() -> None:
    noise, qs, qw = _pair(400, 3)
    oracle = qs - qw + 0.01 * noise  # higher where only the strong model is right
    draws = np.random.default_rng(0).integers(0, 400, (200, 400))
    changes = bootstrap_changes(noise, oracle, qs, qw, draws)
    assert (changes > 0).mean() > 0.99
    full = pair_apgr(oracle, qs, qw) - pair_apgr(noise, qs, qw)
    assert changes.min() < full < changes.max()


def _scores_file(path, variant: str, pairs: dict) -> str:
    arrays = {}
    for key, (d, qs, qw) in pairs.items():
        arrays.update({f"{variant}|{key}|d": d, f"{variant}|{key}|qs": qs,
                       f"{variant}|{key}|qw": qw})
    np.savez(path, **arrays)
    return str(path)


def test_main_prints_each_pair_and_the_mean(tmp_path, capsys) -> None:
    a, b = _pair(150, 4), _pair(120, 5)
    better = (a[1] - a[2] + 0.01 * a[0], a[1], a[2])
    base = _scores_file(tmp_path / "base.npz", "shipped",
                        {"mmlu_pro|gpt-4o|mixtral": a, "gsm8k|51b|7b": b})
    new = _scores_file(tmp_path / "new.npz", "shipped",
                       {"mmlu_pro|gpt-4o|mixtral": better, "gsm8k|51b|7b": b})
    assert main([base, new, "--resamples", "100"]) == 0
    out = capsys.readouterr().out
    change = pair_apgr(*better) - pair_apgr(*a)
    assert f"| mmlu_pro / gpt-4o / mixtral | 150 | {pair_apgr(*a):.4f} |" in out
    assert f"{change:+.4f}" in out
    assert "| gsm8k / 51b / 7b | 120 |" in out and "| +0.0000 | +0.0000 .. +0.0000 |" in out
    assert f"mean change over 2 pairs {change / 2:+.4f}" in out


def test_main_refuses_runs_over_different_items(tmp_path) -> None:
    d, qs, qw = _pair(100, 6)
    base = _scores_file(tmp_path / "base.npz", "shipped", {"vicuna80|a|b": (d, qs, qw)})
    new = _scores_file(tmp_path / "new.npz", "shipped", {"vicuna80|a|b": (d, 1 - qs, qw)})
    with pytest.raises(SystemExit, match=re.escape("vicuna80|a|b: the two runs scored different")):
        main([base, new, "--resamples", "10"])
    with pytest.raises(SystemExit, match="no pairs of variant 'accurate'"):
        main([base, new, "--variant", "accurate"])


def test_leave_one_source_out_folds_round_trip_into_the_bootstrap(tmp_path, capsys) -> None:
    """`tierwise train --loso-scores` writes what evaluate_source scored, item by item, in the
    layout the bootstrap reads (``--variant loso``); a pair's APGR recomputed from the file is
    the one the training printed."""
    rng = np.random.default_rng(5)
    strong, weak = "gpt-4-1106-preview", "mixtral-8x7b-instruct-v0.1"  # a routerbench pair
    rows = [{"source": "routerbench", "prompt": f"q{i}",
             "outcomes": {strong: float(rng.random() < 0.8), weak: float(rng.random() < 0.5)}}
            for i in range(120)]
    scores = rng.normal(size=120)
    folds = evaluate_source(rows, scores, "routerbench")
    assert folds and all(f.items is not None for f in folds)
    path = tmp_path / "loso.npz"
    assert save_fold_scores(folds, path) == len(folds)
    pairs = load_pairs(str(path), "loso")
    for f in folds:
        d, qs, qw = pairs[f"routerbench|{f.strong}|{f.weak}"]
        assert pair_apgr(d, qs, qw) == pytest.approx(f.result.apgr, abs=1e-12)
    assert main([str(path), str(path), "--variant", "loso", "--resamples", "20"]) == 0
    assert "+0.0000" in capsys.readouterr().out
