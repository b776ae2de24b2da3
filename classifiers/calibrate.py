"""Calibration: an ability for a new model, and a quality target for wanted tier shares.

- :func:`fit_ability`: maximum a-posteriori ability a of one model from a few labeled prompts,
  given their predicted difficulties d_i: maximise sum_i y_i log s(a - d_i) + (1 - y_i)
  log(1 - s(a - d_i)) - (a - prior_mean)^2 / (2 prior_sd^2) by Newton; returns a and its std.
- :func:`choose_target`: for tiers with abilities a_1 < ... < a_K (cheapest first) and the
  difficulties of unlabeled traffic, the quality target t such that "cheapest tier with
  sigmoid(a_k - d) >= t" gives shares closest (L1) to the wanted shares.
numpy only.
"""

from __future__ import annotations

import math

import numpy as np


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def fit_ability(
    difficulties: np.ndarray,
    scores: np.ndarray,
    prior_mean: float = 0.0,
    prior_sd: float = 3.0,
) -> tuple[float, float]:
    """MAP ability and its approximate std from (difficulty, score in [0,1]) pairs."""
    d = np.asarray(difficulties, dtype=np.float64)
    y = np.clip(np.asarray(scores, dtype=np.float64), 0.0, 1.0)
    a = float(prior_mean)
    prec0 = 1.0 / prior_sd**2
    hess = prec0
    for _ in range(100):
        p = _sigmoid(a - d)
        grad = float(np.sum(y - p)) - (a - prior_mean) * prec0
        hess = float(np.sum(p * (1 - p))) + prec0
        step = grad / hess
        a += max(min(step, 2.0), -2.0)
        if abs(step) < 1e-9:
            break
    return a, 1.0 / math.sqrt(hess)


def tier_shares(difficulties: np.ndarray, abilities: list[float], target: float) -> np.ndarray:
    """Share of calls each tier gets under "cheapest tier with P >= target" (top tier fallback)."""
    d = np.asarray(difficulties, dtype=np.float64)
    chosen = np.full(d.size, len(abilities) - 1)
    for k in range(len(abilities) - 1, -1, -1):
        ok = _sigmoid(abilities[k] - d) >= target
        chosen[ok] = k
    return np.bincount(chosen, minlength=len(abilities)) / max(d.size, 1)


def choose_target(
    difficulties: np.ndarray, abilities: list[float], wanted: list[float]
) -> tuple[float, np.ndarray]:
    """Quality target (0.01 .. 0.99) whose tier shares are closest to ``wanted``."""
    w = np.asarray(wanted, dtype=np.float64)
    w = w / w.sum()
    best_t, best_err, best_s = 0.5, float("inf"), np.zeros(len(abilities))
    for t in np.round(np.arange(0.01, 0.9901, 0.0025), 4):
        s = tier_shares(difficulties, abilities, float(t))
        err = float(np.abs(s - w).sum())
        if err < best_err - 1e-12:
            best_t, best_err, best_s = float(t), err, s
    return best_t, best_s
