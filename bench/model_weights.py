"""A model.onnx's fit weights for the bench scripts that read the words' share, or exit.

classifiers.onnx_model.fit_weights raises ValueError, naming the file, for a graph that is not
this tierwise's linear table; a script exits with that message (status 1), no traceback.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from classifiers.onnx_model import fit_weights


def fit_weights_or_exit(path: str | Path) -> np.ndarray:
    """:func:`classifiers.onnx_model.fit_weights` of ``path``; SystemExit with its message."""
    try:
        return fit_weights(path)
    except ValueError as e:
        raise SystemExit(str(e)) from None
