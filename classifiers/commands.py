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

TRAIN_HINT = "pip install 'tierwise[train]'"
REPO_DATA = Path(__file__).resolve().parent.parent / "data"


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
        default=str(REPO_DATA / "routing-train.jsonl.gz"),
        help="training JSONL(.gz) with prompt/outcomes rows (default: the repo's data)",
    )
    parser.add_argument("--out", default=None, help="output model dir (default: ./tierwise-model)")
    parser.add_argument(
        "--eval-data",
        default=str(REPO_DATA / "alpaca-eval-nc.jsonl.gz"),
        help="extra evaluation-only JSONL (never trained on); '' to skip",
    )
    parser.add_argument("--l2", type=float, default=None, help="L2 on text weights")
    parser.add_argument("--no-validate", action="store_true", help="skip leave-one-source-out")


def run_train(args: argparse.Namespace) -> int:
    err = _need("scipy", "onnx")
    if err:
        return _fail(err)
    from .card import write_card
    from .data import DataError
    from .train import train

    out = Path(args.out) if args.out else Path("tierwise-model")
    params = {"l2": args.l2} if args.l2 is not None else None
    try:
        res = train(
            args.data,
            out,
            params=params,
            eval_data=args.eval_data or None,
            validate=not args.no_validate,
            log=_log,
        )
    except DataError as exc:
        return _fail(str(exc))
    write_card(out)
    for r in res.folds + res.extra:
        print(json.dumps({"source": r.source, "strong": r.strong, "weak": r.weak,
                          "apgr": round(r.result.apgr, 4), "cpt50": round(r.result.cpt50, 4),
                          "auc": round(r.result.auc, 4), "n": r.result.n}))
    _log(f"model written to {out}")
    return 0
