"""What the IRT fit may weigh and how: each feature's L2, its bounds and whether it is fitted.

The fit's feature policy as data, from the train params (``classifiers.train.DEFAULT_PARAMS``):
which structure features only make a request harder (bounded below by 0), which are left out,
and the length weight fixed as a prior rather than learned.
"""

from __future__ import annotations

import numpy as np

from .features import DENSE_NAMES, DENSE_OFF, HASH_OFF, N_FEATURES, SHORT_OFF

# length may only make a request harder: these weights are bounded below by 0
MONOTONE = ("log_tokens", "log_tokens_last_user", "arithmetic_digits")
DIGIT_FEATURES = ("digit_fraction", "math_symbol_density")
# one structure feature each that a train param (1: used, 0: left out) switches
OPTIONAL_FEATURES = {"arithmetic_feature": "arithmetic_digits",
                     "non_ascii_feature": "non_ascii_fraction"}
# structure features that describe the text's surface (densities of characters, lines): they
# learn which benchmark a prompt is from more than how hard it is, and swing short requests
SURFACE_FEATURES = ("code_punct_density", "math_symbol_density", "digit_fraction", "log_lines",
                    "log_questions", "non_ascii_fraction", "upper_fraction", "bytes_per_token")


def feature_bounds(
    params: dict[str, float],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(l2, lower, upper, keep)`` over the N_FEATURES columns: the L2 of each weight, its
    bounds, and 1 where the fit weighs the column (0: padding, the short-request block, the
    free per-word weights unless ``unigrams``, and the structure features left out)."""
    l2 = np.full(N_FEATURES, float(params["l2"]))
    l2[HASH_OFF:DENSE_OFF] = float(params["l2_word"])
    lower = np.full(N_FEATURES, -np.inf)
    upper = np.full(N_FEATURES, np.inf)
    for name in MONOTONE:
        lower[DENSE_OFF + DENSE_NAMES.index(name)] = 0.0
    arithmetic = DENSE_OFF + DENSE_NAMES.index("arithmetic_digits")
    lower[arithmetic] = max(lower[arithmetic], float(params["arithmetic_min"]))  # still monotone
    fixed = float(params["length_weight"])
    if fixed >= 0:
        lower[DENSE_OFF + DENSE_NAMES.index("log_tokens_last_user")] = fixed
        upper[DENSE_OFF + DENSE_NAMES.index("log_tokens_last_user")] = fixed
    keep = np.ones(N_FEATURES)
    keep[0] = 0.0
    keep[SHORT_OFF:] = 0.0  # the short-request block carries only the anchors' head (below)
    if not params["unigrams"]:
        keep[HASH_OFF:DENSE_OFF] = 0.0
    dropped = list(DIGIT_FEATURES) if not params["digit_features"] else []
    dropped += [name for param, name in OPTIONAL_FEATURES.items() if not params[param]]
    if params["lean"]:
        dropped += SURFACE_FEATURES
    for name in dropped:
        keep[DENSE_OFF + DENSE_NAMES.index(name)] = 0.0
    return l2, lower, upper, keep
