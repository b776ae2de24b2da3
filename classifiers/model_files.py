"""Write a trained model directory: model.onnx, sentence_head.onnx, model.json, abilities.json
and validation.json (the card is written from these by classifiers/card.py)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .anchors import HAND_LABEL_MODEL
from .features import DENSE_NAMES, DENSE_OFF, HASH_BITS, N_FEATURES
from .names import CANONICAL
from .scorer import FEATURE_VERSION
from .selection import SELECTION_MODEL

if TYPE_CHECKING:
    from .train import TrainResult


def trained_with() -> dict[str, str]:
    """The numeric stack a training ran on: floats of another BLAS kernel set or release differ
    in the last bits, which a retrain compares against (.ci/retrain_check.py)."""
    import platform
    from importlib.metadata import version

    from threadpoolctl import threadpool_info

    out = {"python": platform.python_version(), "machine": platform.machine()}
    for package in ("numpy", "scipy", "scikit-learn", "onnx", "tokenizers"):
        out[package] = version(package)
    blas = sorted({f"{i.get('internal_api')} {i.get('version')} {i.get('architecture')}"
                   for i in threadpool_info() if i.get("user_api") == "blas"})
    out["blas"] = "; ".join(blas)
    return out


def blas_kernels(stack: dict[str, str]) -> set[str]:
    """The BLAS kernel names of a ``trained_with`` record ("openblas 0.3.30 Haswell; ...")."""
    return {part.split()[-1] for part in stack.get("blas", "").split(";") if part.split()}


def kernel_note(model_dir: Path) -> str | None:
    """Why a retrain here will not reproduce ``model_dir`` bit for bit, or None.

    OpenBLAS picks its kernels by CPU, and a fit on other kernels differs in the last bits (an
    ability the data barely identifies moved 0.027 between SkylakeX and Haswell, past
    .ci/retrain_check.py's 0.02). Naming the kernel to pin is cheaper than finding that out."""
    try:
        stack = json.loads((model_dir / "model.json").read_text()).get("trained_with", {})
    except (OSError, ValueError):
        return None
    theirs, ours = blas_kernels(stack), blas_kernels(trained_with())
    if not theirs or not ours or theirs == ours:
        return None
    pin = next(iter(theirs)) if len(theirs) == 1 else None
    how = (f"; to reproduce it, run with OPENBLAS_CORETYPE={pin}" if pin and "openblas" in
           stack.get("blas", "") else "")
    return (f"note: this machine's BLAS kernels ({', '.join(sorted(ours))}) are not those "
            f"{model_dir} was trained with ({', '.join(sorted(theirs))}): the model written "
            f"will differ from it in the last bits{how}")


def save(result: TrainResult, out: Path, log: Callable[[str], None] = print) -> None:
    from .onnx_model import build

    out.mkdir(parents=True, exist_ok=True)
    m = result.model
    weights = m.coef_.astype(np.float32)
    variances = m.var_.astype(np.float32)
    weights[0] = 0.0
    variances[0] = 0.0
    build(weights, variances, out / "model.onnx")
    if result.head is not None:
        result.head.save(out / "sentence_head.onnx")
    else:  # a head left from an earlier training would not belong to this model
        (out / "sentence_head.onnx").unlink(missing_ok=True)
    meta = {
        "feature_version": FEATURE_VERSION,
        "n_features": N_FEATURES,
        "hash_bits": HASH_BITS,
        "bigrams": bool(result.info["params"].get("bigrams", 0)),
        "dense_features": {
            n: round(float(m.coef_[DENSE_OFF + i]), 5) for i, n in enumerate(DENSE_NAMES)
        },
        "trained_with": trained_with(),
        **result.info,
    }
    (out / "model.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
    abilities = {
        n: round(float(a), 4)
        for n, a in zip(result.models, m.abilities_, strict=True)
        if n not in (SELECTION_MODEL, HAND_LABEL_MODEL)  # labels, not models a policy could name
    }
    spellings: dict[str, list[str]] = {}
    for spelled, canon in sorted(CANONICAL.items()):
        if canon in abilities:
            spellings.setdefault(canon, []).append(spelled)
    (out / "abilities.json").write_text(
        json.dumps(
            {
                "note": "IRT abilities: P(model does well on x) = sigmoid(ability - d(x)).",
                "abilities": dict(sorted(abilities.items(), key=lambda kv: -kv[1])),
                "data_spellings": spellings,
            },
            indent=1,
        )
        + "\n"
    )
    (out / "validation.json").write_text(
        json.dumps([f.as_dict() for f in result.folds + result.extra], indent=1) + "\n"
    )
    log(f"wrote {out}/model.onnx, model.json, abilities.json, validation.json")
