"""bench/demo_policy.py's upper bound on a rate and the test its tier-share rule applies with it."""

from __future__ import annotations

import math

import pytest

from bench.demo_policy import upper_bound, within_bar


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


def test_the_rule_needs_every_split_within_the_bar() -> None:
    # pooled 3 of 300 has a bound near 2.2%, but one split's 3 of 40 is 7.5%
    ok, top = within_bar({"a": (3, 40), "b": (0, 130), "c": (0, 130)}, 0.9)
    assert not ok and top < 0.05


def test_the_rule_needs_the_pooled_bound_within_the_bar() -> None:
    # each split at 1 of 48 or 2 of 48 (2-4%), but 5 of 118 pooled has a 90% bound of 7.7%
    ok, top = within_bar({"a": (2, 48), "b": (2, 48), "c": (1, 22)}, 0.9)
    assert not ok and top == pytest.approx(upper_bound(5, 118, 0.9))
    ok, top = within_bar({"a": (1, 36), "b": (1, 48), "c": (0, 34)}, 0.9)
    assert ok and top < 0.05
