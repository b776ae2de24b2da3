"""Prices, context windows and capabilities of known models, read from litellm's model map file.

Reading the JSON file directly (found without importing litellm) keeps policy loading fast:
``import litellm`` costs ~3 s and ~200 MB, and `route()` must never pay for it.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

_MAP_FILE = "model_prices_and_context_window_backup.json"


@dataclass(frozen=True)
class ModelInfo:
    """What litellm's model map knows about one model (prices in USD per token)."""

    key: str
    input_cost_per_token: float | None
    output_cost_per_token: float | None
    max_input_tokens: int | None
    supports_vision: bool | None
    supports_function_calling: bool | None


@lru_cache(maxsize=1)
def _model_map() -> dict[str, dict]:
    spec = importlib.util.find_spec("litellm")
    if spec is None or not spec.submodule_search_locations:
        return {}
    path = Path(next(iter(spec.submodule_search_locations))) / _MAP_FILE
    if not path.is_file():
        return {}
    with path.open(encoding="utf-8") as f:
        data: dict[str, dict] = json.load(f)
    return data


def lookup(model: str) -> ModelInfo | None:
    """Find `model` (a litellm model string such as ``openai/gpt-4o``) in litellm's model map."""
    table = _model_map()
    candidates = [model]
    if "/" in model:
        candidates.append(model.split("/", 1)[1])
    for key in candidates:
        entry = table.get(key)
        if isinstance(entry, dict) and "input_cost_per_token" in entry:
            return ModelInfo(
                key=key,
                input_cost_per_token=_num(entry.get("input_cost_per_token")),
                output_cost_per_token=_num(entry.get("output_cost_per_token")),
                max_input_tokens=_int(entry.get("max_input_tokens") or entry.get("max_tokens")),
                supports_vision=entry.get("supports_vision"),
                supports_function_calling=entry.get("supports_function_calling"),
            )
    return None


def _num(value: object) -> float | None:
    return float(value) if isinstance(value, (int, float)) else None


def _int(value: object) -> int | None:
    return int(value) if isinstance(value, (int, float)) else None
