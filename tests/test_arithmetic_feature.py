"""The `arithmetic_digits` feature: the size of an exact product or power written in a request.

Exact arithmetic on big numbers is hard for a small model however short the request is; the
feature reads the digits of the largest product/power's result, and the shipped model learns a
non-negative weight for it, so "48,271 x 93,657" scores harder than "12 x 34" phrased the same way.
"""

from __future__ import annotations

import pytest

from classifiers.arithmetic import arithmetic_digits
from classifiers.features import DENSE_NAMES, DENSE_OFF, extract
from router import Router


@pytest.mark.parametrize(
    ("text", "digits"),
    [
        ("what is 12*3?", 3.0),
        ("What is 48,271 × 93,657 exactly?", 10.0),
        ("What is 123456789 squared, exactly?", 18.0),
        ("the area is 1234 squared", 8.0),
        ("3 ** 40", pytest.approx(20.08, abs=0.01)),
        ("What's 17^9 exactly?", pytest.approx(12.07, abs=0.01)),
        ("¿Cuánto es 987654 · 123457?", 12.0),
        ("12 times 34", 4.0),
        ("1.5*2 and 0.25 x 4", 0.0),  # decimals are left alone
        ("x = 5*y; next example", 0.0),  # operators without numbers on both sides
        ("no numbers here, just an x and a *", 0.0),
        ("jump to the address 0x100000, pin 0x11223344", 0.0),  # hex literals, not products
        ("0 * 123456789", 0.0),
        ("what aspect ratio is 1920x1080? and 800x600?", 0.0),  # sizes, not products
        ("what's 986431 x 247819 exactly?", 12.0),
        ("", 0.0),
    ],
)
def test_digits_of_the_largest_product_or_power(text, digits):
    assert arithmetic_digits(text.encode()) == digits


def test_a_huge_exponent_stays_finite():
    assert 1e5 < arithmetic_digits(b"2^1000000000") < 1e7


def test_the_feature_is_capped_in_the_request_features():
    slot = DENSE_OFF + DENSE_NAMES.index("arithmetic_digits")

    def value(text: str) -> float:
        f = extract([{"role": "user", "content": text}])
        hit = f.values[f.ids == slot]
        return float(hit[0]) if hit.size else 0.0

    assert value("what is 12*3?") == 0.0  # 3 digits: below the 4 a small model handles
    assert value("What is 48,271 × 93,657?") == pytest.approx(6 / 8)
    assert value("2^1000000000") == pytest.approx(2.0)


@pytest.fixture(scope="module")
def router() -> Router:
    return Router()


@pytest.mark.parametrize(
    ("small", "big"),
    [
        ("12 * 34", "48,271 × 93,657"),
        ("17^2", "17^19"),
        ("25 squared", "123456789 squared"),
    ],
)
def test_big_exact_arithmetic_scores_harder_than_small(router, small, big):
    ask = "What is {}? Give the exact result."
    assert router.route(ask.format(big)).difficulty > router.route(ask.format(small)).difficulty


def test_a_short_exact_product_of_twelve_digits_skips_the_smallest_tier(router):
    """The labels alone weigh the feature at ~0.2 (few training rows carry it), which left this
    request on `small` beside "what is 12*3?"; the shipped weight is bounded below by 1."""
    assert router.route("what's 986431 x 247819 exactly?").tier != "small"
    assert router.route("what is 12*3?").tier == "small"
    # a size written like a product is not arithmetic: it scores as the same size written in
    # words does, far below a real product (it sits near the small tier's edge, on `medium`
    # since the demo's small share is 20%: policies/demo.toml)
    size = router.route("what aspect ratio is 1920x1080?")
    in_words = router.route("what aspect ratio is 1920 by 1080?")
    product = router.route("what's 986431 x 247819 exactly?")
    assert abs(size.difficulty - in_words.difficulty) < 0.3, (size, in_words)
    assert size.difficulty < product.difficulty - 0.5 and size.tier != "large", (size, product)


def test_a_text_full_of_operators_is_read_only_up_to_the_budget():
    """Past MAX_OPERATORS occurrences of one operator its scan stops (a pasted file of
    "1*1*1*..." must not cost more than the rest of the scoring); other operators are still
    read, and so is a product before the budget runs out."""
    from classifiers.arithmetic import MAX_OPERATORS

    stars = b"a*b " * (MAX_OPERATORS + 10)
    assert arithmetic_digits(stars + b"48271 x 93657") == 10.0  # "x" has its own budget
    assert arithmetic_digits(b"48271*93657 " + stars) == 10.0  # found before the budget ends
    assert arithmetic_digits(stars + b"48271*93657") == 0.0  # past it: not read
    assert arithmetic_digits(b"1*1*" * 25000) == 2.0
