"""The "accurate" scorer's extra term: a linear head on MiniLM sentence embeddings.

``scorer = "accurate"`` scores a request as the fast model's d (the linear table of model.onnx)
plus ``weight * (logit(x) - centre)``, where logit is a logistic regression over the sentence
embedding (:mod:`classifiers.encoder`) of the last user turn, trained on the *selection label* of
real chat requests: Arena-Hard's requests (selected as hard by an LLM judge for specificity,
domain knowledge, complexity, problem solving, creativity and technical accuracy) against
OpenAssistant's and Vicuna's (not selected). Why this label and not the IRT outcomes: as a block
of the IRT, the same embeddings learned which benchmark a prompt came from and lost 0.1 APGR on
a held-out benchmark (bench/QUALITY_ROUTING.md), while this contrast is about what makes a real
user request hard, and it moved the hand-written common-sense set most (bench/COMMONSENSE.md).

``centre`` is the mean logit over the training requests; the sum is then levelled
(:meth:`SentenceHead.level`: ``offset + scale * (fast d + shift)``) to the fast d's median and
spread on real chat traffic, so a policy's abilities mean the same under both scorers. The head is
saved as a tiny ONNX graph (``sentence_head.onnx``: embedding [N, 384] -> shift [N, 1]) next to
model.onnx, its parameters in model.json's ``sentence_head``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

HEAD_FILE = "sentence_head.onnx"
# Logit units of d per logit of the head. Chosen on the hand-written dev splits and the held-out
# benchmark folds, not the test splits: held-out RouterBench APGR falls as the weight grows
# (0.564 / 0.563 / 0.521 / 0.457 at 0.2 / 0.3 / 0.5 / 1; bench/QUALITY_ROUTING.md). It was 0.3,
# where `requests` dev's length-matched AUC reached its plateau; since the fast d carries the
# anchors' own head (2026-12-06) it is the grid's largest sum of AUC and length-matched AUC over
# the three dev splits: 0.2 until feature version 10, 0.15 since (5.511; 0.2: 5.501, 0.3: 5.480,
# 0: 5.453; a margin of a request or two, in the direction the held-out folds prefer)
# (`python bench/head_weight.py`, bench/COMMONSENSE.md)
WEIGHT = 0.15
# distilled_word_weights (train's "distill" param, off in the shipped model): d units per unit
# of the head's logit as the static word embedding predicts it, and the ridge's L2; the best of
# 1 / 1.5 / 2 / 3 and 0.1 / 1 / 10 on the common-sense dev split.
DISTILL_WEIGHT = 1.0
LEVEL_AT = (20.0, 50.0, 80.0)  # percentiles SentenceHead.level matches
DISTILL_ALPHA = 1.0


class SentenceHead:
    """Logistic regression on sentence embeddings; ``shift`` is what it adds to d.

    Parameters: ``C`` (inverse L2 strength of the logistic regression; 0.1 and 1 were tried on
    the common-sense set's dev split) and ``weight`` (logit units of d per logit of the head;
    see WEIGHT).
    """

    def __init__(self, C: float = 1.0, weight: float = WEIGHT) -> None:
        self.C = C
        self.weight = weight

    def fit(self, embeddings: np.ndarray, selected: np.ndarray,
            sample_weight: np.ndarray | None = None) -> SentenceHead:
        """``embeddings`` [n, dims]; ``selected`` [n] bool, True for a request selected as hard;
        ``sample_weight`` [n] (None: 1 each)."""
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import StratifiedKFold, cross_val_predict

        X = np.asarray(embeddings, np.float64)
        y = np.asarray(selected, bool)
        if y.all() or not y.any():
            raise ValueError("the sentence head needs both selected and unselected requests")
        clf = LogisticRegression(C=self.C, max_iter=5000)
        # Held-out AUC for the card: 5 folds, fixed split (the fit itself has no randomness).
        folds = StratifiedKFold(5, shuffle=True, random_state=0)
        fit_params = {} if sample_weight is None else {"sample_weight": sample_weight}
        held = cross_val_predict(clf, X, y, cv=folds, method="decision_function",
                                 params=fit_params)
        clf.fit(X, y, **fit_params)
        self.coef_ = clf.coef_.ravel().astype(np.float64)
        self.intercept_ = float(clf.intercept_[0])
        self.centre_ = float(np.mean(X @ self.coef_ + self.intercept_))
        self.n_selected_ = int(y.sum())
        self.n_unselected_ = int((~y).sum())
        self.cv_auc_ = _auc(held, y)
        return self

    def shift(self, embeddings: np.ndarray) -> np.ndarray:
        """What the head adds to d for each embedding ([n] float64)."""
        logit = np.asarray(embeddings, np.float64) @ self.coef_ + self.intercept_
        return self.weight * (logit - self.centre_)

    def save(self, path: str | Path) -> None:
        """Write the head as ONNX: ``embedding`` [N, dims] float32 -> ``shift`` [N, 1]."""
        import onnx
        from onnx import TensorProto, helper, numpy_helper

        w = (self.weight * self.coef_).astype(np.float32).reshape(-1, 1)
        b = np.asarray([self.weight * (self.intercept_ - self.centre_)], np.float32)
        graph = helper.make_graph(
            [helper.make_node("MatMul", ["embedding", "W"], ["wx"]),
             helper.make_node("Add", ["wx", "b"], ["shift"])],
            "tierwise_sentence_head",
            [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", w.shape[0]])],
            [helper.make_tensor_value_info("shift", TensorProto.FLOAT, ["N", 1])],
            initializer=[numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "b")],
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                                  producer_name="tierwise")
        model.ir_version = 8
        onnx.checker.check_model(model)
        onnx.save(model, str(path))

    def level(self, fast_d: np.ndarray, embeddings: np.ndarray) -> SentenceHead:
        """Fit ``offset_`` and ``scale_`` so that ``offset_ + scale_ * (fast d + shift)`` has the
        median and 20-80% spread of the fast d over these requests (real chat traffic).

        Adding the head widens and moves d: with the demo's abilities, 43% of chat requests went
        to the largest tier under the accurate scorer against 27% under the fast one. Matched
        this way, a policy's abilities route real traffic in about the same shares under both
        scorers, and switching scorer changes which requests go up, not how many. A monotone
        map: the ranking (every AUC) is the head's."""
        fast_d = np.asarray(fast_d, np.float64)
        total = fast_d + self.shift(embeddings)
        # quantiles, not moments: the tails of chat traffic are long and the tiers' cut points
        # sit in its middle (the demo's at the 50th and 80th percentiles)
        q_fast, q_total = np.percentile(fast_d, LEVEL_AT), np.percentile(total, LEVEL_AT)
        self.scale_ = float((q_fast[2] - q_fast[0]) / (q_total[2] - q_total[0]))
        self.offset_ = float(q_fast[1] - self.scale_ * q_total[1])
        self.n_level_ = int(fast_d.size)
        return self

    def info(self) -> dict[str, Any]:
        """model.json's ``sentence_head`` entry."""
        return {
            "file": HEAD_FILE,
            "text": "last user turn",
            "label": "Arena-Hard selection (selected = hard) vs OpenAssistant/Vicuna requests",
            "C": self.C,
            "weight": self.weight,
            "centre": round(self.centre_, 6),
            "n_selected": self.n_selected_,
            "n_unselected": self.n_unselected_,
            "cv_auc": round(self.cv_auc_, 4),
            # accurate d = offset + scale * (fast d + shift): see level()
            "offset": round(getattr(self, "offset_", 0.0), 6),
            "scale": round(getattr(self, "scale_", 1.0), 6),
            "level_requests": getattr(self, "n_level_", 0),
        }


class TextEmbeddings:
    """Sentence embeddings of texts, each encoded once (the shipped encoder, ~2.5 ms a text)."""

    def __init__(self, log: Any = print) -> None:
        self.vectors: dict[str, np.ndarray] = {}
        self.log = log

    def __call__(self, texts: list[str]) -> np.ndarray:
        import time

        from .encoder import SentenceEncoder

        missing = sorted({t for t in texts if t not in self.vectors})
        if missing:
            t0 = time.perf_counter()
            self.vectors.update(zip(missing, SentenceEncoder().encode(missing), strict=True))
            self.log(f"sentence encoder: {len(missing)} texts in {time.perf_counter() - t0:.0f}s")
        return np.vstack([self.vectors[t] for t in texts]) if texts else np.zeros((0, 384))


def fit_on_rows(rows: list[dict], log: Any = print, C: float = 1.0, weight: float = WEIGHT,
                embed: TextEmbeddings | None = None, anchors: float = 0.0) -> SentenceHead:
    """Fit the head on the selection label of ``rows`` (training rows in the data schema): one
    example per distinct last user turn of the selected and unselected chat sources, and with
    ``anchors`` > 0 one per hand-labeled anchor (classifiers/anchors.py; hard counts as
    selected), each weighing ``anchors``."""
    from .anchors import anchor_labels
    from .selection import selection_labels

    labels = selection_labels(rows)
    extra = anchor_labels(rows) if anchors else {}
    labels.update(extra)
    texts = sorted(labels)
    embeddings = (embed or TextEmbeddings(log))(texts)
    sample_weight = np.asarray([anchors if t in extra else 1.0 for t in texts]) if extra else None
    head = SentenceHead(C=C, weight=weight).fit(
        embeddings, np.asarray([labels[t] for t in texts]), sample_weight)
    log(f"sentence head: held-out AUC {head.cv_auc_:.3f} "
        f"({head.n_selected_} selected, {head.n_unselected_} not)")
    return head


def first_row_per_text(rows: list[dict], where: Any = None) -> dict[str, int]:
    """Each distinct last user turn of ``rows`` (those ``where`` accepts) -> its first row."""
    from .conversation import last_user_text
    from .data import row_messages

    first: dict[str, int] = {}
    for i, row in enumerate(rows):
        if where is None or where(row):
            first.setdefault(last_user_text(row_messages(row)), i)
    return first


def distilled_word_weights(head: SentenceHead, rows: list[dict], word_features: Any,
                           table: np.ndarray, embed: TextEmbeddings,
                           weight: float = DISTILL_WEIGHT,
                           alpha: float = DISTILL_ALPHA) -> tuple[np.ndarray, dict[str, Any]]:
    """What the fast scorer's per-word weights gain from the head, and a summary for model.json.

    The fast model's word block pools a static embedding over the words (``word_features @
    table``); a ridge regression (no intercept, ``alpha``) of the head's centred logit on that
    pooled embedding, over every distinct request of ``rows``, gives a direction v, and
    ``weight * table @ v`` folds into the per-word weights exactly as the IRT's own
    embedding weights do: the fast scorer then carries part of the head at no run-time cost.
    """
    first = first_row_per_text(rows)
    texts = list(first)
    pooled = np.asarray(word_features[list(first.values())] @ table, np.float64)
    target = head.shift(embed(texts)) / head.weight  # logit - centre
    gram = pooled.T @ pooled + alpha * np.eye(pooled.shape[1])
    v = np.linalg.solve(gram, pooled.T @ target)
    fitted = pooled @ v
    r2 = 1.0 - float(np.sum((target - fitted) ** 2) / np.sum((target - target.mean()) ** 2))
    info = {"weight": weight, "alpha": alpha, "n_texts": len(texts), "r2": round(r2, 4)}
    return weight * (table @ v), info


def _auc(scores: np.ndarray, positive: np.ndarray) -> float:
    from .metrics import auc

    return float(auc(np.asarray(scores, float), np.asarray(positive, bool)))


class HeadRunner:
    """Runs a saved ``sentence_head.onnx`` (onnxruntime, one thread)."""

    def __init__(self, path: str | Path) -> None:
        from .onnx_session import open_session

        self.session = open_session(path)

    def shift(self, embeddings: np.ndarray) -> np.ndarray:
        (out,) = self.session.run(["shift"], {"embedding": np.asarray(embeddings, np.float32)})
        return out[:, 0].astype(np.float64)
