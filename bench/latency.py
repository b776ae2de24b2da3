"""Decision latency of the difficulty scorer: word hashing + features + ONNX, by prompt length.

Prompt lengths are o200k token counts (tiktoken is used here only to cut prompts of a known
length from the training corpus; the scorer itself does not tokenize).

Single requests (p50/p99 over many calls, one thread) and batched throughput
(decisions/s on one core). Also the process RSS after loading the scorer. Then the same for the
sentence encoder of the "accurate" option (classifiers/encoder.py): single requests per prompt
length, p50 of a 500-token prompt at several max_tokens, and the RSS of a fresh process that
loaded it (its own subprocess, not mixed with the scorer's). Writes bench/LATENCY.md.

    python bench/latency.py [--quick]
"""

from __future__ import annotations

import argparse
import base64
import gzip
import json
import os
import platform
import resource
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from classifiers import default_scorer  # noqa: E402
from classifiers.encoder import ENCODER_DIR, MAX_TOKENS, SentenceEncoder  # noqa: E402
from classifiers.features import extract  # noqa: E402
from classifiers.hashing import encode, word_hashes  # noqa: E402
from classifiers.scorer import DifficultyScorer  # noqa: E402
from classifiers.tokenizer import get_encoding  # noqa: E402
from classifiers.wordpieces import pieces  # noqa: E402

LENGTHS = (10, 50, 100, 500, 1000, 2000)
ENCODER_MAX_TOKENS = (48, 64, 128)


def corpus_text() -> str:
    path = ROOT / "data" / "routing-train.jsonl.gz"
    with gzip.open(path, "rt", encoding="utf-8") as f:
        prompts = [json.loads(line)["prompt"] for _, line in zip(range(4000), f, strict=False)]
    rng = np.random.default_rng(0)
    rng.shuffle(prompts)
    return "\n\n".join(prompts)


def prompts_of(length: int, n: int, enc, text: str) -> list[str]:
    toks = enc.encode_ordinary(text)
    rng = np.random.default_rng(length)
    starts = rng.integers(0, len(toks) - length - 1, n)
    return [enc.decode(toks[s : s + length]) for s in starts]


def percentiles(ns: list[int]) -> tuple[float, float, float]:
    a = np.asarray(ns) / 1000.0
    return float(np.percentile(a, 50)), float(np.percentile(a, 99)), float(a.mean())


def bench_single(scorer, prompts: list[str], repeat: int) -> dict:
    msgs = [[{"role": "user", "content": p}] for p in prompts]
    for m in msgs[:50]:
        scorer.score(m)
    total, tok, feat, onnx = [], [], [], []
    clock = time.perf_counter_ns
    for _ in range(repeat):
        for m in msgs:
            t0 = clock()
            scorer.score(m)
            total.append(clock() - t0)
    cold = []  # first sight: the WordPiece cache emptied before each decision
    for m in msgs:
        pieces.cache_clear()
        t0 = clock()
        scorer.score(m)
        cold.append(clock() - t0)
    for m in msgs:
        t0 = clock()
        word_hashes(encode(m[0]["content"]))
        t1 = clock()
        f = extract(m)
        t2 = clock()
        scorer.run_onnxruntime([f])
        t3 = clock()
        tok.append(t1 - t0)
        feat.append(t2 - t1)
        onnx.append(t3 - t2)
    p50, p99, mean = percentiles(total)
    return {
        "p50_us": p50,
        "cold_p50_us": percentiles(cold)[0],
        "p99_us": p99,
        "mean_us": mean,
        "hash_p50_us": percentiles(tok)[0],
        "features_incl_hash_p50_us": percentiles(feat)[0],
        "onnx_p50_us": percentiles(onnx)[0],
    }


def bench_batch(scorer, prompts: list[str], batch: int) -> float:
    convs = [[{"role": "user", "content": p}] for p in prompts]
    scorer.score_batch(convs[:batch])
    n = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < 2.0:
        for i in range(0, len(convs), batch):
            scorer.score_batch(convs[i : i + batch])
            n += len(convs[i : i + batch])
    return n / (time.perf_counter() - t0)


def rss_subprocess() -> tuple[float, float]:
    """(peak RSS, current RSS) in MB of a fresh process that loaded the scorer and scored."""
    code = (
        "from classifiers import default_scorer; s = default_scorer(); "
        "s.score('What is 2+2?'); s.score_batch([[{'role':'user','content':'x '*2000}]]*64); "
        "st = open('/proc/self/status').read(); "
        "print(st.split('VmHWM:')[1].split()[0], st.split('VmRSS:')[1].split()[0])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    peak, cur = out.stdout.split()
    return int(peak) / 1024.0, int(cur) / 1024.0


def rss_encoder_subprocess(load: str = "from classifiers.encoder import SentenceEncoder; "
                           "e = SentenceEncoder(); e.encode(['What is 2+2?', 'word ' * 2000])"
                           ) -> tuple[float, float]:
    """(peak RSS, current RSS) in MB of a fresh process that ran ``load`` (by default: loaded
    the encoder and encoded)."""
    code = (
        load + "; st = open('/proc/self/status').read(); "
        "print(st.split('VmHWM:')[1].split()[0], st.split('VmRSS:')[1].split()[0])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         check=True)
    peak, cur = out.stdout.split()
    return int(peak) / 1024.0, int(cur) / 1024.0


def bench_encoder(encoder: SentenceEncoder, prompts: list[str], repeat: int) -> dict:
    """Single requests, one text per call (what serving does): ms percentiles."""
    for p in prompts[:20]:
        encoder.encode([p])
    total, tok = [], []
    clock = time.perf_counter_ns
    for _ in range(repeat):
        for p in prompts:
            t0 = clock()
            encoder.encode([p])
            total.append(clock() - t0)
    for p in prompts:
        t0 = clock()
        encoder.token_ids(p)
        tok.append(clock() - t0)
    # percentiles() gives us from ns; the encoder is reported in ms
    p50, p99, mean = (x / 1000.0 for x in percentiles(total))
    wordpieces = [len(encoder.tokenizer.encode(p).ids) for p in prompts]
    return {"p50_ms": p50, "p99_ms": p99, "mean_ms": mean,
            "tokenize_p50_ms": percentiles(tok)[0] / 1000.0,
            "wordpieces_median": float(np.median(wordpieces))}


def accurate_section(enc, text: str, quick: bool) -> list[str]:
    """bench/LATENCY.md's lines for the whole "accurate" scorer: fast features and table, the
    encoder and the sentence head, as `DifficultyScorer(scorer="accurate").score` runs them."""
    n, repeat = (60, 1) if quick else (150, 2)
    scorer = default_scorer("accurate")
    clock = time.perf_counter_ns
    rows = []
    for length in LENGTHS:
        convs = [[{"role": "user", "content": p}] for p in prompts_of(length, n, enc, text)]
        for c in convs[:20]:
            scorer.score(c)
        ns = []
        for _ in range(repeat):
            for c in convs:
                t0 = clock()
                scorer.score(c)
                ns.append(clock() - t0)
        p50, p99, mean = (x / 1000.0 for x in percentiles(ns))
        rows.append({"tokens": length, "accurate_p50_ms": p50, "accurate_p99_ms": p99,
                     "accurate_mean_ms": mean})
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    rss_peak, rss = rss_encoder_subprocess(
        "from classifiers import default_scorer; s = default_scorer('accurate'); "
        "s.score('What is 2+2?'); s.score_batch([[{'role':'user','content':'x '*2000}]]*64)")
    lines = [
        "",
        "## The whole \"accurate\" scorer (`DifficultyScorer(scorer=\"accurate\").score`)",
        "",
        "- one request per call, one thread: the fast scorer's features and table, the sentence "
        "encoder on the last user turn, and the sentence head (`classifiers/sentence_head.py`); "
        "same prompts as above",
        f"- RSS of a fresh process that loaded it and scored: {rss:.0f} MB (peak "
        f"{rss_peak:.0f} MB); budget 300 MB. Budget for the time: p50 <= 5 ms at 500 tokens",
        f"- load average {os.getloadavg()[0]:.1f} at the end of this section",
        "",
        "| prompt tokens | p50 ms | p99 ms | mean ms |",
        "|---|---|---|---|",
    ]
    lines += [f"| {r['tokens']} | {r['accurate_p50_ms']:.2f} | {r['accurate_p99_ms']:.2f} "
              f"| {r['accurate_mean_ms']:.2f} |" for r in rows]
    return lines


def encoder_section(enc, text: str, quick: bool) -> list[str]:
    """bench/LATENCY.md's lines for the sentence encoder (one thread, single requests)."""
    n, repeat = (60, 1) if quick else (150, 2)
    load_start = os.getloadavg()[0]
    encoder = SentenceEncoder(threads=1)
    rows = []
    for length in LENGTHS:
        r = bench_encoder(encoder, prompts_of(length, n, enc, text), repeat)
        rows.append({"tokens": length, **r})
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    sweep = []
    prompts500 = prompts_of(500, n, enc, text)
    for max_tokens in ENCODER_MAX_TOKENS:
        r = bench_encoder(SentenceEncoder(max_tokens=max_tokens, threads=1), prompts500, repeat)
        sweep.append({"max_tokens": max_tokens, **r})
        print(json.dumps(sweep[-1]), file=sys.stderr, flush=True)
    rss_peak, rss = rss_encoder_subprocess()
    size = sum(p.stat().st_size for p in ENCODER_DIR.iterdir() if p.is_file())
    lines = [
        "",
        "## Sentence encoder (`classifiers/encoder.py`, the \"accurate\" option)",
        "",
        f"- all-MiniLM-L6-v2 distilled into 3 layers, int8 ONNX (`classifiers/minilm_encoder/`, "
        f"{size / 1e6:.1f} MB with "
        f"its tokenizer), max_tokens {MAX_TOKENS} (with [CLS]/[SEP]); `SentenceEncoder(threads=1)`"
        ": onnxruntime intra/inter-op threads = 1, sequential; one text per `encode` call",
        "- same prompts as above (N o200k tokens; MiniLM's WordPiece count is in the table); "
        "times include tokenizing (`SentenceEncoder.token_ids`: a long prompt is cut before it "
        "is tokenized)",
        f"- load average {load_start:.1f} at the start of this section, "
        f"{os.getloadavg()[0]:.1f} at its end (2 shared cores: upper bounds)",
        f"- RSS of a fresh process that loaded the encoder and encoded: {rss:.0f} MB "
        f"(peak {rss_peak:.0f} MB); budget 300 MB",
        "",
        "| prompt tokens | WordPieces fed to the model (median) | p50 ms | p99 ms | mean ms "
        "| tokenize p50 ms |",
        "|---|---|---|---|---|---|",
    ]
    lines += [f"| {r['tokens']} | {r['wordpieces_median']:.0f} | {r['p50_ms']:.2f} "
              f"| {r['p99_ms']:.2f} | {r['mean_ms']:.2f} | {r['tokenize_p50_ms']:.3f} |"
              for r in rows]
    lines += [
        "",
        "A 500-token prompt at each max_tokens (budget: p50 <= 5 ms on one core):",
        "",
        "| max_tokens | p50 ms | p99 ms | mean ms |",
        "|---|---|---|---|",
    ]
    lines += [f"| {r['max_tokens']} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} "
              f"| {r['mean_ms']:.2f} |" for r in sweep]
    return lines


# Inputs built to make one part of the scorer do the most work per byte: 100 KB each.
WORST_CASES = {
    "English prose": "the quick brown fox jumps over the lazy dog " * 2300,
    "\"1*1*1*...\" (an operator every 2 bytes: arithmetic_digits)": "1*1*" * 25000,
    "\"12 x 34 \" repeated (a product every 8 bytes)": "12 x 34 " * 12500,
    # a backslash every 4 bytes, none a TeX command: math_markup scans every one
    "code string escapes, \"a\\nb\\tc\\\\d\" (math_markup's TeX command scan)":
        'x = "a\\nb\\tc\\\\d"\n' * 6000,
    "Chinese, no whitespace (the encoder's tokenizer cut)": "负载均衡是把请求分给多台服务器，"
    * 2200,
    # words outside the vocabulary, each seen once: WordPiece in Python up to features.PIECE_BYTES
    "random 8-letter non-words (WordPieces, first sight)": " ".join(
        "".join(row) for row in np.random.default_rng(0).choice(list("bcdfghjklmnpqrstvwxz"),
                                                                 (11000, 8))),
    "base64 (WordPieces, first sight)": base64.b64encode(
        np.random.default_rng(1).bytes(75000)).decode(),
}


def worst_case_section(scorer) -> list[str]:
    """The whole decision of each scorer on ~100 KB inputs that stress one part (p50 of 20)."""
    accurate = default_scorer("accurate")  # the one accurate_section times too
    lines = ["", "Worst cases, ~100 KB prompts, the whole decision (p50 of 20 runs):", "",
             "| input | fast p50 ms | accurate p50 ms |", "|---|---|---|"]
    for name, prompt in WORST_CASES.items():
        cells = []
        for s in (scorer, accurate):
            times = []
            for _ in range(20):
                pieces.cache_clear()  # every run is a first sight of its words
                t0 = time.perf_counter_ns()
                s.score(prompt)
                times.append(time.perf_counter_ns() - t0)
            cells.append(f"{np.median(times) / 1e6:.2f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default=str(ROOT / "bench" / "LATENCY.md"))
    args = ap.parse_args()
    # One thread (Python + onnxruntime with 1 intra/inter-op thread). Not pinned to a core: on a
    # shared 2-core machine a fixed core may be the busy one.
    scorer = default_scorer()
    ort_scorer = DifficultyScorer(engine="onnxruntime")
    enc = get_encoding()
    text = corpus_text()
    n, repeat = (100, 3) if args.quick else (300, 10)
    rows = []
    for length in LENGTHS:
        prompts = prompts_of(length, n, enc, text)
        single = bench_single(scorer, prompts, repeat)
        b64 = bench_batch(scorer, prompts, 64)
        b64_ort = bench_batch(ort_scorer, prompts, 64)
        rows.append(
            {"tokens": length, **single, "batch64_per_s": b64, "batch64_ort_per_s": b64_ort}
        )
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    model_dir = ROOT / "classifiers" / "model"
    size = sum(p.stat().st_size for p in model_dir.iterdir() if p.is_file())
    rss_peak, rss = rss_subprocess()
    load = os.getloadavg()
    lines = [
        "# Decision latency (word hashing + features + ONNX)",
        "",
        f"- date: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, load average at end {load[0]:.1f} "
        "(other processes share the machine: numbers are upper bounds)",
        "- command: `python bench/latency.py`",
        "- one thread (not pinned); onnxruntime intra/inter-op threads = 1; prompts are random "
        "windows of N o200k tokens of the training prompts (math, code, multiple choice); the "
        "scorer hashes words in numpy (`classifiers/hashing.py`); only words outside MiniLM's "
        "whole-word vocabulary go through its WordPiece tokenizer (`classifiers/wordpieces.py`, "
        "cached); 'first sight' is the same decision with that cache emptied before it",
        "- p50/p99/mean: the whole single decision, `scorer.score(messages)` with the default "
        "engine: features + model.onnx's linear graph evaluated in numpy "
        "(`classifiers/onnx_table.py`); the onnxruntime columns are the same model run by "
        "onnxruntime (`DifficultyScorer(engine=\"onnxruntime\")`): one `session.run` on the "
        "same features, and whole batches",
        f"- model files: {size / 1e6:.2f} MB; RSS of a fresh process that loaded the scorer and "
        f"scored: {rss:.0f} MB (peak {rss_peak:.0f} MB)",
        "",
        "| prompt tokens | p50 us | p99 us | mean us | p50 us, first sight | hash words p50 "
        "| features (incl. hash) p50 | onnxruntime batch-1 run p50 | batched (64) decisions/s "
        "| batched (64), engine=onnxruntime |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['tokens']} | {r['p50_us']:.1f} | {r['p99_us']:.1f} | {r['mean_us']:.1f} "
            f"| {r['cold_p50_us']:.1f} "
            f"| {r['hash_p50_us']:.1f} | {r['features_incl_hash_p50_us']:.1f} "
            f"| {r['onnx_p50_us']:.1f} | {r['batch64_per_s']:,.0f} "
            f"| {r['batch64_ort_per_s']:,.0f} |"
        )
    lines += [
        "",
        "RSS: VmRSS and peak VmHWM from /proc/self/status of that fresh process (not "
        "`ru_maxrss`, which Linux carries over from the parent across exec); this benchmark "
        "process peaked at "
        f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB "
        "(it holds the corpus).",
    ]
    lines += worst_case_section(scorer)
    lines += encoder_section(enc, text, args.quick)
    lines += accurate_section(enc, text, args.quick)
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
