"""Runtime difficulty scorer: messages -> features (numpy) -> the ONNX model -> :class:`Score`.

model.onnx is the one artifact, and onnxruntime can always run it (``engine="onnxruntime"``).
The default engine, ``"auto"``, evaluates it with numpy when the graph is the linear one
``tierwise train`` builds (:mod:`classifiers.onnx_table` checks the graph and reads its table):
same numbers (tests/test_classifier_contract.py compares them with onnxruntime), without
onnxruntime's fixed cost per run, which is larger than the model's own work (measured in
bench/latency.py: ~50 us per single run on a request path, ~8 us per conversation in a batch of
64, against ~5 us and ~2 us in numpy). Any other graph runs on onnxruntime (one thread: a batch
is microseconds of graph work and threads only add wake-up latency).

``scorer="accurate"`` adds the sentence head's shift to d (:mod:`classifiers.sentence_head`:
the last user turn through the distilled MiniLM encoder, ~2.6 ms at 500 tokens on one core)
and maps the sum back to the fast d's level and spread on chat traffic
(``offset + scale * (d + shift)``); the uncertainty is the fast model's, scaled alike, so both
scorers keep one Decision contract. :meth:`DifficultyScorer.explain` splits d into its parts.
"""

from __future__ import annotations

import json
import math
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from . import SCORERS, Score, ScorerKind, features
from .features import N_FEATURES, TABLE_ROWS, Features, extract, extract_many, pad_batch
from .onnx_table import read_linear_table
from .wordpieces import load_vocabulary

MODEL_DIR = Path(__file__).resolve().parent / "model"
FEATURE_VERSION = 22  # 1: o200k ids; 2: hashed words; 3: bounded pooling; 4: shrunk mean;
# 5: arithmetic_digits; 6: WordPieces for words outside the whole-word vocabulary; 7: the
# short-request word block (features.SHORT_PRIOR); 8: that block as a third table column read
# with one scale per request, not copied entries (the fit's features are version 7's); 9: a
# dollar amount is not math markup; 10: Unicode math signs are math markup, "？" and "؟" are
# question marks; 11: a system prompt is not scored, only flagged and counted in n_tokens (no
# training row has one: the same weights as version 10's); 12: a message's leading and trailing
# whitespace is stripped; 13: Unicode spaces read as spaces, invisible format characters dropped;
# 14: a run of spaces or a tab reads as one space, markdown bold markers are dropped; 15:
# typographic quotes and the ellipsis read as ASCII; 16: the short-request block holds the
# last user turn's first and last SHORT_WINDOW words (the whole turn when it is no longer);
# 17: a message's text parts join with a space, not a line break (no training row has parts:
# the same weights as version 16's); 18: an agent's tool exchange (tool calls, tool messages) is
# not scored, only flagged and counted in n_tokens, and its flags carry no prior variance (no
# training row has one: the same weights as version 17's); 19: log_lines counts runs of line
# breaks, the first one free after a sentence outside code and maths (features._line_runs);
# 20: a user turn's opening greeting and closing thank-you are dropped (classifiers/pleasantries.py)
# 21: a code fence line (``` or ~~~ and an info string) is not read, only flagged; 22: a
# heading's marks ("## " .. "###### " and a closing run of "#") are not read
if TYPE_CHECKING:
    from .explain import Explanation

Engine = Literal["auto", "onnxruntime"]


class DifficultyScorer:
    """Scores OpenAI chat conversations with the difficulty model in ``model_dir``."""

    def __init__(self, model_dir: str | Path | None = None, engine: Engine = "auto",
                 scorer: ScorerKind = "fast") -> None:
        if engine not in ("auto", "onnxruntime"):
            raise ValueError(f"engine must be 'auto' or 'onnxruntime', not {engine!r}")
        if scorer not in SCORERS:
            names = " or ".join(repr(s) for s in SCORERS)
            raise ValueError(f"scorer must be {names}, not {scorer!r}")
        self.model_dir = Path(model_dir) if model_dir is not None else MODEL_DIR
        self.onnx_path = self.model_dir / "model.onnx"
        meta_path = self.model_dir / "model.json"
        if not self.onnx_path.is_file():
            raise FileNotFoundError(
                f"{self.onnx_path}: no difficulty model. Run `tierwise train --out "
                f"{self.model_dir}` or pass the directory of a trained model."
            )
        self.meta: dict[str, Any] = (
            json.loads(meta_path.read_text()) if meta_path.is_file() else {}
        )
        if self.meta.get("n_features", N_FEATURES) != N_FEATURES or self.meta.get(
            "feature_version", FEATURE_VERSION
        ) != FEATURE_VERSION:
            raise ValueError(
                f"{meta_path}: model was trained with another feature layout; retrain it with "
                "`tierwise train` from this version of tierwise."
            )
        for key, name in (("word_prior", "WORD_PRIOR"), ("short_prior", "SHORT_PRIOR"),
                          ("short_window", "SHORT_WINDOW")):
            # the word values are shrunk at extraction time: a model fitted on other priors
            # would score every request a little wrong, silently
            trained, here = self.meta.get(key), getattr(features, name)
            if trained is not None and float(trained) != here:
                raise ValueError(
                    f"{meta_path}: model was trained with {name} {trained}, this tierwise "
                    f"extracts features with {here}; retrain it with `tierwise train`."
                )
        self._bigrams = bool(self.meta.get("bigrams", False))
        self._table = read_linear_table(self.onnx_path) if engine == "auto" else None
        if self._table is not None and self._table.shape[0] < TABLE_ROWS:
            raise ValueError(
                f"{self.onnx_path}: table has {self._table.shape[0]} rows, the features need "
                f"{TABLE_ROWS}; retrain it with `tierwise train`."
            )
        # the vocabulary that splits words outside it into WordPieces (~50 ms): now, not on
        # the first request, and a missing file fails here with its name
        load_vocabulary()
        self._session: Any = None
        if self._table is None:  # onnxruntime scores everything: load it now, fail early
            self._session = self._load_session()
        #: "numpy" or "onnxruntime": what scores requests
        self.engine = "numpy" if self._table is not None else "onnxruntime"
        #: "fast" (the table alone) or "accurate" (plus the sentence head)
        self.kind: ScorerKind = scorer
        self._encoder: Any = None
        self._head: Any = None
        if scorer == "accurate":
            self._load_accurate()

    def _load_accurate(self) -> None:
        from .encoder import SentenceEncoder
        from .sentence_head import HEAD_FILE, HeadRunner

        head = self.model_dir / HEAD_FILE
        if not head.is_file():
            raise FileNotFoundError(
                f"{head}: this model has no sentence head, which the \"accurate\" scorer "
                "needs; retrain it with `tierwise train` (which writes one), or use the "
                "\"fast\" scorer.")
        self._encoder = SentenceEncoder()
        self._head = HeadRunner(head)
        # accurate d = offset + scale * (fast d + shift) (SentenceHead.level): chat traffic
        # keeps the fast d's median and 20-80% spread, so a policy's abilities mean the same
        level = self.meta.get("sentence_head") or {}
        self._offset = float(level.get("offset", 0.0))
        self._scale = float(level.get("scale", 1.0))

    def sentence_shift(self, conversations: list[Any]) -> np.ndarray:
        """The sentence-head term of each conversation, before the level's offset and scale
        (zeros for the fast scorer): d = offset + scale * (fast d + this)."""
        if self._head is None:
            return np.zeros(len(conversations))
        from .conversation import last_user_text

        return self._head.shift(self._encoder.encode([last_user_text(c) for c in conversations]))

    def _load_session(self) -> Any:
        from .onnx_session import open_session

        return open_session(self.onnx_path)

    @property
    def session(self) -> Any:
        """The onnxruntime session of model.onnx (created on first use)."""
        if self._session is None:
            self._session = self._load_session()
        return self._session

    def run_onnxruntime(self, feats: list[Features]) -> tuple[np.ndarray, np.ndarray]:
        """(difficulty, uncertainty) of each conversation's features, through onnxruntime."""
        ids, x = pad_batch(feats)
        (out,) = self.session.run(["scores"], {"ids": ids, "x": x})
        return out[:, 0], np.sqrt(np.maximum(out[:, 1], 0.0))

    def score(self, messages: list[dict] | str) -> Score:
        """Difficulty of one conversation (a bare string is treated as one user turn)."""
        f = extract(messages, self._bigrams)
        if self._table is None:
            d, u = self.run_onnxruntime([f])
            d0, u0 = float(d[0]), float(u[0])
        else:
            # [K, 3]: (weight, variance, short-request weight) per entry; the last is 0 on the
            # structure rows, so the short-request block needs no mask there, only the one
            # scale (in a long request, its own values: the words between the ends are 0)
            rows = self._table.take(f.ids, axis=0)
            x = f.values
            d0 = float(np.dot(x, rows[:, 0])) + (
                f.short_scale * float(np.dot(x, rows[:, 2])) if f.short is None
                else float(np.dot(f.short, rows[:, 2])))
            u0 = math.sqrt(max(float(np.dot(x * x, rows[:, 1])), 0.0))
        if self._head is not None:
            d0 = self._offset + self._scale * (d0 + float(self.sentence_shift([messages])[0]))
            u0 = self._scale * u0
        return Score(difficulty=d0, uncertainty=u0, n_tokens=f.n_tokens)

    def explain(self, messages: list[dict] | str) -> Explanation:
        """What adds up to this conversation's difficulty: the parts of the model, largest first,
        summing to ``score(messages).difficulty``, and each word's share of the word blocks
        (:mod:`classifiers.explain`). With the accurate scorer every value is scaled as d is,
        and the sentence head and the level's offset are two more parts."""
        from .explain import LEVEL, SENTENCE_HEAD, Explanation, explain, largest_first

        table = self._table if self._table is not None else self._table_for_explain
        if table is None:
            raise ValueError(f"{self.onnx_path}: not the linear model `tierwise train` builds, "
                             "so its difficulty cannot be split into parts")
        why = explain(table, extract(messages, self._bigrams), messages)
        if self._head is None:
            return why
        why = why.scaled(self._scale)
        shift = float(self.sentence_shift([messages])[0])
        parts = {**why.parts, SENTENCE_HEAD: self._scale * shift, LEVEL: self._offset}
        return Explanation(largest_first(parts), why.words)

    @cached_property
    def _table_for_explain(self) -> np.ndarray | None:
        """model.onnx's linear table when the scorer runs on onnxruntime (engine="onnxruntime"
        on a linear graph), read once, not per explained request; None for another graph."""
        return read_linear_table(self.onnx_path)

    def score_batch(self, conversations: list[list[dict]] | list[Any]) -> list[Score]:
        """Difficulty of many conversations (one hashing pass, one model evaluation)."""
        if not conversations:
            return []
        feats = (
            [extract(c, True) for c in conversations]
            if self._bigrams
            else extract_many(conversations)
        )
        if self._table is None:
            d, u = self.run_onnxruntime(feats)
            dl, ul = d.tolist(), u.tolist()
        else:  # flat: no padding; one gather, one segment sum per output
            flat_ids = np.concatenate([f.ids for f in feats])
            x = np.concatenate([f.values for f in feats])
            short = np.concatenate([f.short_values() for f in feats])
            starts = np.cumsum([0] + [f.ids.size for f in feats[:-1]])
            rows = self._table.take(flat_ids, axis=0)
            dl = (np.add.reduceat(x * rows[:, 0], starts)
                  + np.add.reduceat(short * rows[:, 2], starts)).tolist()
            ul = np.sqrt(np.maximum(np.add.reduceat(x * x * rows[:, 1], starts), 0.0)).tolist()
        if self._head is not None:
            total = np.asarray(dl) + self.sentence_shift(list(conversations))
            dl = (self._offset + self._scale * total).tolist()
            ul = (self._scale * np.asarray(ul)).tolist()
        return [
            Score(difficulty=float(dl[i]), uncertainty=float(ul[i]), n_tokens=f.n_tokens)
            for i, f in enumerate(feats)
        ]
