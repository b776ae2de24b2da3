"""Training data: load the routing JSONL, apply the test-set exclusions, build IRT pairs.

Exclusions (the blind set is MT-Bench-like chat, MMLU and GSM8K; no test item may be trained on):

- ``llmrouter_dcrouter`` family ``mmlu`` rows with ``original_split == "test"`` (7 short MMLU
  test questions). The family's 500 ``train`` rows are MMLU auxiliary-train items (RACE-style
  reading passages in a spot check), not MMLU test items, and are kept.
- ``llmrouter_dcrouter`` family ``gsm8k``: all 499 rows. They are labelled ``train`` but the
  provenance of LLMRouter's split against GSM8K's own test set cannot be verified from the data
  (the same questions circulate in public GSM8K-test program dumps), so we drop the family.
- ``routerarena`` family ``routerarena_mmlupro``: MMLU-Pro contains original MMLU questions.
- MT-Bench: a spot check of its first-turn prompts found none in the pool; no source is chat.

``alpaca-eval-nc.jsonl.gz`` is CC BY-NC 4.0: :func:`load_rows` refuses it unless
``allow_nc=True`` (evaluation only).
"""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .names import canonical


class DataError(ValueError):
    """Bad training/eval input; the message names the file and the fix."""


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _open(path: Path):
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")


def read_jsonl(path: str | Path) -> list[dict]:
    """All JSON objects of a (optionally gzipped) JSONL file, with clear errors."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: no such file. Pass a JSONL (.jsonl or .jsonl.gz) file path.")
    rows: list[dict] = []
    try:
        with _open(p) as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DataError(
                        f"{p}:{lineno}: not valid JSON ({exc.msg}). Each line must be one "
                        "JSON object."
                    ) from None
                if not isinstance(obj, dict):
                    raise DataError(f"{p}:{lineno}: expected a JSON object per line.")
                rows.append(obj)
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise DataError(f"{p}: cannot read ({exc}). Is it a UTF-8 JSONL or gzip file?") from None
    return rows


def excluded(row: dict) -> str | None:
    """Why a row is excluded from training (None if it is kept)."""
    meta = row.get("meta") or {}
    src, fam = row.get("source"), meta.get("family")
    if src == "llmrouter_dcrouter" and fam == "mmlu" and meta.get("original_split") == "test":
        return "MMLU test item"
    if src == "llmrouter_dcrouter" and fam == "gsm8k":
        return "GSM8K (provenance vs test split unverifiable)"
    if src == "routerarena" and fam == "routerarena_mmlupro":
        return "MMLU-Pro (contains MMLU questions)"
    if "alpaca" in str(src):
        return "AlpacaEval (CC BY-NC: evaluation only)"
    return None


def load_rows(
    path: str | Path, allow_nc: bool = False, apply_exclusions: bool = True
) -> list[dict]:
    """Validated outcome rows: each has ``prompt`` (or ``messages``) and ``outcomes``."""
    rows = read_jsonl(path)
    out: list[dict] = []
    for i, row in enumerate(rows, 1):
        if "prompt" not in row and "messages" not in row:
            raise DataError(f"{path}:{i}: row has neither 'prompt' nor 'messages'. Add one.")
        outcomes = row.get("outcomes")
        if not isinstance(outcomes, dict) or not outcomes:
            raise DataError(
                f"{path}:{i}: 'outcomes' must be an object {{model: score in [0,1]}}."
            )
        non_commercial = "alpaca" in str(row.get("source", "")) or "BY-NC" in str(
            row.get("license", "")
        )
        if non_commercial and not allow_nc:
            raise DataError(
                f"{path}:{i}: row is licensed CC BY-NC (AlpacaEval); it may be used for "
                "evaluation only, never to train the shipped model. Use a different --data file."
            )
        if apply_exclusions and excluded(row):
            continue
        out.append(row)
    return out


def row_messages(row: dict) -> list[dict] | str:
    return row["messages"] if "messages" in row else str(row.get("prompt", ""))


@dataclass
class Pairs:
    """Flattened (prompt, model, outcome) triples for IRT fitting."""

    prompt: np.ndarray  # int64 index into rows
    model: np.ndarray  # int64 index into models
    y: np.ndarray  # float64 outcome in [0, 1]
    models: list[str]


def build_pairs(rows: Iterable[dict], models: list[str] | None = None) -> Pairs:
    """IRT pairs with canonical model names; if ``models`` is given, other models are dropped."""
    rows = list(rows)
    index: dict[str, int] = {m: i for i, m in enumerate(models)} if models else {}
    fixed = models is not None
    p: list[int] = []
    m: list[int] = []
    y: list[float] = []
    for i, row in enumerate(rows):
        seen: dict[str, list[float]] = {}
        for name, val in row["outcomes"].items():
            if val is None:
                continue
            seen.setdefault(canonical(name), []).append(float(val))
        for name, vals in seen.items():
            if name not in index:
                if fixed:
                    continue
                index[name] = len(index)
            p.append(i)
            m.append(index[name])
            y.append(min(max(sum(vals) / len(vals), 0.0), 1.0))
    names = sorted(index, key=index.get)  # type: ignore[arg-type]
    return Pairs(np.asarray(p, np.int64), np.asarray(m, np.int64), np.asarray(y), names)


def dup_groups(rows: list[dict]) -> np.ndarray:
    """Each row's ``dup_group`` (near-duplicates share one); a row without one is its own."""
    return np.asarray(
        [int((r.get("meta") or {}).get("dup_group", i + 10**9)) for i, r in enumerate(rows)]
    )
