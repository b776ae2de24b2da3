"""bench/demo_policy.py's upper bound on a rate (the stricter small-share rule it can print)."""

from __future__ import annotations

import math

import pytest

from bench.demo_policy import upper_bound


@pytest.mark.parametrize("n", [10, 118, 500])
def test_no_failure_seen_has_the_textbook_bound(n: int) -> None:
    # P(0 of n) = (1 - p)^n = 1 - level
    assert upper_bound(0, n, 0.9) == pytest.approx(1 - 0.1 ** (1 / n), abs=1e-9)


def test_the_bound_is_the_p_where_k_or_fewer_has_the_stated_chance() -> None:
    p = upper_bound(4, 118, 0.9)
    assert sum(math.comb(118, i) * p**i * (1 - p) ** (118 - i) for i in range(5)) == \
        pytest.approx(0.1, abs=1e-6)
    assert 4 / 118 < p < upper_bound(5, 118, 0.9) < upper_bound(5, 118, 0.95)
    assert upper_bound(7, 7, 0.9) == 1.0
