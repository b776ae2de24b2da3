"""Build the ONNX graph of the difficulty model (training side; needs the ``onnx`` package).

Inputs ``ids`` int64 [N, K] and ``x`` float32 [N, K, 3] (:func:`classifiers.features.pad_batch`:
value, value**2 and value * short_scale per entry; pad: id 0, zeros). Output ``scores`` float32
[N, 2]: the difficulty and the variance of its estimate (the scorer takes the square root),
``sum_k T[ids] * x`` over a [TABLE_ROWS, 3] table T = (weight, variance, short-request weight),
the first and third sums added. The third column holds the short-request block's weights on the
word rows (0 elsewhere): that block's values are the word values times one number per request,
so a column instead of a copy of every word row keeps the table at half the size and each
request's Gather at half the entries (feature version 8). One interleaved table and one Gather
keep the graph to four nodes, which is most of a batch-1 run's cost.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .features import DENSE_OFF, HASH_OFF, N_FEATURES, SHORT_OFF, TABLE_ROWS
from .onnx_table import COMBINE


def table_of(weights: np.ndarray, variances: np.ndarray) -> np.ndarray:
    """The [TABLE_ROWS, 3] table of the fit's N_FEATURES weights and variances: the
    short-request block's weights (columns SHORT_OFF onwards) move to the third column of the
    word rows they copy. That block carries no variance (classifiers/word_fold.py zeroes it);
    anything else would be dropped here, so it is refused."""
    w = np.asarray(weights, np.float32)
    v = np.asarray(variances, np.float32)
    if w.shape != (N_FEATURES,) or v.shape != (N_FEATURES,):
        raise ValueError(f"weights and variances must have {N_FEATURES} entries, "
                         f"not {w.shape} / {v.shape}")
    if np.any(v[SHORT_OFF:] != 0):
        raise ValueError("the short-request block must carry no variance")
    table = np.zeros((TABLE_ROWS, 3), np.float32)
    table[:, 0] = w[:TABLE_ROWS]
    table[:, 1] = v[:TABLE_ROWS]
    table[HASH_OFF:DENSE_OFF, 2] = w[SHORT_OFF:]
    return table


def fit_weights(path: str | Path) -> np.ndarray:
    """The fit's N_FEATURES weights (float64) of a model.onnx built by :func:`build`: its table's
    first column, and the third column's word rows back at SHORT_OFF. Raises ValueError, naming
    the file, for any other graph (bench scripts that read the words' share need the table)."""
    from .onnx_table import read_linear_table

    table = read_linear_table(path)
    if table is None or table.shape[0] != TABLE_ROWS:
        raise ValueError(f"{path}: not the linear-table graph of this tierwise "
                         "(`tierwise train` writes it)")
    w = np.zeros(N_FEATURES)
    w[:TABLE_ROWS] = table[:, 0]
    w[SHORT_OFF:] = table[HASH_OFF:DENSE_OFF, 2]
    return w


def build(weights: np.ndarray, variances: np.ndarray, path: str | Path) -> None:
    """Write model.onnx for the fit's weights and variances (both over N_FEATURES columns)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    t = numpy_helper.from_array(table_of(weights, variances), "T")
    axes = numpy_helper.from_array(np.asarray([1], np.int64), "axes")
    combine = numpy_helper.from_array(COMBINE, "C")
    nodes = [
        helper.make_node("Gather", ["T", "ids"], ["t_g"], axis=0),  # [N, K, 3]
        helper.make_node("Mul", ["t_g", "x"], ["tx"]),
        helper.make_node("ReduceSum", ["tx", "axes"], ["s"], keepdims=0),  # [N, 3]
        helper.make_node("MatMul", ["s", "C"], ["scores"]),  # [N, 2]
    ]
    graph = helper.make_graph(
        nodes,
        "tierwise_difficulty",
        [
            helper.make_tensor_value_info("ids", TensorProto.INT64, ["N", "K"]),
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", "K", 3]),
        ],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", 2])],
        initializer=[t, axes, combine],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="tierwise"
    )
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
