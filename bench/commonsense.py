"""Score the hand-written common-sense set (bench/commonsense/requests.jsonl) with tierwise.

The requests go through the public CLI path, `python -m router.cli score FILE [--policy P]`
(the same as `tierwise score`), run as a subprocess; nothing from the classifier is imported.

Metrics (for --split dev|test|all, overall and per kind):
  * AUC of `difficulty` for hard vs easy (ties count half), the same AUC for a length baseline
    (characters of all message contents) and 0.5 for random;
  * length-matched AUC: the same, over only the (easy, hard) pairs whose character lengths are
    within a factor 1.5 of each other (max/min <= 1.5);
  * mis-tier rates: share of easy items routed to the largest tier, of hard items routed to the
    smallest tier, and the tier distribution per label. Tier order (cheapest first) is the order
    of the `p_sufficient` keys the CLI prints (small, medium, large for the demo policy);
  * the worst misses: easy items with the highest difficulty, hard items with the lowest.

Usage:  .venv/bin/python bench/commonsense.py [--split test] [--json OUT] [--policy FILE]
        [--repo DIR]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "bench" / "commonsense" / "requests.jsonl"
LENGTH_RATIO = 1.5


def auc(easy: np.ndarray, hard: np.ndarray, pairs: np.ndarray | None = None) -> float | None:
    """P(score of a hard item > score of an easy item), ties half; optionally only over `pairs`
    (a boolean easy x hard mask)."""
    if easy.size == 0 or hard.size == 0:
        return None
    cmp = (hard[None, :] > easy[:, None]) + 0.5 * (hard[None, :] == easy[:, None])
    if pairs is None:
        return float(cmp.mean())
    return float(cmp[pairs].mean()) if pairs.any() else None


def length_matched(easy_len: np.ndarray, hard_len: np.ndarray) -> np.ndarray:
    """The easy x hard mask of pairs whose lengths differ by at most LENGTH_RATIO."""
    longer = np.maximum(hard_len[None, :], easy_len[:, None])
    return longer / np.maximum(np.minimum(hard_len[None, :], easy_len[:, None]), 1) <= LENGTH_RATIO


def run_scorer(items: list[dict[str, Any]], policy: str | None, repo: Path,
               scorer: str | None = None) -> list[dict[str, Any]]:
    """Score the items via `python -m router.cli score` run in `repo`; one output row per item."""
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False, encoding="utf-8") as f:
        for it in items:
            f.write(json.dumps({"messages": it["messages"]}, ensure_ascii=False) + "\n")
        path = f.name
    cmd = [sys.executable, "-m", "router.cli", "score", path]
    if policy:
        cmd += ["--policy", str(Path(policy).resolve())]
    if scorer:
        cmd += ["--scorer", scorer]
    try:
        proc = subprocess.run(cmd, cwd=repo, capture_output=True, text=True, check=False)
    finally:
        Path(path).unlink(missing_ok=True)
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    if proc.returncode != 0 or len(rows) != len(items) or any("error" in r for r in rows):
        sys.exit(f"tierwise score failed (rc={proc.returncode}):\n{proc.stderr[-2000:]}")
    return sorted(rows, key=lambda r: r["line"])


def group_metrics(items: list[dict[str, Any]], tiers: list[str]) -> dict[str, Any]:
    """All metrics for one group of scored items (each has label, difficulty, length, tier)."""
    e = [it for it in items if it["label"] == "easy"]
    h = [it for it in items if it["label"] == "hard"]
    de, dh = (np.array([it["difficulty"] for it in g], float) for g in (e, h))
    le, lh = (np.array([it["length"] for it in g], float) for g in (e, h))
    matched = length_matched(le, lh)
    dist = {lab: dict(Counter(it["tier"] for it in g)) for lab, g in (("easy", e), ("hard", h))}
    return {
        "n_easy": len(e), "n_hard": len(h),
        "auc_difficulty": auc(de, dh), "auc_length": auc(le, lh), "auc_random": 0.5,
        "matched_pairs": int(matched.sum()),
        "matched_auc_difficulty": auc(de, dh, matched), "matched_auc_length": auc(le, lh, matched),
        "easy_to_largest": sum(it["tier"] == tiers[-1] for it in e) / len(e) if e else None,
        "hard_to_smallest": sum(it["tier"] == tiers[0] for it in h) / len(h) if h else None,
        "tier_distribution": {lab: {t: d.get(t, 0) for t in tiers} for lab, d in dist.items()},
    }


def fmt(x: float | None, pct: bool = False) -> str:
    if x is None:
        return "-"
    return f"{100 * x:.0f}%" if pct else f"{x:.3f}"


def print_report(m: dict[str, Any], tiers: list[str]) -> None:
    print(f"### tierwise common-sense set: split={m['split']}, scorer={m['scorer']}, "
          f"n={m['n']}, tiers={','.join(tiers)}\n")
    print("| group | easy | hard | AUC diff | AUC len | matched AUC diff | matched AUC len | pairs "
          f"| easy→{tiers[-1]} | hard→{tiers[0]} |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, g in [("ALL", m["overall"]), *m["per_kind"].items()]:
        print(f"| {name} | {g['n_easy']} | {g['n_hard']} | {fmt(g['auc_difficulty'])} "
              f"| {fmt(g['auc_length'])} | {fmt(g['matched_auc_difficulty'])} "
              f"| {fmt(g['matched_auc_length'])} | {g['matched_pairs']} "
              f"| {fmt(g['easy_to_largest'], True)} | {fmt(g['hard_to_smallest'], True)} |")
    print("\nrandom AUC = 0.5; matched = (easy, hard) pairs with length ratio <= "
          f"{LENGTH_RATIO}\n\ntier distribution (overall):")
    for lab, d in m["overall"]["tier_distribution"].items():
        print(f"  {lab}: " + ", ".join(f"{t}={n}" for t, n in d.items()))
    print("\nworst misses:")
    for w in m["worst_easy"]:
        print(f"  easy {w['id']} ({w['kind']}) d={w['difficulty']:.3f} {w['tier']}: {w['text']}")
    for w in m["worst_hard"]:
        print(f"  hard {w['id']} ({w['kind']}) d={w['difficulty']:.3f} {w['tier']}: {w['text']}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--split", choices=["dev", "test", "all"], default="test")
    ap.add_argument("--json", metavar="OUT", help="write all metrics as JSON to OUT")
    ap.add_argument("--policy", metavar="FILE", help="policy TOML passed to `tierwise score`")
    ap.add_argument("--data", default=str(DATA), help="requests JSONL (default: the shipped set)")
    ap.add_argument("--repo", default=str(ROOT),
                    help="tierwise checkout to run the CLI in (default: this one), e.g. a clean "
                         "`git archive HEAD` export while the working tree is being edited")
    ap.add_argument("--worst", type=int, default=5, help="worst misses to list per label")
    ap.add_argument("--scorer", choices=["fast", "accurate"], default=None,
                    help="`tierwise score --scorer` (default: the policy's)")
    args = ap.parse_args(argv)

    with open(args.data, encoding="utf-8") as f:
        items = [json.loads(line) for line in f if line.strip()]
    items = [it for it in items if args.split == "all" or it["split"] == args.split]
    if not items:
        sys.exit(f"no items for split {args.split}")
    scored = run_scorer(items, args.policy, Path(args.repo).resolve(), args.scorer)
    tiers = list(scored[0]["p_sufficient"])  # cheapest first, as the policy lists them
    for it, out in zip(items, scored, strict=True):
        it["difficulty"], it["tier"] = float(out["difficulty"]), out["tier"]
        it["length"] = sum(len(msg["content"]) for msg in it["messages"])

    kinds = list(dict.fromkeys(it["kind"] for it in items))

    def miss(it: dict[str, Any]) -> dict[str, Any]:
        text = it["messages"][-1]["content"].replace("\n", " ")
        return {k: it[k] for k in ("id", "kind", "difficulty", "tier")} | {"text": text[:70]}

    by_d = sorted(items, key=lambda it: it["difficulty"])
    metrics: dict[str, Any] = {
        "split": args.split, "scorer": args.scorer or "the policy's", "n": len(items),
        "tiers": tiers, "policy": args.policy or "demo",
        "repo": str(Path(args.repo).resolve()),
        "length_ratio": LENGTH_RATIO,
        "overall": group_metrics(items, tiers),
        "per_kind": {
            k: group_metrics([it for it in items if it["kind"] == k], tiers) for k in kinds
        },
        "worst_easy": [miss(it) for it in reversed(by_d) if it["label"] == "easy"][: args.worst],
        "worst_hard": [miss(it) for it in by_d if it["label"] == "hard"][: args.worst],
    }
    print_report(metrics, tiers)
    if args.json:
        Path(args.json).write_text(json.dumps(metrics, indent=2, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
