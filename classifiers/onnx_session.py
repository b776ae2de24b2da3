"""One way to open an onnxruntime CPU session, for every graph tierwise runs.

model.onnx (the fast scorer's table), the MiniLM encoder and the sentence head all run on the
request path, one request at a time: a thread pool per session would only add wake-ups, and
sessions that each picked their own options made the three hard to compare in bench/.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def open_session(path: str | Path, threads: int = 1,
                 disabled_optimizers: tuple[str, ...] = ()) -> Any:
    """An onnxruntime session of the graph at ``path`` on the CPU: ``threads`` intra-op threads,
    one inter-op thread, sequential execution, every graph optimisation but
    ``disabled_optimizers`` (onnxruntime's transformer names)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"],
                                disabled_optimizers=list(disabled_optimizers))
