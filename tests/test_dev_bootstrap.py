"""bench/dev_bootstrap.py's paired bootstrap: the arithmetic the keep rules' intervals rest on."""

from __future__ import annotations

import numpy as np
import pytest

from bench.dev_bootstrap import bootstrap_sums, pair_tables


def test_pair_tables_count_ties_half_and_match_lengths_as_commonsense_does():
    d = np.array([1.0, 2.0, 2.0, 3.0])
    hard = np.array([False, False, True, True])
    length = np.array([100, 10, 140, 11])
    cmp, matched = pair_tables(d, hard, length)
    # easy (1.0, 2.0) x hard (2.0, 3.0)
    np.testing.assert_array_equal(cmp, [[1.0, 1.0], [0.5, 1.0]])
    # 100 vs 140 and 10 vs 11 are within a factor 1.5; 100 vs 11 and 10 vs 140 are not
    np.testing.assert_array_equal(matched, [[True, False], [False, True]])


def test_same_scores_change_nothing_and_a_better_ranking_shows_on_every_draw():
    rng = np.random.default_rng(1)
    hard = np.repeat([False, True], 30)
    length = rng.integers(60, 80, 60)  # all pairs length-matched (79 / 60 < 1.5)
    noisy = rng.normal(size=60) + 0.3 * hard
    perfect = hard.astype(float)
    base, matched = pair_tables(noisy, hard, length)
    same, _ = pair_tables(noisy.copy(), hard, length)
    better, _ = pair_tables(perfect + 0.01 * noisy, hard, length)
    draws = [(rng.integers(0, 30, 30), rng.integers(0, 30, 30)) for _ in range(200)]
    np.testing.assert_array_equal(bootstrap_sums(base, same, matched, draws), 0.0)
    gains = bootstrap_sums(base, better, matched, draws)
    assert np.all(gains > 0)
    full = [(np.arange(30), np.arange(30))]
    # AUC and length-matched AUC (here the same pairs) both rise to 1
    assert matched.all()
    assert bootstrap_sums(base, better, matched, full)[0] == pytest.approx(2 * (1 - base.mean()))
