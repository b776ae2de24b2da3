"""How sure is a held-out APGR change? A paired bootstrap over two quality_routing runs' items.

`python bench/quality_routing.py ... --scores A.npz` in two checkouts (or with two variants)
writes every held-out pair's item scores and outcomes; this script resamples each pair's items
(the same draws for both runs) and prints each pair's APGR change with a 90% interval, and the
mean change over the pairs. Keep rules allow a pair to fall by a fixed amount (0.01); this says
how large a fall the pair's few hundred items can show by chance.

    python bench/heldout_bootstrap.py BASE.npz NEW.npz [--variant shipped] [--resamples 2000]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from classifiers.metrics import apgr, decile_curve, pgr  # noqa: E402


def pair_apgr(d: np.ndarray, qs: np.ndarray, qw: np.ndarray) -> float:
    """APGR of scores ``d`` on items with strong/weak outcomes ``qs``/``qw`` (the metric
    classifiers.metrics.evaluate_pair reports, without its other metrics)."""
    shares, quality = decile_curve(d, qs, qw)
    return apgr(shares, pgr(quality, float(qs.mean()), float(qw.mean())))


def bootstrap_changes(base: np.ndarray, new: np.ndarray, qs: np.ndarray, qw: np.ndarray,
                      draws: np.ndarray) -> np.ndarray:
    """APGR(new) - APGR(base) on each resample of the items, ``draws`` [R, n] item indices."""
    return np.array([pair_apgr(new[i], qs[i], qw[i]) - pair_apgr(base[i], qs[i], qw[i])
                     for i in draws])


def load_pairs(path: str, variant: str) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``{"fold|strong|weak": (d, qs, qw)}`` of ``variant`` in a --scores file."""
    with np.load(path) as z:
        keys = [k[len(variant) + 1 : -2] for k in z.files
                if k.startswith(variant + "|") and k.endswith("|d")]
        if not keys:
            raise SystemExit(f"{path}: no pairs of variant {variant!r} (variants in it: "
                             f"{sorted({k.split('|')[0] for k in z.files})})")
        return {k: (z[f"{variant}|{k}|d"], z[f"{variant}|{k}|qs"], z[f"{variant}|{k}|qw"])
                for k in keys}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("base", help="--scores file of the baseline run")
    ap.add_argument("new", help="--scores file of the changed run")
    ap.add_argument("--variant", default="shipped", help="variant in both files")
    ap.add_argument("--new-variant", default=None, help="variant in NEW (default: --variant)")
    ap.add_argument("--resamples", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    base = load_pairs(args.base, args.variant)
    new = load_pairs(args.new, args.new_variant or args.variant)
    common = [k for k in base if k in new]
    if not common:
        raise SystemExit("the two files share no held-out pair")
    rng = np.random.default_rng(args.seed)
    print("| pair | n | base | new | change | 90% interval | P(change < 0) |")
    print("|---|---|---|---|---|---|---|")
    total = np.zeros(args.resamples)
    point = 0.0
    for key in common:
        (d0, qs, qw), (d1, qs1, qw1) = base[key], new[key]
        if not (np.array_equal(qs, qs1) and np.array_equal(qw, qw1)):
            raise SystemExit(f"{key}: the two runs scored different items (outcomes differ); "
                             "rerun both on the same data")
        draws = rng.integers(0, qs.size, (args.resamples, qs.size))
        changes = bootstrap_changes(d0, d1, qs, qw, draws)
        before, after = pair_apgr(d0, qs, qw), pair_apgr(d1, qs, qw)
        here = after - before
        lo, hi = np.percentile(changes, [5, 95])
        print(f"| {key.replace('|', ' / ')} | {qs.size} | {before:.4f} | "
              f"{after:.4f} | {here:+.4f} | {lo:+.4f} .. {hi:+.4f} | "
              f"{float((changes < 0).mean()):.2f} |")
        total += changes
        point += here
    total /= len(common)
    lo, hi = np.percentile(total, [5, 95])
    print(f"\nmean change over {len(common)} pairs {point / len(common):+.4f}; 90% interval "
          f"{lo:+.4f} .. {hi:+.4f}; P(mean change < 0) {float((total < 0).mean()):.2f} over "
          f"{args.resamples} resamples")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
