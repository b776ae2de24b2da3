"""The accurate scorer's encoder cut after its first k transformer layers, and what that costs.

Writes ``OUT/model{k}.onnx``: the shipped int8 MiniLM graph (classifiers/minilm_encoder) with
the mean pooling rewired to layer k's output and the later layers pruned (same weights, no
retraining; onnx only, no torch). Then times every cut against the shipped graph, one thread,
interleaved so that machine noise hits all of them alike. QUALITY_ROUTING.md ("The accurate
scorer's encoder with fewer layers") has how the cuts rank requests: to measure one, copy its
file over classifiers/minilm_encoder/model.onnx in a git worktree (and set encoder.MAX_TOKENS
there) and run bench/quality_routing.py with ``--variants "accurate (sentence head)"``.

    python bench/encoder_layers.py --layers 3,4,5 --tokens 48,64 --out /tmp/layers
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from classifiers.encoder import ENCODER_DIR  # noqa: E402
from classifiers.onnx_session import open_session  # noqa: E402

LAYERS = 6  # all-MiniLM-L6-v2
NORMS_PER_LAYER = 2  # the fused graph ends each layer's attention and its FFN in one


def cut(src: Path, dst: Path, k: int) -> int:
    """Write ``src`` cut after layer ``k`` to ``dst``; returns the number of nodes kept."""
    import onnx

    model = onnx.load(str(src))
    graph = model.graph
    norms = [n for n in graph.node if n.op_type == "SkipLayerNormalization"]
    if len(norms) != LAYERS * NORMS_PER_LAYER:
        raise SystemExit(f"{src}: expected {LAYERS * NORMS_PER_LAYER} SkipLayerNormalization "
                         f"nodes (a fused MiniLM-L6), found {len(norms)}")
    last, new = norms[-1].output[0], norms[NORMS_PER_LAYER * k - 1].output[0]
    for node in graph.node:  # the pooling reads layer k's output instead of the last one's
        node.input[:] = [new if x == last else x for x in node.input]
    needed = {o.name for o in graph.output}
    kept = []
    for node in reversed(list(graph.node)):  # keep what the output still depends on
        if any(o in needed for o in node.output):
            kept.append(node)
            needed.update(x for x in node.input if x)
    kept.reverse()
    del graph.node[:]
    graph.node.extend(kept)
    inits = [t for t in graph.initializer if t.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(inits)
    onnx.save(model, str(dst))
    return len(kept)


def time_graphs(paths: dict[int, Path], tokens: list[int], rounds: int = 40) -> None:
    sessions = {k: open_session(path) for k, path in paths.items()}  # as the encoder runs
    runs: dict[tuple[int, int], list[float]] = {(k, n): [] for k in paths for n in tokens}
    rng = np.random.default_rng(0)
    for _ in range(rounds):
        for k, n in runs:
            ids = rng.integers(1000, 20000, (1, n)).astype(np.int64)
            feed = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
            sessions[k].run(None, feed)  # warm this shape
            for _ in range(5):
                t0 = time.perf_counter()
                sessions[k].run(None, feed)
                runs[k, n].append(time.perf_counter() - t0)
    print("| layers | WordPieces | encoder p50 ms |\n|---|---|---|")
    for (k, n), times in runs.items():
        print(f"| {k} | {n} | {np.median(times) * 1e3:.2f} |")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--layers", default="3,4,5", help="cuts to write, comma-separated")
    ap.add_argument("--tokens", default="48,64", help="WordPieces per timed input")
    ap.add_argument("--out", required=True, help="directory for model{k}.onnx")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {LAYERS: ENCODER_DIR / "model.onnx"}
    for k in sorted({int(x) for x in args.layers.split(",")}):
        if not 1 <= k < LAYERS:
            raise SystemExit(f"--layers: {k} is not between 1 and {LAYERS - 1}")
        paths[k] = out / f"model{k}.onnx"
        print(f"layer {k}: {cut(paths[LAYERS], paths[k], k)} nodes -> {paths[k]}")
    time_graphs(paths, [int(x) for x in args.tokens.split(",")])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
