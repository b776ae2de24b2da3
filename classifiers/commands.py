"""CLI commands ``tierwise train | eval | calibrate`` (wired into router/cli.py by the lead).

Each command has ``add_<name>_arguments(parser)`` and ``run_<name>(args) -> exit code``.
Progress goes to stderr, results to stdout. Bad input gives one message naming the file and
the fix, never a traceback. Training extras (scipy/sklearn, onnx, matplotlib) are imported inside
the run functions.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

TRAIN_HINT = ("pip install -e '.[train]' in the tierwise checkout "
              "(pip install 'tierwise[train]' if installed from a package index)")
REPO_DATA = Path(__file__).resolve().parent.parent / "data"
DEFAULT_DATA = ("routing-train.jsonl.gz", "routing-chat.jsonl.gz", "anchors.jsonl")


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _fail(msg: str, code: int = 2) -> int:
    print(f"tierwise: error: {msg}", file=sys.stderr)
    return code


def _need(*modules: str) -> str | None:
    import importlib.util

    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        return f"missing {', '.join(missing)}: {TRAIN_HINT}"
    return None


# ---------------------------------------------------------------- train


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data",
        action="append",
        default=None,
        help="training JSONL(.gz) with prompt/outcomes or pairwise rows; repeat for several "
        "files (default: the repo's routing-train, routing-chat and anchors data)",
    )
    parser.add_argument("--out", default=None, help="output model dir (default: ./tierwise-model)")
    parser.add_argument(
        "--eval-data",
        default=str(REPO_DATA / "alpaca-eval-nc.jsonl.gz"),
        help="extra evaluation-only JSONL (never trained on); '' to skip",
    )
    parser.add_argument("--l2", type=float, default=None, help="L2 on text weights")
    parser.add_argument(
        "--no-semantic",
        action="store_true",
        help="leave out the static MiniLM embedding (data/minilm-static) of the words",
    )
    parser.add_argument("--no-validate", action="store_true", help="skip leave-one-source-out")
    parser.add_argument(
        "--loso-scores",
        default=None,
        metavar="FILE.npz",
        help="also write each leave-one-source-out pair's item scores and outcomes, for "
        "`python bench/heldout_bootstrap.py BASE.npz NEW.npz --variant loso`",
    )


def run_train(args: argparse.Namespace) -> int:
    err = _need("scipy", "onnx")
    if err:
        return _fail(err)
    from .card import write_card
    from .data import DataError, load_rows
    from .train import DEFAULT_PARAMS, train

    out = Path(args.out) if args.out else Path("tierwise-model")
    params: dict[str, float] = {}
    if args.l2 is not None:
        params["l2"] = args.l2
    if args.no_semantic:
        params["semantic"] = 0
    data = args.data or [str(REPO_DATA / n) for n in DEFAULT_DATA]
    try:
        # Bad data (or data that may not be trained on) is reported before missing extras:
        # installing packages would not help. Reading it costs ~0.5 s of a training.
        for path in data:
            load_rows(path)
    except DataError as exc:
        return _fail(str(exc))
    if params.get("semantic", DEFAULT_PARAMS["semantic"]):
        err = _need("tokenizers")
        if err:
            return _fail(err)
        from .embedding import STATIC_DIR

        if not (STATIC_DIR / "embeddings.npy").is_file():
            return _fail(
                f"{STATIC_DIR}/embeddings.npy: the static word embedding is not here (it ships "
                "with a source checkout, not with the installed package). Run `tierwise train` "
                "from a checkout, rebuild it with `python -c 'from classifiers.embedding import "
                "distill; distill()'`, or pass --no-semantic."
            )
    if not args.data:  # a retrain of the shipped model: say if it cannot come out identical
        from .model_files import kernel_note
        from .scorer import MODEL_DIR

        note = kernel_note(MODEL_DIR)
        if note:
            _log(note)
    try:
        res = train(
            data,
            out,
            params=params or None,
            eval_data=args.eval_data or None,
            validate=not args.no_validate,
            log=_log,
        )
    except DataError as exc:
        return _fail(str(exc))
    write_card(out)
    if args.loso_scores:
        from .validation import save_fold_scores

        n = save_fold_scores(res.folds, args.loso_scores)
        _log(f"{n} leave-one-source-out pairs' item scores written to {args.loso_scores}")
    for r in res.folds + res.extra:
        print(
            json.dumps(
                {
                    "source": r.source,
                    "strong": r.strong,
                    "weak": r.weak,
                    "apgr": round(r.result.apgr, 4),
                    "cpt50": round(r.result.cpt50, 4),
                    "auc": round(r.result.auc, 4),
                    "n": r.result.n,
                }
            )
        )
    _log(f"model written to {out}")
    return 0


# ---------------------------------------------------------------- eval


def add_eval_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data", required=True, help="labeled JSONL(.gz): prompt|messages + outcomes"
    )
    parser.add_argument("--strong", required=True, help="strong model name as in the outcomes")
    parser.add_argument("--weak", required=True, help="weak model name as in the outcomes")
    parser.add_argument("--model", default=None, help="difficulty model dir (default: shipped)")
    parser.add_argument("--plot", default=None, help="write the curves to this .png or .svg file")
    parser.add_argument("--json", action="store_true", help="print the full result as JSON")


def _resolve_model(name: str, available: set[str], path: str) -> str:
    from .names import canonical

    if name in available:
        return name
    want = canonical(name)
    for a in sorted(available):
        if canonical(a) == want:
            return a
    raise ValueError(
        f"{path}: no outcomes for model {name!r}. Models in the file: "
        f"{', '.join(sorted(available)[:30])}{' ...' if len(available) > 30 else ''}"
    )


def run_eval(args: argparse.Namespace) -> int:
    import numpy as np

    from .data import DataError, read_jsonl, row_messages
    from .metrics import evaluate_pair

    if args.plot and Path(args.plot).suffix.lower() not in (".png", ".svg"):
        return _fail(f"--plot {args.plot}: use a file name ending in .png or .svg")
    if args.plot and _need("matplotlib"):
        return _fail(_need("matplotlib") or "")
    try:
        rows = read_jsonl(args.data)
    except DataError as exc:
        return _fail(str(exc))
    available: set[str] = set()
    for i, row in enumerate(rows, 1):
        if not isinstance(row.get("outcomes"), dict):
            return _fail(f"{args.data}:{i}: missing 'outcomes' object {{model: score in [0,1]}}.")
        if "prompt" not in row and "messages" not in row:
            return _fail(f"{args.data}:{i}: row has neither 'prompt' nor 'messages'. Add one.")
        available.update(row["outcomes"])
    try:
        strong = _resolve_model(args.strong, available, args.data)
        weak = _resolve_model(args.weak, available, args.data)
    except ValueError as exc:
        return _fail(str(exc))
    keep = [
        r
        for r in rows
        if isinstance(r["outcomes"].get(strong), (int, float))
        and isinstance(r["outcomes"].get(weak), (int, float))
    ]
    if len(keep) < 10:
        return _fail(
            f"{args.data}: only {len(keep)} rows have outcomes for both {strong} and "
            f"{weak}; need at least 10."
        )
    from .scorer import DifficultyScorer

    try:
        scorer = DifficultyScorer(args.model)
    except (FileNotFoundError, ValueError) as exc:
        return _fail(str(exc))
    _log(f"scoring {len(keep)} prompts ...")
    scores = np.asarray([s.difficulty for s in scorer.score_batch([row_messages(r) for r in keep])])
    qs = np.asarray([float(r["outcomes"][strong]) for r in keep])
    qw = np.asarray([float(r["outcomes"][weak]) for r in keep])
    res = evaluate_pair(scores, qs, qw)
    if args.json:
        print(json.dumps({"strong": strong, "weak": weak, **res.as_dict()}))
    else:
        print(f"{args.data}: {strong} (strong) vs {weak} (weak), n={res.n}")
        print(f"  quality: strong {res.strong_quality:.4f}  weak {res.weak_quality:.4f}")
        print(f"  APGR   {res.apgr:.4f}   (random 0.5000, oracle {res.oracle_apgr:.4f})")
        print(
            f"  CPT20% {res.cpt20:.4f}  CPT50% {res.cpt50:.4f}  CPT80% {res.cpt80:.4f}"
            "   (random: 0.20 / 0.50 / 0.80)"
        )
        print(f"  AUC    {res.auc:.4f}   (score vs 'strong beats weak')")
        print("  share  PGR    oracle")
        for x, y, oy in zip(res.shares, res.pgr, res.oracle_pgr, strict=True):
            print(f"  {x:.3f}  {y:+.3f}  {oy:+.3f}")
    if args.plot:
        from .plot import plot_curves

        path = plot_curves(res, args.plot, f"{Path(args.data).name}: {strong} vs {weak}")
        _log(f"plot written to {path}")
    return 0


# ---------------------------------------------------------------- calibrate


def add_calibrate_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="calibrate_what", required=True)
    a = sub.add_parser("ability", help="fit the ability of a new model from labeled prompts")
    a.add_argument(
        "--data",
        required=True,
        help="JSONL: prompt|messages + score in [0,1] (the new model's result)",
    )
    a.add_argument("--model", default=None, help="difficulty model dir (default: shipped)")
    a.add_argument("--name", default="new-model", help="name to print in the policy snippet")
    t = sub.add_parser("target", help="choose the policy quality target for wanted tier shares")
    t.add_argument("--traffic", required=True, help="unlabeled JSONL: prompt|messages per line")
    t.add_argument(
        "--tiers",
        required=True,
        help="comma-separated tier models or abilities, cheapest first "
        "(e.g. gpt-4o-mini,gpt-4o or -0.5,1.2)",
    )
    t.add_argument(
        "--share",
        required=True,
        help="comma-separated wanted share of calls per tier, e.g. 0.7,0.3",
    )
    t.add_argument("--model", default=None, help="difficulty model dir (default: shipped)")


def _difficulties(path: str, model: str | None) -> tuple[list[dict], list[float]]:
    from .data import read_jsonl, row_messages
    from .scorer import DifficultyScorer

    rows = read_jsonl(path)
    for i, row in enumerate(rows, 1):
        if "prompt" not in row and "messages" not in row:
            raise ValueError(f"{path}:{i}: row has neither 'prompt' nor 'messages'. Add one.")
    scorer = DifficultyScorer(model)
    return rows, [s.difficulty for s in scorer.score_batch([row_messages(r) for r in rows])]


def run_calibrate(args: argparse.Namespace) -> int:
    import numpy as np

    from . import ability_for, known_abilities
    from .calibrate import choose_target, fit_ability
    from .data import DataError

    try:
        if args.calibrate_what == "ability":
            rows, d = _difficulties(args.data, args.model)
            scores = []
            for i, row in enumerate(rows, 1):
                s = row.get("score")
                if not isinstance(s, (int, float)) or not 0.0 <= float(s) <= 1.0:
                    raise ValueError(
                        f"{args.data}:{i}: 'score' must be a number in [0, 1] "
                        "(1 = the model answered this prompt well)."
                    )
                scores.append(float(s))
            if len(rows) < 5:
                raise ValueError(
                    f"{args.data}: {len(rows)} labeled prompts; give at least 5 "
                    "(20+ for a usable ability)."
                )
            known = list(known_abilities().values())
            prior = float(np.median(known)) if known else 0.0
            a, sd = fit_ability(np.asarray(d), np.asarray(scores), prior_mean=prior)
            print(
                json.dumps(
                    {
                        "model": args.name,
                        "ability": round(a, 4),
                        "std": round(sd, 4),
                        "n": len(rows),
                        "mean_score": round(float(np.mean(scores)), 4),
                    }
                )
            )
            _log(
                f"policy snippet:  ability = {a:.3f}   # {args.name}, +/- {sd:.2f}, "
                f"from {len(rows)} prompts"
            )
            return 0
        abilities: list[float] = []
        for item in [x.strip() for x in args.tiers.split(",") if x.strip()]:
            try:
                abilities.append(float(item))
            except ValueError:
                ab = ability_for(item)
                if ab is None:
                    raise ValueError(
                        f"--tiers: no shipped ability for {item!r}; give a number "
                        "or run `tierwise calibrate ability` for it."
                    ) from None
                abilities.append(ab)
        try:
            wanted = [float(x) for x in args.share.split(",")]
        except ValueError:
            raise ValueError(f"--share {args.share!r}: give numbers like 0.7,0.3") from None
        if len(wanted) != len(abilities) or min(wanted) < 0 or sum(wanted) <= 0:
            raise ValueError(f"--share: give {len(abilities)} non-negative numbers, one per tier.")
        if abs(sum(wanted) - 1.0) > 0.01:  # shares of all calls: 0.7,0.2 leaves 10% nowhere
            raise ValueError(
                f"--share {args.share}: the shares sum to {sum(wanted):g}, not 1; give each "
                "tier's share of all calls, e.g. 0.7,0.3 for two tiers or 0.7,0.2,0.1 for three."
            )
        _, d = _difficulties(args.traffic, args.model)
        if not d:
            raise ValueError(f"{args.traffic}: no prompts.")
        target, shares = choose_target(np.asarray(d), abilities, wanted)
        print(
            json.dumps(
                {
                    "quality_target": target,
                    "shares": [round(float(s), 4) for s in shares],
                    "wanted": wanted,
                    "n": len(d),
                }
            )
        )
        _log(f"policy snippet:  quality_target = {target}")
        return 0
    except (DataError, ValueError, FileNotFoundError) as exc:
        return _fail(str(exc))
