"""tierwise classifiers: how hard is a request?

``DifficultyScorer().score(messages) -> Score`` predicts the difficulty d(x) of an OpenAI chat
conversation in logit units, so that P(model m does well) = sigmoid(ability_m - d). Abilities of
known models come from the shipped table (:func:`ability_for`). This module stays light to
import: onnxruntime and tiktoken load on first use.

``Score.uncertainty`` (logit units, >= 0) is a diagonal-Laplace posterior standard deviation:
sqrt(sum_j x_j^2 / (H_jj + l2)) over the prompt's features x, with H_jj the Fisher information
the training data carries about feature j. It grows when a prompt is made of tokens (and
structure) the training data rarely saw, and is ~0.1 for well-covered prompts. It does not
include the irreducible item-level noise of d.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Literal, get_args

if TYPE_CHECKING:
    from .scorer import DifficultyScorer

__all__ = ["SCORERS", "DifficultyScorer", "Score", "ScorerKind", "ability_for",
           "default_scorer", "known_abilities"]

# The scorers a policy's `scorer` key, `--scorer` and DifficultyScorer accept; the first is the
# default. Here, not in .scorer, so the policy schema and the CLI can name them without numpy.
ScorerKind = Literal["fast", "accurate"]
SCORERS: tuple[ScorerKind, ...] = get_args(ScorerKind)

_MODEL_DIR = Path(__file__).resolve().parent / "model"


@dataclass(frozen=True)
class Score:
    """Difficulty of one conversation."""

    difficulty: float  # d(x), logit units: P(model m does well) = sigmoid(ability_m - d)
    uncertainty: float  # >= 0, approximate posterior std of d, logit units
    n_tokens: int  # o200k_base tokens of all messages' text + tool-call names/arguments
    # (summed per message; no chat-template overhead, images/audio count 0)


def __getattr__(name: str):  # lazy: `from classifiers import DifficultyScorer`
    if name == "DifficultyScorer":
        from .scorer import DifficultyScorer

        return DifficultyScorer
    raise AttributeError(f"module 'classifiers' has no attribute {name!r}")


_lock = threading.Lock()
_defaults: dict[str, DifficultyScorer] = {}


def default_scorer(kind: str = "fast") -> DifficultyScorer:
    """The shipped model's scorer of ``kind`` ("fast" or "accurate"), built on first call and
    cached (thread-safe)."""
    scorer = _defaults.get(kind)
    if scorer is None:
        with _lock:
            scorer = _defaults.get(kind)
            if scorer is None:
                from .scorer import DifficultyScorer

                scorer = _defaults[kind] = DifficultyScorer(scorer=kind)  # type: ignore[arg-type]
    return scorer


@lru_cache(maxsize=1)
def _abilities() -> dict[str, float]:
    path = _MODEL_DIR / "abilities.json"
    if not path.is_file():
        return {}
    data = json.loads(path.read_text())
    return {str(k): float(v) for k, v in data.get("abilities", {}).items()}


def known_abilities() -> dict[str, float]:
    """Ability of every model in the shipped table (canonical litellm-style names)."""
    return dict(_abilities())


def ability_for(model: str) -> float | None:
    """Ability of ``model`` (e.g. "gpt-4o", "openai/gpt-4o", "mistral/mixtral-8x7b"), or None."""
    from .names import lookup_key

    table = _abilities()
    key = lookup_key(model, table)
    return table[key] if key is not None else None
