"""Logistic IRT difficulty model: P(model m does well on x) = sigmoid(a_m - d(x)).

``d(x) = X[x] @ coef_`` is linear in the sparse features, so this is exactly a logistic
regression over [text features, one-hot model] with soft labels, fitted jointly over all
(prompt, model) outcome pairs with L-BFGS. Only the per-prompt aggregate gradient touches the
feature matrix, so one iteration costs one sparse mat-vec each way, whatever the number of models.

Pair weights: each prompt's pairs are weighted ``n_models(prompt) ** -prompt_weight_power`` so
sources with 48 models do not drown sources with 9.

Uncertainty (``var_``): diagonal Laplace approximation of the posterior of each feature weight,
``var_j = 1 / (H_jj + l2)`` with ``H_jj = sum_i x_ij^2 h_i`` and ``h_i`` the summed Fisher
information of prompt i. ``uncertainty(x) = sqrt(sum_j x_j^2 var_j)`` is the approximate posterior
std of d(x): large when the prompt is made of features the training data rarely saw.
Training-only module (scipy).
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


class IRTDifficulty:
    """Joint fit of prompt-difficulty weights and model abilities."""

    def __init__(
        self,
        l2: float = 3.0,
        l2_ability: float = 0.01,
        prompt_weight_power: float = 0.5,
        max_iter: int = 500,
        tol: float = 1e-6,
        verbose: bool = False,
    ) -> None:
        self.l2 = l2
        self.l2_ability = l2_ability
        self.prompt_weight_power = prompt_weight_power
        self.max_iter = max_iter
        self.tol = tol
        self.verbose = verbose

    def fit(
        self, X: Any, prompt: np.ndarray, model: np.ndarray, y: np.ndarray, n_models: int
    ) -> IRTDifficulty:
        from scipy.optimize import minimize

        X = X.tocsr().astype(np.float64)
        X.sum_duplicates()
        n_prompts, n_full = X.shape
        # optimise only the columns the data touches; the rest keep weight 0, variance 1/l2
        active = np.unique(X.indices)
        X = X[:, active]
        n_feat = active.size
        counts = np.bincount(prompt, minlength=n_prompts).astype(np.float64)
        w = np.power(np.maximum(counts[prompt], 1.0), -self.prompt_weight_power)
        Xt = X.T.tocsr()
        it = [0]

        def fun(theta: np.ndarray) -> tuple[float, np.ndarray]:
            coef, ab = theta[:n_feat], theta[n_feat:]
            d = X @ coef
            z = ab[model] - d[prompt]
            p = _sigmoid(z)
            eps = 1e-12
            loss = -np.sum(w * (y * np.log(p + eps) + (1 - y) * np.log(1 - p + eps)))
            loss += 0.5 * self.l2 * coef @ coef + 0.5 * self.l2_ability * ab @ ab
            r = w * (p - y)  # dloss/dz
            g_d = -np.bincount(prompt, weights=r, minlength=n_prompts)
            g_coef = Xt @ g_d + self.l2 * coef
            g_ab = np.bincount(model, weights=r, minlength=n_models) + self.l2_ability * ab
            it[0] += 1
            if self.verbose and it[0] % 50 == 0:
                print(f"  iter {it[0]:4d}  loss {loss:.2f}", flush=True)
            return float(loss), np.concatenate([g_coef, g_ab])

        theta0 = np.zeros(n_feat + n_models)
        res = minimize(
            fun,
            theta0,
            jac=True,
            method="L-BFGS-B",
            options={"maxiter": self.max_iter, "ftol": self.tol, "gtol": 1e-6},
        )
        self.coef_ = np.zeros(n_full)
        self.coef_[active] = res.x[:n_feat]
        self.abilities_ = res.x[n_feat:]
        self.n_iter_ = int(res.nit)
        d = X @ res.x[:n_feat]
        p = _sigmoid(self.abilities_[model] - d[prompt])
        h = np.bincount(prompt, weights=w * p * (1 - p), minlength=n_prompts)
        hjj = np.zeros(n_full)
        hjj[active] = np.asarray(X.multiply(X).T @ h).ravel()
        self.var_ = 1.0 / (hjj + self.l2)
        return self

    def predict(self, X: Any) -> np.ndarray:
        """Difficulty d(x) in logit units."""
        return np.asarray(X @ self.coef_).ravel()

    def predict_uncertainty(self, X: Any) -> np.ndarray:
        """Approximate posterior std of d(x) (diagonal Laplace)."""
        X2 = X.multiply(X)
        return np.sqrt(np.asarray(X2 @ self.var_).ravel())

    def predict_proba(self, X: Any, model_index: np.ndarray | int) -> np.ndarray:
        """P(model does well) for each row of X."""
        return _sigmoid(self.abilities_[model_index] - self.predict(X))
