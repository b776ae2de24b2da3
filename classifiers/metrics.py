"""Routing-quality metrics for a strong/weak pair (the DESIGN.md **contract**).

Protocol (RouteLLM's): sweep the threshold over the deciles of the router's own scores. At each
threshold, calls whose score is >= the threshold go to the strong model; this gives points
(share of strong calls, mean quality). Then

- PGR(point) = (quality - weak) / (strong - weak), weak/strong = all-weak / all-strong quality
- CPT(x) = share of strong calls needed to reach PGR x, linearly interpolated on the monotone
  (running-max) envelope of the curve; ``nan`` if never reached
- APGR = trapezoid area under the PGR curve over share in [0, 1] (random router = 0.5)
- AUC = ROC AUC of the score for "strong does better than weak on this item" (ties count 1/2)

Baselines: ``random`` (PGR = share, APGR 0.5) and ``oracle`` (items sorted by the real gain
q_strong - q_weak, which may exceed PGR 1). numpy only.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np


@dataclass
class PairResult:
    """Metrics of one router on one strong/weak pair."""

    n: int
    strong_quality: float
    weak_quality: float
    apgr: float
    cpt20: float
    cpt50: float
    cpt80: float
    auc: float
    oracle_apgr: float
    shares: list[float] = field(default_factory=list)
    pgr: list[float] = field(default_factory=list)
    oracle_shares: list[float] = field(default_factory=list)
    oracle_pgr: list[float] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def decile_curve(
    scores: np.ndarray, q_strong: np.ndarray, q_weak: np.ndarray, n_steps: int = 10
) -> tuple[np.ndarray, np.ndarray]:
    """(share of strong calls, mean quality) at thresholds on the score quantiles.

    Includes the all-weak (share 0) and all-strong (share 1) end points.
    """
    s = np.asarray(scores, dtype=np.float64)
    qs = np.asarray(q_strong, dtype=np.float64)
    qw = np.asarray(q_weak, dtype=np.float64)
    shares = [0.0]
    quality = [float(qw.mean())]
    for k in range(1, n_steps):
        t = np.quantile(s, 1.0 - k / n_steps)
        strong = s >= t
        shares.append(float(strong.mean()))
        quality.append(float(np.where(strong, qs, qw).mean()))
    shares.append(1.0)
    quality.append(float(qs.mean()))
    order = np.argsort(shares, kind="stable")
    return np.asarray(shares)[order], np.asarray(quality)[order]


def pgr(quality: np.ndarray, strong: float, weak: float) -> np.ndarray:
    """Performance gap recovered; 0 if strong and weak are equally good."""
    gap = strong - weak
    if abs(gap) < 1e-12:
        return np.zeros_like(np.asarray(quality, dtype=np.float64))
    return (np.asarray(quality, dtype=np.float64) - weak) / gap


def apgr(shares: np.ndarray, pgr_values: np.ndarray) -> float:
    """Area under the PGR curve over share of strong calls in [0, 1] (trapezoid)."""
    x = np.asarray(shares, dtype=np.float64)
    y = np.asarray(pgr_values, dtype=np.float64)
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2.0))


def cpt(shares: np.ndarray, pgr_values: np.ndarray, target: float) -> float:
    """Smallest share of strong calls whose monotone-envelope PGR reaches ``target``."""
    x = np.asarray(shares, dtype=np.float64)
    env = np.maximum.accumulate(np.asarray(pgr_values, dtype=np.float64))
    if env[0] >= target:
        return float(x[0])
    for i in range(1, len(x)):
        if env[i] >= target:
            if env[i] == env[i - 1]:
                return float(x[i])
            frac = (target - env[i - 1]) / (env[i] - env[i - 1])
            return float(x[i - 1] + frac * (x[i] - x[i - 1]))
    return float("nan")


def auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """ROC AUC of ``scores`` for boolean labels (Mann-Whitney, ties 1/2); nan if one class."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(positive, dtype=bool)
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(s.size, dtype=np.float64)
    sorted_s = s[order]
    i = 0
    while i < s.size:
        j = i
        while j + 1 < s.size and sorted_s[j + 1] == sorted_s[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def oracle_curve(
    q_strong: np.ndarray, q_weak: np.ndarray, n_steps: int = 10
) -> tuple[np.ndarray, np.ndarray]:
    """Decile curve of the oracle router, which scores each item by its real gain."""
    gain = np.asarray(q_strong, dtype=np.float64) - np.asarray(q_weak, dtype=np.float64)
    # break ties so the oracle sends exactly k/n of the calls at step k
    tiebreak = np.arange(gain.size) * 1e-12
    return decile_curve(gain + tiebreak, q_strong, q_weak, n_steps)


def evaluate_pair(
    scores: np.ndarray, q_strong: np.ndarray, q_weak: np.ndarray, n_steps: int = 10
) -> PairResult:
    """All contract metrics of ``scores`` (higher -> strong) on one strong/weak pair."""
    qs = np.asarray(q_strong, dtype=np.float64)
    qw = np.asarray(q_weak, dtype=np.float64)
    strong, weak = float(qs.mean()), float(qw.mean())
    x, q = decile_curve(scores, qs, qw, n_steps)
    y = pgr(q, strong, weak)
    ox, oq = oracle_curve(qs, qw, n_steps)
    oy = pgr(oq, strong, weak)
    return PairResult(
        n=int(qs.size),
        strong_quality=strong,
        weak_quality=weak,
        apgr=apgr(x, y),
        cpt20=cpt(x, y, 0.2),
        cpt50=cpt(x, y, 0.5),
        cpt80=cpt(x, y, 0.8),
        auc=auc(scores, qs > qw),
        oracle_apgr=apgr(ox, oy),
        shares=x.tolist(),
        pgr=y.tolist(),
        oracle_shares=ox.tolist(),
        oracle_pgr=oy.tolist(),
    )
