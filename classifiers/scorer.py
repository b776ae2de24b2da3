"""Runtime difficulty scorer: messages -> features (numpy) -> ONNX -> :class:`Score`.

onnxruntime and tiktoken are imported when the first scorer is built, never at package import.
The session runs single-threaded (intra_op = inter_op = 1): a decision is a few microseconds of
graph work and threads would only add wake-up latency.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from . import Score
from .features import N_FEATURES, extract, pad_batch

MODEL_DIR = Path(__file__).resolve().parent / "model"
FEATURE_VERSION = 1


class DifficultyScorer:
    """Scores OpenAI chat conversations with the difficulty model in ``model_dir``."""

    def __init__(self, model_dir: str | Path | None = None) -> None:
        import onnxruntime as ort

        from .tokenizer import get_encoding

        self.model_dir = Path(model_dir) if model_dir is not None else MODEL_DIR
        onnx_path = self.model_dir / "model.onnx"
        meta_path = self.model_dir / "model.json"
        if not onnx_path.is_file():
            raise FileNotFoundError(
                f"{onnx_path}: no difficulty model. Run `tierwise train --out {self.model_dir}` "
                "or pass the directory of a trained model."
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
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self._session = ort.InferenceSession(
            str(onnx_path), sess_options=opts, providers=["CPUExecutionProvider"]
        )
        self._encoding = get_encoding()
        self._bigrams = bool(self.meta.get("bigrams", True))
        self._outputs = ["difficulty", "uncertainty"]

    def _run(self, ids: np.ndarray, vals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        d, u = self._session.run(self._outputs, {"ids": ids, "values": vals})
        return d, u

    def score(self, messages: list[dict] | str) -> Score:
        """Difficulty of one conversation (a bare string is treated as one user turn)."""
        f = extract(messages, self._encoding, self._bigrams)
        d, u = self._run(f.ids.reshape(1, -1), f.values.reshape(1, -1))
        return Score(difficulty=float(d[0]), uncertainty=float(u[0]), n_tokens=f.n_tokens)

    def score_batch(self, conversations: list[list[dict]] | list[Any]) -> list[Score]:
        """Difficulty of many conversations in one ONNX call."""
        if not conversations:
            return []
        feats = [extract(c, self._encoding, self._bigrams) for c in conversations]
        ids, vals = pad_batch(feats)
        d, u = self._run(ids, vals)
        return [
            Score(difficulty=float(d[i]), uncertainty=float(u[i]), n_tokens=f.n_tokens)
            for i, f in enumerate(feats)
        ]
