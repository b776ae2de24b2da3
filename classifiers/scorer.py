"""Runtime difficulty scorer: messages -> features (numpy) -> the ONNX model -> :class:`Score`.

model.onnx is the one artifact. Batches run through onnxruntime (single-threaded: intra_op =
inter_op = 1, a batch is microseconds of graph work and threads only add wake-up latency). One
request is scored with numpy from the same graph's table when the graph is the linear one
``tierwise train`` builds (:mod:`classifiers.onnx_table` says why and checks the graph): same
numbers, a third of the time, and no onnxruntime import at all for ``route()`` and the CLI.
tests/test_classifier_contract.py checks the two paths agree.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from . import Score
from .features import N_FEATURES, extract, extract_many, pad_batch
from .onnx_table import read_linear_table

MODEL_DIR = Path(__file__).resolve().parent / "model"
FEATURE_VERSION = 2  # 1: o200k token ids (tiktoken); 2: hashed words


class DifficultyScorer:
    """Scores OpenAI chat conversations with the difficulty model in ``model_dir``."""

    def __init__(self, model_dir: str | Path | None = None) -> None:
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
        self._bigrams = bool(self.meta.get("bigrams", False))
        self._table = read_linear_table(self.onnx_path)
        if self._table is not None and self._table.shape[0] < N_FEATURES:
            raise ValueError(
                f"{self.onnx_path}: table has {self._table.shape[0]} rows, the features need "
                f"{N_FEATURES}; retrain it with `tierwise train`."
            )
        self._session: Any = None
        if self._table is None:  # not our linear graph: onnxruntime scores everything
            self._session = self._load_session()

    def _load_session(self) -> Any:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        return ort.InferenceSession(
            str(self.onnx_path), sess_options=opts, providers=["CPUExecutionProvider"]
        )

    @property
    def session(self) -> Any:
        """The onnxruntime session (created on first use)."""
        if self._session is None:
            self._session = self._load_session()
        return self._session

    def _run(self, ids: np.ndarray, vals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(difficulty, uncertainty) of ``[N, K]`` padded ids/values, through onnxruntime."""
        (out,) = self.session.run(["scores"], {"ids": ids, "values": vals[..., None]})
        return out[:, 0], np.sqrt(np.maximum(out[:, 1], 0.0))

    def score(self, messages: list[dict] | str) -> Score:
        """Difficulty of one conversation (a bare string is treated as one user turn)."""
        f = extract(messages, self._bigrams)
        if self._table is None:
            d, u = self._run(f.ids.reshape(1, -1), f.values.reshape(1, -1))
            return Score(difficulty=float(d[0]), uncertainty=float(u[0]), n_tokens=f.n_tokens)
        rows = self._table.take(f.ids, axis=0)  # [K, 2]: (weight, variance) per entry
        x = f.values
        var = float(np.dot(x * x, rows[:, 1]))
        return Score(
            difficulty=float(np.dot(x, rows[:, 0])),
            uncertainty=math.sqrt(max(var, 0.0)),
            n_tokens=f.n_tokens,
        )

    def score_batch(self, conversations: list[list[dict]] | list[Any]) -> list[Score]:
        """Difficulty of many conversations in one onnxruntime call."""
        if not conversations:
            return []
        feats = (
            [extract(c, True) for c in conversations]
            if self._bigrams
            else extract_many(conversations)
        )
        ids, vals = pad_batch(feats)
        d, u = self._run(ids, vals)
        return [
            Score(difficulty=float(d[i]), uncertainty=float(u[i]), n_tokens=f.n_tokens)
            for i, f in enumerate(feats)
        ]
