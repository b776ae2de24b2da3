"""Feature version 20: a user turn's opening greeting and closing thank-you are not what it asks.

"Hi! " before a request moved 3.9% of real chat requests a tier and " Thanks!" after it 4.9%
before (bench/INVARIANCE.md). A turn that is only a pleasantry, and a request about one, keep
their words.
"""

from __future__ import annotations

import numpy as np
import pytest

from classifiers.conversation import flatten
from classifiers.features import extract
from classifiers.pleasantries import without_pleasantries

REQUEST = "Why does my asyncio task sometimes never get cancelled?"


@pytest.mark.parametrize("sent", [
    f"Hi! {REQUEST}", f"{REQUEST} Thanks!", f"Hello there,\n{REQUEST}\nThanks in advance!",
    f"hey: {REQUEST}", f"Good morning! {REQUEST} Thank you so much!!", f"Hi Claude, {REQUEST}",
])
def test_pleasantries_around_a_request_are_not_read(sent):
    a, b = extract(REQUEST), extract(sent)
    np.testing.assert_array_equal(a.ids, b.ids)
    np.testing.assert_array_equal(a.values, b.values)
    assert a.n_tokens == b.n_tokens


@pytest.mark.parametrize("text", [
    "hi", "Thanks!", "Hi!", "Hello, World!", "Hello World! in Rust", "Hello how are you",
    "How do I say thank you in Japanese?", "Write a note to say thank you",
    "Thank you. Now explain monads.", "explain monads in python thanks", "Highway 61?",
])
def test_what_is_not_a_pleasantry_around_a_request_stays(text):
    assert without_pleasantries(text) == text


def test_every_user_turn_but_no_other_role():
    chat = [{"role": "user", "content": "Hi! What is a monad?"},
            {"role": "assistant", "content": "Hi! A monad is a pattern."},
            {"role": "user", "content": "Show one in Python. Thanks!"}]
    assert [t for t, _ in flatten(chat).segments] == [
        "What is a monad?", "Hi! A monad is a pattern.", "Show one in Python."]
