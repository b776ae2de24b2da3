"""Distil all-MiniLM-L6-v2 into the accurate scorer's smaller encoder (offline; needs torch).

The accurate scorer's budget is p50 <= 5 ms for a 500-token prompt on one core, and on this
project's 2-core machine the 6-layer int8 MiniLM alone took ~6-8 ms at 64 WordPieces: its int8
matmuls already run near the core's VNNI rate, so only less work fits. Cutting the graph after 3
layers, or at 32 or 48 pieces, lost the hand-written `requests` split the accurate scorer exists
for (bench/QUALITY_ROUTING.md, twice). So the student is *trained*: MiniLM's first
``STUDENT_LAYERS`` layers, fine-tuned so that its sentence embedding of a text's first
``student_tokens`` pieces matches the full model's embedding of its first ``TEACHER_TOKENS`` pieces
(cosine loss). The texts are the distinct last user turns of the training data (the files
``tierwise train`` reads, its hand-labeled anchors included; none of bench/commonsense's
evaluation sets), without their labels: the student learns to imitate MiniLM, not to route.

CPU torch is deterministic for a fixed seed and thread count (``threads``), so
:func:`classifiers.encoder.export` rebuilds the shipped weights.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

STUDENT_LAYERS = 3
TEACHER_TOKENS = 64  # what the 6-layer encoder read when it shipped (bench/LATENCY.md)
EPOCHS = 8
LEARNING_RATE = 1e-4
WARMUP_STEPS = 100
BATCH = 32
SEED = 0
THREADS = 2
VALIDATION_SHARE = 20  # 1 text in 20 is held out for the validation cosine


def training_texts(paths: Sequence[Path]) -> list[str]:
    """The distinct non-blank last user turns of the label rows in ``paths``, sorted."""
    from .conversation import last_user_text
    from .data import load_rows, row_messages

    texts = {last_user_text(row_messages(row)) for path in paths for row in load_rows(path)}
    return sorted(t for t in texts if t.strip())


def teacher_tokenizer(tokenizer: Any) -> Any:
    """A copy of ``tokenizer`` (a ``tokenizers.Tokenizer``) that truncates to
    ``TEACHER_TOKENS``: the ids the full model's target vectors are computed on."""
    from tokenizers import Tokenizer

    teacher = Tokenizer.from_str(tokenizer.to_str())
    teacher.enable_truncation(max_length=TEACHER_TOKENS)
    return teacher


def cut_ids(ids: list[int], max_tokens: int) -> list[int]:
    """``ids`` ([CLS] ... [SEP]) truncated as BERT's tokenizer truncates to ``max_tokens``."""
    return ids if len(ids) <= max_tokens else ids[: max_tokens - 1] + [ids[-1]]


def _batch(ids: list[list[int]]) -> tuple[Any, Any]:
    import torch

    width = max(len(x) for x in ids)
    input_ids = torch.zeros((len(ids), width), dtype=torch.long)
    mask = torch.zeros_like(input_ids)
    for i, x in enumerate(ids):
        input_ids[i, : len(x)] = torch.tensor(x)
        mask[i, : len(x)] = 1
    return input_ids, mask


def pooled(bert: Any, input_ids: Any, mask: Any) -> Any:
    """sentence-transformers' pooling for MiniLM: mean over the mask, then L2 norm."""
    import torch

    hidden = bert(input_ids=input_ids, attention_mask=mask)[0]
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    mean = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
    return torch.nn.functional.normalize(mean, p=2, dim=1)


def embed(bert: Any, ids: list[list[int]], batch: int = 64) -> np.ndarray:
    """``pooled`` embeddings of ``ids`` [n, dims], batched by length (padding is masked)."""
    import torch

    out = np.zeros((len(ids), bert.config.hidden_size), np.float32)
    order = np.argsort([len(x) for x in ids], kind="stable")
    with torch.no_grad():
        for start in range(0, len(order), batch):
            rows = order[start : start + batch]
            out[rows] = pooled(bert, *_batch([ids[i] for i in rows])).numpy()
    return out


def distill(src: Path, texts: list[str], tokenize: Callable[[str], list[int]],
            student_tokens: int, log: Callable[[str], None] = print) -> tuple[Any, dict]:
    """The trained student (a transformers BertModel, eval mode) and a report (validation
    cosine to the teacher before and after, per epoch). ``tokenize``: a text's ids cut at
    ``TEACHER_TOKENS`` ([CLS] ... [SEP]); ``src``: MiniLM's weights directory."""
    import torch
    from transformers import AutoModel

    torch.manual_seed(SEED)
    torch.set_num_threads(THREADS)
    rng = np.random.default_rng(SEED)
    shuffle = random.Random(SEED)
    teacher_ids = [tokenize(t) for t in texts]
    student_ids = [cut_ids(x, student_tokens) for x in teacher_ids]
    teacher = AutoModel.from_pretrained(str(src), attn_implementation="eager").eval()
    target = torch.from_numpy(embed(teacher, teacher_ids))
    del teacher
    log(f"distill: teacher embeddings of {len(texts)} texts")

    perm = rng.permutation(len(texts))
    held_out, train = perm[: len(texts) // VALIDATION_SHARE], perm[len(texts) // VALIDATION_SHARE :]
    # Eager attention: the exporter traces it into plain MatMul/Softmax, which the int8
    # quantizer knows; the fused SDPA path would leave the attention in fp32 or fail to trace.
    student = AutoModel.from_pretrained(str(src), attn_implementation="eager")
    student.encoder.layer = student.encoder.layer[:STUDENT_LAYERS]
    student.config.num_hidden_layers = STUDENT_LAYERS

    def validation_cosine() -> float:
        student.eval()
        got = embed(student, [student_ids[i] for i in held_out])
        student.train()
        return float((got * target[held_out].numpy()).sum(1).mean())

    report: dict[str, Any] = {"texts": len(texts), "held_out": len(held_out),
                              "cosine_before": round(validation_cosine(), 4), "epochs": []}
    steps = EPOCHS * (len(train) // BATCH)
    opt = torch.optim.AdamW(student.parameters(), lr=LEARNING_RATE, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda k: min(1.0, (k + 1) / WARMUP_STEPS) * max(0.0, 1 - k / steps))
    student.train()
    for epoch in range(EPOCHS):
        # batches of similar length (less padding), in a shuffled order
        order = rng.permutation(train)
        batches = []
        for start in range(0, len(order), BATCH * 50):
            chunk = order[start : start + BATCH * 50]
            chunk = chunk[np.argsort([len(student_ids[i]) for i in chunk], kind="stable")]
            batches += [chunk[j : j + BATCH] for j in range(0, len(chunk), BATCH)]
        shuffle.shuffle(batches)
        for rows in batches:
            if len(rows) < BATCH:
                continue
            got = pooled(student, *_batch([student_ids[i] for i in rows]))
            loss = (1 - (got * target[rows]).sum(1)).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        report["epochs"].append(round(validation_cosine(), 4))
        log(f"distill: epoch {epoch + 1}/{EPOCHS}, validation cosine {report['epochs'][-1]}")
    return student.eval(), report
