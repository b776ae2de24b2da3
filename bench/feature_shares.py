"""Each feature's sign and share of the shipped model's difficulty, on three kinds of request.

The difficulty is a sum d = sum_j x_j w_j, so each block's contribution is a number per request:
the word block (the folded static embedding), and each structure feature. Its "share" is the
standard deviation of that contribution over a set of requests (in logits; the larger, the more
it moves decisions there); "AUC alone" is how that contribution alone ranks the set's own
labels where it has some (GSM8K-like: strong beats weak; common-sense: hard vs easy).

    python bench/feature_shares.py > bench/FEATURE_SHARES.md
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.model_weights import fit_weights_or_exit  # noqa: E402
from classifiers.data import (  # noqa: E402
    distinct_conversations,
    load_rows,
    read_jsonl,
    row_messages,
)
from classifiers.features import (  # noqa: E402
    DENSE_NAMES,
    DENSE_OFF,
    HASH_OFF,
    SHORT_OFF,
    extract_many,
    to_csr,
)
from classifiers.metrics import auc  # noqa: E402
from classifiers.validation import pair_outcomes  # noqa: E402

MODEL = ROOT / "classifiers" / "model" / "model.onnx"


def parts(convs: list) -> tuple[dict[str, np.ndarray], dict[str, str], np.ndarray]:
    """Each block's contribution to d per conversation, the sign of its weight, and d."""
    w = fit_weights_or_exit(MODEL)
    X = to_csr(extract_many(convs)).astype(np.float64)
    words = X[:, HASH_OFF:DENSE_OFF] @ w[HASH_OFF:DENSE_OFF]
    short = X[:, SHORT_OFF:] @ w[SHORT_OFF:]
    out = {"words (static embedding)": np.asarray(words).ravel(),
           "words, anchors' head (short-request block)": np.asarray(short).ravel()}
    signs = {"words (static embedding)": "per word",
             "words, anchors' head (short-request block)": "per word"}
    for i, name in enumerate(DENSE_NAMES):
        out[name] = np.asarray(X[:, DENSE_OFF + i].todense()).ravel() * w[DENSE_OFF + i]
        signs[name] = f"{w[DENSE_OFF + i]:+.3f}"
    return out, signs, np.asarray(X @ w).ravel()


def main() -> int:
    chat_convs = distinct_conversations(load_rows(ROOT / "data" / "routing-chat.jsonl.gz"))
    gsm = [r for r in load_rows(ROOT / "data" / "routing-train.jsonl.gz", apply_exclusions=False)
           if (r.get("meta") or {}).get("family") == "gsm8k"]
    idx, qs, qw = pair_outcomes(gsm, "llama-3.1-nemotron-51b-instruct", "mistral-7b-instruct-v0.3")
    gsm_label = (qs - qw)[np.argsort(idx)] > 0
    gsm_convs = [row_messages(gsm[i]) for i in sorted(idx.tolist())]
    cs = read_jsonl(ROOT / "bench" / "commonsense" / "requests.jsonl")
    sets = [
        ("real chat requests (routing-chat, distinct)", chat_convs, None),
        ("GSM8K-like (never trained on)", gsm_convs, gsm_label),
        ("common-sense set (all splits)", [c["messages"] for c in cs],
         np.array([c["label"] == "hard" for c in cs])),
    ]
    print("# Feature signs and shares of the shipped difficulty (bench/feature_shares.py)\n")
    print(f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; model: classifiers/model; command: "
          "`python bench/feature_shares.py`")
    print("- share = sd over the set of the feature's contribution to d (logits); "
          "AUC alone = that contribution alone on the set's labels (0.5 = random)\n")
    for title, convs, label in sets:
        contrib, signs, d = parts(convs)
        print(f"### {title}: n = {len(convs)}, sd(d) = {d.std():.3f}\n")
        print("| feature | weight | share (sd) | corr with d | AUC alone |")
        print("|---|---|---|---|---|")
        rows = sorted(contrib.items(), key=lambda kv: -kv[1].std())
        for name, c in rows:
            if c.std() < 1e-4:
                continue
            corr = float(np.corrcoef(c, d)[0, 1])
            a = auc(c, label) if label is not None else float("nan")
            print(f"| {name} | {signs[name]} | {c.std():.3f} | {corr:+.2f} | "
                  f"{'-' if np.isnan(a) else f'{a:.3f}'} |")
        if label is not None:
            print(f"| **d (all)** | | {d.std():.3f} | +1.00 | {auc(d, label):.3f} |")
        print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
