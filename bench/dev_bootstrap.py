"""How sure is a change on the hand-written dev splits? A paired bootstrap of two checkouts.

Both checkouts score the same requests through `tierwise score` (bench/commonsense.py's
`run_scorer`); each resample draws the easy and the hard requests of every set with
replacement (their counts kept), computes AUC and length-matched AUC for both checkouts on
that same draw, and sums the difference over the sets: the "dev sum" the keep rules in
bench/QUALITY_ROUTING.md use. The interval says how much of a dev-sum change a different draw
of requests could have given: a rule's dev threshold inside it is a coin toss.

Usage:  python bench/dev_bootstrap.py --base /tmp/wt-old [--new .] [--split dev]
        [--sets requests,natural,fresh,fifth] [--resamples 2000] [--scorer fast]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# mypy resolves bench.commonsense to the data directory bench/commonsense/ (a namespace
# package); Python imports the module bench/commonsense.py (as bench/material_pairs.py notes)
from bench.commonsense import length_matched, run_scorer  # type: ignore[attr-defined]  # noqa: E402
from bench.hand_written import DIR, SETS  # noqa: E402

BY_NAME = {file.removesuffix(".jsonl"): file for file in SETS}  # "requests" -> its file


def pair_tables(d: np.ndarray, hard: np.ndarray, length: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
    """``[easy, hard]`` tables: 1 / 0.5 / 0 as the hard request scores above / level / below
    the easy one, and whether the pair is length-matched (bench/commonsense.py's rule)."""
    de, dh = d[~hard], d[hard]
    cmp = (dh[None, :] > de[:, None]) + 0.5 * (dh[None, :] == de[:, None])
    return cmp.astype(np.float64), length_matched(length[~hard], length[hard])


def bootstrap_sums(base: np.ndarray, new: np.ndarray, matched: np.ndarray,
                   draws: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """AUC + length-matched AUC of ``new`` minus ``base`` on each draw (rows, columns)."""
    out = np.empty(len(draws))
    for k, (e, h) in enumerate(draws):
        m = matched[np.ix_(e, h)]
        b, n = base[np.ix_(e, h)], new[np.ix_(e, h)]
        matched_diff = (n[m].mean() - b[m].mean()) if m.any() else 0.0
        out[k] = n.mean() - b.mean() + matched_diff
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", required=True, help="checkout of the code before the change")
    ap.add_argument("--new", default=str(ROOT), help="checkout after it (default: this one)")
    ap.add_argument("--split", choices=["dev", "test", "all"], default="dev")
    ap.add_argument("--sets", default=",".join(BY_NAME))
    ap.add_argument("--resamples", type=int, default=2000)
    ap.add_argument("--scorer", choices=["fast", "accurate"], default=None)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    total = np.zeros(args.resamples)
    point = 0.0
    for name in args.sets.split(","):
        if name not in BY_NAME:
            sys.exit(f"--sets: unknown set {name!r}; choose from {', '.join(BY_NAME)}")
        path = DIR / BY_NAME[name]
        items = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()
                 if line.strip()]
        items = [it for it in items if args.split == "all" or it["split"] == args.split]
        hard = np.array([it["label"] == "hard" for it in items])
        length = np.array([sum(len(m["content"]) for m in it["messages"]) for it in items])
        tables = []
        for repo in (args.base, args.new):
            rows = run_scorer(items, None, Path(repo).resolve(), args.scorer)
            d = np.array([float(r["difficulty"]) for r in rows])
            tables.append(pair_tables(d, hard, length))
        (base, matched), (new, _) = tables
        n_easy, n_hard = base.shape
        full = [(np.arange(n_easy), np.arange(n_hard))]
        draws: list[tuple[np.ndarray, np.ndarray]] = [
            (np.asarray(rng.integers(0, n_easy, n_easy)),
             np.asarray(rng.integers(0, n_hard, n_hard)))
            for _ in range(args.resamples)]
        here = float(bootstrap_sums(base, new, matched, full)[0])
        sums = bootstrap_sums(base, new, matched, draws)
        lo, hi = np.percentile(sums, [5, 95])
        print(f"{name} {args.split}: {n_easy} easy, {n_hard} hard, {int(matched.sum())} "
              f"length-matched pairs; change {here:+.3f} (90% interval {lo:+.3f} .. {hi:+.3f})")
        total += sums
        point += here
    lo, hi = np.percentile(total, [5, 95])
    print(f"{args.split} sum change {point:+.3f}; 90% interval {lo:+.3f} .. {hi:+.3f}; "
          f"P(change > 0) {float((total > 0).mean()):.2f} over {args.resamples} resamples")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
