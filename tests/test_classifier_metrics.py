"""Routing metrics and calibration against hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from classifiers.calibrate import choose_target, fit_ability, tier_shares
from classifiers.metrics import apgr, auc, cpt, decile_curve, evaluate_pair, pgr


def test_pgr_and_random_apgr():
    assert pgr(np.array([0.5, 0.6, 0.7]), strong=0.7, weak=0.5).tolist() == pytest.approx(
        [0.0, 0.5, 1.0]
    )
    x = np.linspace(0, 1, 11)
    assert apgr(x, x) == pytest.approx(0.5)
    assert apgr(np.array([0.0, 1.0]), np.array([1.0, 1.0])) == pytest.approx(1.0)


def test_cpt_interpolates_on_monotone_envelope():
    x = np.array([0.0, 0.5, 1.0])
    y = np.array([0.0, 0.8, 1.0])
    assert cpt(x, y, 0.5) == pytest.approx(0.3125)  # 0.5 / 0.8 * 0.5
    assert cpt(x, y, 0.9) == pytest.approx(0.75)  # halfway from 0.8 to 1.0
    x2 = np.array([0.0, 0.2, 0.4, 1.0])
    y2 = np.array([0.0, 0.6, 0.4, 1.0])  # envelope 0, .6, .6, 1
    assert cpt(x2, y2, 0.5) == pytest.approx(0.2 * 0.5 / 0.6)
    assert cpt(x2, y2, 0.8) == pytest.approx(0.4 + 0.5 * 0.6)
    assert math.isnan(cpt(x, np.array([0.0, 0.1, 0.2]), 0.5))


def test_auc_hand_cases():
    assert auc(np.array([1, 2, 3, 4]), np.array([0, 0, 1, 1])) == pytest.approx(1.0)
    assert auc(np.array([4, 3, 2, 1]), np.array([0, 0, 1, 1])) == pytest.approx(0.0)
    assert auc(np.array([1, 1, 1, 1]), np.array([0, 1, 0, 1])) == pytest.approx(0.5)
    # pos {2,3}, neg {1,3}: pairs (2>1)=1, (2<3)=0, (3>1)=1, (3=3)=.5 -> 2.5/4
    assert auc(np.array([1, 2, 3, 3]), np.array([0, 1, 0, 1])) == pytest.approx(0.625)
    assert math.isnan(auc(np.array([1, 2]), np.array([1, 1])))


def test_decile_curve_and_perfect_router():
    # 10 items; strong right on all, weak right on the 5 easiest; scores = difficulty order
    scores = np.arange(10, dtype=float)
    qs = np.ones(10)
    qw = np.array([1, 1, 1, 1, 1, 0, 0, 0, 0, 0], dtype=float)
    x, q = decile_curve(scores, qs, qw)
    assert x.tolist() == pytest.approx([k / 10 for k in range(11)])
    # sending the hardest k items to strong recovers min(k, 5) of the 5 misses
    assert q.tolist() == pytest.approx([0.5 + min(k, 5) / 10 for k in range(11)])
    r = evaluate_pair(scores, qs, qw)
    # PGR: 0, .2, .4, .6, .8, 1, 1, 1, 1, 1, 1 -> trapezoid area = 0.75
    assert r.apgr == pytest.approx(0.75)
    assert r.cpt50 == pytest.approx(0.25)
    assert r.cpt80 == pytest.approx(0.4)
    assert r.auc == pytest.approx(1.0)
    assert r.oracle_apgr == pytest.approx(0.75)
    # the reversed router is worse than random
    assert evaluate_pair(-scores, qs, qw).apgr == pytest.approx(0.25)


def test_fit_ability_recovers_truth():
    rng = np.random.default_rng(0)
    d = rng.normal(0, 1.5, 4000)
    y = (rng.random(4000) < 1 / (1 + np.exp(-(1.2 - d)))).astype(float)
    a, sd = fit_ability(d, y, prior_mean=0.0)
    assert abs(a - 1.2) < 3 * sd + 0.05
    a_few, sd_few = fit_ability(d[:10], y[:10])
    assert sd_few > sd


def test_choose_target_hits_wanted_share():
    d = np.linspace(-3, 3, 1001)
    abilities = [0.0, 2.0]
    t, shares = choose_target(d, abilities, [0.5, 0.5])
    assert shares[0] == pytest.approx(0.5, abs=0.01)
    # at target t, cheap tier covers d <= -logit(t)
    assert -math.log(t / (1 - t)) == pytest.approx(0.0, abs=0.05)
    assert tier_shares(d, abilities, 0.999).tolist() == pytest.approx([0.0, 1.0])
