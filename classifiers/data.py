"""Training data: load the routing JSONL, apply the test-set exclusions, build IRT pairs.

Two label shapes (the data README's schema): ``outcomes`` {model: score in [0, 1]} and pairwise
verdicts ``meta.pairs`` [[model_a, model_b, winner]] with winner ``model_a | model_b | tie``
(routing-chat.jsonl.gz; some sources write meta values as Python-literal strings). Multi-turn chat
rows carry their conversation in ``meta.conversation`` or ``meta.all_user_turns``.

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

import ast
import gzip
import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
    if src == "qlora_vicuna_relative":
        # scores on a scale relative to a gpt-3.5-turbo answer judged beside it: every 7B-65B
        # model "beats" gpt-3.5-turbo (0.91 vs 0.57), so they are not outcomes of the model
        return "label artifact: relative-to-gpt-3.5 judge scores"
    if src == "llmrouter_dcrouter" and fam in ("trivia_qa", "gpqa", "agentverse-logicgrid"):
        # the best of 9 models scores 22% (TriviaQA exact match), 25% (GPQA, 4 choices: chance)
        # and 31% (logic grids): grading artifacts or noise, which one difficulty learns as "hard"
        return "label artifact: best model at or near chance"
    return None


def meta_value(row: dict, key: str) -> object:
    """``row["meta"][key]``, decoding the Python-literal strings some sources wrote."""
    val = (row.get("meta") or {}).get(key)
    if isinstance(val, str) and val[:1] in "[{(":
        try:
            return ast.literal_eval(val)
        except (ValueError, SyntaxError):
            return None
    return val


def row_comparisons(row: dict) -> list[tuple[str, str, str]]:
    """The row's pairwise verdicts as (model_a, model_b, winner) with winner in a | b | tie."""
    pairs = meta_value(row, "pairs")
    out: list[tuple[str, str, str]] = []
    if not isinstance(pairs, (list, tuple)):
        return out
    for p in pairs:
        if not isinstance(p, (list, tuple)) or len(p) != 3:
            continue
        a, b, w = (str(x) for x in p)
        win = {"model_a": "a", "model_b": "b", "tie": "tie", a: "a", b: "b"}.get(w)
        if win is not None and a != b:
            out.append((a, b, win))
    return out


def _well_formed_pairs(pairs: object) -> bool:
    return isinstance(pairs, (list, tuple)) and all(
        isinstance(p, (list, tuple)) and len(p) == 3 for p in pairs
    )


def load_rows(
    path: str | Path, allow_nc: bool = False, apply_exclusions: bool = True
) -> list[dict]:
    """Validated label rows: each has ``prompt`` (or ``messages``) and ``outcomes`` or
    pairwise ``meta.pairs``."""
    rows = read_jsonl(path)
    out: list[dict] = []
    for i, row in enumerate(rows, 1):
        if "prompt" not in row and "messages" not in row:
            raise DataError(f"{path}:{i}: row has neither 'prompt' nor 'messages'. Add one.")
        outcomes = row.get("outcomes")
        pairwise = "pairs" in (row.get("meta") or {})
        if not pairwise and (not isinstance(outcomes, dict) or not outcomes):
            raise DataError(
                f"{path}:{i}: 'outcomes' must be an object {{model: score in [0,1]}} "
                "(or give pairwise verdicts in meta.pairs: [[model_a, model_b, winner]])."
            )
        if pairwise and not _well_formed_pairs(meta_value(row, "pairs")):
            raise DataError(
                f"{path}:{i}: meta.pairs must be a list of [model_a, model_b, winner] with "
                "winner 'model_a', 'model_b' or 'tie'."
            )
        row.setdefault("outcomes", {})
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


_TURN = re.compile(r"###\s*(Human|Assistant):", re.IGNORECASE)


def _parse_transcript(text: str) -> list[dict]:
    """``### Human: ... ### Assistant: ...`` (OpenAssistant/QLoRA transcripts) -> messages."""
    parts = _TURN.split(text)
    msgs = []
    for who, body in zip(parts[1::2], parts[2::2], strict=False):
        role = "user" if who.lower() == "human" else "assistant"
        if body.strip():
            msgs.append({"role": role, "content": body.strip()})
    return msgs


def row_messages(row: dict) -> list[dict] | str:
    """The conversation a row's labels are about: ``messages``, a multi-turn chat transcript
    from its meta, or the prompt as one user turn."""
    if "messages" in row:
        return row["messages"]
    conv = meta_value(row, "conversation")
    if isinstance(conv, str) and "###" in conv:
        msgs = _parse_transcript(conv)
        if msgs and msgs[-1]["role"] == "user":
            return msgs
    turns = meta_value(row, "all_user_turns")
    if isinstance(turns, list) and len(turns) > 1:
        return [{"role": "user", "content": str(t)} for t in turns]
    return str(row.get("prompt", ""))


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


def prompt_key(row: dict) -> str:
    """What identifies a row's prompt across rows and sources: its ``prompt_key`` where the data
    has one (routing-train), else the start of the prompt (routing-chat has none)."""
    return row.get("prompt_key") or str(row.get("prompt", ""))[:200]


def distinct_conversations(rows: list[dict]) -> list[list[dict] | str]:
    """The conversations of ``rows``, each prompt once (sources repeat a prompt per judge)."""
    seen: set[str] = set()
    out: list[list[dict] | str] = []
    for r in rows:
        key = prompt_key(r)
        if key not in seen:
            seen.add(key)
            out.append(row_messages(r))
    return out


def label_group(row: dict) -> str:
    """The offset group of a row (see :mod:`classifiers.irt`): its source, and its benchmark
    family where one source mixes benchmarks with different chance rates and graders."""
    src = str(row.get("source", ""))
    fam = (row.get("meta") or {}).get("family")
    return f"{src}/{fam}" if fam and fam != src else src


def build_labels(rows: list[dict]) -> tuple[Pairs, Any]:
    """Outcome pairs and pairwise comparisons of ``rows`` over one model index.

    Comparisons are aggregated per (prompt, model pair): ``y`` is the share of verdicts the
    first model won (ties count half), ``n`` the number of verdicts (Arena-Hard repeats a
    verdict three times for a strong preference, which this keeps as weight).
    """
    from .irt import Comparisons

    pairs = build_pairs(rows)
    index = {m: i for i, m in enumerate(pairs.models)}
    agg: dict[tuple[int, int, int], list[float]] = {}
    for i, row in enumerate(rows):
        for a, b, win in row_comparisons(row):
            ca, cb = canonical(a), canonical(b)
            if ca == cb:
                continue
            for name in (ca, cb):
                if name not in index:
                    index[name] = len(index)
            ia, ib = index[ca], index[cb]
            score = {"a": 1.0, "b": 0.0, "tie": 0.5}[win]
            if ia > ib:
                ia, ib, score = ib, ia, 1.0 - score
            acc = agg.setdefault((i, ia, ib), [0.0, 0.0])
            acc[0] += score
            acc[1] += 1.0
    models = sorted(index, key=index.get)  # type: ignore[arg-type]
    if agg:
        keys = np.asarray(list(agg.keys()), np.int64)
        vals = np.asarray(list(agg.values()))
        cmp = Comparisons(keys[:, 0], keys[:, 1], keys[:, 2], vals[:, 0] / vals[:, 1], vals[:, 1])
    else:
        cmp = Comparisons.empty()
    return Pairs(pairs.prompt, pairs.model, pairs.y, models), cmp
