"""Read the difficulty table out of model.onnx, so one request can be scored without onnxruntime.

Why: onnxruntime's fixed cost per ``run`` is ~20 us in a tight loop but ~50 us on a request path
(measured in bench/latency.py: its code is cold between requests), half the 100 us budget, for a
graph that is one Gather and a sum. The graph is linear, so numpy computes the same numbers from
the same table in ~15 us (:meth:`classifiers.scorer.DifficultyScorer.score`). This module checks
the graph is exactly that linear graph (node ops, inputs, the table's shape, the constant that
combines its sums) and returns its table; anything else returns None and the scorer uses
onnxruntime for everything. Reads the protobuf wire format directly (no ``onnx`` package at run
time): only the few fields below are looked at.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

# the graph classifiers/onnx_model.py builds; any other graph is run by onnxruntime only
LINEAR_GRAPH = ("Gather", "Mul", "ReduceSum", "MatMul")
# its last node's constant: scores = [sum of column 0 + sum of column 2, sum of column 1]
COMBINE = np.asarray([[1, 0], [0, 1], [1, 0]], np.float32)
_FLOAT = 1  # TensorProto.FLOAT


def _varint(buf: memoryview, i: int) -> tuple[int, int]:
    out = shift = 0
    while True:
        b = buf[i]
        i += 1
        out |= (b & 0x7F) << shift
        if b < 0x80:
            return out, i
        shift += 7


def _fields(buf: memoryview) -> Iterator[tuple[int, int | memoryview]]:
    """(field number, value) of one protobuf message; length-delimited values as memoryviews."""
    i, n = 0, len(buf)
    while i < n:
        key, i = _varint(buf, i)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(buf, i)
            yield field, value
        elif wire == 2:
            size, i = _varint(buf, i)
            yield field, buf[i : i + size]
            i += size
        elif wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")


def _strings(msg: memoryview, field: int) -> list[str]:
    return [bytes(v).decode() for f, v in _fields(msg) if f == field and isinstance(v, memoryview)]


def _tensor(msg: memoryview) -> tuple[str, np.ndarray | None]:
    name, dims, dtype, raw = "", [], 0, None
    for f, v in _fields(msg):
        if f == 8 and isinstance(v, memoryview):
            name = bytes(v).decode()
        elif f == 1 and isinstance(v, int):
            dims.append(v)
        elif f == 1 and isinstance(v, memoryview):  # packed dims
            j = 0
            while j < len(v):
                d, j = _varint(v, j)
                dims.append(d)
        elif f == 2 and isinstance(v, int):
            dtype = v
        elif f == 9 and isinstance(v, memoryview):
            raw = v
    if dtype != _FLOAT or raw is None:
        return name, None
    # copy: raw_data sits at an arbitrary file offset, and numpy's gather on an unaligned
    # float32 buffer is ~30x slower (136 vs 4.7 us for 520 rows, measured)
    return name, np.frombuffer(raw, dtype="<f4").reshape(dims).copy()


def read_linear_table(path: str | Path) -> np.ndarray | None:
    """The [V, 3] (weight, variance, short-request weight) table of a model.onnx built by
    onnx_model.build, else None."""
    data = memoryview(Path(path).read_bytes())
    graph = next((v for f, v in _fields(data) if f == 7 and isinstance(v, memoryview)), None)
    if graph is None:
        return None
    ops, table, combine = [], None, None
    for f, v in _fields(graph):
        if not isinstance(v, memoryview):
            continue
        if f == 1:  # node
            ops.append(next((bytes(x).decode() for g, x in _fields(v) if g == 4
                             and isinstance(x, memoryview)), ""))
        elif f == 5:  # initializer
            name, arr = _tensor(v)
            if name == "T":
                table = arr
            elif name == "C":
                combine = arr
    inputs = [s for f, v in _fields(graph) if f == 11 and isinstance(v, memoryview)
              for s in _strings(v, 1)]
    if tuple(ops) != LINEAR_GRAPH or inputs != ["ids", "x"] or table is None:
        return None
    if table.ndim != 2 or table.shape[1] != 3:
        return None
    if combine is None or combine.shape != COMBINE.shape or not np.array_equal(combine, COMBINE):
        return None
    return table
