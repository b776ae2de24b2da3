"""Build the ONNX graph of the difficulty model (training side; needs the ``onnx`` package).

Inputs ``ids`` int64 [N, K] and ``values`` float32 [N, K] (pad: id 0, value 0).
Outputs ``difficulty`` = sum_k W[ids] * values and
``uncertainty`` = sqrt(sum_k V[ids] * values^2), both float32 [N].
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def build(weights: np.ndarray, variances: np.ndarray, path: str | Path) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.asarray(weights, np.float32), "W")
    v = numpy_helper.from_array(np.asarray(variances, np.float32), "V")
    axes = numpy_helper.from_array(np.asarray([1], np.int64), "axes")
    nodes = [
        helper.make_node("Gather", ["W", "ids"], ["w_g"], axis=0),
        helper.make_node("Mul", ["w_g", "values"], ["wx"]),
        helper.make_node("ReduceSum", ["wx", "axes"], ["difficulty"], keepdims=0),
        helper.make_node("Gather", ["V", "ids"], ["v_g"], axis=0),
        helper.make_node("Mul", ["values", "values"], ["x2"]),
        helper.make_node("Mul", ["v_g", "x2"], ["vx"]),
        helper.make_node("ReduceSum", ["vx", "axes"], ["var"], keepdims=0),
        helper.make_node("Sqrt", ["var"], ["uncertainty"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tierwise_difficulty",
        [
            helper.make_tensor_value_info("ids", TensorProto.INT64, ["N", "K"]),
            helper.make_tensor_value_info("values", TensorProto.FLOAT, ["N", "K"]),
        ],
        [
            helper.make_tensor_value_info("difficulty", TensorProto.FLOAT, ["N"]),
            helper.make_tensor_value_info("uncertainty", TensorProto.FLOAT, ["N"]),
        ],
        initializer=[w, v, axes],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="tierwise"
    )
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
