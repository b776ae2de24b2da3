"""Logistic IRT difficulty model: P(model m does well on x) = sigmoid(a_m - d(x)).

``d(x) = X[x] @ coef_`` is linear in the sparse features, fitted jointly with the per-model
abilities ``abilities_`` over all labels with L-BFGS-B. Only per-prompt aggregate gradients touch
the feature matrix, so one iteration costs one sparse mat-vec each way.

Two kinds of label:

- outcomes (model m on prompt x scored y in [0, 1]): ``sigmoid(a_m - d(x) - c_g)``;
- pairwise verdicts (model A vs B on x, y = share of A wins, ties half): Bradley-Terry on the
  same abilities with a prompt-dependent scale, ``sigmoid(exp(d(x) + c_g) * (a_A - a_B))``. On an
  easy prompt the scale is small (any two models tie or split at random); on a hard one the
  more able model wins reliably. That is the reading a router needs (the stronger tier pays
  off where the gap between models shows), it needs no prior knowledge of which model is the
  stronger, and it gives the judge's verdicts the same difficulty scale as the outcome rows.

``c_g`` is a per-group offset (fixed effect; a group is a label source or benchmark family),
used in training only: difficulty is learned *within* groups, so a source whose labels are
harsher overall (chance rates, grading, another judge) does not teach its vocabulary "hard".
At prediction time there is no offset.

Pair weights: each prompt's labels are weighted ``n(prompt) ** -prompt_weight_power`` so sources
with 48 models do not drown sources with 9. ``l2`` may be a vector (one penalty per feature) and
``lower`` a vector of lower bounds (e.g. length may only make a prompt harder).

Uncertainty (``var_``): diagonal Laplace approximation, ``var_j = 1 / (H_jj + l2_j)``.
Training-only module (scipy).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

SCALE_CLIP = (-6.0, 4.0)  # bounds of d + c inside exp(): keeps the line search finite


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


@dataclass
class Comparisons:
    """Pairwise verdicts: on prompt ``prompt[i]`` model ``a[i]`` beat ``b[i]`` a share ``y[i]``
    of ``n[i]`` judgements (ties count half)."""

    prompt: np.ndarray
    a: np.ndarray
    b: np.ndarray
    y: np.ndarray
    n: np.ndarray

    @classmethod
    def empty(cls) -> Comparisons:
        z = np.zeros(0, np.int64)
        return cls(z, z, z, np.zeros(0), np.zeros(0))

    def take(self, keep: np.ndarray) -> Comparisons:
        return Comparisons(self.prompt[keep], self.a[keep], self.b[keep], self.y[keep],
                           self.n[keep])


class IRTDifficulty:
    """Joint fit of prompt-difficulty weights, model abilities and training-only group offsets.

    ``tol``/``gtol``: L-BFGS-B's ftol and gtol. Converged this far, the fit is the same on
    another CPU: OpenBLAS picks its kernels by CPU, and their last-bit rounding moved a fit
    stopped at ftol 1e-7 / gtol 1e-6 (235 iterations) by up to 0.030 in d on the hand-written
    requests (SkylakeX vs Haswell kernels, ``OPENBLAS_CORETYPE=Haswell``); at 1e-10 / 1e-8 (426
    iterations, about twice the time) by 0.0007, so `tierwise train` reproduces the shipped
    model within .ci/retrain_check.py's tolerance on either machine.
    """

    # learned state set after fit() by classifiers/train.py, absent until then (read them with
    # getattr(model, name, None)): the sentence-encoder block's own weights (train.fit's
    # ``sentence``, bench/quality_routing.py's variants), the sentence head it fits and its
    # distillation into the word block (a summary for model.json), and the anchors' own head
    # folded into the short-request block (classifiers/word_fold.py)
    sentence_u_: np.ndarray
    head_: Any
    distill_: dict[str, Any]
    anchor_head_: np.ndarray

    def __init__(
        self,
        l2: float | np.ndarray = 3.0,
        l2_ability: float = 0.01,
        l2_offset: float = 0.01,
        prompt_weight_power: float = 0.5,
        max_iter: int = 2000,
        tol: float = 1e-10,
        gtol: float = 1e-8,
        verbose: bool = False,
    ) -> None:
        self.l2 = l2
        self.l2_ability = l2_ability
        self.l2_offset = l2_offset
        self.prompt_weight_power = prompt_weight_power
        self.max_iter = max_iter
        self.tol = tol
        self.gtol = gtol
        self.verbose = verbose

    def fit(
        self,
        X: Any,
        prompt: np.ndarray,
        model: np.ndarray,
        y: np.ndarray,
        n_models: int,
        comparisons: Comparisons | None = None,
        groups: np.ndarray | None = None,
        lower: np.ndarray | None = None,
        upper: np.ndarray | None = None,
        row_weight: np.ndarray | None = None,
        no_offset: np.ndarray | None = None,
        label_weight: np.ndarray | None = None,
        penalty: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> IRTDifficulty:
        """Fit on outcome labels (prompt, model, y) and optional pairwise ``comparisons``.

        ``groups``: one int per row of X (its offset group), or None for no offsets.
        ``lower``/``upper``: per-feature bounds (-inf/inf where free; equal bounds fix a
        weight), or None.
        ``row_weight``: a factor per row of X (e.g. 1/k for a prompt that appears in k rows).
        ``no_offset``: per outcome label, True where the group offset does not apply (a label
        that compares prompts *across* groups, which an offset would explain away).
        ``label_weight``: per outcome label, a factor on its weight (None: 1).
        ``penalty``: (columns of X, a symmetric matrix Q): ``0.5 * c @ Q @ c`` is added to the
        loss for the weights ``c`` of those columns, beside their L2.
        """
        from scipy.optimize import minimize

        cmp = comparisons if comparisons is not None else Comparisons.empty()
        X = X.tocsr().astype(np.float64)
        X.sum_duplicates()
        n_prompts, n_full = X.shape
        l2_full = np.broadcast_to(np.asarray(self.l2, np.float64), (n_full,))
        # optimise only the columns the data touches; the rest keep weight 0, variance 1/l2
        active = np.unique(X.indices)
        X = X[:, active]
        l2v = l2_full[active]
        n_feat = active.size
        grp = np.zeros(n_prompts, np.int64) if groups is None else np.asarray(groups, np.int64)
        n_groups = int(grp.max()) + 1 if groups is not None and grp.size else 0
        counts = np.bincount(prompt, minlength=n_prompts) + np.bincount(
            cmp.prompt, minlength=n_prompts
        )
        per = np.power(np.maximum(counts, 1).astype(np.float64), -self.prompt_weight_power)
        if row_weight is not None:
            per = per * np.asarray(row_weight, np.float64)
        w_out = per[prompt] if label_weight is None else per[prompt] * label_weight
        w_cmp = per[cmp.prompt] * cmp.n
        Xt = X.T.tocsr()
        it = [0]
        use_off = (
            np.ones(prompt.size) if no_offset is None else 1.0 - np.asarray(no_offset, float)
        )

        if penalty is not None:
            q_cols = np.searchsorted(active, penalty[0])
            if not np.array_equal(active.take(np.minimum(q_cols, active.size - 1)), penalty[0]):
                raise ValueError("penalty: a column the data never touches")
            q_mat = np.asarray(penalty[1], np.float64)

        def unpack(theta: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            return theta[:n_feat], theta[n_feat : n_feat + n_models], theta[n_feat + n_models :]

        def fun(theta: np.ndarray) -> tuple[float, np.ndarray]:
            coef, ab, off = unpack(theta)
            d0 = X @ coef  # without offsets
            d = d0 + off[grp] if n_groups else d0
            eps = 1e-12
            # outcomes
            dp = d0[prompt] + (off[grp[prompt]] * use_off if n_groups else 0.0)
            p = _sigmoid(ab[model] - dp)
            loss = -np.sum(w_out * (y * np.log(p + eps) + (1 - y) * np.log(1 - p + eps)))
            r = w_out * (p - y)  # dloss/dz, z = a - d
            # float even when there are no outcome labels (bincount of nothing is int64)
            g_d = -np.bincount(prompt, weights=r, minlength=n_prompts).astype(np.float64)
            # the part of g_d that reaches the offsets
            g_o = -np.bincount(prompt, weights=r * use_off, minlength=n_prompts).astype(float)
            g_ab = np.bincount(model, weights=r, minlength=n_models).astype(np.float64)
            # pairwise: z = s * (a_A - a_B), s = exp(d)
            if cmp.prompt.size:
                dc = np.clip(d[cmp.prompt], *SCALE_CLIP)
                s = np.exp(dc)
                gap = ab[cmp.a] - ab[cmp.b]
                z = s * gap
                q = _sigmoid(z)
                ll = cmp.y * np.log(q + eps) + (1 - cmp.y) * np.log(1 - q + eps)
                loss -= np.sum(w_cmp * ll)
                rc = w_cmp * (q - cmp.y)  # dloss/dz
                inside = (d[cmp.prompt] > SCALE_CLIP[0]) & (d[cmp.prompt] < SCALE_CLIP[1])
                g_c = np.bincount(cmp.prompt, weights=rc * z * inside, minlength=n_prompts)
                g_d += g_c
                g_o += g_c
                g_ab += np.bincount(cmp.a, weights=rc * s, minlength=n_models)
                g_ab -= np.bincount(cmp.b, weights=rc * s, minlength=n_models)
            loss += 0.5 * np.dot(l2v * coef, coef) + 0.5 * self.l2_ability * ab @ ab
            loss += 0.5 * self.l2_offset * off @ off
            g_coef = Xt @ g_d + l2v * coef
            if penalty is not None:
                qc = q_mat @ coef[q_cols]
                loss += 0.5 * float(coef[q_cols] @ qc)
                g_coef[q_cols] += qc
            g_ab = g_ab + self.l2_ability * ab
            g_off = (
                np.bincount(grp, weights=g_o, minlength=n_groups) + self.l2_offset * off
                if n_groups
                else np.zeros(0)
            )
            it[0] += 1
            if self.verbose and it[0] % 50 == 0:
                print(f"  iter {it[0]:4d}  loss {loss:.2f}", flush=True)
            return float(loss), np.concatenate([g_coef, g_ab, g_off])

        theta0 = np.zeros(n_feat + n_models + n_groups)
        bounds = None
        if lower is not None or upper is not None:
            lo = np.broadcast_to(-np.inf if lower is None else lower, (n_full,))[active]
            hi = np.broadcast_to(np.inf if upper is None else upper, (n_full,))[active]
            bounds = [
                (float(a) if np.isfinite(a) else None, float(b) if np.isfinite(b) else None)
                for a, b in zip(lo, hi, strict=True)
            ]
            bounds += [(None, None)] * (n_models + n_groups)
            # a fixed weight starts at its value (L-BFGS-B projects the start into the box)
        res = minimize(
            fun,
            theta0,
            jac=True,
            method="L-BFGS-B",
            bounds=bounds,
            options={"maxiter": self.max_iter, "ftol": self.tol, "gtol": self.gtol},
        )
        coef, ab, off = unpack(res.x)
        self.coef_ = np.zeros(n_full)
        self.coef_[active] = coef
        self.abilities_ = ab.copy()
        self.offsets_ = off.copy()
        self.group_offsets_: dict[str, float] = {}  # named by the caller, who knows the groups
        self.semantic_u_: np.ndarray | None = None  # set by the caller that folds an embedding
        self.n_iter_ = int(res.nit)
        # diagonal Fisher information of d per prompt, for the variances
        d = X @ coef + (off[grp] if n_groups else 0.0)
        d_out = X @ coef
        d_out = d_out[prompt] + (off[grp[prompt]] * use_off if n_groups else 0.0)
        p = _sigmoid(ab[model] - d_out)
        h = np.bincount(prompt, weights=w_out * p * (1 - p), minlength=n_prompts).astype(float)
        if cmp.prompt.size:
            z = np.exp(np.clip(d[cmp.prompt], *SCALE_CLIP)) * (ab[cmp.a] - ab[cmp.b])
            q = _sigmoid(z)
            h += np.bincount(cmp.prompt, weights=w_cmp * q * (1 - q) * z * z, minlength=n_prompts)
        hjj = np.zeros(n_full)
        hjj[active] = np.asarray(X.multiply(X).T @ h).ravel()
        self.var_ = 1.0 / (hjj + l2_full)
        return self

    def predict(self, X: Any) -> np.ndarray:
        """Difficulty d(x) in logit units (no group offset)."""
        return np.asarray(X @ self.coef_).ravel()

    def predict_uncertainty(self, X: Any) -> np.ndarray:
        """Approximate posterior std of d(x) (diagonal Laplace)."""
        X2 = X.multiply(X)
        return np.sqrt(np.asarray(X2 @ self.var_).ravel())

    def predict_proba(self, X: Any, model_index: np.ndarray | int) -> np.ndarray:
        """P(model does well) for each row of X."""
        return _sigmoid(self.abilities_[model_index] - self.predict(X))
